/* c-ares driven by a libevent loop: socket events and one timer follow what
 * c-ares asks for (ARES_OPT_SOCK_STATE_CB); plain lookups go through the
 * cache (cache.c) and are answered on the loop; MX routing is built on it. */
#include "dns_int.h"

#include <ares.h>
#include <arpa/inet.h>
#include <arpa/nameser.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

typedef struct sock_watch {
    ares_socket_t fd;
    struct event *ev;
} sock_watch;

struct sk_resolver {
    struct event_base *base;
    ares_channel ch;
    struct event *timer;
    sock_watch *socks;
    size_t nsocks, capsocks;
    int prefer_ipv6;
    sk_logger log;
    int depth;        /* > 0 while c-ares may be calling us back */
    int free_pending; /* sk_resolver_free was called inside a callback */
    dns_cache *cache; /* NULL: no cache */
    int64_t (*clock_ms)(void *ctx);
    void *clock_ctx;
    /* Lookups whose answer is in and waits for the loop's next turn (from
     * the cache, or refused by c-ares inside ares_query), oldest first. */
    struct sk_dns_query *ready_head, *ready_tail;
    struct event *ready_ev;
};

/* One plain lookup (sk_resolver_query). */
struct sk_dns_query {
    sk_resolver *r;
    sk_dns_type type;
    unsigned flags;
    char *name;
    sk_dns_cb cb;
    void *ctx;
    int cancelled;
    int submitting; /* inside ares_query: an answer now waits for the loop */
    int from_cache;
    dns_answer *answer; /* the answer, once in */
    sk_dns_query *next_ready;
};

static void reschedule(sk_resolver *r);
static void really_free(sk_resolver *r);
static void on_ready(evutil_socket_t fd, short what, void *arg);

static void enter(sk_resolver *r)
{
    r->depth++;
}

/* Returns 0 when r was released and must not be touched. */
static int leave(sk_resolver *r)
{
    if (--r->depth == 0 && r->free_pending) {
        really_free(r);
        return 0;
    }
    return 1;
}

static void on_sock(evutil_socket_t fd, short what, void *arg)
{
    sk_resolver *r = arg;
    enter(r);
    ares_process_fd(r->ch, (what & EV_READ) ? (ares_socket_t)fd : ARES_SOCKET_BAD,
                    (what & EV_WRITE) ? (ares_socket_t)fd : ARES_SOCKET_BAD);
    if (leave(r)) reschedule(r);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    sk_resolver *r = arg;
    enter(r);
    ares_process_fd(r->ch, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
    if (leave(r)) reschedule(r);
}

static void reschedule(sk_resolver *r)
{
    struct timeval tv;
    if (r->free_pending) return;
    if (ares_timeout(r->ch, NULL, &tv))
        evtimer_add(r->timer, &tv);
    else
        evtimer_del(r->timer);
}

/* c-ares tells us which sockets to watch and for what. */
static void sock_state(void *data, ares_socket_t fd, int readable, int writable)
{
    sk_resolver *r = data;
    size_t i = 0;
    while (i < r->nsocks && r->socks[i].fd != fd) i++;
    if (i < r->nsocks) {
        event_free(r->socks[i].ev);
        r->socks[i] = r->socks[--r->nsocks];
    }
    if (!readable && !writable) return;
    /* Out of memory: the query then times out, reported as TEMPFAIL. */
    if (sk_array_grow(&r->socks, &r->capsocks, r->nsocks + 1, sizeof *r->socks, SK_ARRAY_UNBOUNDED))
        return;
    short flags = (short)(EV_PERSIST | (readable ? EV_READ : 0) | (writable ? EV_WRITE : 0));
    struct event *ev = event_new(r->base, fd, flags, on_sock, r);
    if (!ev || event_add(ev, NULL) != 0) {
        event_free(ev);
        return;
    }
    r->socks[r->nsocks++] = (sock_watch){fd, ev};
}

sk_resolver *sk_resolver_new(struct event_base *base, const char *server, sk_error *err)
{
    sk_resolver_opts o = {.server = server};
    return sk_resolver_new_opts(base, &o, err);
}

sk_resolver *sk_resolver_new_opts(struct event_base *base, const sk_resolver_opts *o, sk_error *err)
{
    if (!base || !o) {
        sk_error_set(err, SK_ERR_INVAL, SK_STEP_DNS, "no event base");
        return NULL;
    }
    sk_resolver *r = sk_calloc(1, sizeof *r);
    if (!r) {
        sk_error_set(err, SK_ERR_NOMEM, SK_STEP_DNS, "out of memory");
        return NULL;
    }
    r->base = base;
    r->prefer_ipv6 = o->prefer_ipv6;
    if (o->log) r->log = *o->log;
    r->clock_ms = o->clock_ms;
    r->clock_ctx = o->clock_ctx;
    r->timer = evtimer_new(base, on_timer, r);
    r->ready_ev = event_new(base, -1, 0, on_ready, r);
    if (o->cache_entries >= 0) {
        r->cache = dns_cache_new(o->cache_entries ? (size_t)o->cache_entries
                                                  : SK_DNS_CACHE_ENTRIES_DEFAULT);
        if (!r->cache) {
            sk_error_set(err, SK_ERR_NOMEM, SK_STEP_DNS, "out of memory");
            if (r->timer) event_free(r->timer);
            if (r->ready_ev) event_free(r->ready_ev);
            sk_free(r);
            return NULL;
        }
    }
    struct ares_options ao;
    memset(&ao, 0, sizeof ao);
    ao.sock_state_cb = sock_state;
    ao.sock_state_cb_data = r;
    ao.timeout = o->timeout_ms > 0 ? o->timeout_ms : SK_DNS_TIMEOUT_MS_DEFAULT;
    ao.tries = o->tries > 0 ? o->tries : SK_DNS_TRIES_DEFAULT;
    /* ARES_FLAG_NOSEARCH: we look up exact names (mail domains are
     * absolute; RFC 5321 5.1 forbids local search-list expansion). */
    ao.flags = ARES_FLAG_NOSEARCH;
    /* With one server given there is none to fall over to: take its
     * SERVFAIL or REFUSED as the answer, so that the failure is named as
     * such (c-ares would report it as ECONNREFUSED once the server is
     * skipped). With the system's servers, c-ares tries the next one. */
    if (o->server && o->server[0]) ao.flags |= ARES_FLAG_NOCHECKRESP;
    int mask = ARES_OPT_SOCK_STATE_CB | ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES | ARES_OPT_FLAGS;
    int st = r->timer && r->ready_ev ? ares_init_options(&r->ch, &ao, mask) : ARES_ENOMEM;
    if (st != ARES_SUCCESS) {
        sk_error_set(err, st == ARES_ENOMEM ? SK_ERR_NOMEM : SK_ERR_CONFIG, SK_STEP_DNS,
                     "resolver initialisation failed: %s", ares_strerror(st));
        if (r->timer) event_free(r->timer);
        if (r->ready_ev) event_free(r->ready_ev);
        dns_cache_free(r->cache);
        sk_free(r);
        return NULL;
    }
    if (o->server && o->server[0]) {
        st = ares_set_servers_ports_csv(r->ch, o->server);
        if (st != ARES_SUCCESS || strchr(o->server, ',')) {
            sk_error_set(err, SK_ERR_CONFIG, SK_STEP_DNS,
                         "bad DNS server \"%.100s\" (want IP or IP:PORT)", o->server);
            really_free(r);
            return NULL;
        }
    }
    return r;
}

static void query_free(sk_dns_query *q);

static void really_free(sk_resolver *r)
{
    r->free_pending = 1; /* callbacks from ares_destroy see it and stay silent */
    r->depth++;
    ares_destroy(r->ch);
    for (size_t i = 0; i < r->nsocks; i++) event_free(r->socks[i].ev);
    sk_free(r->socks);
    while (r->ready_head) {
        sk_dns_query *q = r->ready_head;
        r->ready_head = q->next_ready;
        query_free(q);
    }
    event_free(r->ready_ev);
    event_free(r->timer);
    dns_cache_free(r->cache);
    sk_free(r);
}

struct event_base *sk_resolver_base(const sk_resolver *r)
{
    return r ? r->base : NULL;
}

void sk_resolver_free(sk_resolver *r)
{
    if (!r) return;
    if (r->depth > 0) {
        r->free_pending = 1;
        return;
    }
    really_free(r);
}

/* ---- status mapping and answer parsing ---- */

static sk_dns_status map_status(int st)
{
    return dns_status_of(st);
}

static int cancelled(int st)
{
    return st == ARES_EDESTRUCTION || st == ARES_ECANCELLED;
}

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
        if (st != ARES_SUCCESS) return map_status(st);
        for (int i = 0; i < cnt; i++) {
            out[*n].family = AF_INET;
            inet_ntop(AF_INET, &a[i].ipaddr, out[*n].ip, sizeof out[*n].ip);
            (*n)++;
        }
    } else {
        struct ares_addr6ttl a[SK_DNS_RECORDS_MAX];
        if (cnt > SK_DNS_RECORDS_MAX) cnt = SK_DNS_RECORDS_MAX;
        st = ares_parse_aaaa_reply(abuf, alen, NULL, a, &cnt);
        if (st != ARES_SUCCESS) return map_status(st);
        for (int i = 0; i < cnt; i++) {
            out[*n].family = AF_INET6;
            inet_ntop(AF_INET6, &a[i].ip6addr, out[*n].ip, sizeof out[*n].ip);
            (*n)++;
        }
    }
    return *n ? SK_DNS_OK : SK_DNS_NODATA;
}

/* ---- plain lookups ---- */

static void query_free(sk_dns_query *q)
{
    dns_answer_free(q->answer);
    sk_free(q->name);
    sk_free(q);
}

static int64_t resolver_now(const sk_resolver *r)
{
    return r->clock_ms ? r->clock_ms(r->clock_ctx) : (int64_t)sk_now_ms();
}

/* Call q's callback with its answer (unless cancelled), then release q. */
static void deliver(sk_dns_query *q)
{
    sk_resolver *r = q->r;
    static char *no_values[1];
    static size_t no_lengths[1];
    dns_answer none = {.status = SK_DNS_TEMPFAIL, .values = no_values, .lengths = no_lengths};
    const dns_answer *a = q->answer ? q->answer : &none;
    if (!q->cancelled && !r->free_pending) {
        sk_dns_result res = {.status = a->status,
                             .type = q->type,
                             .name = q->name,
                             .count = a->count,
                             .values = a->values,
                             .lengths = a->lengths,
                             .ttl_s = a->ttl_s,
                             .from_cache = q->from_cache,
                             .truncated = a->truncated};
        sk_log(&r->log, SK_LOG_DEBUG,
               "- dns lookup name=%s type=%d status=%s count=%zu ttl=%u cached=%d", q->name,
               (int)q->type, sk_dns_status_name(a->status), a->count, (unsigned)a->ttl_s,
               q->from_cache);
        /* Bracketed by enter/leave by our callers: a sk_resolver_free from
         * the callback is deferred. */
        q->cb(q->ctx, &res);
    }
    query_free(q);
}

static void on_ready(evutil_socket_t fd, short what, void *arg)
{
    sk_resolver *r = arg;
    sk_dns_query *list = r->ready_head;
    r->ready_head = r->ready_tail = NULL;
    enter(r);
    while (list) {
        sk_dns_query *q = list;
        list = q->next_ready;
        deliver(q);
    }
    if (leave(r)) reschedule(r);
}

/* Hand q to the loop's next turn. */
static void make_ready(sk_resolver *r, sk_dns_query *q)
{
    q->next_ready = NULL;
    if (r->ready_tail)
        r->ready_tail->next_ready = q;
    else
        r->ready_head = q;
    r->ready_tail = q;
    event_active(r->ready_ev, 0, 0);
}

static void on_lookup(void *arg, int status, int timeouts, unsigned char *abuf, int alen)
{
    sk_dns_query *q = arg;
    sk_resolver *r = q->r;
    if (cancelled(status) || r->free_pending || q->cancelled) {
        query_free(q);
        return;
    }
    /* Out of memory: q->answer stays NULL and the caller hears TEMPFAIL. */
    q->answer = dns_answer_new(q->name, q->type, map_status(status));
    if (q->answer) {
        dns_answer_parse(q->answer, status, abuf, alen);
        if (!(q->flags & SK_DNS_NO_CACHE)) dns_cache_put(r->cache, q->answer, resolver_now(r));
    }
    if (q->submitting) {
        /* c-ares answered inside ares_query (a name it cannot send): the
         * caller has not yet got its handle; answer on the loop. */
        make_ready(r, q);
        return;
    }
    deliver(q);
}

sk_err sk_resolver_query(sk_resolver *r, const char *name, sk_dns_type type, unsigned flags,
                         sk_dns_cb cb, void *ctx, sk_dns_query **handle)
{
    if (handle) *handle = NULL;
    if (!r || !name || !cb || r->free_pending) return SK_ERR_INVAL;
    if (type != SK_DNS_A && type != SK_DNS_AAAA && type != SK_DNS_TXT && type != SK_DNS_MX &&
        type != SK_DNS_PTR)
        return SK_ERR_INVAL;
    sk_dns_query *q = sk_calloc(1, sizeof *q);
    if (!q) return SK_ERR_NOMEM;
    q->name = sk_strdup(name);
    if (!q->name) {
        sk_free(q);
        return SK_ERR_NOMEM;
    }
    q->r = r;
    q->type = type;
    q->flags = flags;
    q->cb = cb;
    q->ctx = ctx;
    if (handle) *handle = q;
    if (!(flags & SK_DNS_NO_CACHE)) {
        q->answer = dns_cache_get(r->cache, name, type, resolver_now(r));
        if (q->answer) {
            q->from_cache = 1;
            make_ready(r, q);
            return SK_OK;
        }
    }
    enter(r);
    q->submitting = 1;
    ares_query(r->ch, name, ns_c_in, (int)type, on_lookup, q);
    /* q may be on the ready list now (not freed: answers inside
     * ares_query always wait for the loop). */
    q->submitting = 0;
    if (leave(r)) reschedule(r);
    return SK_OK;
}

sk_err sk_resolver_lookup(sk_resolver *r, const char *name, sk_dns_type type, sk_dns_cb cb,
                          void *ctx)
{
    return sk_resolver_query(r, name, type, 0, cb, ctx, NULL);
}

void sk_dns_query_cancel(sk_dns_query *q)
{
    if (q) q->cancelled = 1;
}

sk_err sk_dns_reverse_name(const char *ip, char *out, size_t size)
{
    unsigned char a[16];
    if (!ip || !out) return SK_ERR_INVAL;
    if (size < SK_DNS_REVERSE_NAME_OCTETS) return SK_ERR_TOO_LONG;
    if (inet_pton(AF_INET, ip, a) == 1) {
        snprintf(out, size, "%u.%u.%u.%u.in-addr.arpa", a[3], a[2], a[1], a[0]);
        return SK_OK;
    }
    if (inet_pton(AF_INET6, ip, a) != 1) return SK_ERR_INVAL;
    static const char hex[] = "0123456789abcdef";
    size_t n = 0;
    for (int i = 15; i >= 0; i--) {
        out[n++] = hex[a[i] & 0xf];
        out[n++] = '.';
        out[n++] = hex[a[i] >> 4];
        out[n++] = '.';
    }
    memcpy(out + n, "ip6.arpa", sizeof "ip6.arpa");
    return SK_OK;
}

sk_err sk_resolver_ptr(sk_resolver *r, const char *ip, sk_dns_cb cb, void *ctx)
{
    char name[SK_DNS_REVERSE_NAME_OCTETS];
    sk_err e = sk_dns_reverse_name(ip, name, sizeof name);
    if (e) return e;
    return sk_resolver_lookup(r, name, SK_DNS_PTR, cb, ctx);
}

void sk_resolver_cache_stats(const sk_resolver *r, sk_dns_cache_stats *out)
{
    dns_cache_stats(r ? r->cache : NULL, out);
}

void sk_resolver_cache_clear(sk_resolver *r)
{
    if (r) dns_cache_clear(r->cache);
}

/* ---- MX routing ---- */

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
    if (cancelled(status) || job->r->free_pending) job->dead = 1;
    if (!job->dead) {
        host_state *h = &job->hs[q->host];
        sk_dns_status st = map_status(status);
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
    if (cancelled(status) || job->r->free_pending) {
        job_free(job);
        return;
    }
    struct ares_mx_reply *mx = NULL;
    if (status == ARES_SUCCESS) status = ares_parse_mx_reply(abuf, alen, &mx);
    if (status == ARES_SUCCESS && !mx) status = ARES_ENODATA;
    switch (map_status(status)) {
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
    enter(r);
    ares_query(r->ch, job->route->domain, ns_c_in, ns_t_mx, on_mx, job);
    if (leave(r)) reschedule(r);
    return SK_OK;
}

/* ---- blocking conveniences: a private loop per call ---- */

typedef struct sync_state {
    sk_route *route;
    sk_dns_cb cb;
    void *ctx;
    int done;
    struct event_base *base;
} sync_state;

static void sync_route(void *ctx, sk_route *route)
{
    sync_state *s = ctx;
    s->route = route;
    s->done = 1;
    event_base_loopbreak(s->base);
}

static void sync_lookup(void *ctx, const sk_dns_result *res)
{
    sync_state *s = ctx;
    s->cb(s->ctx, res);
    s->done = 1;
    event_base_loopbreak(s->base);
}

static sk_err run_sync(const sk_resolver_opts *o, const char *name, int type, sync_state *s,
                       sk_error *err)
{
    sk_resolver_opts dflt = {0};
    struct event_base *base = event_base_new();
    if (!base) return sk_error_set(err, SK_ERR_NOMEM, SK_STEP_DNS, "no event loop");
    s->base = base;
    sk_resolver *r = sk_resolver_new_opts(base, o ? o : &dflt, err);
    if (!r) {
        event_base_free(base);
        return err ? err->err : SK_ERR_CONFIG;
    }
    sk_err e = type ? sk_resolver_lookup(r, name, (sk_dns_type)type, sync_lookup, s)
                    : sk_resolver_mx(r, name, sync_route, s);
    if (e == SK_OK && !s->done) event_base_dispatch(base);
    sk_resolver_free(r);
    event_base_free(base);
    if (e) return sk_error_set(err, e, SK_STEP_DNS, "cannot look up \"%.200s\"", name);
    if (!s->done) return sk_error_set(err, SK_ERR_STATE, SK_STEP_DNS, "lookup did not finish");
    return SK_OK;
}

sk_err sk_dns_route_sync(const sk_resolver_opts *o, const char *domain, sk_route **out,
                         sk_error *err)
{
    sync_state s = {0};
    *out = NULL;
    sk_err e = run_sync(o, domain, 0, &s, err);
    *out = s.route;
    return e;
}

sk_err sk_dns_lookup_sync(const sk_resolver_opts *o, const char *name, sk_dns_type type,
                          sk_dns_cb cb, void *ctx, sk_error *err)
{
    sync_state s = {.cb = cb, .ctx = ctx};
    return run_sync(o, name, (int)type, &s, err);
}
