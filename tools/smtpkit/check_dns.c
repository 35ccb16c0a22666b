/* smtpkit check DOMAIN: the checks of its DNS records, MX, SPF, DKIM keys
 * and DMARC, each as items of the checklist with the fix in plain words. */
#include "check_int.h"

#include <smtpkit/dkim.h>
#include <smtpkit/dmarc.h>
#include <smtpkit/spf.h>

#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* SPF is evaluated for an address of RFC 5737's documentation range that
 * no real record authorises, so that every term before the final "all" is
 * walked: the DNS lookups counted are those any stranger costs, and the
 * result is what the record says about everyone it does not list. */
#define CHECK_SPF_STRANGER_IP "203.0.113.255"
/* 9 or 10 of the 10 DNS lookups: one more include breaks the record. */
#define CHECK_SPF_LOOKUPS_WARN 9
/* RSA keys: under SK_DKIM_RSA_BITS_MIN verifiers refuse them (RFC 8301
 * 3.2); from there up to this they are accepted but weak. */
#define CHECK_DKIM_RSA_BITS_GOOD 2048

/* ---- MX (RFC 5321 5.1, RFC 7505) ---- */

typedef struct mx_rec {
    unsigned pref;
    char *host;
} mx_rec;

static int mx_cmp(const void *a, const void *b)
{
    const mx_rec *x = a, *y = b;
    if (x->pref != y->pref) return x->pref < y->pref ? -1 : 1;
    return strcmp(x->host, y->host);
}

void check_mx(domain_run *d)
{
    run *r = d->r;
    answer a;
    ck_dns(r, d->domain, SK_DNS_MX, &a);
    if (a.status == SK_DNS_TEMPFAIL) {
        ck_add_temporary(r, "mx", "MX records", d->domain, "MX");
        ck_answer_free(&a);
        return;
    }
    if (a.status == SK_DNS_NXDOMAIN) {
        item *it = ck_add(r, "mx", V_FAIL, "%s does not exist in DNS (NXDOMAIN)", d->domain);
        ck_fix(it, "check the spelling; a domain that sends or receives mail must exist in DNS");
        ck_answer_free(&a);
        return;
    }
    if (a.n == 0) {
        /* RFC 5321 5.1: without MX records the domain itself is the host. */
        addrs x;
        ck_lookup_addrs(r, d->domain, &x);
        item *it;
        if (x.status == SK_DNS_TEMPFAIL) {
            ck_add_temporary(r, "mx", "the implicit MX", d->domain, "A/AAAA");
        } else if (x.n) {
            it = ck_add(r, "mx", V_WARN,
                        "%s has no MX record: mail goes to its own address (implicit MX, RFC 5321 "
                        "5.1)",
                        d->domain);
            ck_more(it, "%s", d->domain);
            for (size_t i = 0; i < x.n; i++) ck_more(it, "  %s", x.ip[i]);
            ck_fix(it,
                   "publish an MX record naming your mail server (%s. MX 10 mail.%s.); a domain "
                   "that receives no mail publishes a null MX (%s. MX 0 .)",
                   d->domain, d->domain, d->domain);
            ck_jset(it, "implicit_mx", json_true());
            ck_jset(it, "addresses", ck_json_strings(x.ip, x.n));
            d->mx = ck_xcalloc(1, sizeof *d->mx);
            d->mx[0] = ck_xstrdup(d->domain);
            d->n_mx = 1;
            d->mx_known = 1;
        } else {
            it = ck_add(r, "mx", V_FAIL,
                        "%s has no MX record and no address: mail to it cannot be delivered",
                        d->domain);
            ck_fix(it,
                   "publish MX records for your mail servers (%s. MX 10 mail.%s.), or a null MX "
                   "(%s. MX 0 .) if %s receives no mail",
                   d->domain, d->domain, d->domain, d->domain);
        }
        ck_addrs_free(&x);
        ck_answer_free(&a);
        return;
    }
    mx_rec *recs = ck_xcalloc(a.n, sizeof *recs);
    sk_mx_record *plain = ck_xcalloc(a.n, sizeof *plain);
    size_t n = 0;
    for (size_t i = 0; i < a.n; i++) {
        char *sp = strchr(a.v[i], ' ');
        if (!sp) continue;
        recs[n].pref = (unsigned)strtoul(a.v[i], NULL, 10);
        recs[n].host = ck_xstrdup(sp + 1);
        for (char *p = recs[n].host; *p; p++)
            if (*p >= 'A' && *p <= 'Z') *p = (char)(*p - 'A' + 'a');
        plain[n].preference = recs[n].pref;
        plain[n].host = recs[n].host;
        n++;
    }
    qsort(recs, n, sizeof *recs, mx_cmp);
    if (sk_mx_is_null(plain, n)) {
        item *it = ck_add(r, "mx", V_OK, "%s receives no mail: it publishes a null MX (RFC 7505)",
                          d->domain);
        ck_jset(it, "null_mx", json_true());
        d->null_mx = 1;
        d->mx_known = 1;
        goto out;
    }
    json_t *hosts = json_array();
    if (!hosts) ck_out_of_memory();
    size_t bad = 0, null_among = 0, checked = 0;
    sk_buf lines = SK_BUF_INIT(CHECK_TEXT_MAX_OCTETS);
    d->mx = ck_xcalloc(n, sizeof *d->mx);
    int temp = 0;
    for (size_t i = 0; i < n; i++) {
        const char *h = recs[i].host;
        if (!strcmp(h, ".") || !h[0]) {
            null_among++;
            continue;
        }
        d->mx[d->n_mx++] = ck_xstrdup(h);
        if (checked == SK_DNS_MX_HOSTS_MAX) continue;
        checked++;
        json_t *jh = json_object();
        if (!jh || json_array_append_new(hosts, jh)) ck_out_of_memory();
        json_object_set_new(jh, "name", ck_jstr(h));
        json_object_set_new(jh, "preference", json_integer(recs[i].pref));
        unsigned char tmp[16];
        if (inet_pton(AF_INET, h, tmp) == 1 || inet_pton(AF_INET6, h, tmp) == 1) {
            bad++;
            ck_must(sk_buf_printf(&lines,
                                  "%u %s: an address, not a host name (RFC 5321 5.1 wants a "
                                  "name)\n",
                                  recs[i].pref, h));
            json_object_set_new(jh, "problem", ck_jstr("an address, not a host name"));
            continue;
        }
        addrs x;
        ck_lookup_addrs(r, h, &x);
        json_object_set_new(jh, "addresses", ck_json_strings(x.ip, x.n));
        if (x.n) {
            ck_must(sk_buf_printf(&lines, "%u %s", recs[i].pref, h));
            for (size_t k = 0; k < x.n; k++) ck_must(sk_buf_printf(&lines, " %s", x.ip[k]));
            ck_must(sk_buf_putc(&lines, '\n'));
        } else {
            bad++;
            if (x.status == SK_DNS_TEMPFAIL) temp = 1;
            const char *why = x.status == SK_DNS_TEMPFAIL   ? "its address lookups failed for now"
                              : x.status == SK_DNS_NXDOMAIN ? "the name does not exist"
                                                            : "no A or AAAA record";
            ck_must(sk_buf_printf(&lines, "%u %s: %s\n", recs[i].pref, h, why));
            json_object_set_new(jh, "problem", ck_jstr(why));
        }
        ck_addrs_free(&x);
    }
    d->mx_known = 1;
    item *it;
    size_t usable = checked - bad;
    if (null_among) {
        it = ck_add(r, "mx", V_FAIL, "%s has a null MX (\".\") among other MX records", d->domain);
        ck_fix(it,
               "a null MX must be the only MX record (RFC 7505 3): remove it, or remove the "
               "others if %s receives no mail",
               d->domain);
    } else if (bad == 0) {
        it = ck_add(r, "mx", V_OK, "%s: %zu MX host%s, each with an address", d->domain, checked,
                    checked == 1 ? "" : "s");
    } else if (temp && usable == 0) {
        it = ck_add(r, "mx", V_FAIL, "%s: the addresses of its MX hosts could not be looked up",
                    d->domain);
        it->temporary = 1;
        ck_fix(it, "try again later");
    } else {
        it = ck_add(r, "mx", usable ? V_WARN : V_FAIL,
                    "%s: %zu of %zu MX hosts cannot receive mail", d->domain, bad, checked);
        ck_fix(it, "publish an A or AAAA record for each MX host (a host name, not an address), or "
                   "remove the MX records of hosts that are gone");
    }
    if (n - null_among > SK_DNS_MX_HOSTS_MAX)
        ck_more(it, "(%zu MX hosts; the first %d were checked)", n - null_among,
                SK_DNS_MX_HOSTS_MAX);
    if (lines.len) {
        char *l = lines.data;
        while (*l) {
            char *nl = strchr(l, '\n');
            *nl = '\0';
            ck_more(it, "%s", l);
            l = nl + 1;
        }
    }
    sk_buf_free(&lines);
    ck_jset(it, "hosts", hosts);
out:
    for (size_t i = 0; i < n; i++) sk_free(recs[i].host);
    sk_free(recs);
    sk_free(plain);
    ck_answer_free(&a);
}

/* ---- SPF (RFC 7208) ---- */

static void spf_trace(item *it, const sk_spf_outcome *o)
{
    json_t *t = ck_json_strings(o->trace, o->ntrace);
    ck_jset(it, "trace", t);
}

void check_spf(domain_run *d)
{
    run *r = d->r;
    answer a;
    if (ck_txt_or_temporary(r, d->domain, "spf", "SPF", &a)) return;
    size_t found = 0, which = 0;
    for (size_t i = 0; i < a.n; i++)
        if (sk_spf_is_record(a.v[i], a.len[i])) {
            found++;
            which = i;
        }
    const char *ipmech = d->ip && strchr(d->ip, ':') ? "ip6" : "ip4";
    if (found == 0) {
        item *it = ck_add(r, "spf", V_FAIL,
                          "no SPF record at %s: receivers cannot tell who may send "
                          "as %s",
                          d->domain, d->domain);
        if (d->ip)
            ck_fix(it,
                   "publish one TXT record at %s: \"v=spf1 %s:%s -all\" (every address mail "
                   "leaves from)",
                   d->domain, ipmech, d->ip);
        else
            ck_fix(it,
                   "publish one TXT record at %s: \"v=spf1 ip4:ADDRESS -all\" with the addresses "
                   "mail leaves from (\"v=spf1 -all\" if %s sends no mail)",
                   d->domain, d->domain);
        ck_answer_free(&a);
        return;
    }
    if (found > 1) {
        item *it =
            ck_add(r, "spf", V_FAIL,
                   "%zu SPF records at %s: every receiver's check ends in permerror (RFC 7208 "
                   "4.5)",
                   found, d->domain);
        for (size_t i = 0; i < a.n; i++)
            if (sk_spf_is_record(a.v[i], a.len[i])) ck_more(it, "%s", a.v[i]);
        ck_fix(it, "merge them into one TXT record starting with v=spf1");
        ck_answer_free(&a);
        return;
    }
    sk_spf_record *rec = NULL;
    char why[256] = "";
    sk_err pe = sk_spf_record_parse(a.v[which], a.len[which], &rec, why, sizeof why);
    ck_must(pe);
    if (pe) {
        item *it =
            ck_add(r, "spf", V_FAIL, "the SPF record at %s does not parse: %s", d->domain, why);
        ck_more(it, "%s", a.v[which]);
        ck_jset(it, "record", ck_jstr(a.v[which]));
        ck_fix(it, "correct the record (RFC 7208 4.6): receivers treat it as a permanent error and "
                   "ignore it");
        ck_answer_free(&a);
        return;
    }
    sk_spf_record_free(rec);
    item *it = ck_add(r, "spf", V_OK, "one SPF record at %s", d->domain);
    ck_more(it, "%s", a.v[which]);
    ck_jset(it, "record", ck_jstr(a.v[which]));
    ck_answer_free(&a);

    /* The evaluation a stranger gets: the lookups and the final "all". */
    char postmaster[SK_SMTP_DOMAIN_MAX_OCTETS + 16];
    snprintf(postmaster, sizeof postmaster, "postmaster@%s", d->domain);
    sk_spf_request req = {.identity = SK_SPF_MAILFROM,
                          .ip = CHECK_SPF_STRANGER_IP,
                          .mail_from = postmaster,
                          .helo = d->domain};
    sk_spf_opts so = {.timeout_ms = 0};
    sk_spf_outcome *o = NULL;
    sk_error err;
    sk_error_clear(&err);
    sk_err e = sk_spf_check_sync(&r->ro, &req, &so, &o, &err);
    if (e == SK_ERR_CONFIG) ck_dns_config_error(r, &err);
    if (e) {
        it = ck_add(r, "spf", V_FAIL, "SPF could not be evaluated: %s", err.text);
        it->temporary = 1;
        return;
    }
    if (o->result == SK_SPF_TEMPERROR) {
        it = ck_add(r, "spf", V_FAIL, "the SPF evaluation failed for now: %s", o->reason);
        it->temporary = 1;
        ck_fix(it, "try again later; if it persists, a name the record uses is not answering");
        spf_trace(it, o);
        sk_spf_outcome_free(o);
        return;
    }
    verdict lv = o->lookups > SK_SPF_DNS_LOOKUPS_MAX    ? V_FAIL
                 : o->lookups >= CHECK_SPF_LOOKUPS_WARN ? V_WARN
                                                        : V_OK;
    verdict vv = o->void_lookups > SK_SPF_VOID_LOOKUPS_MAX ? V_FAIL
                 : o->void_lookups                         ? V_WARN
                                                           : V_OK;
    if (o->lookups > SK_SPF_DNS_LOOKUPS_MAX)
        it = ck_add(r, "spf", V_FAIL,
                    "more than %d DNS lookups: every receiver's check ends in "
                    "permerror (RFC 7208 4.6.4)",
                    SK_SPF_DNS_LOOKUPS_MAX);
    else
        it = ck_add(r, "spf", lv, "%u of %d DNS lookups", o->lookups, SK_SPF_DNS_LOOKUPS_MAX);
    if (lv == V_FAIL)
        ck_fix(it, "use fewer include:, a, mx, ptr and exists terms (each costs a lookup, includes "
                   "count with theirs): replace a and mx with ip4:/ip6: networks, drop includes of "
                   "services you no longer use");
    else if (lv == V_WARN)
        ck_fix(it, "one or two more lookups make the record fail everywhere: replace a and mx with "
                   "ip4:/ip6: where you can");
    ck_jset(it, "lookups", json_integer(o->lookups));
    ck_jset(it, "lookups_max", json_integer(SK_SPF_DNS_LOOKUPS_MAX));
    if (vv != V_OK || lv == V_FAIL) spf_trace(it, o);
    if (lv != V_FAIL) {
        item *vi = ck_add(r, "spf", vv,
                          "%u of %d void lookups (names that do not exist or have no "
                          "record)",
                          o->void_lookups, SK_SPF_VOID_LOOKUPS_MAX);
        ck_jset(vi, "void_lookups", json_integer(o->void_lookups));
        ck_jset(vi, "void_lookups_max", json_integer(SK_SPF_VOID_LOOKUPS_MAX));
        if (vv != V_OK) {
            for (size_t i = 0; i < o->ntrace; i++)
                if (strstr(o->trace[i], "(nxdomain)") || strstr(o->trace[i], "(nodata)"))
                    ck_more(vi, "%s", o->trace[i]);
            ck_fix(vi, vv == V_FAIL
                           ? "more than 2 void lookups end every check in permerror: remove "
                             "the terms that name domains without records"
                           : "a term names a domain without records (a service you left?): "
                             "remove it; a third void lookup makes the record fail");
        }
    }
    /* What the record says about everyone else. */
    if (lv != V_FAIL && vv != V_FAIL) {
        const char *mech = o->mechanism ? o->mechanism : "";
        const char *where = o->mechanism_domain ? o->mechanism_domain : d->domain;
        switch (o->result) {
        case SK_SPF_FAIL:
            it = ck_add(r, "spf", V_OK, "other addresses fail (%s in %s)", mech, where);
            break;
        case SK_SPF_SOFTFAIL:
            it = ck_add(
                r, "spf", V_OK,
                "other addresses soft-fail (%s in %s): receivers take their mail but mark it; "
                "DMARC decides",
                mech, where);
            break;
        case SK_SPF_NEUTRAL:
            it = ck_add(r, "spf", V_WARN,
                        "other addresses get neutral (%s): SPF says nothing about "
                        "mail from them",
                        o->mechanism ? mech : "no all term");
            ck_fix(it, "end the record with -all (or ~all while you are not sure of the list)");
            break;
        case SK_SPF_PASS:
            it = ck_add(r, "spf", V_FAIL, "any address passes (%s in %s): anyone may send as %s",
                        mech, where, d->domain);
            ck_fix(it, "remove +all (or the network that holds every address) and end with -all");
            break;
        case SK_SPF_PERMERROR:
            it = ck_add(r, "spf", V_FAIL, "the evaluation ends in permerror: %s", o->reason);
            ck_fix(it, "fix what the reason names: receivers treat the record as broken");
            spf_trace(it, o);
            break;
        default:
            it = ck_add(r, "spf", V_FAIL, "the evaluation gives %s: %s",
                        sk_spf_result_name(o->result), o->reason);
            spf_trace(it, o);
            break;
        }
        ck_jset(it, "result_for_others", ck_jstr(sk_spf_result_name(o->result)));
        ck_jset(it, "mechanism", ck_jstr(o->mechanism));
        ck_jset(it, "mechanism_domain", ck_jstr(o->mechanism_domain));
    }
    sk_spf_outcome_free(o);

    if (!d->ip) return;
    req.ip = d->ip;
    o = NULL;
    sk_error_clear(&err);
    e = sk_spf_check_sync(&r->ro, &req, &so, &o, &err);
    if (e == SK_ERR_CONFIG) ck_dns_config_error(r, &err);
    if (e) {
        it = ck_add(r, "spf", V_FAIL, "SPF could not be evaluated for %s: %s", d->ip, err.text);
        it->temporary = 1;
        return;
    }
    switch (o->result) {
    case SK_SPF_PASS:
        it = ck_add(r, "spf", V_OK, "%s may send as %s (%s in %s)", d->ip, d->domain,
                    o->mechanism ? o->mechanism : "",
                    o->mechanism_domain ? o->mechanism_domain : "");
        break;
    case SK_SPF_TEMPERROR:
        it = ck_add(r, "spf", V_FAIL, "whether %s may send as %s is unknown for now: %s", d->ip,
                    d->domain, o->reason);
        it->temporary = 1;
        break;
    default:
        it = ck_add(r, "spf", V_FAIL, "%s may not send as %s: SPF gives %s (%s)", d->ip, d->domain,
                    sk_spf_result_name(o->result), o->reason);
        ck_fix(it,
               "add %s:%s to the SPF record of %s (or the include: of the service that sends "
               "from it)",
               ipmech, d->ip, d->domain);
        spf_trace(it, o);
        break;
    }
    ck_jset(it, "ip", ck_jstr(d->ip));
    ck_jset(it, "result", ck_jstr(sk_spf_result_name(o->result)));
    sk_spf_outcome_free(o);
}

/* ---- DKIM keys (RFC 6376 3.6.1, RFC 8301, RFC 8463) ---- */

static void regen_fix(item *it, const char *domain)
{
    ck_fix(it,
           "make a new key (smtpkit dkim keygen --domain %s --selector NEW --out FILE), publish "
           "the record it prints, then sign with it",
           domain);
}

static void check_dkim_selector(domain_run *d, const char *sel)
{
    run *r = d->r;
    char name[SK_SMTP_DOMAIN_MAX_OCTETS * 2 + 16];
    snprintf(name, sizeof name, "%s._domainkey.%s", sel, d->domain);
    answer a;
    item *it = ck_txt_or_temporary(r, name, "dkim", "DKIM key", &a);
    if (it) {
        ck_jset(it, "selector", ck_jstr(sel));
        return;
    }
    if (a.n == 0) {
        it = ck_add(r, "dkim", V_FAIL, "no key at %s: signatures with selector %s fail (permerror)",
                    name, sel);
        ck_fix(it, "publish the record `smtpkit dkim keygen` printed, as a TXT record at %s", name);
    } else if (a.n > 1) {
        it = ck_add(r, "dkim", V_FAIL,
                    "%zu TXT records at %s: a verifier cannot tell which is the "
                    "key (RFC 6376 3.6.2.2)",
                    a.n, name);
        for (size_t i = 0; i < a.n; i++) ck_more(it, "%s", a.v[i]);
        ck_fix(it, "keep exactly one TXT record at %s", name);
    } else {
        sk_dkim_key_info k;
        char why[256] = "";
        sk_err e = sk_dkim_key_record_inspect(a.v[0], a.len[0], &k, why, sizeof why);
        ck_must(e);
        if (e) {
            it = ck_add(r, "dkim", V_FAIL, "the key record at %s does not parse: %s", name, why);
            ck_more(it, "%s", a.v[0]);
            ck_fix(it,
                   "publish the record exactly as `smtpkit dkim keygen` prints it (v=DKIM1; k=rsa; "
                   "p=...)");
        } else if (k.revoked) {
            it = ck_add(r, "dkim", V_FAIL,
                        "the key at %s is revoked (empty p=): signatures with "
                        "selector %s fail",
                        name, sel);
            ck_fix(it,
                   "if you still sign with %s, publish its key; if %s is retired, sign with "
                   "another selector",
                   sel, sel);
        } else if (!k.sha256_ok) {
            it = ck_add(r, "dkim", V_FAIL,
                        "the key at %s allows no sha256 (h=): rsa-sha256 "
                        "signatures fail",
                        name);
            ck_fix(it, "remove h= from the record");
        } else if (k.type == SK_DKIM_KEY_ED25519) {
            it =
                ck_add(r, "dkim", V_OK,
                       "%s: an Ed25519 key (RFC 8463); some receivers do not check Ed25519 yet, so "
                       "sign with an RSA key too",
                       name);
        } else if (k.bits < SK_DKIM_RSA_BITS_MIN) {
            it = ck_add(r, "dkim", V_FAIL,
                        "%s: an RSA key of %u bits: under %d bits verifiers refuse "
                        "the signature (RFC 8301 3.2)",
                        name, k.bits, SK_DKIM_RSA_BITS_MIN);
            regen_fix(it, d->domain);
        } else if (k.bits > SK_DKIM_RSA_BITS_MAX) {
            it = ck_add(r, "dkim", V_FAIL,
                        "%s: an RSA key of %u bits: over %d bits verifiers refuse "
                        "it",
                        name, k.bits, SK_DKIM_RSA_BITS_MAX);
            regen_fix(it, d->domain);
        } else if (k.bits < CHECK_DKIM_RSA_BITS_GOOD) {
            it = ck_add(r, "dkim", V_WARN,
                        "%s: an RSA key of %u bits: accepted, but weaker than the "
                        "%d bits receivers expect",
                        name, k.bits, CHECK_DKIM_RSA_BITS_GOOD);
            regen_fix(it, d->domain);
        } else {
            it = ck_add(r, "dkim", V_OK, "%s: an RSA key of %u bits", name, k.bits);
        }
        if (!e) {
            ck_jset(it, "key_type", ck_jstr(sk_dkim_key_type_name(k.type)));
            ck_jset(it, "key_bits", json_integer(k.bits));
            ck_jset(it, "revoked", json_boolean(k.revoked));
            ck_jset(it, "testing", json_boolean(k.testing));
        }
        ck_jset(it, "record", ck_jstr(a.v[0]));
        if (!e && k.testing && !k.revoked) {
            item *t =
                ck_add(r, "dkim", V_WARN,
                       "%s says t=y (testing): receivers may treat its signatures as if there "
                       "were none",
                       name);
            ck_fix(t, "remove t=y from the record once signing works");
            ck_jset(t, "selector", ck_jstr(sel));
            ck_jset(t, "testing", json_true());
        }
    }
    ck_jset(it, "selector", ck_jstr(sel));
    ck_answer_free(&a);
}

void check_dkim(domain_run *d)
{
    if (d->n_selectors == 0) {
        item *it = ck_add(d->r, "dkim", V_INFO,
                          "no selector given: DKIM keys were not checked (DNS cannot list them)");
        ck_fix(it, "give --selector S for each selector you sign with (the s= of your "
                   "DKIM-Signature fields)");
        return;
    }
    for (size_t i = 0; i < d->n_selectors; i++) check_dkim_selector(d, d->selectors[i]);
}

/* ---- DMARC (RFC 7489, RFC 9091) ---- */

static const char *const dmarc_problems[] = {
    "p= is missing or invalid: the record is read as p=none (RFC 7489 6.6.3)",
    "p= is not right after v=DMARC1 (RFC 7489 6.4): some receivers ignore the record",
    "sp= is invalid: the record is read as p=none (RFC 7489 6.6.3)",
    "np= is invalid and ignored",
    "adkim= is invalid (r or s): relaxed is used",
    "aspf= is invalid (r or s): relaxed is used",
    "pct= is not 0 to 100: 100 is used",
    "ri= is not a number of seconds: a day is used",
    "fo= is invalid: 0 is used",
    "rf= is invalid: afrf is used",
    "a rua= URI is not a URI and was dropped",
    "a ruf= URI is not a URI and was dropped",
};

/* RFC 7489 7.1: reports to a domain outside the policy's organizational
 * domain count only when that domain says it takes them. */
static void check_rua_authorised(run *r, item *it, const char *policy_domain, const sk_dmarc_uri *u)
{
    if (strncasecmp(u->uri, "mailto:", 7)) return;
    const char *at = strrchr(u->uri, '@');
    if (!at) return;
    char host[SK_SMTP_DOMAIN_MAX_OCTETS + 1];
    size_t hn = strcspn(at + 1, "!?");
    if (hn == 0 || hn > SK_SMTP_DOMAIN_MAX_OCTETS) return;
    memcpy(host, at + 1, hn);
    host[hn] = '\0';
    char norm[SK_SMTP_DOMAIN_MAX_OCTETS + 1], org1[SK_SMTP_DOMAIN_MAX_OCTETS + 1],
        org2[SK_SMTP_DOMAIN_MAX_OCTETS + 1];
    if (sk_dmarc_domain_normalize(host, norm) || sk_dmarc_org_domain(norm, org2) ||
        sk_dmarc_org_domain(policy_domain, org1) || !strcmp(org1, org2))
        return;
    char name[SK_SMTP_DOMAIN_MAX_OCTETS * 2 + 32];
    snprintf(name, sizeof name, "%s._report._dmarc.%s", policy_domain, norm);
    answer a;
    ck_dns(r, name, SK_DNS_TXT, &a);
    int ok = 0;
    for (size_t i = 0; i < a.n; i++) ok |= sk_dmarc_is_record(a.v[i], a.len[i]);
    if (!ok && a.status != SK_DNS_TEMPFAIL) {
        if (it->v < V_WARN) it->v = V_WARN;
        ck_more(it,
                "%s is in another domain that does not say it takes reports for %s: receivers "
                "send nothing there (RFC 7489 7.1)",
                u->uri, policy_domain);
        ck_fix(it, "%s must publish TXT \"v=DMARC1\" at %s", norm, name);
    }
    ck_answer_free(&a);
}

void check_dmarc(domain_run *d)
{
    run *r = d->r;
    sk_dmarc_input in = {.from_domain = d->domain};
    sk_dmarc_result res;
    sk_error err;
    sk_error_clear(&err);
    sk_err e = sk_dmarc_check_sync(&r->ro, NULL, &in, &res, &err);
    if (e == SK_ERR_CONFIG) ck_dns_config_error(r, &err);
    if (e) {
        item *it = ck_add(r, "dmarc", V_FAIL, "DMARC could not be checked: %s",
                          err.text[0] ? err.text : sk_strerror(e));
        it->temporary = 1;
        return;
    }
    item *it;
    switch (res.status) {
    case SK_DMARC_TEMPERROR:
        it = ck_add(r, "dmarc", V_FAIL, "the DMARC lookup failed for now: %s", res.reason);
        it->temporary = 1;
        ck_fix(it, "try again later");
        sk_dmarc_result_clear(&res);
        return;
    case SK_DMARC_NONE:
        it = ck_add(r, "dmarc", V_FAIL,
                    "%s: receivers apply no policy to mail that fails SPF and "
                    "DKIM",
                    res.reason);
        if (strstr(res.reason, "several"))
            ck_fix(it, "keep exactly one TXT record starting with v=DMARC1 at _dmarc.%s",
                   res.record_domain[0] ? res.record_domain : d->domain);
        else
            ck_fix(it,
                   "publish TXT \"v=DMARC1; p=none; rua=mailto:dmarc-reports@%s\" at _dmarc.%s to "
                   "start, then move to p=quarantine and p=reject as the reports allow",
                   d->domain, d->domain);
        sk_dmarc_result_clear(&res);
        return;
    case SK_DMARC_PERMERROR:
        it = ck_add(r, "dmarc", V_FAIL, "%s", res.reason);
        ck_fix(it,
               "correct the record: \"v=DMARC1; p=none|quarantine|reject; rua=mailto:...\" with "
               "p= right after v=");
        sk_dmarc_result_clear(&res);
        return;
    default:
        break;
    }
    /* A record was found; the check failed (no SPF or DKIM given), which
     * tells the policy that applies to forged mail from the domain. */
    const sk_dmarc_record *rec = &res.record;
    const char *pol = sk_dmarc_policy_name(res.policy);
    int own = !strcmp(res.record_domain, d->domain);
    if (res.policy == SK_DMARC_POLICY_NONE) {
        it = ck_add(r, "dmarc", V_WARN,
                    "%s=none: receivers only report; mail forged as %s is "
                    "delivered",
                    res.policy_tag, d->domain);
        ck_fix(it,
               "read the reports, make every sender you use pass SPF or DKIM aligned, then move "
               "to p=quarantine and p=reject");
    } else {
        it = ck_add(r, "dmarc", V_OK, "%s=%s: mail that fails DMARC as %s is %s", res.policy_tag,
                    pol, d->domain,
                    res.policy == SK_DMARC_POLICY_REJECT ? "refused" : "put in the spam folder");
    }
    answer txt;
    char qname[SK_SMTP_DOMAIN_MAX_OCTETS + 8];
    snprintf(qname, sizeof qname, "_dmarc.%s", res.record_domain);
    ck_dns(r, qname, SK_DNS_TXT, &txt);
    for (size_t i = 0; i < txt.n; i++)
        if (sk_dmarc_is_record(txt.v[i], txt.len[i])) {
            ck_more(it, "%s: %s", qname, txt.v[i]);
            ck_jset(it, "record", ck_jstr(txt.v[i]));
        }
    ck_answer_free(&txt);
    ck_jset(it, "record_domain", ck_jstr(res.record_domain));
    ck_jset(it, "policy", ck_jstr(pol));
    ck_jset(it, "policy_tag", ck_jstr(res.policy_tag));
    ck_jset(it, "p", ck_jstr(sk_dmarc_policy_name(rec->p)));
    ck_jset(it, "sp", ck_jstr(sk_dmarc_policy_name(rec->sp)));
    ck_jset(it, "np", ck_jstr(sk_dmarc_policy_name(rec->np)));
    ck_jset(it, "pct", json_integer(rec->pct));
    if (!own) {
        item *o = ck_add(r, "dmarc", V_INFO,
                         "%s has no DMARC record of its own: the record of its organizational "
                         "domain %s applies, with its %s=",
                         d->domain, res.record_domain, res.policy_tag);
        ck_jset(o, "org_domain", ck_jstr(res.org_domain));
    } else if (rec->has_sp && rec->sp < rec->p) {
        item *s =
            ck_add(r, "dmarc", V_WARN,
                   "sp=%s is weaker than p=%s: mail forged from made-up subdomains of %s gets "
                   "%s",
                   sk_dmarc_policy_name(rec->sp), sk_dmarc_policy_name(rec->p), d->domain,
                   sk_dmarc_policy_name(rec->sp));
        ck_fix(s, "drop sp= (subdomains then follow p=) unless a subdomain still needs time");
    } else if (rec->has_np) {
        ck_add(r, "dmarc", V_INFO, "np=%s: the policy for subdomains that do not exist (RFC 9091)",
               sk_dmarc_policy_name(rec->np));
    }
    if (rec->pct < 100)
        ck_add(r, "dmarc", V_INFO,
               "pct=%u: the policy applies to %u%% of failing mail; the rest gets the next lower "
               "policy",
               rec->pct, rec->pct);
    /* Reports. */
    item *rp;
    if (rec->n_rua == 0) {
        rp = ck_add(r, "dmarc", V_WARN,
                    "no rua=: you get no aggregate reports, so you cannot see who "
                    "sends as %s",
                    d->domain);
        ck_fix(rp, "add rua=mailto:dmarc-reports@%s to the record", d->domain);
    } else {
        sk_buf list = SK_BUF_INIT(CHECK_TEXT_MAX_OCTETS);
        for (size_t i = 0; i < rec->n_rua; i++)
            ck_must(sk_buf_printf(&list, "%s%s", i ? ", " : "", rec->rua[i].uri));
        rp = ck_add(r, "dmarc", V_OK, "aggregate reports go to %s", sk_buf_cstr(&list));
        sk_buf_free(&list);
        for (size_t i = 0; i < rec->n_rua; i++)
            check_rua_authorised(r, rp, res.record_domain, &rec->rua[i]);
    }
    json_t *rua = json_array(), *ruf = json_array();
    if (!rua || !ruf) ck_out_of_memory();
    for (size_t i = 0; i < rec->n_rua; i++) json_array_append_new(rua, ck_jstr(rec->rua[i].uri));
    for (size_t i = 0; i < rec->n_ruf; i++) json_array_append_new(ruf, ck_jstr(rec->ruf[i].uri));
    ck_jset(rp, "rua", rua);
    ck_jset(rp, "ruf", ruf);
    if (rec->n_ruf) {
        sk_buf list = SK_BUF_INIT(CHECK_TEXT_MAX_OCTETS);
        for (size_t i = 0; i < rec->n_ruf; i++)
            ck_must(sk_buf_printf(&list, "%s%s", i ? ", " : "", rec->ruf[i].uri));
        ck_add(r, "dmarc", V_INFO,
               "failure reports (ruf=) go to %s; few receivers send them, and they hold message "
               "content",
               sk_buf_cstr(&list));
        sk_buf_free(&list);
    }
    for (size_t b = 0; b < sizeof dmarc_problems / sizeof dmarc_problems[0]; b++)
        if (rec->problems & (1u << b)) {
            item *p = ck_add(r, "dmarc", V_WARN, "%s", dmarc_problems[b]);
            ck_fix(p, "correct the record at _dmarc.%s", res.record_domain);
        }
    sk_dmarc_result_clear(&res);
}
