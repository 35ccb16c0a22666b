/* smtpkit check --message: the checks a receiver makes on a saved message
 * (DKIM, SPF, DMARC) and the Authentication-Results field it would add. */
#include "check_int.h"

#include <smtpkit/authres.h>
#include <smtpkit/dkim.h>
#include <smtpkit/dmarc.h>
#include <smtpkit/spf.h>

#include <string.h>

static sk_err verifier_feed(void *obj, const void *p, size_t n)
{
    return sk_dkim_verifier_feed(obj, p, n);
}

static verdict dkim_verdict(sk_dkim_status s)
{
    return s == SK_DKIM_PASS ? V_OK : V_FAIL;
}

static const char *dkim_fix(sk_dkim_status s)
{
    switch (s) {
    case SK_DKIM_FAIL:
        return "the message was changed after it was signed (a relay, a list, a footer, "
               "re-encoding), or the key in DNS is not the one it was signed with";
    case SK_DKIM_NEUTRAL:
        return "the signer wrote a DKIM-Signature field verifiers cannot use: fix the signer";
    case SK_DKIM_POLICY:
        return "sign the whole body (no l=) with a correct clock";
    case SK_DKIM_PERMERROR:
        return "publish the selector's key (TXT at SELECTOR._domainkey.DOMAIN) as the signer's "
               "keygen printed it";
    default:
        return NULL;
    }
}

static sk_dmarc_auth dmarc_auth_of_spf(sk_spf_result s)
{
    switch (s) {
    case SK_SPF_PASS:
        return SK_DMARC_AUTH_PASS;
    case SK_SPF_TEMPERROR:
        return SK_DMARC_AUTH_TEMPERROR;
    case SK_SPF_NONE:
        return SK_DMARC_AUTH_NONE;
    default:
        return SK_DMARC_AUTH_FAIL;
    }
}

/* The Authentication-Results entries made so far, with their property
 * arrays (each entry owns one). */
typedef struct ar_list {
    sk_authres_result res[SK_DKIM_VERIFY_SIGNATURES_MAX + 4];
    sk_authres_prop props[SK_DKIM_VERIFY_SIGNATURES_MAX + 4][4];
    size_t n;
} ar_list;

static sk_authres_result *ar_add(ar_list *l, const char *method, const char *result)
{
    sk_authres_result *a = &l->res[l->n];
    memset(a, 0, sizeof *a);
    a->method = method;
    a->result = result;
    a->props = l->props[l->n];
    l->n++;
    return a;
}

static void ar_prop(sk_authres_result *a, const char *ptype, const char *prop, const char *value)
{
    if (!value || !value[0]) return;
    sk_authres_prop *p = (sk_authres_prop *)&a->props[a->n_props++];
    p->ptype = ptype;
    p->property = prop;
    p->value = value;
}

static void spf_message_item(run *r, const char *check, const sk_spf_outcome *o, int helo)
{
    item *it;
    const char *who = o->domain ? o->domain : "";
    switch (o->result) {
    case SK_SPF_PASS:
        it = ck_add(r, check, V_OK, "pass: the client may send as %s (%s)", who, o->reason);
        break;
    case SK_SPF_TEMPERROR:
        it = ck_add(r, check, V_FAIL, "temperror: %s", o->reason);
        it->temporary = 1;
        break;
    case SK_SPF_NONE:
    case SK_SPF_NEUTRAL:
        it = ck_add(r, check, V_WARN, "%s: %s", sk_spf_result_name(o->result), o->reason);
        break;
    case SK_SPF_SOFTFAIL:
        it = ck_add(r, check, helo ? V_WARN : V_FAIL, "%s: %s", sk_spf_result_name(o->result),
                    o->reason);
        break;
    default:
        it = ck_add(r, check, V_FAIL, "%s: %s", sk_spf_result_name(o->result), o->reason);
        break;
    }
    if (o->result != SK_SPF_PASS && o->result != SK_SPF_TEMPERROR) {
        if (o->result == SK_SPF_NONE)
            ck_fix(it, "publish an SPF record at %s (\"v=spf1 ip4:ADDRESS -all\")", who);
        else if (o->result == SK_SPF_PERMERROR)
            ck_fix(it, "the SPF record of %s is broken: `smtpkit check %s` says how", who, who);
        else
            ck_fix(it, "add the client's address to the SPF record of %s", who);
    }
    if (o->explanation) ck_more(it, "explanation: %s", o->explanation);
    ck_jset(it, "result", ck_jstr(sk_spf_result_name(o->result)));
    ck_jset(it, "domain", ck_jstr(o->domain));
    ck_jset(it, "reason", ck_jstr(o->reason));
    ck_jset(it, "property", ck_jstr(o->property));
    ck_jset(it, "property_value", ck_jstr(o->property_value));
    ck_jset(it, "lookups", json_integer(o->lookups));
    ck_jset(it, "void_lookups", json_integer(o->void_lookups));
    ck_jset(it, "trace", ck_json_strings(o->trace, o->ntrace));
}

int ck_run_message(message_run *m, sk_buf *header)
{
    run *r = m->r;
    ar_list *ar = ck_xcalloc(1, sizeof *ar);
    sk_error err;
    sk_error_clear(&err);

    /* DKIM: every signature (up to the verifier's limit). */
    sk_dkim_verifier *v = sk_dkim_verifier_new(NULL, &err);
    if (!v) ck_out_of_memory();
    sk_err e = cli_message_feed(&m->msg, verifier_feed, v);
    if (!e) e = sk_dkim_verifier_finish(v, &err);
    /* The header block for DMARC and Authentication-Results: within the
     * verifier's bound once it took the message. */
    if (!e) e = cli_message_head(&m->msg, &m->head);
    if (e == SK_ERR_NOMEM) ck_out_of_memory();
    if (e) {
        ck_add(r, "dkim", V_FAIL,
               "the header block is over %u octets: the message cannot be checked",
               (unsigned)SK_DKIM_HEADER_BLOCK_MAX_OCTETS);
        sk_dkim_verifier_free(v);
        sk_free(ar);
        return -1;
    }
    e = sk_dkim_verifier_resolve_sync(v, &r->ro, &err);
    if (e == SK_ERR_CONFIG) ck_dns_config_error(r, &err);
    if (e == SK_ERR_NOMEM) ck_out_of_memory();
    size_t nsig = sk_dkim_verifier_count(v);
    sk_dmarc_auth_id dkim_ids[SK_DKIM_VERIFY_SIGNATURES_MAX];
    if (nsig == 0) {
        item *it = ck_add(r, "dkim", V_WARN, "none: the message has no DKIM-Signature");
        ck_fix(it, "sign outgoing mail (smtpkit dkim keygen, then serve --dkim): large mailbox "
                   "providers want DKIM, and DMARC can then pass only through SPF");
        ar_add(ar, "dkim", "none");
    }
    for (size_t i = 0; i < nsig; i++) {
        const sk_dkim_result *d = sk_dkim_verifier_result(v, i);
        item *it = ck_add(r, "dkim", dkim_verdict(d->status), "%s: d=%s s=%s%s%s: %s",
                          sk_dkim_status_name(d->status), d->domain[0] ? d->domain : "?",
                          d->selector[0] ? d->selector : "?", d->algorithm[0] ? " a=" : "",
                          d->algorithm, d->reason);
        if (d->status == SK_DKIM_TEMPERROR) it->temporary = 1;
        const char *f = dkim_fix(d->status);
        if (f) ck_fix(it, "%s", f);
        ck_jset(it, "result", ck_jstr(sk_dkim_status_name(d->status)));
        ck_jset(it, "reason", ck_jstr(d->reason));
        ck_jset(it, "domain", ck_jstr(d->domain));
        ck_jset(it, "identity", ck_jstr(d->identity));
        ck_jset(it, "selector", ck_jstr(d->selector));
        ck_jset(it, "algorithm", ck_jstr(d->algorithm));
        ck_jset(it, "b", ck_jstr(d->b));
        ck_jset(it, "key_bits", json_integer(d->key_bits));
        ck_jset(it, "testing", json_boolean(d->testing));
        dkim_ids[i].result = d->status == SK_DKIM_PASS        ? SK_DMARC_AUTH_PASS
                             : d->status == SK_DKIM_TEMPERROR ? SK_DMARC_AUTH_TEMPERROR
                                                              : SK_DMARC_AUTH_FAIL;
        dkim_ids[i].domain = d->domain;
        sk_authres_result *a = ar_add(ar, "dkim", sk_dkim_status_name(d->status));
        if (d->status != SK_DKIM_PASS) a->reason = d->reason;
        ar_prop(a, "header", "d", d->domain);
        ar_prop(a, "header", "i", d->identity);
        ar_prop(a, "header", "s", d->selector);
        ar_prop(a, "header", "b", d->b);
    }
    if (sk_dkim_verifier_skipped(v))
        ck_add(r, "dkim", V_INFO,
               "%zu more DKIM-Signature fields were not checked (at most %d are)",
               sk_dkim_verifier_skipped(v), SK_DKIM_VERIFY_SIGNATURES_MAX);

    /* SPF: the MAIL FROM identity (postmaster@HELO for the null sender),
     * then HELO (RFC 7208 2.3, 2.4). */
    sk_spf_outcome *mf = NULL, *he = NULL;
    sk_spf_request req = {
        .identity = SK_SPF_MAILFROM, .ip = m->ip, .mail_from = m->mail_from, .helo = m->helo};
    sk_spf_opts so = {.receiver = m->authserv_id};
    e = sk_spf_check_sync(&r->ro, &req, &so, &mf, &err);
    if (e == SK_ERR_CONFIG) ck_dns_config_error(r, &err);
    if (e == SK_ERR_NOMEM) ck_out_of_memory();
    req.identity = SK_SPF_HELO;
    sk_err he_e = sk_spf_check_sync(&r->ro, &req, &so, &he, &err);
    if (he_e == SK_ERR_NOMEM) ck_out_of_memory();
    if (mf) {
        spf_message_item(r, "spf", mf, 0);
        sk_authres_result *a = ar_add(ar, "spf", sk_spf_result_name(mf->result));
        ar_prop(a, "smtp", "mailfrom", mf->property_value);
    } else {
        ck_add(r, "spf", V_FAIL, "SPF could not be evaluated: %s", err.text);
    }
    if (!he) {
        ck_add(r, "spf-helo", V_FAIL, "SPF could not be evaluated for the HELO name: %s", err.text);
    } else {
        spf_message_item(r, "spf-helo", he, 1);
        sk_authres_result *a = ar_add(ar, "spf", sk_spf_result_name(he->result));
        ar_prop(a, "smtp", "helo", he->property_value);
    }

    /* DMARC, from the From field, SPF's MAIL FROM result and the DKIM d=. */
    sk_dmarc_input in = {.headers = m->head.data, .headers_len = m->head.len};
    const char *at = m->mail_from[0] ? strrchr(m->mail_from, '@') : NULL;
    in.spf.domain = m->mail_from[0] ? (at ? at + 1 : m->mail_from) : m->helo;
    in.spf.result = mf ? dmarc_auth_of_spf(mf->result) : SK_DMARC_AUTH_TEMPERROR;
    in.dkim = dkim_ids;
    in.n_dkim = nsig;
    sk_dmarc_result dr;
    e = sk_dmarc_check_sync(&r->ro, NULL, &in, &dr, &err);
    if (e == SK_ERR_CONFIG) ck_dns_config_error(r, &err);
    char dmarc_comment[64] = "";
    if (e) {
        if (e == SK_ERR_NOMEM) ck_out_of_memory();
        ck_add(r, "dmarc", V_FAIL, "DMARC could not be evaluated: %s", err.text);
    } else {
        item *it;
        const char *from = dr.from_domain[0] ? dr.from_domain : "?";
        switch (dr.status) {
        case SK_DMARC_PASS:
            it = ck_add(r, "dmarc", V_OK, "pass: From %s; %s", from, dr.reason);
            break;
        case SK_DMARC_FAIL:
            it = ck_add(r, "dmarc", V_FAIL, "fail: From %s; %s: the receiver is asked to %s", from,
                        dr.reason,
                        dr.disposition == SK_DMARC_POLICY_REJECT       ? "refuse it"
                        : dr.disposition == SK_DMARC_POLICY_QUARANTINE ? "treat it as spam"
                                                                       : "deliver it");
            for (size_t i = 0; i < nsig; i++)
                ck_more(
                    it, "dkim d=%s: %s%s", dkim_ids[i].domain[0] ? dkim_ids[i].domain : "?",
                    dkim_ids[i].result == SK_DMARC_AUTH_PASS ? "pass" : "did not pass",
                    dkim_ids[i].result == SK_DMARC_AUTH_PASS &&
                            !sk_dmarc_aligned(dr.from_domain, dkim_ids[i].domain, dr.record.adkim)
                        ? ", not aligned with From"
                        : "");
            ck_more(it, "spf %s: %s%s", in.spf.domain, mf ? sk_spf_result_name(mf->result) : "?",
                    mf && mf->result == SK_SPF_PASS &&
                            !sk_dmarc_aligned(dr.from_domain, in.spf.domain, dr.record.aspf)
                        ? ", not aligned with From"
                        : "");
            ck_fix(it,
                   "for DMARC to pass, sign with d=%s (or a subdomain) and have DKIM pass, or send "
                   "with a MAIL FROM in %s that SPF authorises",
                   from, from);
            break;
        case SK_DMARC_NONE:
            it = ck_add(r, "dmarc", V_WARN, "none: %s", dr.reason);
            ck_fix(it,
                   "the From domain %s publishes no usable DMARC policy: `smtpkit check %s` says "
                   "how",
                   from, from);
            break;
        case SK_DMARC_TEMPERROR:
            it = ck_add(r, "dmarc", V_FAIL, "temperror: %s", dr.reason);
            it->temporary = 1;
            break;
        default:
            it = ck_add(r, "dmarc", V_FAIL, "permerror: %s", dr.reason);
            break;
        }
        ck_jset(it, "result", ck_jstr(sk_dmarc_status_name(dr.status)));
        ck_jset(it, "from_domain", ck_jstr(dr.from_domain));
        ck_jset(it, "policy", ck_jstr(sk_dmarc_policy_name(dr.policy)));
        ck_jset(it, "disposition", ck_jstr(sk_dmarc_policy_name(dr.disposition)));
        ck_jset(it, "spf_aligned", json_boolean(dr.spf_aligned));
        ck_jset(it, "dkim_aligned", json_boolean(dr.dkim_aligned));
        ck_jset(it, "reason", ck_jstr(dr.reason));
        sk_authres_result *a = ar_add(ar, "dmarc", sk_dmarc_status_name(dr.status));
        if (dr.has_record) {
            snprintf(dmarc_comment, sizeof dmarc_comment, "p=%s dis=%s",
                     sk_dmarc_policy_name(dr.policy), sk_dmarc_policy_name(dr.disposition));
            a->comment = dmarc_comment;
        }
        ar_prop(a, "header", "from", dr.from_domain);
    }

    /* ARC (RFC 8617) goes here once its verifier exists: one more item
     * ("arc") and one more Authentication-Results entry, made from the
     * chain's result like the three above. */

    /* What a receiver named authserv_id would prepend, and the fields
     * claiming that name it would remove first (RFC 8601 5). */
    e = sk_authres_build(m->authserv_id, ar->res, ar->n, header, &err);
    if (e) {
        if (e == SK_ERR_NOMEM) ck_out_of_memory();
        ck_add(r, "authres", V_FAIL, "the Authentication-Results field cannot be written: %s",
               err.text);
    }
    size_t nours = 0;
    sk_authres_span *spans = NULL;
    if (sk_authres_find_ours(m->head.data, m->head.len, m->authserv_id, &spans, &nours) == SK_OK &&
        nours) {
        item *it =
            ck_add(r, "authres", V_INFO,
                   "the message already has %zu Authentication-Results field%s claiming to be "
                   "from %s: a receiver of that name removes them before adding its own",
                   nours, nours == 1 ? "" : "s", m->authserv_id);
        ck_jset(it, "fields", json_integer((json_int_t)nours));
    }
    sk_free(spans);
    if (!e) sk_dmarc_result_clear(&dr);
    sk_spf_outcome_free(mf);
    sk_spf_outcome_free(he);
    sk_dkim_verifier_free(v);
    sk_free(ar);
    return 0;
}
