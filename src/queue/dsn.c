/* The queue's DSNs: which recipients each reports and what it says of them,
 * what of the message goes back, and spooling it to the sender. */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "queue/queue_int.h"

/* One recipient reported in a DSN: failed (bounce), delayed, delivered
 * or relayed. */
typedef struct dsn_rcpt {
    const sk_spool_rcpt *rcpt;
    sk_dsn_action action;
    const char *status;          /* "5.1.1", "4.4.7", "2.0.0" */
    const char *diagnostic;      /* reply, or our own text; NULL = none */
    const char *diagnostic_type; /* NULL = smtp */
    const char *remote;
    int64_t retry_until; /* delayed: Will-Retry-Until, unix seconds */
} dsn_rcpt;

/* The enhanced status of r when it is of class cls and valid for its
 * code, else NULL. */
static const char *status_of(const sk_reply *r, sk_reply_class cls)
{
    return r && sk_enhanced_class(r->enhanced) == cls && sk_enhanced_valid(r->enhanced, r->code)
               ? r->enhanced
               : NULL;
}

/* Status, diagnostic and its type for a recipient's last reply r (line:
 * its text form), with the classification appended to the reply text. */
static void describe_failure(const sk_queue *q, const sk_reply *r, const char *line, int expired,
                             char status[16], sk_buf *diag, const char **diag_type)
{
    sk_rule_match mt = sk_queue_classify(q, r);
    const char *enh = status_of(r, SK_REPLY_PERMANENT);
    if (expired)
        snprintf(status, 16, "4.4.7"); /* RFC 3463 3.5: delivery time expired */
    else
        snprintf(status, 16, "%s", enh ? enh : "5.0.0");
    *diag_type = NULL;
    sk_err e;
    if (line && r && r->code) {
        e = sk_buf_printf(diag, "%s (class %s)", line, sk_class_name(mt.cls));
    } else {
        *diag_type = "X-SMTPKit";
        e = sk_buf_printf(diag, "%s (class %s)",
                          line      ? line
                          : expired ? "delivery time expired"
                                    : "failed",
                          sk_class_name(mt.cls));
    }
    if (e) sk_buf_reset(diag);
}

/* Status and diagnostic for a recipient reported as delivered, relayed
 * or delayed: the enhanced code of its last reply r when it is of the
 * right class (RFC 3464 2.3.4), else X.0.0; the reply itself (line) as
 * diagnostic, except for our own local delivery. */
static void describe_other(const sk_reply *r, const char *line, sk_dsn_action action,
                           char status[16], sk_buf *diag)
{
    int delayed = action == SK_DSN_DELAYED;
    const char *enh = status_of(r, delayed ? SK_REPLY_TRANSIENT : SK_REPLY_SUCCESS);
    snprintf(status, 16, "%s", enh ? enh : delayed ? "4.0.0" : "2.0.0");
    if (action != SK_DSN_DELIVERED && line && r && r->code && sk_buf_puts(diag, line))
        sk_buf_reset(diag);
}

/* The stored message, the first body_octets octets of its file (the
 * envelope follows them), up to max octets; SK_ERR_TOO_LONG when there is
 * more (then out holds nothing useful). */
static sk_err read_body(sk_spool *spool, const char *id, uint64_t body_octets, size_t max,
                        sk_buf *out)
{
    if (body_octets > max) return SK_ERR_TOO_LONG;
    sk_buf path = SK_BUF_INIT(4096);
    sk_err e = sk_spool_body_path(spool, id, &path);
    int fd = e ? -1 : open(sk_buf_cstr(&path), O_RDONLY | O_CLOEXEC);
    sk_buf_free(&path);
    if (fd < 0) return e ? e : SK_ERR_IO;
    e = sk_buf_read_fd(out, fd, body_octets);
    close(fd);
    return e;
}

/* Build the DSN about env for these recipients into out, laid out by
 * sk_dsn_build as RFC 3464 says (RET and ENVID from env; the message read
 * from the spool). The whole message is
 * returned only when a recipient failed (RFC 3461 4.3: RET applies to
 * failure reports; others carry the headers). */
static sk_err build(sk_spool *spool, const sk_queue_opts *o, const sk_spool_envelope *env,
                    const dsn_rcpt *r, size_t n, int64_t now_s, sk_buf *out, sk_error *err)
{
    sk_dsn_rcpt *dr = sk_calloc(n ? n : 1, sizeof *dr);
    if (!dr) return sk_error_set(err, SK_ERR_NOMEM, SK_STEP_COMPOSE, "out of memory");
    int any_failed = 0;
    for (size_t i = 0; i < n; i++) {
        dr[i] = (sk_dsn_rcpt){.address = r[i].rcpt->addr,
                              .orcpt = r[i].rcpt->orcpt,
                              .action = r[i].action,
                              .status = r[i].status,
                              .remote_mta = r[i].remote,
                              .diagnostic = r[i].diagnostic,
                              .diagnostic_type = r[i].diagnostic_type,
                              .last_attempt = now_s,
                              .retry_until = r[i].retry_until};
        any_failed |= r[i].action == SK_DSN_FAILED;
    }
    size_t full_max =
        o->dsn_full_max_octets ? o->dsn_full_max_octets : SK_DSN_FULL_MAX_OCTETS_DEFAULT;
    sk_dsn_opts d = {.reporting_mta = o->hostname ? o->hostname : "localhost",
                     .sender = env->sender,
                     .envid = env->mail.envid[0] ? env->mail.envid : NULL,
                     .arrival = env->arrival,
                     .ret = env->mail.ret,
                     .full_max_octets = full_max,
                     .now = now_s};
    /* RFC 3461 4.3: the whole message only when RET allows and it is small
     * enough; otherwise its header block is all the report carries. RET
     * is about failures: a report of delays or deliveries only returns
     * the headers. */
    if (!any_failed) d.ret = SK_DSN_RET_HDRS;
    sk_buf msg = SK_BUF_INIT(full_max + (1u << 20)); /* room for a header block too */
    sk_err e = SK_ERR_TOO_LONG;
    if (d.ret != SK_DSN_RET_HDRS && env->body_octets <= full_max)
        e = read_body(spool, env->id, env->body_octets, full_max, &msg);
    if (e) {
        sk_buf_reset(&msg);
        d.ret = SK_DSN_RET_HDRS;
        e = sk_spool_read_headers(spool, env->id, &msg, err);
    }
    if (!e) e = sk_dsn_build(&d, dr, n, msg.data ? msg.data : "", msg.len, out, err);
    sk_buf_free(&msg);
    sk_free(dr);
    return e;
}

static void qdsn_free(qdsn *x)
{
    for (size_t i = 0; i < x->nrcpts; i++) sk_free(x->rcpts[i]);
    sk_free(x->rcpts);
    sk_spool_envelope_free(x->env);
    sk_free(x);
}

/* The recipients of r whose final outcome the DSN reports, for its event
 * (tracking links each one's bounced, expired or delivered event to the
 * DSN). On no memory the list stays short: only the link is lost. */
static void qdsn_set_rcpts(qdsn *x, const dsn_rcpt *r, size_t n)
{
    x->rcpts = sk_calloc(n ? n : 1, sizeof *x->rcpts);
    for (size_t i = 0; x->rcpts && i < n; i++) {
        if (r[i].action == SK_DSN_DELAYED) continue;
        char *a = sk_strdup(r[i].rcpt->addr);
        if (!a) break;
        x->rcpts[x->nrcpts++] = a;
    }
}

static void dsn_done(void *ctx, sk_err err, const char *queue_id)
{
    qdsn *x = ctx;
    sk_queue *q = x->q;
    if (q) {
        LIST_REMOVE(x, link);
        if (err) {
            sk_log(&q->opts.log, SK_LOG_ERR, "%s queue dsn-failed error=\"%s\"", x->env->id,
                   sk_strerror(err));
        } else {
            sk_queue_event ev = {.type = SK_QUEUE_EV_DSN,
                                 .env = x->env,
                                 .attempt = x->env->attempts,
                                 .priority = x->priority,
                                 .dsn_id = queue_id,
                                 .dsn_rcpts = (const char *const *)x->rcpts,
                                 .ndsn_rcpts = x->nrcpts};
            sk_queue_emit(q, &ev);
        }
    }
    qdsn_free(x);
}

/* Spool a DSN about m for the recipients in r that asked for one with
 * their action (RFC 3461 NOTIFY; never to the null sender, so DSNs cannot
 * loop), from the null sender to the original sender (RFC 3461 6.2). */
static void spool_dsn(sk_queue *q, qmsg *m, dsn_rcpt *r, size_t n, int64_t now)
{
    const sk_spool_envelope *env = m->env;
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (sk_dsn_wanted(env->sender, r[i].rcpt->notify, r[i].action)) r[k++] = r[i];
    if (!k) return;
    sk_error err;
    sk_buf out =
        SK_BUF_INIT(SK_DSN_FULL_MAX_OCTETS_DEFAULT + q->opts.dsn_full_max_octets + (4u << 20));
    sk_spool_msg *msg = NULL;
    sk_err e = build(q->spool, &q->opts, env, r, k, now, &out, &err);
    if (!e) {
        sk_spool_rcpt to = {.addr = env->sender};
        sk_spool_envelope denv = {.arrival = now,
                                  .sender = "",
                                  .rcpts = &to,
                                  .nrcpts = 1,
                                  .helo =
                                      (char *)(q->opts.hostname ? q->opts.hostname : "localhost"),
                                  .esmtp = 1};
        msg = sk_spool_begin(q->spool, &denv, &err);
        if (!msg) e = err.err ? err.err : SK_ERR_IO;
    }
    sk_buf fields = SK_BUF_INIT(SK_DSN_ADDED_FIELDS_MAX_OCTETS);
    if (!e && q->opts.dsn_fields) {
        sk_error ferr;
        sk_error_clear(&ferr);
        if (q->opts.dsn_fields(q->opts.dsn_ctx, out.data, out.len, &fields, &ferr)) {
            sk_log(&q->opts.log, SK_LOG_WARN, "%s queue dsn-fields-failed error=\"%s\"", env->id,
                   ferr.text[0] ? ferr.text : "out of memory");
            sk_buf_reset(&fields);
        }
    }
    if (!e && fields.len && (e = sk_spool_write(msg, fields.data, fields.len)))
        sk_error_set(&err, e, SK_STEP_NONE, "cannot write the DSN");
    if (!e && (e = sk_spool_write(msg, out.data, out.len)))
        sk_error_set(&err, e, SK_STEP_NONE, "cannot write the DSN");
    sk_buf_free(&fields);
    sk_buf_free(&out);
    if (e) {
        if (msg) sk_spool_abort(msg);
        sk_log(&q->opts.log, SK_LOG_ERR, "%s queue dsn-failed error=\"%s\"", env->id, err.text);
        return;
    }
    qdsn *x = sk_calloc(1, sizeof *x);
    if (x) x->env = sk_spool_envelope_dup(env);
    if (!x || !x->env) {
        /* Still send it; only its event is lost. */
        if (x) sk_free(x);
        x = NULL;
    } else {
        qdsn_set_rcpts(x, r, k);
        x->q = q;
        x->priority = m->priority;
        LIST_INSERT_HEAD(&q->dsns, x, link);
    }
    sk_spool_commit(msg, x ? dsn_done : NULL, x);
}

void sk_queue_dsn_attempt(sk_queue *q, qmsg *m, int delay_due, int64_t now)
{
    sk_spool_envelope *env = m->env;
    int64_t retry_until = sk_retry_until(&q->retry, env->arrival);
    size_t nb = 0;
    dsn_rcpt *br = sk_calloc(env->nrcpts ? env->nrcpts : 1, sizeof *br);
    char(*status)[16] = sk_calloc(env->nrcpts ? env->nrcpts : 1, sizeof *status);
    sk_buf *diag = sk_calloc(env->nrcpts ? env->nrcpts : 1, sizeof *diag);
    for (size_t i = 0; br && status && diag && i < env->nrcpts; i++) {
        sk_spool_rcpt *r = &env->rcpts[i];
        const qrcpt *qr = m->rcpts ? &m->rcpts[i] : NULL;
        qrcpt_outcome o = qr ? qr->outcome : QRCPT_NONE;
        int delayed = delay_due && r->state == SK_RCPT_PENDING;
        if (o == QRCPT_NONE && !delayed) continue;
        sk_reply scratch;
        const sk_reply *reply = sk_queue_last_reply(m, i, &scratch);
        sk_buf_init(&diag[nb], SK_REPLY_TEXT_MAX_OCTETS + 64);
        const char *dt = NULL;
        sk_dsn_action action = SK_DSN_FAILED;
        if (o == QRCPT_FAILED || o == QRCPT_EXPIRED) {
            describe_failure(q, reply, r->last_reply, o == QRCPT_EXPIRED, status[nb], &diag[nb],
                             &dt);
        } else {
            action = delayed                ? SK_DSN_DELAYED
                     : o == QRCPT_DELIVERED ? SK_DSN_DELIVERED
                                            : SK_DSN_RELAYED;
            describe_other(reply, r->last_reply, action, status[nb], &diag[nb]);
        }
        br[nb] = (dsn_rcpt){.rcpt = r,
                            .action = action,
                            .status = status[nb],
                            .diagnostic = diag[nb].len ? sk_buf_cstr(&diag[nb]) : NULL,
                            .diagnostic_type = dt,
                            .remote = qr ? qr->remote : NULL,
                            .retry_until = action == SK_DSN_DELAYED ? retry_until : 0};
        nb++;
    }
    if (nb) spool_dsn(q, m, br, nb, now);
    for (size_t i = 0; diag && i < nb; i++) sk_buf_free(&diag[i]);
    sk_free(diag);
    sk_free(status);
    sk_free(br);
}
