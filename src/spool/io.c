/* File I/O of the spool: whole reads and writes, the durability calls, both
 * through the test hooks of sk_spool_opts, and errno mapped to sk_err. */
#include "spool/io.h"

#include "spool/spool_int.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <unistd.h>

static ssize_t do_write(const sk_spool_hooks *h, int fd, const void *p, size_t n)
{
    if (h && h->write_fn) return h->write_fn(h->ctx, fd, p, n);
    return write(fd, p, n);
}

sk_err sk_spool_write_all(const sk_spool_hooks *h, int fd, const void *p, size_t n)
{
    const char *c = p;
    while (n) {
        ssize_t w = do_write(h, fd, c, n);
        if (w < 0) {
            if (errno == EINTR) continue;
            return sk_err_from_errno(errno, SK_FILE_WRITE);
        }
        if (w == 0) return SK_ERR_IO;
        c += w;
        n -= (size_t)w;
    }
    return SK_OK;
}

/* One system call per message file instead of three in the common case. */
sk_err sk_spool_write_parts(const sk_spool_hooks *h, int fd, struct iovec *iov, int n)
{
    if (h && h->write_fn) {
        for (int i = 0; i < n; i++) {
            sk_err e = sk_spool_write_all(h, fd, iov[i].iov_base, iov[i].iov_len);
            if (e) return e;
        }
        return SK_OK;
    }
    while (n) {
        ssize_t w = writev(fd, iov, n);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0) return sk_err_from_errno(errno, SK_FILE_WRITE);
        size_t k = (size_t)w;
        while (n && k >= iov->iov_len) {
            k -= iov->iov_len;
            iov++;
            n--;
        }
        if (n) {
            if (!w) return SK_ERR_IO;
            iov->iov_base = (char *)iov->iov_base + k;
            iov->iov_len -= k;
        }
    }
    return SK_OK;
}

sk_err sk_spool_pwrite_all(const sk_spool_hooks *h, int fd, const void *p, size_t n, uint64_t off)
{
    /* The write hook has no offset: it writes at the file position. */
    int hooked = h && h->write_fn;
    if (hooked && lseek(fd, (off_t)off, SEEK_SET) < 0)
        return sk_err_from_errno(errno, SK_FILE_WRITE);
    const char *c = p;
    while (n) {
        ssize_t w = hooked ? h->write_fn(h->ctx, fd, c, n) : pwrite(fd, c, n, (off_t)off);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0) return sk_err_from_errno(errno, SK_FILE_WRITE);
        if (w == 0) return SK_ERR_IO;
        c += w;
        n -= (size_t)w;
        off += (uint64_t)w;
    }
    return SK_OK;
}

sk_err sk_spool_pread_all(int fd, void *p, size_t n, uint64_t off)
{
    char *c = p;
    while (n) {
        ssize_t r = pread(fd, c, n, (off_t)off);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) return SK_ERR_IO;
        if (r == 0) return SK_ERR_NOT_FOUND;
        c += r;
        n -= (size_t)r;
        off += (uint64_t)r;
    }
    return SK_OK;
}

sk_err sk_spool_read_file(int dir_fd, const char *name, sk_buf *out)
{
    int fd = openat(dir_fd, name, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return sk_err_from_errno(errno, SK_FILE_READ);
    sk_err e = sk_buf_read_fd(out, fd, SK_BUF_READ_ALL);
    close(fd);
    return e;
}

sk_err sk_spool_sync_file(const sk_spool_hooks *h, int fd)
{
    int r = h && h->sync_fn ? h->sync_fn(h->ctx, fd) : fdatasync(fd);
    return r ? sk_err_from_errno(errno, SK_FILE_WRITE) : SK_OK;
}

sk_err sk_spool_sync_dir(const sk_spool_hooks *h, int dir_fd)
{
    int r = h && h->sync_fn ? h->sync_fn(h->ctx, dir_fd) : fsync(dir_fd);
    return r ? sk_err_from_errno(errno, SK_FILE_WRITE) : SK_OK;
}

sk_err sk_spool_sync_fs(const sk_spool_hooks *h, int fd)
{
    int r = h && h->sync_fn ? h->sync_fn(h->ctx, fd) : syncfs(fd);
    return r ? sk_err_from_errno(errno, SK_FILE_WRITE) : SK_OK;
}

sk_err sk_spool_write_file(int dir_fd, const char *name, const void *data, size_t n, int sync_dir)
{
    char tmp[NAME_MAX + 1];
    if ((size_t)snprintf(tmp, sizeof tmp, "%s%s", name, SK_SPOOL_TMP_EXT) >= sizeof tmp)
        return SK_ERR_INVAL;
    int fd = openat(dir_fd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) return sk_err_from_errno(errno, SK_FILE_WRITE);
    sk_err e = sk_spool_write_all(NULL, fd, data, n);
    if (!e && fdatasync(fd)) e = sk_err_from_errno(errno, SK_FILE_WRITE);
    if (close(fd) && !e) e = sk_err_from_errno(errno, SK_FILE_WRITE);
    if (!e && renameat(dir_fd, tmp, dir_fd, name)) e = sk_err_from_errno(errno, SK_FILE_WRITE);
    if (e) {
        unlinkat(dir_fd, tmp, 0);
        return e;
    }
    if (sync_dir && fsync(dir_fd)) return sk_err_from_errno(errno, SK_FILE_WRITE);
    return SK_OK;
}
