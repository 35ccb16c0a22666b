/* The materializer (docs/queue.md "The journal"): the files of journaled
 * messages, written after their 250 by a job of the spool's worker group,
 * off the path to it. */
#include "spool/spool_impl.h"

#include <errno.h>
#include <fcntl.h>
#include <time.h>
#include <unistd.h>

/* The materializer makes the files it wrote durable every this many
 * (materializer_main says why). */
#define MATERIALIZE_SYNC_FILES 8
/* A failed file write of a journaled message is tried again after this. */
#define MATERIALIZE_RETRY_MS 1000
/* How long a checkpoint waits for the files of journaled messages (their
 * records must not be retired before). */
#define CHECKPOINT_WAIT_MS 10000

/* Write the file of a journaled message: the same bytes as its record,
 * straight under its final name (a crash before the next checkpoint
 * leaves a torn or missing file, which recovery writes again from the
 * record). */
static sk_err materialize(sk_spool_msg *m)
{
    sk_spool *s = m->s;
    char name[SK_SPOOL_NAME_SIZE];
    sk_spool_name(name, m->id, SK_SPOOL_BODY_EXT);
    sk_err e = SK_OK;
    int reused;
    /* Not a spare: this thread is off the path to the 250 and can
     * allocate the inode itself; spares stay for the files made on that
     * path (large bodies during DATA, groups that do not go to the
     * journal), and the filler mostly has nothing to do. */
    int fd = sk_spool_create_file(s, name, 0, &reused, &e);
    if (fd < 0) return e;
    e = sk_spool_msgfile_write(m, fd, reused);
    if (close(fd) && !e) e = sk_err_from_errno(errno, SK_FILE_WRITE);
    if (e) unlinkat(s->msgdir_fd, name, 0);
    return e;
}

/* Files for journaled messages, in order (only with SK_SPOOL_SYNC_LOG and
 * an event base), while there are some to write. Each was acknowledged
 * once its record was durable; the queue hears of it once its file is
 * here, so delivery never looks for a file that is not there yet. A
 * failure (no space, EIO) keeps the message (it is durable in the
 * journal) and tries again after a pause; at stop once more, then it is
 * left to recovery. */
static void materialize_run(void *arg)
{
    sk_spool *s = arg;
    sk_spool_mat *mt = &s->mat;
    int stop_tries = 0;
    pthread_mutex_lock(&s->mu);
    while (mt->q) {
        sk_spool_msg *list = mt->q;
        mt->q = NULL;
        mt->tail = &mt->q;
        pthread_mutex_unlock(&s->mu);
        sk_spool_msg *done = NULL, **done_tail = &done, *failed = list;
        size_t n = 0;
        int err = 0;
        while (list) {
            sk_spool_msg *m = list;
            sk_err e = materialize(m);
            if (e) {
                err = e == SK_ERR_NOSPACE ? ENOSPC : EIO;
                break;
            }
            list = m->mnext;
            m->mnext = NULL;
            *done_tail = m;
            done_tail = &m->mnext;
            n++;
        }
        failed = list;
        /* Every few files, a syncfs (docs/queue.md "The journal"): the
         * files' data and inodes go to disk here, off the path to the
         * 250, so the journal's fdatasync and the next checkpoint find
         * little else to wait for; and ext4 without a journal skips inodes
         * freed in the last 5 minutes while their inode table block is
         * dirty (recently_deleted()), which makes creating files costly
         * unless those blocks are written out often. */
        mt->since_sync += n;
        if (mt->since_sync >= MATERIALIZE_SYNC_FILES) {
            if (sk_spool_sync_fs(&s->hooks, s->msgdir_fd)) {
                /* Does not matter: the checkpoint's own syncfs is what
                 * counts. */
            }
            mt->since_sync = 0;
        }
        pthread_mutex_lock(&s->mu);
        mt->failing = failed != NULL;
        if (done) {
            *mt->written_tail = done;
            mt->written_tail = done_tail;
            mt->unwritten -= n;
            pthread_cond_broadcast(&mt->done_cv);
            sk_spool_wake_loop(s);
        }
        if (failed) {
            /* Back to the front, in order, and a pause before the next
             * try; at stop they stay for recovery to write. */
            sk_spool_msg **t = &failed;
            while (*t) t = &(*t)->mnext;
            *t = mt->q;
            if (!mt->q) mt->tail = t;
            mt->q = failed;
            if (mt->err_no != err) mt->logged = 0;
            mt->err_no = err;
            pthread_mutex_unlock(&s->mu);
            /* At stop, one more try (at once), then recovery. */
            int stopping = sk_workers_pause(s->workers, NULL, MATERIALIZE_RETRY_MS);
            pthread_mutex_lock(&s->mu);
            if (stopping && stop_tries++) break;
        }
    }
    /* From here on a journaled message queues the job again. */
    mt->running = 0;
    pthread_mutex_unlock(&s->mu);
}

void sk_spool_materializer_start(sk_spool *s)
{
    /* Without it, journaled groups get their files before the barrier, as
     * without an event base. */
    sk_job_init(&s->mat.job, materialize_run, NULL, s);
    s->mat.started = s->workers != NULL;
}

size_t sk_spool_materializer_drop(sk_spool *s)
{
    size_t left = 0;
    while (s->mat.q) {
        /* Acknowledged and kept in the journal for recovery to write. */
        sk_spool_msg *m = s->mat.q;
        s->mat.q = m->mnext;
        sk_spool_msg_free(m);
        left++;
    }
    return left;
}

void sk_spool_materialize_later(sk_spool *s, sk_spool_msg *batch)
{
    for (sk_spool_msg *m = batch; m; m = m->next) {
        if (!m->journaled) continue;
        m->mnext = NULL;
        *s->mat.tail = m;
        s->mat.tail = &m->mnext;
        s->mat.unwritten++;
    }
    /* Refused only once the group has stopped, when no commit runs. */
    if (s->mat.q && !s->mat.running && sk_workers_submit(s->workers, &s->mat.job) == SK_OK)
        s->mat.running = 1;
}

sk_spool_msg *sk_spool_materialized_take(sk_spool *s, int *err_to_log)
{
    sk_spool_msg *written = s->mat.written;
    s->mat.written = NULL;
    s->mat.written_tail = &s->mat.written;
    *err_to_log = s->mat.logged ? 0 : s->mat.err_no;
    s->mat.logged = 1;
    return written;
}

sk_err sk_spool_materializer_wait(sk_spool *s)
{
    if (!s->mat.started) return SK_OK;
    uint64_t until = sk_now_ms() + CHECKPOINT_WAIT_MS;
    pthread_mutex_lock(&s->mu);
    while (s->mat.unwritten && !s->mat.failing && sk_now_ms() < until) {
        struct timespec ts = {(time_t)(until / 1000), (long)(until % 1000) * 1000000L};
        pthread_cond_timedwait(&s->mat.done_cv, &s->mu, &ts);
    }
    int behind = s->mat.unwritten > 0;
    pthread_mutex_unlock(&s->mu);
    return behind ? SK_ERR_TIMEOUT : SK_OK;
}
