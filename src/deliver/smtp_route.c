/* SMTP transport routing: which hosts, in which order. A remote domain's MX
 * hosts from the resolver on the loop (RFC 5321 section 5), or the fixed
 * relay host; the destination key; and opening a session to a route. */
#include "deliver/smtp_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A route_key request waiting for DNS. */
struct smtp_keyreq {
    struct smtp_keyreq *next;
    smtp *owner; /* NULL: orphaned */
    uint64_t generation;
    sk_route_key_fn cb;
    void *ctx;
    char *domain;
};

/* ---- pure parts ---- */

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

sk_err sk_smtp_destination_key(const sk_route *route, sk_buf *out)
{
    sk_buf_reset(out);
    if (!route) return SK_ERR_INVAL;
    if (route->status != SK_ROUTE_OK || route->nhosts == 0 || route->implicit_mx) {
        sk_err e = sk_buf_puts(out, route->domain ? route->domain : "");
        if (!e) sk_ascii_lower(out->data, out->len);
        return e;
    }
    char **names = sk_calloc(route->nhosts, sizeof *names);
    if (!names) return SK_ERR_NOMEM;
    sk_err e = SK_OK;
    size_t n = 0;
    for (size_t i = 0; !e && i < route->nhosts; i++) {
        const char *h = route->hosts[i].name;
        size_t len = strlen(h);
        while (len && h[len - 1] == '.') len--; /* "mx.example." is "mx.example" */
        names[n] = sk_strndup(h, len);
        if (!names[n]) {
            e = SK_ERR_NOMEM;
            break;
        }
        sk_ascii_lower(names[n], strlen(names[n]));
        n++;
    }
    if (!e) qsort(names, n, sizeof *names, cmp_str);
    for (size_t i = 0; !e && i < n; i++) {
        /* A host listed twice (at two preferences) counts once. */
        if (i > 0 && strcmp(names[i], names[i - 1]) == 0) continue;
        if (out->len) e = sk_buf_putc(out, ',');
        if (!e) e = sk_buf_puts(out, names[i]);
    }
    for (size_t i = 0; i < n; i++) sk_free(names[i]);
    sk_free(names);
    return e;
}

int sk_smtp_route_failure(const sk_route *route, sk_reply *out)
{
    const char *d = route->domain ? route->domain : "";
    /* The resolver's own status wins (e.g. 5.1.2 for a domain with
     * neither MX nor address); these are the defaults. */
    const char *def = "4.4.3";
    int code = 550;
    switch (route->status) {
    case SK_ROUTE_OK:
        return 0;
    case SK_ROUTE_NULL_MX:
        def = "5.1.10";
        break;
    case SK_ROUTE_NXDOMAIN:
        def = "5.1.2";
        break;
    case SK_ROUTE_NO_ADDRESS:
        def = "5.4.4";
        break;
    case SK_ROUTE_TEMPFAIL:
    default:
        code = 451;
        break;
    }
    const char *enh = route->enhanced[0] && route->enhanced[0] == def[0] ? route->enhanced : def;
    if (route->status == SK_ROUTE_NULL_MX)
        /* RFC 7505 3: the domain declares that it accepts no mail. */
        *out = sk_reply_make(code, enh, "%s does not accept mail (null MX)", d);
    else if (route->status == SK_ROUTE_NXDOMAIN)
        *out = sk_reply_make(code, enh, "domain not found: %s", d);
    else if (route->status == SK_ROUTE_NO_ADDRESS)
        *out = sk_reply_make(code, enh, "no address for the mail hosts of %s%s%s", d,
                             route->text[0] ? ": " : "", route->text);
    else if (route->text[0])
        /* The resolver's text names the lookup, its servers and why. */
        *out = sk_reply_make(code, enh, "%s", route->text);
    else
        *out = sk_reply_make(code, enh, "DNS lookup for %s failed", d);
    return 1;
}

sk_reply sk_smtp_tally_reply(const sk_smtp_tally *t, const char *domain)
{
    if (t->hosts > 0 && t->hosts_5xx == t->hosts)
        return sk_reply_make(t->last_5xx.code,
                             t->last_5xx.enhanced[0] ? t->last_5xx.enhanced : "5.0.0", "%s",
                             t->last_error);
    if (t->hosts > 0 && t->hosts_tls == t->hosts) /* RFC 5248 registry: X.7.10 encryption needed. */
        return sk_reply_make(451, "4.7.10", "TLS required for %s: %s", domain, t->last_error);
    /* RFC 3463: X.4.1 no answer from host. */
    return sk_reply_make(451, "4.4.1", "no mail host of %s took the message: %s", domain,
                         t->last_error[0] ? t->last_error : "no host tried");
}

/* ---- opening a session to a route (worker threads) ---- */

/* "mx.example.net[192.0.2.1]:25"; "[192.0.2.1]:25" for an address literal. */
static void host_label(char *out, size_t n, const char *name, const char *ip, unsigned port)
{
    if (name[0] == '[')
        snprintf(out, n, "[%s]:%u", ip, port);
    else
        snprintf(out, n, "%s[%s]:%u", name, ip, port);
}

/* The host to try i-th: the route's order of preference, but within a run
 * of equal preference starting spread places further on (RFC 5321 5.1:
 * spread the load among equals; a fresh route is already shuffled, a
 * cached one would otherwise send everything to one host). */
static size_t host_at(const sk_route *r, size_t i, unsigned spread)
{
    size_t first = i, last = i;
    while (first > 0 && r->hosts[first - 1].preference == r->hosts[i].preference) first--;
    while (last + 1 < r->nhosts && r->hosts[last + 1].preference == r->hosts[i].preference) last++;
    size_t n = last - first + 1;
    return first + (i - first + spread % n) % n;
}

smtp_conn *smtp_route_connect(smtp *sm, const smtp_job *j, sk_smtp_tally *tally)
{
    /* Hosts in the resolver's order, each host's addresses in turn. */
    const sk_route *r = j->route;
    for (size_t i = 0; i < r->nhosts; i++) {
        const sk_mx_host *host = &r->hosts[host_at(r, i, j->spread)];
        bool refused_5xx = false, tls_failed = false;
        tally->hosts++;
        if (host->naddrs == 0 && !sm->relay_host) {
            snprintf(tally->last_host, sizeof tally->last_host, "%.255s", host->name);
            snprintf(tally->last_error, sizeof tally->last_error, "%s: no address (%s)", host->name,
                     sk_dns_status_name(host->status));
        }
        /* The relay host of a fixed route has no addresses: the client
         * resolves its name (one attempt, on whichever address answers). */
        size_t naddrs = host->naddrs ? host->naddrs : sm->relay_host ? 1 : 0;
        for (size_t a = 0; a < naddrs; a++) {
            const char *ip = host->naddrs ? host->addrs[a].ip : NULL;
            char label[320];
            if (ip)
                host_label(label, sizeof label, host->name, ip, sm->port);
            else
                snprintf(label, sizeof label, strchr(host->name, ':') ? "[%.255s]:%u" : "%.255s:%u",
                         host->name, (unsigned)sm->port);
            snprintf(tally->last_host, sizeof tally->last_host, "%s", label);
            sk_tls_mode mode = smtp_tls_mode(j);
            for (int pass = 0; pass < 2; pass++) {
                sk_client_opts o = {
                    .host = host->name,
                    .port = sm->port,
                    .tls = mode,
                    .ca_file = sm->ca_file,
                    .connect_address = ip,
                    .helo_name = sm->helo_name,
                    .connect_timeout_ms = sm->connect_timeout_ms,
                    .greeting_timeout_ms = sm->greeting_timeout_ms,
                    .command_timeout_ms = sm->command_timeout_ms,
                    .log = sm->log,
                };
                sk_client *c = sk_client_new(&o);
                if (!c) {
                    snprintf(tally->last_error, sizeof tally->last_error, "out of memory");
                    return NULL;
                }
                sk_error err;
                sk_error_clear(&err);
                if (sk_client_connect(c, &err) == SK_OK) {
                    smtp_conn *k = smtp_conn_new(c, j->key, &sm->open_conns);
                    if (!k) {
                        sk_client_free(c);
                        snprintf(tally->last_error, sizeof tally->last_error, "out of memory");
                        return NULL;
                    }
                    if (!ip)
                        host_label(label, sizeof label, host->name, sk_client_remote_address(c),
                                   sm->port);
                    snprintf(k->remote_host, sizeof k->remote_host, "%s", label);
                    smtp_tls_record(k);
                    sk_log(&sm->log, SK_LOG_INFO, "%s %s connected host=%s tls=\"%s\" verified=%s",
                           j->queue_id, sm->t.name, label, k->tls[0] ? k->tls : "none",
                           k->tls_verified ? "yes" : "no");
                    return k;
                }
                sk_client_free(c);
                if (err.code)
                    snprintf(tally->last_error, sizeof tally->last_error, "%s: %s: %d %s%s%.600s",
                             label, sk_step_name(err.step), err.code, err.enhanced,
                             err.enhanced[0] ? " " : "", err.text);
                else
                    snprintf(tally->last_error, sizeof tally->last_error, "%s: %s: %.600s", label,
                             sk_step_name(err.step), err.text[0] ? err.text : sk_strerror(err.err));
                sk_log(&sm->log, SK_LOG_WARN, "%s %s connect-failed host=%s step=%s error=\"%s\"",
                       j->queue_id, sm->t.name, label, sk_step_name(err.step), err.text);
                if (smtp_tls_fallback(&mode, &err)) continue;
                if (smtp_tls_failed(j, &err)) tls_failed = true;
                if (sk_reply_class_of(err.code) == SK_REPLY_PERMANENT &&
                    (err.step == SK_STEP_GREETING || err.step == SK_STEP_EHLO)) {
                    refused_5xx = true;
                    tally->last_5xx =
                        sk_reply_make(err.code, err.enhanced, "%s", tally->last_error);
                }
                break;
            }
            /* A host that refused us or cannot give the TLS we need will
             * not do better on its other addresses: the next MX. */
            if (refused_5xx || tls_failed) break;
        }
        if (refused_5xx) tally->hosts_5xx++;
        if (tls_failed) tally->hosts_tls++;
    }
    return NULL;
}

/* ---- routes kept for the next messages (loop thread) ---- */

struct smtp_rcache {
    smtp_rcache *hnext;            /* in its bucket */
    TAILQ_ENTRY(smtp_rcache) link; /* in the order cached, oldest first */
    char *domain;
    sk_route *route;
    char *key;
    uint64_t expires_ms;
    unsigned refs; /* the cache's own while listed, and one per job */
};

static unsigned rcache_hash(const char *domain)
{
    /* FNV-1a; domains arrive lower-cased (sk_delivery.domain). */
    uint32_t h = 2166136261u;
    for (; *domain; domain++) h = (h ^ (unsigned char)*domain) * 16777619u;
    return h % SMTP_RCACHE_BUCKETS;
}

void smtp_route_unref(smtp_rcache *c)
{
    if (!c || --c->refs) return;
    sk_route_free(c->route);
    sk_free(c->key);
    sk_free(c->domain);
    sk_free(c);
}

/* Take c out of the cache; the jobs that hold it keep it. */
static void rcache_drop(smtp *sm, smtp_rcache *c)
{
    for (smtp_rcache **pp = &sm->rcache[rcache_hash(c->domain)]; *pp; pp = &(*pp)->hnext)
        if (*pp == c) {
            *pp = c->hnext;
            break;
        }
    TAILQ_REMOVE(&sm->rcache_order, c, link);
    sm->nrcache--;
    smtp_route_unref(c);
}

/* The fresh route kept for domain, NULL when none (an expired one is
 * dropped). */
static smtp_rcache *rcache_find(smtp *sm, const char *domain)
{
    smtp_rcache *c = sm->rcache[rcache_hash(domain)];
    while (c && strcmp(c->domain, domain) != 0) c = c->hnext;
    if (c && c->expires_ms <= sk_now_ms()) {
        rcache_drop(sm, c);
        c = NULL;
    }
    return c;
}

/* Keep j's route (complete, just looked up) for the next jobs to its
 * domain: the cache takes the route and key over and j borrows them. When
 * out of memory, or another lookup got there first, j keeps its own. */
static void rcache_put(smtp *sm, smtp_job *j)
{
    if (rcache_find(sm, j->domain)) return;
    smtp_rcache *c = sk_calloc(1, sizeof *c);
    if (c) c->domain = sk_strdup(j->domain);
    if (!c || !c->domain) {
        sk_free(c);
        return;
    }
    if (sm->nrcache >= SK_SMTP_ROUTE_CACHE_MAX) rcache_drop(sm, TAILQ_FIRST(&sm->rcache_order));
    c->route = j->route;
    c->key = j->key;
    c->expires_ms = sk_now_ms() + SK_SMTP_ROUTE_CACHE_MS;
    c->refs = 2;
    unsigned h = rcache_hash(c->domain);
    c->hnext = sm->rcache[h];
    sm->rcache[h] = c;
    TAILQ_INSERT_TAIL(&sm->rcache_order, c, link);
    sm->nrcache++;
    j->cached = c;
}

void smtp_route_cache_clear(smtp *sm)
{
    while (!TAILQ_EMPTY(&sm->rcache_order)) rcache_drop(sm, TAILQ_FIRST(&sm->rcache_order));
}

/* ---- finding the route (loop thread) ---- */

static void unlink_lookup(smtp *sm, smtp_job *j)
{
    for (smtp_job **pp = &sm->lookups; *pp; pp = &(*pp)->next)
        if (*pp == j) {
            *pp = j->next;
            j->next = NULL;
            return;
        }
}

/* The route is in: fail at once, or hand the job to the workers. cache:
 * the route came from DNS, and once complete it is kept for the next jobs
 * to the domain. */
static void route_ready(smtp *sm, smtp_job *j, sk_route *route, bool cache)
{
    j->route = route;
    sk_buf key = SK_BUF_INIT(SK_DNS_MX_HOSTS_MAX * 256);
    sk_err e = route ? sk_smtp_destination_key(route, &key) : SK_ERR_NOMEM;
    j->key = e ? NULL : sk_buf_detach(&key, NULL);
    sk_buf_free(&key);
    sk_reply rep;
    if (!j->key) {
        rep = sk_reply_make(451, "4.3.0", "out of memory");
        smtp_job_fail(j, &rep);
        smtp_job_finish(j);
        smtp_job_free(j);
        return;
    }
    if (sk_smtp_route_failure(route, &rep)) {
        /* RFC 7505 3: no connection at all for a null MX. */
        sk_log(&sm->log, SK_LOG_INFO, "%s %s route-failed domain=%s status=%s reply=\"%d %s\"",
               j->queue_id, sm->t.name, j->domain, sk_route_status_name(route->status), rep.code,
               rep.enhanced);
        smtp_job_fail(j, &rep);
        smtp_job_finish(j);
        smtp_job_free(j);
        return;
    }
    if (cache) rcache_put(sm, j);
    smtp_pool_submit(sm, j);
}

/* The resolver's answer for a job. */
static void on_route(void *ctx, sk_route *route)
{
    smtp_job *j = ctx;
    smtp *sm = j->owner;
    if (!sm) { /* the transport was freed meanwhile */
        j->route = route;
        smtp_job_free(j);
        return;
    }
    unlink_lookup(sm, j);
    if (j->generation != sm->generation) {
        j->route = route;
        smtp_job_free(j);
        return;
    }
    route_ready(sm, j, route, true);
}

/* The relay's route: one host, its name to be resolved when connecting,
 * implicit (so the destination key is the host name). NULL: no memory. */
static sk_route *relay_route(const smtp *sm)
{
    sk_route *r = sk_calloc(1, sizeof *r);
    if (!r) return NULL;
    r->implicit_mx = 1;
    r->domain = sk_strdup(sm->relay_host);
    r->hosts = sk_calloc(1, sizeof *r->hosts);
    if (r->hosts) r->nhosts = 1;
    if (r->hosts) r->hosts[0].name = sk_strdup(sm->relay_host);
    if (!r->domain || !r->hosts || !r->hosts[0].name) {
        sk_route_free(r);
        return NULL;
    }
    return r;
}

static void smtp_deliver(sk_transport *t, const sk_delivery *job, sk_delivery_done_fn done,
                         void *ctx)
{
    smtp *sm = (smtp *)t;
    smtp_job *j = smtp_job_new(sm, job, done, ctx);
    if (!j) {
        smtp_fail_now(job, done, ctx, sk_reply_make(451, "4.3.0", "out of memory"));
        return;
    }
    if (sm->relay_host) {
        /* route_ready answers out of memory for a NULL route. */
        route_ready(sm, j, relay_route(sm), false);
        return;
    }
    /* RFC 5321 4.1.3: an address literal names the host, no DNS. */
    sk_route *lit = NULL;
    sk_err e = sk_route_from_literal(job->domain, &lit);
    if (e == SK_OK) {
        route_ready(sm, j, lit, false);
        return;
    }
    smtp_rcache *c = e == SK_ERR_INVAL ? rcache_find(sm, job->domain) : NULL;
    if (c) {
        c->refs++;
        j->cached = c;
        j->route = c->route;
        j->key = c->key;
        smtp_pool_submit(sm, j);
        return;
    }
    if (e == SK_ERR_SYNTAX) {
        smtp_job_free(j);
        smtp_fail_now(job, done, ctx,
                      sk_reply_make(550, "5.1.2", "malformed address literal %s", job->domain));
        return;
    }
    j->next = sm->lookups;
    sm->lookups = j;
    e = sk_resolver_mx(sm->resolver, job->domain, on_route, j);
    if (e) {
        /* Not started, so the callback will not come. */
        unlink_lookup(sm, j);
        smtp_job_free(j);
        smtp_fail_now(
            job, done, ctx,
            sk_reply_make(451, "4.4.3", "cannot look up %s: %s", job->domain, sk_strerror(e)));
    }
}

/* ---- the destination key for the queue (loop thread) ---- */

static void keyreq_free(smtp_keyreq *q)
{
    if (!q) return;
    sk_free(q->domain);
    sk_free(q);
}

static void on_key_route(void *ctx, sk_route *route)
{
    smtp_keyreq *q = ctx;
    smtp *sm = q->owner;
    if (sm) {
        for (smtp_keyreq **pp = &sm->keyreqs; *pp; pp = &(*pp)->next)
            if (*pp == q) {
                *pp = q->next;
                break;
            }
    }
    if (sm && q->generation == sm->generation) {
        sk_buf key = SK_BUF_INIT(SK_DNS_MX_HOSTS_MAX * 256);
        /* A failed route gives no key: the queue then uses the domain. */
        bool have = route && route->status == SK_ROUTE_OK && !sk_smtp_destination_key(route, &key);
        q->cb(q->ctx, q->domain, have ? sk_buf_cstr(&key) : NULL);
        sk_buf_free(&key);
    }
    sk_route_free(route);
    keyreq_free(q);
}

static void smtp_route_key(sk_transport *t, const char *domain, sk_route_key_fn cb, void *ctx)
{
    smtp *sm = (smtp *)t;
    sk_route *lit = NULL;
    if (sk_route_from_literal(domain, &lit) == SK_OK) {
        sk_buf key = SK_BUF_INIT(512);
        bool have = !sk_smtp_destination_key(lit, &key);
        cb(ctx, domain, have ? sk_buf_cstr(&key) : NULL);
        sk_buf_free(&key);
        sk_route_free(lit);
        return;
    }
    smtp_keyreq *q = sk_calloc(1, sizeof *q);
    if (q) q->domain = sk_strdup(domain);
    if (!q || !q->domain) {
        keyreq_free(q);
        cb(ctx, domain, NULL);
        return;
    }
    q->owner = sm;
    q->generation = sm->generation;
    q->cb = cb;
    q->ctx = ctx;
    q->next = sm->keyreqs;
    sm->keyreqs = q;
    if (sk_resolver_mx(sm->resolver, domain, on_key_route, q) != SK_OK) {
        sm->keyreqs = q->next;
        keyreq_free(q);
        cb(ctx, domain, NULL);
    }
}

bool smtp_route_init(smtp *sm, const sk_smtp_transport_opts *o, sk_error *err)
{
    sm->t.deliver = smtp_deliver;
    if (o->relay_host) {
        /* A fixed route: no MX lookup, and no grouping of domains. */
        sm->t.name = "smtp";
        sm->relay_host = sk_strdup(o->relay_host);
        if (!sm->relay_host) {
            sk_error_set(err, SK_ERR_NOMEM, SK_STEP_NONE, "cannot set up the MX transport");
            return false;
        }
        /* Host names are case-insensitive: one destination key for all. */
        sk_ascii_lower(sm->relay_host, strlen(sm->relay_host));
        sm->resolver = o->resolver;
        return true;
    }
    sm->t.route_key = smtp_route_key;
    if (o->resolver) {
        sm->resolver = o->resolver;
        return true;
    }
    sm->resolver = sk_resolver_new(sm->base, o->dns_server, err);
    sm->own_resolver = sm->resolver != NULL;
    return sm->resolver != NULL;
}

void smtp_route_free(smtp *sm)
{
    /* Lookups in flight: with our own resolver, freeing it drops their
     * callbacks; with a shared one, they find no owner and clean up. */
    if (sm->own_resolver) {
        sk_resolver_free(sm->resolver);
        sm->resolver = NULL;
        while (sm->lookups) {
            smtp_job *next = sm->lookups->next;
            smtp_job_free(sm->lookups);
            sm->lookups = next;
        }
        while (sm->keyreqs) {
            smtp_keyreq *next = sm->keyreqs->next;
            keyreq_free(sm->keyreqs);
            sm->keyreqs = next;
        }
    } else {
        for (smtp_job *j = sm->lookups; j; j = j->next) j->owner = NULL;
        for (smtp_keyreq *q = sm->keyreqs; q; q = q->next) q->owner = NULL;
    }
}
