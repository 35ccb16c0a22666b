/* Unit tests for the background workers (src/util/worker.c): order, threads
 * busy at once, job ends drained in the order they happened, cancel, stop
 * in both modes and past its limit, refused submissions, thread names and
 * allocation failures. Waits between threads use condition variables with a
 * generous bound (a broken facility fails the check instead of hanging);
 * nothing asserts how long anything took. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "sktest.h"

#include <smtpkit/worker.h>

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <pthread.h>
#include <string.h>
#include <time.h>

/* How long a test waits for something another thread does before it
 * counts as not happening. */
#define WAIT_BOUND_MS 20000

#define MAX_JOBS 64

/* What the jobs of one test share. */
typedef struct bench {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    sk_workers *w;
    int ran[MAX_JOBS]; /* order in which run functions were entered */
    size_t nran;
    int ended[MAX_JOBS]; /* order in which run functions returned */
    size_t nended;
    int done[MAX_JOBS];       /* order of done callbacks */
    sk_job_end how[MAX_JOBS]; /* by job index */
    size_t ndone;
    int inside, most_inside; /* run functions running now, and the most at once */
    int gate;                /* blocking jobs wait until this is set */
    int stop_seen;
    int failures; /* checks that failed in a worker thread */
    char thread_name[32];
} bench;

typedef struct tjob {
    sk_job job;
    bench *b;
    int index;
} tjob;

static void bench_init(bench *b)
{
    memset(b, 0, sizeof *b);
    pthread_mutex_init(&b->mu, NULL);
    pthread_cond_init(&b->cv, NULL);
}

static void bench_free(bench *b)
{
    pthread_mutex_destroy(&b->mu);
    pthread_cond_destroy(&b->cv);
}

/* Wait (mu held) until *flag reaches at least want, or the bound passes:
 * whether it did. */
static bool wait_for(bench *b, const int *flag, int want)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += WAIT_BOUND_MS / 1000;
    while (*flag < want)
        if (pthread_cond_timedwait(&b->cv, &b->mu, &until) == ETIMEDOUT) return false;
    return true;
}

/* The owner's side: wait until n run functions were entered (which) or
 * returned; whether they were within the bound. */
static bool wait_count(bench *b, const size_t *count, size_t n)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += WAIT_BOUND_MS / 1000;
    bool ok = true;
    pthread_mutex_lock(&b->mu);
    while (*count < n && ok) ok = pthread_cond_timedwait(&b->cv, &b->mu, &until) != ETIMEDOUT;
    pthread_mutex_unlock(&b->mu);
    return ok;
}

static void open_gate(bench *b)
{
    pthread_mutex_lock(&b->mu);
    b->gate = 1;
    pthread_cond_broadcast(&b->cv);
    pthread_mutex_unlock(&b->mu);
}

/* A check that failed in a worker thread (cmocka's asserts belong to the
 * test's thread): counted, and asserted to be 0 there. */
static void fail_in_thread(bench *b)
{
    pthread_mutex_lock(&b->mu);
    b->failures++;
    pthread_mutex_unlock(&b->mu);
}

static void note_start(tjob *t)
{
    bench *b = t->b;
    pthread_mutex_lock(&b->mu);
    b->ran[b->nran++] = t->index;
    if (++b->inside > b->most_inside) b->most_inside = b->inside;
    pthread_cond_broadcast(&b->cv);
    pthread_mutex_unlock(&b->mu);
}

static void note_end(tjob *t)
{
    bench *b = t->b;
    pthread_mutex_lock(&b->mu);
    b->inside--;
    b->ended[b->nended++] = t->index;
    pthread_cond_broadcast(&b->cv);
    pthread_mutex_unlock(&b->mu);
}

static void run_plain(void *ctx)
{
    note_start(ctx);
    note_end(ctx);
}

/* Waits until the gate opens. */
static void run_gated(void *ctx)
{
    tjob *t = ctx;
    note_start(t);
    pthread_mutex_lock(&t->b->mu);
    bool opened = wait_for(t->b, &t->b->gate, 1);
    pthread_mutex_unlock(&t->b->mu);
    if (!opened) fail_in_thread(t->b);
    note_end(t);
}

/* Waits until as many jobs as the group has threads are inside at once. */
static int barrier_size;
static void run_barrier(void *ctx)
{
    tjob *t = ctx;
    note_start(t);
    pthread_mutex_lock(&t->b->mu);
    bool all = wait_for(t->b, &t->b->most_inside, barrier_size);
    pthread_mutex_unlock(&t->b->mu);
    if (!all) fail_in_thread(t->b);
    note_end(t);
}

/* Waits until the group is asked to stop (sk_workers_pause), as a
 * retrying job does. */
static void run_until_stop(void *ctx)
{
    tjob *t = ctx;
    note_start(t);
    while (!sk_workers_pause(t->b->w, NULL, 60000)) {
    }
    pthread_mutex_lock(&t->b->mu);
    t->b->stop_seen = 1;
    pthread_mutex_unlock(&t->b->mu);
    note_end(t);
}

static void run_name(void *ctx)
{
    tjob *t = ctx;
    char name[32] = "";
    pthread_getname_np(pthread_self(), name, sizeof name);
    pthread_mutex_lock(&t->b->mu);
    snprintf(t->b->thread_name, sizeof t->b->thread_name, "%s", name);
    pthread_mutex_unlock(&t->b->mu);
}

static void on_done(void *ctx, sk_job_end end)
{
    tjob *t = ctx;
    bench *b = t->b;
    /* The owner's thread: no lock needed for what only it touches. */
    b->done[b->ndone++] = t->index;
    b->how[t->index] = end;
}

static void jobs_init(tjob *jobs, size_t n, bench *b, sk_job_run_fn run)
{
    for (size_t i = 0; i < n; i++) {
        jobs[i] = (tjob){.b = b, .index = (int)i};
        sk_job_init(&jobs[i].job, run, on_done, &jobs[i]);
    }
}

/* Drain until n done callbacks ran in all, waiting on the eventfd as a
 * loop would (poll); whether they did within the bound. */
static bool drain_until(bench *b, size_t n)
{
    for (int rounds = 0; b->ndone < n && rounds < WAIT_BOUND_MS / 10; rounds++) {
        struct pollfd p = {.fd = sk_workers_fd(b->w), .events = POLLIN};
        if (poll(&p, 1, 10) > 0) (void)sk_workers_drain(b->w);
    }
    return b->ndone >= n;
}

static sk_workers *group(const char *name, unsigned threads)
{
    sk_error err;
    sk_workers *w = sk_workers_new(&(sk_workers_opts){.name = name, .threads = threads}, &err);
    assert_non_null(w);
    return w;
}

static void test_single_thread_order(void **state)
{
    bench b;
    bench_init(&b);
    b.w = group("order", 1);
    tjob jobs[MAX_JOBS];
    jobs_init(jobs, MAX_JOBS, &b, run_plain);
    for (int i = 0; i < MAX_JOBS; i++)
        assert_int_equal(sk_workers_submit(b.w, &jobs[i].job), SK_OK);
    assert_true(drain_until(&b, MAX_JOBS));
    for (int i = 0; i < MAX_JOBS; i++) {
        assert_int_equal(b.ran[i], i);
        assert_int_equal(b.done[i], i);
        assert_int_equal(b.how[i], SK_JOB_DONE);
    }
    assert_int_equal(b.most_inside, 1);
    sk_workers_free(b.w);
    bench_free(&b);
}

static void test_threads_busy_at_once(void **state)
{
    static const unsigned sizes[] = {2, 4, 8};
    for (size_t c = 0; c < SKT_N(sizes); c++) {
        bench b;
        bench_init(&b);
        b.w = group("busy", sizes[c]);
        barrier_size = (int)sizes[c];
        tjob jobs[8];
        jobs_init(jobs, sizes[c], &b, run_barrier);
        for (unsigned i = 0; i < sizes[c]; i++)
            assert_int_equal(sk_workers_submit(b.w, &jobs[i].job), SK_OK);
        assert_true(drain_until(&b, sizes[c]));
        assert_int_equal(b.most_inside, (int)sizes[c]);
        assert_int_equal(b.failures, 0);
        sk_workers_free(b.w);
        bench_free(&b);
    }
}

/* Ends are drained in the order the jobs ended, not the order they were
 * submitted in: 0 holds one thread until the gate opens, 1..3 run on the
 * other one and end (in that order) before it. */
static void test_ends_drained_in_order_of_end(void **state)
{
    enum { N = 4 };
    bench b;
    bench_init(&b);
    b.w = group("ends", 2);
    tjob jobs[N];
    jobs_init(jobs, N, &b, run_plain);
    jobs[0].job.run = run_gated;
    for (int i = 0; i < N; i++) assert_int_equal(sk_workers_submit(b.w, &jobs[i].job), SK_OK);
    assert_true(drain_until(&b, N - 1));
    assert_int_equal(b.ndone, N - 1);
    for (int i = 0; i < N - 1; i++) assert_int_equal(b.done[i], i + 1);
    open_gate(&b);
    assert_true(drain_until(&b, N));
    assert_int_equal(b.done[N - 1], 0);
    assert_int_equal(b.failures, 0);
    sk_workers_free(b.w);
    bench_free(&b);
}

/* A job that reports as it goes: its posts come before its own end. */
typedef struct poster {
    sk_job job, posts[3];
    bench *b;
} poster;

static void on_post(void *ctx, sk_job_end end)
{
    tjob *t = ctx;
    t->b->done[t->b->ndone++] = t->index;
    t->b->how[t->index] = end;
}

static tjob post_ctx[3];
static void run_poster(void *ctx)
{
    poster *p = ctx;
    for (int i = 0; i < 3; i++)
        if (sk_workers_post(p->b->w, &p->posts[i])) fail_in_thread(p->b);
}

static void on_poster_done(void *ctx, sk_job_end end)
{
    poster *p = ctx;
    p->b->done[p->b->ndone++] = 3;
    p->b->how[3] = end;
}

static void test_posts_in_order(void **state)
{
    bench b;
    bench_init(&b);
    b.w = group("post", 2);
    poster p = {.b = &b};
    sk_job_init(&p.job, run_poster, on_poster_done, &p);
    for (int i = 0; i < 3; i++) {
        post_ctx[i] = (tjob){.b = &b, .index = i};
        sk_job_init(&p.posts[i], NULL, on_post, &post_ctx[i]);
    }
    assert_int_equal(sk_workers_submit(b.w, &p.job), SK_OK);
    assert_true(drain_until(&b, 4));
    for (int i = 0; i < 4; i++) {
        assert_int_equal(b.done[i], i);
        assert_int_equal(b.how[i], SK_JOB_DONE);
    }
    assert_int_equal(b.failures, 0);
    sk_workers_free(b.w);
    bench_free(&b);
}

/* Stop while jobs wait behind one that runs until the stop: in FINISH mode
 * they all run, in CANCEL mode none of them does. */
static void test_stop_modes(void **state)
{
    static const struct {
        sk_workers_stop_mode mode;
        sk_job_end waiting_end;
        size_t ran, cancelled;
    } cases[] = {
        {SK_WORKERS_FINISH, SK_JOB_DONE, 6, 0},
        {SK_WORKERS_CANCEL, SK_JOB_CANCELLED, 1, 5},
    };
    for (size_t c = 0; c < SKT_N(cases); c++) {
        bench b;
        bench_init(&b);
        b.w = group("stop", 1);
        tjob jobs[6];
        jobs_init(jobs, 6, &b, run_plain);
        jobs[0].job.run = run_until_stop;
        for (int i = 0; i < 6; i++) assert_int_equal(sk_workers_submit(b.w, &jobs[i].job), SK_OK);
        /* The first one is running (the others wait behind it). */
        assert_true(wait_count(&b, &b.nran, 1));
        sk_workers_stop_report r;
        assert_int_equal(sk_workers_stop(b.w, cases[c].mode, SK_WORKERS_NO_LIMIT, &r), SK_OK);
        assert_int_equal(r.running, 0);
        assert_int_equal(r.cancelled, cases[c].cancelled);
        assert_int_equal(b.stop_seen, 1);
        assert_int_equal(b.nran, cases[c].ran);
        /* The cancelled ones reported at the stop, the others at a drain. */
        assert_int_equal(b.ndone, cases[c].cancelled);
        (void)sk_workers_drain(b.w);
        assert_int_equal(b.ndone, 6);
        assert_int_equal(b.how[0], SK_JOB_DONE);
        for (int i = 1; i < 6; i++) assert_int_equal(b.how[i], cases[c].waiting_end);
        /* Stopped: nothing more is taken. */
        tjob late = {.b = &b, .index = 7};
        sk_job_init(&late.job, run_plain, on_done, &late);
        assert_int_equal(sk_workers_submit(b.w, &late.job), SK_ERR_STATE);
        assert_int_equal(sk_workers_post(b.w, &late.job), SK_ERR_STATE);
        sk_workers_free(b.w);
        assert_int_equal(b.ndone, 6);
        bench_free(&b);
    }
}

/* A job that does not return in the stop's time: the stop says so, the
 * jobs behind it are cancelled, and a later stop finishes it. */
static void test_stop_limit(void **state)
{
    bench b;
    bench_init(&b);
    b.w = group("limit", 1);
    tjob jobs[3];
    jobs_init(jobs, 3, &b, run_plain);
    jobs[0].job.run = run_gated;
    for (int i = 0; i < 3; i++) assert_int_equal(sk_workers_submit(b.w, &jobs[i].job), SK_OK);
    assert_true(wait_count(&b, &b.nran, 1));
    sk_workers_stop_report r;
    assert_int_equal(sk_workers_stop(b.w, SK_WORKERS_FINISH, 50, &r), SK_ERR_TIMEOUT);
    assert_int_equal(r.running, 1);
    assert_int_equal(r.cancelled, 2);
    assert_int_equal(b.ndone, 2);
    assert_int_equal(b.how[1], SK_JOB_CANCELLED);
    assert_int_equal(b.how[2], SK_JOB_CANCELLED);
    assert_int_equal(sk_workers_submit(b.w, &jobs[1].job), SK_ERR_STATE);
    open_gate(&b);
    assert_int_equal(sk_workers_stop(b.w, SK_WORKERS_FINISH, SK_WORKERS_NO_LIMIT, &r), SK_OK);
    assert_int_equal(r.running, 0);
    sk_workers_free(b.w);
    assert_int_equal(b.ndone, 3);
    assert_int_equal(b.how[0], SK_JOB_DONE);
    assert_int_equal(b.failures, 0);
    bench_free(&b);
}

/* A stop in CANCEL mode past its limit: the running job is reported, and
 * the group is stopped by a later stop once that job returned. */
static void test_stop_limit_running(void **state)
{
    bench b;
    bench_init(&b);
    b.w = group("limit2", 1);
    tjob job;
    jobs_init(&job, 1, &b, run_gated);
    assert_int_equal(sk_workers_submit(b.w, &job.job), SK_OK);
    assert_true(wait_count(&b, &b.nran, 1));
    sk_workers_stop_report r;
    assert_int_equal(sk_workers_stop(b.w, SK_WORKERS_CANCEL, 20, &r), SK_ERR_TIMEOUT);
    assert_int_equal(r.running, 1);
    assert_int_equal(r.cancelled, 0);
    open_gate(&b);
    /* Once its job returned, a second stop finishes. */
    assert_true(wait_count(&b, &b.nended, 1));
    assert_int_equal(sk_workers_stop(b.w, SK_WORKERS_CANCEL, SK_WORKERS_NO_LIMIT, &r), SK_OK);
    sk_workers_free(b.w);
    assert_int_equal(b.ndone, 1);
    assert_int_equal(b.how[0], SK_JOB_DONE);
    assert_int_equal(b.failures, 0);
    bench_free(&b);
}

/* Cancel: waiting jobs and undrained ends report cancelled at once, the
 * running one when it returns (with wait, before cancel returns). */
static void *open_gate_later(void *arg)
{
    /* Not a timed check: cancel's answer is the same whenever this runs;
     * only later than cancel's start does it exercise the wait. */
    struct timespec pause = {0, 50 * 1000000L};
    nanosleep(&pause, NULL);
    open_gate(arg);
    return NULL;
}

static void test_cancel(void **state)
{
    static const bool waits[] = {false, true};
    for (size_t c = 0; c < SKT_N(waits); c++) {
        bench b;
        bench_init(&b);
        b.w = group("cancel", 2);
        tjob jobs[5];
        jobs_init(jobs, 5, &b, run_plain);
        /* 0 ends (not drained); 1 and 2 hold both threads behind the
         * gate; without wait, 3 and 4 wait in the queue. */
        jobs[1].job.run = run_gated;
        jobs[2].job.run = run_gated;
        size_t n = waits[c] ? 3 : 5;
        assert_int_equal(sk_workers_submit(b.w, &jobs[0].job), SK_OK);
        assert_true(wait_count(&b, &b.nended, 1));
        for (size_t i = 1; i < n; i++)
            assert_int_equal(sk_workers_submit(b.w, &jobs[i].job), SK_OK);
        assert_true(wait_count(&b, &b.nran, 3));
        pthread_t opener;
        if (waits[c]) assert_int_equal(pthread_create(&opener, NULL, open_gate_later, &b), 0);
        sk_workers_cancel(b.w, waits[c]);
        if (waits[c]) {
            /* Returned only once 1 and 2 had: all reported. */
            assert_int_equal(b.nended, 3);
            assert_int_equal(b.ndone, 3);
            pthread_join(opener, NULL);
        } else {
            /* 0, 3 and 4 at once; 1 and 2 when they return. */
            assert_int_equal(b.ndone, 3);
            open_gate(&b);
            assert_true(drain_until(&b, 5));
        }
        for (size_t i = 0; i < n; i++) assert_int_equal(b.how[i], SK_JOB_CANCELLED);
        assert_int_equal(b.nran, 3); /* 3 and 4 never ran */
        /* The group goes on: a new job runs and reports normally. */
        tjob after = {.b = &b, .index = 5};
        sk_job_init(&after.job, run_plain, on_done, &after);
        assert_int_equal(sk_workers_submit(b.w, &after.job), SK_OK);
        assert_true(drain_until(&b, n + 1));
        assert_int_equal(b.how[5], SK_JOB_DONE);
        assert_int_equal(b.failures, 0);
        sk_workers_free(b.w);
        bench_free(&b);
    }
}

/* A service: pauses until woken, counts its wakes, ends after three.
 * The owner wakes it only once it is pausing, or before (a wake before a
 * pause ends that pause at once): none is lost either way. */
typedef struct service {
    sk_job job;
    bench *b;
    int wakes;
} service;

static void run_service(void *ctx)
{
    service *sv = ctx;
    while (sv->wakes < 3) {
        if (sk_workers_pause(sv->b->w, &sv->job, 60000)) {
            fail_in_thread(sv->b);
            return;
        }
        pthread_mutex_lock(&sv->b->mu);
        sv->wakes++;
        pthread_cond_broadcast(&sv->b->cv);
        pthread_mutex_unlock(&sv->b->mu);
    }
}

static void on_service_done(void *ctx, sk_job_end end)
{
    service *sv = ctx;
    sv->b->done[sv->b->ndone++] = 0;
    sv->b->how[0] = end;
}

static void test_pause_and_wake(void **state)
{
    bench b;
    bench_init(&b);
    b.w = group("service", 1);
    service sv = {.b = &b};
    sk_job_init(&sv.job, run_service, on_service_done, &sv);
    assert_int_equal(sk_workers_submit(b.w, &sv.job), SK_OK);
    /* Maybe before its first pause: that pause ends at once. */
    sk_workers_wake(b.w, &sv.job);
    for (int want = 2; want <= 3; want++) {
        /* The last wake was taken: the next one ends the next pause. */
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += WAIT_BOUND_MS / 1000;
        bool ok = true;
        pthread_mutex_lock(&b.mu);
        while (sv.wakes < want - 1 && ok)
            ok = pthread_cond_timedwait(&b.cv, &b.mu, &until) != ETIMEDOUT;
        pthread_mutex_unlock(&b.mu);
        assert_true(ok);
        sk_workers_wake(b.w, &sv.job);
    }
    assert_true(drain_until(&b, 1));
    assert_int_equal(sv.wakes, 3);
    assert_int_equal(b.how[0], SK_JOB_DONE);
    assert_int_equal(b.failures, 0);
    sk_workers_free(b.w);
    bench_free(&b);
}

static void test_thread_names(void **state)
{
    static const struct {
        const char *name;
        unsigned threads;
        const char *want;
    } cases[] = {
        {"spool", 1, "spool"},
        {"smtp", 2, "smtp/"},
        {"a-rather-long-group-name", 1, "a-rather-long-g"},
        {"a-rather-long-group-name", 3, "a-rather-long"},
    };
    for (size_t c = 0; c < SKT_N(cases); c++) {
        bench b;
        bench_init(&b);
        b.w = group(cases[c].name, cases[c].threads);
        tjob job;
        jobs_init(&job, 1, &b, run_name);
        assert_int_equal(sk_workers_submit(b.w, &job.job), SK_OK);
        assert_true(drain_until(&b, 1));
        assert_int_equal(strncmp(b.thread_name, cases[c].want, strlen(cases[c].want)), 0);
        assert_true(strlen(b.thread_name) <= SK_WORKERS_NAME_MAX_OCTETS);
        if (cases[c].threads > 1) assert_non_null(strchr(b.thread_name, '/'));
        sk_workers_free(b.w);
        bench_free(&b);
    }
}

/* A job without a done callback may be submitted again while it runs. */
typedef struct again {
    sk_job job;
    pthread_mutex_t mu;
    int runs, want, failures;
    sk_workers *w;
} again;

static void run_again(void *ctx)
{
    again *a = ctx;
    pthread_mutex_lock(&a->mu);
    int more = ++a->runs < a->want;
    pthread_mutex_unlock(&a->mu);
    if (more && sk_workers_submit(a->w, &a->job)) a->failures++;
}

static void test_resubmit_without_done(void **state)
{
    again a = {.want = 50};
    pthread_mutex_init(&a.mu, NULL);
    a.w = group("again", 1);
    sk_job_init(&a.job, run_again, NULL, &a);
    assert_int_equal(sk_workers_submit(a.w, &a.job), SK_OK);
    /* FINISH: runs the one queued and those it queues. */
    assert_int_equal(sk_workers_stop(a.w, SK_WORKERS_FINISH, SK_WORKERS_NO_LIMIT, NULL), SK_OK);
    assert_int_equal(a.runs, 50);
    assert_int_equal(a.failures, 0);
    assert_int_equal(sk_workers_drain(a.w), 0);
    sk_workers_free(a.w);
    pthread_mutex_destroy(&a.mu);
}

static void test_bad_options(void **state)
{
    sk_error err;
    assert_null(sk_workers_new(
        &(sk_workers_opts){.name = "x", .threads = SK_WORKERS_THREADS_MAX + 1}, &err));
    assert_int_equal(err.err, SK_ERR_INVAL);
    /* No options: one thread. */
    sk_workers *w = sk_workers_new(NULL, &err);
    assert_non_null(w);
    sk_workers_free(w);
    sk_workers_free(NULL);
}

static void test_alloc_failures(void **state)
{
    bool made = false;
    for (long n = 0; !made && n < 16; n++) {
        skt_alloc_fail_at(n);
        sk_error err;
        sk_workers *w = sk_workers_new(&(sk_workers_opts){.name = "sweep", .threads = 3}, &err);
        if (w) {
            assert_false(skt_alloc_failed());
            made = true;
            sk_workers_free(w);
        } else {
            assert_true(skt_alloc_failed());
            assert_int_equal(err.err, SK_ERR_NOMEM);
        }
        assert_int_equal(skt_alloc_live(), 0);
        skt_alloc_end();
    }
    assert_true(made);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_single_thread_order),
        cmocka_unit_test(test_threads_busy_at_once),
        cmocka_unit_test(test_ends_drained_in_order_of_end),
        cmocka_unit_test(test_posts_in_order),
        cmocka_unit_test(test_stop_modes),
        cmocka_unit_test(test_stop_limit),
        cmocka_unit_test(test_stop_limit_running),
        cmocka_unit_test(test_cancel),
        cmocka_unit_test(test_pause_and_wake),
        cmocka_unit_test(test_thread_names),
        cmocka_unit_test(test_resubmit_without_done),
        cmocka_unit_test(test_bad_options),
        cmocka_unit_test(test_alloc_failures),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
