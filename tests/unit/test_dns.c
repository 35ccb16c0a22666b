/* Unit tests for src/dns: null MX detection and MX ordering (tables, with
 * an injected random function), reverse names, the answer cache (an
 * injected clock), and the evented resolver against a DNS server on
 * loopback (tests/integration/dns_server.py). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "sktest.h"

#include <smtpkit/dns.h>

#include "dns/dns_int.h"

#include <event2/event.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static void test_null_mx(void **state)
{
    static const struct {
        sk_mx_record r[3];
        size_t n;
        int is_null;
    } cases[] = {
        {{{0, ""}}, 1, 1},
        {{{0, "."}}, 1, 1},
        {{{10, "."}}, 1, 0}, /* RFC 7505 3: preference 0 only */
        {{{0, "mx.example.org"}}, 1, 0},
        {{{0, "."}, {10, "mx.example.org"}}, 2, 0}, /* not a single record */
        {{{0}}, 0, 0},
    };
    for (size_t i = 0; i < SKT_N(cases); i++)
        if (sk_mx_is_null(cases[i].r, cases[i].n) != cases[i].is_null) fail_msg("case %zu", i);
}

/* A scripted random source that records the ranges it was asked for. */
typedef struct script {
    const size_t *values;
    size_t next;
    size_t asked[16];
    size_t nasked;
} script;

static size_t scripted(void *ctx, size_t n)
{
    script *s = ctx;
    assert_true(n > 1);
    if (s->nasked < 16) s->asked[s->nasked++] = n;
    return s->values[s->next++] % n;
}

static void test_mx_order(void **state)
{
    static const size_t zeros[16] = {0};
    static const size_t last[16] = {1, 2, 3, 4, 5, 6, 7, 8};
    static const struct {
        const char *in; /* "pref:host ..." */
        const size_t *rnd;
        const char *out;   /* hosts in order */
        const char *asked; /* ranges asked of the random source */
    } cases[] = {
        /* Sorted by preference; the order among equals is the server's when
         * the random picks keep it... */
        {"20:c 10:a 30:d", zeros, "a c d", ""},
        /* Fisher-Yates from the end: range 2 picks 0 -> swap b and a. */
        {"10:a 10:b", zeros, "b a", "2"},
        {"10:a 10:b", last, "a b", "2"},
        /* Each group of equal preference is shuffled on its own. */
        {"10:a 10:b 20:c 20:d 20:e 5:z", zeros, "z b a d e c", "2 3 2"},
        {"10:a 20:b 30:c", zeros, "a b c", ""},
        {"", zeros, "", ""},
    };
    for (size_t i = 0; i < SKT_N(cases); i++) {
        sk_mx_record recs[8];
        char buf[128], names[8][8];
        size_t n = 0;
        snprintf(buf, sizeof buf, "%s", cases[i].in);
        for (char *tok = strtok(buf, " "); tok; tok = strtok(NULL, " ")) {
            unsigned pref;
            assert_int_equal(sscanf(tok, "%u:%7s", &pref, names[n]), 2);
            recs[n] = (sk_mx_record){pref, names[n]};
            n++;
        }
        script s = {.values = cases[i].rnd};
        sk_mx_order(recs, n, scripted, &s);
        char got[128] = "", asked[64] = "";
        for (size_t k = 0; k < n; k++)
            snprintf(got + strlen(got), sizeof got - strlen(got), "%s%s", k ? " " : "",
                     recs[k].host);
        for (size_t k = 0; k < s.nasked; k++)
            snprintf(asked + strlen(asked), sizeof asked - strlen(asked), "%s%zu", k ? " " : "",
                     s.asked[k]);
        if (strcmp(got, cases[i].out) != 0 || strcmp(asked, cases[i].asked) != 0)
            fail_msg("case %zu: got \"%s\" asked \"%s\"", i, got, asked);
    }
}

/* Preferences stay sorted whatever the random source says. */
static void test_mx_order_default_random(void **state)
{
    sk_mx_record recs[6] = {{30, "f"}, {10, "a"}, {20, "c"}, {10, "b"}, {20, "d"}, {30, "e"}};
    for (int round = 0; round < 50; round++) {
        sk_mx_order(recs, 6, NULL, NULL);
        for (size_t k = 1; k < 6; k++) assert_true(recs[k - 1].preference <= recs[k].preference);
    }
}

static void test_status_names(void **state)
{
    assert_string_equal(sk_route_status_name(SK_ROUTE_NULL_MX), "null-mx");
    assert_string_equal(sk_route_status_name(SK_ROUTE_TEMPFAIL), "tempfail");
    assert_string_equal(sk_dns_status_name(SK_DNS_NXDOMAIN), "nxdomain");
    sk_error err;
    struct event_base *base = event_base_new();
    static const char *const bad[] = {"not-an-ip", "1.2.3.4:x", "127.0.0.1:53,127.0.0.2:53"};
    for (size_t i = 0; i < SKT_N(bad); i++) {
        assert_null(sk_resolver_new(base, bad[i], &err));
        assert_int_equal(err.err, SK_ERR_CONFIG);
    }
    event_base_free(base);
}

static void test_route_literal(void **state)
{
    static const struct {
        const char *in;
        sk_err e;
        int family;
        const char *ip;
    } cases[] = {
        {"[192.0.2.1]", SK_OK, AF_INET, "192.0.2.1"},
        {"[IPv6:2001:DB8::1]", SK_OK, AF_INET6, "2001:db8::1"},
        {"[ipv6:::1]", SK_OK, AF_INET6, "::1"},
        {"[2001:db8::1]", SK_ERR_SYNTAX, 0, NULL}, /* RFC 5321 4.1.3 needs the tag */
        {"[192.0.2.300]", SK_ERR_SYNTAX, 0, NULL},
        {"[x-tag:abc]", SK_ERR_SYNTAX, 0, NULL},
        {"example.org", SK_ERR_INVAL, 0, NULL},
        {"[192.0.2.1", SK_ERR_INVAL, 0, NULL},
        {"", SK_ERR_INVAL, 0, NULL},
    };
    for (size_t i = 0; i < SKT_N(cases); i++) {
        sk_route *rt = (sk_route *)1;
        sk_err e = sk_route_from_literal(cases[i].in, &rt);
        if (e != cases[i].e) fail_msg("case %zu: %s", i, sk_strerror(e));
        if (e) {
            assert_null(rt);
            continue;
        }
        assert_int_equal(rt->status, SK_ROUTE_OK);
        assert_int_equal(rt->nhosts, 1);
        assert_int_equal(rt->hosts[0].naddrs, 1);
        assert_int_equal(rt->hosts[0].addrs[0].family, cases[i].family);
        assert_string_equal(rt->hosts[0].addrs[0].ip, cases[i].ip);
        sk_route_free(rt);
    }
}

static void test_reverse_name(void **state)
{
    static const struct {
        const char *ip;
        sk_err e;
        const char *name;
    } cases[] = {
        {"192.0.2.1", SK_OK, "1.2.0.192.in-addr.arpa"},
        {"2001:DB8::CB01", SK_OK,
         "1.0.b.c.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa"},
        {"::ffff:1.2.3.4", SK_OK,
         "4.0.3.0.2.0.1.0.f.f.f.f.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.ip6.arpa"},
        {"1.2.3", SK_ERR_INVAL, NULL},
        {"example.org", SK_ERR_INVAL, NULL},
        {"", SK_ERR_INVAL, NULL},
    };
    for (size_t i = 0; i < SKT_N(cases); i++) {
        char out[SK_DNS_REVERSE_NAME_OCTETS];
        sk_err e = sk_dns_reverse_name(cases[i].ip, out, sizeof out);
        if (e != cases[i].e) fail_msg("case %zu: %s", i, sk_strerror(e));
        if (!e) assert_string_equal(out, cases[i].name);
    }
    char small[SK_DNS_REVERSE_NAME_OCTETS - 1];
    assert_int_equal(sk_dns_reverse_name("::1", small, sizeof small), SK_ERR_TOO_LONG);
}

/* ---- the cache, with a clock the test sets ---- */

static dns_answer *answer(const char *name, sk_dns_type type, sk_dns_status st, uint32_t ttl)
{
    dns_answer *a = dns_answer_new(name, type, st);
    assert_non_null(a);
    if (st == SK_DNS_OK) assert_int_equal(dns_answer_push(a, "v", 1), SK_OK);
    a->ttl_s = ttl;
    return a;
}

/* Each answer is kept for its TTL within the caps, negative ones for less,
 * failures and TTL 0 never. */
static void test_cache_expiry(void **state)
{
    static const struct {
        sk_dns_status st;
        uint32_t ttl;
        int64_t at_ms; /* when asked again, after being stored at 0 */
        int hit;
        uint32_t left_s; /* TTL the copy carries */
    } cases[] = {
        {SK_DNS_OK, 30, 0, 1, 30},
        {SK_DNS_OK, 30, 10500, 1, 19},
        {SK_DNS_OK, 30, 29999, 1, 0},
        {SK_DNS_OK, 30, 30000, 0, 0},
        /* SK_DNS_CACHE_TTL_MAX_S caps a long TTL. */
        {SK_DNS_OK, 86400, SK_DNS_CACHE_TTL_MAX_S * 1000 - 1, 1, 0},
        {SK_DNS_OK, 86400, SK_DNS_CACHE_TTL_MAX_S * 1000, 0, 0},
        /* Negative answers: their own TTL, capped shorter. */
        {SK_DNS_NXDOMAIN, 5, 4999, 1, 0},
        {SK_DNS_NXDOMAIN, 5, 5000, 0, 0},
        {SK_DNS_NODATA, 300, SK_DNS_CACHE_NEGATIVE_TTL_MAX_S * 1000 - 1, 1, 0},
        {SK_DNS_NODATA, 300, SK_DNS_CACHE_NEGATIVE_TTL_MAX_S * 1000, 0, 0},
        /* Not kept: a TTL of 0 (a negative answer without SOA), failures. */
        {SK_DNS_OK, 0, 0, 0, 0},
        {SK_DNS_NXDOMAIN, 0, 0, 0, 0},
        {SK_DNS_TEMPFAIL, 30, 0, 0, 0},
    };
    for (size_t i = 0; i < SKT_N(cases); i++) {
        dns_cache *c = dns_cache_new(8);
        dns_answer *a = answer("Name.Test.", SK_DNS_TXT, cases[i].st, cases[i].ttl);
        dns_cache_put(c, a, 0);
        dns_answer_free(a);
        dns_answer *got = dns_cache_get(c, "name.test", SK_DNS_TXT, cases[i].at_ms);
        if (!!got != cases[i].hit) fail_msg("case %zu: hit %d", i, !!got);
        if (got) {
            if (got->ttl_s != cases[i].left_s) fail_msg("case %zu: ttl %u", i, got->ttl_s);
            assert_int_equal(got->status, cases[i].st);
            assert_string_equal(got->name, "name.test"); /* as asked */
            dns_answer_free(got);
        }
        sk_dns_cache_stats st;
        dns_cache_stats(c, &st);
        assert_int_equal(st.hits, cases[i].hit);
        dns_cache_free(c);
    }
}

/* Full: the answer used least recently goes. Names compare without case
 * or final dot; types apart. */
static void test_cache_eviction(void **state)
{
    dns_cache *c = dns_cache_new(2);
    const char *names[] = {"a.test", "b.test", "c.test"};
    dns_answer *a;
    for (int i = 0; i < 2; i++) {
        a = answer(names[i], SK_DNS_TXT, SK_DNS_OK, 60);
        dns_cache_put(c, a, 0);
        dns_answer_free(a);
    }
    a = dns_cache_get(c, "A.TEST.", SK_DNS_TXT, 1); /* a is now the newest */
    assert_non_null(a);
    dns_answer_free(a);
    assert_null(dns_cache_get(c, "a.test", SK_DNS_A, 1));
    a = answer(names[2], SK_DNS_TXT, SK_DNS_OK, 60);
    dns_cache_put(c, a, 2);
    dns_answer_free(a);
    static const struct {
        const char *name;
        int hit;
    } after[] = {{"b.test", 0}, {"a.test", 1}, {"c.test", 1}};
    for (size_t i = 0; i < SKT_N(after); i++) {
        a = dns_cache_get(c, after[i].name, SK_DNS_TXT, 3);
        if (!!a != after[i].hit) fail_msg("%s: hit %d", after[i].name, !!a);
        dns_answer_free(a);
    }
    /* Storing a name again replaces its answer. */
    a = answer("c.test", SK_DNS_TXT, SK_DNS_NODATA, 10);
    dns_cache_put(c, a, 4);
    dns_answer_free(a);
    sk_dns_cache_stats st;
    dns_cache_stats(c, &st);
    assert_int_equal(st.entries, 2);
    assert_int_equal(st.evictions, 1);
    a = dns_cache_get(c, "c.test", SK_DNS_TXT, 5);
    assert_non_null(a);
    assert_int_equal(a->status, SK_DNS_NODATA);
    dns_answer_free(a);
    dns_cache_clear(c);
    assert_null(dns_cache_get(c, "a.test", SK_DNS_TXT, 5));
    dns_cache_free(c);
}

/* ---- the evented resolver against dns_server.py ---- */

static const char zone[] =
    "{\"multi.test\": {\"MX\": [[20, \"mx2.multi.test\"], [10, \"mx1.multi.test\"]]},"
    " \"mx1.multi.test\": {\"A\": [\"127.0.0.1\"], \"AAAA\": [\"::1\"]},"
    " \"mx2.multi.test\": {\"A\": [\"127.0.0.2\"]},"
    " \"null.test\": {\"MX\": [[0, \".\"]]},"
    " \"txt.test\": {\"TXT\": [\"v=spf1 -all\"]},"
    " \"dangling.test\": {\"MX\": [[10, \"nowhere.test\"]]},"
    " \"cache.test\": {\"SOA\": [\"ns.cache.test\", \"host.cache.test\", 1, 2, 3, 4, 7],"
    "     \"TTL\": 30, \"TXT\": [[\"one \", \"record\"], \"nul\\u0000inside\", []]},"
    " \"alias.cache.test\": {\"CNAME\": \"cache.test\", \"TTL\": 10},"
    " \"long.cache.test\": {\"A\": [\"192.0.2.7\"], \"TTL\": 86400},"
    " \"fail.cache.test\": {\"SERVFAIL\": true},"
    " \"1.2.0.192.in-addr.arpa\": {\"PTR\": [\"b.cache.test\", \"a.cache.test.\"]}}";

typedef struct server {
    int pid;
    char addr[64];
} server;

static int start_server(void **state)
{
    static server srv;
    srv.pid = skt_dns_start(zone, srv.addr, sizeof srv.addr);
    *state = &srv;
    return 0;
}

static int stop_server(void **state)
{
    server *srv = *state;
    skt_dns_stop(srv->pid);
    return 0;
}

typedef struct results {
    sk_resolver *res;
    int routes, lookups;
    char text[2048];
} results;

static void collect_route(void *ctx, sk_route *rt)
{
    results *r = ctx;
    size_t len = strlen(r->text);
    snprintf(r->text + len, sizeof r->text - len, "%s=%s", rt->domain,
             sk_route_status_name(rt->status));
    for (size_t i = 0; i < rt->nhosts; i++) {
        len = strlen(r->text);
        snprintf(r->text + len, sizeof r->text - len, " %u:%s", rt->hosts[i].preference,
                 rt->hosts[i].name);
        for (size_t k = 0; k < rt->hosts[i].naddrs; k++) {
            len = strlen(r->text);
            snprintf(r->text + len, sizeof r->text - len, ",%s", rt->hosts[i].addrs[k].ip);
        }
    }
    len = strlen(r->text);
    snprintf(r->text + len, sizeof r->text - len, "%s;", rt->permanent ? " permanent" : "");
    r->routes++;
    sk_route_free(rt);
}

static void collect_lookup(void *ctx, const sk_dns_result *res)
{
    results *r = ctx;
    r->lookups++;
    assert_string_equal(res->name, "txt.test");
    assert_int_equal(res->status, SK_DNS_OK);
    assert_int_equal(res->count, 1);
    assert_string_equal(res->values[0], "v=spf1 -all");
}

/* Several lookups in flight on one loop; results in completion order are
 * sorted by the test into a fixed string. */
static void test_resolver_concurrent(void **state)
{
    server *srv = *state;
    struct event_base *base = event_base_new();
    sk_error err;
    results r = {0};
    r.res = sk_resolver_new(base, srv->addr, &err);
    assert_non_null(r.res);
    static const char *const domains[] = {"multi.test", "null.test", "nx.test", "dangling.test"};
    results per[4];
    memset(per, 0, sizeof per);
    for (size_t i = 0; i < 4; i++)
        assert_int_equal(sk_resolver_mx(r.res, domains[i], collect_route, &per[i]), SK_OK);
    assert_int_equal(sk_resolver_lookup(r.res, "txt.test", SK_DNS_TXT, collect_lookup, &r), SK_OK);
    event_base_dispatch(base);
    assert_string_equal(
        per[0].text, "multi.test=ok 10:mx1.multi.test,127.0.0.1,::1 20:mx2.multi.test,127.0.0.2;");
    assert_string_equal(per[1].text, "null.test=null-mx permanent;");
    assert_string_equal(per[2].text, "nx.test=nxdomain permanent;");
    assert_string_equal(per[3].text, "dangling.test=no-address permanent;");
    assert_int_equal(r.lookups, 1);
    sk_resolver_free(r.res);
    event_base_free(base);
}

static void free_in_callback(void *ctx, sk_route *rt)
{
    results *r = ctx;
    r->routes++;
    sk_route_free(rt);
    sk_resolver_free(r->res); /* deferred until the callback returns */
}

static void must_not_run(void *ctx, sk_route *rt)
{
    fail_msg("callback of a cancelled lookup ran");
}

/* Freeing the resolver from a callback cancels the rest without calling
 * their callbacks; freeing with lookups pending does too. */
static void test_resolver_free(void **state)
{
    server *srv = *state;
    struct event_base *base = event_base_new();
    results r = {0};
    r.res = sk_resolver_new(base, srv->addr, NULL);
    assert_non_null(r.res);
    assert_int_equal(sk_resolver_mx(r.res, "nx.test", free_in_callback, &r), SK_OK);
    event_base_dispatch(base);
    assert_int_equal(r.routes, 1);

    sk_resolver *res = sk_resolver_new(base, srv->addr, NULL);
    assert_int_equal(sk_resolver_mx(res, "multi.test", must_not_run, NULL), SK_OK);
    sk_resolver_free(res);
    event_base_dispatch(base); /* nothing left to run */
    event_base_free(base);
}

/* ---- plain lookups: values, TTLs, PTR, the cache ---- */

typedef struct seen {
    int calls, returned; /* returned: sk_resolver_query had returned */
    sk_dns_result res;
    char values[8][64];
    size_t lengths[8];
    char name[128];
} seen;

static void keep(void *ctx, const sk_dns_result *res)
{
    seen *s = ctx;
    /* Never called before the call that asked has returned. */
    assert_true(s->returned);
    s->calls++;
    s->res = *res;
    snprintf(s->name, sizeof s->name, "%s", res->name);
    for (size_t i = 0; i < res->count && i < 8; i++) {
        assert_true(res->lengths[i] < sizeof s->values[i]);
        memcpy(s->values[i], res->values[i], res->lengths[i] + 1);
        s->lengths[i] = res->lengths[i];
    }
}

/* One lookup on its own loop turn: what its callback saw. */
static seen ask(sk_resolver *r, struct event_base *base, const char *name, sk_dns_type type,
                unsigned flags)
{
    seen s;
    memset(&s, 0, sizeof s);
    assert_int_equal(sk_resolver_query(r, name, type, flags, keep, &s, NULL), SK_OK);
    s.returned = 1;
    event_base_dispatch(base);
    assert_int_equal(s.calls, 1);
    return s;
}

static void test_resolver_answers(void **state)
{
    server *srv = *state;
    struct event_base *base = event_base_new();
    int64_t now = 1000;
    sk_resolver_opts o = {.server = srv->addr, .clock_ms = skt_clock_ms, .clock_ctx = &now};
    sk_resolver *r = sk_resolver_new_opts(base, &o, NULL);
    assert_non_null(r);

    /* TXT: one value per record, strings joined, a NUL kept (its length
     * says so); a record of no string at all (invalid, RFC 1035 3.3.14)
     * is not reported. The TTL. */
    seen s = ask(r, base, "cache.test", SK_DNS_TXT, 0);
    assert_int_equal(s.res.status, SK_DNS_OK);
    assert_int_equal(s.res.count, 2);
    assert_string_equal(s.values[0], "one record");
    assert_int_equal(s.lengths[1], 10);
    assert_memory_equal(s.values[1], "nul\0inside", 10);
    assert_int_equal(s.res.ttl_s, 30);
    assert_int_equal(s.res.from_cache, 0);

    /* Again: from the cache, with what is left of the TTL. */
    now += 12000;
    s = ask(r, base, "CACHE.test.", SK_DNS_TXT, 0);
    assert_int_equal(s.res.from_cache, 1);
    assert_int_equal(s.res.ttl_s, 18);
    assert_int_equal(s.res.count, 2);
    assert_string_equal(s.name, "CACHE.test.");
    /* Bypassed on request, and gone once its TTL has passed. */
    assert_int_equal(ask(r, base, "cache.test", SK_DNS_TXT, SK_DNS_NO_CACHE).res.from_cache, 0);
    now += 18000;
    assert_int_equal(ask(r, base, "cache.test", SK_DNS_TXT, 0).res.from_cache, 0);

    /* Through an alias: the smallest TTL of the chain. */
    s = ask(r, base, "alias.cache.test", SK_DNS_TXT, 0);
    assert_int_equal(s.res.count, 2);
    assert_int_equal(s.res.ttl_s, 10);

    /* A long TTL is kept only up to the cap. */
    s = ask(r, base, "long.cache.test", SK_DNS_A, 0);
    assert_string_equal(s.values[0], "192.0.2.7");
    assert_int_equal(s.res.ttl_s, 86400);
    now += SK_DNS_CACHE_TTL_MAX_S * 1000 - 1;
    assert_int_equal(ask(r, base, "long.cache.test", SK_DNS_A, 0).res.from_cache, 1);
    now += 1;
    assert_int_equal(ask(r, base, "long.cache.test", SK_DNS_A, 0).res.from_cache, 0);

    /* Void lookups: NODATA and NXDOMAIN, each cached for the SOA's
     * negative TTL (min(TTL 60, minimum 7) = 7 s). */
    static const struct {
        const char *name;
        sk_dns_type type;
        sk_dns_status st;
    } negative[] = {{"cache.test", SK_DNS_MX, SK_DNS_NODATA},
                    {"nx.cache.test", SK_DNS_A, SK_DNS_NXDOMAIN}};
    for (size_t i = 0; i < SKT_N(negative); i++) {
        s = ask(r, base, negative[i].name, negative[i].type, 0);
        assert_int_equal(s.res.status, negative[i].st);
        assert_int_equal(s.res.count, 0);
        assert_int_equal(s.res.ttl_s, 7);
        now += 6999;
        s = ask(r, base, negative[i].name, negative[i].type, 0);
        assert_int_equal(s.res.from_cache, 1);
        assert_int_equal(s.res.status, negative[i].st);
        now += 1;
        assert_int_equal(ask(r, base, negative[i].name, negative[i].type, 0).res.from_cache, 0);
    }
    /* Without SOA: NXDOMAIN with TTL 0, not cached. */
    assert_int_equal(ask(r, base, "nx.test", SK_DNS_TXT, 0).res.ttl_s, 0);
    assert_int_equal(ask(r, base, "nx.test", SK_DNS_TXT, 0).res.from_cache, 0);
    /* A failure is asked again. */
    assert_int_equal(ask(r, base, "fail.cache.test", SK_DNS_A, 0).res.status, SK_DNS_TEMPFAIL);
    assert_int_equal(ask(r, base, "fail.cache.test", SK_DNS_A, 0).res.from_cache, 0);
    /* A name c-ares cannot send (a label over 63 octets) is no such name,
     * answered on the loop too. */
    char longname[80];
    memset(longname, 'x', 64);
    memcpy(longname + 64, ".test", 6);
    assert_int_equal(ask(r, base, longname, SK_DNS_A, 0).res.status, SK_DNS_NXDOMAIN);

    /* PTR: names in the answer's order, without the final dot. */
    memset(&s, 0, sizeof s);
    assert_int_equal(sk_resolver_ptr(r, "192.0.2.1", keep, &s), SK_OK);
    s.returned = 1;
    event_base_dispatch(base);
    assert_int_equal(s.res.type, SK_DNS_PTR);
    assert_int_equal(s.res.count, 2);
    assert_string_equal(s.values[0], "b.cache.test");
    assert_string_equal(s.values[1], "a.cache.test");
    assert_int_equal(sk_resolver_ptr(r, "not-an-ip", keep, &s), SK_ERR_INVAL);

    sk_dns_cache_stats st;
    sk_resolver_cache_stats(r, &st);
    assert_int_equal(st.capacity, SK_DNS_CACHE_ENTRIES_DEFAULT);
    assert_int_equal(st.hits, 4);
    sk_resolver_cache_clear(r);
    sk_resolver_cache_stats(r, &st);
    assert_int_equal(st.entries, 0);
    sk_resolver_free(r);

    /* No cache at all. */
    o.cache_entries = -1;
    r = sk_resolver_new_opts(base, &o, NULL);
    assert_int_equal(ask(r, base, "txt.test", SK_DNS_TXT, 0).res.from_cache, 0);
    assert_int_equal(ask(r, base, "txt.test", SK_DNS_TXT, 0).res.from_cache, 0);
    sk_resolver_free(r);
    event_base_free(base);
}

static void must_not_answer(void *ctx, const sk_dns_result *res)
{
    fail_msg("callback of a cancelled lookup ran");
}

/* A cancelled lookup is never answered, whether it waits for DNS or for
 * the loop (a cached answer). */
static void test_resolver_cancel(void **state)
{
    server *srv = *state;
    struct event_base *base = event_base_new();
    sk_resolver *r = sk_resolver_new(base, srv->addr, NULL);
    seen s = ask(r, base, "txt.test", SK_DNS_TXT, 0);
    assert_int_equal(s.res.status, SK_DNS_OK);
    sk_dns_query *cached, *asked;
    assert_int_equal(
        sk_resolver_query(r, "txt.test", SK_DNS_TXT, 0, must_not_answer, NULL, &cached), SK_OK);
    assert_int_equal(
        sk_resolver_query(r, "multi.test", SK_DNS_MX, 0, must_not_answer, NULL, &asked), SK_OK);
    sk_dns_query_cancel(cached);
    sk_dns_query_cancel(asked);
    event_base_dispatch(base);
    sk_resolver_free(r);
    event_base_free(base);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_null_mx),
        cmocka_unit_test(test_mx_order),
        cmocka_unit_test(test_mx_order_default_random),
        cmocka_unit_test(test_status_names),
        cmocka_unit_test(test_route_literal),
        cmocka_unit_test(test_reverse_name),
        cmocka_unit_test(test_cache_expiry),
        cmocka_unit_test(test_cache_eviction),
        cmocka_unit_test_setup_teardown(test_resolver_answers, start_server, stop_server),
        cmocka_unit_test_setup_teardown(test_resolver_cancel, start_server, stop_server),
        cmocka_unit_test_setup_teardown(test_resolver_concurrent, start_server, stop_server),
        cmocka_unit_test_setup_teardown(test_resolver_free, start_server, stop_server),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
