/* SMTP transport transaction: one delivery attempt on an open session (the
 * job's copy, MAIL/RCPT/DATA, per-recipient results) and the TLS policy
 * for outbound sessions. */
#include "deliver/deliver_int.h"
#include "deliver/smtp_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

/* ---- results ---- */

/* A recipient's outcome from the class of its reply (reply.h computes
 * classes). Anything short of a final 2xx or 5xx, such as no reply at all,
 * is worth another try. */
static sk_delivery_status status_of(int code)
{
    switch (sk_reply_class_of(code)) {
    case SK_REPLY_SUCCESS:
        return SK_DELIVERY_OK;
    case SK_REPLY_PERMANENT:
        return SK_DELIVERY_PERMANENT;
    default:
        return SK_DELIVERY_TRANSIENT;
    }
}

/* A 4xx or 5xx: the host said no (0, no reply, is not a refusal). */
static bool refused(int code)
{
    sk_reply_class c = sk_reply_class_of(code);
    return c == SK_REPLY_TRANSIENT || c == SK_REPLY_PERMANENT;
}

void smtp_job_fail(smtp_job *j, const sk_reply *reply)
{
    for (size_t i = 0; i < j->nrcpts; i++) {
        j->results[i].status = status_of(reply->code);
        j->results[i].reply = *reply;
    }
}

void smtp_job_finish(const smtp_job *j)
{
    sk_delivery_result res = {
        .rcpts = j->results,
        .nrcpts = j->nrcpts,
        .remote_host = j->remote_host[0] ? j->remote_host : NULL,
        .tls = j->tls[0] ? j->tls : NULL,
        .tls_verified = j->tls_verified,
        .destination = j->key,
        .next_hop_dsn = j->next_hop_dsn,
    };
    j->done(j->ctx, &res);
}

void smtp_fail_now(const sk_delivery *job, sk_delivery_done_fn done, void *ctx, sk_reply rep)
{
    sk_delivery_rcpt_result *rr = sk_calloc(job->nrcpts ? job->nrcpts : 1, sizeof *rr);
    for (size_t i = 0; rr && i < job->nrcpts; i++)
        rr[i] = (sk_delivery_rcpt_result){status_of(rep.code), rep};
    /* No memory for results: nrcpts 0 counts as transient for all. */
    sk_delivery_result res = {.rcpts = rr, .nrcpts = rr ? job->nrcpts : 0};
    done(ctx, &res);
    sk_free(rr);
}

/* ---- the job ---- */

void smtp_job_free(smtp_job *j)
{
    if (!j) return;
    sk_free(j->queue_id);
    sk_free(j->domain);
    sk_free(j->sender);
    for (size_t i = 0; j->rcpts && i < j->nrcpts; i++) sk_free(j->rcpts[i]);
    sk_free(j->rcpts);
    for (size_t i = 0; j->orcpt && i < j->nrcpts; i++) sk_free(j->orcpt[i]);
    sk_free(j->orcpt);
    sk_free(j->notify);
    sk_free(j->specs);
    sk_free(j->body_path);
    sk_free(j->received);
    if (j->cached) {
        smtp_route_unref(j->cached);
    } else {
        sk_route_free(j->route);
        sk_free(j->key);
    }
    sk_free(j->results);
    sk_free(j);
}

/* RFC 5321 4.4: a relay adds its Received: line at the top; the fields
 * added at acceptance (a DKIM signature) follow it. */
static char *received_header(const smtp *sm, const sk_delivery *job)
{
    sk_buf b = SK_BUF_INIT(SK_SPOOL_ENVELOPE_MAX_OCTETS);
    if (sk_deliver_received(job->env, job->queue_id, sm->helo_name,
                            job->nrcpts == 1 ? job->rcpts[0].addr : NULL, (int64_t)time(NULL),
                            "\r\n", &b) ||
        sk_deliver_added_fields(job->env, "\r\n", &b)) {
        sk_buf_free(&b);
        return NULL;
    }
    return sk_buf_detach(&b, NULL);
}

/* RFC 3461 5.2.1: RET and ENVID go on as received (ENVID in its xtext
 * form, unchanged). */
static void dsn_opts(smtp_job *j, const sk_spool_envelope *env)
{
    const sk_mail_params *mp = &env->mail;
    j->send_opts.dsn_ret = mp->ret == SK_DSN_RET_FULL   ? "FULL"
                           : mp->ret == SK_DSN_RET_HDRS ? "HDRS"
                                                        : NULL;
    snprintf(j->envid, sizeof j->envid, "%s", mp->envid);
    j->send_opts.dsn_envid = j->envid[0] ? j->envid : NULL;
    j->send_opts.dsn_envid_xtext = 1;
    /* ORCPT for each recipient that came without one (rcpt_dsn). */
    j->send_opts.dsn_orcpt = 1;
}

/* Recipient i's NOTIFY and ORCPT for the next hop. NOTIFY only when it was
 * given (RFC 3461 5.2.1: the next hop then chooses as we would). ORCPT as
 * received; without one, RFC 3461 4.2 lets a relay add the address it
 * received: send_opts.dsn_orcpt has the client write it once it knows
 * whether the next hop takes SMTPUTF8 ("rfc822" for ASCII, the RFC 6533
 * "utf-8" type for the rest). 0 when out of memory. */
static int rcpt_dsn(smtp_job *j, size_t i, const sk_delivery_rcpt *r)
{
    j->specs[i].address = j->rcpts[i];
    j->specs[i].notify = sk_dsn_notify_format(r->notify, j->notify[i]);
    if (r->orcpt && r->orcpt[0]) {
        j->orcpt[i] = sk_strdup(r->orcpt);
        if (!j->orcpt[i]) return 0;
    }
    j->specs[i].orcpt = j->orcpt[i];
    return 1;
}

smtp_job *smtp_job_new(smtp *sm, const sk_delivery *job, sk_delivery_done_fn done, void *ctx)
{
    smtp_job *j = sk_calloc(1, sizeof *j);
    if (!j) return NULL;
    size_t n = job->nrcpts ? job->nrcpts : 1;
    j->owner = sm;
    j->generation = sm->generation;
    j->spread = sm->spread++;
    j->queue_id = sk_strdup(job->queue_id);
    j->domain = sk_strdup(job->domain);
    j->sender = sk_strdup(job->sender ? job->sender : job->env->sender ? job->env->sender : "");
    j->body_path = sk_strdup(job->body_path);
    j->body_octets = job->env->body_octets;
    j->received = received_header(sm, job);
    j->rcpts = sk_calloc(n, sizeof *j->rcpts);
    j->results = sk_calloc(n, sizeof *j->results);
    j->max_per_conn = job->max_per_conn;
    j->send_opts.has_priority = job->env->mail.has_priority;
    j->send_opts.priority = job->env->mail.priority;
    dsn_opts(j, job->env);
    j->specs = sk_calloc(n, sizeof *j->specs);
    j->notify = sk_calloc(n, sizeof *j->notify);
    j->orcpt = sk_calloc(n, sizeof *j->orcpt);
    j->tls_required =
        sk_smtp_tls_required((const char *const *)sm->tls_required, sm->ntls_required, job->domain);
    j->done = done;
    j->ctx = ctx;
    bool ok = j->queue_id && j->domain && j->sender && j->body_path && j->received && j->rcpts &&
              j->results && j->specs && j->notify && j->orcpt;
    for (size_t i = 0; ok && i < job->nrcpts; i++) {
        j->rcpts[i] = sk_strdup(job->rcpts[i].addr);
        j->nrcpts = i + 1;
        ok = j->rcpts[i] != NULL && rcpt_dsn(j, i, &job->rcpts[i]);
    }
    if (!ok) {
        smtp_job_free(j);
        return NULL;
    }
    return j;
}

/* ---- the transaction (worker threads) ---- */

sk_err smtp_txn_message(const smtp_job *j, sk_buf *out, sk_error *err)
{
    int fd = open(j->body_path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return sk_error_set(err, SK_ERR_IO, SK_STEP_DATA, "cannot open %s: %s", j->body_path,
                            strerror(errno));
    sk_err e = j->body_octets < SIZE_MAX / 2 ? SK_OK : SK_ERR_TOO_LONG;
    size_t hl = strlen(j->received);
    size_t total = hl + (size_t)(e ? 0 : j->body_octets);
    if (!e) {
        sk_buf_init(out, total);
        e = sk_buf_reserve(out, total);
    }
    if (!e) e = sk_buf_append(out, j->received, hl);
    /* SK_ERR_IO also when the file is shorter than recorded. */
    if (!e) e = sk_buf_read_fd(out, fd, j->body_octets);
    close(fd);
    if (e) {
        sk_buf_free(out);
        return sk_error_set(err, e, SK_STEP_DATA, "cannot read %s", j->body_path);
    }
    return SK_OK;
}

/* Errors after which the connection cannot be used for the next message. */
static bool connection_lost(sk_err e)
{
    return e != SK_OK && e != SK_ERR_TEMPFAIL && e != SK_ERR_PERMFAIL && e != SK_ERR_TOO_LONG &&
           e != SK_ERR_UNSUPPORTED;
}

/* The reply a recipient gets when the error came from us (connection,
 * limits) rather than from a reply of the host. */
static sk_reply error_reply(const sk_error *err, const char *label, bool permanent)
{
    if (refused(err->code))
        return sk_reply_make(err->code, err->enhanced[0] ? err->enhanced : "", "%s", err->text);
    if (permanent) return sk_reply_make(554, "5.4.0", "%s: %s", label, err->text);
    /* RFC 3463: 4.4.2 bad connection. */
    return sk_reply_make(451, "4.4.2", "%s: %s", label,
                         err->text[0] ? err->text : sk_strerror(err->err));
}

bool smtp_txn_send(smtp *sm, smtp_conn *k, smtp_job *j, const sk_buf *msg, bool *retry)
{
    sk_send_result res;
    memset(&res, 0, sizeof res);
    sk_error err;
    sk_error_clear(&err);
    sk_err e = sk_client_send_rcpts(k->c, j->sender, j->specs, j->nrcpts, msg->data, msg->len,
                                    &j->send_opts, &res, &err);
    /* RFC 5321 3.8: a host that says 421 closes the session. */
    bool alive = !connection_lost(e) && res.mail.code != 421 && res.data.code != 421;
    /* The client sends DSN parameters only to a host that announced DSN. */
    const sk_ehlo_info *ext = sk_client_extensions(k->c);
    j->next_hop_dsn = ext && (ext->ext & SK_CLIENT_EXT_DSN);
    *retry = false;
    if (k->messages > 0 && (res.mail.code == 421 || (!alive && res.mail.code == 0))) {
        /* A reused session the host closed meanwhile, before it took
         * anything (no reply to MAIL, or the 421 of a host closing an
         * idle session, RFC 5321 3.8): worth a new connection. */
        *retry = true;
        sk_send_result_free(&res);
        return false;
    }
    snprintf(j->remote_host, sizeof j->remote_host, "%s", k->remote_host);
    snprintf(j->tls, sizeof j->tls, "%s", k->tls);
    j->tls_verified = k->tls_verified;
    if (refused(res.mail.code) || res.nrcpt == 0) {
        sk_reply rep = refused(res.mail.code)
                           ? res.mail
                           : error_reply(&err, k->remote_host,
                                         e == SK_ERR_TOO_LONG || e == SK_ERR_UNSUPPORTED);
        smtp_job_fail(j, &rep);
    } else {
        /* Per recipient from RCPT; the DATA reply for those accepted. */
        for (size_t i = 0; i < j->nrcpts; i++) {
            sk_delivery_rcpt_result *out = &j->results[i];
            if (i < res.nrcpt && !res.rcpts[i].accepted && refused(res.rcpts[i].reply.code))
                out->reply = res.rcpts[i].reply;
            else if (i < res.nrcpt && res.rcpts[i].accepted &&
                     sk_reply_class_of(res.data.code) != SK_REPLY_INVALID)
                out->reply = res.data;
            else
                out->reply = error_reply(&err, k->remote_host, false);
            out->status = status_of(out->reply.code);
        }
    }
    sk_log(&sm->log, SK_LOG_INFO, "%s %s sent host=%s mail=%d accepted=%zu/%zu data=%d",
           j->queue_id, sm->t.name, k->remote_host, res.mail.code, res.naccepted, j->nrcpts,
           res.data.code);
    sk_send_result_free(&res);
    return alive;
}

/* ---- TLS policy for outbound sessions ---- */

int sk_smtp_tls_required(const char *const *list, size_t n, const char *domain)
{
    if (!domain) return 0;
    size_t dl = strlen(domain);
    while (dl && domain[dl - 1] == '.') dl--;
    for (size_t i = 0; i < n; i++) {
        const char *entry = list[i];
        if (!entry || !*entry) continue;
        size_t el = strlen(entry);
        if (entry[0] == '.') {
            /* ".example.com": any subdomain, not example.com itself. */
            if (dl > el && strncasecmp(domain + dl - el, entry, el) == 0) return 1;
        } else if (dl == el && strncasecmp(domain, entry, el) == 0) {
            return 1;
        }
    }
    return 0;
}

sk_tls_mode smtp_tls_mode(const smtp_job *j)
{
    /* RFC 3207 STARTTLS whenever offered; a domain on the required list
     * gets no session without verified TLS. */
    return j->tls_required ? SK_TLS_STARTTLS : SK_TLS_STARTTLS_OPPORTUNISTIC;
}

bool smtp_tls_fallback(sk_tls_mode *mode, const sk_error *err)
{
    /* RFC 7435: opportunistic TLS that fails in the handshake falls back
     * to a plain session with the same host. */
    if (*mode == SK_TLS_STARTTLS_OPPORTUNISTIC && err->step == SK_STEP_TLS &&
        (err->err == SK_ERR_TLS || err->err == SK_ERR_TIMEOUT || err->err == SK_ERR_CLOSED)) {
        *mode = SK_TLS_NONE;
        return true;
    }
    return false;
}

bool smtp_tls_failed(const smtp_job *j, const sk_error *err)
{
    return j->tls_required && err->step == SK_STEP_TLS;
}

bool smtp_tls_fits(const smtp_job *j, const smtp_conn *k)
{
    /* A session opened without the TLS this domain requires does not do. */
    return !j->tls_required || (k->tls[0] && k->tls_verified);
}

void smtp_tls_record(smtp_conn *k)
{
    const sk_tls_info *ti = sk_client_tls_info(k->c);
    if (ti && ti->active) {
        snprintf(k->tls, sizeof k->tls, "%s %s", ti->version, ti->cipher);
        k->tls_verified = ti->verified;
    } else {
        k->tls[0] = '\0';
        k->tls_verified = 0;
    }
}
