/* smtpkit check DOMAIN: MTA-STS (the _mta-sts record and the policy
 * fetched over HTTPS) and TLS-RPT. */
#include "check_int.h"

#include <smtpkit/mtasts.h>

#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* RFC 8461 3.2: max_age "in the range of weeks or greater"; under a day
 * is worth a warning. */
#define CHECK_MTASTS_MAX_AGE_MIN_S 86400
/* Lines of a fetched policy shown when it does not parse. */
#define CHECK_POLICY_LINES_SHOWN 20

/* ---- MTA-STS (RFC 8461) ---- */

static void fetch_fix(item *it, sk_mtasts_fetch_status s, const char *domain)
{
    switch (s) {
    case SK_MTASTS_FETCH_TLS:
        ck_fix(it,
               "the web server of mta-sts.%s needs a certificate for that name from a CA senders "
               "trust (RFC 8461 3.3)",
               domain);
        break;
    case SK_MTASTS_FETCH_HTTP:
        ck_fix(it,
               "serve the policy at https://mta-sts.%s/.well-known/mta-sts.txt with status 200 "
               "and no redirect",
               domain);
        break;
    case SK_MTASTS_FETCH_MEDIA_TYPE:
        ck_fix(it, "serve mta-sts.txt of mta-sts.%s as text/plain", domain);
        break;
    case SK_MTASTS_FETCH_TOO_BIG:
        ck_fix(it, "the policy of mta-sts.%s is a few lines: serve the policy file, nothing else",
               domain);
        break;
    default:
        ck_fix(it, "mta-sts.%s must answer HTTPS on port 443 with the policy", domain);
        break;
    }
}

void check_mtasts(domain_run *d)
{
    run *r = d->r;
    char name[SK_SMTP_DOMAIN_MAX_OCTETS + 16];
    snprintf(name, sizeof name, "_mta-sts.%s", d->domain);
    answer a;
    if (ck_txt_or_temporary(r, name, "mta-sts", "MTA-STS", &a)) return;
    item *it;
    size_t found = 0, which = 0, lookalike = 0;
    for (size_t i = 0; i < a.n; i++) {
        if (sk_mtasts_is_record(a.v[i], a.len[i])) {
            found++;
            which = i;
        } else if (!strncasecmp(a.v[i], "v=sts", 5)) {
            lookalike++;
        }
    }
    if (found == 0) {
        if (lookalike) {
            it = ck_add(r, "mta-sts", V_FAIL,
                        "the TXT record at %s does not begin with \"v=STSv1;\": "
                        "senders ignore it",
                        name);
            for (size_t i = 0; i < a.n; i++) ck_more(it, "%s", a.v[i]);
            ck_fix(it, "publish \"v=STSv1; id=20250101T000000\" (any id of letters and digits)");
        } else {
            it = ck_add(r, "mta-sts", V_INFO,
                        "no MTA-STS (no record at %s): senders use TLS to your MX hosts only when "
                        "offered, and cannot tell a forged MX",
                        name);
            ck_fix(it,
                   "to require TLS: serve a policy at https://mta-sts.%s/.well-known/mta-sts.txt "
                   "and publish TXT \"v=STSv1; id=1\" at %s (docs/authentication.md)",
                   d->domain, name);
        }
        ck_answer_free(&a);
        return;
    }
    if (found > 1) {
        it = ck_add(r, "mta-sts", V_FAIL,
                    "%zu MTA-STS records at %s: senders treat the domain as without a policy (RFC "
                    "8461 3.1)",
                    found, name);
        ck_fix(it, "keep exactly one TXT record starting with v=STSv1");
        ck_answer_free(&a);
        return;
    }
    sk_mtasts_record rec;
    char why[256] = "";
    if (sk_mtasts_record_parse(a.v[which], a.len[which], &rec, why, sizeof why)) {
        it = ck_add(r, "mta-sts", V_FAIL, "the record at %s does not parse: %s", name, why);
        ck_more(it, "%s", a.v[which]);
        ck_fix(it, "publish \"v=STSv1; id=ID\" with an id of 1 to 32 letters and digits (RFC 8461 "
                   "3.1)");
        ck_answer_free(&a);
        return;
    }
    it = ck_add(r, "mta-sts", V_OK, "record at %s: id=%s", name, rec.id);
    ck_jset(it, "record", ck_jstr(a.v[which]));
    ck_jset(it, "id", ck_jstr(rec.id));
    ck_answer_free(&a);

    /* The policy host, through our resolver; then the policy over HTTPS. */
    char host[SK_SMTP_DOMAIN_MAX_OCTETS + 16];
    snprintf(host, sizeof host, "mta-sts.%s", d->domain);
    addrs x;
    ck_lookup_addrs(r, host, &x);
    if (x.n == 0) {
        if (x.status == SK_DNS_TEMPFAIL)
            ck_add_temporary(r, "mta-sts", "the policy host", host, "A/AAAA");
        else {
            it = ck_add(r, "mta-sts", V_FAIL, "%s has no address: senders cannot fetch the policy",
                        host);
            ck_fix(it,
                   "publish an A (and AAAA) record for %s: the web server that serves the "
                   "policy",
                   host);
        }
        if (!d->connect_to) {
            ck_addrs_free(&x);
            return;
        }
    }
    sk_mtasts_fetch_opts fo = {.domain = d->domain,
                               .ca_file = d->ca_file,
                               .addresses = (const char *const *)x.ip,
                               .n_addresses = x.n,
                               .connect_to = d->connect_to,
                               .timeout_ms = d->timeout_ms};
    sk_mtasts_fetch_result fr;
    sk_error err;
    sk_error_clear(&err);
    sk_err e = sk_mtasts_fetch(&fo, &fr, &err);
    ck_addrs_free(&x);
    if (e == SK_ERR_CONFIG) {
        cli_warn(r->cmd, "%s", err.text);
        exit(EX_CONFIG);
    }
    if (e) {
        if (e == SK_ERR_NOMEM) ck_out_of_memory();
        ck_add(r, "mta-sts", V_FAIL, "the policy could not be fetched: %s", err.text);
        return;
    }
    if (fr.status != SK_MTASTS_FETCH_OK) {
        it = ck_add(r, "mta-sts", V_FAIL, "the policy could not be fetched: %s", fr.error);
        fetch_fix(it, fr.status, d->domain);
        ck_jset(it, "url", ck_jstr(fr.url));
        ck_jset(it, "fetch", ck_jstr(sk_mtasts_fetch_status_name(fr.status)));
        if (fr.http_status) ck_jset(it, "http_status", json_integer(fr.http_status));
        sk_mtasts_fetch_result_clear(&fr);
        return;
    }
    sk_mtasts_policy pol;
    sk_err pe = sk_mtasts_policy_parse(fr.body, fr.body_len, &pol, why, sizeof why);
    ck_must(pe);
    if (pe) {
        it = ck_add(r, "mta-sts", V_FAIL, "the policy at %s does not parse: %s", fr.url, why);
        const char *l = fr.body;
        for (int shown = 0; *l && shown < CHECK_POLICY_LINES_SHOWN; shown++) {
            size_t n = strcspn(l, "\n");
            char *line = ck_printable(l, n);
            ck_more(it, "%s", line);
            sk_free(line);
            l += n + (l[n] == '\n');
        }
        ck_fix(it, "the policy is lines of version: STSv1, mode: enforce|testing|none, mx: HOST "
                   "(one per MX host, *.domain allowed) and max_age: SECONDS (RFC 8461 3.2)");
        ck_jset(it, "url", ck_jstr(fr.url));
        sk_mtasts_fetch_result_clear(&fr);
        return;
    }
    switch (pol.mode) {
    case SK_MTASTS_MODE_ENFORCE:
        it = ck_add(r, "mta-sts", V_OK,
                    "policy mode enforce: senders deliver only over verified TLS "
                    "to the mx hosts listed");
        break;
    case SK_MTASTS_MODE_TESTING:
        it = ck_add(r, "mta-sts", V_WARN,
                    "policy mode testing: senders report TLS failures "
                    "(TLS-RPT) but deliver anyway");
        ck_fix(it, "when the TLS-RPT reports are clean, set mode: enforce and change the id= of %s",
               name);
        break;
    default:
        it = ck_add(r, "mta-sts", V_WARN,
                    "policy mode none: the policy is withdrawn and protects "
                    "nothing");
        ck_fix(it, "set mode: testing, then enforce (or remove %s if you mean to stop)", name);
        break;
    }
    ck_more(it, "fetched %s (%zu octets), max_age %u s", fr.url, fr.body_len, pol.max_age_s);
    for (size_t i = 0; i < pol.n_mx; i++) ck_more(it, "mx: %s", pol.mx[i]);
    ck_jset(it, "url", ck_jstr(fr.url));
    ck_jset(it, "mode", ck_jstr(sk_mtasts_mode_name(pol.mode)));
    ck_jset(it, "max_age", json_integer(pol.max_age_s));
    ck_jset(it, "mx", ck_json_strings(pol.mx, pol.n_mx));
    if (pol.max_age_s < CHECK_MTASTS_MAX_AGE_MIN_S) {
        item *m = ck_add(r, "mta-sts", V_WARN,
                         "max_age %u: senders keep the policy less than a day "
                         "(RFC 8461 3.2 expects weeks)",
                         pol.max_age_s);
        ck_fix(m, "set max_age: 604800 (a week) or more once the policy is right");
    }
    /* Every MX host must match a pattern (RFC 8461 4.1). */
    if (pol.mode != SK_MTASTS_MODE_NONE && d->mx_known && !d->null_mx) {
        size_t unmatched = 0;
        sk_buf list = SK_BUF_INIT(CHECK_TEXT_MAX_OCTETS);
        for (size_t i = 0; i < d->n_mx; i++)
            if (!sk_mtasts_policy_match(&pol, d->mx[i])) {
                unmatched++;
                ck_must(sk_buf_printf(&list, "%s%s", list.len ? ", " : "", d->mx[i]));
            }
        if (unmatched) {
            int enforce = pol.mode == SK_MTASTS_MODE_ENFORCE;
            it = ck_add(r, "mta-sts", enforce ? V_FAIL : V_WARN,
                        "MX host%s %s match%s no mx pattern of the policy: senders %s",
                        unmatched == 1 ? "" : "s", sk_buf_cstr(&list), unmatched == 1 ? "es" : "",
                        enforce          ? "that enforce MTA-STS will not deliver there"
                        : unmatched == 1 ? "will report failures for it"
                                         : "will report failures for them");
            ck_fix(it,
                   "add mx: lines for them (or a *.domain pattern) to the policy and change the "
                   "id= of %s; or fix the MX records if they are wrong",
                   name);
        } else {
            it = ck_add(r, "mta-sts", V_OK, "every MX host matches an mx pattern of the policy");
        }
        ck_jset(it, "mx_hosts", ck_json_strings(d->mx, d->n_mx));
        sk_buf_free(&list);
    }
    sk_mtasts_policy_clear(&pol);
    sk_mtasts_fetch_result_clear(&fr);
}

/* ---- TLS-RPT (RFC 8460) ---- */

void check_tlsrpt(domain_run *d, int have_mtasts)
{
    run *r = d->r;
    char name[SK_SMTP_DOMAIN_MAX_OCTETS + 16];
    snprintf(name, sizeof name, "_smtp._tls.%s", d->domain);
    answer a;
    if (ck_txt_or_temporary(r, name, "tls-rpt", "TLS-RPT", &a)) return;
    item *it;
    size_t found = 0, which = 0;
    for (size_t i = 0; i < a.n; i++)
        if (sk_tlsrpt_is_record(a.v[i], a.len[i])) {
            found++;
            which = i;
        }
    if (found == 0) {
        it = ck_add(r, "tls-rpt", have_mtasts ? V_WARN : V_INFO,
                    "no TLS-RPT record at %s: you do not hear when senders fail to reach you over "
                    "TLS",
                    name);
        ck_fix(it, "publish TXT \"v=TLSRPTv1; rua=mailto:tls-reports@%s\" at %s", d->domain, name);
    } else if (found > 1) {
        it = ck_add(r, "tls-rpt", V_FAIL,
                    "%zu TLS-RPT records at %s: senders send no reports (RFC "
                    "8460 3)",
                    found, name);
        ck_fix(it, "keep exactly one TXT record starting with v=TLSRPTv1");
    } else {
        sk_tlsrpt_record rec;
        char why[256] = "";
        sk_err e = sk_tlsrpt_record_parse(a.v[which], a.len[which], &rec, why, sizeof why);
        ck_must(e);
        if (e) {
            it = ck_add(r, "tls-rpt", V_FAIL, "the record at %s does not parse: %s", name, why);
            ck_more(it, "%s", a.v[which]);
            ck_fix(it, "publish \"v=TLSRPTv1; rua=mailto:ADDRESS\" (or rua=https://...)");
        } else {
            size_t usable = 0;
            sk_buf list = SK_BUF_INIT(CHECK_TEXT_MAX_OCTETS);
            json_t *rua = json_array();
            if (!rua) ck_out_of_memory();
            for (size_t i = 0; i < rec.n_rua; i++) {
                usable += rec.rua[i].scheme != SK_TLSRPT_OTHER;
                ck_must(sk_buf_printf(&list, "%s%s", i ? ", " : "", rec.rua[i].uri));
                json_array_append_new(rua, ck_jstr(rec.rua[i].uri));
            }
            if (usable == rec.n_rua)
                it = ck_add(r, "tls-rpt", V_OK, "TLS reports go to %s", sk_buf_cstr(&list));
            else {
                it = ck_add(r, "tls-rpt", usable ? V_WARN : V_FAIL,
                            "rua= %s: senders send reports only to mailto: and https: URIs",
                            sk_buf_cstr(&list));
                ck_fix(it, "use rua=mailto:ADDRESS or rua=https://URL");
            }
            ck_jset(it, "rua", rua);
            sk_buf_free(&list);
            sk_tlsrpt_record_clear(&rec);
        }
        ck_jset(it, "record", ck_jstr(a.v[which]));
    }
    ck_answer_free(&a);
}
