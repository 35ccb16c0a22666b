/* Asynchronous DNS on a libevent loop: MX routing (RFC 5321 section 5,
 * RFC 7505 null MX), plain A / AAAA / TXT / MX / PTR lookups with their TTLs,
 * and a small cache of plain answers that honours those TTLs. */
#ifndef SMTPKIT_DNS_H
#define SMTPKIT_DNS_H

#include "util.h"

#ifdef __cplusplus
extern "C" {
#endif

struct event_base;

/* A resolver lives on one event_base; all callbacks run from that loop.
 * Opaque; sk_resolver_free cancels what is pending (those callbacks are
 * then never called). */
typedef struct sk_resolver sk_resolver;

typedef struct sk_resolver_opts {
    const char *server;   /* "IP:PORT", "IP" (port 53), "[IPv6]:PORT"; NULL = system's */
    int timeout_ms;       /* per try; 0 = SK_DNS_TIMEOUT_MS_DEFAULT */
    int tries;            /* per server; 0 = SK_DNS_TRIES_DEFAULT */
    int prefer_ipv6;      /* 1: a host's IPv6 addresses come before its IPv4 ones */
    const sk_logger *log; /* may be NULL; copied */
    /* The cache of plain lookups (sk_resolver_lookup, sk_resolver_query;
     * MX routing never uses it): answers kept, 0 = SK_DNS_CACHE_ENTRIES_DEFAULT,
     * negative = no cache. */
    int cache_entries;
    /* Monotonic milliseconds for cache expiry; NULL = sk_now_ms. Tests
     * inject a clock they advance. */
    int64_t (*clock_ms)(void *ctx);
    void *clock_ctx;
} sk_resolver_opts;

/* server: as in sk_resolver_opts (NULL = /etc/resolv.conf). NULL on error
 * (err says why: SK_ERR_CONFIG for a bad server string). */
sk_resolver *sk_resolver_new(struct event_base *base, const char *server, sk_error *err);
sk_resolver *sk_resolver_new_opts(struct event_base *base, const sk_resolver_opts *o,
                                  sk_error *err);
/* Cancels pending lookups without calling their callbacks. May be called
 * from inside one of the resolver's callbacks (the release is then deferred
 * until the callback returns). Accepts NULL. */
void sk_resolver_free(sk_resolver *r);
/* The loop the resolver runs on (for callers that add timers beside their
 * lookups). */
struct event_base *sk_resolver_base(const sk_resolver *r);

/* Outcome of one lookup. */
typedef enum sk_dns_status {
    SK_DNS_OK = 0,   /* records found */
    SK_DNS_NODATA,   /* the name exists but has no records of that type */
    SK_DNS_NXDOMAIN, /* the name does not exist (permanent) */
    SK_DNS_TEMPFAIL, /* SERVFAIL, REFUSED, timeout, network: try again later */
    SK_DNS__COUNT
} sk_dns_status;
const char *sk_dns_status_name(sk_dns_status s);

typedef enum sk_dns_type {
    SK_DNS_A = 1,
    SK_DNS_PTR = 12,
    SK_DNS_MX = 15,
    SK_DNS_TXT = 16,
    SK_DNS_AAAA = 28,
} sk_dns_type;

/* Plain lookup result: values as text, one per record, in the order of
 * the answer. A/AAAA: the address ("192.0.2.1", "2001:db8::1"); TXT: each
 * record's strings concatenated (RFC 7208 3.3), which may hold any octet,
 * NUL included (lengths[] has the length; a record of no strings, invalid
 * by RFC 1035 3.3.14, is not reported); MX: "PREFERENCE HOST" ("." for
 * the null MX host); PTR: the host name without its final dot.
 *
 * status tells apart what RFC 7208 4.6.4 calls void lookups: SK_DNS_NODATA
 * (the name exists, no record of the type) and SK_DNS_NXDOMAIN (no such
 * name), from SK_DNS_OK (count >= 1) and SK_DNS_TEMPFAIL. */
typedef struct sk_dns_result {
    sk_dns_status status;
    sk_dns_type type;
    const char *name;
    size_t count;
    char **values;
    const size_t *lengths; /* octets of each value (without the NUL after it) */
    /* Seconds the answer may still be used: the smallest TTL of the answer's
     * records (CNAMEs included); for NODATA and NXDOMAIN the negative TTL of
     * the SOA in the authority section (RFC 2308 5), 0 without one; for a
     * cached answer what is left of it. 0 for TEMPFAIL. */
    uint32_t ttl_s;
    int from_cache; /* 1: served from the resolver's cache */
    int truncated;  /* 1: the answer had more than SK_DNS_RECORDS_MAX records; the rest were dropped
                     */
} sk_dns_result;
/* Called once per lookup; res is valid only during the call. Always from
 * the loop, never before sk_resolver_lookup / sk_resolver_query return
 * (a cached answer, or a name that cannot be queried at all, is delivered
 * on the loop's next turn). */
typedef void (*sk_dns_cb)(void *ctx, const sk_dns_result *res);
SK_NODISCARD sk_err sk_resolver_lookup(sk_resolver *r, const char *name, sk_dns_type type,
                                       sk_dns_cb cb, void *ctx);

/* The same with flags and a handle that cancels the lookup (its callback is
 * then never called). The handle is valid until the callback has been
 * called or the lookup cancelled; handle may be NULL. */
typedef struct sk_dns_query sk_dns_query;
enum {
    SK_DNS_NO_CACHE = 1 << 0, /* neither read nor fill the cache */
};
SK_NODISCARD sk_err sk_resolver_query(sk_resolver *r, const char *name, sk_dns_type type,
                                      unsigned flags, sk_dns_cb cb, void *ctx,
                                      sk_dns_query **handle);
/* Accepts NULL. Must not be called for a lookup whose callback has run. */
void sk_dns_query_cancel(sk_dns_query *q);

/* PTR of an address ("192.0.2.1", "2001:db8::1"): a PTR lookup of its
 * reverse name. SK_ERR_INVAL when ip is not an address. */
SK_NODISCARD sk_err sk_resolver_ptr(sk_resolver *r, const char *ip, sk_dns_cb cb, void *ctx);
/* The reverse name of an address: "1.2.0.192.in-addr.arpa" (RFC 1035
 * 3.5), or 32 nibbles then "ip6.arpa" (RFC 3596 2.5), lowercase, without a
 * final dot. SK_ERR_INVAL when ip is not an address, SK_ERR_TOO_LONG when
 * size is under SK_DNS_REVERSE_NAME_OCTETS. */
#define SK_DNS_REVERSE_NAME_OCTETS 74
SK_NODISCARD sk_err sk_dns_reverse_name(const char *ip, char *out, size_t size);

/* The cache (see sk_resolver_opts.cache_entries): positive answers are
 * kept for their TTL up to SK_DNS_CACHE_TTL_MAX_S, NODATA and NXDOMAIN for
 * their negative TTL up to SK_DNS_CACHE_NEGATIVE_TTL_MAX_S; failures are
 * never kept. When full, the answer used least recently goes. */
typedef struct sk_dns_cache_stats {
    size_t entries, capacity;
    uint64_t hits, misses, evictions, expired;
} sk_dns_cache_stats;
void sk_resolver_cache_stats(const sk_resolver *r, sk_dns_cache_stats *out);
/* Forget every cached answer. */
void sk_resolver_cache_clear(sk_resolver *r);

/* MX routing (RFC 5321 section 5.1). */
typedef struct sk_dns_addr {
    int family;  /* AF_INET or AF_INET6 */
    char ip[46]; /* text form, INET6_ADDRSTRLEN */
} sk_dns_addr;

typedef struct sk_mx_host {
    char *name;
    unsigned preference;
    sk_dns_status status; /* of this host's address lookups */
    size_t naddrs;
    sk_dns_addr *addrs; /* IPv4 then IPv6 (or the reverse with prefer_ipv6) */
} sk_mx_host;

typedef enum sk_route_status {
    SK_ROUTE_OK = 0,     /* hosts[] has at least one host with an address */
    SK_ROUTE_NULL_MX,    /* RFC 7505: the domain accepts no mail; 5.1.10, do not retry */
    SK_ROUTE_NXDOMAIN,   /* the domain does not exist; 5.1.2, do not retry */
    SK_ROUTE_NO_ADDRESS, /* no MX host (or, without MX, the domain) has an address; 5.4.4 */
    SK_ROUTE_TEMPFAIL,   /* DNS failure; 4.4.3, retry later */
    SK_ROUTE__COUNT
} sk_route_status;
const char *sk_route_status_name(sk_route_status s);

typedef struct sk_route {
    sk_route_status status;
    char *domain;
    int implicit_mx;   /* 1: no MX records; hosts[0] is the domain itself (preference 0) */
    int permanent;     /* 1 for NULL_MX, NXDOMAIN, NO_ADDRESS */
    char enhanced[16]; /* RFC 3463 status for a failure ("5.1.10"), "" when OK */
    /* One line for people and DSN diagnostics; a DNS failure names the
     * lookup, the servers asked and why ("DNS lookup of MX for
     * example.net failed at 127.0.0.1:5353: timeout"). */
    char text[SK_DNS_ROUTE_TEXT_OCTETS];
    size_t nhosts;
    sk_mx_host *hosts; /* in the order to try: preference, random among equals */
} sk_route;

/* RFC 5321 4.1.3 address literals ("[192.0.2.1]", "[IPv6:2001:db8::1]")
 * name a host directly: no DNS. SK_OK with a one-host route (implicit_mx
 * 1, preference 0) when domain is one, SK_ERR_SYNTAX when it is a
 * malformed literal, SK_ERR_INVAL when it is not a literal at all. The
 * queue checks this before sk_resolver_mx. */
SK_NODISCARD sk_err sk_route_from_literal(const char *domain, sk_route **out);

/* The callback owns route and releases it with sk_route_free. */
typedef void (*sk_route_cb)(void *ctx, sk_route *route);
SK_NODISCARD sk_err sk_resolver_mx(sk_resolver *r, const char *domain, sk_route_cb cb, void *ctx);
void sk_route_free(sk_route *route);

/* Blocking conveniences for programs without an event loop (the CLI,
 * examples): run a private loop until the answer is in. The async calls
 * above are what a daemon uses. *out is released with sk_route_free. */
SK_NODISCARD sk_err sk_dns_route_sync(const sk_resolver_opts *o, const char *domain, sk_route **out,
                                      sk_error *err);
/* cb is called once, before this returns. Any plain type, PTR included
 * (name from sk_dns_reverse_name). */
SK_NODISCARD sk_err sk_dns_lookup_sync(const sk_resolver_opts *o, const char *name,
                                       sk_dns_type type, sk_dns_cb cb, void *ctx, sk_error *err);

/* The pure parts of routing, exposed for tests and for callers that get
 * MX records elsewhere. */
typedef struct sk_mx_record {
    unsigned preference;
    const char *host; /* "" or "." is the root (null MX) */
} sk_mx_record;
/* A random number in [0, n); NULL = sk_random. */
typedef size_t (*sk_rand_fn)(void *ctx, size_t n);
/* RFC 7505 3: exactly one record, preference 0, host the root. */
int sk_mx_is_null(const sk_mx_record *recs, size_t n);
/* RFC 5321 5.1: sort by preference (lowest first) and shuffle each group of
 * equal preference with rnd; stable otherwise. */
void sk_mx_order(sk_mx_record *recs, size_t n, sk_rand_fn rnd, void *rnd_ctx);

#ifdef __cplusplus
}
#endif
#endif
