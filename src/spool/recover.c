/* Recovery at open (docs/queue.md "Recovery"): replay the journal's live
 * records, then settle every file a crash can leave in msg/. */
#include "spool/spool_impl.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

typedef struct replay_ctx {
    sk_spool *s;
    size_t rewritten, removed;
} replay_ctx;

/* One live record of the journal: an acknowledged message, whose file
 * may have been lost or torn by a crash (it was not synced yet). Written
 * again from the record unless ID.msg holds exactly its bytes. */
static sk_err replay_record(void *ctx, const char *id, const char *content, size_t n)
{
    replay_ctx *r = ctx;
    sk_spool *s = r->s;
    int fd = sk_spool_open_msg_file(s, id, SK_SPOOL_BODY_EXT);
    if (fd >= 0) {
        int same = sk_spool_file_holds(fd, content, n);
        close(fd);
        if (same < 0) return SK_ERR_IO;
        if (same) return SK_OK;
    } else if (errno != ENOENT) {
        return sk_err_from_errno(errno, SK_FILE_WRITE);
    } else if (sk_spool_exists(s, id, SK_SPOOL_REUSE_EXT)) {
        /* Removed (sk_spool_drop_file) since: not brought back. */
        r->removed++;
        return SK_OK;
    }
    char name[SK_SPOOL_NAME_SIZE];
    sk_spool_name(name, id, SK_SPOOL_NEW_EXT);
    unlinkat(s->msgdir_fd, name, 0);
    fd = openat(s->msgdir_fd, name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) return sk_err_from_errno(errno, SK_FILE_WRITE);
    sk_err e = sk_spool_write_all(&s->hooks, fd, content, n);
    if (close(fd) && !e) e = sk_err_from_errno(errno, SK_FILE_WRITE);
    /* The checkpoint after the replay makes it durable. */
    if (!e && sk_spool_rename(s, id, SK_SPOOL_NEW_EXT, SK_SPOOL_BODY_EXT, 0))
        e = sk_err_from_errno(errno, SK_FILE_WRITE);
    if (e) {
        unlinkat(s->msgdir_fd, name, 0);
        return e;
    }
    sk_log(&s->opts.log, SK_LOG_INFO, "%s spool recover kept=journal-record", id);
    r->rewritten++;
    return SK_OK;
}

/* Before anything else in recovery: the journal's live records are
 * messages that were acknowledged, whose files may not be durable; they
 * are written again where needed, in every sync mode (the spool may have
 * been run with the journal before). Then the mode keeps the journal or
 * retires its records and closes it (journal_ready). */
static sk_err replay_journal(sk_spool *s, sk_error *err)
{
    int dfd = open(s->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0)
        return sk_error_set(err, sk_err_from_errno(errno, SK_FILE_WRITE), SK_STEP_NONE,
                            "cannot open %s: %s", s->dir, strerror(errno));
    sk_err e = sk_journal_open(&s->journal, dfd, 0);
    if (e) {
        close(dfd);
        return sk_error_set(err, e, SK_STEP_NONE, "cannot open the journal %s/%s: %s", s->dir,
                            SK_JOURNAL_FILE, sk_strerror(e));
    }
    replay_ctx r = {s, 0, 0};
    size_t n = 0;
    if (s->journal.fd >= 0) e = sk_journal_replay(&s->journal, replay_record, &r, &n);
    if (e) {
        close(dfd);
        return sk_error_set(err, e, SK_STEP_NONE, "cannot replay the journal %s/%s (kept): %s",
                            s->dir, SK_JOURNAL_FILE, sk_strerror(e));
    }
    e = s->sync->journal_ready(s, dfd, n, err);
    close(dfd);
    if (e) return e;
    if (n)
        sk_log(&s->opts.log, SK_LOG_INFO,
               "- spool journal replayed records=%zu rewritten=%zu removed=%zu", n, r.rewritten,
               r.removed);
    return SK_OK;
}

/* What recovery did, for its last log line and the directory fsync. */
typedef struct tally {
    size_t removed, kept, promoted;
} tally;

/* Why the envelope text in b does not describe a complete message whose
 * file is msgdir/ID.msg; NULL when it does. */
static const char *env_problem(const sk_spool *s, const char *id, const sk_buf *b)
{
    sk_spool_envelope *env;
    if (sk_spool_envelope_parse(b->data ? b->data : "", b->len, &env)) return "torn-envelope";
    const char *why = NULL;
    int fd = sk_spool_open_msg_file(s, id, SK_SPOOL_BODY_EXT);
    if (strcmp(env->id, id))
        why = "wrong-id";
    else
        why = sk_spool_msgfile_problem(fd, env, 1);
    if (fd >= 0) close(fd);
    sk_spool_envelope_free(env);
    return why;
}

/* 1. ID.new, a commit in flight: kept (renamed to ID.msg) only if its
 * envelope is complete and its body matches size and CRC-32C, since its
 * group may have been made durable and acknowledged; else removed. */
static sk_err recover_new(sk_spool *s, const char *id, tally *t, sk_error *err)
{
    /* Only what the file holds decides; an error of the moment (EIO,
     * ENOMEM, ENOSPC on the rename) fails the open and keeps the file,
     * which may hold an acknowledged message. */
    sk_err fail = SK_OK;
    int fail_errno = 0;
    int fd = sk_spool_open_msg_file(s, id, SK_SPOOL_NEW_EXT);
    sk_spool_envelope *env = NULL;
    const char *why = NULL;
    if (fd < 0) {
        fail_errno = errno;
        fail = errno == ENOENT ? SK_OK : sk_err_from_errno(errno, SK_FILE_WRITE);
        why = "gone";
    }
    sk_err te = fd < 0 ? SK_OK : sk_spool_msgfile_envelope(fd, id, &env);
    if (te == SK_ERR_IO || te == SK_ERR_NOMEM) {
        fail = te;
        fail_errno = te == SK_ERR_NOMEM ? ENOMEM : EIO;
    } else if (te) {
        why = "torn-envelope";
    }
    if (!fail && !why) why = sk_spool_msgfile_problem(fd, env, 1);
    if (why && !strcmp(why, "body-unreadable")) {
        fail = SK_ERR_IO;
        fail_errno = EIO;
    }
    sk_spool_envelope_free(env);
    if (fd >= 0) close(fd);
    if (!fail && !why) {
        if (sk_spool_rename(s, id, SK_SPOOL_NEW_EXT, SK_SPOOL_BODY_EXT, 1) == 0) {
            sk_log(&s->opts.log, SK_LOG_INFO, "%s spool recover kept=durable-message", id);
            t->promoted++;
            return SK_OK;
        }
        /* EEXIST: another message has this ID (and this one was never
         * acknowledged: its own commit's rename failed the same way). */
        if (errno != EEXIST) {
            fail_errno = errno;
            fail = sk_err_from_errno(errno, SK_FILE_WRITE);
        }
        why = "id-taken";
    }
    if (fail)
        return sk_error_set(err, fail, SK_STEP_NONE, "cannot recover %s/%s%s (kept): %s", s->msgdir,
                            id, SK_SPOOL_NEW_EXT, strerror(fail_errno));
    sk_log(&s->opts.log, SK_LOG_INFO, "%s spool recover removed=incomplete reason=%s", id, why);
    sk_spool_unlink(s, id, SK_SPOOL_NEW_EXT);
    t->removed++;
    return SK_OK;
}

/* 2. ID.env.tmp, a save in flight (or a commit by an earlier version):
 * promoted to ID.env when complete and matching, else removed. */
static sk_err recover_env_tmp(sk_spool *s, const char *id, tally *t, sk_error *err)
{
    (void)err;
    char name[SK_SPOOL_NAME_SIZE];
    sk_spool_name(name, id, SK_SPOOL_ENV_EXT SK_SPOOL_TMP_EXT);
    sk_buf b = SK_BUF_INIT(SK_SPOOL_ENVELOPE_MAX_OCTETS);
    const char *why = sk_spool_read_file(s->msgdir_fd, name, &b) ? "unreadable" : NULL;
    if (!why) why = env_problem(s, id, &b);
    sk_buf_free(&b);
    if (!why &&
        sk_spool_rename(s, id, SK_SPOOL_ENV_EXT SK_SPOOL_TMP_EXT, SK_SPOOL_ENV_EXT, 0) == 0) {
        sk_log(&s->opts.log, SK_LOG_INFO, "%s spool recover kept=durable-envelope", id);
        t->promoted++;
        return SK_OK;
    }
    /* A save cut short: the previous envelope stays as it was. */
    sk_log(&s->opts.log, SK_LOG_INFO, "%s spool recover removed=envelope-tmp reason=%s", id,
           why ? why : "rename-failed");
    unlinkat(s->msgdir_fd, name, 0);
    t->removed++;
    return SK_OK;
}

/* 3. ID.env without ID.msg, a removal cut short: removed. */
static sk_err recover_env(sk_spool *s, const char *id, tally *t, sk_error *err)
{
    (void)err;
    if (sk_spool_exists(s, id, SK_SPOOL_BODY_EXT)) return SK_OK;
    sk_log(&s->opts.log, SK_LOG_INFO, "%s spool recover removed=envelope-without-message", id);
    sk_spool_unlink(s, id, SK_SPOOL_ENV_EXT);
    t->removed++;
    return SK_OK;
}

/* 4. ID.msg whose envelope (ID.env, else its trailer) is unreadable or
 * disagrees with the file's size: cannot happen with the write order;
 * removed with a warning if it does. */
static sk_err check_msg(sk_spool *s, const char *id, tally *t, sk_spool_envelope **kept,
                        sk_error *err)
{
    *kept = NULL;
    sk_spool_envelope *env = NULL;
    const char *why = NULL;
    /* A message is only ever renamed to ID.msg once durable, so the size
     * is enough here; reading every body would slow the start. */
    sk_err le = sk_spool_load(s, id, &env, NULL);
    if (le == SK_ERR_NOT_FOUND && !sk_spool_exists(s, id, SK_SPOOL_BODY_EXT))
        return SK_OK; /* removed since it was listed (sk_spool_remove) */
    if (le == SK_ERR_IO || le == SK_ERR_NOMEM)
        /* Not what the files hold: keep the message, fail the open. */
        return sk_error_set(err, le, SK_STEP_NONE, "cannot read the envelope of %s in %s (kept)",
                            id, s->msgdir);
    if (le) {
        why = "envelope-unreadable";
    } else {
        int fd = sk_spool_open_msg_file(s, id, SK_SPOOL_BODY_EXT);
        if (fd < 0 && errno != ENOENT) {
            int e = errno;
            sk_spool_envelope_free(env);
            return sk_error_set(err, sk_err_from_errno(e, SK_FILE_WRITE), SK_STEP_NONE,
                                "cannot open %s/%s%s (kept): %s", s->msgdir, id, SK_SPOOL_BODY_EXT,
                                strerror(e));
        }
        why = sk_spool_msgfile_problem(fd, env, 0);
        if (fd >= 0) close(fd);
    }
    if (!why) {
        t->kept++;
        *kept = env;
        return SK_OK;
    }
    sk_spool_envelope_free(env);
    sk_log(&s->opts.log, SK_LOG_WARN, "%s spool recover removed=%s", id, why);
    sk_spool_unlink(s, id, SK_SPOOL_BODY_EXT);
    sk_spool_unlink(s, id, SK_SPOOL_ENV_EXT);
    t->removed++;
    return SK_OK;
}

/* 4. at open, without an event base: every message checked now. */
static sk_err recover_msg(sk_spool *s, const char *id, tally *t, sk_error *err)
{
    sk_spool_envelope *env;
    sk_err e = check_msg(s, id, t, &env, err);
    sk_spool_envelope_free(env);
    return e;
}

void sk_spool_unchecked_free(sk_spool *s)
{
    sk_spool_ids_free(s->unchecked, s->nunchecked);
    s->unchecked = NULL;
    s->nunchecked = s->unchecked_next = 0;
}

sk_err sk_spool_recover_next(sk_spool *s, size_t max, sk_spool_envelope ***envs, size_t *n,
                             bool *more, sk_error *err)
{
    *envs = NULL;
    *n = 0;
    *more = false;
    size_t left = s->nunchecked - s->unchecked_next;
    if (!left) {
        sk_spool_unchecked_free(s);
        return SK_OK;
    }
    size_t want = left < max ? left : max;
    sk_spool_envelope **out = sk_calloc(want ? want : 1, sizeof *out);
    if (!out) return sk_error_set(err, SK_ERR_NOMEM, SK_STEP_NONE, "out of memory");
    tally t = {0, 0, 0};
    sk_err e = SK_OK;
    size_t k = 0;
    while (!e && k < want) {
        sk_spool_envelope *env;
        e = check_msg(s, s->unchecked[s->unchecked_next], &t, &env, err);
        if (e) break;
        s->unchecked_next++;
        k++;
        if (env) out[(*n)++] = env;
    }
    /* An error of the moment keeps the message's files and leaves it
     * unchecked: the caller may try again. The removals need no fsync of
     * their own: one undone by a crash is found and done again. */
    *envs = out;
    *more = s->unchecked_next < s->nunchecked;
    if (!*more && !e) sk_spool_unchecked_free(s);
    return e;
}

size_t sk_spool_unchecked_count(const sk_spool *s)
{
    return s->nunchecked - s->unchecked_next;
}

/* The steps, in this order: each name is looked at with the files the
 * steps before left. */
static const struct step {
    const char *ext;
    sk_err (*fn)(sk_spool *s, const char *id, tally *t, sk_error *err);
} steps[] = {
    {SK_SPOOL_NEW_EXT, recover_new},
    {SK_SPOOL_ENV_EXT SK_SPOOL_TMP_EXT, recover_env_tmp},
    {SK_SPOOL_ENV_EXT, recover_env},
    {SK_SPOOL_BODY_EXT, recover_msg},
};

/* Nothing relies on an order between files: every envelope records its
 * body's size and CRC-32C and ends with "end", and a message file ends
 * with a trailer. Only what the files hold decides a removal; an error of
 * the moment (EIO, no memory) fails the open and keeps the file, which may
 * hold an acknowledged message. */
sk_err sk_spool_recover(sk_spool *s, sk_error *err)
{
    tally t = {0, 0, 0};
    sk_err e = replay_journal(s, err);
    if (e) return e;
    /* Files kept for reuse by an earlier run are not tracked any more. */
    if (sk_spool_unlink_all(s, SK_SPOOL_REUSE_EXT))
        return sk_error_set(err, SK_ERR_IO, SK_STEP_NONE, "cannot read %s", s->msgdir);
    for (size_t k = 0; k < sizeof steps / sizeof steps[0]; k++) {
        char **ids;
        size_t n;
        if (sk_spool_ids_with_ext(s, steps[k].ext, &ids, &n))
            return sk_error_set(err, SK_ERR_IO, SK_STEP_NONE, "cannot read %s", s->msgdir);
        /* New IDs come after every stored one, whatever the clock says
         * (the IDs come sorted). */
        if (steps[k].fn == recover_msg && n) sk_spool_id_after(&s->ids, ids[n - 1]);
        if (steps[k].fn == recover_msg && s->base) {
            /* With an event base the messages are checked after the open,
             * in batches on the loop while new mail comes in
             * (sk_spool_recover_next): the start does not wait for them. */
            s->unchecked = ids;
            s->nunchecked = n;
            s->unchecked_next = 0;
            break;
        }
        for (size_t i = 0; !e && i < n; i++) e = steps[k].fn(s, ids[i], &t, err);
        sk_spool_ids_free(ids, n);
        if (e) return e;
    }
    if ((t.removed || t.promoted) && fsync(s->msgdir_fd))
        return sk_error_set(err, sk_err_from_errno(errno, SK_FILE_WRITE), SK_STEP_NONE,
                            "fsync %s failed", s->msgdir);
    if (s->unchecked)
        sk_log(&s->opts.log, SK_LOG_INFO, "- spool recovered unchecked=%zu removed=%zu",
               s->nunchecked, t.removed);
    else
        sk_log(&s->opts.log, SK_LOG_INFO, "- spool recovered messages=%zu removed=%zu", t.kept,
               t.removed);
    return SK_OK;
}
