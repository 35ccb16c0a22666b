/* The three ways a group is made durable (sk_spool_sync, docs/queue.md
 * "Durability order"), one table of operations each, chosen at open. */
#include "spool/spool_impl.h"

#include <fcntl.h>

/* ---- shared steps ---- */

uint64_t sk_spool_journal_size(const sk_spool *s)
{
    return s->opts.journal_octets ? s->opts.journal_octets : SK_SPOOL_JOURNAL_OCTETS;
}

/* One syncfs makes every message file written so far durable, and
 * removals too; then the journal (when there is one) starts a new
 * generation, which retires all its records. Until the new header is on
 * disk, recovery may still replay records of messages removed since: the
 * removal counts as lost in the crash. */
static sk_err checkpoint(sk_spool *s)
{
    /* Every journaled message's file written first: the syncfs below must
     * cover it before its record is retired. */
    sk_err e = sk_spool_materializer_wait(s);
    if (e) return e;
    e = sk_spool_sync_fs(&s->hooks, s->msgdir_fd);
    if (e) {
        s->journal.need_reset = 1;
        return e;
    }
    if (s->journal.fd < 0) return SK_OK;
    return sk_journal_new_generation(&s->journal, sk_spool_journal_size(s));
}

static sk_err checkpoint_at_open(sk_spool *s, sk_error *err)
{
    sk_err e = checkpoint(s);
    if (e)
        return sk_error_set(err, e, SK_STEP_NONE, "cannot checkpoint the journal %s/%s: %s", s->dir,
                            SK_JOURNAL_FILE, sk_strerror(e));
    return SK_OK;
}

/* Whether any message of the group is still on its way (its file written). */
static int group_ok(const sk_spool_msg *batch)
{
    for (const sk_spool_msg *m = batch; m; m = m->next)
        if (!m->err) return 1;
    return 0;
}

static sk_err sync_dir(sk_spool *s)
{
    return sk_spool_sync_dir(&s->hooks, s->msgdir_fd);
}

/* ---- SK_SPOOL_SYNC_LOG: the journal ---- */

/* The journal is kept for appends: made when missing, or, when it was
 * there, a new generation at every start, replayed or not: a crash in the
 * middle of an append may have left records of the current generation
 * past the first torn one (pages reach the disk in any order), which later
 * appends must not be followed by. */
static sk_err log_journal_ready(sk_spool *s, int dir_fd, size_t replayed, sk_error *err)
{
    (void)replayed;
    if (s->journal.fd >= 0) return checkpoint_at_open(s, err);
    sk_err e = sk_journal_open(&s->journal, dir_fd, sk_spool_journal_size(s));
    if (e == SK_ERR_NOSPACE && s->journal.fd < 0) {
        /* No room to make one (a tiny file system): every group gets a
         * syncfs instead (log_barrier), as with SK_SPOOL_SYNC_FS; the next
         * start tries again. */
        sk_log(&s->opts.log, SK_LOG_WARN, "- spool journal=off error=\"%s\" octets=%llu",
               sk_strerror(e), (unsigned long long)sk_spool_journal_size(s));
        return SK_OK;
    }
    if (e)
        return sk_error_set(err, e, SK_STEP_NONE, "cannot open the journal %s/%s: %s", s->dir,
                            SK_JOURNAL_FILE, sk_strerror(e));
    return SK_OK;
}

static void log_start(sk_spool *s)
{
    if (s->journal.fd >= 0) sk_spool_materializer_start(s);
}

/* The octets the group's records take in the journal, or 0 when the group
 * cannot go there: no journal, a body that did not stay in memory whole
 * (over 64 KiB; its file was written during DATA), a message whose file
 * is written already while the materializer would write it again, or more
 * than the journal holds. */
static uint64_t journal_octets(const sk_spool *s, const sk_spool_msg *batch)
{
    if (s->journal.fd < 0) return 0;
    uint64_t total = 0;
    for (const sk_spool_msg *m = batch; m; m = m->next) {
        if (m->err) continue;
        if (m->wbuf.len != m->octets || (s->mat.started && m->fd >= 0)) return 0;
        total += sk_journal_record_octets(m->octets + m->envtext.len + SK_SPOOL_TRAILER_OCTETS);
    }
    return total <= s->journal.size - SK_JOURNAL_HEAD_OCTETS ? total : 0;
}

/* Every message of the group as one record (the bytes of its file), then
 * one fdatasync. A checkpoint first when the records do not fit after the
 * tail, or an earlier append failed. */
static sk_err journal_group(sk_spool *s, sk_spool_msg *batch, uint64_t octets)
{
    sk_journal *j = &s->journal;
    if (j->need_reset || octets > j->size - j->tail) {
        sk_err e = checkpoint(s);
        if (e) return e;
    }
    sk_buf_reset(&s->jbuf);
    for (sk_spool_msg *m = batch; m; m = m->next) {
        if (m->err) continue;
        char trailer[SK_SPOOL_TRAILER_OCTETS + 1];
        struct iovec parts[SK_SPOOL_MSGFILE_PARTS];
        sk_spool_msgfile_parts(m, trailer, parts);
        sk_err e = sk_journal_record(j, m->id, parts, SK_SPOOL_MSGFILE_PARTS, &s->jbuf);
        if (e) return e;
    }
    /* A failure sets need_reset: the records may be on disk, so the next
     * group starts a new generation first (a crash before that may bring
     * these refused messages back, as with a failed syncfs). */
    return sk_journal_append(j, s->jbuf.data, s->jbuf.len);
}

/* With the materializer, a group that fits the journal is made durable by
 * its records alone; its files are written after the 250 (materialize.c),
 * off the path every session waits on. */
static int log_commit_early(sk_spool *s, sk_spool_msg *batch, int dir_dirty, sk_err *barrier)
{
    if (!s->mat.started || dir_dirty) return 0;
    uint64_t octets = journal_octets(s, batch);
    if (!octets) return 0;
    *barrier = journal_group(s, batch, octets);
    for (sk_spool_msg *m = batch; m; m = m->next) {
        if (!m->err) m->err = *barrier;
        m->journaled = !m->err;
    }
    return 1;
}

/* The files are written: without a materializer (no event base) the group
 * still goes to the journal, without a sync of the files; any other group
 * gets a syncfs. */
static sk_err log_barrier(sk_spool *s, sk_spool_msg *batch, int dir_dirty)
{
    int any_ok = group_ok(batch);
    uint64_t octets = any_ok && !dir_dirty ? journal_octets(s, batch) : 0;
    if (octets) return journal_group(s, batch, octets);
    return any_ok || dir_dirty ? sk_spool_sync_fs(&s->hooks, s->msgdir_fd) : SK_OK;
}

/* A group's barrier (the journal's fdatasync) does not cover the
 * directory: removals get their own, a checkpoint, which also retires the
 * removed message's record. */
static sk_err log_sync_removals(sk_spool *s)
{
    return checkpoint(s);
}

/* A clean stop leaves no record to replay at the next start; a journaled
 * message whose file could not be written stays for recovery. */
static void log_close(sk_spool *s, size_t unwritten)
{
    if (s->journal.fd >= 0 && !unwritten &&
        (s->journal.tail > SK_JOURNAL_HEAD_OCTETS || s->journal.need_reset) && checkpoint(s))
        sk_log(&s->opts.log, SK_LOG_WARN, "- spool checkpoint-failed at=stop");
}

static const sk_spool_sync_ops sync_log = {
    .journal_ready = log_journal_ready,
    .start = log_start,
    .commit_early = log_commit_early,
    .barrier = log_barrier,
    .barrier_covers_removals = 0,
    .sync_removals = log_sync_removals,
    .close = log_close,
};

/* ---- SK_SPOOL_SYNC_FS and SK_SPOOL_SYNC_FILES ---- */

/* A journal left by a run with SK_SPOOL_SYNC_LOG was replayed; its records
 * are retired (their files are durable after the checkpoint's syncfs) and
 * it is not used. */
static sk_err files_journal_ready(sk_spool *s, int dir_fd, size_t replayed, sk_error *err)
{
    (void)dir_fd;
    if (s->journal.fd < 0) return SK_OK;
    sk_err e = replayed ? checkpoint_at_open(s, err) : SK_OK;
    if (!e) sk_journal_close(&s->journal);
    return e;
}

/* One syncfs for the whole group: its files' data and directory entries,
 * and the removals before it. */
static sk_err fs_barrier(sk_spool *s, sk_spool_msg *batch, int dir_dirty)
{
    return group_ok(batch) || dir_dirty ? sk_spool_sync_fs(&s->hooks, s->msgdir_fd) : SK_OK;
}

static const sk_spool_sync_ops sync_fs = {
    .journal_ready = files_journal_ready,
    .barrier = fs_barrier,
    .barrier_covers_removals = 1,
    .sync_removals = sync_dir,
};

/* Only a hint to start the data writes (and ext4's block allocation) for
 * the whole group before the first fdatasync. */
static void files_written(sk_spool *s, sk_spool_msg *m)
{
    (void)s;
    sync_file_range(m->fd, 0, 0, SYNC_FILE_RANGE_WRITE);
}

/* Each file's data durable, then one fsync of the directory. On a
 * journalling file system the first fdatasync commits the transaction that
 * holds every file of the group, so the others mostly wait for data
 * already written. */
static sk_err files_barrier(sk_spool *s, sk_spool_msg *batch, int dir_dirty)
{
    for (sk_spool_msg *m = batch; m; m = m->next)
        if (!m->err) m->err = sk_spool_sync_file(&s->hooks, m->fd);
    return group_ok(batch) || dir_dirty ? sync_dir(s) : SK_OK;
}

static const sk_spool_sync_ops sync_files = {
    .journal_ready = files_journal_ready,
    .file_written = files_written,
    .barrier = files_barrier,
    .barrier_covers_removals = 1,
    .sync_removals = sync_dir,
};

/* commit.c, recover.c and store.c call through these tables, so no other
 * file asks which mode the spool is in. A mode without a table here fails
 * sk_spool_open. */
static const sk_spool_sync_ops *const modes[] = {
    [SK_SPOOL_SYNC_LOG] = &sync_log,
    [SK_SPOOL_SYNC_FS] = &sync_fs,
    [SK_SPOOL_SYNC_FILES] = &sync_files,
};

const sk_spool_sync_ops *sk_spool_sync_ops_for(sk_spool_sync mode)
{
    return (unsigned)mode < sizeof modes / sizeof modes[0] ? modes[mode] : NULL;
}
