/* DKIM signatures and ARC sets made off the event loop: the end of a
 * signer or a sealer (the header hashes and the private-key operations,
 * about 0.2 ms each for RSA-2048 and 0.02 ms for Ed25519; a seal makes
 * two) runs as a job of a "sign" group of background workers
 * (src/util/worker.c), so the loop goes on with the other sessions
 * meanwhile; the fields come back to the loop when it drains the group. */
#include "daemon_int.h"

#include <smtpkit/worker.h>

#include <event2/event.h>

#include <unistd.h>

typedef struct sign_job {
    sk_job job;
    /* The caller's signer or sealer; not touched by it meanwhile. */
    sk_dkim_signer *signer;
    sk_arc_sealer *sealer;
    sk_buf fields;
    sk_err e;
    sk_error err;
    sk_sign_done_fn done;
    void *ctx;
} sign_job;

struct sk_sign_pool {
    sk_workers *workers;
    struct event *done_ev; /* the group's eventfd on the loop: job ends drained there */
};

static void job_free(sign_job *j)
{
    sk_buf_free(&j->fields);
    sk_free(j);
}

/* On a thread of the group. */
static void sign_run(void *arg)
{
    sign_job *j = arg;
    sk_error_clear(&j->err);
    j->e = j->signer ? sk_dkim_signer_finish(j->signer, &j->fields, &j->err)
                     : sk_arc_sealer_finish(j->sealer, &j->fields, &j->err);
}

/* Loop thread: hand the finished job to its caller. A job cancelled by
 * sk_sign_pool_free is dropped without its callback. */
static void sign_ended(void *arg, sk_job_end end)
{
    sign_job *j = arg;
    if (end == SK_JOB_DONE) j->done(j->ctx, j->e, &j->fields, &j->err);
    job_free(j);
}

sk_sign_pool *sk_sign_pool_new(struct event_base *base, sk_error *err)
{
    sk_sign_pool *p = sk_calloc(1, sizeof *p);
    if (!p) {
        sk_error_set(err, SK_ERR_NOMEM, SK_STEP_NONE, "out of memory");
        return NULL;
    }
    /* One thread per processor (the loop has its own), within the bound. */
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    unsigned want = cpus < 1 ? 1 : (unsigned)cpus;
    if (want > SK_DAEMON_SIGN_THREADS_MAX) want = SK_DAEMON_SIGN_THREADS_MAX;
    sk_error e;
    p->workers = sk_workers_new(&(sk_workers_opts){.name = "sign", .threads = want}, &e);
    if (!p->workers) {
        sk_error_set(err, e.err, SK_STEP_NONE, "cannot start the DKIM signing threads: %s", e.text);
        sk_sign_pool_free(p);
        return NULL;
    }
    p->done_ev = event_new(base, sk_workers_fd(p->workers), EV_READ | EV_PERSIST,
                           sk_workers_drain_cb, p->workers);
    if (!p->done_ev || event_add(p->done_ev, NULL)) {
        sk_error_set(err, SK_ERR_NOMEM, SK_STEP_NONE, "cannot start the DKIM signing threads");
        sk_sign_pool_free(p);
        return NULL;
    }
    return p;
}

static sk_err submit(sk_sign_pool *p, sk_dkim_signer *signer, sk_arc_sealer *sealer,
                     sk_sign_done_fn done, void *ctx)
{
    sign_job *j = sk_calloc(1, sizeof *j);
    if (!j) return SK_ERR_NOMEM;
    j->signer = signer;
    j->sealer = sealer;
    /* The fields of SK_DKIM_SIGN_MAX signatures at most; a set is an
     * ARC-Authentication-Results and two signatures. */
    sk_buf_init(&j->fields, signer
                                ? SK_DKIM_SIGN_MAX * SK_DKIM_SIGNATURE_MAX_OCTETS
                                : SK_AUTHRES_HEADER_MAX_OCTETS + 2 * SK_DKIM_SIGNATURE_MAX_OCTETS);
    j->done = done;
    j->ctx = ctx;
    sk_job_init(&j->job, sign_run, sign_ended, j);
    sk_err e = sk_workers_submit(p->workers, &j->job);
    if (e) job_free(j);
    return e;
}

sk_err sk_sign_pool_submit(sk_sign_pool *p, sk_dkim_signer *s, sk_sign_done_fn done, void *ctx)
{
    return submit(p, s, NULL, done, ctx);
}

sk_err sk_sign_pool_submit_seal(sk_sign_pool *p, sk_arc_sealer *s, sk_sign_done_fn done, void *ctx)
{
    return submit(p, NULL, s, done, ctx);
}

void sk_sign_pool_free(sk_sign_pool *p)
{
    if (!p) return;
    /* The event before the group: it watches the group's eventfd. */
    if (p->done_ev) event_free(p->done_ev);
    if (p->workers) {
        /* A job being signed is finished first (its signer stays valid
         * until then); it and every job not delivered yet report
         * cancelled: dropped. The stop then only joins the threads. */
        sk_workers_cancel(p->workers, true);
        sk_workers_free(p->workers);
    }
    sk_free(p);
}
