/* Running the DMARC check: on a resolver's event loop (the daemon), or
 * blocking with one private loop per lookup (the CLI). */
#include "dmarc/dmarc_int.h"

#include <string.h>

struct sk_dmarc_job {
    sk_dmarc_checker *c;
    sk_dmarc_job *prev, *next;
    dm_state st;
    sk_dmarc_cb cb;
    void *ctx;
    int cancelled;
    int depth; /* inside a resolver callback or sk_dmarc_check */
    int done;
};

struct sk_dmarc_checker {
    sk_resolver *r;
    sk_dmarc_opts o;
    sk_dmarc_job *jobs; /* in flight */
};

sk_dmarc_checker *sk_dmarc_checker_new(sk_resolver *r, const sk_dmarc_opts *o)
{
    sk_dmarc_checker *c = sk_calloc(1, sizeof *c);
    if (!c) return NULL;
    c->r = r;
    if (o) c->o = *o;
    return c;
}

static void job_free(sk_dmarc_job *j)
{
    sk_dmarc_checker *c = j->c;
    if (j->prev)
        j->prev->next = j->next;
    else
        c->jobs = j->next;
    if (j->next) j->next->prev = j->prev;
    sk_dmarc_result_clear(&j->st.res);
    sk_free(j);
}

void sk_dmarc_checker_free(sk_dmarc_checker *c)
{
    if (!c) return;
    while (c->jobs) job_free(c->jobs);
    sk_free(c);
}

void sk_dmarc_cancel(sk_dmarc_job *job)
{
    if (job) job->cancelled = 1;
}

static void on_answer(void *ctx, const sk_dns_result *res);

/* Ask the next question or deliver the result. */
static void advance(sk_dmarc_job *j)
{
    for (;;) {
        if (j->cancelled) {
            j->done = 1;
            return;
        }
        sk_dns_type type;
        const char *name = dm_next(&j->st, &type);
        if (!name) {
            sk_log(j->c->o.log, SK_LOG_DEBUG, "- dmarc result from=%s status=%s disposition=%s",
                   j->st.res.from_domain, sk_dmarc_status_name(j->st.res.status),
                   sk_dmarc_policy_name(j->st.res.disposition));
            j->cb(j->ctx, &j->st.res);
            j->done = 1;
            return;
        }
        sk_err e = sk_resolver_lookup(j->c->r, name, type, on_answer, j);
        if (e == SK_OK) return;
        /* Not even started: a failure of ours, not the domain's. */
        sk_dns_result fake = {.status = SK_DNS_TEMPFAIL, .type = type, .name = name};
        dm_feed(&j->st, &fake);
    }
}

static void on_answer(void *ctx, const sk_dns_result *res)
{
    sk_dmarc_job *j = ctx;
    j->depth++;
    if (!j->cancelled) dm_feed(&j->st, res);
    advance(j);
    j->depth--;
    if (j->done && j->depth == 0) job_free(j);
}

sk_err sk_dmarc_check(sk_dmarc_checker *c, const sk_dmarc_input *in, sk_dmarc_cb cb, void *ctx,
                      sk_dmarc_job **job)
{
    if (job) *job = NULL;
    if (!c || !in || !cb || (!in->from_domain && !in->headers)) return SK_ERR_INVAL;
    sk_dmarc_job *j = sk_calloc(1, sizeof *j);
    if (!j) return SK_ERR_NOMEM;
    sk_err e = dm_start(&j->st, in, c->o.rnd, c->o.rnd_ctx);
    if (e) {
        sk_free(j);
        return e;
    }
    j->c = c;
    j->cb = cb;
    j->ctx = ctx;
    j->next = c->jobs;
    if (c->jobs) c->jobs->prev = j;
    c->jobs = j;
    j->depth = 1;
    advance(j);
    j->depth = 0;
    if (j->done) {
        job_free(j);
        return SK_OK;
    }
    if (job) *job = j;
    return SK_OK;
}

static void sync_answer(void *ctx, const sk_dns_result *res)
{
    dm_feed(ctx, res);
}

sk_err sk_dmarc_check_sync(const sk_resolver_opts *ro, const sk_dmarc_opts *o,
                           const sk_dmarc_input *in, sk_dmarc_result *out, sk_error *err)
{
    memset(out, 0, sizeof *out);
    if (!in || (!in->from_domain && !in->headers))
        return sk_error_set(err, SK_ERR_INVAL, SK_STEP_NONE, "no From domain given");
    dm_state *s = sk_malloc(sizeof *s);
    if (!s) return sk_error_set(err, SK_ERR_NOMEM, SK_STEP_NONE, "out of memory");
    sk_err e = dm_start(s, in, o ? o->rnd : NULL, o ? o->rnd_ctx : NULL);
    if (e) {
        sk_free(s);
        return sk_error_set(err, e, SK_STEP_NONE, "out of memory");
    }
    sk_resolver_opts def = {0};
    sk_dns_type type;
    const char *name;
    while ((name = dm_next(s, &type)) != NULL) {
        /* The answer comes through sync_answer before this returns. */
        e = sk_dns_lookup_sync(ro ? ro : &def, name, type, sync_answer, s, err);
        if (e) {
            sk_dmarc_result_clear(&s->res);
            sk_free(s);
            return e;
        }
    }
    dm_take(s, out);
    sk_free(s);
    return SK_OK;
}
