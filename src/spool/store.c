/* The spool's public API (include/smtpkit/spool.h): open and free, and the
 * stored messages (list, load, save, remove, read). */
#include "spool/spool_impl.h"

#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define BATCH_DEFAULT 256
#define LOCK_WAIT_MS  5000

static sk_err make_dir(const char *path, sk_error *err)
{
    if (mkdir(path, 0700) == 0 || errno == EEXIST) return SK_OK;
    return sk_error_set(err, sk_err_from_errno(errno, SK_FILE_WRITE), SK_STEP_NONE,
                        "cannot create %s: %s", path, strerror(errno));
}

/* Everything sk_spool_free may look at, before anything can fail. */
static void init(sk_spool *s, const sk_spool_opts *opts, struct event_base *base)
{
    if (opts) s->opts = *opts;
    if (!s->opts.max_batch) s->opts.max_batch = BATCH_DEFAULT;
    if (!s->opts.lock_wait_ms) s->opts.lock_wait_ms = LOCK_WAIT_MS;
    s->msgdir_fd = s->lock_fd = s->journal.fd = -1;
    s->hooks = (sk_spool_hooks){s->opts.write_fn, s->opts.sync_fn, s->opts.hook_ctx};
    s->sync = sk_spool_sync_ops_for(s->opts.sync);
    s->journal.hooks = s->hooks;
    sk_buf_init(&s->jbuf, sk_spool_journal_size(s));
    s->base = base;
    s->pending_tail = &s->pending;
    s->finished_tail = &s->finished;
    s->mat.tail = &s->mat.q;
    s->mat.written_tail = &s->mat.written;
    pthread_mutex_init(&s->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC); /* the clock of sk_now_ms */
    pthread_cond_init(&s->mat.done_cv, &ca);
    pthread_condattr_destroy(&ca);
}

sk_spool *sk_spool_open(const char *data_dir, const sk_spool_opts *opts, struct event_base *base,
                        sk_error *err)
{
    sk_error_clear(err);
    sk_spool *s = sk_calloc(1, sizeof *s);
    if (!s) {
        sk_error_set(err, SK_ERR_NOMEM, SK_STEP_NONE, "out of memory");
        return NULL;
    }
    init(s, opts, base);
    if (!s->sync) {
        sk_error_set(err, SK_ERR_INVAL, SK_STEP_NONE, "unknown spool sync mode %d",
                     (int)s->opts.sync);
        goto fail;
    }
    s->dir = sk_spool_path_join(data_dir, SK_SPOOL_SUBDIR);
    s->msgdir = s->dir ? sk_spool_path_join(s->dir, SK_SPOOL_MSGDIR) : NULL;
    s->ctldir = s->dir ? sk_spool_path_join(s->dir, SK_SPOOL_CTLDIR) : NULL;
    if (!s->msgdir || !s->ctldir) {
        sk_error_set(err, SK_ERR_NOMEM, SK_STEP_NONE, "out of memory");
        goto fail;
    }
    int owner = s->opts.mode == SK_SPOOL_OWNER;
    if (owner && (make_dir(data_dir, err) || make_dir(s->dir, err) || make_dir(s->msgdir, err) ||
                  make_dir(s->ctldir, err)))
        goto fail;
    s->msgdir_fd = open(s->msgdir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (s->msgdir_fd < 0) {
        sk_error_set(err, sk_err_from_errno(errno, SK_FILE_READ), SK_STEP_NONE,
                     "cannot open spool %s: %s", s->msgdir, strerror(errno));
        goto fail;
    }
    if (!owner) return s;
    long busy;
    s->lock_fd = sk_spool_lock(s->dir, s->opts.lock_wait_ms, &busy, err);
    if (s->lock_fd < 0) goto fail;
    if (sk_spool_recover(s, err)) goto fail;
    if (base) {
        if (sk_spool_committer_start(s, base, err)) goto fail;
        if (s->sync->start) s->sync->start(s);
        sk_spool_spares_start(s);
    }
    return s;
fail:
    sk_spool_free(s);
    return NULL;
}

void sk_spool_free(sk_spool *s)
{
    if (!s) return;
    /* The files of the journaled messages too: the materializer's jobs
     * run in the same stop. */
    sk_spool_committer_stop(s);
    /* Every thread has stopped: what they finished since the last drain. */
    if (s->workers) sk_spool_run_finished(s);
    /* The event before the group: it watches the group's eventfd. */
    if (s->ev) event_free(s->ev);
    sk_workers_free(s->workers);
    /* Journaled messages whose file could not be written. */
    size_t left = sk_spool_materializer_drop(s);
    sk_spool_spares_stop(s);
    if (s->sync && s->sync->close) s->sync->close(s, left);
    sk_journal_close(&s->journal);
    sk_buf_free(&s->jbuf);
    sk_free(s->rm.orphans); /* none left after the committer stopped, unless a sync failed */
    sk_spool_unchecked_free(s);
    if (s->msgdir_fd >= 0) close(s->msgdir_fd);
    if (s->lock_fd >= 0) close(s->lock_fd); /* releases the lock */
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->mat.done_cv);
    sk_free(s->dir);
    sk_free(s->msgdir);
    sk_free(s->ctldir);
    sk_free(s);
}

const char *sk_spool_dir(const sk_spool *s)
{
    return s->dir;
}

const char *sk_spool_ctl_dir(const sk_spool *s)
{
    return s->ctldir;
}

void sk_spool_set_listener(sk_spool *s, sk_spool_listener_fn fn, void *ctx)
{
    s->listener = fn;
    s->listener_ctx = ctx;
}

sk_err sk_spool_list(sk_spool *s, char ***ids_out, size_t *n_out, sk_error *err)
{
    sk_err e = sk_spool_ids_with_ext(s, SK_SPOOL_BODY_EXT, ids_out, n_out);
    if (e == SK_ERR_NOMEM) return sk_error_set(err, e, SK_STEP_NONE, "out of memory");
    if (e) return sk_error_set(err, e, SK_STEP_NONE, "cannot read %s", s->msgdir);
    return SK_OK;
}

/* The envelope of a committed message: ID.env once the queue has saved
 * one, else the one kept in ID.msg since the commit. */
sk_err sk_spool_load(sk_spool *s, const char *id, sk_spool_envelope **env, sk_error *err)
{
    *env = NULL;
    if (!sk_spool_id_valid(id))
        return sk_error_set(err, SK_ERR_NOT_FOUND, SK_STEP_NONE, "no message %s", id);
    /* The message file decides whether the message exists: an ID.env
     * outlives it briefly after a removal. */
    int fd = sk_spool_open_msg_file(s, id, SK_SPOOL_BODY_EXT);
    if (fd < 0 && errno == ENOENT)
        return sk_error_set(err, SK_ERR_NOT_FOUND, SK_STEP_NONE, "no message %s in the queue", id);
    sk_err e = fd < 0 ? SK_ERR_IO : SK_OK;
    char name[SK_SPOOL_NAME_SIZE];
    sk_spool_name(name, id, SK_SPOOL_ENV_EXT);
    sk_buf b = SK_BUF_INIT(SK_SPOOL_ENVELOPE_MAX_OCTETS);
    if (!e) e = sk_spool_read_file(s->msgdir_fd, name, &b);
    if (!e) {
        e = sk_spool_envelope_parse(b.data ? b.data : "", b.len, env);
        if (!e && strcmp((*env)->id, id)) e = SK_ERR_SYNTAX;
    } else if (e == SK_ERR_NOT_FOUND) {
        e = sk_spool_msgfile_envelope(fd, id, env);
        if (e == SK_ERR_NOT_FOUND) e = SK_ERR_SYNTAX; /* a file without its envelope */
    }
    sk_buf_free(&b);
    if (fd >= 0) close(fd);
    if (e) {
        sk_spool_envelope_free(*env);
        *env = NULL;
        return sk_error_set(err, e, SK_STEP_NONE, "cannot read envelope of %s", id);
    }
    return SK_OK;
}

sk_err sk_spool_save(sk_spool *s, const sk_spool_envelope *env, sk_error *err)
{
    sk_err e = sk_spool_check_owner(s, err);
    if (e) return e;
    if (!sk_spool_id_valid(env->id))
        return sk_error_set(err, SK_ERR_INVAL, SK_STEP_NONE, "bad queue ID");
    sk_buf b = SK_BUF_INIT(SK_SPOOL_ENVELOPE_MAX_OCTETS);
    e = sk_spool_envelope_serialize(env, &b);
    char name[SK_SPOOL_NAME_SIZE];
    sk_spool_name(name, env->id, SK_SPOOL_ENV_EXT);
    if (!e) e = sk_spool_write_file(s->msgdir_fd, name, b.data, b.len, 1);
    sk_buf_free(&b);
    if (e)
        return sk_error_set(err, e, SK_STEP_NONE, "cannot save envelope of %s: %s", env->id,
                            sk_strerror(e));
    return SK_OK;
}

sk_err sk_spool_remove(sk_spool *s, const char *id, sk_error *err)
{
    sk_err e = sk_spool_check_owner(s, err);
    if (e) return e;
    if (!sk_spool_id_valid(id))
        return sk_error_set(err, SK_ERR_NOT_FOUND, SK_STEP_NONE, "no message %s", id);
    /* The message file first: it holds an envelope of its own, while an
     * ID.env left alone by a crash is removed by recovery, so a crash in
     * between leaves nothing deliverable. */
    int pooled;
    if (sk_spool_drop_file(s, id, &pooled)) {
        if (errno == ENOENT)
            return sk_error_set(err, SK_ERR_NOT_FOUND, SK_STEP_NONE, "no message %s in the queue",
                                id);
        return sk_error_set(err, SK_ERR_IO, SK_STEP_NONE, "cannot remove %s%s: %s", id,
                            SK_SPOOL_BODY_EXT, strerror(errno));
    }
    return sk_spool_commit_removal(s, id, pooled, err);
}

/* The body is the first env->body_octets octets of this file. */
sk_err sk_spool_body_path(const sk_spool *s, const char *id, sk_buf *out)
{
    if (!sk_spool_id_valid(id)) return SK_ERR_INVAL;
    return sk_buf_printf(out, "%s/%s%s", s->msgdir, id, SK_SPOOL_BODY_EXT);
}

sk_err sk_spool_read_headers(sk_spool *s, const char *id, sk_buf *out, sk_error *err)
{
    if (!sk_spool_id_valid(id))
        return sk_error_set(err, SK_ERR_NOT_FOUND, SK_STEP_NONE, "no message %s", id);
    const sk_spool_msg *f = s->finishing;
    sk_err e;
    if (f && strcmp(f->id, id) == 0 && sk_spool_msg_headers(f, out, &e))
        return e ? sk_error_set(err, e, SK_STEP_NONE, "headers too long") : SK_OK;
    /* The header block is near the start: read a bounded prefix of the
     * body, which ends where the envelope records (the file goes on with
     * the envelope). */
    int fd = sk_spool_open_msg_file(s, id, SK_SPOOL_BODY_EXT);
    if (fd < 0)
        return sk_error_set(err, sk_err_from_errno(errno, SK_FILE_READ), SK_STEP_NONE,
                            "no message %s in the queue", id);
    sk_spool_envelope *env;
    e = sk_spool_load(s, id, &env, err);
    if (e) {
        close(fd);
        return e;
    }
    uint64_t want = env->body_octets;
    sk_spool_envelope_free(env);
    if (want > SK_SPOOL_HEADERS_MAX_OCTETS) want = SK_SPOOL_HEADERS_MAX_OCTETS;
    sk_buf b = SK_BUF_INIT(SK_SPOOL_HEADERS_MAX_OCTETS + 1);
    e = sk_buf_reserve(&b, want);
    if (!e) e = sk_spool_pread_all(fd, b.data, (size_t)want, 0);
    if (e == SK_ERR_NOT_FOUND) e = SK_ERR_IO; /* shorter than its envelope says */
    /* A removed message's file may be reused for a new message (docs/
     * queue.md "Reused files"), but only after its name is gone: if the
     * name still leads to this file now, what was read is this message. */
    struct stat a, n;
    char name[SK_SPOOL_NAME_SIZE];
    sk_spool_name(name, id, SK_SPOOL_BODY_EXT);
    if (!e && (fstat(fd, &a) || fstatat(s->msgdir_fd, name, &n, 0) || a.st_ino != n.st_ino ||
               a.st_dev != n.st_dev))
        e = SK_ERR_NOT_FOUND;
    close(fd);
    if (e) {
        sk_buf_free(&b);
        return sk_error_set(err, e, SK_STEP_NONE, "cannot read message %s", id);
    }
    b.len = (size_t)want;
    b.data[b.len] = '\0';
    const char *d = sk_buf_cstr(&b);
    e = sk_buf_append(out, d, sk_spool_header_block_len(d, b.len));
    sk_buf_free(&b);
    return e ? sk_error_set(err, e, SK_STEP_NONE, "headers too long") : SK_OK;
}
