/* The queue runner: picks due messages, groups their recipients by
 * destination, delivers through transports, records results durably and
 * retries transient failures on the configured schedule. */
#include <smtpkit/queue.h>

#include <ctype.h>
#include <event2/event.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "deliver/deliver.h"
#include "queue/queue_int.h"
#include "spool/spool_int.h"

#define QUEUE_MAX_IN_FLIGHT_DEFAULT 32
#define QUEUE_CONTROL_POLL_MS       200
/* Even with nothing due, look again this often (clock changes, flushes). */
#define QUEUE_IDLE_WAKE_S 60

typedef struct qmsg qmsg;
typedef struct qjob qjob;

struct qmsg {
    sk_spool_envelope *env;
    int maybe_delivered; /* loaded at start: a crash may have hidden a delivery */
    unsigned jobs_out;   /* jobs in flight (+1 while an attempt is being started) */
    int deleted;
    int ready; /* on the ready list */
    qmsg *prev, *next;
    qmsg *rprev, *rnext;
};

struct qjob {
    sk_queue *q;
    qmsg *m;
    sk_transport *t;
    sk_delivery job;
    sk_delivery_rcpt *rcpts;
    char *domain;
    sk_buf body_path;
    qjob *prev, *next;
};

struct sk_queue {
    sk_spool *spool;
    sk_queue_opts opts;
    uint64_t *retry_ms;
    size_t nretry;
    struct event_base *base;
    struct event *kick_ev;  /* coalesced "look for due work" */
    struct event *timer_ev; /* next retry time */
    struct event *ctl_ev;   /* requests from other processes */
    qmsg *msgs, *msgs_tail; /* all messages, oldest first */
    size_t count;
    /* Messages due now, in the order they became due: commits, releases
     * and flushes add here directly; the timer adds deferred ones whose
     * time has come. Only the timer scans the whole queue. */
    qmsg *ready_head, *ready_tail;
    int64_t timer_at; /* unix seconds the timer is set for */
    qjob *jobs;
    size_t in_flight;
};

static void emit(sk_queue *q, sk_queue_event_type type, const sk_spool_envelope *env,
                 const char *rcpt, const char *remote, const char *reply)
{
    static const char *const names[] = {"queued",  "delivered", "deferred",
                                        "bounced", "expired",   "removed"};
    /* Addresses and replies come from peers: escaped and quoted. */
    sk_buf b = SK_BUF_INIT(4096);
    sk_err e = SK_OK;
    if (rcpt) {
        e = sk_buf_puts(&b, " rcpt=\"");
        if (!e) e = sk_log_escape(&b, rcpt, strlen(rcpt));
        if (!e) e = sk_buf_putc(&b, '"');
    }
    if (!e && remote) e = sk_buf_printf(&b, " remote=%s", remote);
    if (!e && reply) {
        e = sk_buf_puts(&b, " reply=\"");
        if (!e) e = sk_log_escape(&b, reply, strlen(reply));
        if (!e) e = sk_buf_putc(&b, '"');
    }
    sk_log(&q->opts.log, SK_LOG_INFO, "%s queue %s attempt=%u%s", env->id, names[type],
           env->attempts, e ? " (log line too long)" : sk_buf_cstr(&b));
    sk_buf_free(&b);
    if (!q->opts.on_event) return;
    sk_queue_event ev = {.type = type,
                         .env = env,
                         .recipient = rcpt,
                         .attempt = env->attempts,
                         .remote_host = remote,
                         .reply = reply};
    q->opts.on_event(q->opts.event_ctx, &ev);
}

static void kick(sk_queue *q)
{
    event_active(q->kick_ev, EV_TIMEOUT, 0);
}

static void ready_add(sk_queue *q, qmsg *m)
{
    if (m->ready || m->deleted || m->jobs_out || m->env->state == SK_SPOOL_HOLD) return;
    m->rprev = q->ready_tail;
    m->rnext = NULL;
    if (q->ready_tail)
        q->ready_tail->rnext = m;
    else
        q->ready_head = m;
    q->ready_tail = m;
    m->ready = 1;
}

static void ready_del(sk_queue *q, qmsg *m)
{
    if (!m->ready) return;
    if (m->rprev)
        m->rprev->rnext = m->rnext;
    else
        q->ready_head = m->rnext;
    if (m->rnext)
        m->rnext->rprev = m->rprev;
    else
        q->ready_tail = m->rprev;
    m->rprev = m->rnext = NULL;
    m->ready = 0;
}

/* Make the timer fire at unix time at (or now, if that has passed). */
static void arm(sk_queue *q, int64_t at)
{
    int64_t now = (int64_t)time(NULL);
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

static void free_msg(qmsg *m)
{
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

/* The message leaves the queue (all recipients done, or deleted). */
static void remove_msg(sk_queue *q, qmsg *m)
{
    sk_error err;
    if (sk_spool_remove(q->spool, m->env->id, &err) && err.err != SK_ERR_NOT_FOUND)
        sk_log(&q->opts.log, SK_LOG_ERR, "%s queue remove-failed error=\"%s\"", m->env->id,
               err.text);
    emit(q, SK_QUEUE_EV_REMOVED, m->env, NULL, NULL, NULL);
    unlink_msg(q, m);
    if (m->jobs_out)
        m->deleted = 1; /* freed when its last job reports */
    else
        free_msg(m);
}

static char *reply_text(const sk_reply *r)
{
    sk_buf b = SK_BUF_INIT(SK_REPLY_TEXT_MAX_OCTETS + 32);
    if (sk_buf_printf(&b, "%d%s%s %s", r->code, r->enhanced[0] ? " " : "", r->enhanced, r->text)) {
        sk_buf_free(&b);
        return NULL;
    }
    /* Multi-line replies are joined by '\n'; keep one line for display. */
    for (size_t i = 0; i < b.len; i++)
        if (b.data[i] == '\n' || b.data[i] == '\r') b.data[i] = ' ';
    return sk_buf_detach(&b, NULL);
}

static uint64_t retry_delay_ms(const sk_queue *q, unsigned attempts)
{
    size_t i = attempts ? attempts - 1 : 0;
    if (i >= q->nretry) i = q->nretry - 1;
    return q->retry_ms[i];
}

/* Every job of an attempt has reported: decide what happens next. */
static void finish_attempt(sk_queue *q, qmsg *m)
{
    sk_spool_envelope *env = m->env;
    env->attempts++;
    m->maybe_delivered = 0; /* this attempt checked for earlier deliveries */
    size_t pending = 0;
    for (size_t i = 0; i < env->nrcpts; i++) pending += env->rcpts[i].state == SK_RCPT_PENDING;
    if (!pending) {
        remove_msg(q, m);
        return;
    }
    int64_t now = (int64_t)time(NULL);
    /* An arrival in the future (clock set back) never expires early. */
    if (now > env->arrival && (uint64_t)(now - env->arrival) * 1000u >= q->opts.max_lifetime_ms) {
        /* RFC 3463 4.4.7: delivery time expired. A DSN is issue-7 work:
         * the event is what the bounce generator will hook onto. */
        for (size_t i = 0; i < env->nrcpts; i++) {
            sk_spool_rcpt *r = &env->rcpts[i];
            if (r->state != SK_RCPT_PENDING) continue;
            r->state = SK_RCPT_FAILED;
            emit(q, SK_QUEUE_EV_EXPIRED, env, r->addr, NULL, r->last_reply);
        }
        remove_msg(q, m);
        return;
    }
    env->state = SK_SPOOL_DEFERRED;
    env->next_attempt = now + (int64_t)(retry_delay_ms(q, env->attempts) + 999) / 1000;
    save(q, m);
    if (env->next_attempt < q->timer_at) arm(q, env->next_attempt);
}

static void job_free(qjob *j)
{
    sk_free(j->rcpts);
    sk_free(j->domain);
    sk_buf_free(&j->body_path);
    sk_free(j);
}

static void job_done(void *ctx, const sk_delivery_result *res)
{
    qjob *j = ctx;
    sk_queue *q = j->q;
    qmsg *m = j->m;
    if (j->prev)
        j->prev->next = j->next;
    else
        q->jobs = j->next;
    if (j->next) j->next->prev = j->prev;
    q->in_flight--;
    if (!m->deleted) {
        sk_spool_envelope *env = m->env;
        for (size_t i = 0; i < j->job.nrcpts; i++) {
            sk_delivery_rcpt_result fallback = {.status = SK_DELIVERY_TRANSIENT};
            fallback.reply = sk_reply_make(451, "4.3.0", "%s transport gave no result",
                                           j->t ? j->t->name : "no");
            const sk_delivery_rcpt_result *r = res && i < res->nrcpts ? &res->rcpts[i] : &fallback;
            sk_spool_rcpt *rc = &env->rcpts[j->rcpts[i].index];
            char *text = reply_text(&r->reply);
            sk_free(rc->last_reply);
            rc->last_reply = text;
            const char *remote = res ? res->remote_host : NULL;
            switch (r->status) {
            case SK_DELIVERY_OK:
                rc->state = SK_RCPT_DELIVERED;
                emit(q, SK_QUEUE_EV_DELIVERED, env, rc->addr, remote, text);
                break;
            case SK_DELIVERY_PERMANENT:
                rc->state = SK_RCPT_FAILED;
                emit(q, SK_QUEUE_EV_BOUNCED, env, rc->addr, remote, text);
                break;
            default:
                emit(q, SK_QUEUE_EV_DEFERRED, env, rc->addr, remote, text);
                if (text) {
                    sk_free(env->last_reply);
                    env->last_reply = sk_strdup(text);
                }
                break;
            }
        }
        /* Record results at once, so a crash does not repeat a delivery
         * made by a transport that cannot detect one (SMTP); unless this
         * job ends the attempt with nothing pending: then the message is
         * simply removed. */
        size_t pending = 0;
        for (size_t i = 0; i < env->nrcpts; i++) pending += env->rcpts[i].state == SK_RCPT_PENDING;
        if (m->jobs_out > 1 || pending) save(q, m);
    }
    job_free(j);
    if (--m->jobs_out == 0) {
        if (m->deleted)
            free_msg(m);
        else
            finish_attempt(q, m);
    }
    kick(q);
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

/* Start delivery of one recipient group. Returns 0 when out of memory. */
static int start_job(sk_queue *q, qmsg *m, const char *domain, const size_t *idx, size_t n)
{
    qjob *j = sk_calloc(1, sizeof *j);
    if (!j) return 0;
    j->q = q;
    j->m = m;
    j->domain = sk_strdup(domain);
    j->rcpts = sk_calloc(n, sizeof *j->rcpts);
    sk_buf_init(&j->body_path, 4096);
    if (!j->domain || !j->rcpts || sk_spool_body_path(q->spool, m->env->id, &j->body_path)) {
        job_free(j);
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
                           .maybe_delivered = m->maybe_delivered};
    j->t = is_local(q, domain) ? q->opts.local_transport : q->opts.remote_transport;
    j->next = q->jobs;
    if (q->jobs) q->jobs->prev = j;
    q->jobs = j;
    q->in_flight++;
    m->jobs_out++;
    if (!j->t) {
        /* A configuration gap, not the recipient's fault: keep trying. */
        sk_delivery_rcpt_result *rs = sk_calloc(n, sizeof *rs);
        for (size_t i = 0; rs && i < n; i++) {
            rs[i].status = SK_DELIVERY_TRANSIENT;
            rs[i].reply = sk_reply_make(451, "4.3.5", "no transport for %s", domain);
        }
        sk_delivery_result res = {.rcpts = rs, .nrcpts = rs ? n : 0};
        job_done(j, &res);
        sk_free(rs);
        return 1;
    }
    j->t->deliver(j->t, &j->job, job_done, j);
    return 1;
}

/* One delivery attempt for m: a job per destination domain. */
static void start_attempt(sk_queue *q, qmsg *m)
{
    sk_spool_envelope *env = m->env;
    size_t *idx = sk_calloc(env->nrcpts ? env->nrcpts : 1, sizeof *idx);
    char **domains = sk_calloc(env->nrcpts ? env->nrcpts : 1, sizeof *domains);
    env->state = SK_SPOOL_ACTIVE;
    m->jobs_out++; /* guard: a transport may finish before we return */
    if (idx && domains) {
        for (size_t i = 0; i < env->nrcpts; i++)
            if (env->rcpts[i].state == SK_RCPT_PENDING)
                domains[i] = rcpt_domain(q, env->rcpts[i].addr);
        for (size_t i = 0; i < env->nrcpts; i++) {
            if (!domains[i]) continue;
            size_t n = 0;
            for (size_t k = i; k < env->nrcpts; k++) {
                if (domains[k] && !strcmp(domains[k], domains[i])) {
                    idx[n++] = k;
                    if (k != i) {
                        sk_free(domains[k]);
                        domains[k] = NULL;
                    }
                }
            }
            if (!start_job(q, m, domains[i], idx, n))
                sk_log(&q->opts.log, SK_LOG_ERR, "%s queue job-failed error=nomem", env->id);
            sk_free(domains[i]);
            domains[i] = NULL;
        }
    }
    sk_free(idx);
    sk_free(domains);
    if (--m->jobs_out == 0) {
        if (m->deleted)
            free_msg(m);
        else
            finish_attempt(q, m);
    }
}

/* Start attempts for ready messages, as many as the limit allows. */
static void run_ready(sk_queue *q)
{
    while (q->ready_head && q->in_flight < q->opts.max_in_flight) {
        qmsg *m = q->ready_head;
        ready_del(q, m);
        start_attempt(q, m); /* may finish, and free m, before it returns */
    }
}

/* The timer: find deferred messages that are due, then set the timer for
 * the next one. */
static void scan(sk_queue *q)
{
    int64_t now = (int64_t)time(NULL);
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

static void on_kick(evutil_socket_t fd, short what, void *arg)
{
    run_ready(arg);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    scan(arg);
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
    emit(q, SK_QUEUE_EV_QUEUED, copy, NULL, NULL, NULL);
    /* A message with a future first attempt waits for the timer. */
    if (copy->next_attempt <= (int64_t)time(NULL))
        ready_add(q, m);
    else if (copy->next_attempt < q->timer_at)
        arm(q, copy->next_attempt);
    kick(q);
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
    kick(q);
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
    kick(q);
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
    q->spool = spool;
    q->base = base;
    if (opts) q->opts = *opts;
    static const uint64_t defaults[] = SK_QUEUE_RETRY_DEFAULT_MS;
    const uint64_t *src = q->opts.retry_ms && q->opts.nretry ? q->opts.retry_ms : defaults;
    q->nretry =
        q->opts.retry_ms && q->opts.nretry ? q->opts.nretry : sizeof defaults / sizeof defaults[0];
    q->retry_ms = sk_calloc(q->nretry, sizeof *q->retry_ms);
    if (!q->opts.max_lifetime_ms) q->opts.max_lifetime_ms = SK_QUEUE_LIFETIME_DEFAULT_MS;
    if (!q->opts.max_in_flight) q->opts.max_in_flight = QUEUE_MAX_IN_FLIGHT_DEFAULT;
    if (!q->opts.control_poll_ms) q->opts.control_poll_ms = QUEUE_CONTROL_POLL_MS;
    q->kick_ev = event_new(base, -1, 0, on_kick, q);
    q->timer_ev = event_new(base, -1, 0, on_timer, q);
    q->ctl_ev = event_new(base, -1, EV_PERSIST, on_control, q);
    if (!q->retry_ms || !q->kick_ev || !q->timer_ev || !q->ctl_ev) {
        sk_error_set(err, SK_ERR_NOMEM, SK_STEP_NONE, "out of memory");
        sk_queue_free(q);
        return NULL;
    }
    memcpy(q->retry_ms, src, q->nretry * sizeof *q->retry_ms);

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
        if (--j->m->jobs_out == 0 && j->m->deleted) free_msg(j->m);
        job_free(j);
    }
    while (q->msgs) {
        qmsg *m = q->msgs;
        q->msgs = m->next;
        free_msg(m);
    }
    if (q->kick_ev) event_free(q->kick_ev);
    if (q->timer_ev) event_free(q->timer_ev);
    if (q->ctl_ev) event_free(q->ctl_ev);
    sk_free(q->retry_ms);
    sk_free(q);
}
