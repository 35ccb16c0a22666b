/* The spool's directories: names of message files in msg/ (ID plus an
 * ending, docs/queue.md "On-disk layout"), listing them, and the lock. */
#include "spool/spool_impl.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* How often a waiting sk_spool_lock tries again. */
#define LOCK_RETRY_NS (20 * 1000 * 1000)

char *sk_spool_path_join(const char *a, const char *b)
{
    sk_buf p = SK_BUF_INIT(PATH_MAX);
    if (sk_buf_printf(&p, "%s/%s", a, b)) {
        sk_buf_free(&p);
        return NULL;
    }
    return sk_buf_detach(&p, NULL);
}

void sk_spool_name(char out[SK_SPOOL_NAME_SIZE], const char *id, const char *ext)
{
    snprintf(out, SK_SPOOL_NAME_SIZE, "%s%s", id, ext);
}

int sk_spool_open_msg_file(const sk_spool *s, const char *id, const char *ext)
{
    char name[SK_SPOOL_NAME_SIZE];
    sk_spool_name(name, id, ext);
    return openat(s->msgdir_fd, name, O_RDONLY | O_CLOEXEC);
}

int sk_spool_exists(const sk_spool *s, const char *id, const char *ext)
{
    char name[SK_SPOOL_NAME_SIZE];
    struct stat st;
    sk_spool_name(name, id, ext);
    return fstatat(s->msgdir_fd, name, &st, 0) == 0;
}

void sk_spool_unlink(const sk_spool *s, const char *id, const char *ext)
{
    char name[SK_SPOOL_NAME_SIZE];
    sk_spool_name(name, id, ext);
    unlinkat(s->msgdir_fd, name, 0);
}

/* With noreplace a new message never takes the place of another one whose
 * ID it happened to draw. */
int sk_spool_rename(const sk_spool *s, const char *id, const char *from, const char *to,
                    int noreplace)
{
    char a[SK_SPOOL_NAME_SIZE], b[SK_SPOOL_NAME_SIZE];
    sk_spool_name(a, id, from);
    sk_spool_name(b, id, to);
    if (!noreplace) return renameat(s->msgdir_fd, a, s->msgdir_fd, b);
    if (renameat2(s->msgdir_fd, a, s->msgdir_fd, b, RENAME_NOREPLACE) == 0) return 0;
    if (errno != EINVAL) return -1;
    /* A file system without RENAME_NOREPLACE: link(2) also refuses an
     * existing name. */
    if (linkat(s->msgdir_fd, a, s->msgdir_fd, b, 0)) return -1;
    unlinkat(s->msgdir_fd, a, 0);
    return 0;
}

/* msgdir for reading, from the start (a fresh descriptor: the DIR owns it). */
static DIR *open_msgdir(const sk_spool *s)
{
    int dfd = dup(s->msgdir_fd);
    DIR *d = dfd >= 0 ? fdopendir(dfd) : NULL;
    if (!d) {
        if (dfd >= 0) close(dfd);
        return NULL;
    }
    rewinddir(d);
    return d;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The directory is read before the caller renames anything, so no entry
 * is seen twice. */
sk_err sk_spool_ids_with_ext(const sk_spool *s, const char *ext, char ***out, size_t *n_out)
{
    *out = NULL;
    *n_out = 0;
    DIR *d = open_msgdir(s);
    if (!d) return SK_ERR_IO;
    char **ids = NULL;
    size_t n = 0, cap = 0;
    sk_err e = SK_OK;
    struct dirent *de;
    while (!e && (de = readdir(d))) {
        size_t len = strlen(de->d_name);
        if (len != SK_SPOOL_ID_LEN + strlen(ext) || strcmp(de->d_name + SK_SPOOL_ID_LEN, ext))
            continue;
        if ((e = sk_array_grow(&ids, &cap, n + 1, sizeof *ids, SK_ARRAY_UNBOUNDED))) break;
        if (!(ids[n] = sk_strndup(de->d_name, SK_SPOOL_ID_LEN)))
            e = SK_ERR_NOMEM;
        else if (sk_spool_id_valid(ids[n]))
            n++;
        else
            sk_free(ids[n]);
    }
    closedir(d);
    if (e) {
        sk_spool_ids_free(ids, n);
        return e;
    }
    if (n) qsort(ids, n, sizeof *ids, cmp_str);
    *out = ids;
    *n_out = n;
    return SK_OK;
}

void sk_spool_ids_free(char **ids, size_t n)
{
    for (size_t i = 0; i < n; i++) sk_free(ids[i]);
    sk_free(ids);
}

sk_err sk_spool_unlink_all(const sk_spool *s, const char *ext)
{
    DIR *d = open_msgdir(s);
    if (!d) return SK_ERR_IO;
    struct dirent *de;
    size_t n = strlen(ext);
    while ((de = readdir(d))) {
        size_t len = strlen(de->d_name);
        if (len > n && strcmp(de->d_name + len - n, ext) == 0)
            unlinkat(s->msgdir_fd, de->d_name, 0);
    }
    closedir(d);
    return SK_OK;
}

int sk_spool_lock(const char *spool_dir, unsigned wait_ms, long *busy_pid, sk_error *err)
{
    *busy_pid = 0;
    char *path = sk_spool_path_join(spool_dir, SK_SPOOL_LOCKFILE);
    if (!path) {
        sk_error_set(err, SK_ERR_NOMEM, SK_STEP_NONE, "out of memory");
        return -1;
    }
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) {
        sk_error_set(err, sk_err_from_errno(errno, SK_FILE_WRITE), SK_STEP_NONE,
                     "cannot open %s: %s", path, strerror(errno));
        sk_free(path);
        return -1;
    }
    uint64_t deadline = sk_now_ms() + wait_ms;
    while (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        if (errno != EWOULDBLOCK && errno != EINTR) {
            sk_error_set(err, SK_ERR_IO, SK_STEP_NONE, "cannot lock %s: %s", path, strerror(errno));
            close(fd);
            sk_free(path);
            return -1;
        }
        if (sk_now_ms() >= deadline) {
            char pid[32] = "";
            ssize_t r = pread(fd, pid, sizeof pid - 1, 0);
            if (r > 0) pid[r] = '\0';
            *busy_pid = strtol(pid, NULL, 10);
            sk_error_set(err, SK_ERR_STATE, SK_STEP_NONE, "spool %s is in use by process %ld",
                         spool_dir, *busy_pid);
            close(fd);
            sk_free(path);
            return -1;
        }
        struct timespec ts = {0, LOCK_RETRY_NS};
        nanosleep(&ts, NULL);
    }
    sk_free(path);
    char pid[32];
    int n = snprintf(pid, sizeof pid, "%ld\n", (long)getpid());
    if (ftruncate(fd, 0) == 0 && pwrite(fd, pid, (size_t)n, 0) != n) {
        /* The PID is informational only; the lock is what counts. */
    }
    return fd;
}
