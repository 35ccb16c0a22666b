/* The queue runner: picks due messages, puts each recipient group in the
 * queue of its destination (by priority, then arrival), starts deliveries
 * as far as each destination's limits allow, records results durably,
 * retries transient failures on the configured schedule and bounces
 * permanent failures and expired recipients. */
#include <smtpkit/queue.h>

#include <ctype.h>
#include <event2/event.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/queue.h>
#include <time.h>

#include "deliver/deliver.h"
#include "queue/queue_int.h"
#include "spool/spool_int.h"

#define QUEUE_MAX_IN_FLIGHT_DEFAULT 32
#define QUEUE_CONTROL_POLL_MS       200
/* Even with nothing due, look again this often (clock changes, flushes). */
#define QUEUE_IDLE_WAKE_S 60

int64_t sk_queue_now_ms(const sk_queue *q)
{
    if (q->opts.now_ms) return q->opts.now_ms(q->opts.clock_ctx);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t now_s(const sk_queue *q)
{
    return sk_queue_now_ms(q) / 1000;
}

void sk_queue_emit(sk_queue *q, sk_queue_event *ev)
{
    static const char *const names[] = {"queued",  "delivered", "deferred", "bounced",
                                        "expired", "removed",   "dsn",      "throttled"};
    /* Addresses and replies come from peers: escaped and quoted. */
    sk_buf b = SK_BUF_INIT(4096);
    sk_err e = SK_OK;
    if (ev->recipient) {
        e = sk_buf_puts(&b, " rcpt=\"");
        if (!e) e = sk_log_escape(&b, ev->recipient, strlen(ev->recipient));
        if (!e) e = sk_buf_putc(&b, '"');
    }
    if (!e && ev->destination) {
        e = sk_buf_puts(&b, " dest=\"");
        if (!e) e = sk_log_escape(&b, ev->destination, strlen(ev->destination));
        if (!e) e = sk_buf_putc(&b, '"');
    }
    if (!e && ev->remote_host) e = sk_buf_printf(&b, " remote=%s", ev->remote_host);
    if (!e && ev->mailbox_file) {
        e = sk_buf_puts(&b, " file=\"");
        if (!e) e = sk_log_escape(&b, ev->mailbox_file, strlen(ev->mailbox_file));
        if (!e) e = sk_buf_putc(&b, '"');
    }
    if (!e && ev->tls) {
        e = sk_buf_puts(&b, " tls=\"");
        if (!e) e = sk_log_escape(&b, ev->tls, strlen(ev->tls));
        if (!e) e = sk_buf_putc(&b, '"');
    }
    if (!e && (ev->type == SK_QUEUE_EV_DEFERRED || ev->type == SK_QUEUE_EV_BOUNCED ||
               ev->type == SK_QUEUE_EV_EXPIRED || ev->type == SK_QUEUE_EV_THROTTLED))
        e = sk_buf_printf(&b, " class=%s", sk_class_name(ev->cls));
    if (!e && ev->type == SK_QUEUE_EV_THROTTLED)
        e = sk_buf_printf(&b, " for_ms=%llu", (unsigned long long)ev->throttle_ms);
    if (!e && ev->dsn_id) e = sk_buf_printf(&b, " dsn=%s", ev->dsn_id);
    if (!e && ev->reply) {
        e = sk_buf_puts(&b, " reply=\"");
        if (!e) e = sk_log_escape(&b, ev->reply, strlen(ev->reply));
        if (!e) e = sk_buf_putc(&b, '"');
    }
    /* "queued" repeats the daemon's own queued line (or, for a DSN, the
     * bounced line naming it), so it is a debug line; every later event
     * of a message is logged. */
    sk_log(&q->opts.log, ev->type == SK_QUEUE_EV_QUEUED ? SK_LOG_DEBUG : SK_LOG_INFO,
           "%s queue %s attempt=%u prio=%d%s", ev->env->id, names[ev->type], ev->attempt,
           ev->priority, e ? " (log line too long)" : sk_buf_cstr(&b));
    sk_buf_free(&b);
    if (q->opts.on_event) q->opts.on_event(q->opts.event_ctx, ev);
}

/* A message event (queued, removed). */
static void emit_msg(sk_queue *q, sk_queue_event_type type, const qmsg *m)
{
    sk_queue_event ev = {
        .type = type, .env = m->env, .attempt = m->env->attempts, .priority = m->priority};
    sk_queue_emit(q, &ev);
}

void sk_queue_kick(sk_queue *q)
{
    event_active(q->kick_ev, EV_TIMEOUT, 0);
}

static void ready_add(sk_queue *q, qmsg *m)
{
    if (m->ready || m->deleted || m->jobs_out || m->env->state == SK_SPOOL_HOLD) return;
    TAILQ_INSERT_TAIL(&q->ready, m, rlink);
    m->ready = 1;
}

static void ready_del(sk_queue *q, qmsg *m)
{
    if (!m->ready) return;
    TAILQ_REMOVE(&q->ready, m, rlink);
    m->ready = 0;
}

/* Make the retry timer fire at unix time at (or now, if that has passed). */
static void arm(sk_queue *q, int64_t at)
{
    int64_t now = now_s(q);
    q->timer_at = at;
    struct timeval tv = {.tv_sec = at > now ? at - now : 0};
    event_add(q->timer_ev, &tv);
}

static qmsg *find(sk_queue *q, const char *id)
{
    for (qmsg *m = q->msgs; m; m = m->next)
        if (!m->deleted && !strcmp(m->env->id, id)) return m;
    return NULL;
}

static void unlink_msg(sk_queue *q, qmsg *m)
{
    ready_del(q, m);
    if (m->prev)
        m->prev->next = m->next;
    else
        q->msgs = m->next;
    if (m->next)
        m->next->prev = m->prev;
    else
        q->msgs_tail = m->prev;
    m->prev = m->next = NULL;
    q->count--;
}

static void attempt_state_free(qmsg *m)
{
    for (size_t i = 0; m->rcpts && i < m->env->nrcpts; i++) {
        sk_free(m->rcpts[i].reply);
        sk_free(m->rcpts[i].remote);
    }
    sk_free(m->rcpts);
    m->rcpts = NULL;
}

static void free_msg(qmsg *m)
{
    attempt_state_free(m);
    sk_spool_envelope_free(m->env);
    sk_free(m);
}

/* Append: the list stays in arrival order, oldest first. NULL when out
 * of memory. */
static qmsg *add_msg(sk_queue *q, sk_spool_envelope *env, int maybe_delivered)
{
    qmsg *m = sk_calloc(1, sizeof *m);
    if (!m) return NULL;
    m->env = env;
    m->maybe_delivered = maybe_delivered;
    m->seq = ++q->seq;
    m->priority = sk_queue_priority_of(env, q->opts.priority_rules, q->opts.npriority_rules);
    m->prev = q->msgs_tail;
    if (q->msgs_tail)
        q->msgs_tail->next = m;
    else
        q->msgs = m;
    q->msgs_tail = m;
    q->count++;
    return m;
}

static void save(sk_queue *q, qmsg *m)
{
    sk_error err;
    if (sk_spool_save(q->spool, m->env, &err))
        sk_log(&q->opts.log, SK_LOG_ERR, "%s queue save-failed error=\"%s\"", m->env->id, err.text);
}

/* ---- jobs, destinations and routes ---- */

void sk_queue_job_free(qjob *j)
{
    sk_free(j->rcpts);
    sk_free(j->domain);
    sk_free(j->sender);
    sk_buf_free(&j->body_path);
    sk_free(j);
}

void sk_queue_job_unlink(qmsg *m, qjob *j)
{
    if (j->mprev)
        j->mprev->mnext = j->mnext;
    else
        m->jobs = j->mnext;
    if (j->mnext) j->mnext->mprev = j->mprev;
    j->mprev = j->mnext = NULL;
}

/* The message leaves the queue (all recipients done, or deleted). */
static void spool_remove(sk_queue *q, const char *id)
{
    sk_error err;
    if (sk_spool_remove(q->spool, id, &err) && err.err != SK_ERR_NOT_FOUND)
        sk_log(&q->opts.log, SK_LOG_ERR, "%s queue remove-failed error=\"%s\"", id, err.text);
}

/* A deleted message whose last job has reported (or was cancelled). */
static void free_deleted(sk_queue *q, qmsg *m)
{
    if (m->remove_when_done) spool_remove(q, m->env->id);
    free_msg(m);
}

static void remove_msg(sk_queue *q, qmsg *m)
{
    emit_msg(q, SK_QUEUE_EV_REMOVED, m);
    unlink_msg(q, m);
    sk_queue_cancel_waiting(m);
    if (m->jobs_out) {
        m->deleted = 1; /* freed when its last job reports */
        m->remove_when_done = 1;
    } else {
        spool_remove(q, m->env->id);
        free_msg(m);
    }
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

static const sk_rules *rules(const sk_queue *q)
{
    return q->opts.rules ? q->opts.rules : q->own_rules;
}

/* The rule a reply matches (NULL: no reply); none without rules. */
sk_rule_match sk_queue_classify(const sk_queue *q, const sk_reply *r)
{
    sk_rule_match none = {0};
    if (!rules(q)) return none;
    return r ? sk_rules_match(rules(q), r->code, r->enhanced, r->text)
             : sk_rules_match(rules(q), 0, "", "");
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

/* ---- throttling ---- */

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

/* ---- attempts ---- */

/* Every job of an attempt has reported: decide what happens next. */
static void finish_attempt(sk_queue *q, qmsg *m)
{
    sk_spool_envelope *env = m->env;
    env->attempts++;
    m->maybe_delivered = 0; /* this attempt checked for earlier deliveries */
    size_t pending = 0;
    for (size_t i = 0; i < env->nrcpts; i++) pending += env->rcpts[i].state == SK_RCPT_PENDING;
    int64_t now = now_s(q);
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
    attempt_state_free(m);
    if (!pending || expired) {
        remove_msg(q, m);
        return;
    }
    env->state = SK_SPOOL_DEFERRED;
    env->next_attempt = sk_retry_next(&q->retry, env->attempts, now);
    save(q, m);
    if (env->next_attempt < q->timer_at) arm(q, env->next_attempt);
}

void sk_queue_attempt_release(sk_queue *q, qmsg *m)
{
    if (--m->jobs_out) return;
    if (m->deleted)
        free_deleted(q, m);
    else
        finish_attempt(q, m);
}

static void job_done(void *ctx, const sk_delivery_result *res)
{
    qjob *j = ctx;
    sk_queue *q = j->q;
    qmsg *m = j->m;
    qdest *d = j->d;
    sk_queue_job_ended(q, j);
    sk_queue_job_unlink(m, j);
    if (!m->deleted) {
        sk_spool_envelope *env = m->env;
        int64_t now = sk_queue_now_ms(q);
        int throttled = 0;
        int local = j->t && j->t == q->opts.local_transport;
        for (size_t i = 0; i < j->job.nrcpts; i++) {
            sk_delivery_rcpt_result fallback = {.status = SK_DELIVERY_TRANSIENT};
            fallback.reply = sk_reply_make(451, "4.3.0", "%s transport gave no result",
                                           j->t ? j->t->name : "no");
            const sk_delivery_rcpt_result *r = res && i < res->nrcpts ? &res->rcpts[i] : &fallback;
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
        if (m->jobs_out > 1 || pending) save(q, m);
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
    if (s)
        for (char *p = s; *p; p++) *p = (char)tolower((unsigned char)*p);
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
    j->mnext = m->jobs;
    if (m->jobs) m->jobs->mprev = j;
    m->jobs = j;
    m->jobs_out++;
    sk_queue_route_job(q, j);
    return 1;
}

/* One delivery attempt for m: a job per destination domain, each in the
 * queue of its destination. */
static void start_attempt(sk_queue *q, qmsg *m)
{
    sk_spool_envelope *env = m->env;
    size_t nr = env->nrcpts ? env->nrcpts : 1;
    size_t *idx = sk_calloc(nr, sizeof *idx);
    char **domains = sk_calloc(nr, sizeof *domains);
    env->state = SK_SPOOL_ACTIVE;
    m->priority = sk_queue_priority_of(env, q->opts.priority_rules, q->opts.npriority_rules);
    attempt_state_free(m);
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

/* Start attempts for every ready message (their jobs wait in the queues
 * of their destinations), then start what the limits allow. */
static void run_ready(sk_queue *q)
{
    qmsg *m;
    while ((m = TAILQ_FIRST(&q->ready))) {
        ready_del(q, m);
        start_attempt(q, m); /* may finish, and free m, before it returns */
    }
    sk_queue_dispatch(q);
}

/* The timer: find deferred messages that are due, then set the timer for
 * the next one. */
static void scan(sk_queue *q)
{
    sk_queue_collect(q);
    int64_t now = now_s(q);
    int64_t next = now + QUEUE_IDLE_WAKE_S;
    for (qmsg *m = q->msgs; m; m = m->next) {
        if (m->jobs_out || m->ready || m->env->state == SK_SPOOL_HOLD) continue;
        if (m->env->next_attempt <= now)
            ready_add(q, m);
        else if (m->env->next_attempt < next)
            next = m->env->next_attempt;
    }
    arm(q, next);
    run_ready(q);
}

void sk_queue_poke(sk_queue *q)
{
    scan(q);
}

static void on_kick(evutil_socket_t fd, short what, void *arg)
{
    run_ready(arg);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    scan(arg);
}

static void on_dispatch(evutil_socket_t fd, short what, void *arg)
{
    sk_queue *q = arg;
    q->disp_at = 0;
    sk_queue_dispatch(q);
}

static void on_commit(void *ctx, const sk_spool_envelope *env)
{
    sk_queue *q = ctx;
    sk_spool_envelope *copy = sk_spool_envelope_dup(env);
    qmsg *m = copy ? add_msg(q, copy, 0) : NULL;
    if (!m) {
        /* It is safe on disk; the next start picks it up. */
        sk_spool_envelope_free(copy);
        sk_log(&q->opts.log, SK_LOG_ERR, "%s queue add-failed error=nomem", env->id);
        return;
    }
    emit_msg(q, SK_QUEUE_EV_QUEUED, m);
    /* A message with a future first attempt waits for the timer. */
    if (copy->next_attempt <= now_s(q))
        ready_add(q, m);
    else if (copy->next_attempt < q->timer_at)
        arm(q, copy->next_attempt);
    sk_queue_kick(q);
}

sk_err sk_queue_flush(sk_queue *q)
{
    for (qmsg *m = q->msgs; m; m = m->next) {
        if (m->deleted || m->jobs_out || m->env->state != SK_SPOOL_DEFERRED) continue;
        m->env->state = SK_SPOOL_ACTIVE;
        m->env->next_attempt = 0;
        save(q, m);
        ready_add(q, m);
    }
    sk_queue_kick(q);
    return SK_OK;
}

sk_err sk_queue_release(sk_queue *q, const char *id)
{
    qmsg *m = find(q, id);
    if (!m) return SK_ERR_NOT_FOUND;
    if (!m->jobs_out) {
        m->env->state = SK_SPOOL_ACTIVE;
        m->env->next_attempt = 0;
        save(q, m);
        ready_add(q, m);
    }
    sk_queue_kick(q);
    return SK_OK;
}

sk_err sk_queue_delete(sk_queue *q, const char *id)
{
    qmsg *m = find(q, id);
    if (!m) return SK_ERR_NOT_FOUND;
    remove_msg(q, m);
    return SK_OK;
}

size_t sk_queue_count(const sk_queue *q)
{
    return q->count;
}

size_t sk_queue_in_flight(const sk_queue *q)
{
    return q->in_flight;
}

sk_err sk_queue_apply(sk_queue *q, sk_queue_op op, const char *id)
{
    switch (op) {
    case SK_QUEUE_OP_FLUSH:
        return sk_queue_flush(q);
    case SK_QUEUE_OP_RELEASE:
        return sk_queue_release(q, id);
    case SK_QUEUE_OP_DELETE:
        return sk_queue_delete(q, id);
    }
    return SK_ERR_INVAL;
}

static void on_control(evutil_socket_t fd, short what, void *arg)
{
    sk_queue *q = arg;
    sk_queue_control_poll(q, sk_spool_ctl_dir(q->spool), &q->opts.log);
}

sk_queue *sk_queue_new(sk_spool *spool, const sk_queue_opts *opts, struct event_base *base,
                       sk_error *err)
{
    sk_error_clear(err);
    sk_queue *q = sk_calloc(1, sizeof *q);
    if (!q) {
        sk_error_set(err, SK_ERR_NOMEM, SK_STEP_NONE, "out of memory");
        return NULL;
    }
    TAILQ_INIT(&q->ready);
    TAILQ_INIT(&q->active);
    q->spool = spool;
    q->base = base;
    if (opts) q->opts = *opts;
    sk_err retry_err = sk_retry_init(&q->retry, &q->opts);
    if (!q->opts.max_in_flight) q->opts.max_in_flight = QUEUE_MAX_IN_FLIGHT_DEFAULT;
    if (!q->opts.control_poll_ms) q->opts.control_poll_ms = QUEUE_CONTROL_POLL_MS;
    if (!q->opts.dest_max_conns) q->opts.dest_max_conns = SK_QUEUE_DEST_CONNS_DEFAULT;
    if (!q->opts.msgs_per_conn) q->opts.msgs_per_conn = SK_QUEUE_MSGS_PER_CONN_DEFAULT;
    if (!q->opts.route_ttl_ms) q->opts.route_ttl_ms = SK_QUEUE_ROUTE_TTL_MS_DEFAULT;
    if (!q->opts.throttle_suspend_ms)
        q->opts.throttle_suspend_ms = SK_QUEUE_THROTTLE_SUSPEND_MS_DEFAULT;
    /* The rule lists are copied, so callers may pass temporaries. */
    q->opts.rate_rules = NULL;
    q->opts.priority_rules = NULL;
    sk_queue_rate_rule *rr = NULL;
    sk_queue_priority_rule *pr = NULL;
    if (opts && opts->nrate_rules && opts->rate_rules) {
        rr = sk_calloc(opts->nrate_rules, sizeof *rr);
        if (rr) memcpy(rr, opts->rate_rules, opts->nrate_rules * sizeof *rr);
    }
    if (opts && opts->npriority_rules && opts->priority_rules) {
        pr = sk_calloc(opts->npriority_rules, sizeof *pr);
        if (pr) memcpy(pr, opts->priority_rules, opts->npriority_rules * sizeof *pr);
    }
    q->opts.rate_rules = rr;
    q->opts.nrate_rules = rr ? q->opts.nrate_rules : 0;
    q->opts.priority_rules = pr;
    q->opts.npriority_rules = pr ? q->opts.npriority_rules : 0;
    if (!q->opts.rules && sk_rules_default(&q->own_rules, err)) {
        sk_queue_free(q);
        return NULL;
    }
    q->kick_ev = event_new(base, -1, 0, on_kick, q);
    q->timer_ev = event_new(base, -1, 0, on_timer, q);
    q->disp_ev = event_new(base, -1, 0, on_dispatch, q);
    q->ctl_ev = event_new(base, -1, EV_PERSIST, on_control, q);
    if (retry_err || !q->kick_ev || !q->timer_ev || !q->disp_ev || !q->ctl_ev ||
        (opts && opts->nrate_rules && opts->rate_rules && !rr) ||
        (opts && opts->npriority_rules && opts->priority_rules && !pr)) {
        sk_error_set(err, SK_ERR_NOMEM, SK_STEP_NONE, "out of memory");
        sk_queue_free(q);
        return NULL;
    }

    /* Everything already on disk: possibly delivered before a crash. */
    char **ids;
    size_t n;
    if (sk_spool_list(spool, &ids, &n, err)) {
        sk_queue_free(q);
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        sk_spool_envelope *env;
        sk_error e2;
        if (sk_spool_load(spool, ids[i], &env, &e2)) {
            sk_log(&q->opts.log, SK_LOG_ERR, "%s queue load-failed error=\"%s\"", ids[i], e2.text);
            continue;
        }
        if (!add_msg(q, env, 1)) {
            sk_spool_envelope_free(env);
            sk_spool_ids_free(ids, n);
            sk_error_set(err, SK_ERR_NOMEM, SK_STEP_NONE, "out of memory");
            sk_queue_free(q);
            return NULL;
        }
    }
    sk_spool_ids_free(ids, n);
    sk_log(&q->opts.log, SK_LOG_INFO, "- queue started messages=%zu", q->count);
    sk_spool_set_listener(spool, on_commit, q);
    struct timeval tv = {.tv_sec = q->opts.control_poll_ms / 1000,
                         .tv_usec = (q->opts.control_poll_ms % 1000) * 1000};
    event_add(q->ctl_ev, &tv);
    arm(q, 0); /* the first scan finds what is due */
    return q;
}

void sk_queue_free(sk_queue *q)
{
    if (!q) return;
    if (q->spool) sk_spool_set_listener(q->spool, NULL, NULL);
    sk_transport *ts[] = {q->opts.local_transport, q->opts.remote_transport};
    for (size_t i = 0; i < 2; i++)
        if (ts[i] && ts[i]->cancel) ts[i]->cancel(ts[i]);
    while (q->jobs) {
        qjob *j = q->jobs;
        q->jobs = j->next;
        /* A message deleted while this job was out is freed with its last
         * job; the others are still on the list below. */
        if (--j->m->jobs_out == 0 && j->m->deleted) free_deleted(q, j->m);
        sk_queue_job_free(j);
    }
    sk_queue_dests_free(q);
    while (q->msgs) {
        qmsg *m = q->msgs;
        q->msgs = m->next;
        free_msg(m);
    }
    /* DSNs still being committed finish without us. */
    for (qdsn *x = q->dsns; x; x = x->next) x->q = NULL;
    if (q->kick_ev) event_free(q->kick_ev);
    if (q->timer_ev) event_free(q->timer_ev);
    if (q->disp_ev) event_free(q->disp_ev);
    if (q->ctl_ev) event_free(q->ctl_ev);
    sk_rules_free(q->own_rules);
    sk_free((void *)q->opts.rate_rules);
    sk_free((void *)q->opts.priority_rules);
    sk_retry_free(&q->retry);
    sk_free(q);
}
