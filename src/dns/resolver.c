/* c-ares driven by a libevent loop: socket events and one timer follow what
 * c-ares asks for (ARES_OPT_SOCK_STATE_CB); plain lookups go through the
 * cache (cache.c) and are answered on the loop. MX routing is in route.c. */
#include "resolver_int.h"

#include <arpa/inet.h>
#include <arpa/nameser.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

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

static void really_free(sk_resolver *r);
static void on_ready(evutil_socket_t fd, short what, void *arg);

void dns_enter(sk_resolver *r)
{
    r->depth++;
}

/* Returns 0 when r was released and must not be touched. */
int dns_leave(sk_resolver *r)
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
    dns_enter(r);
    ares_process_fd(r->ch, (what & EV_READ) ? (ares_socket_t)fd : ARES_SOCKET_BAD,
                    (what & EV_WRITE) ? (ares_socket_t)fd : ARES_SOCKET_BAD);
    if (dns_leave(r)) dns_reschedule(r);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    sk_resolver *r = arg;
    dns_enter(r);
    ares_process_fd(r->ch, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
    if (dns_leave(r)) dns_reschedule(r);
}

void dns_reschedule(sk_resolver *r)
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

/* ---- status mapping ---- */

static sk_dns_status map_status(int st)
{
    return dns_status_of(st);
}

int dns_cancelled(int st)
{
    return st == ARES_EDESTRUCTION || st == ARES_ECANCELLED;
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
    dns_enter(r);
    while (list) {
        sk_dns_query *q = list;
        list = q->next_ready;
        deliver(q);
    }
    if (dns_leave(r)) dns_reschedule(r);
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
    if (dns_cancelled(status) || r->free_pending || q->cancelled) {
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
    dns_enter(r);
    q->submitting = 1;
    ares_query(r->ch, name, ns_c_in, (int)type, on_lookup, q);
    /* q may be on the ready list now (not freed: answers inside
     * ares_query always wait for the loop). */
    q->submitting = 0;
    if (dns_leave(r)) dns_reschedule(r);
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
