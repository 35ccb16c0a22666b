/* The HTTP API's SQLite work off the event loop: a group of worker threads
 * ("http", include/smtpkit/worker.h), each with connections of its own to
 * track.db and http.db, running the jobs the routes hand it; a job's
 * completion answers its request on the loop. */
#include "http_int.h"

#include <smtpkit/worker.h>

#include <event2/event.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

/* One worker thread's connections, opened by that thread on first use and
 * used by it alone (SQLite connections are not shared across threads
 * here); closed once the threads have ended. */
struct sk_http_conns {
    pthread_t thread;
    bool taken;
    sk_track *track;
    sk_idem *idem;
};

struct sk_http_pool {
    sk_workers *w;
    struct event *drain;
    sk_logger log;
    char *data_dir;
    char *track_path; /* NULL: no tracking store */
    pthread_mutex_t mu;
    sk_http_conns conns[SK_HTTP_WORKER_THREADS];
    bool stopping;
    /* Forgetting old idempotency answers: one job at a time. */
    sk_job prune_job;
    bool prune_busy;
    sk_err prune_err;
};

/* The calling thread's connections: its slot, taken by its first job. */
static sk_http_conns *conns_of_thread(sk_http_pool *p)
{
    pthread_t self = pthread_self();
    sk_http_conns *c = NULL;
    pthread_mutex_lock(&p->mu);
    for (size_t i = 0; i < SK_HTTP_WORKER_THREADS && !c; i++)
        if (p->conns[i].taken && pthread_equal(p->conns[i].thread, self)) c = &p->conns[i];
    for (size_t i = 0; i < SK_HTTP_WORKER_THREADS && !c; i++)
        if (!p->conns[i].taken) {
            c = &p->conns[i];
            c->taken = true;
            c->thread = self;
        }
    pthread_mutex_unlock(&p->mu);
    return c;
}

sk_track *sk_http_conns_track(sk_http_pool *p, sk_http_conns *c, sk_error *err)
{
    if (!c) {
        sk_error_set(err, SK_ERR_STATE, SK_STEP_NONE, "no connection for this thread");
        return NULL;
    }
    if (!p->track_path) {
        sk_error_set(err, SK_ERR_STATE, SK_STEP_NONE, "the tracking store is not open");
        return NULL;
    }
    /* Read-write: the suppression routes change the list. A failed open
     * is tried again by the next job. */
    if (!c->track) c->track = sk_track_open(p->track_path, 0, err);
    return c->track;
}

sk_idem *sk_http_conns_idem(sk_http_pool *p, sk_http_conns *c, sk_error *err)
{
    if (!c) {
        sk_error_set(err, SK_ERR_STATE, SK_STEP_NONE, "no connection for this thread");
        return NULL;
    }
    if (!c->idem) c->idem = sk_idem_open(p->data_dir, err);
    return c->idem;
}

/* ---- jobs ---- */

static void work_run(void *ctx)
{
    sk_http_work *w = ctx;
    /* A read of events waits for those recorded before it; failing that,
     * it answers from what is written. */
    sk_error_clear(&w->track_err);
    if (w->track && sk_track_wait(w->track, w->track_ticket, 0, &w->track_err)) {
        /* Logged by work_done, on the loop. */
    }
    w->run(w, w->pool, conns_of_thread(w->pool));
}

static void work_done(void *ctx, sk_job_end end)
{
    sk_http_work *w = ctx;
    w->cancelled = end != SK_JOB_DONE;
    if (!w->cancelled && w->track_err.err)
        sk_log(&w->pool->log, SK_LOG_WARN, "- http track-flush-failed error=\"%s\"",
               w->track_err.text);
    w->done(w);
}

bool sk_http_work_submit(sk_http_pool *p, sk_http_work *w, sk_http_work_run_fn run,
                         sk_http_work_done_fn done)
{
    w->pool = p;
    w->run = run;
    w->done = done;
    w->cancelled = false;
    sk_job_init(&w->job, work_run, work_done, w);
    return p && !p->stopping && sk_workers_submit(p->w, &w->job) == SK_OK;
}

bool sk_http_pool_stopping(const sk_http_pool *p)
{
    return !p || p->stopping;
}

/* ---- pruning ---- */

static void prune_run(void *ctx)
{
    sk_http_pool *p = ctx;
    sk_error err = {0};
    sk_idem *db = sk_http_conns_idem(p, conns_of_thread(p), &err);
    p->prune_err = db ? sk_idem_prune(db, (int64_t)time(NULL)) : SK_ERR_IO;
}

static void prune_done(void *ctx, sk_job_end end)
{
    sk_http_pool *p = ctx;
    p->prune_busy = false;
    if (end == SK_JOB_DONE && p->prune_err)
        sk_log(&p->log, SK_LOG_WARN, "- http idempotency-prune-failed error=\"%s\"",
               sk_strerror(p->prune_err));
}

void sk_http_pool_prune(sk_http_pool *p)
{
    if (!p || p->prune_busy || p->stopping) return;
    sk_job_init(&p->prune_job, prune_run, prune_done, p);
    if (sk_workers_submit(p->w, &p->prune_job) == SK_OK) p->prune_busy = true;
}

/* ---- life ---- */

sk_http_pool *sk_http_pool_new(struct event_base *base, const char *data_dir, bool track,
                               const sk_logger *log, sk_error *err)
{
    sk_http_pool *p = sk_calloc(1, sizeof *p);
    if (!p) {
        sk_error_set(err, SK_ERR_NOMEM, SK_STEP_NONE, "out of memory");
        return NULL;
    }
    pthread_mutex_init(&p->mu, NULL);
    p->log = *log;
    sk_buf tp = SK_BUF_INIT(4096);
    bool ok = (p->data_dir = sk_strdup(data_dir)) != NULL;
    if (ok && track) {
        ok = sk_buf_printf(&tp, "%s/%s", data_dir, SK_TRACK_DB_NAME) == SK_OK;
        if (ok) ok = (p->track_path = sk_buf_detach(&tp, NULL)) != NULL;
    }
    sk_buf_free(&tp);
    if (!ok) {
        sk_error_set(err, SK_ERR_NOMEM, SK_STEP_NONE, "out of memory");
        sk_http_pool_free(p);
        return NULL;
    }
    p->w =
        sk_workers_new(&(sk_workers_opts){.name = "http", .threads = SK_HTTP_WORKER_THREADS}, err);
    if (p->w)
        p->drain =
            event_new(base, sk_workers_fd(p->w), EV_READ | EV_PERSIST, sk_workers_drain_cb, p->w);
    if (!p->w || !p->drain || event_add(p->drain, NULL)) {
        /* Without a group, sk_workers_new said why. */
        if (p->w) sk_error_set(err, SK_ERR_NOMEM, SK_STEP_NONE, "out of memory");
        sk_http_pool_free(p);
        return NULL;
    }
    return p;
}

void sk_http_pool_free(sk_http_pool *p)
{
    if (!p) return;
    p->stopping = true;
    if (p->drain) event_free(p->drain);
    if (p->w) {
        /* The jobs in flight finish (an answer being kept becomes durable);
         * their completions run in sk_workers_free, where the requests
         * are answered or, once the listener is going, let go. */
        sk_workers_stop_report rep = {0};
        if (sk_workers_stop(p->w, SK_WORKERS_FINISH, SK_HTTP_WORKERS_STOP_MS, &rep)) {
            /* Jobs still in SQLite: they keep the group and the
             * connections; the process is exiting. */
            sk_log(&p->log, SK_LOG_WARN, "- http workers-stop-timeout running=%zu cancelled=%zu",
                   rep.running, rep.cancelled);
            return;
        }
        sk_workers_free(p->w);
    }
    for (size_t i = 0; i < SK_HTTP_WORKER_THREADS; i++) {
        sk_track_free(p->conns[i].track);
        sk_idem_free(p->conns[i].idem);
    }
    pthread_mutex_destroy(&p->mu);
    sk_free(p->data_dir);
    sk_free(p->track_path);
    sk_free(p);
}
