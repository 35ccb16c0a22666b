/* Where a new message file comes from: a removed message's file, a spare
 * made ahead by the filler job, or openat (docs/queue.md "Spare files"). */
#include "spool/spool_impl.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* After a failed O_TMPFILE open (no space), the filler tries again after
 * this. */
#define FILLER_RETRY_MS 1000

/* Top the spare files up, then end. The file is created outside the lock:
 * O_TMPFILE does not take the directory's lock either, so the committer's
 * links and renames in msgdir do not wait for it. */
static void fill_run(void *arg)
{
    sk_spool *s = arg;
    sk_spool_spares *sp = &s->spare;
    pthread_mutex_lock(&s->mu);
    while (!s->stopping && !sp->off_errno && sp->n < SK_SPOOL_SPARES) {
        pthread_mutex_unlock(&s->mu);
        int fd = openat(s->msgdir_fd, ".", O_RDWR | O_TMPFILE | O_CLOEXEC, 0600);
        int e = errno;
        pthread_mutex_lock(&s->mu);
        if (fd >= 0) {
            sp->fd[sp->n++] = fd;
            continue;
        }
        /* ENOSPC may pass; anything else (no O_TMPFILE support) will not:
         * stop making them and let sk_spool_create_file use openat. */
        if (e != ENOSPC && e != EDQUOT) sp->off_errno = e;
        if (sp->off_errno) break;
        pthread_mutex_unlock(&s->mu);
        int stopping = sk_workers_pause(s->workers, NULL, FILLER_RETRY_MS);
        pthread_mutex_lock(&s->mu);
        if (stopping) break;
    }
    /* From here on taking a spare queues the job again. */
    sp->filling = 0;
    pthread_mutex_unlock(&s->mu);
}

/* Queue the filler unless it is queued or running (mu held). */
static void kick_filler(sk_spool *s)
{
    sk_spool_spares *sp = &s->spare;
    if (sp->started && !sp->filling && !sp->off_errno && sp->n < SK_SPOOL_SPARES &&
        sk_workers_submit(s->workers, &sp->job) == SK_OK)
        sp->filling = 1;
}

void sk_spool_spares_start(sk_spool *s)
{
    sk_job_init(&s->spare.job, fill_run, NULL, s);
    pthread_mutex_lock(&s->mu);
    s->spare.started = 1;
    kick_filler(s);
    pthread_mutex_unlock(&s->mu);
}

void sk_spool_spares_stop(sk_spool *s)
{
    s->spare.started = 0;
    for (size_t i = 0; i < s->spare.n; i++) close(s->spare.fd[i]);
    s->spare.n = 0;
}

void sk_spool_spares_log_off(sk_spool *s)
{
    if (!s->spare.started || s->spare.logged) return;
    pthread_mutex_lock(&s->mu);
    int e = s->spare.off_errno;
    pthread_mutex_unlock(&s->mu);
    if (e) {
        s->spare.logged = 1;
        sk_log(&s->opts.log, SK_LOG_WARN, "- spool spare-files=off error=\"%s\"", strerror(e));
    }
}

/* A reused file, or -1 with *err set (an ID collision, a failed open) or
 * not (no reusable file). */
static int take_reused(sk_spool *s, const char *name, sk_err *err)
{
    for (;;) {
        pthread_mutex_lock(&s->mu);
        int have = s->reuse.n > 0;
        char old[SK_SPOOL_NAME_SIZE];
        if (have) sk_spool_name(old, s->reuse.ids[--s->reuse.n], SK_SPOOL_REUSE_EXT);
        pthread_mutex_unlock(&s->mu);
        if (!have) return -1;
        /* NOREPLACE keeps IDs unique as O_EXCL does in openat. */
        if (renameat2(s->msgdir_fd, old, s->msgdir_fd, name, RENAME_NOREPLACE) == 0) {
            /* The file keeps the old bytes until sk_spool_msgfile_write
             * cuts it to the new length. Recovery's trailer, size and
             * CRC-32C checks catch a crash in between. */
            int fd = openat(s->msgdir_fd, name, O_WRONLY | O_CLOEXEC);
            if (fd >= 0) {
                pthread_mutex_lock(&s->mu);
                s->reuse.reused++;
                pthread_mutex_unlock(&s->mu);
                return fd;
            }
            *err = sk_err_from_errno(errno, SK_FILE_WRITE);
            unlinkat(s->msgdir_fd, name, 0);
            return -1;
        }
        int e = errno;
        unlinkat(s->msgdir_fd, old, 0);
        if (e == EEXIST) {
            *err = SK_ERR_IO;
            return -1;
        }
        /* Anything else: drop that file and try the next, or create. */
    }
}

/* A spare file linked under name, or -1 with *err set (an ID collision, no
 * space) or not (no spare ready, or spares just turned off). The spare is
 * linked through /proc/self/fd because linkat's AT_EMPTY_PATH needs
 * CAP_DAC_READ_SEARCH. */
static int take_spare(sk_spool *s, const char *name, sk_err *err)
{
    int fd = -1;
    pthread_mutex_lock(&s->mu);
    if (s->spare.n) fd = s->spare.fd[--s->spare.n];
    kick_filler(s);
    pthread_mutex_unlock(&s->mu);
    if (fd < 0) return -1;
    char proc[64];
    snprintf(proc, sizeof proc, "/proc/self/fd/%d", fd);
    if (linkat(AT_FDCWD, proc, s->msgdir_fd, name, AT_SYMLINK_FOLLOW) == 0) {
        pthread_mutex_lock(&s->mu);
        s->spare.used++;
        pthread_mutex_unlock(&s->mu);
        return fd;
    }
    int e = errno;
    close(fd);
    if (e == EEXIST || e == ENOSPC || e == EDQUOT) {
        *err = e == EEXIST ? SK_ERR_IO : sk_err_from_errno(e, SK_FILE_WRITE);
        return -1;
    }
    /* No /proc (a chroot) or a file system that refuses: the message
     * still gets its file from openat; spares stop (logged on the loop
     * thread). */
    pthread_mutex_lock(&s->mu);
    s->spare.off_errno = e;
    pthread_mutex_unlock(&s->mu);
    return -1;
}

/* Both pools keep inode allocation, the costliest part of a message's file
 * work on a busy ext4, off the path to the 250 (docs/queue.md "Reused
 * files"). */
int sk_spool_create_file(sk_spool *s, const char *name, int spare_ok, int *reused, sk_err *err)
{
    *err = SK_OK;
    int fd = take_reused(s, name, err);
    *reused = fd >= 0;
    if (fd >= 0 || *err) return fd;
    if (s->spare.started && spare_ok) {
        fd = take_spare(s, name, err);
        if (fd >= 0 || *err) return fd;
    }
    fd = openat(s->msgdir_fd, name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) *err = errno == EEXIST ? SK_ERR_IO : sk_err_from_errno(errno, SK_FILE_WRITE);
    return fd;
}

/* The name ID.msg is gone at once (crash semantics as for unlink), and
 * ID.free tells recovery that a record of the message still in the
 * journal is of a removed message, not of one whose file a crash lost. */
int sk_spool_drop_file(sk_spool *s, const char *id, int *pooled)
{
    char name[SK_SPOOL_NAME_SIZE], free_name[SK_SPOOL_NAME_SIZE];
    sk_spool_name(name, id, SK_SPOOL_BODY_EXT);
    sk_spool_name(free_name, id, SK_SPOOL_REUSE_EXT);
    *pooled = 0;
    if (renameat2(s->msgdir_fd, name, s->msgdir_fd, free_name, RENAME_NOREPLACE)) {
        if (errno == ENOENT) return -1;
        /* EEXIST cannot happen with unique IDs; anything else: unlink. */
        return unlinkat(s->msgdir_fd, name, 0);
    }
    pthread_mutex_lock(&s->mu);
    if (s->reuse.n + s->reuse.nfreed < SK_SPOOL_REUSE_MAX) {
        memcpy(s->reuse.freed[s->reuse.nfreed++], id, SK_SPOOL_ID_SIZE);
        *pooled = 1;
    }
    pthread_mutex_unlock(&s->mu);
    return 0;
}

void sk_spool_freed_to_reuse(sk_spool *s, size_t k)
{
    sk_spool_reuse *r = &s->reuse;
    memcpy(r->ids + r->n, r->freed, k * sizeof *r->freed);
    r->n += k;
    r->nfreed -= k;
    memmove(r->freed, r->freed + k, r->nfreed * sizeof *r->freed);
}

void sk_spool_reuse_stats(sk_spool *s, size_t *pool, size_t *reused)
{
    pthread_mutex_lock(&s->mu);
    *pool = s->reuse.n;
    *reused = s->reuse.reused;
    pthread_mutex_unlock(&s->mu);
}

void sk_spool_spare_stats(sk_spool *s, size_t *ready, size_t *used, int *off_errno)
{
    pthread_mutex_lock(&s->mu);
    *ready = s->spare.n;
    *used = s->spare.used;
    *off_errno = s->spare.started ? s->spare.off_errno : -1;
    pthread_mutex_unlock(&s->mu);
}
