/* The probe checklist (sk_client_probe): check a mail server one step at a
 * time (DNS, TCP to each address, greeting, EHLO, TLS, AUTH, envelope) and
 * say as data what is wrong and how to fix it. This file runs the checks
 * in order, records their steps and answers what the result holds; the
 * checks are in probe_net.c, probe_tls.c and probe_smtp.c. */
#include "client/probe_int.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static const char *const verdict_names[] = {"pass", "warn", "fail", "skip"};
_Static_assert(sizeof verdict_names / sizeof verdict_names[0] == SK_PROBE__VERDICTS,
               "a name per verdict");
static const char *const check_names[] = {"dns",  "tcp",  "tls",  "greeting", "ehlo",
                                          "auth", "mail", "rcpt", "rset"};
_Static_assert(sizeof check_names / sizeof check_names[0] == SK_PROBE__CHECKS, "a name per check");
/* The client step each check is (for errors and bindings). */
static const sk_step check_steps[] = {SK_STEP_DNS,      SK_STEP_CONNECT, SK_STEP_TLS,
                                      SK_STEP_GREETING, SK_STEP_EHLO,    SK_STEP_AUTH,
                                      SK_STEP_MAIL,     SK_STEP_RCPT,    SK_STEP_RSET};
_Static_assert(sizeof check_steps / sizeof check_steps[0] == SK_PROBE__CHECKS,
               "a client step per check");

const char *sk_probe_verdict_name(sk_probe_verdict v)
{
    return (unsigned)v < SK_PROBE__VERDICTS ? verdict_names[v] : "unknown";
}

const char *sk_probe_check_name(sk_probe_check c)
{
    return (unsigned)c < SK_PROBE__CHECKS ? check_names[c] : "unknown";
}

/* ---- steps ---- */

sk_probe_step *pr_step_begin(run *r, sk_probe_check check)
{
    sk_probe *p = r->p;
    /* The steps' bound (limits.h) holds every step a probe can take; were
     * it passed, the last step would be reused rather than overrun. */
    if (p->nsteps == SK_PROBE_STEPS_MAX) p->nsteps--;
    sk_probe_step *s = &p->steps[p->nsteps++];
    memset(s, 0, sizeof *s);
    s->check = check;
    s->elapsed_ms = -1;
    s->error.step = check_steps[check];
    return s;
}

void pr_step_detail(sk_probe_step *s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->detail, sizeof s->detail, fmt, ap);
    va_end(ap);
}

void pr_step_hint(sk_probe_step *s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->hint, sizeof s->hint, fmt, ap);
    va_end(ap);
}

/* One of the hints the client's errors share (hint.c), in the caller's
 * words. */
void pr_step_hint_shared(const run *r, sk_probe_step *s, cl_hint h)
{
    cl_hint_format(h, &r->names, s->hint, sizeof s->hint);
}

void pr_step_reply(sk_probe_step *s, const sk_reply *r)
{
    s->has_reply = 1;
    s->reply = *r;
    if (sk_reply_class_of(r->code) >= SK_REPLY_TRANSIENT)
        s->explanation = sk_reply_explain(r->code, r->enhanced, r->text);
}

/* The reply an sk_error carries (code, enhanced status, text). */
void pr_step_error_reply(sk_probe_step *s, const sk_error *e)
{
    sk_reply r = sk_reply_make(e->code, e->enhanced, "%s", e->text);
    pr_step_reply(s, &r);
}

void pr_step_end(run *r, sk_probe_step *s, sk_probe_verdict v)
{
    s->verdict = v;
    if (v == SK_PROBE_FAIL && r->p->failed < 0) r->p->failed = (int)(s - r->p->steps);
    if (r->po->on_step) r->po->on_step(r->po->on_step_ctx, s);
}

/* Fail the probe at step s with the error e (its err says what kind of
 * failure this is; the text is the step's detail when e has none). */
int pr_step_fail(run *r, sk_probe_step *s, const sk_error *e, sk_err kind)
{
    if (e) s->error = *e;
    s->error.err = kind;
    s->error.step = check_steps[s->check];
    if (!s->error.text[0])
        snprintf(s->error.text, sizeof s->error.text, "%.*s", (int)sizeof s->error.text - 1,
                 s->detail);
    pr_step_end(r, s, SK_PROBE_FAIL);
    return -1;
}

/* After a failure: the checks that would have followed, as skipped. */
static void skip_rest(run *r)
{
    const sk_client *c = r->c;
    sk_probe_check failed = r->p->steps[r->p->failed].check;
    int implicit = c->o.tls == SK_TLS_IMPLICIT;
    /* The whole checklist for these settings, in order. */
    sk_probe_check plan[10 + SK_PROBE_RCPTS_MAX];
    size_t n = 0;
    plan[n++] = SK_PROBE_DNS;
    plan[n++] = SK_PROBE_TCP;
    if (implicit) plan[n++] = SK_PROBE_TLS;
    plan[n++] = SK_PROBE_GREETING;
    plan[n++] = SK_PROBE_EHLO;
    if (!implicit) plan[n++] = SK_PROBE_TLS;
    if (!implicit && c->o.tls != SK_TLS_NONE) plan[n++] = SK_PROBE_EHLO; /* after STARTTLS */
    if (c->o.user) plan[n++] = SK_PROBE_AUTH;
    size_t first_rcpt = n + 1;
    if (r->po->from) {
        plan[n++] = SK_PROBE_MAIL;
        for (size_t i = 0; i < r->po->nto; i++) plan[n++] = SK_PROBE_RCPT;
        plan[n++] = SK_PROBE_RSET;
    }
    /* Where the steps taken got to in it (a tcp step per address). */
    size_t at = 0;
    for (size_t i = 0; i < r->p->nsteps; i++) {
        sk_probe_check k = r->p->steps[i].check;
        if (k == SK_PROBE_TCP && at > 0 && plan[at - 1] == SK_PROBE_TCP) continue;
        while (at < n && plan[at] != k) at++;
        if (at < n) at++;
    }
    for (size_t i = at; i < n; i++) {
        sk_probe_step *s = pr_step_begin(r, plan[i]);
        if (plan[i] == SK_PROBE_RCPT)
            snprintf(s->recipient, sizeof s->recipient, "%s", r->po->to[i - first_rcpt]);
        pr_step_detail(s, "not checked: the %s step failed", check_names[failed]);
        pr_step_end(r, s, SK_PROBE_SKIP);
    }
}

/* ---- the probe ---- */

sk_err sk_client_probe(sk_client *c, const sk_probe_opts *opts, sk_probe **out, sk_error *err)
{
    static const sk_probe_opts none;
    if (out) *out = NULL;
    if (!opts) opts = &none;
    if (!c || !out || opts->nto > SK_PROBE_RCPTS_MAX || (opts->nto && !opts->from) ||
        (opts->nto && !opts->to))
        return sk_error_set(err, SK_ERR_INVAL, SK_STEP_NONE,
                            "sk_client_probe: no client, no result, or recipients without a "
                            "sender (at most %d)",
                            SK_PROBE_RCPTS_MAX);
    if (c->state != CL_CLOSED)
        return sk_error_set(err, SK_ERR_INVAL, SK_STEP_NONE,
                            "sk_client_probe: the client is connected (QUIT first)");
    sk_probe *p = sk_calloc(1, sizeof *p);
    if (p) p->steps = sk_calloc(SK_PROBE_STEPS_MAX, sizeof *p->steps);
    if (!p || !p->steps) {
        sk_probe_free(p);
        return sk_error_set(err, SK_ERR_NOMEM, SK_STEP_NONE, "out of memory");
    }
    p->failed = -1;
    run r = {.c = c, .po = opts, .p = p, .reachable = -1};
    cl_names_resolve(opts->names, &r.names);

    /* For the probe, the client connects to the address that answered
     * and identifies a silent port soon (a person is waiting); both are
     * put back at the end. */
    const char *saved_address = c->o.connect_address;
    unsigned saved_identify = c->o.identify_after_ms;
    if (!c->o.identify_after_ms) c->o.identify_after_ms = SK_CLIENT_IDENTIFY_AFTER_MS;

    if (pr_check_dns(&r) == 0 && pr_check_tcp(&r) == 0) {
        c->o.connect_address = r.reach_addr;
        if (pr_check_open(&r) == 0) {
            sk_error e;
            sk_error_clear(&e);
            sk_err rc = sk_client_ehlo(c, &e);
            if (pr_check_ehlo(&r, c->o.tls == SK_TLS_IMPLICIT, rc, &e) == 0 &&
                (c->o.tls == SK_TLS_IMPLICIT || pr_check_starttls(&r) == 0) &&
                (!c->o.user || pr_check_auth(&r) == 0) && opts->from)
                (void)pr_check_envelope(&r);
        }
        sk_error qe;
        if (c->state != CL_CLOSED) (void)sk_client_quit(c, &qe);
        sk_client_close(c);
    }
    c->o.connect_address = saved_address;
    c->o.identify_after_ms = saved_identify;
    *out = p;
    if (p->failed < 0) {
        sk_error_clear(err);
        return SK_OK;
    }
    skip_rest(&r);
    const sk_probe_step *f = &p->steps[p->failed];
    if (err) *err = f->error;
    return f->error.err;
}

size_t sk_probe_count(const sk_probe *p)
{
    return p ? p->nsteps : 0;
}

const sk_probe_step *sk_probe_step_at(const sk_probe *p, size_t i)
{
    return p && i < p->nsteps ? &p->steps[i] : NULL;
}

const sk_probe_step *sk_probe_failure(const sk_probe *p)
{
    return p && p->failed >= 0 ? &p->steps[p->failed] : NULL;
}

sk_probe_verdict sk_probe_overall(const sk_probe *p)
{
    sk_probe_verdict worst = SK_PROBE_PASS;
    for (size_t i = 0; p && i < p->nsteps; i++)
        if (p->steps[i].verdict != SK_PROBE_SKIP && p->steps[i].verdict > worst)
            worst = p->steps[i].verdict;
    return worst;
}

void sk_probe_free(sk_probe *p)
{
    if (!p) return;
    for (size_t i = 0; i < p->nexts_used; i++) sk_free(p->exts[i]);
    sk_free(p->steps);
    sk_free(p);
}
