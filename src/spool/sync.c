/* The journal's side of group commit (SK_SPOOL_SYNC_LOG, docs/queue.md
 * "The journal"): a group's records appended with one fdatasync, and the
 * checkpoint that retires them. */
#include "spool/spool_impl.h"

uint64_t sk_spool_journal_size(const sk_spool *s)
{
    return s->opts.journal_octets ? s->opts.journal_octets : SK_SPOOL_JOURNAL_OCTETS;
}

/* One syncfs makes every message file written so far durable, and
 * removals too; then the journal starts a new generation, which retires
 * all its records. Until the new header is on disk, recovery may still
 * replay records of messages removed since: the removal counts as lost in
 * the crash. */
sk_err sk_spool_checkpoint(sk_spool *s)
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

/* 0 for a body that did not stay in memory whole (over 64 KiB; its file
 * was written during DATA), for a message whose file the materializer
 * would race, or for more than the journal holds. */
uint64_t sk_spool_journal_octets(const sk_spool *s, const sk_spool_msg *batch)
{
    if (s->opts.sync != SK_SPOOL_SYNC_LOG || s->journal.fd < 0) return 0;
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
sk_err sk_spool_journal_group(sk_spool *s, sk_spool_msg *batch, uint64_t octets)
{
    sk_journal *j = &s->journal;
    if (j->need_reset || octets > j->size - j->tail) {
        sk_err e = sk_spool_checkpoint(s);
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
