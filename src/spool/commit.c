/* Group commit (docs/queue.md "Durability order"): the commit job on the
 * spool's worker group, one barrier per group, the done callbacks on the
 * loop; removals' barriers. */
#include "spool/spool_impl.h"

#include <errno.h>
#include <event2/event.h>
#include <string.h>
#include <unistd.h>

/* How long a removal may wait for its directory fsync: a group commit in
 * that time carries it for free (its barrier covers the directory), so a
 * steady relay pays no barrier for removals at all. A removal lost in a
 * crash only brings back a message whose recipients are done
 * (docs/queue.md "No duplicate deliveries"). */
#define REMOVE_SYNC_DELAY_MS 100

/* Phase 3, after the barrier: the message is already durable (as ID.new,
 * which recovery keeps when complete); the rename makes it visible to
 * sk_spool_list and readers. Its own durability comes with a later
 * barrier, and recovery redoes it if a crash loses it. */
static void rename_new(sk_spool_msg *m)
{
    if (m->err) return;
    if (sk_spool_rename(m->s, m->id, SK_SPOOL_NEW_EXT, SK_SPOOL_BODY_EXT, 1))
        m->err = errno == EEXIST ? SK_ERR_IO : sk_err_from_errno(errno, SK_FILE_WRITE);
}

/* Commit a group: write every message file, then ONE barrier for all of
 * them (the mode's: a syncfs, the journal's fdatasync, or per-file
 * fdatasyncs and one directory fsync), then the renames. If the barrier
 * fails, no message of the group is acknowledged. Failed messages are
 * removed. dir_dirty: the barrier must also cover removals. Returns the
 * barrier's result. */
static sk_err commit_batch(sk_spool *s, sk_spool_msg *batch, int dir_dirty)
{
    const sk_spool_sync_ops *sync = s->sync;
    sk_err barrier;
    if (sync->commit_early && sync->commit_early(s, batch, dir_dirty, &barrier)) return barrier;
    for (sk_spool_msg *m = batch; m; m = m->next) {
        sk_spool_msg_write_file(m);
        if (!m->err && sync->file_written) sync->file_written(s, m);
    }
    barrier = sync->barrier(s, batch, dir_dirty);
    for (sk_spool_msg *m = batch; m; m = m->next) {
        /* The state on disk is unknown after a failed barrier: take every
         * message back out so none is delivered. */
        if (!m->err) m->err = barrier;
        rename_new(m);
        if (m->err) sk_spool_msg_unlink(m);
        if (m->fd >= 0) {
            close(m->fd);
            m->fd = -1;
        }
    }
    return barrier;
}

/* The steps of reporting a message on the loop thread: its done callback
 * (the 250), then the listener (the queue), then it is freed. A journaled
 * message gets the first when its record is durable and the rest when
 * its file is written. */
enum { FINISH_DONE = 1, FINISH_STORED = 2, FINISH_ALL = 3 };

static void finish(sk_spool_msg *m, int steps)
{
    sk_spool *s = m->s;
    sk_spool_spares_log_off(s);
    s->finishing = m->err ? NULL : m;
    if (steps & FINISH_DONE) {
        if (m->err)
            sk_log(&s->opts.log, SK_LOG_ERR, "%s spool commit-failed error=\"%s\"", m->id,
                   sk_strerror(m->err));
        else
            /* The daemon logs the message as queued right after. */
            sk_log(&s->opts.log, SK_LOG_DEBUG, "%s spool committed octets=%llu rcpts=%zu", m->id,
                   (unsigned long long)m->octets, m->env->nrcpts);
        if (m->done) m->done(m->ctx, m->err, m->err ? NULL : m->id);
    }
    if ((steps & FINISH_STORED) && !m->err && s->listener) s->listener(s->listener_ctx, m->env);
    s->finishing = NULL;
    if (steps & FINISH_STORED) sk_spool_msg_free(m);
}

/* One post reports whatever finished until the loop runs it. A failed
 * post (the group has stopped: sk_spool_free) leaves it to sk_spool_free's
 * last sk_spool_run_finished. */
void sk_spool_wake_loop(sk_spool *s)
{
    if (!s->reported && sk_workers_post(s->workers, &s->report) == SK_OK) s->reported = 1;
}

/* Queue the commit job unless it is queued or running (mu held). It is
 * refused only once the group has stopped, when nothing calls this. */
static void kick(sk_spool *s)
{
    if (!s->committing && sk_workers_submit(s->workers, &s->commit_job) == SK_OK) s->committing = 1;
}

/* Removals waiting for a barrier, taken by the committer (with mu held)
 * before the barrier that covers them. */
typedef struct removals {
    int dirty;
    size_t freed; /* the first freed files: reusable after the barrier */
    sk_spool_orphan *orphans;
    size_t norphans;
} removals;

static removals take_removals(sk_spool *s)
{
    /* freed may be ahead of rm.dirty (sk_spool_remove sets it after the
     * rename), or left by a failed barrier: it needs one too. */
    removals r = {s->rm.dirty || s->reuse.nfreed, s->reuse.nfreed, s->rm.orphans, s->rm.norphans};
    s->rm.dirty = 0;
    s->rm.orphans = NULL;
    s->rm.norphans = s->rm.cap = 0;
    return r;
}

/* The removals of the orphans' message files are durable now: their saved
 * envelopes can go, and their files unless pooled. */
static void unlink_orphans(sk_spool *s, const sk_spool_orphan *o, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        sk_spool_unlink(s, o[i].id, SK_SPOOL_ENV_EXT);
        if (!o[i].pooled) sk_spool_unlink(s, o[i].id, SK_SPOOL_REUSE_EXT);
    }
}

/* After the barrier (mu not held): the saved envelopes of the removed
 * messages go and their files become reusable; after a failure they stay
 * in freed for a later barrier, and their ID.env for recovery. */
static void settle_removals(sk_spool *s, removals *r, sk_err barrier)
{
    if (!barrier) unlink_orphans(s, r->orphans, r->norphans);
    sk_free(r->orphans);
    pthread_mutex_lock(&s->mu);
    if (!barrier) sk_spool_freed_to_reuse(s, r->freed);
    if (barrier && r->dirty) s->rm.sync_failed = 1;
    pthread_mutex_unlock(&s->mu);
}

/* The commit job: groups until none is pending, and removals once due.
 * Messages that arrive meanwhile make the next group: the gathering of a
 * group commit is the time the last one took. */
static void commit_run(void *arg)
{
    sk_spool *s = arg;
    /* When a group's barrier does not cover the directory (the
     * journal's), removals get their own after at most the delay. */
    int covered = s->sync->barrier_covers_removals;
    pthread_mutex_lock(&s->mu);
    for (;;) {
        uint64_t due = s->rm.since_ms + REMOVE_SYNC_DELAY_MS, now = sk_now_ms();
        int removals_due = s->rm.dirty && (s->stopping || now >= due);
        if (!s->pending && !s->rm.dirty) break;
        if (!s->pending && !removals_due) {
            /* Only removals: give a group the chance to carry them. */
            s->commit_pausing = 1;
            pthread_mutex_unlock(&s->mu);
            (void)sk_workers_pause(s->workers, &s->commit_job, due - now);
            pthread_mutex_lock(&s->mu);
            s->commit_pausing = 0;
            continue;
        }
        if (!s->pending || (!covered && removals_due)) {
            /* A barrier for removals alone. */
            removals r = take_removals(s);
            pthread_mutex_unlock(&s->mu);
            sk_err e = s->sync->sync_removals(s);
            settle_removals(s, &r, e);
            pthread_mutex_lock(&s->mu);
            continue;
        }
        /* Removals before this point are covered by the group's barrier,
         * when it covers them. */
        removals r = covered ? take_removals(s) : (removals){0};
        /* Take everything pending now (up to max_batch). */
        sk_spool_msg *batch = s->pending, *last = batch;
        size_t n = 1;
        while (last->next && n < s->opts.max_batch) {
            last = last->next;
            n++;
        }
        s->pending = last->next;
        if (!s->pending) s->pending_tail = &s->pending;
        last->next = NULL;
        pthread_mutex_unlock(&s->mu);

        sk_err barrier = commit_batch(s, batch, r.dirty);
        settle_removals(s, &r, barrier);

        pthread_mutex_lock(&s->mu);
        sk_spool_materialize_later(s, batch);
        *s->finished_tail = batch;
        s->finished_tail = &last->next;
        sk_spool_wake_loop(s);
    }
    /* From here on a new message or a due removal queues the job again. */
    s->committing = 0;
    pthread_mutex_unlock(&s->mu);
}

void sk_spool_run_finished(sk_spool *s)
{
    /* Both lists at once: a message's file is written only after its
     * record, so when it is in stored its done step is in list or was
     * run before. */
    pthread_mutex_lock(&s->mu);
    s->reported = 0;
    sk_spool_msg *list = s->finished;
    s->finished = NULL;
    s->finished_tail = &s->finished;
    int mat_errno;
    sk_spool_msg *stored = sk_spool_materialized_take(s, &mat_errno);
    pthread_mutex_unlock(&s->mu);
    if (mat_errno)
        sk_log(&s->opts.log, SK_LOG_ERR,
               "- spool materialize-failed error=\"%s\" (kept in the journal; trying again)",
               strerror(mat_errno));
    while (list) {
        sk_spool_msg *next = list->next;
        finish(list, list->journaled ? FINISH_DONE : FINISH_ALL);
        list = next;
    }
    while (stored) {
        sk_spool_msg *next = stored->mnext;
        finish(stored, FINISH_STORED);
        stored = next;
    }
}

/* The loop thread, when the report posted by a job is drained. */
static void on_report(void *arg, sk_job_end end)
{
    (void)end;
    sk_spool_run_finished(arg);
}

sk_err sk_spool_committer_start(sk_spool *s, struct event_base *base, sk_error *err)
{
    /* A thread for the committer, one for the spare-file filler, and one
     * for the materializer when there is a journal: each has at most one
     * job at a time, so none waits for another's thread (the committer may
     * wait in a checkpoint for the materializer). */
    unsigned threads = 2 + (s->journal.fd >= 0);
    sk_error e;
    s->workers = sk_workers_new(&(sk_workers_opts){.name = "spool", .threads = threads}, &e);
    if (!s->workers) return sk_error_set(err, e.err, SK_STEP_NONE, "spool: %s", e.text);
    sk_job_init(&s->commit_job, commit_run, NULL, s);
    sk_job_init(&s->report, NULL, on_report, s);
    s->ev = event_new(base, sk_workers_fd(s->workers), EV_READ | EV_PERSIST, sk_workers_drain_cb,
                      s->workers);
    if (!s->ev || event_add(s->ev, NULL))
        return sk_error_set(err, SK_ERR_NOMEM, SK_STEP_NONE, "cannot add event");
    return SK_OK;
}

void sk_spool_committer_stop(sk_spool *s)
{
    if (!s->workers) return;
    pthread_mutex_lock(&s->mu);
    /* Removals are due now (the job takes them with s->stopping set; the
     * stop ends a pause). */
    s->stopping = 1;
    if (s->pending || s->rm.dirty) kick(s);
    pthread_mutex_unlock(&s->mu);
    if (sk_workers_stop(s->workers, SK_WORKERS_FINISH, SK_WORKERS_NO_LIMIT, NULL)) {
        /* Without a limit it returns once every thread is joined. */
    }
}

void sk_spool_commit_msg(sk_spool_msg *m)
{
    sk_spool *s = m->s;
    if (!s->workers) {
        (void)commit_batch(s, m, 0);
        finish(m, FINISH_ALL);
        return;
    }
    pthread_mutex_lock(&s->mu);
    if (m->err) {
        /* Already failed: straight to the loop, nothing to make durable. */
        sk_spool_msg_unlink(m);
        if (m->fd >= 0) close(m->fd);
        m->fd = -1;
        *s->finished_tail = m;
        s->finished_tail = &m->next;
        sk_spool_wake_loop(s);
    } else {
        *s->pending_tail = m;
        s->pending_tail = &m->next;
        if (s->commit_pausing)
            sk_workers_wake(s->workers, &s->commit_job);
        else
            kick(s);
    }
    pthread_mutex_unlock(&s->mu);
}

/* With the committer, the loop thread does not wait for the disk: the
 * directory fsync comes with its next group (or its own once the delay is
 * over), and ID.env is unlinked after it. Losing the removal in a crash only brings back a
 * message whose recipients are done (with its last saved envelope). */
sk_err sk_spool_commit_removal(sk_spool *s, const char *id, int pooled, sk_error *err)
{
    if (!s->workers) {
        sk_err e = s->sync->sync_removals(s);
        if (e) return sk_error_set(err, e, SK_STEP_NONE, "cannot make the removal durable");
        sk_spool_freed_to_reuse(s, s->reuse.nfreed); /* no other thread: mu not needed */
        sk_spool_orphan o = {.pooled = pooled};
        memcpy(o.id, id, SK_SPOOL_ID_SIZE);
        unlink_orphans(s, &o, 1);
        return SK_OK;
    }
    pthread_mutex_lock(&s->mu);
    sk_spool_removals *rm = &s->rm;
    /* Out of memory: the ID.env (and ID.free) stay until recovery
     * removes them. */
    if (!sk_array_grow(&rm->orphans, &rm->cap, rm->norphans + 1, sizeof *rm->orphans,
                       SK_ARRAY_UNBOUNDED)) {
        memcpy(rm->orphans[rm->norphans].id, id, SK_SPOOL_ID_SIZE);
        rm->orphans[rm->norphans++].pooled = pooled;
    }
    if (!rm->dirty) rm->since_ms = sk_now_ms();
    rm->dirty = 1;
    int failed = rm->sync_failed;
    rm->sync_failed = 0;
    /* A group within the delay carries it; else the job, pausing until
     * then, makes a barrier of its own. */
    kick(s);
    pthread_mutex_unlock(&s->mu);
    if (failed)
        sk_log(&s->opts.log, SK_LOG_ERR,
               "- spool remove-sync-failed (an earlier removal may come back after a crash)");
    return SK_OK;
}
