/* Private to src/dns: answers owned by the resolver (parsed from c-ares'
 * wire buffers, with their TTLs) and the cache that keeps them. */
#ifndef SK_DNS_INT_H
#define SK_DNS_INT_H

#include <smtpkit/dns.h>

#include <stdint.h>

/* One parsed answer: what an sk_dns_result shows, owned. */
typedef struct dns_answer {
    sk_dns_status status;
    sk_dns_type type;
    char *name;
    size_t count;
    char **values;
    size_t *lengths;
    uint32_t ttl_s;
    int truncated;
} dns_answer;

/* A new answer for name and type with status and no values; NULL when out
 * of memory. */
dns_answer *dns_answer_new(const char *name, sk_dns_type type, sk_dns_status status);
void dns_answer_free(dns_answer *a);
dns_answer *dns_answer_dup(const dns_answer *a);
/* Append one value of len octets (a NUL is added); past SK_DNS_RECORDS_MAX
 * values it is dropped and a->truncated set. */
SK_NODISCARD sk_err dns_answer_push(dns_answer *a, const char *v, size_t len);
/* Fill a from a c-ares query callback: the status it had, the values of
 * the answer section and the TTLs (smallest of the answer's records; for
 * NODATA and NXDOMAIN the SOA's negative TTL, RFC 2308 5). ares_status is
 * c-ares' status for the query; abuf may be NULL. */
void dns_answer_parse(dns_answer *a, int ares_status, const unsigned char *abuf, int alen);
/* The sk_dns_status of a c-ares status. */
sk_dns_status dns_status_of(int ares_status);

/* The cache: answers by (name without final dot, case-insensitive; type),
 * at most capacity of them, the least recently used evicted first. */
typedef struct dns_cache dns_cache;
dns_cache *dns_cache_new(size_t capacity);
void dns_cache_free(dns_cache *c);
/* A copy of the answer for name and type when one is kept and fresh at
 * now_ms, with ttl_s what is left of it (whole seconds); NULL otherwise
 * (and when out of memory: the caller then asks DNS). */
dns_answer *dns_cache_get(dns_cache *c, const char *name, sk_dns_type type, int64_t now_ms);
/* Keep a copy of a when it may be kept: SK_DNS_OK for min(ttl_s,
 * SK_DNS_CACHE_TTL_MAX_S), NODATA and NXDOMAIN for min(ttl_s,
 * SK_DNS_CACHE_NEGATIVE_TTL_MAX_S); never a TTL of 0 or a failure. */
void dns_cache_put(dns_cache *c, const dns_answer *a, int64_t now_ms);
void dns_cache_clear(dns_cache *c);
void dns_cache_stats(const dns_cache *c, sk_dns_cache_stats *out);

#endif
