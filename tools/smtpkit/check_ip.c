/* smtpkit check DOMAIN --ip ADDR: the sending address, its reverse DNS
 * (and whether the name resolves back) and the DNS block lists. */
#include "check_int.h"

#include <string.h>

/* The names of one PTR answer checked forward (as SPF's limit, RFC 7208
 * 4.6.4). */
#define CHECK_PTR_NAMES_MAX 10

/* ---- the sending address: reverse DNS and block lists ---- */

void check_ptr(domain_run *d)
{
    run *r = d->r;
    char rev[SK_DNS_REVERSE_NAME_OCTETS];
    if (sk_dns_reverse_name(d->ip, rev, sizeof rev)) return; /* --ip was checked */
    answer a;
    ck_dns(r, rev, SK_DNS_PTR, &a);
    item *it;
    if (a.status == SK_DNS_TEMPFAIL) {
        ck_add_temporary(r, "ptr", "reverse DNS", rev, "PTR");
        ck_answer_free(&a);
        return;
    }
    if (a.n == 0) {
        it = ck_add(r, "ptr", V_FAIL,
                    "%s has no reverse DNS (no PTR record at %s): many receivers "
                    "refuse its mail",
                    d->ip, rev);
        ck_fix(it,
               "ask whoever gives you %s (the hosting provider or ISP) to set its PTR record to "
               "your mail server's name (e.g. mail.%s), a name whose A/AAAA record is %s",
               d->ip, d->domain, d->ip);
        ck_answer_free(&a);
        return;
    }
    const char *confirmed = NULL;
    int temp = 0;
    sk_dns_type fwd = strchr(d->ip, ':') ? SK_DNS_AAAA : SK_DNS_A;
    json_t *names = json_array();
    if (!names) ck_out_of_memory();
    sk_buf lines = SK_BUF_INIT(CHECK_TEXT_MAX_OCTETS);
    for (size_t i = 0; i < a.n && i < CHECK_PTR_NAMES_MAX; i++) {
        json_array_append_new(names, ck_jstr(a.v[i]));
        answer f;
        ck_dns(r, a.v[i], fwd, &f);
        int match = 0;
        for (size_t k = 0; k < f.n; k++) match |= ck_same_ip(f.v[k], d->ip);
        if (f.status == SK_DNS_TEMPFAIL) temp = 1;
        if (match && !confirmed) confirmed = a.v[i];
        ck_must(sk_buf_printf(&lines, "%s -> %s", a.v[i], f.n ? "" : sk_dns_status_name(f.status)));
        for (size_t k = 0; k < f.n; k++)
            ck_must(sk_buf_printf(&lines, "%s%s", k ? ", " : "", f.v[k]));
        ck_must(sk_buf_putc(&lines, '\n'));
        ck_answer_free(&f);
    }
    if (confirmed) {
        it = ck_add(r, "ptr", V_OK, "%s is %s, which resolves back to %s (forward-confirmed)",
                    d->ip, confirmed, d->ip);
    } else if (temp) {
        it = ck_add(r, "ptr", V_FAIL, "the names %s has could not be looked up for now", d->ip);
        it->temporary = 1;
    } else {
        it = ck_add(r, "ptr", V_FAIL,
                    "%s is %s, but that name does not resolve back to %s "
                    "(forward-confirmed reverse DNS fails)",
                    d->ip, a.v[0], d->ip);
        ck_fix(it, "publish %s %s %s, or have the PTR record of %s changed to a name that has it",
               a.v[0], fwd == SK_DNS_A ? "A" : "AAAA", d->ip, d->ip);
    }
    char *l = lines.data;
    while (l && *l) {
        char *nl = strchr(l, '\n');
        *nl = '\0';
        ck_more(it, "%s", l);
        l = nl + 1;
    }
    sk_buf_free(&lines);
    ck_jset(it, "names", names);
    ck_jset(it, "confirmed", confirmed ? ck_jstr(confirmed) : json_null());
    ck_answer_free(&a);
}

/* RFC 5782 2.1 and 2.4: the address's octets (or nibbles) in reverse,
 * then the list's zone. */
static int dnsbl_name(const char *ip, const char *zone, char *out, size_t size)
{
    char rev[SK_DNS_REVERSE_NAME_OCTETS];
    if (sk_dns_reverse_name(ip, rev, sizeof rev)) return -1;
    size_t n = strlen(rev);
    const char *suffix = strchr(ip, ':') ? ".ip6.arpa" : ".in-addr.arpa";
    size_t sn = strlen(suffix);
    if (n <= sn) return -1;
    int w = snprintf(out, size, "%.*s.%s", (int)(n - sn), rev, zone);
    return w < 0 || (size_t)w >= size ? -1 : 0;
}

void check_dnsbl(domain_run *d)
{
    run *r = d->r;
    for (size_t z = 0; z < d->n_dnsbl; z++) {
        const char *zone = d->dnsbl[z];
        char name[SK_DNS_REVERSE_NAME_OCTETS + SK_SMTP_DOMAIN_MAX_OCTETS + 2];
        if (dnsbl_name(d->ip, zone, name, sizeof name)) continue;
        answer a;
        ck_dns(r, name, SK_DNS_A, &a);
        item *it;
        if (a.status == SK_DNS_TEMPFAIL) {
            it = ck_add_temporary(r, "dnsbl", zone, name, "A");
            ck_jset(it, "zone", ck_jstr(zone));
            ck_answer_free(&a);
            continue;
        }
        if (a.n == 0) {
            it = ck_add(r, "dnsbl", V_OK, "%s is not listed on %s", d->ip, zone);
            ck_jset(it, "zone", ck_jstr(zone));
            ck_jset(it, "listed", json_false());
            ck_answer_free(&a);
            continue;
        }
        const char *listed = NULL, *refused = NULL, *odd = NULL;
        for (size_t i = 0; i < a.n; i++) {
            if (!strncmp(a.v[i], "127.255.255.", 12))
                refused = a.v[i];
            else if (!strncmp(a.v[i], "127.", 4))
                listed = listed ? listed : a.v[i];
            else
                odd = a.v[i];
        }
        if (listed) {
            it = ck_add(r, "dnsbl", V_FAIL, "%s is listed on %s (%s)", d->ip, zone, listed);
            answer t;
            ck_dns(r, name, SK_DNS_TXT, &t);
            for (size_t i = 0; i < t.n; i++) ck_more(it, "reason: %s", t.v[i]);
            if (t.n) ck_jset(it, "reason", ck_jstr(t.v[0]));
            ck_answer_free(&t);
            ck_fix(it,
                   "find out why (the reason above, or %s's web site), fix the cause (an open "
                   "relay, a compromised account, a script sending spam), then ask for removal",
                   zone);
            ck_jset(it, "listed", json_true());
        } else if (refused) {
            it = ck_add(r, "dnsbl", V_WARN,
                        "%s refused the query (%s): this is not an answer about "
                        "%s",
                        zone, refused, d->ip);
            ck_fix(it,
                   "the list does not answer queries from public or shared resolvers (or without "
                   "a key): check from a resolver of your own (--dns-server)");
            ck_jset(it, "refused", json_true());
        } else {
            it = ck_add(r, "dnsbl", V_WARN, "%s answered %s, which is not a listing (127.x.y.z)",
                        zone, odd);
            ck_fix(it, "your resolver may rewrite answers for names that do not exist: check with "
                       "another resolver (--dns-server)");
        }
        json_t *codes = ck_json_strings(a.v, a.n);
        ck_jset(it, "answers", codes);
        ck_jset(it, "zone", ck_jstr(zone));
        ck_answer_free(&a);
    }
}
