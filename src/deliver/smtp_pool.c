/* SMTP transport connection pool: sessions kept per destination for reuse,
 * the worker threads that run the blocking client sessions, and the
 * transport's life (new, cancel, free). */
#include "deliver/smtp_int.h"

#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* ---- sessions ---- */

smtp_conn *smtp_conn_new(sk_client *c, const char *key)
{
    smtp_conn *k = sk_calloc(1, sizeof *k);
    if (k) k->key = sk_strdup(key);
    if (!k || !k->key) {
        sk_free(k);
        return NULL;
    }
    k->c = c;
    return k;
}

void smtp_conn_free(smtp_conn *k, bool quit)
{
    if (!k) return;
    if (quit) (void)sk_client_quit(k->c, NULL);
    sk_client_free(k->c);
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
        /* RFC 5321 4.1.1.5: RSET checks a kept session is still there. */
        if (k && sk_client_rset(k->c, NULL) != SK_OK) {
            smtp_conn_free(k, false);
            k = NULL;
        }
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
        bool was_empty = sm->idle == NULL;
        smtp_conn *old = pool_put(sm, k);
        /* Only a first idle session brings the earliest idle deadline
         * forward (later ones expire after the sessions already there):
         * one waiting worker is enough to watch it. */
        if (was_empty) pthread_cond_signal(&sm->cond);
        pthread_mutex_unlock(&sm->mu);
        smtp_conn_free(old, true);
        break;
    }
    sk_buf_free(&msg);
}

static void notify_loop(smtp *sm)
{
    char one = 1;
    ssize_t n;
    do n = write(sm->pipe_fd[1], &one, 1);
    while (n < 0 && errno == EINTR);
    /* EAGAIN: the pipe is full of wake-ups already, which is enough. */
}

static void *worker(void *arg)
{
    smtp *sm = arg;
    pthread_mutex_lock(&sm->mu);
    while (!sm->stopping) {
        if (!sm->pending) {
            uint64_t next_ms;
            smtp_conn *expired = pool_expired(sm, sk_now_ms(), &next_ms);
            if (expired) {
                /* Idle for long enough: say goodbye properly (RFC 5321
                 * 4.1.1.10), outside the lock. */
                pthread_mutex_unlock(&sm->mu);
                while (expired) {
                    smtp_conn *next = expired->next;
                    smtp_conn_free(expired, true);
                    expired = next;
                }
                pthread_mutex_lock(&sm->mu);
                continue;
            }
            if (next_ms) {
                uint64_t wait_ms = next_ms - sk_now_ms() + 1;
                struct timespec until;
                clock_gettime(CLOCK_REALTIME, &until);
                until.tv_sec += (time_t)(wait_ms / 1000);
                until.tv_nsec += (long)(wait_ms % 1000) * 1000000L;
                if (until.tv_nsec >= 1000000000L) {
                    until.tv_sec++;
                    until.tv_nsec -= 1000000000L;
                }
                pthread_cond_timedwait(&sm->cond, &sm->mu, &until);
            } else {
                pthread_cond_wait(&sm->cond, &sm->mu);
            }
            continue;
        }
        smtp_job *j = sm->pending;
        sm->pending = j->next;
        if (!sm->pending) sm->pending_tail = NULL;
        j->next = NULL;
        pthread_mutex_unlock(&sm->mu);
        run_job(sm, j);
        pthread_mutex_lock(&sm->mu);
        j->next = sm->finished;
        sm->finished = j;
        pthread_mutex_unlock(&sm->mu);
        notify_loop(sm);
        pthread_mutex_lock(&sm->mu);
    }
    pthread_mutex_unlock(&sm->mu);
    return NULL;
}

void smtp_pool_submit(smtp *sm, smtp_job *j)
{
    pthread_mutex_lock(&sm->mu);
    if (sm->pending_tail)
        sm->pending_tail->next = j;
    else
        sm->pending = j;
    sm->pending_tail = j;
    pthread_cond_signal(&sm->cond); /* one job, one worker */
    pthread_mutex_unlock(&sm->mu);
}

/* On the loop thread: hand finished jobs back to the queue. */
static void on_wake(evutil_socket_t fd, short what, void *arg)
{
    smtp *sm = arg;
    char drain[256];
    while (read(fd, drain, sizeof drain) > 0) continue;
    pthread_mutex_lock(&sm->mu);
    smtp_job *list = sm->finished;
    sm->finished = NULL;
    uint64_t gen = sm->generation;
    pthread_mutex_unlock(&sm->mu);
    smtp_job *rev = NULL; /* the list is newest first */
    while (list) {
        smtp_job *next = list->next;
        list->next = rev;
        rev = list;
        list = next;
    }
    while (rev) {
        smtp_job *j = rev;
        rev = j->next;
        if (j->generation == gen) smtp_job_finish(j);
        smtp_job_free(j);
    }
}

/* ---- the transport's life ---- */

static void smtp_cancel(sk_transport *t)
{
    smtp *sm = (smtp *)t;
    pthread_mutex_lock(&sm->mu);
    /* Jobs not started are dropped; those in a worker finish, and their
     * results (like lookups in flight) are dropped by the generation. */
    smtp_job *p = sm->pending;
    sm->pending = sm->pending_tail = NULL;
    sm->generation++;
    pthread_mutex_unlock(&sm->mu);
    while (p) {
        smtp_job *next = p->next;
        smtp_job_free(p);
        p = next;
    }
}

static void smtp_free(sk_transport *t)
{
    smtp *sm = (smtp *)t;
    smtp_cancel(t);
    smtp_route_free(sm);
    pthread_mutex_lock(&sm->mu);
    sm->stopping = true;
    pthread_cond_broadcast(&sm->cond);
    pthread_mutex_unlock(&sm->mu);
    bool all_joined = true;
    for (size_t i = 0; i < sm->nthreads; i++) {
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += SK_SMTP_JOIN_WAIT_MS / 1000;
        if (pthread_timedjoin_np(sm->threads[i], NULL, &until) != 0) {
            pthread_detach(sm->threads[i]);
            all_joined = false;
        }
    }
    if (!all_joined) {
        /* A worker is still talking to a host and uses this structure
         * until it returns, so it is left behind (the process is exiting). */
        sk_log(&sm->log, SK_LOG_WARN, "- mx stop-timeout workers_busy=yes");
        return;
    }
    if (sm->wake) event_free(sm->wake);
    while (sm->finished) {
        smtp_job *next = sm->finished->next;
        smtp_job_free(sm->finished);
        sm->finished = next;
    }
    /* Stopping: close without QUIT so that exit is not held up. */
    while (sm->idle) {
        smtp_conn *next = sm->idle->next;
        smtp_conn_free(sm->idle, false);
        sm->idle = next;
    }
    if (sm->pipe_fd[0] >= 0) close(sm->pipe_fd[0]);
    if (sm->pipe_fd[1] >= 0) close(sm->pipe_fd[1]);
    pthread_mutex_destroy(&sm->mu);
    pthread_cond_destroy(&sm->cond);
    for (size_t i = 0; i < sm->ntls_required; i++) sk_free(sm->tls_required[i]);
    sk_free(sm->tls_required);
    sk_free(sm->threads);
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
    sm->t = (sk_transport){.name = "mx", .cancel = smtp_cancel, .free = smtp_free};
    sm->pipe_fd[0] = sm->pipe_fd[1] = -1;
    sm->base = base;
    sm->port = o->port ? o->port : SK_SMTP_MX_PORT_DEFAULT;
    sm->idle_ms = o->idle_ms ? o->idle_ms : SK_SMTP_IDLE_MS_DEFAULT;
    sm->max_per_conn = o->max_messages_per_connection ? o->max_messages_per_connection
                                                      : SK_SMTP_MSGS_PER_CONN_DEFAULT;
    sm->connect_timeout_ms = o->connect_timeout_ms;
    sm->greeting_timeout_ms = o->greeting_timeout_ms;
    sm->command_timeout_ms = o->command_timeout_ms;
    sm->log = o->log;
    pthread_mutex_init(&sm->mu, NULL);
    pthread_cond_init(&sm->cond, NULL);
    size_t n = o->workers ? o->workers : SK_SMTP_WORKERS_DEFAULT;
    /* As many idle sessions as workers: each worker can pick one up. */
    sm->max_idle = n;
    sm->helo_name = sk_strdup(o->helo_name ? o->helo_name : "localhost");
    sm->ca_file = o->ca_file ? sk_strdup(o->ca_file) : NULL;
    sm->threads = sk_calloc(n, sizeof *sm->threads);
    sm->tls_required = sk_calloc(o->ntls_required ? o->ntls_required : 1, sizeof *sm->tls_required);
    bool ok = sm->helo_name && (!o->ca_file || sm->ca_file) && sm->threads && sm->tls_required;
    for (size_t i = 0; ok && i < o->ntls_required; i++) {
        sm->tls_required[i] = sk_strdup(o->tls_required[i]);
        sm->ntls_required = i + 1;
        ok = sm->tls_required[i] != NULL;
    }
    if (!ok || pipe2(sm->pipe_fd, O_NONBLOCK | O_CLOEXEC)) {
        sk_error_set(err, SK_ERR_NOMEM, SK_STEP_NONE, "cannot set up the MX transport");
        smtp_free(&sm->t);
        return NULL;
    }
    if (!smtp_route_init(sm, o, err)) {
        smtp_free(&sm->t);
        return NULL;
    }
    /* Workers hand finished jobs to the loop thread through the pipe. */
    sm->wake = event_new(base, sm->pipe_fd[0], EV_READ | EV_PERSIST, on_wake, sm);
    if (!sm->wake || event_add(sm->wake, NULL)) {
        sk_error_set(err, SK_ERR_NOMEM, SK_STEP_NONE, "cannot set up the MX transport");
        smtp_free(&sm->t);
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        if (pthread_create(&sm->threads[i], NULL, worker, sm) != 0) {
            sk_error_set(err, SK_ERR_IO, SK_STEP_NONE, "cannot start MX workers");
            smtp_free(&sm->t);
            return NULL;
        }
        sm->nthreads++;
    }
    return &sm->t;
}
