/* Background workers: a named group of threads that runs jobs (a function
 * and a context) off the owner's event loop, and hands each job's end back
 * to the owner's thread through one eventfd per group. Every thread of the
 * library is one of these (docs/ARCHITECTURE.md "Background threads"). */
#ifndef SMTPKIT_WORKER_H
#define SMTPKIT_WORKER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sk_workers sk_workers;

/* How a job ended, as its done callback is told. */
typedef enum sk_job_end {
    SK_JOB_DONE,      /* its run function returned */
    SK_JOB_CANCELLED, /* not run (cancelled or stopped first), or its result dropped by
                       * sk_workers_cancel */
} sk_job_end;

/* run: on a worker thread. done: on the owner's thread (sk_workers_drain,
 * sk_workers_cancel, sk_workers_stop, sk_workers_free), exactly once for
 * every job accepted by sk_workers_submit or sk_workers_post. */
typedef void (*sk_job_run_fn)(void *ctx);
typedef void (*sk_job_done_fn)(void *ctx, sk_job_end end);

/* A job, kept by its owner (usually inside the record it works on, so that
 * submitting allocates nothing and cannot fail for want of memory). The
 * fields are the facility's: set them with sk_job_init. A job is submitted
 * again only once its done callback has run; a job without one is let go
 * when a thread takes it, and may be submitted again from then on (even by
 * its own run function). */
typedef struct sk_job {
    struct sk_job *next;
    sk_job_run_fn run;
    sk_job_done_fn done;
    void *ctx;
    int cancelled;
    int woken; /* sk_workers_wake since its last pause */
} sk_job;

void sk_job_init(sk_job *job, sk_job_run_fn run, sk_job_done_fn done, void *ctx);

typedef struct sk_workers_opts {
    /* Names the threads ("NAME", or "NAME/I" with more than one) as top -H
     * and /proc show them; cut to fit SK_WORKERS_NAME_MAX_OCTETS. */
    const char *name;
    /* Threads (0: 1; at most SK_WORKERS_THREADS_MAX). One thread runs the
     * jobs one at a time in the order they were submitted; more start them
     * in that order. */
    unsigned threads;
} sk_workers_opts;

/* A new group with its threads running; NULL on error (err says why). */
sk_workers *sk_workers_new(const sk_workers_opts *o, sk_error *err);

/* Queue job (from any thread): its run function runs on a thread of the
 * group, then its done callback on the owner's thread. SK_ERR_STATE once
 * the group is stopping or stopped, except that while a stop in
 * SK_WORKERS_FINISH mode is under way jobs may still be queued (by the
 * group's own jobs handing work on), and those run too. */
SK_NODISCARD sk_err sk_workers_submit(sk_workers *w, sk_job *job);
/* Have job's done callback run on the owner's thread at the next drain,
 * after every job end already reported (from any thread; job's run
 * function is not used): how a long job reports results as it goes. */
SK_NODISCARD sk_err sk_workers_post(sk_workers *w, sk_job *job);

/* The eventfd the owner watches for reading: readable when job ends wait
 * to be drained. */
int sk_workers_fd(const sk_workers *w);
/* Owner's thread: run the done callbacks of the jobs that ended, in the
 * order they ended (and posts in the order posted); how many ran. */
size_t sk_workers_drain(sk_workers *w);
/* sk_workers_drain in the shape of a libevent callback (evutil_socket_t is
 * int on the systems we build on), arg the group:
 * event_new(base, sk_workers_fd(w), EV_READ | EV_PERSIST, sk_workers_drain_cb, w). */
void sk_workers_drain_cb(int fd, short what, void *arg);

/* In a job: sleep for at most ms, or until self (the job that runs, or
 * NULL) is woken by sk_workers_wake; a wake since self's last pause ends
 * this one at once. Returns true, at once or as soon as it happens, when
 * the group is asked to stop: the one wait a job that runs for a while
 * (retries, a service that gathers work) needs. */
bool sk_workers_pause(sk_workers *w, sk_job *self, uint64_t ms);
/* From any thread: end job's pause, or its next one. */
void sk_workers_wake(sk_workers *w, sk_job *job);
/* Whether the group has been asked to stop. */
bool sk_workers_stopping(sk_workers *w);

/* Owner's thread: every job submitted or posted so far that has not
 * reported yet reports SK_JOB_CANCELLED: those waiting and those whose end
 * was not drained yet at once (their done callbacks run here), those
 * running when they return. With wait, this returns only once none of them
 * is running any more (what they use may then be freed). */
void sk_workers_cancel(sk_workers *w, bool wait);

typedef enum sk_workers_stop_mode {
    SK_WORKERS_FINISH, /* run the jobs waiting, and those they submit */
    SK_WORKERS_CANCEL, /* jobs waiting are not run: SK_JOB_CANCELLED */
} sk_workers_stop_mode;

/* What a stop could not finish in its time. */
typedef struct sk_workers_stop_report {
    size_t running;   /* jobs still running: their threads are left behind */
    size_t cancelled; /* jobs that were waiting and were not run */
} sk_workers_stop_report;

/* No limit for sk_workers_stop. */
#define SK_WORKERS_NO_LIMIT UINT64_MAX

/* Owner's thread: stop the group: no new jobs (but see sk_workers_submit),
 * pauses end, then the threads finish what mode says and exit. Waits at
 * most limit_ms; past it the jobs still waiting are cancelled and
 * SK_ERR_TIMEOUT says that some are still running (report, which may be
 * NULL, says how many): the group must then not be freed before a later
 * stop returns SK_OK, or it is freed with the process (sk_workers_free
 * leaves it). Done callbacks of cancelled jobs run here; those of jobs that
 * ran wait for sk_workers_drain or sk_workers_free. */
SK_NODISCARD sk_err sk_workers_stop(sk_workers *w, sk_workers_stop_mode mode, uint64_t limit_ms,
                                    sk_workers_stop_report *report);

/* Stop (SK_WORKERS_CANCEL, no limit) if not stopped, run the done
 * callbacks still due, and free. A group whose stop timed out is left to
 * the threads still in it (the process is exiting). NULL is accepted. */
void sk_workers_free(sk_workers *w);

#ifdef __cplusplus
}
#endif
#endif
