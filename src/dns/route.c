/* MX routing (RFC 5321 5.1) on the resolver: the MX lookup, then A and AAAA
 * of every host, into an sk_route with the failure said in DNS's words. */
#include "resolver_int.h"

#include <arpa/inet.h>
#include <arpa/nameser.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

/* Why a query failed, in the words of DNS (RFC 1035 4.1.1 RCODEs) where
 * there are some. */
static const char *failure_name(int st)
{
    switch (st) {
    case ARES_ETIMEOUT:
        return "timeout";
    case ARES_ESERVFAIL:
        return "SERVFAIL";
    case ARES_EREFUSED:
        return "REFUSED";
    case ARES_ECONNREFUSED:
        /* Also what c-ares reports once every server answered SERVFAIL
         * or REFUSED (they are then skipped). */
        return "no usable answer (connection refused, SERVFAIL or REFUSED)";
    case ARES_EBADRESP:
        return "bad response";
    case ARES_EFORMERR:
        return "FORMERR";
    case ARES_ENOTIMP:
        return "NOTIMP";
    default:
        return ares_strerror(st);
    }
}

/* The servers the channel asks, "IP:PORT" ("[IPv6]:PORT"), comma
 * separated: a DNS failure names where it happened. */
static void servers_text(sk_resolver *r, char *out, size_t size)
{
    struct ares_addr_port_node *servers = NULL;
    size_t len = 0;
    out[0] = '\0';
    if (ares_get_servers_ports(r->ch, &servers) == ARES_SUCCESS) {
        for (struct ares_addr_port_node *s = servers; s && len < size; s = s->next) {
            char ip[INET6_ADDRSTRLEN];
            int v6 = s->family == AF_INET6;
            if (!inet_ntop(s->family, &s->addr, ip, sizeof ip)) continue;
            int n = snprintf(out + len, size - len, "%s%s%s%s:%d", len ? ", " : "", v6 ? "[" : "",
                             ip, v6 ? "]" : "", s->udp_port ? s->udp_port : NS_DEFAULTPORT);
            if (n < 0) break;
            len += (size_t)n;
        }
        ares_free_data(servers);
    }
    if (!out[0]) snprintf(out, size, "no configured server");
}

static void route_fail(sk_route *rt, sk_route_status st, const char *enhanced, const char *fmt, ...)
    SK_PRINTF(4, 5);

/* A temporary failure of one query: what was asked, where, and why. */
static void route_dns_fail(sk_resolver *r, sk_route *rt, const char *type, const char *name,
                           int status)
{
    char servers[256];
    servers_text(r, servers, sizeof servers);
    route_fail(rt, SK_ROUTE_TEMPFAIL, "4.4.3", "DNS lookup of %s for %s failed at %s: %s", type,
               name, servers, failure_name(status));
}

/* Parse addresses of one family into out[] (at most max). */
static sk_dns_status parse_addrs(int family, const unsigned char *abuf, int alen, sk_dns_addr *out,
                                 size_t max, size_t *n)
{
    *n = 0;
    int cnt = (int)max, st;
    if (family == AF_INET) {
        struct ares_addrttl a[SK_DNS_RECORDS_MAX];
        if (cnt > SK_DNS_RECORDS_MAX) cnt = SK_DNS_RECORDS_MAX;
        st = ares_parse_a_reply(abuf, alen, NULL, a, &cnt);
        if (st != ARES_SUCCESS) return dns_status_of(st);
        for (int i = 0; i < cnt; i++) {
            out[*n].family = AF_INET;
            inet_ntop(AF_INET, &a[i].ipaddr, out[*n].ip, sizeof out[*n].ip);
            (*n)++;
        }
    } else {
        struct ares_addr6ttl a[SK_DNS_RECORDS_MAX];
        if (cnt > SK_DNS_RECORDS_MAX) cnt = SK_DNS_RECORDS_MAX;
        st = ares_parse_aaaa_reply(abuf, alen, NULL, a, &cnt);
        if (st != ARES_SUCCESS) return dns_status_of(st);
        for (int i = 0; i < cnt; i++) {
            out[*n].family = AF_INET6;
            inet_ntop(AF_INET6, &a[i].ip6addr, out[*n].ip, sizeof out[*n].ip);
            (*n)++;
        }
    }
    return *n ? SK_DNS_OK : SK_DNS_NODATA;
}

/* ---- the routing job ---- */

typedef struct host_state {
    sk_dns_addr v4[SK_DNS_ADDRS_PER_HOST_MAX], v6[SK_DNS_ADDRS_PER_HOST_MAX];
    size_t n4, n6;
    sk_dns_status st4, st6;
    int ares4, ares6; /* c-ares status of each query, for the failure text */
} host_state;

typedef struct mx_job {
    sk_resolver *r;
    sk_route_cb cb;
    void *ctx;
    sk_route *route;
    host_state *hs;
    int pending;
    int dead; /* a query was cancelled: the resolver is going away */
} mx_job;

typedef struct addr_query {
    mx_job *job;
    size_t host;
    int family;
} addr_query;

static void route_fail(sk_route *rt, sk_route_status st, const char *enhanced, const char *fmt, ...)
{
    rt->status = st;
    rt->permanent = st != SK_ROUTE_TEMPFAIL && st != SK_ROUTE_OK;
    snprintf(rt->enhanced, sizeof rt->enhanced, "%s", enhanced);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(rt->text, sizeof rt->text, fmt, ap);
    va_end(ap);
}

static void job_free(mx_job *job)
{
    sk_route_free(job->route);
    sk_free(job->hs);
    sk_free(job);
}

static void job_deliver(mx_job *job)
{
    sk_resolver *r = job->r;
    sk_route *rt = job->route;
    job->route = NULL;
    sk_log(&r->log, SK_LOG_DEBUG, "- dns route domain=%s status=%s hosts=%zu", rt->domain,
           sk_route_status_name(rt->status), rt->nhosts);
    job->cb(job->ctx, rt); /* deferred-free safe: see on_lookup */
    job_free(job);
}

static sk_dns_status combine(sk_dns_status a, sk_dns_status b)
{
    /* Best outcome wins: OK, then TEMPFAIL (an answer may come later),
     * then NODATA, then NXDOMAIN. */
    static const int rank[] = {
        [SK_DNS_OK] = 0, [SK_DNS_TEMPFAIL] = 1, [SK_DNS_NODATA] = 2, [SK_DNS_NXDOMAIN] = 3};
    return rank[a] <= rank[b] ? a : b;
}

/* All address lookups are in: keep hosts with addresses, decide. */
static void job_finish(mx_job *job)
{
    sk_route *rt = job->route;
    int any_temp = 0;
    /* The first host whose lookup failed for now: the failure text. */
    char temp_type[8] = "", temp_host[SK_SMTP_DOMAIN_MAX_OCTETS + 1] = "";
    int temp_status = ARES_ENOMEM;
    size_t kept = 0;
    for (size_t i = 0; i < rt->nhosts; i++) {
        host_state *h = &job->hs[i];
        sk_mx_host *mh = &rt->hosts[i];
        mh->status = combine(h->st4, h->st6);
        size_t n = h->n4 + h->n6;
        if (!n) {
            if (mh->status == SK_DNS_TEMPFAIL && !any_temp) {
                int v4 = h->st4 == SK_DNS_TEMPFAIL;
                snprintf(temp_type, sizeof temp_type, "%s", v4 ? "A" : "AAAA");
                snprintf(temp_host, sizeof temp_host, "%s", mh->name);
                temp_status = v4 ? h->ares4 : h->ares6;
            }
            if (mh->status == SK_DNS_TEMPFAIL) any_temp = 1;
            sk_free(mh->name);
            continue;
        }
        mh->addrs = sk_calloc(n, sizeof *mh->addrs);
        if (!mh->addrs) {
            any_temp = 1;
            sk_free(mh->name);
            continue;
        }
        const sk_dns_addr *first = job->r->prefer_ipv6 ? h->v6 : h->v4;
        const sk_dns_addr *second = job->r->prefer_ipv6 ? h->v4 : h->v6;
        size_t nfirst = job->r->prefer_ipv6 ? h->n6 : h->n4;
        memcpy(mh->addrs, first, nfirst * sizeof *first);
        memcpy(mh->addrs + nfirst, second, (n - nfirst) * sizeof *second);
        mh->naddrs = n;
        mh->status = SK_DNS_OK;
        rt->hosts[kept++] = *mh;
    }
    rt->nhosts = kept;
    if (kept) {
        rt->status = SK_ROUTE_OK;
    } else if (any_temp) {
        route_dns_fail(job->r, rt, temp_type, temp_host, temp_status);
    } else if (rt->implicit_mx) {
        route_fail(rt, SK_ROUTE_NO_ADDRESS, "5.1.2", "%s has no MX and no address record",
                   rt->domain);
    } else {
        route_fail(rt, SK_ROUTE_NO_ADDRESS, "5.4.4", "no MX host of %s has an address", rt->domain);
    }
    job_deliver(job);
}

static void on_addr(void *arg, int status, int timeouts, unsigned char *abuf, int alen)
{
    addr_query *q = arg;
    mx_job *job = q->job;
    if (dns_cancelled(status) || job->r->free_pending) job->dead = 1;
    if (!job->dead) {
        host_state *h = &job->hs[q->host];
        sk_dns_status st = dns_status_of(status);
        if (q->family == AF_INET)
            h->ares4 = status;
        else
            h->ares6 = status;
        if (q->family == AF_INET) {
            if (status == ARES_SUCCESS)
                st = parse_addrs(AF_INET, abuf, alen, h->v4, SK_DNS_ADDRS_PER_HOST_MAX, &h->n4);
            h->st4 = st;
        } else {
            if (status == ARES_SUCCESS)
                st = parse_addrs(AF_INET6, abuf, alen, h->v6, SK_DNS_ADDRS_PER_HOST_MAX, &h->n6);
            h->st6 = st;
        }
    }
    sk_free(q);
    if (--job->pending > 0) return;
    if (job->dead)
        job_free(job);
    else
        job_finish(job);
}

/* Query A and AAAA of every host in job->route. */
static void start_addr_queries(mx_job *job)
{
    sk_route *rt = job->route;
    job->hs = sk_calloc(rt->nhosts, sizeof *job->hs);
    if (!job->hs) {
        route_fail(rt, SK_ROUTE_TEMPFAIL, "4.3.0", "out of memory resolving %s", rt->domain);
        job_deliver(job);
        return;
    }
    /* Count every query before sending any: c-ares may answer one at once. */
    job->pending = (int)rt->nhosts * 2 + 1;
    for (size_t i = 0; i < rt->nhosts; i++) {
        for (int f = 0; f < 2; f++) {
            addr_query *q = sk_calloc(1, sizeof *q);
            if (!q) {
                job->hs[i].st4 = job->hs[i].st6 = SK_DNS_TEMPFAIL;
                job->hs[i].ares4 = job->hs[i].ares6 = ARES_ENOMEM;
                job->pending--;
                continue;
            }
            q->job = job;
            q->host = i;
            q->family = f ? AF_INET6 : AF_INET;
            ares_query(job->r->ch, rt->hosts[i].name, ns_c_in, f ? ns_t_aaaa : ns_t_a, on_addr, q);
        }
    }
    if (--job->pending == 0) {
        if (job->dead)
            job_free(job);
        else
            job_finish(job);
    }
}

static void on_mx(void *arg, int status, int timeouts, unsigned char *abuf, int alen)
{
    mx_job *job = arg;
    sk_route *rt = job->route;
    if (dns_cancelled(status) || job->r->free_pending) {
        job_free(job);
        return;
    }
    struct ares_mx_reply *mx = NULL;
    if (status == ARES_SUCCESS) status = ares_parse_mx_reply(abuf, alen, &mx);
    if (status == ARES_SUCCESS && !mx) status = ARES_ENODATA;
    switch (dns_status_of(status)) {
    case SK_DNS_NXDOMAIN:
        route_fail(rt, SK_ROUTE_NXDOMAIN, "5.1.2", "domain %s does not exist", rt->domain);
        job_deliver(job);
        return;
    case SK_DNS_TEMPFAIL:
        route_dns_fail(job->r, rt, "MX", rt->domain, status);
        job_deliver(job);
        return;
    case SK_DNS_NODATA:
        /* RFC 5321 5.1: no MX records: the domain itself is the implicit
         * MX with preference 0. */
        rt->implicit_mx = 1;
        rt->hosts = sk_calloc(1, sizeof *rt->hosts);
        if (rt->hosts) rt->hosts[0].name = sk_strdup(rt->domain);
        if (!rt->hosts || !rt->hosts[0].name) {
            route_fail(rt, SK_ROUTE_TEMPFAIL, "4.3.0", "out of memory resolving %s", rt->domain);
            job_deliver(job);
            return;
        }
        rt->nhosts = 1;
        start_addr_queries(job);
        return;
    case SK_DNS_OK:
    case SK_DNS__COUNT:
        break;
    }
    sk_mx_record recs[SK_DNS_RECORDS_MAX];
    size_t n = 0;
    for (struct ares_mx_reply *m = mx; m && n < SK_DNS_RECORDS_MAX; m = m->next)
        recs[n++] = (sk_mx_record){m->priority, m->host};
    if (sk_mx_is_null(recs, n)) {
        ares_free_data(mx);
        route_fail(rt, SK_ROUTE_NULL_MX, "5.1.10", "domain %s accepts no mail (null MX)",
                   rt->domain);
        job_deliver(job);
        return;
    }
    /* A root host next to others cannot be contacted: drop it. */
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (recs[i].host[0] && strcmp(recs[i].host, ".") != 0) recs[k++] = recs[i];
    n = k;
    sk_mx_order(recs, n, NULL, NULL);
    if (n > SK_DNS_MX_HOSTS_MAX) n = SK_DNS_MX_HOSTS_MAX;
    rt->hosts = n ? sk_calloc(n, sizeof *rt->hosts) : NULL;
    for (size_t i = 0; rt->hosts && i < n; i++) {
        rt->hosts[i].preference = recs[i].preference;
        rt->hosts[i].name = sk_strdup(recs[i].host);
        rt->nhosts++;
        if (!rt->hosts[i].name) break;
    }
    ares_free_data(mx);
    if (!n) {
        route_fail(rt, SK_ROUTE_NO_ADDRESS, "5.4.4", "no usable MX host for %s", rt->domain);
        job_deliver(job);
        return;
    }
    if (rt->nhosts < n || !rt->hosts[rt->nhosts - 1].name) {
        route_fail(rt, SK_ROUTE_TEMPFAIL, "4.3.0", "out of memory resolving %s", rt->domain);
        job_deliver(job);
        return;
    }
    start_addr_queries(job);
}

sk_err sk_resolver_mx(sk_resolver *r, const char *domain, sk_route_cb cb, void *ctx)
{
    if (!r || !domain || !cb || r->free_pending) return SK_ERR_INVAL;
    size_t len = strlen(domain);
    if (len && domain[len - 1] == '.') len--; /* "example.org." is "example.org" */
    if (!len || len > SK_SMTP_DOMAIN_MAX_OCTETS) return SK_ERR_INVAL;
    mx_job *job = sk_calloc(1, sizeof *job);
    if (!job) return SK_ERR_NOMEM;
    job->route = sk_calloc(1, sizeof *job->route);
    if (job->route) job->route->domain = sk_strndup(domain, len);
    if (!job->route || !job->route->domain) {
        job_free(job);
        return SK_ERR_NOMEM;
    }
    job->r = r;
    job->cb = cb;
    job->ctx = ctx;
    dns_enter(r);
    ares_query(r->ch, job->route->domain, ns_c_in, ns_t_mx, on_mx, job);
    if (dns_leave(r)) dns_reschedule(r);
    return SK_OK;
}
