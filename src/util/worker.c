/* Background workers (include/smtpkit/worker.h): a queue of jobs, N named
 * threads, job ends handed to the owner's thread through one eventfd, and a
 * stop bounded in time. */
#include <smtpkit/worker.h>

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

typedef enum state {
    RUNNING,
    FINISHING,  /* stop in SK_WORKERS_FINISH mode under way: jobs still taken */
    CANCELLING, /* stop under way: nothing more is taken */
    STOPPED,    /* every thread joined */
} state;

/* One thread of the group. */
typedef struct slot {
    sk_workers *w;
    unsigned index;
    pthread_t thread;
    int started, joined;
    int busy;    /* in a run function */
    sk_job *job; /* the job it runs, when that job has a done callback */
} slot;

struct sk_workers {
    char name[SK_WORKERS_NAME_MAX_OCTETS + 1];
    pthread_mutex_t mu;
    pthread_cond_t work_cv;  /* threads wait here for jobs */
    pthread_cond_t idle_cv;  /* a job returned: stop and cancel wait here */
    pthread_cond_t pause_cv; /* sk_workers_pause; broadcast at stop */
    state state;
    sk_job *queue, **queue_tail;
    sk_job *ended, **ended_tail; /* for the owner: done callbacks due */
    size_t running;              /* threads in a run function */
    int efd;
    unsigned nthreads;
    slot *slots;
};

void sk_job_init(sk_job *job, sk_job_run_fn run, sk_job_done_fn done, void *ctx)
{
    *job = (sk_job){.run = run, .done = done, .ctx = ctx};
}

/* mu held: append job to the ends for the owner, waking it when the list
 * was empty (a drain reads the eventfd before it takes the list, so a
 * wake-up is never lost). */
static void report(sk_workers *w, sk_job *job)
{
    int was_empty = w->ended == NULL;
    job->next = NULL;
    *w->ended_tail = job;
    w->ended_tail = &job->next;
    if (was_empty) {
        uint64_t one = 1;
        if (write(w->efd, &one, sizeof one) < 0) {
            /* EAGAIN: the counter is far from empty, the owner will wake. */
        }
    }
}

/* mu held: take a whole list, leaving it empty. */
static sk_job *take(sk_job **head, sk_job ***tail)
{
    sk_job *list = *head;
    *head = NULL;
    *tail = head;
    return list;
}

/* Owner's thread, mu not held: report every job of list as cancelled. */
static size_t run_cancelled(sk_job *list)
{
    size_t n = 0;
    while (list) {
        sk_job *next = list->next;
        if (list->done) list->done(list->ctx, SK_JOB_CANCELLED);
        list = next;
        n++;
    }
    return n;
}

static void *thread_main(void *arg)
{
    slot *sl = arg;
    sk_workers *w = sl->w;
    pthread_mutex_lock(&w->mu);
    for (;;) {
        while (!w->queue && w->state == RUNNING) pthread_cond_wait(&w->work_cv, &w->mu);
        /* Stopping: in FINISH mode the queue is worked off first, and a
         * running job may still add to it (its thread takes that). */
        if (!w->queue || w->state == CANCELLING) break;
        sk_job *job = w->queue;
        w->queue = job->next;
        if (!w->queue) w->queue_tail = &w->queue;
        job->next = NULL;
        sk_job_run_fn run = job->run;
        void *ctx = job->ctx;
        /* A job without a done callback is not touched after this: its
         * owner may submit it again as soon as it runs. */
        sl->job = job->done ? job : NULL;
        sl->busy = 1;
        w->running++;
        pthread_mutex_unlock(&w->mu);
        run(ctx);
        pthread_mutex_lock(&w->mu);
        w->running--;
        sl->busy = 0;
        if (sl->job) report(w, sl->job);
        sl->job = NULL;
        pthread_cond_broadcast(&w->idle_cv);
    }
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

/* Deadline for a wait on a CLOCK_MONOTONIC condition variable. */
static struct timespec deadline_after(uint64_t ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    uint64_t s = ms / 1000, ns = (uint64_t)ts.tv_nsec + (ms % 1000) * 1000000u;
    /* Far enough: a limit beyond this is no limit. */
    if (s > (uint64_t)INT32_MAX) s = INT32_MAX;
    ts.tv_sec += (time_t)(s + ns / 1000000000u);
    ts.tv_nsec = (long)(ns % 1000000000u);
    return ts;
}

/* Join the threads that are not in a job (mu not held; they exit once they
 * see the stop); whether every thread is joined now. */
static bool join_idle(sk_workers *w)
{
    bool all = true;
    for (unsigned i = 0; i < w->nthreads; i++) {
        slot *sl = &w->slots[i];
        if (!sl->started || sl->joined) continue;
        pthread_mutex_lock(&w->mu);
        int busy = sl->busy;
        pthread_mutex_unlock(&w->mu);
        if (busy) {
            all = false;
            continue;
        }
        pthread_join(sl->thread, NULL);
        sl->joined = 1;
    }
    return all;
}

sk_workers *sk_workers_new(const sk_workers_opts *o, sk_error *err)
{
    sk_error_clear(err);
    unsigned n = o && o->threads ? o->threads : 1;
    if (n > SK_WORKERS_THREADS_MAX) {
        sk_error_set(err, SK_ERR_INVAL, SK_STEP_NONE, "workers: %u threads (at most %d)", n,
                     SK_WORKERS_THREADS_MAX);
        return NULL;
    }
    sk_workers *w = sk_calloc(1, sizeof *w);
    /* The efd check of sk_workers_free, before anything can fail. */
    if (w) w->efd = -1;
    slot *slots = w ? sk_calloc(n, sizeof *slots) : NULL;
    if (!slots) {
        sk_free(w);
        sk_error_set(err, SK_ERR_NOMEM, SK_STEP_NONE, "workers: out of memory");
        return NULL;
    }
    w->slots = slots;
    w->nthreads = n;
    snprintf(w->name, sizeof w->name, "%s", o && o->name && *o->name ? o->name : "sk-worker");
    w->queue_tail = &w->queue;
    w->ended_tail = &w->ended;
    w->state = RUNNING;
    pthread_mutex_init(&w->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&w->work_cv, NULL);
    pthread_cond_init(&w->idle_cv, &ca);
    pthread_cond_init(&w->pause_cv, &ca);
    pthread_condattr_destroy(&ca);
    w->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (w->efd < 0) {
        sk_error_set(err, SK_ERR_IO, SK_STEP_NONE, "workers %s: eventfd: %s", w->name,
                     strerror(errno));
        sk_workers_free(w);
        return NULL;
    }
    for (unsigned i = 0; i < n; i++) {
        slot *sl = &slots[i];
        sl->w = w;
        sl->index = i;
        int e = pthread_create(&sl->thread, NULL, thread_main, sl);
        if (e) {
            sk_error_set(err, SK_ERR_NOMEM, SK_STEP_NONE, "workers %s: cannot start a thread: %s",
                         w->name, strerror(e));
            sk_workers_free(w);
            return NULL;
        }
        sl->started = 1;
        /* "NAME/I" cut so that the number stays. */
        char tname[SK_WORKERS_NAME_MAX_OCTETS + 1], num[16] = "";
        if (n > 1) snprintf(num, sizeof num, "/%u", i);
        size_t keep = sizeof tname - 1 - strlen(num), len = strlen(w->name);
        if (len > keep) len = keep;
        memcpy(tname, w->name, len);
        memcpy(tname + len, num, strlen(num) + 1);
        /* Only a name: a failure changes nothing else. */
        if (pthread_setname_np(sl->thread, tname)) {
        }
    }
    return w;
}

sk_err sk_workers_submit(sk_workers *w, sk_job *job)
{
    pthread_mutex_lock(&w->mu);
    if (w->state != RUNNING && w->state != FINISHING) {
        pthread_mutex_unlock(&w->mu);
        return SK_ERR_STATE;
    }
    job->next = NULL;
    job->cancelled = job->woken = 0;
    *w->queue_tail = job;
    w->queue_tail = &job->next;
    pthread_cond_signal(&w->work_cv);
    pthread_mutex_unlock(&w->mu);
    return SK_OK;
}

sk_err sk_workers_post(sk_workers *w, sk_job *job)
{
    pthread_mutex_lock(&w->mu);
    /* A post comes from a job that runs (or from the owner), so it is
     * accepted until every thread has gone. */
    if (w->state == STOPPED) {
        pthread_mutex_unlock(&w->mu);
        return SK_ERR_STATE;
    }
    job->cancelled = 0;
    report(w, job);
    pthread_mutex_unlock(&w->mu);
    return SK_OK;
}

int sk_workers_fd(const sk_workers *w)
{
    return w->efd;
}

size_t sk_workers_drain(sk_workers *w)
{
    uint64_t v;
    if (read(w->efd, &v, sizeof v) < 0) {
        /* EAGAIN: nothing signalled since the last drain. */
    }
    pthread_mutex_lock(&w->mu);
    sk_job *list = take(&w->ended, &w->ended_tail);
    pthread_mutex_unlock(&w->mu);
    size_t n = 0;
    while (list) {
        /* Read before done: done may free the job or submit it again. */
        sk_job *next = list->next;
        if (list->done) list->done(list->ctx, list->cancelled ? SK_JOB_CANCELLED : SK_JOB_DONE);
        list = next;
        n++;
    }
    return n;
}

void sk_workers_drain_cb(int fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)sk_workers_drain(arg);
}

bool sk_workers_pause(sk_workers *w, sk_job *self, uint64_t ms)
{
    struct timespec until = deadline_after(ms);
    pthread_mutex_lock(&w->mu);
    while (w->state == RUNNING && !(self && self->woken) &&
           pthread_cond_timedwait(&w->pause_cv, &w->mu, &until) != ETIMEDOUT) {
    }
    if (self) self->woken = 0;
    bool stopping = w->state != RUNNING;
    pthread_mutex_unlock(&w->mu);
    return stopping;
}

void sk_workers_wake(sk_workers *w, sk_job *job)
{
    pthread_mutex_lock(&w->mu);
    job->woken = 1;
    /* Every pause of the group wakes; the others sleep on. */
    pthread_cond_broadcast(&w->pause_cv);
    pthread_mutex_unlock(&w->mu);
}

bool sk_workers_stopping(sk_workers *w)
{
    pthread_mutex_lock(&w->mu);
    bool stopping = w->state != RUNNING;
    pthread_mutex_unlock(&w->mu);
    return stopping;
}

void sk_workers_cancel(sk_workers *w, bool wait)
{
    pthread_mutex_lock(&w->mu);
    /* First the queue, so that no thread starts one of them meanwhile. */
    sk_job *waiting = take(&w->queue, &w->queue_tail);
    for (unsigned i = 0; i < w->nthreads; i++)
        if (w->slots[i].job) w->slots[i].job->cancelled = 1;
    for (;;) {
        bool busy = false;
        for (unsigned i = 0; wait && i < w->nthreads; i++) busy = busy || w->slots[i].job;
        if (!busy) break;
        pthread_cond_wait(&w->idle_cv, &w->mu);
    }
    sk_job *ended = take(&w->ended, &w->ended_tail);
    pthread_mutex_unlock(&w->mu);
    /* The ones that ended came first. */
    (void)run_cancelled(ended);
    (void)run_cancelled(waiting);
}

sk_err sk_workers_stop(sk_workers *w, sk_workers_stop_mode mode, uint64_t limit_ms,
                       sk_workers_stop_report *report)
{
    sk_workers_stop_report r = {0};
    struct timespec until = deadline_after(limit_ms);
    sk_job *cancelled = NULL;
    pthread_mutex_lock(&w->mu);
    if (w->state == RUNNING) w->state = mode == SK_WORKERS_FINISH ? FINISHING : CANCELLING;
    if (mode == SK_WORKERS_CANCEL && w->state == FINISHING) w->state = CANCELLING;
    if (w->state == CANCELLING) cancelled = take(&w->queue, &w->queue_tail);
    pthread_cond_broadcast(&w->work_cv);
    pthread_cond_broadcast(&w->pause_cv);
    int timed_out = 0;
    while ((w->running || w->queue) && !timed_out) {
        if (limit_ms == SK_WORKERS_NO_LIMIT)
            pthread_cond_wait(&w->idle_cv, &w->mu);
        else
            timed_out = pthread_cond_timedwait(&w->idle_cv, &w->mu, &until) == ETIMEDOUT;
    }
    if (w->running || w->queue) {
        /* Out of time: what waits is not started any more. */
        w->state = CANCELLING;
        sk_job *rest = take(&w->queue, &w->queue_tail);
        sk_job **t = &cancelled;
        while (*t) t = &(*t)->next;
        *t = rest;
        pthread_cond_broadcast(&w->work_cv);
        r.running = w->running;
    }
    pthread_mutex_unlock(&w->mu);
    r.cancelled = run_cancelled(cancelled);
    bool all = join_idle(w);
    if (all) {
        /* Every thread is gone: a job queued since by another thread of
         * the program's has nobody to run it. */
        pthread_mutex_lock(&w->mu);
        w->state = STOPPED;
        sk_job *late = take(&w->queue, &w->queue_tail);
        pthread_mutex_unlock(&w->mu);
        r.cancelled += run_cancelled(late);
    }
    if (report) *report = r;
    return all ? SK_OK : SK_ERR_TIMEOUT;
}

void sk_workers_free(sk_workers *w)
{
    if (!w) return;
    if (w->state == RUNNING) {
        /* Without a limit it returns once every thread is joined. */
        if (sk_workers_stop(w, SK_WORKERS_CANCEL, SK_WORKERS_NO_LIMIT, NULL)) {
        }
    } else if (w->state != STOPPED && join_idle(w))
        w->state = STOPPED; /* an earlier stop timed out; its jobs have returned since */
    if (w->state != STOPPED) {
        /* Threads still run a job (an earlier stop timed out): they use the
         * group until they return, so it is left to them (the process is
         * exiting); their done callbacks never run. */
        for (unsigned i = 0; i < w->nthreads; i++)
            if (w->slots[i].started && !w->slots[i].joined) pthread_detach(w->slots[i].thread);
        return;
    }
    (void)sk_workers_drain(w);
    if (w->efd >= 0) close(w->efd);
    pthread_mutex_destroy(&w->mu);
    pthread_cond_destroy(&w->work_cv);
    pthread_cond_destroy(&w->idle_cv);
    pthread_cond_destroy(&w->pause_cv);
    sk_free(w->slots);
    sk_free(w);
}
