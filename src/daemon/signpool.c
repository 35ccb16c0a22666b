/* DKIM signatures made off the event loop: the end of a signer (the header
 * hash and the private-key operation, about 0.2 ms for RSA-2048 and
 * 0.02 ms for Ed25519) runs on a few threads, so the loop goes on with the
 * other sessions meanwhile; the fields come back to the loop. */
#include "daemon_int.h"

#include <event2/event.h>

#include <pthread.h>
#include <sys/queue.h>
#include <unistd.h>

typedef struct sign_job {
    STAILQ_ENTRY(sign_job) link;
    sk_dkim_signer *signer; /* the caller's; not touched by it meanwhile */
    sk_buf fields;
    sk_err e;
    sk_error err;
    sk_sign_done_fn done;
    void *ctx;
} sign_job;

STAILQ_HEAD(job_list, sign_job);

struct sk_sign_pool {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct job_list todo, done; /* guarded by mu */
    bool stopping;              /* guarded by mu */
    pthread_t threads[SK_DAEMON_SIGN_THREADS_MAX];
    size_t nthreads;
    struct event *done_ev; /* made active by a worker, runs on the loop */
};

static void job_free(sign_job *j)
{
    sk_buf_free(&j->fields);
    sk_free(j);
}

static void *worker(void *arg)
{
    sk_sign_pool *p = arg;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (!p->stopping && STAILQ_EMPTY(&p->todo)) pthread_cond_wait(&p->cv, &p->mu);
        if (p->stopping) break;
        sign_job *j = STAILQ_FIRST(&p->todo);
        STAILQ_REMOVE_HEAD(&p->todo, link);
        pthread_mutex_unlock(&p->mu);
        sk_error_clear(&j->err);
        j->e = sk_dkim_signer_finish(j->signer, &j->fields, &j->err);
        pthread_mutex_lock(&p->mu);
        bool wake = STAILQ_EMPTY(&p->done);
        STAILQ_INSERT_TAIL(&p->done, j, link);
        /* One wake-up for the jobs the loop has not taken yet. */
        if (wake) event_active(p->done_ev, EV_TIMEOUT, 0);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

/* Loop thread: hand every finished job to its caller. */
static void on_done(evutil_socket_t fd, short what, void *arg)
{
    sk_sign_pool *p = arg;
    (void)fd;
    (void)what;
    pthread_mutex_lock(&p->mu);
    struct job_list done = STAILQ_HEAD_INITIALIZER(done);
    STAILQ_CONCAT(&done, &p->done);
    pthread_mutex_unlock(&p->mu);
    while (!STAILQ_EMPTY(&done)) {
        sign_job *j = STAILQ_FIRST(&done);
        STAILQ_REMOVE_HEAD(&done, link);
        j->done(j->ctx, j->e, &j->fields, &j->err);
        job_free(j);
    }
}

sk_sign_pool *sk_sign_pool_new(struct event_base *base, sk_error *err)
{
    sk_sign_pool *p = sk_calloc(1, sizeof *p);
    if (!p) {
        sk_error_set(err, SK_ERR_NOMEM, SK_STEP_NONE, "out of memory");
        return NULL;
    }
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    STAILQ_INIT(&p->todo);
    STAILQ_INIT(&p->done);
    p->done_ev = event_new(base, -1, 0, on_done, p);
    /* One thread per processor (the loop has its own), within the bound. */
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    size_t want = cpus < 1 ? 1 : (size_t)cpus;
    if (want > SK_DAEMON_SIGN_THREADS_MAX) want = SK_DAEMON_SIGN_THREADS_MAX;
    while (p->done_ev && p->nthreads < want &&
           pthread_create(&p->threads[p->nthreads], NULL, worker, p) == 0)
        p->nthreads++;
    if (!p->done_ev || p->nthreads == 0) {
        sk_error_set(err, SK_ERR_NOMEM, SK_STEP_NONE, "cannot start the DKIM signing threads");
        sk_sign_pool_free(p);
        return NULL;
    }
    return p;
}

sk_err sk_sign_pool_submit(sk_sign_pool *p, sk_dkim_signer *s, sk_sign_done_fn done, void *ctx)
{
    sign_job *j = sk_calloc(1, sizeof *j);
    if (!j) return SK_ERR_NOMEM;
    j->signer = s;
    /* The fields of SK_DKIM_SIGN_MAX signatures at most. */
    sk_buf_init(&j->fields, SK_DKIM_SIGN_MAX * SK_DKIM_SIGNATURE_MAX_OCTETS);
    j->done = done;
    j->ctx = ctx;
    pthread_mutex_lock(&p->mu);
    STAILQ_INSERT_TAIL(&p->todo, j, link);
    pthread_cond_signal(&p->cv);
    pthread_mutex_unlock(&p->mu);
    return SK_OK;
}

void sk_sign_pool_free(sk_sign_pool *p)
{
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    p->stopping = true;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    /* A job being signed is finished first: its signer stays valid until
     * the join. */
    for (size_t i = 0; i < p->nthreads; i++) pthread_join(p->threads[i], NULL);
    struct job_list *lists[] = {&p->todo, &p->done};
    for (size_t i = 0; i < 2; i++)
        while (!STAILQ_EMPTY(lists[i])) {
            sign_job *j = STAILQ_FIRST(lists[i]);
            STAILQ_REMOVE_HEAD(lists[i], link);
            job_free(j);
        }
    if (p->done_ev) event_free(p->done_ev);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
    sk_free(p);
}
