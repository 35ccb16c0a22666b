/* Answers of plain lookups: values decoded by c-ares, TTLs and PTR names
 * read from the records of the message (RFC 1035 4.1.3), owned copies for
 * the cache. */
#include "dns_int.h"

#include <ares.h>
#include <ares_dns.h>
#include <arpa/inet.h>
#include <arpa/nameser.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

sk_dns_status dns_status_of(int st)
{
    switch (st) {
    case ARES_SUCCESS:
        return SK_DNS_OK;
    case ARES_ENODATA:
        return SK_DNS_NODATA;
    case ARES_ENOTFOUND:
    case ARES_EBADNAME: /* a name that cannot exist */
        return SK_DNS_NXDOMAIN;
    default: /* ESERVFAIL, EREFUSED, ETIMEOUT, ECONNREFUSED, EBADRESP, ENOMEM */
        return SK_DNS_TEMPFAIL;
    }
}

dns_answer *dns_answer_new(const char *name, sk_dns_type type, sk_dns_status status)
{
    dns_answer *a = sk_calloc(1, sizeof *a);
    if (!a) return NULL;
    a->name = sk_strdup(name);
    a->values = sk_calloc(SK_DNS_RECORDS_MAX, sizeof *a->values);
    a->lengths = sk_calloc(SK_DNS_RECORDS_MAX, sizeof *a->lengths);
    if (!a->name || !a->values || !a->lengths) {
        dns_answer_free(a);
        return NULL;
    }
    a->type = type;
    a->status = status;
    return a;
}

void dns_answer_free(dns_answer *a)
{
    if (!a) return;
    for (size_t i = 0; i < a->count; i++) sk_free(a->values[i]);
    sk_free(a->values);
    sk_free(a->lengths);
    sk_free(a->name);
    sk_free(a);
}

sk_err dns_answer_push(dns_answer *a, const char *v, size_t len)
{
    if (a->count >= SK_DNS_RECORDS_MAX) {
        a->truncated = 1;
        return SK_OK;
    }
    char *copy = sk_malloc(len + 1);
    if (!copy) return SK_ERR_NOMEM;
    memcpy(copy, v, len);
    copy[len] = '\0';
    a->values[a->count] = copy;
    a->lengths[a->count++] = len;
    return SK_OK;
}

dns_answer *dns_answer_dup(const dns_answer *a)
{
    dns_answer *d = dns_answer_new(a->name, a->type, a->status);
    if (!d) return NULL;
    for (size_t i = 0; i < a->count; i++) {
        if (dns_answer_push(d, a->values[i], a->lengths[i])) {
            dns_answer_free(d);
            return NULL;
        }
    }
    d->ttl_s = a->ttl_s;
    d->truncated = a->truncated;
    return d;
}

/* ---- the records of a message ---- */

typedef struct rr_view {
    int type;
    uint32_t ttl;
    const unsigned char *rdata;
    int rdlen;
} rr_view;

typedef void (*rr_fn)(void *ctx, const unsigned char *abuf, int alen, const rr_view *rr);

static int skip_name(const unsigned char *p, const unsigned char *abuf, int alen, long *enclen)
{
    char *name = NULL;
    if (ares_expand_name(p, abuf, alen, &name, enclen) != ARES_SUCCESS) return -1;
    ares_free_string(name);
    return 0;
}

/* Call fn for each record of the answer (authority 0) or authority
 * (authority 1) section. -1 when the message is malformed. */
static int walk_section(const unsigned char *abuf, int alen, int authority, rr_fn fn, void *ctx)
{
    if (!abuf || alen < HFIXEDSZ) return -1;
    unsigned qd = DNS_HEADER_QDCOUNT(abuf), an = DNS_HEADER_ANCOUNT(abuf);
    unsigned ns = DNS_HEADER_NSCOUNT(abuf);
    const unsigned char *p = abuf + HFIXEDSZ, *end = abuf + alen;
    long n;
    for (unsigned i = 0; i < qd; i++) {
        if (skip_name(p, abuf, alen, &n) || end - p - n < QFIXEDSZ) return -1;
        p += n + QFIXEDSZ;
    }
    unsigned skip = authority ? an : 0, total = skip + (authority ? ns : an);
    for (unsigned i = 0; i < total; i++) {
        if (skip_name(p, abuf, alen, &n) || end - p - n < RRFIXEDSZ) return -1;
        p += n;
        rr_view rr = {DNS_RR_TYPE(p), (uint32_t)DNS_RR_TTL(p), p + RRFIXEDSZ, DNS_RR_LEN(p)};
        p += RRFIXEDSZ;
        if (end - p < rr.rdlen) return -1;
        /* RFC 2181 8: a TTL with the top bit set is taken as 0. */
        if (rr.ttl > 0x7fffffffu) rr.ttl = 0;
        if (i >= skip) fn(ctx, abuf, alen, &rr);
        p += rr.rdlen;
    }
    return 0;
}

typedef struct ttl_walk {
    uint32_t ttl;
    int seen;
} ttl_walk;

static void min_ttl(void *ctx, const unsigned char *abuf, int alen, const rr_view *rr)
{
    ttl_walk *w = ctx;
    if (!w->seen || rr->ttl < w->ttl) w->ttl = rr->ttl;
    w->seen = 1;
}

/* RFC 2308 5: the negative TTL is the smaller of the SOA record's TTL and
 * its MINIMUM field (the last of its five numbers). */
static void soa_ttl(void *ctx, const unsigned char *abuf, int alen, const rr_view *rr)
{
    ttl_walk *w = ctx;
    if (rr->type != ns_t_soa || w->seen) return;
    const unsigned char *p = rr->rdata, *end = rr->rdata + rr->rdlen;
    long n;
    for (int k = 0; k < 2; k++) { /* MNAME, RNAME */
        if (p >= end || skip_name(p, abuf, alen, &n) || n > end - p) return;
        p += n;
    }
    if (end - p < 20) return;
    uint32_t minimum = (uint32_t)DNS__32BIT(p + 16);
    if (minimum > 0x7fffffffu) minimum = 0;
    w->ttl = minimum < rr->ttl ? minimum : rr->ttl;
    w->seen = 1;
}

typedef struct ptr_walk {
    dns_answer *a;
    int failed;
} ptr_walk;

static void collect_ptr(void *ctx, const unsigned char *abuf, int alen, const rr_view *rr)
{
    ptr_walk *w = ctx;
    if (rr->type != ns_t_ptr || w->failed) return;
    char *name = NULL;
    long n;
    if (ares_expand_name(rr->rdata, abuf, alen, &name, &n) != ARES_SUCCESS) {
        w->failed = 1;
        return;
    }
    if (dns_answer_push(w->a, name, strlen(name))) w->failed = 1;
    ares_free_string(name);
}

static void parse_values(dns_answer *a, const unsigned char *abuf, int alen)
{
    int st;
    if (a->type == SK_DNS_A || a->type == SK_DNS_AAAA) {
        /* One more than we keep, to know when some were dropped. */
        int cnt = SK_DNS_RECORDS_MAX + 1;
        char ip[INET6_ADDRSTRLEN];
        if (a->type == SK_DNS_A) {
            struct ares_addrttl v[SK_DNS_RECORDS_MAX + 1];
            st = ares_parse_a_reply(abuf, alen, NULL, v, &cnt);
            for (int i = 0; st == ARES_SUCCESS && i < cnt; i++) {
                inet_ntop(AF_INET, &v[i].ipaddr, ip, sizeof ip);
                if (dns_answer_push(a, ip, strlen(ip))) st = ARES_ENOMEM;
            }
        } else {
            struct ares_addr6ttl v[SK_DNS_RECORDS_MAX + 1];
            st = ares_parse_aaaa_reply(abuf, alen, NULL, v, &cnt);
            for (int i = 0; st == ARES_SUCCESS && i < cnt; i++) {
                inet_ntop(AF_INET6, &v[i].ip6addr, ip, sizeof ip);
                if (dns_answer_push(a, ip, strlen(ip))) st = ARES_ENOMEM;
            }
        }
        a->status = dns_status_of(st);
    } else if (a->type == SK_DNS_MX) {
        struct ares_mx_reply *mx = NULL;
        st = ares_parse_mx_reply(abuf, alen, &mx);
        a->status = dns_status_of(st);
        for (struct ares_mx_reply *m = mx; m; m = m->next) {
            char line[SK_SMTP_DOMAIN_MAX_OCTETS + 16];
            int n = snprintf(line, sizeof line, "%u %s", m->priority, m->host[0] ? m->host : ".");
            if (n < 0 || (size_t)n >= sizeof line || dns_answer_push(a, line, (size_t)n))
                a->status = SK_DNS_TEMPFAIL;
        }
        if (mx) ares_free_data(mx);
    } else if (a->type == SK_DNS_TXT) {
        struct ares_txt_ext *txt = NULL;
        st = ares_parse_txt_reply_ext(abuf, alen, &txt);
        a->status = dns_status_of(st);
        sk_buf b = SK_BUF_INIT(SK_DNS_TXT_MAX_OCTETS);
        int open = 0;
        /* RFC 7208 3.3: a record's strings are joined without separator. */
        for (struct ares_txt_ext *t = txt; t; t = t->next) {
            if (t->record_start && open) {
                if (dns_answer_push(a, (const char *)b.data, b.len)) a->status = SK_DNS_TEMPFAIL;
                sk_buf_reset(&b);
            }
            if (sk_buf_append(&b, t->txt, t->length)) a->status = SK_DNS_TEMPFAIL;
            open = 1;
        }
        if (open && dns_answer_push(a, b.data ? (const char *)b.data : "", b.len))
            a->status = SK_DNS_TEMPFAIL;
        sk_buf_free(&b);
        if (txt) ares_free_data(txt);
    } else {
        ptr_walk w = {a, 0};
        if (walk_section(abuf, alen, 0, collect_ptr, &w) || w.failed) a->status = SK_DNS_TEMPFAIL;
    }
    if (a->status == SK_DNS_OK && !a->count) a->status = SK_DNS_NODATA;
}

void dns_answer_parse(dns_answer *a, int ares_status, const unsigned char *abuf, int alen)
{
    a->status = dns_status_of(ares_status);
    a->ttl_s = 0;
    if (a->status == SK_DNS_OK) parse_values(a, abuf, alen);
    ttl_walk w = {0, 0};
    if (a->status == SK_DNS_OK) {
        if (walk_section(abuf, alen, 0, min_ttl, &w) == 0 && w.seen) a->ttl_s = w.ttl;
    } else if (a->status == SK_DNS_NODATA || a->status == SK_DNS_NXDOMAIN) {
        if (abuf && walk_section(abuf, alen, 1, soa_ttl, &w) == 0 && w.seen) a->ttl_s = w.ttl;
    }
}
