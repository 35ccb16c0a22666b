/* smtpkit check: is a domain set up to send and receive mail? One
 * checklist (MX, SPF, DKIM keys, DMARC, MTA-STS, TLS-RPT, and for a sending
 * address its reverse DNS and block lists), each line a verdict with the
 * fix in plain words. With --message, the checks a receiver makes on a
 * saved message (DKIM, SPF, DMARC) and the Authentication-Results field it
 * would add. */
#include "cli.h"

#include <smtpkit/authres.h>
#include <smtpkit/dkim.h>
#include <smtpkit/dmarc.h>
#include <smtpkit/dns.h>
#include <smtpkit/mtasts.h>
#include <smtpkit/spf.h>

#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

/* Options given more than once: far more than anyone signs with or asks. */
#define CHECK_SELECTORS_MAX 16
#define CHECK_DNSBL_MAX     16
/* One line of text (a detail, a fix) or all of an item's extra lines. */
#define CHECK_TEXT_MAX_OCTETS (64 * 1024)
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
/* RFC 8461 3.2: max_age "in the range of weeks or greater"; under a day
 * is worth a warning. */
#define CHECK_MTASTS_MAX_AGE_MIN_S 86400
/* The names of one PTR answer checked forward (as SPF's limit, RFC 7208
 * 4.6.4). */
#define CHECK_PTR_NAMES_MAX 10
/* Lines of a fetched policy shown when it does not parse. */
#define CHECK_POLICY_LINES_SHOWN 20

/* The block lists asked about --ip when no --dnsbl is given (docs/
 * authentication.md): Spamhaus ZEN and SpamCop, which the large receivers
 * consult. Spamhaus refuses queries that come through public resolvers
 * (127.255.255.254), which is reported as a refusal, not a listing. */
static const char *const dnsbl_default[] = {"zen.spamhaus.org", "bl.spamcop.net", NULL};

typedef enum verdict { V_OK, V_INFO, V_WARN, V_FAIL } verdict;
static const char *const verdict_marks[] = {"[ OK ]", "[INFO]", "[WARN]", "[FAIL]"};
static const char *const verdict_names[] = {"ok", "info", "warn", "fail"};

typedef struct item {
    const char *check; /* "mx", "spf", "dkim", ... */
    verdict v;
    int temporary; /* a DNS failure kept the check from an answer: try again later */
    char *detail;
    char *fix;
    sk_buf more;  /* further lines, each ending in '\n' */
    json_t *data; /* more members of the item's JSON object */
} item;

typedef struct run {
    const char *cmd;
    sk_resolver_opts ro;
    int json;
    item *items;
    size_t n, cap;
} run;

/* ---- small helpers ---- */

static void out_of_memory(void)
{
    fprintf(stderr, "smtpkit check: out of memory\n");
    exit(EX_OSERR);
}

static void *xcalloc(size_t n, size_t size)
{
    void *p = sk_calloc(n ? n : 1, size ? size : 1);
    if (!p) out_of_memory();
    return p;
}

static char *xstrdup(const char *s)
{
    char *p = sk_strdup(s ? s : "");
    if (!p) out_of_memory();
    return p;
}

static void must(sk_err e)
{
    if (e == SK_ERR_NOMEM) out_of_memory();
}

/* UTF-8 character length at s (RFC 3629), 0 when s does not start one. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
    unsigned char c = s[0];
    size_t len = c >= 0xc2 && c <= 0xdf   ? 2
                 : c >= 0xe0 && c <= 0xef ? 3
                 : c >= 0xf0 && c <= 0xf4 ? 4
                                          : 0;
    if (!len || n < len) return 0;
    if ((c == 0xe0 && s[1] < 0xa0) || (c == 0xed && s[1] > 0x9f) || (c == 0xf0 && s[1] < 0x90) ||
        (c == 0xf4 && s[1] > 0x8f))
        return 0;
    for (size_t i = 1; i < len; i++)
        if ((s[i] & 0xc0) != 0x80) return 0;
    return len;
}

/* Text from outside (DNS, a web server, a message) made safe to print and
 * to put in JSON: control characters and octets that are not UTF-8 become
 * \xNN. Idempotent. */
static char *printable(const char *s, size_t n)
{
    sk_buf b = SK_BUF_INIT(n * 4 + 1);
    must(sk_buf_reserve(&b, n + 1));
    for (size_t i = 0; i < n;) {
        unsigned char c = (unsigned char)s[i];
        size_t k = c >= 0x80 ? utf8_len((const unsigned char *)s + i, n - i) : 0;
        if (k) {
            must(sk_buf_append(&b, s + i, k));
            i += k;
        } else if (c < 0x20 || c == 0x7f || c >= 0x80) {
            must(sk_buf_printf(&b, "\\x%02x", c));
            i++;
        } else {
            must(sk_buf_putc(&b, (char)c));
            i++;
        }
    }
    must(sk_buf_reserve(&b, 1));
    char *r = sk_buf_detach(&b, NULL);
    return r;
}

static char *vformat(const char *fmt, va_list ap) SK_PRINTF(1, 0);
static char *vformat(const char *fmt, va_list ap)
{
    sk_buf b = SK_BUF_INIT(CHECK_TEXT_MAX_OCTETS);
    sk_err e = sk_buf_vprintf(&b, fmt, ap);
    must(e);
    must(sk_buf_reserve(&b, 1));
    char *raw = sk_buf_detach(&b, NULL);
    char *clean = printable(raw, strlen(raw));
    sk_free(raw);
    return clean;
}

/* A JSON string of text that is already UTF-8. */
static json_t *json_stringn_z(const char *s)
{
    json_t *j = json_stringn(s, strlen(s));
    if (!j) out_of_memory();
    return j;
}

/* A JSON string of text that may come from outside. */
static json_t *jstr(const char *s)
{
    if (!s) return json_null();
    char *p = printable(s, strlen(s));
    json_t *j = json_stringn_z(p);
    sk_free(p);
    if (!j) out_of_memory();
    return j;
}

/* A JSON string of our own text (line ends and tabs kept), or escaped as
 * jstr when it holds octets that are not UTF-8. */
static json_t *jtext(const char *s)
{
    json_t *j = json_stringn(s, strlen(s));
    return j ? j : jstr(s);
}

/* ---- items ---- */

static item *add(run *r, const char *check, verdict v, const char *fmt, ...) SK_PRINTF(4, 5);
static item *add(run *r, const char *check, verdict v, const char *fmt, ...)
{
    if (r->n == r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 32;
        item *n = sk_realloc(r->items, cap * sizeof *n);
        if (!n) out_of_memory();
        r->items = n;
        r->cap = cap;
    }
    item *it = &r->items[r->n++];
    memset(it, 0, sizeof *it);
    it->check = check;
    it->v = v;
    sk_buf_init(&it->more, CHECK_TEXT_MAX_OCTETS);
    va_list ap;
    va_start(ap, fmt);
    it->detail = vformat(fmt, ap);
    va_end(ap);
    it->data = json_object();
    if (!it->data) out_of_memory();
    return it;
}

static void fix(item *it, const char *fmt, ...) SK_PRINTF(2, 3);
static void fix(item *it, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    sk_free(it->fix);
    it->fix = vformat(fmt, ap);
    va_end(ap);
}

/* One more line of detail. Lines past the item's bound are left out. */
static void more(item *it, const char *fmt, ...) SK_PRINTF(2, 3);
static void more(item *it, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *line = vformat(fmt, ap);
    va_end(ap);
    if (sk_buf_puts(&it->more, line) == SK_OK) (void)!sk_buf_putc(&it->more, '\n');
    sk_free(line);
}

static void jset(item *it, const char *key, json_t *v)
{
    if (!v || json_object_set_new(it->data, key, v)) out_of_memory();
}

/* A check that a DNS failure kept from an answer. */
static item *add_temporary(run *r, const char *check, const char *what, const char *name,
                           const char *type)
{
    item *it = add(r, check, V_FAIL,
                   "%s: the DNS lookup of %s %s failed (server failure or "
                   "timeout)",
                   what, type, name);
    it->temporary = 1;
    fix(it, "try again later; if it persists, the domain's name servers are not answering for %s",
        name);
    return it;
}

/* ---- DNS ---- */

typedef struct answer {
    sk_dns_status status;
    size_t n;
    char **v; /* NUL-terminated copies (TXT values may hold NUL: see len) */
    size_t *len;
} answer;

static void on_answer(void *ctx, const sk_dns_result *res)
{
    answer *a = ctx;
    a->status = res->status;
    a->n = res->status == SK_DNS_OK ? res->count : 0;
    a->v = xcalloc(a->n, sizeof *a->v);
    a->len = xcalloc(a->n, sizeof *a->len);
    for (size_t i = 0; i < a->n; i++) {
        size_t n = res->lengths ? res->lengths[i] : strlen(res->values[i]);
        a->v[i] = xcalloc(n + 1, 1);
        memcpy(a->v[i], res->values[i], n);
        a->len[i] = n;
    }
}

static void answer_free(answer *a)
{
    for (size_t i = 0; i < a->n; i++) sk_free(a->v[i]);
    sk_free(a->v);
    sk_free(a->len);
    memset(a, 0, sizeof *a);
}

/* A resolver that cannot be used (a bad --dns-server) ends the run. */
static void dns_config_error(run *r, const sk_error *err)
{
    cli_warn(r->cmd, "%s", err->text[0] ? err->text : "the resolver cannot be used");
    exit(EX_CONFIG);
}

static void dns(run *r, const char *name, sk_dns_type type, answer *a)
{
    memset(a, 0, sizeof *a);
    a->status = SK_DNS_TEMPFAIL;
    sk_error err;
    sk_error_clear(&err);
    sk_err e = sk_dns_lookup_sync(&r->ro, name, type, on_answer, a, &err);
    if (e == SK_ERR_CONFIG) dns_config_error(r, &err);
    if (e == SK_ERR_NOMEM) out_of_memory();
}

/* The TXT records at NAME for the check CHECK (WHAT names them for people).
 * When the lookup failed for now, a is freed and the temporary item added is
 * returned: the check ends there. NULL when there is an answer. */
static item *txt_or_temporary(run *r, const char *name, const char *check, const char *what,
                              answer *a)
{
    dns(r, name, SK_DNS_TXT, a);
    if (a->status != SK_DNS_TEMPFAIL) return NULL;
    item *it = add_temporary(r, check, what, name, "TXT");
    answer_free(a);
    return it;
}

/* The addresses (A, then AAAA) of a name; status the better of the two. */
typedef struct addrs {
    sk_dns_status status;
    size_t n;
    char **ip;
} addrs;

static void addrs_free(addrs *x)
{
    for (size_t i = 0; i < x->n; i++) sk_free(x->ip[i]);
    sk_free(x->ip);
    memset(x, 0, sizeof *x);
}

static void lookup_addrs(run *r, const char *name, addrs *out)
{
    answer a4, a6;
    dns(r, name, SK_DNS_A, &a4);
    dns(r, name, SK_DNS_AAAA, &a6);
    memset(out, 0, sizeof *out);
    out->ip = xcalloc(a4.n + a6.n, sizeof *out->ip);
    for (size_t i = 0; i < a4.n; i++) out->ip[out->n++] = xstrdup(a4.v[i]);
    for (size_t i = 0; i < a6.n; i++) out->ip[out->n++] = xstrdup(a6.v[i]);
    if (out->n)
        out->status = SK_DNS_OK;
    else if (a4.status == SK_DNS_TEMPFAIL || a6.status == SK_DNS_TEMPFAIL)
        out->status = SK_DNS_TEMPFAIL;
    else if (a4.status == SK_DNS_NXDOMAIN)
        out->status = SK_DNS_NXDOMAIN;
    else
        out->status = SK_DNS_NODATA;
    answer_free(&a4);
    answer_free(&a6);
}

static json_t *json_strings(char *const *v, size_t n)
{
    json_t *a = json_array();
    if (!a) out_of_memory();
    for (size_t i = 0; i < n; i++)
        if (json_array_append_new(a, jstr(v[i]))) out_of_memory();
    return a;
}

/* Two addresses in text form are the same address. */
static int same_ip(const char *a, const char *b)
{
    unsigned char x[16], y[16];
    int fa = strchr(a, ':') ? AF_INET6 : AF_INET, fb = strchr(b, ':') ? AF_INET6 : AF_INET;
    if (fa != fb || inet_pton(fa, a, x) != 1 || inet_pton(fb, b, y) != 1) return 0;
    return !memcmp(x, y, fa == AF_INET ? 4 : 16);
}

/* ====================================================================== */
/* check DOMAIN                                                            */
/* ====================================================================== */

typedef struct domain_run {
    run *r;
    const char *domain; /* normalized: A-labels, lower case */
    const char *ip;     /* --ip, or NULL */
    const char *const *selectors;
    size_t n_selectors;
    const char *const *dnsbl;
    size_t n_dnsbl;
    const char *ca_file, *connect_to;
    int timeout_ms;
    /* The MX hosts found (for MTA-STS), and how the MX check went. */
    char **mx;
    size_t n_mx;
    int mx_known; /* 1: mx[] is the domain's whole MX list (possibly implicit) */
    int null_mx;
} domain_run;

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

static void check_mx(domain_run *d)
{
    run *r = d->r;
    answer a;
    dns(r, d->domain, SK_DNS_MX, &a);
    if (a.status == SK_DNS_TEMPFAIL) {
        add_temporary(r, "mx", "MX records", d->domain, "MX");
        answer_free(&a);
        return;
    }
    if (a.status == SK_DNS_NXDOMAIN) {
        item *it = add(r, "mx", V_FAIL, "%s does not exist in DNS (NXDOMAIN)", d->domain);
        fix(it, "check the spelling; a domain that sends or receives mail must exist in DNS");
        answer_free(&a);
        return;
    }
    if (a.n == 0) {
        /* RFC 5321 5.1: without MX records the domain itself is the host. */
        addrs x;
        lookup_addrs(r, d->domain, &x);
        item *it;
        if (x.status == SK_DNS_TEMPFAIL) {
            add_temporary(r, "mx", "the implicit MX", d->domain, "A/AAAA");
        } else if (x.n) {
            it = add(r, "mx", V_WARN,
                     "%s has no MX record: mail goes to its own address (implicit MX, RFC 5321 "
                     "5.1)",
                     d->domain);
            more(it, "%s", d->domain);
            for (size_t i = 0; i < x.n; i++) more(it, "  %s", x.ip[i]);
            fix(it,
                "publish an MX record naming your mail server (%s. MX 10 mail.%s.); a domain "
                "that receives no mail publishes a null MX (%s. MX 0 .)",
                d->domain, d->domain, d->domain);
            jset(it, "implicit_mx", json_true());
            jset(it, "addresses", json_strings(x.ip, x.n));
            d->mx = xcalloc(1, sizeof *d->mx);
            d->mx[0] = xstrdup(d->domain);
            d->n_mx = 1;
            d->mx_known = 1;
        } else {
            it = add(r, "mx", V_FAIL,
                     "%s has no MX record and no address: mail to it cannot be delivered",
                     d->domain);
            fix(it,
                "publish MX records for your mail servers (%s. MX 10 mail.%s.), or a null MX "
                "(%s. MX 0 .) if %s receives no mail",
                d->domain, d->domain, d->domain, d->domain);
        }
        addrs_free(&x);
        answer_free(&a);
        return;
    }
    mx_rec *recs = xcalloc(a.n, sizeof *recs);
    sk_mx_record *plain = xcalloc(a.n, sizeof *plain);
    size_t n = 0;
    for (size_t i = 0; i < a.n; i++) {
        char *sp = strchr(a.v[i], ' ');
        if (!sp) continue;
        recs[n].pref = (unsigned)strtoul(a.v[i], NULL, 10);
        recs[n].host = xstrdup(sp + 1);
        for (char *p = recs[n].host; *p; p++)
            if (*p >= 'A' && *p <= 'Z') *p = (char)(*p - 'A' + 'a');
        plain[n].preference = recs[n].pref;
        plain[n].host = recs[n].host;
        n++;
    }
    qsort(recs, n, sizeof *recs, mx_cmp);
    if (sk_mx_is_null(plain, n)) {
        item *it =
            add(r, "mx", V_OK, "%s receives no mail: it publishes a null MX (RFC 7505)", d->domain);
        jset(it, "null_mx", json_true());
        d->null_mx = 1;
        d->mx_known = 1;
        goto out;
    }
    json_t *hosts = json_array();
    if (!hosts) out_of_memory();
    size_t bad = 0, null_among = 0, checked = 0;
    sk_buf lines = SK_BUF_INIT(CHECK_TEXT_MAX_OCTETS);
    d->mx = xcalloc(n, sizeof *d->mx);
    int temp = 0;
    for (size_t i = 0; i < n; i++) {
        const char *h = recs[i].host;
        if (!strcmp(h, ".") || !h[0]) {
            null_among++;
            continue;
        }
        d->mx[d->n_mx++] = xstrdup(h);
        if (checked == SK_DNS_MX_HOSTS_MAX) continue;
        checked++;
        json_t *jh = json_object();
        if (!jh || json_array_append_new(hosts, jh)) out_of_memory();
        json_object_set_new(jh, "name", jstr(h));
        json_object_set_new(jh, "preference", json_integer(recs[i].pref));
        unsigned char tmp[16];
        if (inet_pton(AF_INET, h, tmp) == 1 || inet_pton(AF_INET6, h, tmp) == 1) {
            bad++;
            must(sk_buf_printf(&lines,
                               "%u %s: an address, not a host name (RFC 5321 5.1 wants a "
                               "name)\n",
                               recs[i].pref, h));
            json_object_set_new(jh, "problem", jstr("an address, not a host name"));
            continue;
        }
        addrs x;
        lookup_addrs(r, h, &x);
        json_object_set_new(jh, "addresses", json_strings(x.ip, x.n));
        if (x.n) {
            must(sk_buf_printf(&lines, "%u %s", recs[i].pref, h));
            for (size_t k = 0; k < x.n; k++) must(sk_buf_printf(&lines, " %s", x.ip[k]));
            must(sk_buf_putc(&lines, '\n'));
        } else {
            bad++;
            if (x.status == SK_DNS_TEMPFAIL) temp = 1;
            const char *why = x.status == SK_DNS_TEMPFAIL   ? "its address lookups failed for now"
                              : x.status == SK_DNS_NXDOMAIN ? "the name does not exist"
                                                            : "no A or AAAA record";
            must(sk_buf_printf(&lines, "%u %s: %s\n", recs[i].pref, h, why));
            json_object_set_new(jh, "problem", jstr(why));
        }
        addrs_free(&x);
    }
    d->mx_known = 1;
    item *it;
    size_t usable = checked - bad;
    if (null_among) {
        it = add(r, "mx", V_FAIL, "%s has a null MX (\".\") among other MX records", d->domain);
        fix(it,
            "a null MX must be the only MX record (RFC 7505 3): remove it, or remove the "
            "others if %s receives no mail",
            d->domain);
    } else if (bad == 0) {
        it = add(r, "mx", V_OK, "%s: %zu MX host%s, each with an address", d->domain, checked,
                 checked == 1 ? "" : "s");
    } else if (temp && usable == 0) {
        it = add(r, "mx", V_FAIL, "%s: the addresses of its MX hosts could not be looked up",
                 d->domain);
        it->temporary = 1;
        fix(it, "try again later");
    } else {
        it = add(r, "mx", usable ? V_WARN : V_FAIL, "%s: %zu of %zu MX hosts cannot receive mail",
                 d->domain, bad, checked);
        fix(it, "publish an A or AAAA record for each MX host (a host name, not an address), or "
                "remove the MX records of hosts that are gone");
    }
    if (n - null_among > SK_DNS_MX_HOSTS_MAX)
        more(it, "(%zu MX hosts; the first %d were checked)", n - null_among, SK_DNS_MX_HOSTS_MAX);
    if (lines.len) {
        char *l = lines.data;
        while (*l) {
            char *nl = strchr(l, '\n');
            *nl = '\0';
            more(it, "%s", l);
            l = nl + 1;
        }
    }
    sk_buf_free(&lines);
    jset(it, "hosts", hosts);
out:
    for (size_t i = 0; i < n; i++) sk_free(recs[i].host);
    sk_free(recs);
    sk_free(plain);
    answer_free(&a);
}

/* ---- SPF (RFC 7208) ---- */

static void spf_trace(item *it, const sk_spf_outcome *o)
{
    json_t *t = json_strings(o->trace, o->ntrace);
    jset(it, "trace", t);
}

static void check_spf(domain_run *d)
{
    run *r = d->r;
    answer a;
    if (txt_or_temporary(r, d->domain, "spf", "SPF", &a)) return;
    size_t found = 0, which = 0;
    for (size_t i = 0; i < a.n; i++)
        if (sk_spf_is_record(a.v[i], a.len[i])) {
            found++;
            which = i;
        }
    const char *ipmech = d->ip && strchr(d->ip, ':') ? "ip6" : "ip4";
    if (found == 0) {
        item *it = add(r, "spf", V_FAIL,
                       "no SPF record at %s: receivers cannot tell who may send "
                       "as %s",
                       d->domain, d->domain);
        if (d->ip)
            fix(it,
                "publish one TXT record at %s: \"v=spf1 %s:%s -all\" (every address mail "
                "leaves from)",
                d->domain, ipmech, d->ip);
        else
            fix(it,
                "publish one TXT record at %s: \"v=spf1 ip4:ADDRESS -all\" with the addresses "
                "mail leaves from (\"v=spf1 -all\" if %s sends no mail)",
                d->domain, d->domain);
        answer_free(&a);
        return;
    }
    if (found > 1) {
        item *it = add(r, "spf", V_FAIL,
                       "%zu SPF records at %s: every receiver's check ends in permerror (RFC 7208 "
                       "4.5)",
                       found, d->domain);
        for (size_t i = 0; i < a.n; i++)
            if (sk_spf_is_record(a.v[i], a.len[i])) more(it, "%s", a.v[i]);
        fix(it, "merge them into one TXT record starting with v=spf1");
        answer_free(&a);
        return;
    }
    sk_spf_record *rec = NULL;
    char why[256] = "";
    sk_err pe = sk_spf_record_parse(a.v[which], a.len[which], &rec, why, sizeof why);
    must(pe);
    if (pe) {
        item *it = add(r, "spf", V_FAIL, "the SPF record at %s does not parse: %s", d->domain, why);
        more(it, "%s", a.v[which]);
        jset(it, "record", jstr(a.v[which]));
        fix(it, "correct the record (RFC 7208 4.6): receivers treat it as a permanent error and "
                "ignore it");
        answer_free(&a);
        return;
    }
    sk_spf_record_free(rec);
    item *it = add(r, "spf", V_OK, "one SPF record at %s", d->domain);
    more(it, "%s", a.v[which]);
    jset(it, "record", jstr(a.v[which]));
    answer_free(&a);

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
    if (e == SK_ERR_CONFIG) dns_config_error(r, &err);
    if (e) {
        it = add(r, "spf", V_FAIL, "SPF could not be evaluated: %s", err.text);
        it->temporary = 1;
        return;
    }
    if (o->result == SK_SPF_TEMPERROR) {
        it = add(r, "spf", V_FAIL, "the SPF evaluation failed for now: %s", o->reason);
        it->temporary = 1;
        fix(it, "try again later; if it persists, a name the record uses is not answering");
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
        it = add(r, "spf", V_FAIL,
                 "more than %d DNS lookups: every receiver's check ends in "
                 "permerror (RFC 7208 4.6.4)",
                 SK_SPF_DNS_LOOKUPS_MAX);
    else
        it = add(r, "spf", lv, "%u of %d DNS lookups", o->lookups, SK_SPF_DNS_LOOKUPS_MAX);
    if (lv == V_FAIL)
        fix(it, "use fewer include:, a, mx, ptr and exists terms (each costs a lookup, includes "
                "count with theirs): replace a and mx with ip4:/ip6: networks, drop includes of "
                "services you no longer use");
    else if (lv == V_WARN)
        fix(it, "one or two more lookups make the record fail everywhere: replace a and mx with "
                "ip4:/ip6: where you can");
    jset(it, "lookups", json_integer(o->lookups));
    jset(it, "lookups_max", json_integer(SK_SPF_DNS_LOOKUPS_MAX));
    if (vv != V_OK || lv == V_FAIL) spf_trace(it, o);
    if (lv != V_FAIL) {
        item *vi = add(r, "spf", vv,
                       "%u of %d void lookups (names that do not exist or have no "
                       "record)",
                       o->void_lookups, SK_SPF_VOID_LOOKUPS_MAX);
        jset(vi, "void_lookups", json_integer(o->void_lookups));
        jset(vi, "void_lookups_max", json_integer(SK_SPF_VOID_LOOKUPS_MAX));
        if (vv != V_OK) {
            for (size_t i = 0; i < o->ntrace; i++)
                if (strstr(o->trace[i], "(nxdomain)") || strstr(o->trace[i], "(nodata)"))
                    more(vi, "%s", o->trace[i]);
            fix(vi, vv == V_FAIL ? "more than 2 void lookups end every check in permerror: remove "
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
            it = add(r, "spf", V_OK, "other addresses fail (%s in %s)", mech, where);
            break;
        case SK_SPF_SOFTFAIL:
            it = add(r, "spf", V_OK,
                     "other addresses soft-fail (%s in %s): receivers take their mail but mark it; "
                     "DMARC decides",
                     mech, where);
            break;
        case SK_SPF_NEUTRAL:
            it = add(r, "spf", V_WARN,
                     "other addresses get neutral (%s): SPF says nothing about "
                     "mail from them",
                     o->mechanism ? mech : "no all term");
            fix(it, "end the record with -all (or ~all while you are not sure of the list)");
            break;
        case SK_SPF_PASS:
            it = add(r, "spf", V_FAIL, "any address passes (%s in %s): anyone may send as %s", mech,
                     where, d->domain);
            fix(it, "remove +all (or the network that holds every address) and end with -all");
            break;
        case SK_SPF_PERMERROR:
            it = add(r, "spf", V_FAIL, "the evaluation ends in permerror: %s", o->reason);
            fix(it, "fix what the reason names: receivers treat the record as broken");
            spf_trace(it, o);
            break;
        default:
            it = add(r, "spf", V_FAIL, "the evaluation gives %s: %s", sk_spf_result_name(o->result),
                     o->reason);
            spf_trace(it, o);
            break;
        }
        jset(it, "result_for_others", jstr(sk_spf_result_name(o->result)));
        jset(it, "mechanism", jstr(o->mechanism));
        jset(it, "mechanism_domain", jstr(o->mechanism_domain));
    }
    sk_spf_outcome_free(o);

    if (!d->ip) return;
    req.ip = d->ip;
    o = NULL;
    sk_error_clear(&err);
    e = sk_spf_check_sync(&r->ro, &req, &so, &o, &err);
    if (e == SK_ERR_CONFIG) dns_config_error(r, &err);
    if (e) {
        it = add(r, "spf", V_FAIL, "SPF could not be evaluated for %s: %s", d->ip, err.text);
        it->temporary = 1;
        return;
    }
    switch (o->result) {
    case SK_SPF_PASS:
        it = add(r, "spf", V_OK, "%s may send as %s (%s in %s)", d->ip, d->domain,
                 o->mechanism ? o->mechanism : "", o->mechanism_domain ? o->mechanism_domain : "");
        break;
    case SK_SPF_TEMPERROR:
        it = add(r, "spf", V_FAIL, "whether %s may send as %s is unknown for now: %s", d->ip,
                 d->domain, o->reason);
        it->temporary = 1;
        break;
    default:
        it = add(r, "spf", V_FAIL, "%s may not send as %s: SPF gives %s (%s)", d->ip, d->domain,
                 sk_spf_result_name(o->result), o->reason);
        fix(it,
            "add %s:%s to the SPF record of %s (or the include: of the service that sends "
            "from it)",
            ipmech, d->ip, d->domain);
        spf_trace(it, o);
        break;
    }
    jset(it, "ip", jstr(d->ip));
    jset(it, "result", jstr(sk_spf_result_name(o->result)));
    sk_spf_outcome_free(o);
}

/* ---- DKIM keys (RFC 6376 3.6.1, RFC 8301, RFC 8463) ---- */

static void regen_fix(item *it, const char *domain)
{
    fix(it,
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
    item *it = txt_or_temporary(r, name, "dkim", "DKIM key", &a);
    if (it) {
        jset(it, "selector", jstr(sel));
        return;
    }
    if (a.n == 0) {
        it = add(r, "dkim", V_FAIL, "no key at %s: signatures with selector %s fail (permerror)",
                 name, sel);
        fix(it, "publish the record `smtpkit dkim keygen` printed, as a TXT record at %s", name);
    } else if (a.n > 1) {
        it = add(r, "dkim", V_FAIL,
                 "%zu TXT records at %s: a verifier cannot tell which is the "
                 "key (RFC 6376 3.6.2.2)",
                 a.n, name);
        for (size_t i = 0; i < a.n; i++) more(it, "%s", a.v[i]);
        fix(it, "keep exactly one TXT record at %s", name);
    } else {
        sk_dkim_key_info k;
        char why[256] = "";
        sk_err e = sk_dkim_key_record_inspect(a.v[0], a.len[0], &k, why, sizeof why);
        must(e);
        if (e) {
            it = add(r, "dkim", V_FAIL, "the key record at %s does not parse: %s", name, why);
            more(it, "%s", a.v[0]);
            fix(it,
                "publish the record exactly as `smtpkit dkim keygen` prints it (v=DKIM1; k=rsa; "
                "p=...)");
        } else if (k.revoked) {
            it = add(r, "dkim", V_FAIL,
                     "the key at %s is revoked (empty p=): signatures with "
                     "selector %s fail",
                     name, sel);
            fix(it,
                "if you still sign with %s, publish its key; if %s is retired, sign with "
                "another selector",
                sel, sel);
        } else if (!k.sha256_ok) {
            it = add(r, "dkim", V_FAIL,
                     "the key at %s allows no sha256 (h=): rsa-sha256 "
                     "signatures fail",
                     name);
            fix(it, "remove h= from the record");
        } else if (k.type == SK_DKIM_KEY_ED25519) {
            it = add(r, "dkim", V_OK,
                     "%s: an Ed25519 key (RFC 8463); some receivers do not check Ed25519 yet, so "
                     "sign with an RSA key too",
                     name);
        } else if (k.bits < SK_DKIM_RSA_BITS_MIN) {
            it = add(r, "dkim", V_FAIL,
                     "%s: an RSA key of %u bits: under %d bits verifiers refuse "
                     "the signature (RFC 8301 3.2)",
                     name, k.bits, SK_DKIM_RSA_BITS_MIN);
            regen_fix(it, d->domain);
        } else if (k.bits > SK_DKIM_RSA_BITS_MAX) {
            it = add(r, "dkim", V_FAIL,
                     "%s: an RSA key of %u bits: over %d bits verifiers refuse "
                     "it",
                     name, k.bits, SK_DKIM_RSA_BITS_MAX);
            regen_fix(it, d->domain);
        } else if (k.bits < CHECK_DKIM_RSA_BITS_GOOD) {
            it = add(r, "dkim", V_WARN,
                     "%s: an RSA key of %u bits: accepted, but weaker than the "
                     "%d bits receivers expect",
                     name, k.bits, CHECK_DKIM_RSA_BITS_GOOD);
            regen_fix(it, d->domain);
        } else {
            it = add(r, "dkim", V_OK, "%s: an RSA key of %u bits", name, k.bits);
        }
        if (!e) {
            jset(it, "key_type", jstr(sk_dkim_key_type_name(k.type)));
            jset(it, "key_bits", json_integer(k.bits));
            jset(it, "revoked", json_boolean(k.revoked));
            jset(it, "testing", json_boolean(k.testing));
        }
        jset(it, "record", jstr(a.v[0]));
        if (!e && k.testing && !k.revoked) {
            item *t = add(r, "dkim", V_WARN,
                          "%s says t=y (testing): receivers may treat its signatures as if there "
                          "were none",
                          name);
            fix(t, "remove t=y from the record once signing works");
            jset(t, "selector", jstr(sel));
            jset(t, "testing", json_true());
        }
    }
    jset(it, "selector", jstr(sel));
    answer_free(&a);
}

static void check_dkim(domain_run *d)
{
    if (d->n_selectors == 0) {
        item *it = add(d->r, "dkim", V_INFO,
                       "no selector given: DKIM keys were not checked (DNS cannot list them)");
        fix(it, "give --selector S for each selector you sign with (the s= of your "
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
    dns(r, name, SK_DNS_TXT, &a);
    int ok = 0;
    for (size_t i = 0; i < a.n; i++) ok |= sk_dmarc_is_record(a.v[i], a.len[i]);
    if (!ok && a.status != SK_DNS_TEMPFAIL) {
        if (it->v < V_WARN) it->v = V_WARN;
        more(it,
             "%s is in another domain that does not say it takes reports for %s: receivers "
             "send nothing there (RFC 7489 7.1)",
             u->uri, policy_domain);
        fix(it, "%s must publish TXT \"v=DMARC1\" at %s", norm, name);
    }
    answer_free(&a);
}

static void check_dmarc(domain_run *d)
{
    run *r = d->r;
    sk_dmarc_input in = {.from_domain = d->domain};
    sk_dmarc_result res;
    sk_error err;
    sk_error_clear(&err);
    sk_err e = sk_dmarc_check_sync(&r->ro, NULL, &in, &res, &err);
    if (e == SK_ERR_CONFIG) dns_config_error(r, &err);
    if (e) {
        item *it = add(r, "dmarc", V_FAIL, "DMARC could not be checked: %s",
                       err.text[0] ? err.text : sk_strerror(e));
        it->temporary = 1;
        return;
    }
    item *it;
    switch (res.status) {
    case SK_DMARC_TEMPERROR:
        it = add(r, "dmarc", V_FAIL, "the DMARC lookup failed for now: %s", res.reason);
        it->temporary = 1;
        fix(it, "try again later");
        sk_dmarc_result_clear(&res);
        return;
    case SK_DMARC_NONE:
        it = add(r, "dmarc", V_FAIL,
                 "%s: receivers apply no policy to mail that fails SPF and "
                 "DKIM",
                 res.reason);
        if (strstr(res.reason, "several"))
            fix(it, "keep exactly one TXT record starting with v=DMARC1 at _dmarc.%s",
                res.record_domain[0] ? res.record_domain : d->domain);
        else
            fix(it,
                "publish TXT \"v=DMARC1; p=none; rua=mailto:dmarc-reports@%s\" at _dmarc.%s to "
                "start, then move to p=quarantine and p=reject as the reports allow",
                d->domain, d->domain);
        sk_dmarc_result_clear(&res);
        return;
    case SK_DMARC_PERMERROR:
        it = add(r, "dmarc", V_FAIL, "%s", res.reason);
        fix(it, "correct the record: \"v=DMARC1; p=none|quarantine|reject; rua=mailto:...\" with "
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
        it = add(r, "dmarc", V_WARN,
                 "%s=none: receivers only report; mail forged as %s is "
                 "delivered",
                 res.policy_tag, d->domain);
        fix(it, "read the reports, make every sender you use pass SPF or DKIM aligned, then move "
                "to p=quarantine and p=reject");
    } else {
        it = add(r, "dmarc", V_OK, "%s=%s: mail that fails DMARC as %s is %s", res.policy_tag, pol,
                 d->domain,
                 res.policy == SK_DMARC_POLICY_REJECT ? "refused" : "put in the spam folder");
    }
    answer txt;
    char qname[SK_SMTP_DOMAIN_MAX_OCTETS + 8];
    snprintf(qname, sizeof qname, "_dmarc.%s", res.record_domain);
    dns(r, qname, SK_DNS_TXT, &txt);
    for (size_t i = 0; i < txt.n; i++)
        if (sk_dmarc_is_record(txt.v[i], txt.len[i])) {
            more(it, "%s: %s", qname, txt.v[i]);
            jset(it, "record", jstr(txt.v[i]));
        }
    answer_free(&txt);
    jset(it, "record_domain", jstr(res.record_domain));
    jset(it, "policy", jstr(pol));
    jset(it, "policy_tag", jstr(res.policy_tag));
    jset(it, "p", jstr(sk_dmarc_policy_name(rec->p)));
    jset(it, "sp", jstr(sk_dmarc_policy_name(rec->sp)));
    jset(it, "np", jstr(sk_dmarc_policy_name(rec->np)));
    jset(it, "pct", json_integer(rec->pct));
    if (!own) {
        item *o = add(r, "dmarc", V_INFO,
                      "%s has no DMARC record of its own: the record of its organizational "
                      "domain %s applies, with its %s=",
                      d->domain, res.record_domain, res.policy_tag);
        jset(o, "org_domain", jstr(res.org_domain));
    } else if (rec->has_sp && rec->sp < rec->p) {
        item *s = add(r, "dmarc", V_WARN,
                      "sp=%s is weaker than p=%s: mail forged from made-up subdomains of %s gets "
                      "%s",
                      sk_dmarc_policy_name(rec->sp), sk_dmarc_policy_name(rec->p), d->domain,
                      sk_dmarc_policy_name(rec->sp));
        fix(s, "drop sp= (subdomains then follow p=) unless a subdomain still needs time");
    } else if (rec->has_np) {
        add(r, "dmarc", V_INFO, "np=%s: the policy for subdomains that do not exist (RFC 9091)",
            sk_dmarc_policy_name(rec->np));
    }
    if (rec->pct < 100)
        add(r, "dmarc", V_INFO,
            "pct=%u: the policy applies to %u%% of failing mail; the rest gets the next lower "
            "policy",
            rec->pct, rec->pct);
    /* Reports. */
    item *rp;
    if (rec->n_rua == 0) {
        rp = add(r, "dmarc", V_WARN,
                 "no rua=: you get no aggregate reports, so you cannot see who "
                 "sends as %s",
                 d->domain);
        fix(rp, "add rua=mailto:dmarc-reports@%s to the record", d->domain);
    } else {
        sk_buf list = SK_BUF_INIT(CHECK_TEXT_MAX_OCTETS);
        for (size_t i = 0; i < rec->n_rua; i++)
            must(sk_buf_printf(&list, "%s%s", i ? ", " : "", rec->rua[i].uri));
        rp = add(r, "dmarc", V_OK, "aggregate reports go to %s", sk_buf_cstr(&list));
        sk_buf_free(&list);
        for (size_t i = 0; i < rec->n_rua; i++)
            check_rua_authorised(r, rp, res.record_domain, &rec->rua[i]);
    }
    json_t *rua = json_array(), *ruf = json_array();
    if (!rua || !ruf) out_of_memory();
    for (size_t i = 0; i < rec->n_rua; i++) json_array_append_new(rua, jstr(rec->rua[i].uri));
    for (size_t i = 0; i < rec->n_ruf; i++) json_array_append_new(ruf, jstr(rec->ruf[i].uri));
    jset(rp, "rua", rua);
    jset(rp, "ruf", ruf);
    if (rec->n_ruf) {
        sk_buf list = SK_BUF_INIT(CHECK_TEXT_MAX_OCTETS);
        for (size_t i = 0; i < rec->n_ruf; i++)
            must(sk_buf_printf(&list, "%s%s", i ? ", " : "", rec->ruf[i].uri));
        add(r, "dmarc", V_INFO,
            "failure reports (ruf=) go to %s; few receivers send them, and they hold message "
            "content",
            sk_buf_cstr(&list));
        sk_buf_free(&list);
    }
    for (size_t b = 0; b < sizeof dmarc_problems / sizeof dmarc_problems[0]; b++)
        if (rec->problems & (1u << b)) {
            item *p = add(r, "dmarc", V_WARN, "%s", dmarc_problems[b]);
            fix(p, "correct the record at _dmarc.%s", res.record_domain);
        }
    sk_dmarc_result_clear(&res);
}

/* ---- MTA-STS (RFC 8461) ---- */

static void fetch_fix(item *it, sk_mtasts_fetch_status s, const char *domain)
{
    switch (s) {
    case SK_MTASTS_FETCH_TLS:
        fix(it,
            "the web server of mta-sts.%s needs a certificate for that name from a CA senders "
            "trust (RFC 8461 3.3)",
            domain);
        break;
    case SK_MTASTS_FETCH_HTTP:
        fix(it,
            "serve the policy at https://mta-sts.%s/.well-known/mta-sts.txt with status 200 "
            "and no redirect",
            domain);
        break;
    case SK_MTASTS_FETCH_MEDIA_TYPE:
        fix(it, "serve mta-sts.txt of mta-sts.%s as text/plain", domain);
        break;
    case SK_MTASTS_FETCH_TOO_BIG:
        fix(it, "the policy of mta-sts.%s is a few lines: serve the policy file, nothing else",
            domain);
        break;
    default:
        fix(it, "mta-sts.%s must answer HTTPS on port 443 with the policy", domain);
        break;
    }
}

static void check_mtasts(domain_run *d)
{
    run *r = d->r;
    char name[SK_SMTP_DOMAIN_MAX_OCTETS + 16];
    snprintf(name, sizeof name, "_mta-sts.%s", d->domain);
    answer a;
    if (txt_or_temporary(r, name, "mta-sts", "MTA-STS", &a)) return;
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
            it = add(r, "mta-sts", V_FAIL,
                     "the TXT record at %s does not begin with \"v=STSv1;\": "
                     "senders ignore it",
                     name);
            for (size_t i = 0; i < a.n; i++) more(it, "%s", a.v[i]);
            fix(it, "publish \"v=STSv1; id=20250101T000000\" (any id of letters and digits)");
        } else {
            it = add(r, "mta-sts", V_INFO,
                     "no MTA-STS (no record at %s): senders use TLS to your MX hosts only when "
                     "offered, and cannot tell a forged MX",
                     name);
            fix(it,
                "to require TLS: serve a policy at https://mta-sts.%s/.well-known/mta-sts.txt "
                "and publish TXT \"v=STSv1; id=1\" at %s (docs/authentication.md)",
                d->domain, name);
        }
        answer_free(&a);
        return;
    }
    if (found > 1) {
        it = add(r, "mta-sts", V_FAIL,
                 "%zu MTA-STS records at %s: senders treat the domain as without a policy (RFC "
                 "8461 3.1)",
                 found, name);
        fix(it, "keep exactly one TXT record starting with v=STSv1");
        answer_free(&a);
        return;
    }
    sk_mtasts_record rec;
    char why[256] = "";
    if (sk_mtasts_record_parse(a.v[which], a.len[which], &rec, why, sizeof why)) {
        it = add(r, "mta-sts", V_FAIL, "the record at %s does not parse: %s", name, why);
        more(it, "%s", a.v[which]);
        fix(it, "publish \"v=STSv1; id=ID\" with an id of 1 to 32 letters and digits (RFC 8461 "
                "3.1)");
        answer_free(&a);
        return;
    }
    it = add(r, "mta-sts", V_OK, "record at %s: id=%s", name, rec.id);
    jset(it, "record", jstr(a.v[which]));
    jset(it, "id", jstr(rec.id));
    answer_free(&a);

    /* The policy host, through our resolver; then the policy over HTTPS. */
    char host[SK_SMTP_DOMAIN_MAX_OCTETS + 16];
    snprintf(host, sizeof host, "mta-sts.%s", d->domain);
    addrs x;
    lookup_addrs(r, host, &x);
    if (x.n == 0) {
        if (x.status == SK_DNS_TEMPFAIL)
            add_temporary(r, "mta-sts", "the policy host", host, "A/AAAA");
        else {
            it = add(r, "mta-sts", V_FAIL, "%s has no address: senders cannot fetch the policy",
                     host);
            fix(it,
                "publish an A (and AAAA) record for %s: the web server that serves the "
                "policy",
                host);
        }
        if (!d->connect_to) {
            addrs_free(&x);
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
    addrs_free(&x);
    if (e == SK_ERR_CONFIG) {
        cli_warn(r->cmd, "%s", err.text);
        exit(EX_CONFIG);
    }
    if (e) {
        if (e == SK_ERR_NOMEM) out_of_memory();
        add(r, "mta-sts", V_FAIL, "the policy could not be fetched: %s", err.text);
        return;
    }
    if (fr.status != SK_MTASTS_FETCH_OK) {
        it = add(r, "mta-sts", V_FAIL, "the policy could not be fetched: %s", fr.error);
        fetch_fix(it, fr.status, d->domain);
        jset(it, "url", jstr(fr.url));
        jset(it, "fetch", jstr(sk_mtasts_fetch_status_name(fr.status)));
        if (fr.http_status) jset(it, "http_status", json_integer(fr.http_status));
        sk_mtasts_fetch_result_clear(&fr);
        return;
    }
    sk_mtasts_policy pol;
    sk_err pe = sk_mtasts_policy_parse(fr.body, fr.body_len, &pol, why, sizeof why);
    must(pe);
    if (pe) {
        it = add(r, "mta-sts", V_FAIL, "the policy at %s does not parse: %s", fr.url, why);
        const char *l = fr.body;
        for (int shown = 0; *l && shown < CHECK_POLICY_LINES_SHOWN; shown++) {
            size_t n = strcspn(l, "\n");
            char *line = printable(l, n);
            more(it, "%s", line);
            sk_free(line);
            l += n + (l[n] == '\n');
        }
        fix(it, "the policy is lines of version: STSv1, mode: enforce|testing|none, mx: HOST "
                "(one per MX host, *.domain allowed) and max_age: SECONDS (RFC 8461 3.2)");
        jset(it, "url", jstr(fr.url));
        sk_mtasts_fetch_result_clear(&fr);
        return;
    }
    switch (pol.mode) {
    case SK_MTASTS_MODE_ENFORCE:
        it = add(r, "mta-sts", V_OK,
                 "policy mode enforce: senders deliver only over verified TLS "
                 "to the mx hosts listed");
        break;
    case SK_MTASTS_MODE_TESTING:
        it = add(r, "mta-sts", V_WARN,
                 "policy mode testing: senders report TLS failures "
                 "(TLS-RPT) but deliver anyway");
        fix(it, "when the TLS-RPT reports are clean, set mode: enforce and change the id= of %s",
            name);
        break;
    default:
        it = add(r, "mta-sts", V_WARN,
                 "policy mode none: the policy is withdrawn and protects "
                 "nothing");
        fix(it, "set mode: testing, then enforce (or remove %s if you mean to stop)", name);
        break;
    }
    more(it, "fetched %s (%zu octets), max_age %u s", fr.url, fr.body_len, pol.max_age_s);
    for (size_t i = 0; i < pol.n_mx; i++) more(it, "mx: %s", pol.mx[i]);
    jset(it, "url", jstr(fr.url));
    jset(it, "mode", jstr(sk_mtasts_mode_name(pol.mode)));
    jset(it, "max_age", json_integer(pol.max_age_s));
    jset(it, "mx", json_strings(pol.mx, pol.n_mx));
    if (pol.max_age_s < CHECK_MTASTS_MAX_AGE_MIN_S) {
        item *m = add(r, "mta-sts", V_WARN,
                      "max_age %u: senders keep the policy less than a day "
                      "(RFC 8461 3.2 expects weeks)",
                      pol.max_age_s);
        fix(m, "set max_age: 604800 (a week) or more once the policy is right");
    }
    /* Every MX host must match a pattern (RFC 8461 4.1). */
    if (pol.mode != SK_MTASTS_MODE_NONE && d->mx_known && !d->null_mx) {
        size_t unmatched = 0;
        sk_buf list = SK_BUF_INIT(CHECK_TEXT_MAX_OCTETS);
        for (size_t i = 0; i < d->n_mx; i++)
            if (!sk_mtasts_policy_match(&pol, d->mx[i])) {
                unmatched++;
                must(sk_buf_printf(&list, "%s%s", list.len ? ", " : "", d->mx[i]));
            }
        if (unmatched) {
            int enforce = pol.mode == SK_MTASTS_MODE_ENFORCE;
            it = add(r, "mta-sts", enforce ? V_FAIL : V_WARN,
                     "MX host%s %s match%s no mx pattern of the policy: senders %s",
                     unmatched == 1 ? "" : "s", sk_buf_cstr(&list), unmatched == 1 ? "es" : "",
                     enforce          ? "that enforce MTA-STS will not deliver there"
                     : unmatched == 1 ? "will report failures for it"
                                      : "will report failures for them");
            fix(it,
                "add mx: lines for them (or a *.domain pattern) to the policy and change the "
                "id= of %s; or fix the MX records if they are wrong",
                name);
        } else {
            it = add(r, "mta-sts", V_OK, "every MX host matches an mx pattern of the policy");
        }
        jset(it, "mx_hosts", json_strings(d->mx, d->n_mx));
        sk_buf_free(&list);
    }
    sk_mtasts_policy_clear(&pol);
    sk_mtasts_fetch_result_clear(&fr);
}

/* ---- TLS-RPT (RFC 8460) ---- */

static void check_tlsrpt(domain_run *d, int have_mtasts)
{
    run *r = d->r;
    char name[SK_SMTP_DOMAIN_MAX_OCTETS + 16];
    snprintf(name, sizeof name, "_smtp._tls.%s", d->domain);
    answer a;
    if (txt_or_temporary(r, name, "tls-rpt", "TLS-RPT", &a)) return;
    item *it;
    size_t found = 0, which = 0;
    for (size_t i = 0; i < a.n; i++)
        if (sk_tlsrpt_is_record(a.v[i], a.len[i])) {
            found++;
            which = i;
        }
    if (found == 0) {
        it = add(r, "tls-rpt", have_mtasts ? V_WARN : V_INFO,
                 "no TLS-RPT record at %s: you do not hear when senders fail to reach you over "
                 "TLS",
                 name);
        fix(it, "publish TXT \"v=TLSRPTv1; rua=mailto:tls-reports@%s\" at %s", d->domain, name);
    } else if (found > 1) {
        it = add(r, "tls-rpt", V_FAIL,
                 "%zu TLS-RPT records at %s: senders send no reports (RFC "
                 "8460 3)",
                 found, name);
        fix(it, "keep exactly one TXT record starting with v=TLSRPTv1");
    } else {
        sk_tlsrpt_record rec;
        char why[256] = "";
        sk_err e = sk_tlsrpt_record_parse(a.v[which], a.len[which], &rec, why, sizeof why);
        must(e);
        if (e) {
            it = add(r, "tls-rpt", V_FAIL, "the record at %s does not parse: %s", name, why);
            more(it, "%s", a.v[which]);
            fix(it, "publish \"v=TLSRPTv1; rua=mailto:ADDRESS\" (or rua=https://...)");
        } else {
            size_t usable = 0;
            sk_buf list = SK_BUF_INIT(CHECK_TEXT_MAX_OCTETS);
            json_t *rua = json_array();
            if (!rua) out_of_memory();
            for (size_t i = 0; i < rec.n_rua; i++) {
                usable += rec.rua[i].scheme != SK_TLSRPT_OTHER;
                must(sk_buf_printf(&list, "%s%s", i ? ", " : "", rec.rua[i].uri));
                json_array_append_new(rua, jstr(rec.rua[i].uri));
            }
            if (usable == rec.n_rua)
                it = add(r, "tls-rpt", V_OK, "TLS reports go to %s", sk_buf_cstr(&list));
            else {
                it = add(r, "tls-rpt", usable ? V_WARN : V_FAIL,
                         "rua= %s: senders send reports only to mailto: and https: URIs",
                         sk_buf_cstr(&list));
                fix(it, "use rua=mailto:ADDRESS or rua=https://URL");
            }
            jset(it, "rua", rua);
            sk_buf_free(&list);
            sk_tlsrpt_record_clear(&rec);
        }
        jset(it, "record", jstr(a.v[which]));
    }
    answer_free(&a);
}

/* ---- the sending address: reverse DNS and block lists ---- */

static void check_ptr(domain_run *d)
{
    run *r = d->r;
    char rev[SK_DNS_REVERSE_NAME_OCTETS];
    if (sk_dns_reverse_name(d->ip, rev, sizeof rev)) return; /* --ip was checked */
    answer a;
    dns(r, rev, SK_DNS_PTR, &a);
    item *it;
    if (a.status == SK_DNS_TEMPFAIL) {
        add_temporary(r, "ptr", "reverse DNS", rev, "PTR");
        answer_free(&a);
        return;
    }
    if (a.n == 0) {
        it = add(r, "ptr", V_FAIL,
                 "%s has no reverse DNS (no PTR record at %s): many receivers "
                 "refuse its mail",
                 d->ip, rev);
        fix(it,
            "ask whoever gives you %s (the hosting provider or ISP) to set its PTR record to "
            "your mail server's name (e.g. mail.%s), a name whose A/AAAA record is %s",
            d->ip, d->domain, d->ip);
        answer_free(&a);
        return;
    }
    const char *confirmed = NULL;
    int temp = 0;
    sk_dns_type fwd = strchr(d->ip, ':') ? SK_DNS_AAAA : SK_DNS_A;
    json_t *names = json_array();
    if (!names) out_of_memory();
    sk_buf lines = SK_BUF_INIT(CHECK_TEXT_MAX_OCTETS);
    for (size_t i = 0; i < a.n && i < CHECK_PTR_NAMES_MAX; i++) {
        json_array_append_new(names, jstr(a.v[i]));
        answer f;
        dns(r, a.v[i], fwd, &f);
        int match = 0;
        for (size_t k = 0; k < f.n; k++) match |= same_ip(f.v[k], d->ip);
        if (f.status == SK_DNS_TEMPFAIL) temp = 1;
        if (match && !confirmed) confirmed = a.v[i];
        must(sk_buf_printf(&lines, "%s -> %s", a.v[i], f.n ? "" : sk_dns_status_name(f.status)));
        for (size_t k = 0; k < f.n; k++) must(sk_buf_printf(&lines, "%s%s", k ? ", " : "", f.v[k]));
        must(sk_buf_putc(&lines, '\n'));
        answer_free(&f);
    }
    if (confirmed) {
        it = add(r, "ptr", V_OK, "%s is %s, which resolves back to %s (forward-confirmed)", d->ip,
                 confirmed, d->ip);
    } else if (temp) {
        it = add(r, "ptr", V_FAIL, "the names %s has could not be looked up for now", d->ip);
        it->temporary = 1;
    } else {
        it = add(r, "ptr", V_FAIL,
                 "%s is %s, but that name does not resolve back to %s "
                 "(forward-confirmed reverse DNS fails)",
                 d->ip, a.v[0], d->ip);
        fix(it, "publish %s %s %s, or have the PTR record of %s changed to a name that has it",
            a.v[0], fwd == SK_DNS_A ? "A" : "AAAA", d->ip, d->ip);
    }
    char *l = lines.data;
    while (l && *l) {
        char *nl = strchr(l, '\n');
        *nl = '\0';
        more(it, "%s", l);
        l = nl + 1;
    }
    sk_buf_free(&lines);
    jset(it, "names", names);
    jset(it, "confirmed", confirmed ? jstr(confirmed) : json_null());
    answer_free(&a);
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

static void check_dnsbl(domain_run *d)
{
    run *r = d->r;
    for (size_t z = 0; z < d->n_dnsbl; z++) {
        const char *zone = d->dnsbl[z];
        char name[SK_DNS_REVERSE_NAME_OCTETS + SK_SMTP_DOMAIN_MAX_OCTETS + 2];
        if (dnsbl_name(d->ip, zone, name, sizeof name)) continue;
        answer a;
        dns(r, name, SK_DNS_A, &a);
        item *it;
        if (a.status == SK_DNS_TEMPFAIL) {
            it = add_temporary(r, "dnsbl", zone, name, "A");
            jset(it, "zone", jstr(zone));
            answer_free(&a);
            continue;
        }
        if (a.n == 0) {
            it = add(r, "dnsbl", V_OK, "%s is not listed on %s", d->ip, zone);
            jset(it, "zone", jstr(zone));
            jset(it, "listed", json_false());
            answer_free(&a);
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
            it = add(r, "dnsbl", V_FAIL, "%s is listed on %s (%s)", d->ip, zone, listed);
            answer t;
            dns(r, name, SK_DNS_TXT, &t);
            for (size_t i = 0; i < t.n; i++) more(it, "reason: %s", t.v[i]);
            if (t.n) jset(it, "reason", jstr(t.v[0]));
            answer_free(&t);
            fix(it,
                "find out why (the reason above, or %s's web site), fix the cause (an open "
                "relay, a compromised account, a script sending spam), then ask for removal",
                zone);
            jset(it, "listed", json_true());
        } else if (refused) {
            it = add(r, "dnsbl", V_WARN,
                     "%s refused the query (%s): this is not an answer about "
                     "%s",
                     zone, refused, d->ip);
            fix(it, "the list does not answer queries from public or shared resolvers (or without "
                    "a key): check from a resolver of your own (--dns-server)");
            jset(it, "refused", json_true());
        } else {
            it = add(r, "dnsbl", V_WARN, "%s answered %s, which is not a listing (127.x.y.z)", zone,
                     odd);
            fix(it, "your resolver may rewrite answers for names that do not exist: check with "
                    "another resolver (--dns-server)");
        }
        json_t *codes = json_strings(a.v, a.n);
        jset(it, "answers", codes);
        jset(it, "zone", jstr(zone));
        answer_free(&a);
    }
}

/* ====================================================================== */
/* check --message                                                         */
/* ====================================================================== */

typedef struct message_run {
    run *r;
    const char *path, *ip, *helo, *mail_from, *authserv_id;
    cli_message msg; /* as read */
    sk_buf head;     /* its header block, CRLF line ends */
} message_run;

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
        it = add(r, check, V_OK, "pass: the client may send as %s (%s)", who, o->reason);
        break;
    case SK_SPF_TEMPERROR:
        it = add(r, check, V_FAIL, "temperror: %s", o->reason);
        it->temporary = 1;
        break;
    case SK_SPF_NONE:
    case SK_SPF_NEUTRAL:
        it = add(r, check, V_WARN, "%s: %s", sk_spf_result_name(o->result), o->reason);
        break;
    case SK_SPF_SOFTFAIL:
        it = add(r, check, helo ? V_WARN : V_FAIL, "%s: %s", sk_spf_result_name(o->result),
                 o->reason);
        break;
    default:
        it = add(r, check, V_FAIL, "%s: %s", sk_spf_result_name(o->result), o->reason);
        break;
    }
    if (o->result != SK_SPF_PASS && o->result != SK_SPF_TEMPERROR) {
        if (o->result == SK_SPF_NONE)
            fix(it, "publish an SPF record at %s (\"v=spf1 ip4:ADDRESS -all\")", who);
        else if (o->result == SK_SPF_PERMERROR)
            fix(it, "the SPF record of %s is broken: `smtpkit check %s` says how", who, who);
        else
            fix(it, "add the client's address to the SPF record of %s", who);
    }
    if (o->explanation) more(it, "explanation: %s", o->explanation);
    jset(it, "result", jstr(sk_spf_result_name(o->result)));
    jset(it, "domain", jstr(o->domain));
    jset(it, "reason", jstr(o->reason));
    jset(it, "property", jstr(o->property));
    jset(it, "property_value", jstr(o->property_value));
    jset(it, "lookups", json_integer(o->lookups));
    jset(it, "void_lookups", json_integer(o->void_lookups));
    jset(it, "trace", json_strings(o->trace, o->ntrace));
}

static int run_message(message_run *m, sk_buf *header)
{
    run *r = m->r;
    ar_list *ar = xcalloc(1, sizeof *ar);
    sk_error err;
    sk_error_clear(&err);

    /* DKIM: every signature (up to the verifier's limit). */
    sk_dkim_verifier *v = sk_dkim_verifier_new(NULL, &err);
    if (!v) out_of_memory();
    sk_err e = cli_message_feed(&m->msg, verifier_feed, v);
    if (!e) e = sk_dkim_verifier_finish(v, &err);
    /* The header block for DMARC and Authentication-Results: within the
     * verifier's bound once it took the message. */
    if (!e) e = cli_message_head(&m->msg, &m->head);
    if (e == SK_ERR_NOMEM) out_of_memory();
    if (e) {
        add(r, "dkim", V_FAIL, "the header block is over %u octets: the message cannot be checked",
            (unsigned)SK_DKIM_HEADER_BLOCK_MAX_OCTETS);
        sk_dkim_verifier_free(v);
        sk_free(ar);
        return -1;
    }
    e = sk_dkim_verifier_resolve_sync(v, &r->ro, &err);
    if (e == SK_ERR_CONFIG) dns_config_error(r, &err);
    if (e == SK_ERR_NOMEM) out_of_memory();
    size_t nsig = sk_dkim_verifier_count(v);
    sk_dmarc_auth_id dkim_ids[SK_DKIM_VERIFY_SIGNATURES_MAX];
    if (nsig == 0) {
        item *it = add(r, "dkim", V_WARN, "none: the message has no DKIM-Signature");
        fix(it, "sign outgoing mail (smtpkit dkim keygen, then serve --dkim): large mailbox "
                "providers want DKIM, and DMARC can then pass only through SPF");
        ar_add(ar, "dkim", "none");
    }
    for (size_t i = 0; i < nsig; i++) {
        const sk_dkim_result *d = sk_dkim_verifier_result(v, i);
        item *it = add(r, "dkim", dkim_verdict(d->status), "%s: d=%s s=%s%s%s: %s",
                       sk_dkim_status_name(d->status), d->domain[0] ? d->domain : "?",
                       d->selector[0] ? d->selector : "?", d->algorithm[0] ? " a=" : "",
                       d->algorithm, d->reason);
        if (d->status == SK_DKIM_TEMPERROR) it->temporary = 1;
        const char *f = dkim_fix(d->status);
        if (f) fix(it, "%s", f);
        jset(it, "result", jstr(sk_dkim_status_name(d->status)));
        jset(it, "reason", jstr(d->reason));
        jset(it, "domain", jstr(d->domain));
        jset(it, "identity", jstr(d->identity));
        jset(it, "selector", jstr(d->selector));
        jset(it, "algorithm", jstr(d->algorithm));
        jset(it, "b", jstr(d->b));
        jset(it, "key_bits", json_integer(d->key_bits));
        jset(it, "testing", json_boolean(d->testing));
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
        add(r, "dkim", V_INFO, "%zu more DKIM-Signature fields were not checked (at most %d are)",
            sk_dkim_verifier_skipped(v), SK_DKIM_VERIFY_SIGNATURES_MAX);

    /* SPF: the MAIL FROM identity (postmaster@HELO for the null sender),
     * then HELO (RFC 7208 2.3, 2.4). */
    sk_spf_outcome *mf = NULL, *he = NULL;
    sk_spf_request req = {
        .identity = SK_SPF_MAILFROM, .ip = m->ip, .mail_from = m->mail_from, .helo = m->helo};
    sk_spf_opts so = {.receiver = m->authserv_id};
    e = sk_spf_check_sync(&r->ro, &req, &so, &mf, &err);
    if (e == SK_ERR_CONFIG) dns_config_error(r, &err);
    if (e == SK_ERR_NOMEM) out_of_memory();
    req.identity = SK_SPF_HELO;
    sk_err he_e = sk_spf_check_sync(&r->ro, &req, &so, &he, &err);
    if (he_e == SK_ERR_NOMEM) out_of_memory();
    if (mf) {
        spf_message_item(r, "spf", mf, 0);
        sk_authres_result *a = ar_add(ar, "spf", sk_spf_result_name(mf->result));
        ar_prop(a, "smtp", "mailfrom", mf->property_value);
    } else {
        add(r, "spf", V_FAIL, "SPF could not be evaluated: %s", err.text);
    }
    if (!he) {
        add(r, "spf-helo", V_FAIL, "SPF could not be evaluated for the HELO name: %s", err.text);
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
    if (e == SK_ERR_CONFIG) dns_config_error(r, &err);
    char dmarc_comment[64] = "";
    if (e) {
        if (e == SK_ERR_NOMEM) out_of_memory();
        add(r, "dmarc", V_FAIL, "DMARC could not be evaluated: %s", err.text);
    } else {
        item *it;
        const char *from = dr.from_domain[0] ? dr.from_domain : "?";
        switch (dr.status) {
        case SK_DMARC_PASS:
            it = add(r, "dmarc", V_OK, "pass: From %s; %s", from, dr.reason);
            break;
        case SK_DMARC_FAIL:
            it = add(r, "dmarc", V_FAIL, "fail: From %s; %s: the receiver is asked to %s", from,
                     dr.reason,
                     dr.disposition == SK_DMARC_POLICY_REJECT       ? "refuse it"
                     : dr.disposition == SK_DMARC_POLICY_QUARANTINE ? "treat it as spam"
                                                                    : "deliver it");
            for (size_t i = 0; i < nsig; i++)
                more(it, "dkim d=%s: %s%s", dkim_ids[i].domain[0] ? dkim_ids[i].domain : "?",
                     dkim_ids[i].result == SK_DMARC_AUTH_PASS ? "pass" : "did not pass",
                     dkim_ids[i].result == SK_DMARC_AUTH_PASS &&
                             !sk_dmarc_aligned(dr.from_domain, dkim_ids[i].domain, dr.record.adkim)
                         ? ", not aligned with From"
                         : "");
            more(it, "spf %s: %s%s", in.spf.domain, mf ? sk_spf_result_name(mf->result) : "?",
                 mf && mf->result == SK_SPF_PASS &&
                         !sk_dmarc_aligned(dr.from_domain, in.spf.domain, dr.record.aspf)
                     ? ", not aligned with From"
                     : "");
            fix(it,
                "for DMARC to pass, sign with d=%s (or a subdomain) and have DKIM pass, or send "
                "with a MAIL FROM in %s that SPF authorises",
                from, from);
            break;
        case SK_DMARC_NONE:
            it = add(r, "dmarc", V_WARN, "none: %s", dr.reason);
            fix(it,
                "the From domain %s publishes no usable DMARC policy: `smtpkit check %s` says "
                "how",
                from, from);
            break;
        case SK_DMARC_TEMPERROR:
            it = add(r, "dmarc", V_FAIL, "temperror: %s", dr.reason);
            it->temporary = 1;
            break;
        default:
            it = add(r, "dmarc", V_FAIL, "permerror: %s", dr.reason);
            break;
        }
        jset(it, "result", jstr(sk_dmarc_status_name(dr.status)));
        jset(it, "from_domain", jstr(dr.from_domain));
        jset(it, "policy", jstr(sk_dmarc_policy_name(dr.policy)));
        jset(it, "disposition", jstr(sk_dmarc_policy_name(dr.disposition)));
        jset(it, "spf_aligned", json_boolean(dr.spf_aligned));
        jset(it, "dkim_aligned", json_boolean(dr.dkim_aligned));
        jset(it, "reason", jstr(dr.reason));
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
        if (e == SK_ERR_NOMEM) out_of_memory();
        add(r, "authres", V_FAIL, "the Authentication-Results field cannot be written: %s",
            err.text);
    }
    size_t nours = 0;
    sk_authres_span *spans = NULL;
    if (sk_authres_find_ours(m->head.data, m->head.len, m->authserv_id, &spans, &nours) == SK_OK &&
        nours) {
        item *it = add(r, "authres", V_INFO,
                       "the message already has %zu Authentication-Results field%s claiming to be "
                       "from %s: a receiver of that name removes them before adding its own",
                       nours, nours == 1 ? "" : "s", m->authserv_id);
        jset(it, "fields", json_integer((json_int_t)nours));
    }
    sk_free(spans);
    if (!e) sk_dmarc_result_clear(&dr);
    sk_spf_outcome_free(mf);
    sk_spf_outcome_free(he);
    sk_dkim_verifier_free(v);
    sk_free(ar);
    return 0;
}

/* ====================================================================== */
/* output and exit codes                                                   */
/* ====================================================================== */

/* Exit codes (docs/authentication.md "Checking a domain"): 0 nothing wrong
 * (warnings and notes allowed), 65 a problem found, 75 no problem found but
 * a check could not finish (DNS failed for now). */
static int exit_code(const run *r, size_t *problems, size_t *warnings, size_t *temporary)
{
    *problems = *warnings = *temporary = 0;
    for (size_t i = 0; i < r->n; i++) {
        const item *it = &r->items[i];
        if (it->v == V_FAIL && it->temporary)
            (*temporary)++;
        else if (it->v == V_FAIL)
            (*problems)++;
        else if (it->v == V_WARN)
            (*warnings)++;
    }
    return *problems ? EX_DATAERR : *temporary ? EX_TEMPFAIL : EX_OK;
}

static void print_items(const run *r)
{
    for (size_t i = 0; i < r->n; i++) {
        const item *it = &r->items[i];
        printf("  %s %-9s %s\n", verdict_marks[it->v], it->check, it->detail);
        const char *l = sk_buf_cstr(&it->more);
        while (*l) {
            size_t n = strcspn(l, "\n");
            printf("                   %.*s\n", (int)n, l);
            l += n + (l[n] == '\n');
        }
        if (it->fix)
            printf("         %-7s %s\n",
                   it->temporary     ? "retry"
                   : it->v == V_INFO ? "hint"
                                     : "fix",
                   it->fix);
    }
}

static void print_result(size_t problems, size_t warnings, size_t temporary, int rc)
{
    if (problems)
        printf("result: %zu problem%s, %zu warning%s (exit %d)\n", problems,
               problems == 1 ? "" : "s", warnings, warnings == 1 ? "" : "s", rc);
    else if (temporary)
        printf("result: %zu check%s could not finish: DNS failed for now (exit %d)\n", temporary,
               temporary == 1 ? "" : "s", rc);
    else if (warnings)
        printf("result: OK with %zu warning%s\n", warnings, warnings == 1 ? "" : "s");
    else
        printf("result: OK\n");
}

static json_t *items_json(const run *r)
{
    json_t *a = json_array();
    if (!a) out_of_memory();
    for (size_t i = 0; i < r->n; i++) {
        const item *it = &r->items[i];
        json_t *o = json_object();
        if (!o || json_array_append_new(a, o)) out_of_memory();
        json_object_set_new(o, "check", json_stringn_z(it->check));
        json_object_set_new(o, "status", json_stringn_z(verdict_names[it->v]));
        json_object_set_new(o, "detail", jstr(it->detail));
        json_object_set_new(o, "fix", jstr(it->fix));
        json_object_set_new(o, "temporary", json_boolean(it->temporary));
        json_t *lines = json_array();
        const char *l = sk_buf_cstr(&it->more);
        while (*l) {
            size_t n = strcspn(l, "\n");
            char *line = printable(l, n);
            json_array_append_new(lines, json_stringn_z(line));
            sk_free(line);
            l += n + (l[n] == '\n');
        }
        json_object_set_new(o, "lines", lines);
        json_object_update(o, it->data);
    }
    return a;
}

/* The run's verdict in the --json output: status, exit code, counts, and
 * every check. */
static void json_verdict(json_t *root, const run *r, int rc, size_t problems, size_t warnings,
                         size_t temporary)
{
    json_object_set_new(root, "status",
                        json_stringn_z(problems || temporary ? "fail"
                                       : warnings            ? "warn"
                                                             : "ok"));
    json_object_set_new(root, "exit_code", json_integer(rc));
    json_object_set_new(root, "problems", json_integer((json_int_t)problems));
    json_object_set_new(root, "warnings", json_integer((json_int_t)warnings));
    json_object_set_new(root, "checks", items_json(r));
}

static void emit_json(json_t *root)
{
    if (json_dumpf(root, stdout, JSON_COMPACT | JSON_PRESERVE_ORDER)) out_of_memory();
    putchar('\n');
    json_decref(root);
}

static void run_free(run *r)
{
    for (size_t i = 0; i < r->n; i++) {
        sk_free(r->items[i].detail);
        sk_free(r->items[i].fix);
        sk_buf_free(&r->items[i].more);
        json_decref(r->items[i].data);
    }
    sk_free(r->items);
}

/* ====================================================================== */
/* arguments                                                               */
/* ====================================================================== */

static void usage(FILE *f)
{
    fprintf(
        f, "usage: smtpkit check DOMAIN [--selector S]... [--ip ADDR [--dnsbl ZONE]...] [options]\n"
           "       smtpkit check --message FILE --ip ADDR --helo NAME --mail-from ADDR [options]\n"
           "\n"
           "Is DOMAIN set up to send and receive mail? Checks, each with a verdict (OK,\n"
           "INFO, WARN, FAIL) and the fix in plain words:\n"
           "  mx       MX records (null MX, implicit MX), each host's A/AAAA addresses\n"
           "  spf      one record, its syntax, DNS lookups (of 10) and void lookups (of 2),\n"
           "           what it says about other addresses (-all, ~all, ?all, +all), and\n"
           "           with --ip whether ADDR may send\n"
           "  dkim     the key at SELECTOR._domainkey.DOMAIN for each --selector: present,\n"
           "           parsable, RSA size (under 1024 bits FAIL, under 2048 WARN) or\n"
           "           Ed25519, t=y testing, revoked\n"
           "  dmarc    the policy (own or the organizational domain's), p/sp/np, pct,\n"
           "           rua/ruf and whether a report domain takes the reports\n"
           "  mta-sts  the _mta-sts record, the policy fetched over HTTPS (certificate\n"
           "           verified, no redirects), its mode, and its mx patterns against the MX\n"
           "           hosts (RFC 8461)\n"
           "  tls-rpt  the _smtp._tls record (RFC 8460)\n"
           "  ptr      with --ip: reverse DNS, and whether that name resolves back to ADDR\n"
           "  dnsbl    with --ip: each block list; 127.255.255.x answers are refusals\n"
           "\n"
           "With --message, the checks a receiver makes on a saved message instead:\n"
           "DKIM (every signature), SPF for MAIL FROM and HELO, DMARC, and the\n"
           "Authentication-Results field it would add: \"why did my message fail DMARC?\".\n"
           "\n"
           "options:\n"
           "  --selector S            a DKIM selector to check (repeatable)\n"
           "  --ip ADDR               the address mail is sent from (IPv4 or IPv6)\n"
           "  --dnsbl ZONE            a DNS block list to ask about --ip (repeatable; replaces\n"
           "                          the default zen.spamhaus.org and bl.spamcop.net;\n"
           "                          'none' for none)\n"
           "  --dns-server IP:PORT    resolver to ask (default: the system's)\n"
           "  --ca-file FILE          trust these CA certificates (PEM) for the MTA-STS policy\n"
           "                          host instead of the system's\n"
           "  --mta-sts-connect HOST:PORT\n"
           "                          fetch the MTA-STS policy from HOST:PORT, still verifying\n"
           "                          the certificate for mta-sts.DOMAIN (testing and\n"
           "                          troubleshooting, as curl's --connect-to)\n"
           "  --timeout DURATION      bound on each DNS try and on the policy fetch (default:\n"
           "                          5s a DNS try, 60s the fetch as RFC 8461 3.3 suggests)\n"
           "  --message FILE          check a saved message (- for standard input)\n"
           "  --helo NAME             with --message: the client's HELO/EHLO name\n"
           "  --mail-from ADDR        with --message: the MAIL FROM address ('' for <>)\n"
           "  --authserv-id NAME      with --message: the receiver's name in\n"
           "                          Authentication-Results (default: this host's name)\n"
           "  --json                  print one JSON object\n"
           "  -h, --help              this text\n"
           "\n"
           "Exit codes: 0 nothing wrong (warnings and notes allowed); 65 a problem was\n"
           "found (FAIL); 75 no problem found, but a check could not finish because DNS\n"
           "failed for now (try again); 64 usage; 66 the message cannot be read; 78 a bad\n"
           "--dns-server or an unusable --ca-file.\n");
}

/* "HOST:PORT", an IPv6 HOST in brackets. */
static int host_port_valid(const char *s)
{
    const char *colon = strrchr(s, ':');
    if (!colon || colon == s || !colon[1] || strlen(colon + 1) > 5) return 0;
    for (const char *p = colon + 1; *p; p++)
        if (*p < '0' || *p > '9') return 0;
    if (s[0] == '[') return colon[-1] == ']' && colon - s > 2;
    return memchr(s, ':', (size_t)(colon - s)) == NULL;
}

static int ip_valid(const char *s)
{
    unsigned char a[16];
    return inet_pton(AF_INET, s, a) == 1 || inet_pton(AF_INET6, s, a) == 1;
}

int cmd_check(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"selector", required_argument, NULL, 's'},
        {"ip", required_argument, NULL, 'i'},
        {"dnsbl", required_argument, NULL, 'b'},
        {"dns-server", required_argument, NULL, 'd'},
        {"ca-file", required_argument, NULL, 'c'},
        {"mta-sts-connect", required_argument, NULL, 'C'},
        {"timeout", required_argument, NULL, 'T'},
        {"message", required_argument, NULL, 'm'},
        {"helo", required_argument, NULL, 'H'},
        {"mail-from", required_argument, NULL, 'f'},
        {"authserv-id", required_argument, NULL, 'a'},
        {"json", no_argument, NULL, 'j'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *cmd = "check";
    const char *selectors[CHECK_SELECTORS_MAX];
    char *zones[CHECK_DNSBL_MAX];
    size_t n_sel = 0, n_zones = 0;
    int dnsbl_none = 0, json = 0, opt;
    const char *ip = NULL, *dns_server = NULL, *ca_file = NULL, *connect_to = NULL;
    const char *message = NULL, *helo = NULL, *mail_from = NULL, *authserv_id = NULL;
    const char *domain_only = NULL, *message_only = NULL;
    int timeout_ms = 0, rc = EX_OK;
    opterr = 0;
    optind = 1;
    /* -h and --help win wherever they stand (before any work or error). */
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--")) break;
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            usage(stdout);
            return EX_OK;
        }
    }
    while ((opt = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
        switch (opt) {
        case 's':
            if (n_sel == CHECK_SELECTORS_MAX)
                rc = cli_usage_error(cmd, "at most %d --selector", CHECK_SELECTORS_MAX);
            else if (!sk_dkim_name_valid(optarg))
                rc = cli_usage_error(cmd, "--selector '%s' is not a DKIM selector", optarg);
            else
                selectors[n_sel++] = optarg;
            domain_only = "--selector";
            break;
        case 'i':
            if (!ip_valid(optarg))
                rc = cli_usage_error(cmd, "--ip '%s' is not an IPv4 or IPv6 address", optarg);
            ip = optarg;
            break;
        case 'b':
            domain_only = "--dnsbl";
            if (!strcmp(optarg, "none")) {
                dnsbl_none = 1;
                break;
            }
            if (n_zones == CHECK_DNSBL_MAX) {
                rc = cli_usage_error(cmd, "at most %d --dnsbl", CHECK_DNSBL_MAX);
                break;
            }
            zones[n_zones] = xcalloc(SK_SMTP_DOMAIN_MAX_OCTETS + 1, 1);
            if (sk_dmarc_domain_normalize(optarg, zones[n_zones]) != SK_OK) {
                sk_free(zones[n_zones]);
                rc = cli_usage_error(cmd, "--dnsbl '%s' is not a DNS zone", optarg);
                break;
            }
            n_zones++;
            break;
        case 'd':
            dns_server = optarg;
            break;
        case 'c':
            ca_file = optarg;
            domain_only = "--ca-file";
            break;
        case 'C':
            if (!host_port_valid(optarg))
                rc = cli_usage_error(cmd, "--mta-sts-connect '%s' is not HOST:PORT", optarg);
            connect_to = optarg;
            domain_only = "--mta-sts-connect";
            break;
        case 'T': {
            uint64_t ms;
            if (sk_parse_duration_ms(optarg, &ms) != SK_OK || ms == 0 || ms > 3600000)
                rc = cli_usage_error(cmd, "bad --timeout '%s' (e.g. 10s, 500ms)", optarg);
            else
                timeout_ms = (int)ms;
            break;
        }
        case 'm':
            message = optarg;
            break;
        case 'H':
            helo = optarg;
            message_only = "--helo";
            break;
        case 'f':
            mail_from = optarg;
            message_only = "--mail-from";
            break;
        case 'a':
            authserv_id = optarg;
            message_only = "--authserv-id";
            break;
        case 'j':
            json = 1;
            break;
        default:
            rc = cli_getopt_error(cmd, opt, argv, longopts);
            break;
        }
        if (rc) goto out;
    }
    const char *domain_arg = optind < argc ? argv[optind] : NULL;
    if (optind + 1 < argc) {
        rc = cli_usage_error(cmd, "unexpected argument '%s'", argv[optind + 1]);
        goto out;
    }
    if (!message && !domain_arg) {
        rc = cli_usage_error(cmd, "give a DOMAIN to check, or --message FILE");
        goto out;
    }
    if (message && domain_arg) {
        rc = cli_usage_error(cmd, "give a DOMAIN or --message FILE, not both ('%s')", domain_arg);
        goto out;
    }
    if (message && domain_only) {
        rc = cli_usage_error(cmd, "%s is for checking a domain, not a --message", domain_only);
        goto out;
    }
    if (!message && message_only) {
        rc = cli_usage_error(cmd, "%s goes with --message", message_only);
        goto out;
    }
    if (message && (!ip || !helo || !mail_from)) {
        rc = cli_usage_error(cmd, "--message needs %s",
                             !ip     ? "--ip ADDR (the client's address)"
                             : !helo ? "--helo NAME"
                                     : "--mail-from ADDR");
        goto out;
    }
    if (message && !helo[0]) {
        rc = cli_usage_error(cmd, "--helo must not be empty");
        goto out;
    }
    if (ca_file) {
        FILE *f = fopen(ca_file, "r");
        if (!f) {
            cli_warn(cmd, "cannot read --ca-file %s: %s", ca_file, strerror(errno));
            rc = EX_CONFIG;
            goto out;
        }
        fclose(f);
    }

    run r = {.cmd = cmd, .json = json};
    r.ro.server = dns_server;
    r.ro.timeout_ms = timeout_ms;
    if (message) {
        char host[SK_SMTP_DOMAIN_MAX_OCTETS + 1] = "localhost";
        if (!authserv_id) {
            if (gethostname(host, sizeof host) != 0 || !host[0])
                snprintf(host, sizeof host, "localhost");
            host[sizeof host - 1] = '\0';
            authserv_id = host;
        }
        message_run m = {.r = &r,
                         .path = message,
                         .ip = ip,
                         .helo = helo,
                         .mail_from = mail_from,
                         .authserv_id = authserv_id,
                         .head = SK_BUF_INIT(SK_DKIM_HEADER_BLOCK_MAX_OCTETS + 4)};
        rc = cli_message_read(cmd, message, &m.msg);
        if (rc != EX_OK) goto out;
        sk_buf header = SK_BUF_INIT(SK_AUTHRES_HEADER_MAX_OCTETS);
        if (!json)
            printf("smtpkit check --message %s: client %s, HELO %s, MAIL FROM <%s>\n", message, ip,
                   helo, mail_from);
        run_message(&m, &header);
        size_t problems, warnings, temporary;
        rc = exit_code(&r, &problems, &warnings, &temporary);
        if (json) {
            json_t *root = json_object();
            if (!root) out_of_memory();
            json_object_set_new(root, "message", jstr(message));
            json_object_set_new(root, "ip", jstr(ip));
            json_object_set_new(root, "helo", jstr(helo));
            json_object_set_new(root, "mail_from", jstr(mail_from));
            json_object_set_new(root, "authserv_id", jstr(authserv_id));
            json_verdict(root, &r, rc, problems, warnings, temporary);
            json_object_set_new(root, "authentication_results",
                                header.len ? jtext(header.data) : json_null());
            emit_json(root);
        } else {
            print_items(&r);
            if (header.len) {
                /* The field as a receiver would write it (CRLF shown as line ends). */
                const char *l = header.data;
                while (*l) {
                    size_t n = strcspn(l, "\r\n");
                    printf("%.*s\n", (int)n, l);
                    l += n;
                    while (*l == '\r' || *l == '\n') l++;
                }
            }
            print_result(problems, warnings, temporary, rc);
        }
        sk_buf_free(&header);
        sk_buf_free(&m.head);
        free(m.msg.raw);
        run_free(&r);
        goto out;
    }

    char domain[SK_SMTP_DOMAIN_MAX_OCTETS + 1];
    if (sk_dmarc_domain_normalize(domain_arg, domain) != SK_OK) {
        rc = cli_usage_error(cmd, "'%s' is not a domain name", domain_arg);
        goto out;
    }
    const char *const *bl = dnsbl_default;
    size_t n_bl = 0;
    if (dnsbl_none)
        n_bl = 0;
    else if (n_zones)
        bl = (const char *const *)zones, n_bl = n_zones;
    else
        while (dnsbl_default[n_bl]) n_bl++;
    domain_run d = {.r = &r,
                    .domain = domain,
                    .ip = ip,
                    .selectors = selectors,
                    .n_selectors = n_sel,
                    .dnsbl = bl,
                    .n_dnsbl = dnsbl_none ? 0 : n_bl,
                    .ca_file = ca_file,
                    .connect_to = connect_to,
                    .timeout_ms = timeout_ms};
    if (!json)
        printf("smtpkit check %s%s%s\n", domain, ip ? ", sending address " : "", ip ? ip : "");
    check_mx(&d);
    check_spf(&d);
    check_dkim(&d);
    check_dmarc(&d);
    size_t before = r.n;
    check_mtasts(&d);
    int have_mtasts = 0;
    for (size_t i = before; i < r.n; i++) have_mtasts |= r.items[i].v != V_INFO;
    check_tlsrpt(&d, have_mtasts);
    if (ip) {
        check_ptr(&d);
        check_dnsbl(&d);
    }
    size_t problems, warnings, temporary;
    rc = exit_code(&r, &problems, &warnings, &temporary);
    if (json) {
        json_t *root = json_object();
        if (!root) out_of_memory();
        json_object_set_new(root, "domain", jstr(domain));
        json_object_set_new(root, "ip", ip ? jstr(ip) : json_null());
        json_object_set_new(root, "selectors", json_strings((char *const *)selectors, n_sel));
        json_object_set_new(root, "dnsbl", json_strings((char *const *)d.dnsbl, d.n_dnsbl));
        json_verdict(root, &r, rc, problems, warnings, temporary);
        emit_json(root);
    } else {
        print_items(&r);
        print_result(problems, warnings, temporary, rc);
    }
    for (size_t i = 0; i < d.n_mx; i++) sk_free(d.mx[i]);
    sk_free(d.mx);
    run_free(&r);
out:
    for (size_t i = 0; i < n_zones; i++) sk_free(zones[i]);
    return rc;
}
