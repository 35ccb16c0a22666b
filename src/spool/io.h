/* File I/O of the spool: whole reads and writes through the test hooks of
 * sk_spool_opts, the durability calls, and errno mapped to sk_err. A leaf:
 * every other file of the spool uses it (the journal too), it uses none. */
#ifndef SK_SPOOL_IO_H
#define SK_SPOOL_IO_H

#include <smtpkit/util.h>

#include <sys/types.h>
#include <sys/uio.h>

#include <stddef.h>
#include <stdint.h>

/* The test hooks of sk_spool_opts (write_fn, sync_fn, hook_ctx); every
 * function below that takes them accepts NULL, and so does each field:
 * then the system call itself. */
typedef struct sk_spool_hooks {
    ssize_t (*write_fn)(void *ctx, int fd, const void *p, size_t n);
    int (*sync_fn)(void *ctx, int fd);
    void *ctx;
} sk_spool_hooks;

/* Write all n octets at the file position. */
SK_NODISCARD sk_err sk_spool_write_all(const sk_spool_hooks *h, int fd, const void *p, size_t n);
/* The pieces in order (iov is changed); one writev(2) without a write
 * hook, piece by piece through it so that a fault can hit each. */
SK_NODISCARD sk_err sk_spool_write_parts(const sk_spool_hooks *h, int fd, struct iovec *iov, int n);
/* Write all n octets at offset off. */
SK_NODISCARD sk_err sk_spool_pwrite_all(const sk_spool_hooks *h, int fd, const void *p, size_t n,
                                        uint64_t off);
/* Read exactly n octets at off: SK_ERR_NOT_FOUND when the file ends
 * first, SK_ERR_IO when a read fails. */
SK_NODISCARD sk_err sk_spool_pread_all(int fd, void *p, size_t n, uint64_t off);
/* Append the whole of dir_fd/name to out (SK_ERR_NOT_FOUND: no such file). */
SK_NODISCARD sk_err sk_spool_read_file(int dir_fd, const char *name, sk_buf *out);

/* The durability calls (through sync_fn when set): fdatasync(2) of a
 * file; fsync(2) of a directory (not fdatasync: some file systems only
 * honour fsync on directories); syncfs(2) of the file system holding fd,
 * which writes back every dirty inode and commits its journal, so one
 * call covers the data and directory entries of a whole group (since
 * Linux 5.8 it also reports writeback errors met since fd was opened). */
SK_NODISCARD sk_err sk_spool_sync_file(const sk_spool_hooks *h, int fd);
SK_NODISCARD sk_err sk_spool_sync_dir(const sk_spool_hooks *h, int dir_fd);
SK_NODISCARD sk_err sk_spool_sync_fs(const sk_spool_hooks *h, int fd);

/* Write data to dir_fd/name atomically: name.tmp, fdatasync, rename, and
 * fsync of the directory when sync_dir (no hooks). */
SK_NODISCARD sk_err sk_spool_write_file(int dir_fd, const char *name, const void *data, size_t n,
                                        int sync_dir);

#endif
