/* The queue runner: start and stop, the loop events that start attempts for
 * due messages, its clock, events and rules; flush, release and delete. */
#include <event2/event.h>
#include <string.h>
#include <time.h>

#include "queue/queue_int.h"
#include "spool/spool_int.h"

/* The SMTP transport's threads: a job started is a job running. */
#define QUEUE_MAX_IN_FLIGHT_DEFAULT SK_SMTP_WORKERS_DEFAULT
/* Even with nothing due, look again this often (clock changes, flushes). */
#define QUEUE_IDLE_WAKE_S 60

int64_t sk_queue_now_ms(const sk_queue *q)
{
    if (q->opts.now_ms) return q->opts.now_ms(q->opts.clock_ctx);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t sk_queue_now_s(const sk_queue *q)
{
    return sk_queue_now_ms(q) / 1000;
}

/* A field and its value escaped, within quotes (the value comes from a
 * peer); nothing for a NULL value. field is the start, e.g. " rcpt=\"". */
static sk_err put_quoted(sk_buf *b, const char *field, const char *value)
{
    if (!value) return SK_OK;
    sk_err e = sk_buf_puts(b, field);
    if (!e) e = sk_log_escape(b, value, strlen(value));
    if (!e) e = sk_buf_putc(b, '"');
    return e;
}

void sk_queue_emit(sk_queue *q, sk_queue_event *ev)
{
    static const char *const names[] = {"queued",  "delivered", "deferred", "bounced",
                                        "expired", "removed",   "dsn",      "throttled"};
    /* Addresses and replies come from peers: escaped and quoted. */
    sk_buf b = SK_BUF_INIT(4096);
    sk_err e = put_quoted(&b, " rcpt=\"", ev->recipient);
    if (!e) e = put_quoted(&b, " dest=\"", ev->destination);
    if (!e && ev->remote_host) e = sk_buf_printf(&b, " remote=%s", ev->remote_host);
    if (!e) e = put_quoted(&b, " file=\"", ev->mailbox_file);
    if (!e) e = put_quoted(&b, " tls=\"", ev->tls);
    if (!e && (ev->type == SK_QUEUE_EV_DEFERRED || ev->type == SK_QUEUE_EV_BOUNCED ||
               ev->type == SK_QUEUE_EV_EXPIRED || ev->type == SK_QUEUE_EV_THROTTLED))
        e = sk_buf_printf(&b, " class=%s", sk_class_name(ev->cls));
    if (!e && ev->type == SK_QUEUE_EV_THROTTLED)
        e = sk_buf_printf(&b, " for_ms=%llu", (unsigned long long)ev->throttle_ms);
    if (!e && ev->dsn_id) e = sk_buf_printf(&b, " dsn=%s", ev->dsn_id);
    if (!e) e = put_quoted(&b, " reply=\"", ev->reply);
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
void sk_queue_emit_msg(sk_queue *q, sk_queue_event_type type, const qmsg *m)
{
    sk_queue_event ev = {
        .type = type, .env = m->env, .attempt = m->env->attempts, .priority = m->priority};
    sk_queue_emit(q, &ev);
}

void sk_queue_kick(sk_queue *q)
{
    event_active(q->kick_ev, EV_TIMEOUT, 0);
}

/* Make the retry timer fire at unix time at (or now, if that has passed). */
void sk_queue_arm_retry(sk_queue *q, int64_t at)
{
    int64_t now = sk_queue_now_s(q);
    q->timer_at = at;
    struct timeval tv = {.tv_sec = at > now ? at - now : 0};
    event_add(q->timer_ev, &tv);
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

/* Start attempts for every ready message (their jobs wait in the queues
 * of their destinations), then start what the limits allow. */
static void run_ready(sk_queue *q)
{
    qmsg *m;
    while ((m = TAILQ_FIRST(&q->ready)))
        sk_queue_attempt_start(q, m); /* may finish, and free m, before it returns */
    sk_queue_dispatch(q);
}

/* The timer: find deferred messages that are due, then set the timer for
 * the next one. */
static void scan(sk_queue *q)
{
    sk_queue_collect(q);
    int64_t now = sk_queue_now_s(q);
    int64_t next = now + QUEUE_IDLE_WAKE_S;
    for (qmsg *m = TAILQ_FIRST(&q->msgs); m; m = TAILQ_NEXT(m, link)) {
        if (m->state != QMSG_WAITING) continue;
        if (m->env->next_attempt <= now)
            sk_queue_msg_ready(q, m);
        else if (m->env->next_attempt < next)
            next = m->env->next_attempt;
    }
    sk_queue_arm_retry(q, next);
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
    qmsg *m = copy ? sk_queue_msg_add(q, copy, 0) : NULL;
    if (!m) {
        /* It is safe on disk; the next start picks it up. */
        sk_spool_envelope_free(copy);
        sk_log(&q->opts.log, SK_LOG_ERR, "%s queue add-failed error=nomem", env->id);
        return;
    }
    sk_queue_emit_msg(q, SK_QUEUE_EV_QUEUED, m);
    /* A message with a future first attempt waits for the timer. */
    if (copy->next_attempt <= sk_queue_now_s(q))
        sk_queue_msg_ready(q, m);
    else if (copy->next_attempt < q->timer_at)
        sk_queue_arm_retry(q, copy->next_attempt);
    sk_queue_kick(q);
}

sk_err sk_queue_flush(sk_queue *q)
{
    for (qmsg *m = TAILQ_FIRST(&q->msgs); m; m = TAILQ_NEXT(m, link)) {
        if ((m->state == QMSG_WAITING || m->state == QMSG_READY) &&
            m->env->state == SK_SPOOL_DEFERRED)
            sk_queue_msg_due_now(q, m);
    }
    sk_queue_kick(q);
    return SK_OK;
}

sk_err sk_queue_release(sk_queue *q, const char *id)
{
    qmsg *m = sk_queue_msg_find(q, id);
    if (!m) return SK_ERR_NOT_FOUND;
    if (m->state != QMSG_DELIVERING) sk_queue_msg_due_now(q, m);
    sk_queue_kick(q);
    return SK_OK;
}

sk_err sk_queue_delete(sk_queue *q, const char *id)
{
    qmsg *m = sk_queue_msg_find(q, id);
    if (!m) return SK_ERR_NOT_FOUND;
    sk_queue_msg_remove(q, m);
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
    case SK_QUEUE_OP_HOLD: {
        qmsg *m = sk_queue_msg_find(q, id);
        if (!m) return SK_ERR_NOT_FOUND;
        if (m->state != QMSG_DELIVERING) sk_queue_msg_hold(q, m);
        return SK_OK;
    }
    }
    return SK_ERR_INVAL;
}

sk_err sk_queue_apply_filter(sk_queue *q, sk_queue_op op, const sk_queue_filter *f, size_t max,
                             sk_queue_bulk *b)
{
    if ((unsigned)op > SK_QUEUE_OP_HOLD || sk_queue_filter_empty(f)) return SK_ERR_INVAL;
    if (b->done) return SK_OK;
    if (!b->started) {
        /* The messages there now; the table is in arrival order. */
        b->started = 1;
        b->next_seq = 0;
        b->last_seq = q->seq;
    }
    /* Go on where the last call stopped: messages removed meanwhile are
     * simply no longer in the table. */
    qmsg *m = TAILQ_FIRST(&q->msgs);
    while (m && m->seq < b->next_seq) m = TAILQ_NEXT(m, link);
    size_t n = 0;
    for (qmsg *next; m && m->seq <= b->last_seq; m = next) {
        next = TAILQ_NEXT(m, link);
        if (max && n == max) {
            sk_queue_kick(q);
            return SK_OK;
        }
        b->next_seq = m->seq + 1;
        if (m->state == QMSG_DELETED || m->state == QMSG_REMOVED) continue;
        if (!sk_queue_filter_match(f, m->env)) continue;
        b->matched++;
        if (op == SK_QUEUE_OP_DELETE) {
            sk_queue_msg_remove(q, m);
        } else {
            if (m->state == QMSG_DELIVERING || !sk_queue_op_changes(op, m->env->state)) continue;
            if (op == SK_QUEUE_OP_HOLD)
                sk_queue_msg_hold(q, m);
            else
                sk_queue_msg_due_now(q, m);
        }
        b->changed++;
        n++;
        if (f->id[0]) break; /* IDs are unique */
    }
    b->done = 1;
    sk_queue_kick(q);
    return SK_OK;
}

/* Recovered messages into the table, and those due now into the ready
 * list; the retry timer moved earlier if one of them is due before it. */
static bool add_recovered(sk_queue *q, sk_spool_envelope **envs, size_t n)
{
    int64_t now = sk_queue_now_s(q), next = INT64_MAX;
    size_t i = 0;
    for (; i < n; i++) {
        qmsg *m = sk_queue_msg_add(q, envs[i], 1);
        if (!m) break;
        /* Arrived before everything accepted since the start. */
        m->seq = ++q->load_seq;
        if (m->state != QMSG_WAITING) continue;
        if (m->env->next_attempt <= now)
            sk_queue_msg_ready(q, m);
        else if (m->env->next_attempt < next)
            next = m->env->next_attempt;
    }
    bool ok = i == n;
    for (; i < n; i++) sk_spool_envelope_free(envs[i]);
    sk_free(envs);
    if (next != INT64_MAX && (!evtimer_pending(q->timer_ev, NULL) || next < q->timer_at))
        sk_queue_arm_retry(q, next);
    return ok;
}

static void load_done(sk_queue *q)
{
    q->loading = false;
    sk_log(&q->opts.log, SK_LOG_INFO, "- queue started messages=%zu", q->count);
}

/* One batch of the spool's recovery into the table; false when done
 * (or given up), true while more are left or a retry is armed. */
static bool load_batch(sk_queue *q)
{
    sk_spool_envelope **envs;
    size_t n;
    bool more;
    sk_error err;
    sk_err e = sk_spool_recover_next(q->spool, SK_QUEUE_RECOVER_BATCH, &envs, &n, &more, &err);
    if (!add_recovered(q, envs, n)) {
        /* The rest stays on disk for the next start. */
        sk_log(&q->opts.log, SK_LOG_ERR, "- queue load-failed error=\"out of memory\" left=%zu",
               sk_spool_unchecked_count(q->spool));
        return false;
    }
    if (e) {
        /* An error of the moment on one message's files: logged, tried
         * again after a pause (the files are kept). */
        sk_log(&q->opts.log, SK_LOG_ERR, "- queue load-failed error=\"%s\" left=%zu", err.text,
               sk_spool_unchecked_count(q->spool));
        struct timeval tv = {.tv_sec = SK_QUEUE_RECOVER_RETRY_S};
        event_add(q->load_ev, &tv);
        return true;
    }
    if (more) {
        /* A timer of zero, not event_active: an event activated from a
         * callback runs in the same pass, before the loop polls the
         * sockets again, which would hold sessions until the last batch. */
        struct timeval now = {0, 0};
        event_add(q->load_ev, &now);
    }
    return more;
}

/* The next batch, once per loop pass: sessions, commits and deliveries
 * run between batches, so a deep spool does not hold the daemon's start
 * (docs/queue.md "Recovery"). */
static void on_load(evutil_socket_t fd, short what, void *arg)
{
    sk_queue *q = arg;
    bool more = load_batch(q);
    run_ready(q);
    if (!more) load_done(q);
}

/* Every message in the spool into the table: with a spool opened on an
 * event base, in batches as its recovery checks them (the first one now,
 * the others by on_load), else each one listed and loaded now. false when out of memory (err says
 * so). */
static bool load_all(sk_queue *q, sk_error *err)
{
    size_t n = sk_spool_unchecked_count(q->spool);
    if (n) {
        /* Mail accepted meanwhile gets arrival numbers after theirs. The
         * first batch now: a spool of a few messages is loaded before the
         * queue starts, as without an event base. */
        q->seq = n;
        q->loading = load_batch(q);
        return true;
    }
    char **ids;
    if (sk_spool_list(q->spool, &ids, &n, err)) return false;
    bool ok = true;
    for (size_t i = 0; ok && i < n; i++) {
        sk_spool_envelope *env;
        sk_error e2;
        if (sk_spool_load(q->spool, ids[i], &env, &e2)) {
            sk_log(&q->opts.log, SK_LOG_ERR, "%s queue load-failed error=\"%s\"", ids[i], e2.text);
            continue;
        }
        if (!sk_queue_msg_add(q, env, 1)) {
            sk_spool_envelope_free(env);
            sk_error_set(err, SK_ERR_NOMEM, SK_STEP_NONE, "out of memory");
            ok = false;
        }
    }
    sk_spool_ids_free(ids, n);
    return ok;
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
    TAILQ_INIT(&q->msgs);
    TAILQ_INIT(&q->ready);
    TAILQ_INIT(&q->running);
    TAILQ_INIT(&q->active);
    q->spool = spool;
    q->base = base;
    if (opts) q->opts = *opts;
    sk_err retry_err = sk_retry_init(&q->retry, &q->opts);
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
    q->load_ev = event_new(base, -1, 0, on_load, q);
    if (retry_err || !q->kick_ev || !q->timer_ev || !q->disp_ev || !q->load_ev ||
        (opts && opts->nrate_rules && opts->rate_rules && !rr) ||
        (opts && opts->npriority_rules && opts->priority_rules && !pr)) {
        sk_error_set(err, SK_ERR_NOMEM, SK_STEP_NONE, "out of memory");
        sk_queue_free(q);
        return NULL;
    }

    /* Everything already on disk: possibly delivered before a crash. */
    if (!load_all(q, err)) {
        sk_queue_free(q);
        return NULL;
    }
    if (!q->loading) load_done(q);
    sk_spool_set_listener(spool, on_commit, q);
    sk_queue_arm_retry(q, 0); /* the first scan finds what is due */
    return q;
}

void sk_queue_free(sk_queue *q)
{
    if (!q) return;
    if (q->spool) sk_spool_set_listener(q->spool, NULL, NULL);
    sk_transport *ts[] = {q->opts.local_transport, q->opts.remote_transport};
    for (size_t i = 0; i < 2; i++)
        if (ts[i] && ts[i]->cancel) ts[i]->cancel(ts[i]);
    for (qjob *j; (j = TAILQ_FIRST(&q->running));) {
        TAILQ_REMOVE(&q->running, j, link);
        /* A message deleted while this job was out is freed with its last
         * job; the others are still on the list below. */
        if (--j->m->jobs_out == 0 && j->m->state == QMSG_DELETED)
            sk_queue_msg_free_deleted(q, j->m);
        sk_queue_job_free(j);
    }
    sk_queue_dests_free(q);
    for (qmsg *m; (m = TAILQ_FIRST(&q->msgs));) {
        TAILQ_REMOVE(&q->msgs, m, link);
        sk_queue_msg_free(m);
    }
    /* DSNs still being committed finish without us. */
    for (qdsn *x = LIST_FIRST(&q->dsns); x; x = LIST_NEXT(x, link)) x->q = NULL;
    if (q->kick_ev) event_free(q->kick_ev);
    if (q->timer_ev) event_free(q->timer_ev);
    if (q->disp_ev) event_free(q->disp_ev);
    if (q->load_ev) event_free(q->load_ev);
    sk_rules_free(q->own_rules);
    sk_free((void *)q->opts.rate_rules);
    sk_free((void *)q->opts.priority_rules);
    sk_retry_free(&q->retry);
    sk_free(q);
}
