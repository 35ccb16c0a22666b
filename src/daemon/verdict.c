/* What the checks of a message from outside lead to: the one decision
 * (accept, quarantine, 550, 451) under --dmarc-policy and
 * --spf-reject-fail, and how the results are recorded: our
 * Authentication-Results field (RFC 8601) and a one-line summary. Pure. */
#include "daemon_int.h"

#include <smtpkit/authres.h>

#include <stdio.h>
#include <string.h>

const char *sk_auth_action_name(sk_auth_action a)
{
    static const char *const names[] = {"accept", "quarantine", "refuse", "defer"};
    return (unsigned)a < sizeof names / sizeof names[0] ? names[a] : "unknown";
}

sk_auth_verdict sk_auth_decide(const sk_auth_policy *p, const sk_auth_results *r)
{
    sk_auth_verdict v = {.action = SK_AUTH_ACCEPT, .reply = SK_REPLY_OK};
    const sk_dmarc_result *dm = r->dmarc;
    const sk_spf_outcome *spf = r->spf_mailfrom;
    bool dmarc_pass = dm && dm->status == SK_DMARC_PASS;
    if (p->enforce && dm && dm->status == SK_DMARC_FAIL &&
        dm->disposition == SK_DMARC_POLICY_REJECT) {
        v.action = SK_AUTH_REFUSE;
        v.reply = sk_reply_make(550, "5.7.1",
                                "Message refused by the DMARC policy of %s (%s=reject): no SPF or "
                                "DKIM pass aligned with the From domain",
                                dm->from_domain, dm->policy_tag);
        return v;
    }
    /* A DNS failure is never a reason to refuse for good (RFC 7489 6.6.3:
     * the check may pass later). */
    if (p->enforce && dm && dm->status == SK_DMARC_TEMPERROR) {
        v.action = SK_AUTH_DEFER;
        v.reply = sk_reply_make(451, "4.7.0",
                                "DMARC check of %s not completed (DNS failure); try again later",
                                dm->from_domain[0] ? dm->from_domain : "the From domain");
        return v;
    }
    /* RFC 7489 10.1: refusing on SPF alone loses forwarded mail that
     * DKIM authenticates; a DMARC pass (an aligned signature) lets it in. */
    if (p->spf_reject_fail && spf && !dmarc_pass) {
        const char *dom = spf->domain ? spf->domain : "";
        if (spf->result == SK_SPF_FAIL) {
            v.action = SK_AUTH_REFUSE;
            v.reply = sk_reply_make(550, "5.7.23", "SPF: %s is not allowed to send mail for %s",
                                    r->peer ? r->peer : "this host", dom);
            return v;
        }
        if (spf->result == SK_SPF_TEMPERROR) {
            v.action = SK_AUTH_DEFER;
            v.reply = sk_reply_make(
                451, "4.7.24", "SPF check of %s not completed (DNS failure); try again later", dom);
            return v;
        }
    }
    if (p->enforce && dm && dm->status == SK_DMARC_FAIL &&
        dm->disposition == SK_DMARC_POLICY_QUARANTINE)
        v.action = SK_AUTH_QUARANTINE;
    return v;
}

/* ---- recording ---------------------------------------------------------- */

/* The most results one field carries: the signatures verified, two SPF
 * identities, DMARC and ARC. */
#define RESULTS_MAX (SK_DKIM_VERIFY_SIGNATURES_MAX + 4)
#define PROPS_MAX   (RESULTS_MAX * 5)
#define TEXT_OCTETS 1024
/* Reasons, comments and the ARC values: DMARC has two, ARC three. */
#define TEXTS_MAX (RESULTS_MAX + 4)

/* Reasons come from the checks, some with names the sender chose: no
 * control characters reach the header (sk_authres_build refuses them). */
static const char *clean(char *dst, const char *src)
{
    if (!src || !*src) return NULL;
    size_t i = 0;
    for (; src[i] && i < TEXT_OCTETS - 1; i++) {
        unsigned char c = (unsigned char)src[i];
        dst[i] = c < 0x20 || c == 0x7f ? '?' : (char)c;
    }
    dst[i] = '\0';
    return dst;
}

typedef struct ar_set {
    sk_authres_result r[RESULTS_MAX];
    sk_authres_prop p[PROPS_MAX];
    size_t nr, np;
    char text[TEXTS_MAX][TEXT_OCTETS]; /* reasons and comments */
    size_t nt;
} ar_set;

static sk_authres_result *add(ar_set *a, const char *method, const char *result)
{
    sk_authres_result *r = &a->r[a->nr++];
    *r = (sk_authres_result){.method = method, .result = result, .props = &a->p[a->np]};
    return r;
}

static void prop(ar_set *a, sk_authres_result *r, const char *ptype, const char *property,
                 const char *value)
{
    if (!value || !*value) return;
    a->p[a->np++] = (sk_authres_prop){ptype, property, value};
    r->n_props++;
}

static const char *text(ar_set *a, const char *s)
{
    return a->nt < TEXTS_MAX ? clean(a->text[a->nt++], s) : NULL;
}

static void add_spf(ar_set *a, const sk_spf_outcome *o)
{
    if (!o) return;
    sk_authres_result *r = add(a, "spf", sk_spf_result_name(o->result));
    if (o->result != SK_SPF_PASS) r->reason = text(a, o->reason);
    /* smtp.mailfrom (postmaster@HELO for the null sender) or smtp.helo. */
    if (o->property) {
        const char *dot = strchr(o->property, '.');
        prop(a, r, "smtp", dot ? dot + 1 : o->property, o->property_value);
    }
}

static void collect(const sk_auth_results *res, const sk_auth_verdict *v, ar_set *a)
{
    memset(a, 0, sizeof *a);
    if (res->dkim_error) {
        sk_authres_result *r = add(a, "dkim", "permerror");
        r->reason = text(a, res->dkim_error);
    } else if (res->n_dkim == 0) {
        add(a, "dkim", "none");
    }
    for (size_t i = 0; i < res->n_dkim && i < SK_DKIM_VERIFY_SIGNATURES_MAX; i++) {
        const sk_dkim_result *d = &res->dkim[i];
        sk_authres_result *r = add(a, "dkim", sk_dkim_status_name(d->status));
        if (d->status != SK_DKIM_PASS) r->reason = text(a, d->reason);
        if (d->testing) r->comment = "key in testing mode";
        prop(a, r, "header", "d", d->domain);
        prop(a, r, "header", "i", d->identity);
        prop(a, r, "header", "s", d->selector);
        prop(a, r, "header", "a", d->algorithm);
        prop(a, r, "header", "b", d->b);
    }
    add_spf(a, res->spf_mailfrom);
    add_spf(a, res->spf_helo);
    const sk_dmarc_result *dm = res->dmarc;
    if (dm) {
        sk_authres_result *r = add(a, "dmarc", sk_dmarc_status_name(dm->status));
        if (dm->has_record) {
            /* What the domain asks for, and what was done here. */
            char c[96];
            snprintf(c, sizeof c, "%s=%s dis=%s", dm->policy_tag[0] ? dm->policy_tag : "p",
                     sk_dmarc_policy_name(dm->policy),
                     v->action == SK_AUTH_QUARANTINE ? "quarantine" : "none");
            r->comment = text(a, c);
        }
        if (dm->status != SK_DMARC_PASS && dm->status != SK_DMARC_NONE)
            r->reason = text(a, dm->reason);
        prop(a, r, "header", "from", dm->from_domain);
    }
    /* ARC (RFC 8617 10.1): arc= with header.oldest-pass and
     * smtp.remote-ip. A chain that could not be read at all (its header
     * block over the limit) is a fail: RFC 8617 has no permerror. */
    if (res->arc_error) {
        sk_authres_result *r = add(a, "arc", "fail");
        r->reason = text(a, res->arc_error);
        prop(a, r, "smtp", "remote-ip", res->peer);
    } else if (res->arc) {
        sk_arc_authres ar;
        sk_arc_authres_result(res->arc, res->peer, &ar);
        sk_authres_result *r = add(a, "arc", ar.result.result);
        if (ar.result.reason) r->reason = text(a, ar.result.reason);
        for (size_t i = 0; i < ar.result.n_props; i++) {
            /* ar's strings end with it: the values are kept in a's text. */
            const sk_authres_prop *p = &ar.result.props[i];
            prop(a, r, p->ptype, p->property, text(a, p->value));
        }
    }
}

/* One result on one line, without header.b (a log is read by people). */
static sk_err summary_one(const sk_authres_result *r, sk_buf *out)
{
    sk_err e = sk_buf_printf(out, "%s=%s", r->method, r->result);
    for (size_t i = 0; !e && i < r->n_props; i++) {
        const sk_authres_prop *p = &r->props[i];
        if (!strcmp(p->ptype, "header") && !strcmp(p->property, "b")) continue;
        e = sk_buf_printf(out, " %s.%s=%s", p->ptype, p->property, p->value);
    }
    return e;
}

/* Room kept at the end of the summary to say what did not fit. */
#define SUMMARY_TAIL_OCTETS 32

static sk_err summary_all(const ar_set *a, sk_buf *out)
{
    for (size_t i = 0; i < a->nr; i++) {
        size_t mark = out->len;
        sk_err e = i ? sk_buf_puts(out, "; ") : SK_OK;
        if (!e) e = summary_one(&a->r[i], out);
        if (e == SK_ERR_TOO_LONG || (!e && out->len + SUMMARY_TAIL_OCTETS > out->max)) {
            /* Said, not cut silently: how many results did not fit. */
            out->len = mark;
            return sk_buf_printf(out, "%s(%zu more)", i ? "; " : "", a->nr - i);
        }
        if (e) return e;
    }
    return SK_OK;
}

sk_err sk_auth_resinfo(const sk_auth_results *res, const sk_auth_verdict *v, sk_buf *out)
{
    ar_set *a = sk_malloc(sizeof *a);
    if (!a) return SK_ERR_NOMEM;
    collect(res, v, a);
    sk_err e = summary_all(a, out);
    sk_free(a);
    return e;
}

sk_err sk_auth_record(const char *authserv_id, const sk_auth_results *res, const sk_auth_verdict *v,
                      sk_buf *fields, sk_buf *summary, sk_error *err)
{
    ar_set *a = sk_malloc(sizeof *a);
    if (!a) return sk_error_set(err, SK_ERR_NOMEM, SK_STEP_NONE, "out of memory");
    collect(res, v, a);
    size_t mark = fields->len;
    sk_err e = sk_authres_build(authserv_id, a->r, a->nr, fields, err);
    if (e && e != SK_ERR_NOMEM) {
        /* A value that cannot be written (a word too long for a line):
         * the results without their reasons and comments. */
        fields->len = mark;
        for (size_t i = 0; i < a->nr; i++) a->r[i].reason = a->r[i].comment = NULL;
        e = sk_authres_build(authserv_id, a->r, a->nr, fields, err);
    }
    if (!e && v->action == SK_AUTH_QUARANTINE) e = sk_buf_puts(fields, SK_DAEMON_QUARANTINE_FIELD);
    if (!e && summary) e = summary_all(a, summary);
    sk_free(a);
    if (e && e != SK_ERR_TOO_LONG && e != SK_ERR_NOMEM) return e;
    if (e) return sk_error_set(err, e, SK_STEP_NONE, "Authentication-Results: %s", sk_strerror(e));
    return SK_OK;
}
