/* The pure parts of MX routing: null MX detection (RFC 7505), the order in
 * which MX hosts are tried (RFC 5321 5.1) and address literals. No I/O. */
#include <smtpkit/dns.h>

#include <arpa/inet.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

static int is_root(const char *host)
{
    return !host || host[0] == '\0' || strcmp(host, ".") == 0;
}

int sk_mx_is_null(const sk_mx_record *recs, size_t n)
{
    /* RFC 7505 3: "a single MX RR with RDATA of preference 0 and a
     * zero-length label". A root host among other MX records is a broken
     * configuration, not a null MX: the caller skips that host. */
    return n == 1 && recs[0].preference == 0 && is_root(recs[0].host);
}

static size_t os_random(void *ctx, size_t n)
{
    (void)ctx;
    uint64_t v = 0;
    /* Without OS randomness the order among equals stays as the server
     * returned it, which is still a correct order. */
    if (sk_random(&v, sizeof v) != SK_OK) return 0;
    return (size_t)(v % n);
}

void sk_mx_order(sk_mx_record *recs, size_t n, sk_rand_fn rnd, void *rnd_ctx)
{
    if (!rnd) rnd = os_random;
    /* Insertion sort: stable, and n is small (bounded by the answer). */
    for (size_t i = 1; i < n; i++) {
        sk_mx_record r = recs[i];
        size_t j = i;
        while (j > 0 && recs[j - 1].preference > r.preference) {
            recs[j] = recs[j - 1];
            j--;
        }
        recs[j] = r;
    }
    /* RFC 5321 5.1: among hosts of equal preference the client SHOULD pick
     * at random to spread the load; Fisher-Yates within each group. */
    size_t start = 0;
    while (start < n) {
        size_t end = start + 1;
        while (end < n && recs[end].preference == recs[start].preference) end++;
        for (size_t i = end - start; i > 1; i--) {
            size_t k = rnd(rnd_ctx, i);
            if (k >= i) k = i - 1;
            sk_mx_record t = recs[start + i - 1];
            recs[start + i - 1] = recs[start + k];
            recs[start + k] = t;
        }
        start = end;
    }
}

static const char *const route_names[] = {
    [SK_ROUTE_OK] = "ok",
    [SK_ROUTE_NULL_MX] = "null-mx",
    [SK_ROUTE_NXDOMAIN] = "nxdomain",
    [SK_ROUTE_NO_ADDRESS] = "no-address",
    [SK_ROUTE_TEMPFAIL] = "tempfail",
};
_Static_assert(sizeof route_names / sizeof route_names[0] == SK_ROUTE__COUNT, "route_names");

const char *sk_route_status_name(sk_route_status s)
{
    return (unsigned)s < SK_ROUTE__COUNT ? route_names[s] : "unknown";
}

static const char *const dns_names[] = {
    [SK_DNS_OK] = "ok",
    [SK_DNS_NODATA] = "nodata",
    [SK_DNS_NXDOMAIN] = "nxdomain",
    [SK_DNS_TEMPFAIL] = "tempfail",
};
_Static_assert(sizeof dns_names / sizeof dns_names[0] == SK_DNS__COUNT, "dns_names");

const char *sk_dns_status_name(sk_dns_status s)
{
    return (unsigned)s < SK_DNS__COUNT ? dns_names[s] : "unknown";
}

void sk_route_free(sk_route *route)
{
    if (!route) return;
    for (size_t i = 0; i < route->nhosts; i++) {
        sk_free(route->hosts[i].name);
        sk_free(route->hosts[i].addrs);
    }
    sk_free(route->hosts);
    sk_free(route->domain);
    sk_free(route);
}

sk_err sk_route_from_literal(const char *domain, sk_route **out)
{
    *out = NULL;
    size_t n = domain ? strlen(domain) : 0;
    if (n < 2 || domain[0] != '[' || domain[n - 1] != ']') return SK_ERR_INVAL;
    char ip[64];
    if (n - 2 >= sizeof ip) return SK_ERR_SYNTAX;
    memcpy(ip, domain + 1, n - 2);
    ip[n - 2] = '\0';
    sk_dns_addr a = {0};
    unsigned char bin[16];
    /* RFC 5321 4.1.3: IPv6 literals carry the "IPv6:" tag; general
     * address literals of other tags are not routable here. */
    if (strncasecmp(ip, "IPv6:", 5) == 0 && inet_pton(AF_INET6, ip + 5, bin) == 1) {
        a.family = AF_INET6;
        inet_ntop(AF_INET6, bin, a.ip, sizeof a.ip);
    } else if (inet_pton(AF_INET, ip, bin) == 1) {
        a.family = AF_INET;
        inet_ntop(AF_INET, bin, a.ip, sizeof a.ip);
    } else {
        return SK_ERR_SYNTAX;
    }
    sk_route *rt = sk_calloc(1, sizeof *rt);
    if (!rt) return SK_ERR_NOMEM;
    rt->domain = sk_strdup(domain);
    rt->hosts = sk_calloc(1, sizeof *rt->hosts);
    if (rt->hosts) {
        rt->nhosts = 1;
        rt->hosts[0].name = sk_strdup(domain);
        rt->hosts[0].addrs = sk_calloc(1, sizeof a);
    }
    if (!rt->domain || !rt->hosts || !rt->hosts[0].name || !rt->hosts[0].addrs) {
        sk_route_free(rt);
        return SK_ERR_NOMEM;
    }
    rt->implicit_mx = 1;
    rt->hosts[0].addrs[0] = a;
    rt->hosts[0].naddrs = 1;
    *out = rt;
    return SK_OK;
}
