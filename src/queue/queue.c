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
/* Even with nothing due, look again this often (clock changes, flushes). */
#define QUEUE_IDLE_WAKE_S 60
/* A route key lookup that failed is tried again after at most this. */
#define QUEUE_ROUTE_FAIL_TTL_MS 60000
#define QUEUE_HASH_SIZE         1024
/* RFC 6710 2: priorities -9..9, one FIFO level each. */
#define PRIO_MIN    (-9)
#define PRIO_LEVELS 19

typedef struct qmsg qmsg;
typedef struct qjob qjob;
typedef struct qdest qdest;
typedef struct qroute qroute;
typedef struct qdsn qdsn;

struct qmsg {
    sk_spool_envelope *env;
    int maybe_delivered; /* loaded at start: a crash may have hidden a delivery */
    unsigned jobs_out;   /* jobs of the attempt not yet reported (+1 while it is set up) */
    int deleted;
    /* Deleted while jobs were out: its spool file goes when the last one
     * reports, since a transport may still be reading it and a removed
     * file is soon reused for another message (docs/queue.md). */
    int remove_when_done;
    int ready; /* on the ready list */
    int priority;
    /* Arrival order: stored messages in ID order at start, then commits as
     * they come (IDs alone do not order messages of the same millisecond). */
    uint64_t seq;
    qjob *jobs; /* this attempt's jobs: waiting for a route, queued or running */
    /* This attempt: recipients that failed permanently, and who said so. */
    unsigned char *failed_now;
    char **remote;
    /* This attempt: recipients delivered (1: by us, 2: relayed to a host
     * without DSN), for success notifications (RFC 3461 5.2.2, 5.2.3). */
    unsigned char *success_now;
    qmsg *prev, *next;
    TAILQ_ENTRY(qmsg) rlink; /* in q->ready while ready */
};

typedef enum job_state { JOB_ROUTING = 0, JOB_QUEUED, JOB_RUNNING } job_state;

/* One message to the recipients it has at one domain. */
struct qjob {
    sk_queue *q;
    qmsg *m;
    job_state state;
    qdest *d;      /* once routed */
    qroute *route; /* while waiting for a route key */
    sk_transport *t;
    sk_delivery job;
    sk_delivery_rcpt *rcpts;
    char *domain;
    sk_buf body_path;
    char *sender;        /* VERP sender, NULL when the message's own is used */
    qjob *prev, *next;   /* the running list, a destination level or a route's waiters */
    qjob *mprev, *mnext; /* the message's jobs */
};

/* A destination: a domain, or with provider grouping every domain with the
 * same route key. Its limits hold for all of them together. */
struct qdest {
    char *key;
    int local;
    sk_bucket bucket; /* the configured rate */
    int overridden;   /* bucket has a per-domain rate */
    sk_bucket slow;   /* a rate a rule imposed, until slow_until (ms) */
    int64_t slow_until;
    int64_t suspended_until; /* ms */
    unsigned in_flight;
    size_t queued;
    qjob *head[PRIO_LEVELS], *tail[PRIO_LEVELS];
    int active;               /* on the list of destinations with queued jobs */
    TAILQ_ENTRY(qdest) alink; /* in q->active while active */
    qdest *hnext;
};

/* A domain's route key, as the remote transport found it. */
struct qroute {
    sk_queue *q;
    char *domain;
    char *key;
    int64_t expires_ms;
    int pending;
    qjob *whead, *wtail; /* jobs waiting for the key */
    qroute *hnext;
};

/* A DSN being committed: its event is sent once it is on disk. */
struct qdsn {
    sk_queue *q; /* NULL once the queue is gone */
    sk_spool_envelope *env;
    int priority;
    char **rcpts; /* whose final outcome it reports (SK_QUEUE_EV_DSN) */
    size_t nrcpts;
    qdsn *prev, *next;
};

struct sk_queue {
    sk_spool *spool;
    sk_queue_opts opts;
    uint64_t *retry_ms;
    size_t nretry;
    sk_rules *own_rules; /* the built-in rules when opts.rules is NULL */
    struct event_base *base;
    struct event *kick_ev;  /* coalesced "look for due work" */
    struct event *timer_ev; /* next retry time */
    struct event *disp_ev;  /* next time a limited destination may send */
    qmsg *msgs, *msgs_tail; /* all messages, oldest first */
    size_t count;
    /* Messages due now, in the order they became due: commits, releases
     * and flushes add here directly; the timer adds deferred ones whose
     * time has come. Only the timer scans the whole queue. */
    TAILQ_HEAD(, qmsg) ready;
    int64_t timer_at; /* unix seconds the timer is set for */
    int64_t disp_at;  /* ms the dispatch timer is set for, 0 = not set */
    qjob *jobs;       /* running */
    size_t in_flight;
    uint64_t seq; /* last arrival number given */
    qdest *dests[QUEUE_HASH_SIZE];
    qroute *routes[QUEUE_HASH_SIZE];
    TAILQ_HEAD(, qdest) active;
    qdsn *dsns;
};

static int64_t now_ms(const sk_queue *q)
{
    if (q->opts.now_ms) return q->opts.now_ms(q->opts.clock_ctx);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t now_s(const sk_queue *q)
{
    return now_ms(q) / 1000;
}

static unsigned hash_key(const char *s)
{
    /* FNV-1a over the lower-cased key. */
    uint32_t h = 2166136261u;
    for (; *s; s++) h = (h ^ (uint32_t)tolower((unsigned char)*s)) * 16777619u;
    return h % QUEUE_HASH_SIZE;
}

static void emit(sk_queue *q, sk_queue_event *ev)
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
    emit(q, &ev);
}

static void kick(sk_queue *q)
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

/* Make the dispatch timer fire at at_ms, unless it fires earlier anyway. */
static void arm_dispatch(sk_queue *q, int64_t at_ms)
{
    if (q->disp_at && q->disp_at <= at_ms && evtimer_pending(q->disp_ev, NULL)) return;
    int64_t now = now_ms(q);
    int64_t d = at_ms > now ? at_ms - now : 0;
    struct timeval tv = {.tv_sec = d / 1000, .tv_usec = (d % 1000) * 1000};
    q->disp_at = at_ms;
    event_add(q->disp_ev, &tv);
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
    if (m->remote)
        for (size_t i = 0; i < m->env->nrcpts; i++) sk_free(m->remote[i]);
    sk_free(m->remote);
    sk_free(m->failed_now);
    sk_free(m->success_now);
    m->remote = NULL;
    m->failed_now = NULL;
    m->success_now = NULL;
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

static void attempt_release(sk_queue *q, qmsg *m);

static void job_free(qjob *j)
{
    sk_free(j->rcpts);
    sk_free(j->domain);
    sk_free(j->sender);
    sk_buf_free(&j->body_path);
    sk_free(j);
}

static void msg_job_del(qmsg *m, qjob *j)
{
    if (j->mprev)
        j->mprev->mnext = j->mnext;
    else
        m->jobs = j->mnext;
    if (j->mnext) j->mnext->mprev = j->mprev;
    j->mprev = j->mnext = NULL;
}

static void dest_activate(sk_queue *q, qdest *d)
{
    if (d->active) return;
    d->active = 1;
    TAILQ_INSERT_TAIL(&q->active, d, alink);
}

static void dest_deactivate(sk_queue *q, qdest *d)
{
    if (!d->active) return;
    TAILQ_REMOVE(&q->active, d, alink);
    d->active = 0;
}

/* The destination named key, created on first use; domain is the one
 * that brings the job (for per-domain rates). NULL when out of memory. */
static qdest *dest_get(sk_queue *q, const char *key, const char *domain, int local)
{
    unsigned h = hash_key(key);
    qdest *d = q->dests[h];
    while (d && (d->local != local || strcasecmp(d->key, key))) d = d->hnext;
    if (!d) {
        d = sk_calloc(1, sizeof *d);
        if (!d || !(d->key = sk_strdup(key))) {
            sk_free(d);
            return NULL;
        }
        d->local = local;
        d->hnext = q->dests[h];
        q->dests[h] = d;
        /* Local delivery is not paced: only remote receivers need it. */
        if (!local) d->bucket.rate = sk_queue_rate_for(&q->opts, domain, &d->overridden);
    }
    if (!local && !d->overridden) {
        int ov;
        sk_queue_rate r = sk_queue_rate_for(&q->opts, domain, &ov);
        if (ov) {
            d->bucket = (sk_bucket){.rate = r};
            d->overridden = 1;
        }
    }
    return d;
}

static int job_level(const qjob *j)
{
    int lv = j->m->priority - PRIO_MIN;
    return lv < 0 ? 0 : lv >= PRIO_LEVELS ? PRIO_LEVELS - 1 : lv;
}

/* Put j in d's queue: after every job of higher priority, and after those
 * of its own priority that arrived earlier. New
 * messages belong at the tail and retries of old ones near the head, so
 * the place is looked for from both ends at once. */
static void dest_enqueue(sk_queue *q, qdest *d, qjob *j)
{
    int lv = job_level(j);
    uint64_t seq = j->m->seq;
    qjob *after = d->tail[lv], *before = d->head[lv];
    while (after && after->m->seq > seq) {
        if (before->m->seq > seq) {
            after = before->prev;
            break;
        }
        after = after->prev;
        before = before->next;
    }
    j->prev = after;
    j->next = after ? after->next : d->head[lv];
    if (j->next)
        j->next->prev = j;
    else
        d->tail[lv] = j;
    if (after)
        after->next = j;
    else
        d->head[lv] = j;
    j->d = d;
    j->state = JOB_QUEUED;
    d->queued++;
    dest_activate(q, d);
}

static void dest_unqueue(qdest *d, qjob *j)
{
    int lv = job_level(j);
    if (j->prev)
        j->prev->next = j->next;
    else
        d->head[lv] = j->next;
    if (j->next)
        j->next->prev = j->prev;
    else
        d->tail[lv] = j->prev;
    j->prev = j->next = NULL;
    d->queued--;
}

static qjob *dest_pop(qdest *d)
{
    for (int lv = PRIO_LEVELS - 1; lv >= 0; lv--) {
        qjob *j = d->head[lv];
        if (j) {
            dest_unqueue(d, j);
            return j;
        }
    }
    return NULL;
}

static void route_unwait(qroute *r, qjob *j)
{
    if (j->prev)
        j->prev->next = j->next;
    else
        r->whead = j->next;
    if (j->next)
        j->next->prev = j->prev;
    else
        r->wtail = j->prev;
    j->prev = j->next = NULL;
    j->route = NULL;
}

static void job_to_dest(sk_queue *q, qjob *j, const char *key, int local)
{
    qdest *d = dest_get(q, key, j->domain, local);
    if (!d) {
        /* Out of memory: let the attempt end with this job unstarted. */
        sk_log(&q->opts.log, SK_LOG_ERR, "%s queue job-failed error=nomem", j->m->env->id);
        qmsg *m = j->m;
        msg_job_del(m, j);
        job_free(j);
        attempt_release(q, m);
        return;
    }
    dest_enqueue(q, d, j);
}

static void route_done(void *ctx, const char *domain, const char *key)
{
    qroute *r = ctx;
    sk_queue *q = r->q;
    r->pending = 0;
    sk_free(r->key);
    /* Without a key the domain stands alone, and the lookup is tried again
     * soon (it failed, or the domain has no MX yet). */
    r->key = sk_strdup(key ? key : r->domain);
    uint64_t ttl = q->opts.route_ttl_ms;
    if (!key && ttl > QUEUE_ROUTE_FAIL_TTL_MS) ttl = QUEUE_ROUTE_FAIL_TTL_MS;
    r->expires_ms = now_ms(q) + (int64_t)ttl;
    while (r->whead) {
        qjob *j = r->whead;
        route_unwait(r, j);
        job_to_dest(q, j, r->key ? r->key : r->domain, 0);
    }
    kick(q);
}

static qroute *route_get(sk_queue *q, const char *domain)
{
    unsigned h = hash_key(domain);
    qroute *r = q->routes[h];
    while (r && strcasecmp(r->domain, domain)) r = r->hnext;
    if (r) return r;
    r = sk_calloc(1, sizeof *r);
    if (!r || !(r->domain = sk_strdup(domain))) {
        sk_free(r);
        return NULL;
    }
    r->q = q;
    r->hnext = q->routes[h];
    q->routes[h] = r;
    return r;
}

/* Send j to its destination's queue, finding the route key first when
 * domains are grouped by provider. */
static void route_job(sk_queue *q, qjob *j)
{
    int local = j->t && j->t == q->opts.local_transport;
    sk_transport *t = j->t;
    if (local || q->opts.group_by_domain || !t || !t->route_key) {
        job_to_dest(q, j, j->domain, local);
        return;
    }
    qroute *r = route_get(q, j->domain);
    if (!r) {
        job_to_dest(q, j, j->domain, 0);
        return;
    }
    if (r->key && !r->pending && now_ms(q) < r->expires_ms) {
        job_to_dest(q, j, r->key, 0);
        return;
    }
    j->state = JOB_ROUTING;
    j->route = r;
    j->next = NULL;
    j->prev = r->wtail;
    if (r->wtail)
        r->wtail->next = j;
    else
        r->whead = j;
    r->wtail = j;
    if (!r->pending) {
        r->pending = 1;
        t->route_key(t, r->domain, route_done, r); /* may answer at once */
    }
}

/* Drop the jobs of m that have not started (it is being removed). */
static void cancel_waiting_jobs(qmsg *m)
{
    qjob *j = m->jobs;
    while (j) {
        qjob *next = j->mnext;
        if (j->state != JOB_RUNNING) {
            if (j->state == JOB_ROUTING)
                route_unwait(j->route, j);
            else
                dest_unqueue(j->d, j);
            msg_job_del(m, j);
            job_free(j);
            m->jobs_out--;
        }
        j = next;
    }
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
    cancel_waiting_jobs(m);
    if (m->jobs_out) {
        m->deleted = 1; /* freed when its last job reports */
        m->remove_when_done = 1;
    } else {
        spool_remove(q, m->env->id);
        free_msg(m);
    }
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

static const sk_rules *rules(const sk_queue *q)
{
    return q->opts.rules ? q->opts.rules : q->own_rules;
}

static sk_rule_match classify_line(const sk_queue *q, const char *line)
{
    int code;
    char enh[16];
    const char *text;
    sk_queue_reply_split(line, &code, enh, &text);
    sk_rule_match none = {0};
    return rules(q) ? sk_rules_match(rules(q), code, enh, text) : none;
}

/* ---- throttling ---- */

/* A failure reply from destination d: suspend or slow it when the rules
 * say so, or on 421 (RFC 5321 4.2.3: the service is closing the channel)
 * and 4.7.x (RFC 3463 3.8, which large receivers use for rate limits),
 * unless a rule classed the reply as "other" (the built-in greylisting
 * rule: 451 4.7.1 there wants the normal retry schedule). */
static int throttle(sk_queue *q, qdest *d, qmsg *m, const char *rcpt, const sk_reply *r,
                    const sk_rule_match *mt, const char *text, int64_t now)
{
    uint64_t ms = 0;
    if (mt->matched && mt->action.kind == SK_TRAFFIC_SUSPEND) {
        ms = mt->action.duration_ms;
        if (now + (int64_t)ms > d->suspended_until) d->suspended_until = now + (int64_t)ms;
    } else if (mt->matched && mt->action.kind == SK_TRAFFIC_RATE && mt->action.rate_count &&
               mt->action.rate_per_ms) {
        ms = mt->action.duration_ms;
        d->slow =
            (sk_bucket){.rate = {.count = mt->action.rate_count, .per_ms = mt->action.rate_per_ms}};
        d->slow_until = now + (int64_t)ms;
    } else if ((r->code == 421 || !strncmp(r->enhanced, "4.7.", 4)) &&
               !(mt->matched && mt->cls == SK_CLASS_OTHER)) {
        ms = q->opts.throttle_suspend_ms;
        if (now + (int64_t)ms > d->suspended_until) d->suspended_until = now + (int64_t)ms;
    } else {
        return 0;
    }
    sk_queue_event ev = {.type = SK_QUEUE_EV_THROTTLED,
                         .env = m->env,
                         .recipient = rcpt,
                         .attempt = m->env->attempts + 1,
                         .reply = text,
                         .cls = mt->cls,
                         .destination = d->key,
                         .priority = m->priority,
                         .throttle_ms = ms};
    emit(q, &ev);
    return 1;
}

/* ---- bounces ---- */

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
static void qdsn_set_rcpts(qdsn *x, const sk_bounce_rcpt *r, size_t n)
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
        if (x->prev)
            x->prev->next = x->next;
        else
            q->dsns = x->next;
        if (x->next) x->next->prev = x->prev;
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
            emit(q, &ev);
        }
    }
    qdsn_free(x);
}

/* Spool a DSN about m for the recipients in r that asked for one with
 * their action (RFC 3461 NOTIFY; never to the null sender, so DSNs cannot
 * loop), from the null sender to the original sender (RFC 3461 6.2). */
static void bounce(sk_queue *q, qmsg *m, sk_bounce_rcpt *r, size_t n, int64_t now)
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
    sk_err e = sk_queue_bounce_build(q->spool, &q->opts, env, r, k, now, &out, &err);
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
    if (!e && (e = sk_spool_write(msg, out.data, out.len)))
        sk_error_set(&err, e, SK_STEP_NONE, "cannot write the DSN");
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
        x->next = q->dsns;
        if (q->dsns) q->dsns->prev = x;
        q->dsns = x;
    }
    sk_spool_commit(msg, x ? dsn_done : NULL, x);
}

/* Status, diagnostic and its type for a recipient's last reply, with the
 * classification appended to the reply text. */
static void describe_failure(const sk_queue *q, const char *line, int expired, char status[16],
                             sk_buf *diag, const char **diag_type)
{
    int code;
    char enh[16];
    const char *text;
    sk_queue_reply_split(line, &code, enh, &text);
    sk_rule_match mt = classify_line(q, line);
    if (expired)
        snprintf(status, 16, "4.4.7"); /* RFC 3463 3.5: delivery time expired */
    else if (enh[0] == '5')
        snprintf(status, 16, "%s", enh);
    else
        snprintf(status, 16, "5.0.0");
    *diag_type = NULL;
    sk_err e;
    if (line && code) {
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
 * or delayed: the enhanced code of its last reply when it is of the
 * right class (RFC 3464 2.3.4), else X.0.0; the reply itself as
 * diagnostic, except for our own local delivery. */
static void describe_other(const char *line, sk_dsn_action action, char status[16], sk_buf *diag)
{
    int code;
    char enh[16];
    const char *text;
    sk_queue_reply_split(line, &code, enh, &text);
    char cls = action == SK_DSN_DELAYED ? '4' : '2';
    if (enh[0] == cls)
        snprintf(status, 16, "%s", enh);
    else
        snprintf(status, 16, "%c.0.0", cls);
    if (action != SK_DSN_DELIVERED && line && code && sk_buf_puts(diag, line)) sk_buf_reset(diag);
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
    /* An arrival in the future (clock set back) never expires early. */
    int expired = pending && now > env->arrival &&
                  (uint64_t)(now - env->arrival) * 1000u >= q->opts.max_lifetime_ms;
    /* RFC 3461 5.2.5, RFC 3464 2.3.3 "delayed": once the message has
     * waited delay_warning_ms, one notice per message to the recipients
     * still pending (not per attempt: envelope's delay_dsn_sent). */
    int delay_due = pending && !expired && q->opts.delay_warning_ms && !env->delay_dsn_sent &&
                    now > env->arrival &&
                    (uint64_t)(now - env->arrival) * 1000u >= q->opts.delay_warning_ms;
    int64_t retry_until = env->arrival + (int64_t)(q->opts.max_lifetime_ms / 1000);
    /* One DSN for everything this attempt ended: recipients that failed
     * permanently now, and on expiry every one still pending; recipients
     * delivered now; and the delay notice when it is due. */
    size_t nb = 0;
    sk_bounce_rcpt *br = sk_calloc(env->nrcpts ? env->nrcpts : 1, sizeof *br);
    char(*status)[16] = sk_calloc(env->nrcpts ? env->nrcpts : 1, sizeof *status);
    sk_buf *diag = sk_calloc(env->nrcpts ? env->nrcpts : 1, sizeof *diag);
    for (size_t i = 0; i < env->nrcpts; i++) {
        sk_spool_rcpt *r = &env->rcpts[i];
        int failed_now = m->failed_now && m->failed_now[i];
        int expiring = expired && r->state == SK_RCPT_PENDING;
        if (expiring) {
            /* RFC 3463 4.4.7: delivery time expired. */
            r->state = SK_RCPT_FAILED;
            sk_rule_match mt = classify_line(q, r->last_reply);
            sk_queue_event ev = {.type = SK_QUEUE_EV_EXPIRED,
                                 .env = env,
                                 .recipient = r->addr,
                                 .attempt = env->attempts,
                                 .reply = r->last_reply,
                                 .cls = mt.cls,
                                 .priority = m->priority};
            emit(q, &ev);
        }
        int succeeded = m->success_now && m->success_now[i];
        int delayed = delay_due && r->state == SK_RCPT_PENDING;
        if (!br || !status || !diag || (!failed_now && !expiring && !succeeded && !delayed))
            continue;
        sk_buf_init(&diag[nb], SK_REPLY_TEXT_MAX_OCTETS + 64);
        const char *dt = NULL;
        sk_dsn_action action = SK_DSN_FAILED;
        if (failed_now || expiring) {
            describe_failure(q, r->last_reply, expiring, status[nb], &diag[nb], &dt);
        } else {
            action = delayed                  ? SK_DSN_DELAYED
                     : m->success_now[i] == 1 ? SK_DSN_DELIVERED
                                              : SK_DSN_RELAYED;
            describe_other(r->last_reply, action, status[nb], &diag[nb]);
        }
        br[nb] = (sk_bounce_rcpt){.rcpt = r,
                                  .action = action,
                                  .status = status[nb],
                                  .diagnostic = diag[nb].len ? sk_buf_cstr(&diag[nb]) : NULL,
                                  .diagnostic_type = dt,
                                  .remote = m->remote ? m->remote[i] : NULL,
                                  .retry_until = action == SK_DSN_DELAYED ? retry_until : 0};
        nb++;
    }
    if (delay_due) env->delay_dsn_sent = 1;
    if (nb) bounce(q, m, br, nb, now);
    for (size_t i = 0; diag && i < nb; i++) sk_buf_free(&diag[i]);
    sk_free(diag);
    sk_free(status);
    sk_free(br);
    attempt_state_free(m);
    if (!pending || expired) {
        remove_msg(q, m);
        return;
    }
    env->state = SK_SPOOL_DEFERRED;
    env->next_attempt = now + (int64_t)(retry_delay_ms(q, env->attempts) + 999) / 1000;
    save(q, m);
    if (env->next_attempt < q->timer_at) arm(q, env->next_attempt);
}

static void attempt_release(sk_queue *q, qmsg *m)
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
    if (j->prev)
        j->prev->next = j->next;
    else
        q->jobs = j->next;
    if (j->next) j->next->prev = j->prev;
    q->in_flight--;
    d->in_flight--;
    msg_job_del(m, j);
    if (!m->deleted) {
        sk_spool_envelope *env = m->env;
        int64_t now = now_ms(q);
        int throttled = 0;
        int local = j->t && j->t == q->opts.local_transport;
        for (size_t i = 0; i < j->job.nrcpts; i++) {
            sk_delivery_rcpt_result fallback = {.status = SK_DELIVERY_TRANSIENT};
            fallback.reply = sk_reply_make(451, "4.3.0", "%s transport gave no result",
                                           j->t ? j->t->name : "no");
            const sk_delivery_rcpt_result *r = res && i < res->nrcpts ? &res->rcpts[i] : &fallback;
            size_t idx = j->rcpts[i].index;
            sk_spool_rcpt *rc = &env->rcpts[idx];
            char *text = reply_text(&r->reply);
            sk_free(rc->last_reply);
            rc->last_reply = text;
            sk_rule_match mt = {0};
            if (r->status != SK_DELIVERY_OK && rules(q))
                mt = sk_rules_match(rules(q), r->reply.code, r->reply.enhanced, r->reply.text);
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
                if (m->success_now && (local || !(res && res->next_hop_dsn)))
                    m->success_now[idx] = local ? 1 : 2;
                if (m->remote && res && res->remote_host && !m->remote[idx])
                    m->remote[idx] = sk_strdup(res->remote_host);
                break;
            case SK_DELIVERY_PERMANENT:
                rc->state = SK_RCPT_FAILED;
                ev.type = SK_QUEUE_EV_BOUNCED;
                if (m->failed_now) m->failed_now[idx] = 1;
                if (m->remote && res && res->remote_host && !m->remote[idx])
                    m->remote[idx] = sk_strdup(res->remote_host);
                break;
            default:
                ev.type = SK_QUEUE_EV_DEFERRED;
                if (m->remote && res && res->remote_host && !m->remote[idx])
                    m->remote[idx] = sk_strdup(res->remote_host);
                if (text) {
                    sk_free(env->last_reply);
                    env->last_reply = sk_strdup(text);
                }
                break;
            }
            emit(q, &ev);
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
    job_free(j);
    attempt_release(q, m);
    kick(q);
}

/* Start the delivery of a queued job. */
static void start_job(sk_queue *q, qjob *j)
{
    j->state = JOB_RUNNING;
    j->prev = NULL;
    j->next = q->jobs;
    if (q->jobs) q->jobs->prev = j;
    q->jobs = j;
    q->in_flight++;
    j->d->in_flight++;
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

/* How long d must wait before its next job: 0 now, -1 until one of its
 * jobs in flight reports. */
static int64_t dest_wait(const sk_queue *q, const qdest *d, int64_t now)
{
    if (d->in_flight >= q->opts.dest_max_conns) return -1;
    if (now < d->suspended_until) return d->suspended_until - now;
    if (d->local) return 0;
    int64_t w = (int64_t)sk_bucket_wait(&d->bucket, now);
    if (now < d->slow_until) {
        int64_t s = (int64_t)sk_bucket_wait(&d->slow, now);
        if (s > w) w = s;
    }
    return w;
}

/* Start queued jobs, taking destinations in turn, as far as the global and
 * per-destination limits allow; then wake when a paced one may go on. */
static void dispatch(sk_queue *q)
{
    int64_t now = now_ms(q);
    int64_t wake = INT64_MAX;
    int progress = 1;
    while (progress && q->in_flight < q->opts.max_in_flight) {
        progress = 0;
        qdest *next;
        for (qdest *d = TAILQ_FIRST(&q->active); d && q->in_flight < q->opts.max_in_flight;
             d = next) {
            next = TAILQ_NEXT(d, alink);
            int64_t w = dest_wait(q, d, now);
            if (w > 0 && now + w < wake) wake = now + w;
            if (w) continue;
            qjob *j = dest_pop(d);
            if (!d->queued) dest_deactivate(q, d);
            if (!j) continue;
            if (!d->local) {
                sk_bucket_take(&d->bucket, now);
                if (now < d->slow_until) sk_bucket_take(&d->slow, now);
            }
            start_job(q, j); /* may report, and change the lists, before it returns */
            progress = 1;
            next = d->active ? TAILQ_NEXT(d, alink) : TAILQ_FIRST(&q->active);
        }
    }
    if (wake != INT64_MAX) arm_dispatch(q, wake);
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
        job_free(j);
        return 0;
    }
    if (n == 1 && verp_applies(q, m->env, domain) &&
        !(j->sender = verp_sender(q, m->env->id, m->env->rcpts[idx[0]].addr))) {
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
                           .maybe_delivered = m->maybe_delivered,
                           .max_per_conn = q->opts.msgs_per_conn,
                           .sender = j->sender};
    j->t = is_local(q, domain) ? q->opts.local_transport : q->opts.remote_transport;
    j->mnext = m->jobs;
    if (m->jobs) m->jobs->mprev = j;
    m->jobs = j;
    m->jobs_out++;
    route_job(q, j);
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
    m->failed_now = sk_calloc(nr, 1);
    m->success_now = sk_calloc(nr, 1);
    m->remote = sk_calloc(nr, sizeof *m->remote);
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
    attempt_release(q, m);
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
    dispatch(q);
}

/* Forget destinations and route keys that hold nothing a fresh one would
 * not: no jobs, no suspension or slow-down, an idle bucket, an expired key.
 * Keeps memory bounded by the domains in use, not all ever seen. */
static void collect(sk_queue *q)
{
    int64_t now = now_ms(q);
    for (size_t h = 0; h < QUEUE_HASH_SIZE; h++) {
        for (qdest **pd = &q->dests[h]; *pd;) {
            qdest *d = *pd;
            int idle =
                !d->queued && !d->in_flight && !d->active && now >= d->suspended_until &&
                now >= d->slow_until &&
                (!d->bucket.rate.count || d->bucket.tat <= now * (int64_t)d->bucket.rate.count);
            if (!idle) {
                pd = &d->hnext;
                continue;
            }
            *pd = d->hnext;
            sk_free(d->key);
            sk_free(d);
        }
        for (qroute **pr = &q->routes[h]; *pr;) {
            qroute *r = *pr;
            if (r->pending || r->whead || now < r->expires_ms) {
                pr = &r->hnext;
                continue;
            }
            *pr = r->hnext;
            sk_free(r->domain);
            sk_free(r->key);
            sk_free(r);
        }
    }
}

/* The timer: find deferred messages that are due, then set the timer for
 * the next one. */
static void scan(sk_queue *q)
{
    collect(q);
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
    dispatch(q);
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

sk_err sk_queue_apply_filter(sk_queue *q, sk_queue_op op, const sk_queue_filter *f, size_t max,
                             sk_queue_bulk *b)
{
    if ((unsigned)op > SK_QUEUE_OP_DELETE || sk_queue_filter_empty(f)) return SK_ERR_INVAL;
    if (b->done) return SK_OK;
    if (!b->started) {
        /* The messages there now; the list is in arrival order. */
        b->started = 1;
        b->next_seq = 0;
        b->last_seq = q->seq;
    }
    /* Go on where the last call stopped: messages removed meanwhile are
     * simply no longer on the list. */
    qmsg *m = q->msgs;
    while (m && m->seq < b->next_seq) m = m->next;
    size_t n = 0;
    for (qmsg *next; m && m->seq <= b->last_seq; m = next) {
        next = m->next;
        if (max && n == max) {
            kick(q);
            return SK_OK;
        }
        b->next_seq = m->seq + 1;
        if (!sk_queue_filter_match(f, m->env)) continue;
        b->matched++;
        if (op == SK_QUEUE_OP_DELETE) {
            remove_msg(q, m);
        } else {
            if (m->jobs_out || !sk_queue_op_changes(op, m->env->state)) continue;
            m->env->state = SK_SPOOL_ACTIVE;
            m->env->next_attempt = 0;
            save(q, m);
            ready_add(q, m);
        }
        b->changed++;
        n++;
        if (f->id[0]) break; /* IDs are unique */
    }
    b->done = 1;
    kick(q);
    return SK_OK;
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
    static const uint64_t defaults[] = SK_QUEUE_RETRY_DEFAULT_MS;
    const uint64_t *src = q->opts.retry_ms && q->opts.nretry ? q->opts.retry_ms : defaults;
    q->nretry =
        q->opts.retry_ms && q->opts.nretry ? q->opts.nretry : sizeof defaults / sizeof defaults[0];
    q->retry_ms = sk_calloc(q->nretry, sizeof *q->retry_ms);
    if (!q->opts.max_lifetime_ms) q->opts.max_lifetime_ms = SK_QUEUE_LIFETIME_DEFAULT_MS;
    if (!q->opts.max_in_flight) q->opts.max_in_flight = QUEUE_MAX_IN_FLIGHT_DEFAULT;
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
    if (!q->retry_ms || !q->kick_ev || !q->timer_ev || !q->disp_ev ||
        (opts && opts->nrate_rules && opts->rate_rules && !rr) ||
        (opts && opts->npriority_rules && opts->priority_rules && !pr)) {
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
        job_free(j);
    }
    for (size_t h = 0; h < QUEUE_HASH_SIZE; h++) {
        while (q->dests[h]) {
            qdest *d = q->dests[h];
            q->dests[h] = d->hnext;
            for (int lv = 0; lv < PRIO_LEVELS; lv++)
                while (d->head[lv]) {
                    qjob *j = d->head[lv];
                    d->head[lv] = j->next;
                    job_free(j);
                }
            sk_free(d->key);
            sk_free(d);
        }
        while (q->routes[h]) {
            qroute *r = q->routes[h];
            q->routes[h] = r->hnext;
            while (r->whead) {
                qjob *j = r->whead;
                r->whead = j->next;
                job_free(j);
            }
            sk_free(r->domain);
            sk_free(r->key);
            sk_free(r);
        }
    }
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
    sk_rules_free(q->own_rules);
    sk_free((void *)q->opts.rate_rules);
    sk_free((void *)q->opts.priority_rules);
    sk_free(q->retry_ms);
    sk_free(q);
}
