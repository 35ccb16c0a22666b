/* Delivery attempts: a message's recipients grouped into jobs by domain,
 * each result recorded as it comes, then removal, expiry or the next retry. */
#include <ctype.h>
#include <string.h>
#include <strings.h>

#include "queue/queue_int.h"

void sk_queue_attempt_clear(qmsg *m)
{
    for (size_t i = 0; m->rcpts && i < m->env->nrcpts; i++) {
        sk_free(m->rcpts[i].reply);
        sk_free(m->rcpts[i].remote);
    }
    sk_free(m->rcpts);
    m->rcpts = NULL;
}

void sk_queue_job_free(qjob *j)
{
    sk_free(j->rcpts);
    sk_free(j->domain);
    sk_free(j->sender);
    sk_buf_free(&j->body_path);
    sk_free(j);
}

void sk_queue_job_unlink(qjob *j)
{
    LIST_REMOVE(j, mlink);
}

static int is_local(const sk_queue *q, const char *domain)
{
    for (size_t i = 0; i < q->opts.nlocal_domains; i++)
        if (!strcasecmp(q->opts.local_domains[i], domain)) return 1;
    return 0;
}

/* The destination domain of a recipient, lower case. RFC 5321 4.5.1: a
 * bare "postmaster" is ours. */
static char *rcpt_domain(const sk_queue *q, const char *addr)
{
    const char *at = strrchr(addr, '@');
    const char *d = at ? at + 1 : (q->opts.nlocal_domains ? q->opts.local_domains[0] : "");
    char *s = sk_strdup(d);
    if (s) sk_ascii_lower(s, strlen(s));
    return s;
}

/* Is the envelope sender of m's jobs to domain a VERP address? Not for the
 * null sender (bounces have nowhere to go) nor for local delivery. */
static int verp_applies(const sk_queue *q, const sk_spool_envelope *env, const char *domain)
{
    return q->opts.verp_host && env->sender && env->sender[0] && !is_local(q, domain);
}

/* bounces+ID=LOCAL=DOMAIN@HOST: the queue ID and recipient come back in
 * the RCPT TO of a bounce. */
static char *verp_sender(const sk_queue *q, const char *id, const char *rcpt)
{
    const char *at = strrchr(rcpt, '@');
    sk_buf b = SK_BUF_INIT(SK_SMTP_PATH_MAX_OCTETS * 2);
    sk_err e =
        at ? sk_buf_printf(&b, "%s%s=%.*s=%s@%s", SK_QUEUE_VERP_PREFIX, id, (int)(at - rcpt), rcpt,
                           at + 1, q->opts.verp_host)
           : sk_buf_printf(&b, "%s%s=%s@%s", SK_QUEUE_VERP_PREFIX, id, rcpt, q->opts.verp_host);
    char *s = e ? NULL : sk_strdup(sk_buf_cstr(&b));
    sk_buf_free(&b);
    return s;
}

/* A job for one recipient group, routed to its destination's queue.
 * Returns 0 when out of memory. */
static int make_job(sk_queue *q, qmsg *m, const char *domain, const size_t *idx, size_t n)
{
    qjob *j = sk_calloc(1, sizeof *j);
    if (!j) return 0;
    j->q = q;
    j->m = m;
    j->domain = sk_strdup(domain);
    j->rcpts = sk_calloc(n, sizeof *j->rcpts);
    sk_buf_init(&j->body_path, 4096);
    if (!j->domain || !j->rcpts || sk_spool_body_path(q->spool, m->env->id, &j->body_path)) {
        sk_queue_job_free(j);
        return 0;
    }
    if (n == 1 && verp_applies(q, m->env, domain) &&
        !(j->sender = verp_sender(q, m->env->id, m->env->rcpts[idx[0]].addr))) {
        sk_queue_job_free(j);
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        const sk_spool_rcpt *r = &m->env->rcpts[idx[i]];
        j->rcpts[i] = (sk_delivery_rcpt){
            .addr = r->addr, .orcpt = r->orcpt, .notify = r->notify, .index = idx[i]};
    }
    j->job = (sk_delivery){.queue_id = m->env->id,
                           .env = m->env,
                           .body_path = j->body_path.data,
                           .domain = j->domain,
                           .rcpts = j->rcpts,
                           .nrcpts = n,
                           .maybe_delivered = m->maybe_delivered,
                           .max_per_conn = q->opts.msgs_per_conn,
                           .sender = j->sender};
    j->t = is_local(q, domain) ? q->opts.local_transport : q->opts.remote_transport;
    LIST_INSERT_HEAD(&m->jobs, j, mlink);
    m->jobs_out++;
    sk_queue_route_job(q, j);
    return 1;
}

/* One delivery attempt for m: a job per destination domain, each in the
 * queue of its destination. */
void sk_queue_attempt_start(sk_queue *q, qmsg *m)
{
    sk_spool_envelope *env = m->env;
    size_t nr = env->nrcpts ? env->nrcpts : 1;
    size_t *idx = sk_calloc(nr, sizeof *idx);
    char **domains = sk_calloc(nr, sizeof *domains);
    env->state = SK_SPOOL_ACTIVE;
    sk_queue_msg_set_state(q, m, QMSG_DELIVERING);
    m->priority = sk_queue_priority_of(env, q->opts.priority_rules, q->opts.npriority_rules);
    sk_queue_attempt_clear(m);
    m->rcpts = sk_calloc(nr, sizeof *m->rcpts);
    m->jobs_out++; /* guard: a job may finish before we return */
    if (idx && domains) {
        for (size_t i = 0; i < env->nrcpts; i++)
            if (env->rcpts[i].state == SK_RCPT_PENDING)
                domains[i] = rcpt_domain(q, env->rcpts[i].addr);
        for (size_t i = 0; i < env->nrcpts; i++) {
            if (!domains[i]) continue;
            /* With VERP, each remote recipient has its own sender, so its
             * own transaction. */
            int single = verp_applies(q, env, domains[i]);
            size_t n = 0;
            for (size_t k = i; k < env->nrcpts; k++) {
                if (domains[k] && !strcmp(domains[k], domains[i]) && (k == i || !single)) {
                    idx[n++] = k;
                    if (k != i) {
                        sk_free(domains[k]);
                        domains[k] = NULL;
                    }
                }
            }
            if (!make_job(q, m, domains[i], idx, n))
                sk_log(&q->opts.log, SK_LOG_ERR, "%s queue job-failed error=nomem", env->id);
            sk_free(domains[i]);
            domains[i] = NULL;
        }
    }
    sk_free(idx);
    sk_free(domains);
    sk_queue_attempt_release(q, m);
}

/* r as the one line the envelope keeps and events carry; NULL when out of
 * memory. */
static char *reply_text(const sk_reply *r)
{
    sk_buf b = SK_BUF_INIT(SK_REPLY_TEXT_MAX_OCTETS + 32);
    if (sk_reply_to_line(r, &b)) {
        sk_buf_free(&b);
        return NULL;
    }
    return sk_buf_detach(&b, NULL);
}

/* A failure reply from destination d: suspend or slow it as
 * sk_pace_throttle says, and tell. */
static int throttle(sk_queue *q, qdest *d, qmsg *m, const char *rcpt, const sk_reply *r,
                    const sk_rule_match *mt, const char *text, int64_t now)
{
    uint64_t ms;
    if (!sk_pace_throttle(&d->pace, r, mt, q->opts.throttle_suspend_ms, now, &ms)) return 0;
    sk_queue_event ev = {.type = SK_QUEUE_EV_THROTTLED,
                         .env = m->env,
                         .recipient = rcpt,
                         .attempt = m->env->attempts + 1,
                         .reply = text,
                         .cls = mt->cls,
                         .destination = d->key,
                         .priority = m->priority,
                         .throttle_ms = ms};
    sk_queue_emit(q, &ev);
    return 1;
}

static void job_done(void *ctx, const sk_delivery_result *res)
{
    qjob *j = ctx;
    sk_queue *q = j->q;
    qmsg *m = j->m;
    qdest *d = j->d;
    sk_queue_job_ended(q, j);
    sk_queue_job_unlink(j);
    if (m->state != QMSG_DELETED) {
        sk_spool_envelope *env = m->env;
        int64_t now = sk_queue_now_ms(q);
        int throttled = 0;
        int local = j->t && j->t == q->opts.local_transport;
        for (size_t i = 0; i < j->job.nrcpts; i++) {
            sk_delivery_rcpt_result fallback;
            const sk_delivery_rcpt_result *r = &fallback;
            if (res && i < res->nrcpts)
                r = &res->rcpts[i];
            else
                fallback = (sk_delivery_rcpt_result){
                    .status = SK_DELIVERY_TRANSIENT,
                    .reply = sk_reply_make(451, "4.3.0", "%s transport gave no result",
                                           j->t ? j->t->name : "no")};
            size_t idx = j->rcpts[i].index;
            sk_spool_rcpt *rc = &env->rcpts[idx];
            qrcpt *qr = m->rcpts ? &m->rcpts[idx] : NULL;
            char *text = reply_text(&r->reply);
            sk_free(rc->last_reply);
            rc->last_reply = text;
            if (qr && (qr->reply || (qr->reply = sk_malloc(sizeof *qr->reply))))
                *qr->reply = r->reply;
            if (qr && res && res->remote_host && !qr->remote)
                qr->remote = sk_strdup(res->remote_host);
            sk_rule_match mt = {0};
            if (r->status != SK_DELIVERY_OK) mt = sk_queue_classify(q, &r->reply);
            sk_queue_event ev = {.env = env,
                                 .recipient = rc->addr,
                                 .attempt = env->attempts + 1,
                                 .remote_host = res ? res->remote_host : NULL,
                                 .mailbox_file = res && res->files && r->status == SK_DELIVERY_OK
                                                     ? res->files[i]
                                                     : NULL,
                                 .reply = text,
                                 .cls = mt.cls,
                                 .tls = res ? res->tls : NULL,
                                 .destination = d->key,
                                 .priority = m->priority};
            switch (r->status) {
            case SK_DELIVERY_OK:
                rc->state = SK_RCPT_DELIVERED;
                ev.type = SK_QUEUE_EV_DELIVERED;
                /* RFC 3461 5.2.1: a next hop that took the DSN parameters
                 * reports the success itself; 5.2.2: one without DSN
                 * leaves it to us ("relayed"); 5.2.3: local delivery
                 * ("delivered"). */
                if (qr && (local || !(res && res->next_hop_dsn)))
                    qr->outcome = local ? QRCPT_DELIVERED : QRCPT_RELAYED;
                break;
            case SK_DELIVERY_PERMANENT:
                rc->state = SK_RCPT_FAILED;
                ev.type = SK_QUEUE_EV_BOUNCED;
                if (qr) qr->outcome = QRCPT_FAILED;
                break;
            default:
                ev.type = SK_QUEUE_EV_DEFERRED;
                if (text) {
                    sk_free(env->last_reply);
                    env->last_reply = sk_strdup(text);
                }
                break;
            }
            sk_queue_emit(q, &ev);
            /* One throttle per job: its recipients got the same answer. */
            if (r->status != SK_DELIVERY_OK && !throttled)
                throttled = throttle(q, d, m, rc->addr, &r->reply, &mt, text, now);
        }
        /* Record results at once, so a crash does not repeat a delivery
         * made by a transport that cannot detect one (SMTP); unless this
         * job ends the attempt with nothing pending: then the message is
         * simply removed. */
        size_t pending = 0;
        for (size_t i = 0; i < env->nrcpts; i++) pending += env->rcpts[i].state == SK_RCPT_PENDING;
        if (m->jobs_out > 1 || pending) sk_queue_msg_save(q, m);
    }
    sk_queue_job_free(j);
    sk_queue_attempt_release(q, m);
    sk_queue_kick(q);
}

void sk_queue_job_deliver(sk_queue *q, qjob *j)
{
    if (!j->t) {
        /* A configuration gap, not the recipient's fault: keep trying. */
        size_t n = j->job.nrcpts;
        sk_delivery_rcpt_result *rs = sk_calloc(n, sizeof *rs);
        for (size_t i = 0; rs && i < n; i++) {
            rs[i].status = SK_DELIVERY_TRANSIENT;
            rs[i].reply = sk_reply_make(451, "4.3.5", "no transport for %s", j->domain);
        }
        sk_delivery_result res = {.rcpts = rs, .nrcpts = rs ? n : 0};
        job_done(j, &res);
        sk_free(rs);
        return;
    }
    j->t->deliver(j->t, &j->job, job_done, j);
}

/* Recipient i's last reply: this attempt's, else the one the envelope kept
 * from an earlier attempt, read from its text form into *scratch; NULL
 * when there is none. */
const sk_reply *sk_queue_last_reply(const qmsg *m, size_t i, sk_reply *scratch)
{
    if (m->rcpts && m->rcpts[i].reply) return m->rcpts[i].reply;
    if (!m->env->rcpts[i].last_reply) return NULL;
    sk_reply_from_line(m->env->rcpts[i].last_reply, scratch);
    return scratch;
}

/* Every job of an attempt has reported: decide what happens next. */
static void finish_attempt(sk_queue *q, qmsg *m)
{
    sk_spool_envelope *env = m->env;
    env->attempts++;
    m->maybe_delivered = 0; /* this attempt checked for earlier deliveries */
    size_t pending = 0;
    for (size_t i = 0; i < env->nrcpts; i++) pending += env->rcpts[i].state == SK_RCPT_PENDING;
    int64_t now = sk_queue_now_s(q);
    int expired = pending && sk_retry_expired(&q->retry, env->arrival, now);
    /* RFC 3461 5.2.5, RFC 3464 2.3.3 "delayed": once the message has
     * waited delay_warning_ms, one notice per message to the recipients
     * still pending (not per attempt: envelope's delay_dsn_sent). */
    int delay_due = pending && !expired && !env->delay_dsn_sent &&
                    sk_retry_warn_due(&q->retry, env->arrival, now);
    for (size_t i = 0; expired && i < env->nrcpts; i++) {
        sk_spool_rcpt *r = &env->rcpts[i];
        if (r->state != SK_RCPT_PENDING) continue;
        /* RFC 3463 4.4.7: delivery time expired. */
        r->state = SK_RCPT_FAILED;
        if (m->rcpts) m->rcpts[i].outcome = QRCPT_EXPIRED;
        sk_reply scratch;
        sk_rule_match mt = sk_queue_classify(q, sk_queue_last_reply(m, i, &scratch));
        sk_queue_event ev = {.type = SK_QUEUE_EV_EXPIRED,
                             .env = env,
                             .recipient = r->addr,
                             .attempt = env->attempts,
                             .reply = r->last_reply,
                             .cls = mt.cls,
                             .priority = m->priority};
        sk_queue_emit(q, &ev);
    }
    if (delay_due) env->delay_dsn_sent = 1;
    /* One DSN for everything this attempt ended: recipients that failed
     * permanently now, and on expiry every one still pending; recipients
     * delivered now; and the delay notice when it is due. */
    sk_queue_dsn_attempt(q, m, delay_due, now);
    sk_queue_attempt_clear(m);
    if (!pending || expired) {
        sk_queue_msg_remove(q, m);
        return;
    }
    env->state = SK_SPOOL_DEFERRED;
    env->next_attempt = sk_retry_next(&q->retry, env->attempts, sk_queue_now_ms(q));
    sk_queue_msg_set_state(q, m, QMSG_WAITING);
    sk_queue_msg_save(q, m);
    if (env->next_attempt < q->timer_at) sk_queue_arm_retry(q, env->next_attempt);
}

void sk_queue_attempt_release(sk_queue *q, qmsg *m)
{
    if (--m->jobs_out) return;
    if (m->state == QMSG_DELETED)
        sk_queue_msg_free_deleted(q, m);
    else
        finish_attempt(q, m);
}
