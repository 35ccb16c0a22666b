/* SMTP transport connection pool: sessions kept per destination for reuse,
 * the worker group that runs the blocking client sessions, and the
 * transport's life (new, cancel, free). */
#include "deliver/smtp_int.h"

#include <event2/event.h>
#include <stdio.h>
#include <string.h>

/* ---- sessions ---- */

smtp_conn *smtp_conn_new(sk_client *c, const char *key, atomic_size_t *open)
{
    smtp_conn *k = sk_calloc(1, sizeof *k);
    if (k) k->key = sk_strdup(key);
    if (!k || !k->key) {
        sk_free(k);
        return NULL;
    }
    k->c = c;
    k->open = open;
    atomic_fetch_add(open, 1);
    return k;
}

void smtp_conn_free(smtp_conn *k, bool quit)
{
    if (!k) return;
    if (quit) (void)sk_client_quit(k->c, NULL);
    sk_client_free(k->c);
    atomic_fetch_sub(k->open, 1);
    sk_free(k->key);
    sk_free(k);
}

/* Take an idle session to j's destination from the pool (newest first);
 * NULL when none fits. Called with the lock held. */
static smtp_conn *pool_take(smtp *sm, const smtp_job *j)
{
    for (smtp_conn **pp = &sm->idle; *pp; pp = &(*pp)->next) {
        smtp_conn *k = *pp;
        if (strcmp(k->key, j->key) != 0 || !smtp_tls_fits(j, k)) continue;
        *pp = k->next;
        k->next = NULL;
        sm->nidle--;
        return k;
    }
    return NULL;
}

/* Put a session back; returns one to close (the oldest) when the pool is
 * full. Called with the lock held. */
static smtp_conn *pool_put(smtp *sm, smtp_conn *k)
{
    k->idle_until_ms = sk_now_ms() + sm->idle_ms;
    k->next = sm->idle;
    sm->idle = k;
    sm->nidle++;
    if (sm->nidle <= sm->max_idle) return NULL;
    smtp_conn **pp = &sm->idle;
    while ((*pp)->next) pp = &(*pp)->next;
    smtp_conn *old = *pp;
    *pp = NULL;
    sm->nidle--;
    return old;
}

/* Idle sessions past their time, taken out of the pool (lock held). */
static smtp_conn *pool_expired(smtp *sm, uint64_t now, uint64_t *next_ms)
{
    smtp_conn *out = NULL;
    *next_ms = 0;
    for (smtp_conn **pp = &sm->idle; *pp;) {
        smtp_conn *k = *pp;
        if (k->idle_until_ms <= now) {
            *pp = k->next;
            sm->nidle--;
            k->next = out;
            out = k;
            continue;
        }
        if (!*next_ms || k->idle_until_ms < *next_ms) *next_ms = k->idle_until_ms;
        pp = &k->next;
    }
    return out;
}

/* ---- the workers ---- */

/* One job in a worker: a pooled session to its destination or a new one,
 * the transaction, and the session back into the pool while it may carry
 * more. */
static void run_job(smtp *sm, smtp_job *j)
{
    sk_error err;
    sk_error_clear(&err);
    sk_buf msg;
    if (smtp_txn_message(j, &msg, &err)) {
        sk_reply rep = sk_reply_make(451, "4.3.0", "%s", err.text);
        smtp_job_fail(j, &rep);
        return;
    }
    unsigned max_per_conn = j->max_per_conn ? j->max_per_conn : sm->max_per_conn;
    for (int attempt = 0; attempt < 2; attempt++) {
        pthread_mutex_lock(&sm->mu);
        smtp_conn *k = attempt == 0 ? pool_take(sm, j) : NULL;
        pthread_mutex_unlock(&sm->mu);
        /* A kept session ended its last transaction, so it is ready for
         * MAIL (RFC 5321 4.1.4) without an RSET round trip first; one the
         * host closed meanwhile fails before taking anything, and the
         * transaction says so (retry below). */
        if (!k) {
            sk_smtp_tally tally;
            memset(&tally, 0, sizeof tally);
            k = smtp_route_connect(sm, j, &tally);
            if (!k) {
                sk_reply rep = sk_smtp_tally_reply(&tally, j->domain);
                smtp_job_fail(j, &rep);
                snprintf(j->remote_host, sizeof j->remote_host, "%s", tally.last_host);
                break;
            }
        }
        bool retry = false;
        bool alive = smtp_txn_send(sm, k, j, &msg, &retry);
        if (!alive) {
            smtp_conn_free(k, false);
            if (retry) continue;
            break;
        }
        k->messages++;
        if (k->messages >= max_per_conn) {
            smtp_conn_free(k, true);
            break;
        }
        pthread_mutex_lock(&sm->mu);
        smtp_conn *old = pool_put(sm, k);
        pthread_mutex_unlock(&sm->mu);
        smtp_conn_free(old, true);
        break;
    }
    sk_buf_free(&msg);
}

/* The earliest moment an idle session expires, 0 when none is idle. */
static uint64_t pool_next_expiry(smtp *sm)
{
    uint64_t next = 0;
    pthread_mutex_lock(&sm->mu);
    for (const smtp_conn *k = sm->idle; k; k = k->next)
        if (!next || k->idle_until_ms < next) next = k->idle_until_ms;
    pthread_mutex_unlock(&sm->mu);
    return next;
}

/* Loop thread: watch the earliest idle deadline. Sessions go idle only at
 * the end of a job, whose end is drained after that, and each expires
 * after those already idle: a timer already set is early enough. */
static void arm_expiry(smtp *sm)
{
    if (sm->stopping || evtimer_pending(sm->expiry, NULL)) return;
    uint64_t next = pool_next_expiry(sm), now = sk_now_ms();
    if (!next) return;
    /* A millisecond more: a timer due on the deadline itself may find the
     * session not yet past it. */
    uint64_t ms = (next > now ? next - now : 0) + 1;
    struct timeval tv = {.tv_sec = (time_t)(ms / 1000), .tv_usec = (long)(ms % 1000) * 1000};
    evtimer_add(sm->expiry, &tv);
}

/* A worker: say goodbye to the expired sessions (RFC 5321 4.1.1.10); QUIT
 * waits for the host, so not on the loop. */
static void quit_expired(void *arg)
{
    smtp *sm = arg;
    pthread_mutex_lock(&sm->mu);
    smtp_conn *list = sm->quitting;
    sm->quitting = NULL;
    pthread_mutex_unlock(&sm->mu);
    while (list) {
        smtp_conn *next = list->next;
        smtp_conn_free(list, true);
        list = next;
    }
}

/* Cancelled: what it did not take stays in quitting for the next time. */
static void quit_done(void *arg, sk_job_end end)
{
    smtp *sm = arg;
    (void)end;
    sm->quit_queued = false;
}

/* Loop thread: the earliest idle deadline passed. */
static void on_expiry(evutil_socket_t fd, short what, void *arg)
{
    smtp *sm = arg;
    (void)fd;
    (void)what;
    uint64_t next;
    pthread_mutex_lock(&sm->mu);
    smtp_conn *expired = pool_expired(sm, sk_now_ms(), &next);
    while (expired) {
        smtp_conn *k = expired;
        expired = k->next;
        k->next = sm->quitting;
        sm->quitting = k;
    }
    bool quit = sm->quitting && !sm->quit_queued;
    pthread_mutex_unlock(&sm->mu);
    if (quit && sk_workers_submit(sm->workers, &sm->quit_job) == SK_OK) sm->quit_queued = true;
    arm_expiry(sm);
}

/* A worker runs one job. */
static void work(void *arg)
{
    smtp_job *j = arg;
    run_job(j->owner, j);
}

/* On the loop thread: hand a finished job back to the queue, unless it was
 * cancelled (the generation covers jobs cancelled while routed). */
static void worked(void *arg, sk_job_end end)
{
    smtp_job *j = arg;
    smtp *sm = j->owner;
    if (end == SK_JOB_DONE && j->generation == sm->generation) smtp_job_finish(j);
    smtp_job_free(j);
    arm_expiry(sm);
}

void smtp_pool_submit(smtp *sm, smtp_job *j)
{
    sk_job_init(&j->work, work, worked, j);
    if (sk_workers_submit(sm->workers, &j->work) == SK_OK) return;
    /* Only once the transport is being freed. */
    sk_reply rep = sk_reply_make(451, "4.3.0", "delivery is stopping");
    smtp_job_fail(j, &rep);
    smtp_job_finish(j);
    smtp_job_free(j);
}

/* ---- the transport's life ---- */

static size_t smtp_connections(sk_transport *t)
{
    return atomic_load(&((smtp *)t)->open_conns);
}

static void smtp_cancel(sk_transport *t)
{
    smtp *sm = (smtp *)t;
    /* Jobs not started are dropped; those in a worker finish, and their
     * results are dropped; lookups in flight are dropped by the
     * generation. */
    if (sm->workers) sk_workers_cancel(sm->workers, false);
    sm->generation++;
}

static void free_conns(smtp_conn *list)
{
    /* Stopping: close without QUIT so that exit is not held up. */
    while (list) {
        smtp_conn *next = list->next;
        smtp_conn_free(list, false);
        list = next;
    }
}

static void smtp_free(sk_transport *t)
{
    smtp *sm = (smtp *)t;
    smtp_cancel(t);
    smtp_route_free(sm);
    sm->stopping = true;
    /* The events before the group: one watches its eventfd. */
    if (sm->expiry) event_free(sm->expiry);
    if (sm->wake) event_free(sm->wake);
    if (sm->workers) {
        sk_workers_stop_report r;
        if (sk_workers_stop(sm->workers, SK_WORKERS_CANCEL, SK_SMTP_JOIN_WAIT_MS, &r)) {
            /* A worker is still talking to a host and uses this structure
             * until it returns, so it is left behind (the process is
             * exiting). */
            sk_log(&sm->log, SK_LOG_WARN, "- mx stop-timeout workers_busy=yes busy=%zu", r.running);
            sk_workers_free(sm->workers);
            return;
        }
        /* Ends not drained yet: freed (cancelled by the generation). */
        sk_workers_free(sm->workers);
    }
    smtp_route_cache_clear(sm);
    free_conns(sm->idle);
    free_conns(sm->quitting);
    pthread_mutex_destroy(&sm->mu);
    for (size_t i = 0; i < sm->ntls_required; i++) sk_free(sm->tls_required[i]);
    sk_free(sm->tls_required);
    sk_free(sm->helo_name);
    sk_free(sm->ca_file);
    sk_free(sm->relay_host);
    sk_free(sm);
}

sk_transport *sk_smtp_transport_new(const sk_smtp_transport_opts *o, struct event_base *base,
                                    sk_error *err)
{
    smtp *sm = sk_calloc(1, sizeof *sm);
    if (!sm) {
        sk_error_set(err, SK_ERR_NOMEM, SK_STEP_NONE, "out of memory");
        return NULL;
    }
    /* deliver and route_key: smtp_route_init. */
    sm->t = (sk_transport){
        .name = "mx", .cancel = smtp_cancel, .free = smtp_free, .connections = smtp_connections};
    sm->base = base;
    TAILQ_INIT(&sm->rcache_order);
    sm->port = o->port ? o->port : SK_SMTP_MX_PORT_DEFAULT;
    sm->idle_ms = o->idle_ms ? o->idle_ms : SK_SMTP_IDLE_MS_DEFAULT;
    sm->max_per_conn = o->max_messages_per_connection ? o->max_messages_per_connection
                                                      : SK_SMTP_MSGS_PER_CONN_DEFAULT;
    sm->connect_timeout_ms = o->connect_timeout_ms;
    sm->greeting_timeout_ms = o->greeting_timeout_ms;
    sm->command_timeout_ms = o->command_timeout_ms;
    sm->log = o->log;
    pthread_mutex_init(&sm->mu, NULL);
    sk_job_init(&sm->quit_job, quit_expired, quit_done, sm);
    unsigned n = o->workers ? o->workers : SK_SMTP_WORKERS_DEFAULT;
    /* As many idle sessions as workers: each worker can pick one up. */
    sm->max_idle = n;
    sm->helo_name = sk_strdup(o->helo_name ? o->helo_name : "localhost");
    sm->ca_file = o->ca_file ? sk_strdup(o->ca_file) : NULL;
    sm->tls_required = sk_calloc(o->ntls_required ? o->ntls_required : 1, sizeof *sm->tls_required);
    bool ok = sm->helo_name && (!o->ca_file || sm->ca_file) && sm->tls_required;
    for (size_t i = 0; ok && i < o->ntls_required; i++) {
        sm->tls_required[i] = sk_strdup(o->tls_required[i]);
        sm->ntls_required = i + 1;
        ok = sm->tls_required[i] != NULL;
    }
    if (!ok) {
        sk_error_set(err, SK_ERR_NOMEM, SK_STEP_NONE, "cannot set up the MX transport");
        smtp_free(&sm->t);
        return NULL;
    }
    if (!smtp_route_init(sm, o, err)) {
        smtp_free(&sm->t);
        return NULL;
    }
    /* The workers hand finished jobs to the loop thread through their
     * group's eventfd. */
    sk_error e;
    sm->workers = sk_workers_new(&(sk_workers_opts){.name = "smtp", .threads = n}, &e);
    if (!sm->workers) {
        sk_error_set(err, e.err, SK_STEP_NONE, "cannot start MX workers: %s", e.text);
        smtp_free(&sm->t);
        return NULL;
    }
    sm->wake = event_new(base, sk_workers_fd(sm->workers), EV_READ | EV_PERSIST,
                         sk_workers_drain_cb, sm->workers);
    sm->expiry = evtimer_new(base, on_expiry, sm);
    if (!sm->wake || event_add(sm->wake, NULL) || !sm->expiry) {
        sk_error_set(err, SK_ERR_NOMEM, SK_STEP_NONE, "cannot set up the MX transport");
        smtp_free(&sm->t);
        return NULL;
    }
    return &sm->t;
}
