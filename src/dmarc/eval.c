/* DMARC evaluation (RFC 7489 6.6): policy discovery at the From domain and
 * then its organizational domain, identifier alignment, the policy that
 * applies (p, sp, or np for a domain that does not exist), and pct=
 * sampling. */
#include "dmarc/dmarc_int.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

const char *sk_dmarc_status_name(sk_dmarc_status s)
{
    static const char *const names[SK_DMARC__COUNT] = {"none", "pass", "fail", "temperror",
                                                       "permerror"};
    return (unsigned)s < SK_DMARC__COUNT ? names[s] : "none";
}

void sk_dmarc_result_clear(sk_dmarc_result *r)
{
    if (!r) return;
    sk_dmarc_record_clear(&r->record);
    memset(r, 0, sizeof *r);
}

static void finish(dm_state *s, sk_dmarc_status st, const char *fmt, ...) SK_PRINTF(3, 4);
static void finish(dm_state *s, sk_dmarc_status st, const char *fmt, ...)
{
    s->res.status = st;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->res.reason, sizeof s->res.reason, fmt, ap);
    va_end(ap);
    s->step = DM_DONE;
}

static void copy_auth(dm_auth *a, const sk_dmarc_auth_id *id)
{
    a->result = id->result;
    a->valid = id->domain && sk_dmarc_domain_normalize(id->domain, a->domain) == SK_OK;
}

sk_err dm_start(dm_state *s, const sk_dmarc_input *in, sk_rand_fn rnd, void *rnd_ctx)
{
    memset(s, 0, sizeof *s);
    s->rnd = rnd;
    s->rnd_ctx = rnd_ctx;
    s->res.policy_tag = "";
    copy_auth(&s->spf, &in->spf);
    s->n_dkim = in->n_dkim < SK_DMARC_DKIM_MAX ? in->n_dkim : SK_DMARC_DKIM_MAX;
    for (size_t i = 0; i < s->n_dkim; i++) copy_auth(&s->dkim[i], &in->dkim[i]);
    sk_err e;
    if (in->from_domain) {
        if (sk_dmarc_domain_normalize(in->from_domain, s->res.from_domain)) {
            finish(s, SK_DMARC_PERMERROR, "From domain is not a domain name");
            return SK_OK;
        }
    } else {
        const char *why = NULL;
        e = sk_dmarc_from_domain(in->headers ? in->headers : "", in->headers_len,
                                 s->res.from_domain, &why);
        if (e == SK_ERR_NOMEM) return e;
        if (e) {
            /* RFC 7489 6.6.1: such a message is malformed (RFC 5322 3.6
             * wants exactly one From); DMARC cannot name its author domain,
             * and "none" would let a forger skip DMARC by adding a second
             * From or leaving it out. */
            s->res.from_domain[0] = '\0';
            finish(s, SK_DMARC_PERMERROR, "%s", why ? why : "From field cannot be evaluated");
            return SK_OK;
        }
    }
    e = sk_dmarc_org_domain(s->res.from_domain, s->res.org_domain);
    if (e) {
        finish(s, SK_DMARC_TEMPERROR, "no Public Suffix List could be loaded");
        return SK_OK;
    }
    s->step = DM_FROM_TXT;
    return SK_OK;
}

const char *dm_next(dm_state *s, sk_dns_type *type)
{
    switch (s->step) {
    case DM_FROM_TXT:
    case DM_ORG_TXT:
        *type = SK_DNS_TXT;
        snprintf(s->qname, sizeof s->qname, "_dmarc.%s",
                 s->step == DM_FROM_TXT ? s->res.from_domain : s->res.org_domain);
        return s->qname;
    case DM_EXIST_A:
        *type = SK_DNS_A;
        break;
    case DM_EXIST_AAAA:
        *type = SK_DNS_AAAA;
        break;
    case DM_EXIST_MX:
        *type = SK_DNS_MX;
        break;
    case DM_DONE:
        return NULL;
    }
    snprintf(s->qname, sizeof s->qname, "%s", s->res.from_domain);
    return s->qname;
}

static sk_dmarc_policy lower(sk_dmarc_policy p)
{
    return p == SK_DMARC_POLICY_REJECT ? SK_DMARC_POLICY_QUARANTINE : SK_DMARC_POLICY_NONE;
}

static size_t os_random(void *ctx, size_t n)
{
    uint32_t x = 0;
    if (sk_random(&x, sizeof x) != SK_OK) return 0; /* sampled in: the stricter way */
    return x % n;
}

/* The policy is known: apply pct= (RFC 7489 6.6.4) to a failure. */
static void dispose(dm_state *s, sk_dmarc_policy policy, const char *tag)
{
    sk_dmarc_result *r = &s->res;
    r->policy = policy;
    r->policy_tag = tag;
    r->disposition = SK_DMARC_POLICY_NONE;
    if (r->status != SK_DMARC_FAIL) {
        s->step = DM_DONE;
        return;
    }
    unsigned pct = r->record.pct;
    int in = pct >= 100 ? 1
             : pct == 0 ? 0
                        : (s->rnd ? s->rnd(s->rnd_ctx, 100) : os_random(NULL, 100)) < pct;
    r->disposition = in ? policy : lower(policy);
    r->sampled_out = !in;
    size_t n = strlen(r->reason);
    snprintf(r->reason + n, sizeof r->reason - n, "; %s=%s%s", tag, sk_dmarc_policy_name(policy),
             in ? "" : ", not sampled by pct=");
    s->step = DM_DONE;
}

/* Alignment and the result, once the record is in s->res.record. */
static void evaluate(dm_state *s)
{
    sk_dmarc_result *r = &s->res;
    const sk_dmarc_record *rec = &r->record;
    const char *from = r->from_domain;
    int temp = 0;
    for (size_t i = 0; i < s->n_dkim; i++) {
        const dm_auth *d = &s->dkim[i];
        if (!d->valid || !sk_dmarc_aligned(from, d->domain, rec->adkim)) continue;
        if (d->result == SK_DMARC_AUTH_PASS && !r->dkim_aligned) {
            r->dkim_aligned = 1;
            memcpy(r->dkim_domain, d->domain, strlen(d->domain) + 1);
        }
        if (d->result == SK_DMARC_AUTH_TEMPERROR) temp = 1;
    }
    if (s->spf.valid && sk_dmarc_aligned(from, s->spf.domain, rec->aspf)) {
        if (s->spf.result == SK_DMARC_AUTH_PASS) r->spf_aligned = 1;
        if (s->spf.result == SK_DMARC_AUTH_TEMPERROR) temp = 1;
    }
    const char *mode_d = rec->adkim == SK_DMARC_ALIGN_STRICT ? "strict" : "relaxed";
    const char *mode_s = rec->aspf == SK_DMARC_ALIGN_STRICT ? "strict" : "relaxed";
    if (r->dkim_aligned && r->spf_aligned)
        snprintf(r->reason, sizeof r->reason, "DKIM d=%s and SPF %s aligned", r->dkim_domain,
                 s->spf.domain);
    else if (r->dkim_aligned)
        snprintf(r->reason, sizeof r->reason, "DKIM d=%s aligned (%s)", r->dkim_domain, mode_d);
    else if (r->spf_aligned)
        snprintf(r->reason, sizeof r->reason, "SPF %s aligned (%s)", s->spf.domain, mode_s);
    if (r->dkim_aligned || r->spf_aligned) {
        r->status = SK_DMARC_PASS;
        s->step = DM_DONE;
        int own = strcmp(r->record_domain, from) == 0;
        r->policy = own ? rec->p : rec->sp;
        r->policy_tag = own ? "p" : "sp";
        return;
    }
    if (temp) {
        /* An aligned identifier could not be checked for a DNS failure: it
         * may pass later, so this is not a failure yet. */
        finish(s, SK_DMARC_TEMPERROR, "an aligned SPF or DKIM check had a temporary DNS failure");
        return;
    }
    r->status = SK_DMARC_FAIL;
    snprintf(r->reason, sizeof r->reason, "no aligned pass (DKIM %s, SPF %s)", mode_d, mode_s);
    if (strcmp(r->record_domain, from) == 0) {
        dispose(s, rec->p, "p");
    } else if (rec->has_np && rec->np != rec->sp) {
        s->step = DM_EXIST_A; /* np= or sp=: does the From domain exist? */
    } else {
        dispose(s, rec->sp, "sp");
    }
}

/* The TXT answer at _dmarc.DOMAIN: a record, an end, or (last 0) on to
 * the organizational domain. */
static void txt_answer(dm_state *s, const sk_dns_result *a, const char *domain, int last)
{
    if (a->status == SK_DNS_TEMPFAIL) {
        finish(s, SK_DMARC_TEMPERROR, "DNS lookup of TXT _dmarc.%s failed", domain);
        return;
    }
    size_t found = 0, which = 0;
    if (a->status == SK_DNS_OK)
        for (size_t i = 0; i < a->count; i++)
            if (sk_dmarc_is_record(a->values[i], strlen(a->values[i]))) {
                found++;
                which = i;
            }
    if (found > 1) {
        /* RFC 7489 6.6.3 step 3: several records end policy discovery. */
        finish(s, SK_DMARC_NONE, "several DMARC records at _dmarc.%s", domain);
        return;
    }
    if (found == 0) {
        if (last)
            finish(s, SK_DMARC_NONE, "no DMARC record at _dmarc.%s%s%s", s->res.from_domain,
                   strcmp(s->res.from_domain, s->res.org_domain) ? " nor _dmarc." : "",
                   strcmp(s->res.from_domain, s->res.org_domain) ? s->res.org_domain : "");
        else
            s->step = DM_ORG_TXT;
        return;
    }
    const char *why = NULL;
    const char *txt = a->values[which];
    sk_err e = sk_dmarc_record_parse(txt, strlen(txt), &s->res.record, &why);
    snprintf(s->res.record_domain, sizeof s->res.record_domain, "%s", domain);
    if (e == SK_ERR_NOMEM) {
        finish(s, SK_DMARC_TEMPERROR, "out of memory");
        return;
    }
    if (e) {
        finish(s, SK_DMARC_PERMERROR, "unusable DMARC record at _dmarc.%s: %s", domain,
               why ? why : "syntax");
        return;
    }
    s->res.has_record = 1;
    evaluate(s);
}

void dm_feed(dm_state *s, const sk_dns_result *a)
{
    sk_dmarc_result *r = &s->res;
    switch (s->step) {
    case DM_FROM_TXT:
        txt_answer(s, a, r->from_domain, strcmp(r->from_domain, r->org_domain) == 0);
        return;
    case DM_ORG_TXT:
        txt_answer(s, a, r->org_domain, 1);
        return;
    case DM_EXIST_A:
    case DM_EXIST_AAAA:
    case DM_EXIST_MX:
        if (a->status == SK_DNS_TEMPFAIL) {
            /* Which of sp= and np= applies is unknown. */
            r->status = SK_DMARC_TEMPERROR;
            snprintf(r->reason, sizeof r->reason,
                     "DMARC failed, and whether %s exists (for np=) is unknown: DNS lookup failed",
                     r->from_domain);
            s->step = DM_DONE;
        } else if (a->status == SK_DNS_OK) {
            dispose(s, r->record.sp, "sp");
        } else if (a->status == SK_DNS_NXDOMAIN || s->step == DM_EXIST_MX) {
            /* RFC 9091 2.1: NXDOMAIN, or no A, AAAA nor MX records. */
            dispose(s, r->record.np, "np");
        } else {
            s->step++;
        }
        return;
    case DM_DONE:
        return;
    }
}

void dm_take(dm_state *s, sk_dmarc_result *out)
{
    *out = s->res;
    memset(&s->res, 0, sizeof s->res);
}
