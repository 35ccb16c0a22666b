/* Unit tests for the SMTP transport's pure parts (destination keys, TLS
 * policy, failure replies) and its fixed relay route; with "deliver" or "key" as first argument it
 * is the driver that tests/integration/test_mx_*.py run against loopback peers, printing results as
 * JSON lines. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "sktest.h"

#include <smtpkit/smtpkit.h>

#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "deliver/smtp_int.h"

/* ---- unit tests ---- */

static sk_route *route_of(sk_route_status st, const char *domain, int implicit,
                          const char *const *hosts)
{
    sk_route *r = sk_calloc(1, sizeof *r);
    assert_non_null(r);
    r->status = st;
    r->domain = sk_strdup(domain);
    r->implicit_mx = implicit;
    size_t n = 0;
    while (hosts && hosts[n]) n++;
    r->hosts = sk_calloc(n ? n : 1, sizeof *r->hosts);
    for (size_t i = 0; i < n; i++) {
        r->hosts[i].name = sk_strdup(hosts[i]);
        r->hosts[i].preference = (unsigned)(10 * (i + 1));
    }
    r->nhosts = n;
    return r;
}

static void test_destination_key(void **state)
{
    (void)state;
    static const struct {
        sk_route_status st;
        const char *domain;
        int implicit;
        const char *hosts[4];
        const char *key;
    } cases[] = {
        /* Sorted, whatever the preference order. */
        {SK_ROUTE_OK,
         "a.test",
         0,
         {"mx2.prov.test", "mx1.prov.test"},
         "mx1.prov.test,mx2.prov.test"},
        {SK_ROUTE_OK,
         "b.test",
         0,
         {"mx1.prov.test", "mx2.prov.test"},
         "mx1.prov.test,mx2.prov.test"},
        /* Case and a trailing root dot do not make another destination. */
        {SK_ROUTE_OK,
         "c.test",
         0,
         {"MX1.Prov.Test.", "mx2.prov.test"},
         "mx1.prov.test,mx2.prov.test"},
        /* A host at two preferences counts once. */
        {SK_ROUTE_OK, "d.test", 0, {"mx.prov.test", "mx.prov.test"}, "mx.prov.test"},
        {SK_ROUTE_OK, "e.test", 0, {"mx.e.test"}, "mx.e.test"},
        /* No MX: the domain is its own host, hence its own destination. */
        {SK_ROUTE_OK, "f.test", 1, {"f.test"}, "f.test"},
        {SK_ROUTE_NULL_MX, "G.test", 0, {NULL}, "g.test"},
        {SK_ROUTE_TEMPFAIL, "h.test", 0, {NULL}, "h.test"},
    };
    for (size_t i = 0; i < SKT_N(cases); i++) {
        sk_route *r = route_of(cases[i].st, cases[i].domain, cases[i].implicit, cases[i].hosts);
        sk_buf key = SK_BUF_INIT(1024);
        assert_int_equal(sk_smtp_destination_key(r, &key), SK_OK);
        if (strcmp(sk_buf_cstr(&key), cases[i].key) != 0)
            fail_msg("case %zu: key \"%s\", expected \"%s\"", i, sk_buf_cstr(&key), cases[i].key);
        sk_buf_free(&key);
        sk_route_free(r);
    }
    /* A bounded buffer too small for the key is an error, not a cut key. */
    const char *hosts[] = {"mx1.prov.test", "mx2.prov.test", NULL};
    sk_route *r = route_of(SK_ROUTE_OK, "a.test", 0, hosts);
    sk_buf small = SK_BUF_INIT(10);
    assert_int_equal(sk_smtp_destination_key(r, &small), SK_ERR_TOO_LONG);
    sk_buf_free(&small);
    sk_route_free(r);
}

static void test_destination_key_literal(void **state)
{
    (void)state;
    sk_route *r = NULL;
    assert_int_equal(sk_route_from_literal("[127.0.0.1]", &r), SK_OK);
    sk_buf key = SK_BUF_INIT(256);
    assert_int_equal(sk_smtp_destination_key(r, &key), SK_OK);
    assert_string_equal(sk_buf_cstr(&key), "[127.0.0.1]");
    sk_buf_free(&key);
    sk_route_free(r);
}

static void test_tls_required(void **state)
{
    (void)state;
    const char *list[] = {"secure.test", ".bank.test", ""};
    static const struct {
        const char *domain;
        int want;
    } cases[] = {
        {"secure.test", 1},
        {"SECURE.test", 1},
        {"secure.test.", 1},
        {"a.secure.test", 0},
        {"insecure.test", 0},
        {"bank.test", 0},
        {"www.bank.test", 1},
        {"a.b.bank.test", 1},
        {"xbank.test", 0},
        {"other.test", 0},
        {"", 0},
    };
    for (size_t i = 0; i < SKT_N(cases); i++)
        if (sk_smtp_tls_required(list, 3, cases[i].domain) != cases[i].want)
            fail_msg("case %zu (%s): expected %d", i, cases[i].domain, cases[i].want);
    assert_int_equal(sk_smtp_tls_required(NULL, 0, "secure.test"), 0);
}

static void test_route_failure(void **state)
{
    (void)state;
    static const struct {
        sk_route_status st;
        const char *route_enhanced; /* what the resolver set */
        int fails;
        int code;
        const char *enhanced;
    } cases[] = {
        {SK_ROUTE_OK, "", 0, 0, ""},
        {SK_ROUTE_NULL_MX, "", 1, 550, "5.1.10"},
        {SK_ROUTE_NULL_MX, "5.1.10", 1, 550, "5.1.10"},
        {SK_ROUTE_NXDOMAIN, "", 1, 550, "5.1.2"},
        {SK_ROUTE_NO_ADDRESS, "", 1, 550, "5.4.4"},
        /* No MX and no address: the resolver says 5.1.2. */
        {SK_ROUTE_NO_ADDRESS, "5.1.2", 1, 550, "5.1.2"},
        {SK_ROUTE_TEMPFAIL, "", 1, 451, "4.4.3"},
        /* A status of the wrong class is not taken. */
        {SK_ROUTE_TEMPFAIL, "5.1.2", 1, 451, "4.4.3"},
    };
    for (size_t i = 0; i < SKT_N(cases); i++) {
        sk_route *r = route_of(cases[i].st, "x.test", 0, NULL);
        snprintf(r->enhanced, sizeof r->enhanced, "%s", cases[i].route_enhanced);
        sk_reply rep = {.code = 0};
        assert_int_equal(sk_smtp_route_failure(r, &rep), cases[i].fails);
        assert_int_equal(rep.code, cases[i].code);
        assert_string_equal(rep.enhanced, cases[i].enhanced);
        if (cases[i].fails) assert_non_null(strstr(rep.text, "x.test"));
        sk_route_free(r);
    }
}

static void test_tally_reply(void **state)
{
    (void)state;
    static const struct {
        unsigned hosts, hosts_5xx, hosts_tls;
        int code;
        const char *enhanced;
    } cases[] = {
        /* Every host refused with 5xx: permanent, the host's own words. */
        {2, 2, 0, 554, "5.7.1"},
        {1, 1, 0, 554, "5.7.1"},
        /* One host said 5xx, another was unreachable: try again later. */
        {2, 1, 0, 451, "4.4.1"},
        {3, 0, 0, 451, "4.4.1"},
        /* Every host failed the TLS requirement. */
        {2, 0, 2, 451, "4.7.10"},
        {2, 0, 1, 451, "4.4.1"},
        /* Nothing to try at all. */
        {0, 0, 0, 451, "4.4.1"},
    };
    for (size_t i = 0; i < SKT_N(cases); i++) {
        sk_smtp_tally t;
        memset(&t, 0, sizeof t);
        t.hosts = cases[i].hosts;
        t.hosts_5xx = cases[i].hosts_5xx;
        t.hosts_tls = cases[i].hosts_tls;
        t.last_5xx = sk_reply_make(554, "5.7.1", "mx2.x.test[192.0.2.2]:25: greeting: go away");
        snprintf(t.last_error, sizeof t.last_error, "mx2.x.test[192.0.2.2]:25: greeting: go away");
        sk_reply rep = sk_smtp_tally_reply(&t, "x.test");
        if (rep.code != cases[i].code || strcmp(rep.enhanced, cases[i].enhanced) != 0)
            fail_msg("case %zu: %d %s, expected %d %s", i, rep.code, rep.enhanced, cases[i].code,
                     cases[i].enhanced);
        if (cases[i].hosts) assert_non_null(strstr(rep.text, "go away"));
    }
}

/* A loopback TCP port with nothing listening: bound, then closed. */
static unsigned short closed_port(int family)
{
    int fd = socket(family, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    socklen_t len;
    if (family == AF_INET6) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
        a->sin6_family = AF_INET6;
        a->sin6_addr = in6addr_loopback;
        len = sizeof *a;
    } else {
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;
        a->sin_family = AF_INET;
        a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        len = sizeof *a;
    }
    assert_int_equal(bind(fd, (struct sockaddr *)&ss, len), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&ss, &len), 0);
    unsigned short port = family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port)
                                             : ntohs(((struct sockaddr_in *)&ss)->sin_port);
    close(fd);
    return port;
}

typedef struct relay_seen {
    int calls;
    size_t nrcpts;
    int code[2];
    char enhanced[2][16];
    char remote_host[320];
    char destination[320];
} relay_seen;

static void on_relay_done(void *ctx, const sk_delivery_result *res)
{
    relay_seen *s = ctx;
    s->calls++;
    s->nrcpts = res->nrcpts;
    for (size_t i = 0; i < res->nrcpts && i < 2; i++) {
        s->code[i] = res->rcpts[i].reply.code;
        snprintf(s->enhanced[i], sizeof s->enhanced[i], "%s", res->rcpts[i].reply.enhanced);
    }
    snprintf(s->remote_host, sizeof s->remote_host, "%s", res->remote_host ? res->remote_host : "");
    snprintf(s->destination, sizeof s->destination, "%s", res->destination ? res->destination : "");
}

/* A relay host is a fixed route: no MX lookup (there is no DNS server
 * here at all), every domain goes to it, and a relay that is down defers
 * every recipient with 4.4.1. */
static void test_relay_route(void **state)
{
    (void)state;
    static const struct {
        const char *host; /* as given */
        int family;       /* of the closed port */
        const char *key;  /* destination key */
        const char *domain;
    } cases[] = {
        {"127.0.0.1", AF_INET, "127.0.0.1", "remote.example"},
        {"LocalHost", AF_INET, "localhost", "other.example"},
        {"::1", AF_INET6, "::1", "[192.0.2.1]"},
    };
    static const char msg[] = "Subject: t\r\n\r\nhello\r\n";
    char *body = skt_tmpfile("mx-relay", msg, sizeof msg - 1);
    sk_spool_envelope env;
    memset(&env, 0, sizeof env);
    env.sender = (char *)"a@example.org";
    env.helo = (char *)"client.test";
    env.peer = (char *)"127.0.0.1";
    env.body_octets = sizeof msg - 1;
    for (size_t i = 0; i < SKT_N(cases); i++) {
        struct event_base *base = event_base_new();
        assert_non_null(base);
        unsigned short port = closed_port(cases[i].family);
        sk_smtp_transport_opts o = {
            .relay_host = cases[i].host,
            .port = port,
            .helo_name = "mx.test",
            .workers = 1,
            .connect_timeout_ms = 5000,
            /* Would be used for MX lookups; nothing listens there. */
            .dns_server = "127.0.0.1:1",
        };
        sk_error err;
        sk_error_clear(&err);
        sk_transport *t = sk_smtp_transport_new(&o, base, &err);
        assert_non_null(t);
        assert_string_equal(t->name, "smtp");
        assert_null(t->route_key);
        sk_delivery_rcpt dr[2] = {{.addr = "x@remote.example", .index = 0},
                                  {.addr = "y@remote.example", .index = 1}};
        sk_delivery job = {.queue_id = "RELAY1",
                           .env = &env,
                           .body_path = body,
                           .domain = cases[i].domain,
                           .rcpts = dr,
                           .nrcpts = 2};
        relay_seen seen;
        memset(&seen, 0, sizeof seen);
        t->deliver(t, &job, on_relay_done, &seen);
        while (seen.calls == 0) assert_int_equal(event_base_loop(base, EVLOOP_ONCE), 0);
        assert_int_equal(seen.calls, 1);
        assert_int_equal(seen.nrcpts, 2);
        for (int r = 0; r < 2; r++) {
            assert_int_equal(seen.code[r], 451);
            assert_string_equal(seen.enhanced[r], "4.4.1");
        }
        char want[320];
        snprintf(want, sizeof want, strchr(cases[i].key, ':') ? "[%s]:%u" : "%s:%u", cases[i].key,
                 (unsigned)port);
        assert_string_equal(seen.remote_host, want);
        assert_string_equal(seen.destination, cases[i].key);
        sk_transport_free(t);
        event_base_free(base);
    }
    unlink(body);
    free(body);
}

/* ---- the driver ---- */

static void json_str(const char *s)
{
    putchar('"');
    for (const unsigned char *p = (const unsigned char *)(s ? s : ""); *p; p++) {
        if (*p == '"' || *p == '\\')
            printf("\\%c", *p);
        else if (*p < 0x20)
            printf("\\u%04x", *p);
        else
            putchar(*p);
    }
    putchar('"');
}

typedef struct driver {
    struct event_base *base;
    sk_transport *t;
    sk_delivery job;
    /* Odd jobs go to alt (another domain) when set. */
    sk_delivery_rcpt alt;
    const char *alt_domain;
    unsigned jobs, done;
    unsigned gap_ms; /* pause between jobs */
    struct event *gap;
    int cancelled;
    unsigned linger_ms;
    char queue_id[32];
} driver;

static const char *status_name(sk_delivery_status s)
{
    return s == SK_DELIVERY_OK ? "ok" : s == SK_DELIVERY_TRANSIENT ? "transient" : "permanent";
}

static void submit(driver *d);

static void on_gap(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    submit(arg);
}

/* Shutdown in the middle of a job: after cancel, done must not come. */
static void on_cancel(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    driver *d = arg;
    d->t->cancel(d->t);
    d->cancelled = 1;
    /* Keep the loop running past the job's own timeouts, so a result
     * that was not dropped would arrive. */
    struct timeval tv = {d->linger_ms / 1000, (d->linger_ms % 1000) * 1000};
    event_base_loopexit(d->base, &tv);
}

static void on_done(void *ctx, const sk_delivery_result *res)
{
    driver *d = ctx;
    printf("{\"job\":%u,\"remote_host\":", d->done);
    json_str(res->remote_host);
    printf(",\"tls\":");
    json_str(res->tls ? res->tls : "none");
    printf(",\"tls_verified\":%s,\"destination\":", res->tls_verified ? "true" : "false");
    json_str(res->destination);
    printf(",\"rcpts\":[");
    for (size_t i = 0; i < res->nrcpts; i++) {
        const sk_delivery_rcpt_result *r = &res->rcpts[i];
        printf("%s{\"addr\":", i ? "," : "");
        json_str(d->alt_domain && d->done % 2 ? d->alt.addr : d->job.rcpts[i].addr);
        printf(",\"status\":\"%s\",\"code\":%d,\"enhanced\":", status_name(r->status),
               r->reply.code);
        json_str(r->reply.enhanced);
        printf(",\"text\":");
        json_str(r->reply.text);
        putchar('}');
    }
    printf("]}\n");
    fflush(stdout);
    d->done++;
    if (d->done < d->jobs && d->gap_ms) {
        struct timeval tv = {d->gap_ms / 1000, (d->gap_ms % 1000) * 1000};
        evtimer_add(d->gap, &tv);
    } else if (d->done < d->jobs) {
        submit(d);
    } else
        event_base_loopexit(d->base, NULL);
}

static void submit(driver *d)
{
    snprintf(d->queue_id, sizeof d->queue_id, "DRV%u", d->done);
    sk_delivery job = d->job;
    job.queue_id = d->queue_id;
    if (d->alt_domain && d->done % 2) {
        job.rcpts = &d->alt;
        job.nrcpts = 1;
        job.domain = d->alt_domain;
    }
    d->t->deliver(d->t, &job, on_done, d);
}

static void on_key(void *ctx, const char *domain, const char *key)
{
    int *left = ctx;
    printf("{\"domain\":");
    json_str(domain);
    printf(",\"key\":");
    if (key)
        json_str(key);
    else
        printf("null");
    printf("}\n");
    fflush(stdout);
    (*left)--;
}

static void on_key_poll(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    void **pair = arg;
    if (*(int *)pair[0] == 0) event_base_loopexit(pair[1], NULL);
}

static void log_stderr(void *ctx, sk_log_level level, const char *line)
{
    (void)ctx;
    (void)level;
    fprintf(stderr, "%s\n", line);
}

static int usage(void)
{
    fprintf(stderr,
            "usage: test_mx deliver --dns IP:PORT [--mx-port N] --from ADDR --rcpt ADDR... "
            "--message FILE [--jobs N] [--alt-rcpt ADDR] [--gap-ms N] [--max-per-conn N] "
            "[--idle-ms N] [--workers N] [--cancel-ms N] "
            "[--tls-required DOMAIN]... [--ca-file F] [--timeout-ms N] [--relay-host HOST]\n"
            "       test_mx key --dns IP:PORT DOMAIN...\n");
    return 64;
}

static int drive(int argc, char **argv)
{
    sk_smtp_transport_opts o = {.helo_name = "driver.test", .log = {log_stderr, NULL, SK_LOG_INFO}};
    const char *from = NULL, *message = NULL, *alt = NULL;
    const char *rcpts[16], *tls_req[8], *domains[16];
    size_t nrcpts = 0, ntls = 0, ndomains = 0;
    unsigned jobs = 1, timeout_ms = 3000, gap_ms = 0, cancel_ms = 0;
    int key_mode = strcmp(argv[1], "key") == 0;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (a[0] != '-') {
            if (ndomains == 16) return usage();
            domains[ndomains++] = a;
            continue;
        }
        if (!v) return usage();
        i++;
        if (!strcmp(a, "--dns"))
            o.dns_server = v;
        else if (!strcmp(a, "--mx-port"))
            o.port = (unsigned short)atoi(v);
        else if (!strcmp(a, "--from"))
            from = v;
        else if (!strcmp(a, "--rcpt") && nrcpts < 16)
            rcpts[nrcpts++] = v;
        else if (!strcmp(a, "--message"))
            message = v;
        else if (!strcmp(a, "--jobs"))
            jobs = (unsigned)atoi(v);
        else if (!strcmp(a, "--max-per-conn"))
            o.max_messages_per_connection = (unsigned)atoi(v);
        else if (!strcmp(a, "--idle-ms"))
            o.idle_ms = (unsigned)atoi(v);
        else if (!strcmp(a, "--workers"))
            o.workers = (unsigned)atoi(v);
        else if (!strcmp(a, "--tls-required") && ntls < 8)
            tls_req[ntls++] = v;
        else if (!strcmp(a, "--relay-host"))
            o.relay_host = v;
        else if (!strcmp(a, "--ca-file"))
            o.ca_file = v;
        else if (!strcmp(a, "--alt-rcpt"))
            alt = v;
        else if (!strcmp(a, "--cancel-ms"))
            cancel_ms = (unsigned)atoi(v);
        else if (!strcmp(a, "--gap-ms"))
            gap_ms = (unsigned)atoi(v);
        else if (!strcmp(a, "--timeout-ms"))
            timeout_ms = (unsigned)atoi(v);
        else
            return usage();
    }
    o.tls_required = tls_req;
    o.ntls_required = ntls;
    o.connect_timeout_ms = o.greeting_timeout_ms = o.command_timeout_ms = timeout_ms;
    if (!key_mode && (!from || !message || !nrcpts || !jobs)) return usage();
    if (key_mode && !ndomains) return usage();

    struct event_base *base = event_base_new();
    sk_error err;
    sk_error_clear(&err);
    sk_transport *t = base ? sk_smtp_transport_new(&o, base, &err) : NULL;
    if (!t) {
        fprintf(stderr, "test_mx: %s\n", err.text);
        return 70;
    }
    if (key_mode) {
        int left = (int)ndomains;
        for (size_t i = 0; i < ndomains; i++) t->route_key(t, domains[i], on_key, &left);
        void *pair[2] = {&left, base};
        struct event *poll = event_new(base, -1, EV_PERSIST, on_key_poll, pair);
        struct timeval tick = {0, 20000};
        event_add(poll, &tick);
        if (left > 0) event_base_dispatch(base);
        event_free(poll);
        sk_transport_free(t);
        event_base_free(base);
        return left == 0 ? 0 : 1;
    }
    sk_spool_envelope env;
    memset(&env, 0, sizeof env);
    env.sender = (char *)from;
    env.helo = (char *)"client.test";
    env.peer = (char *)"127.0.0.1";
    env.esmtp = 1;
    struct stat mst;
    if (stat(message, &mst)) {
        fprintf(stderr, "test_mx: cannot stat %s\n", message);
        return 66;
    }
    env.body_octets = (uint64_t)mst.st_size; /* the whole file is the body here */
    sk_delivery_rcpt dr[16];
    for (size_t i = 0; i < nrcpts; i++) dr[i] = (sk_delivery_rcpt){.addr = rcpts[i], .index = i};
    const char *at = strrchr(rcpts[0], '@');
    driver d = {.base = base, .t = t, .jobs = jobs, .gap_ms = gap_ms};
    d.gap = evtimer_new(base, on_gap, &d);
    if (alt) {
        d.alt = (sk_delivery_rcpt){.addr = alt};
        d.alt_domain = strrchr(alt, '@') ? strrchr(alt, '@') + 1 : alt;
    }
    d.job = (sk_delivery){.env = &env,
                          .body_path = message,
                          .domain = at ? at + 1 : rcpts[0],
                          .rcpts = dr,
                          .nrcpts = nrcpts};
    struct event *cancel = evtimer_new(base, on_cancel, &d);
    d.linger_ms = 2 * timeout_ms + 500;
    if (cancel_ms) {
        struct timeval tv = {cancel_ms / 1000, (cancel_ms % 1000) * 1000};
        evtimer_add(cancel, &tv);
    }
    submit(&d);
    if (d.done < d.jobs) event_base_dispatch(base);
    event_free(d.gap);
    event_free(cancel);
    sk_transport_free(t);
    event_base_free(base);
    if (d.cancelled) return d.done < d.jobs ? 0 : 1;
    return d.done == d.jobs ? 0 : 1;
}

int main(int argc, char **argv)
{
    if (argc > 1 && (!strcmp(argv[1], "deliver") || !strcmp(argv[1], "key")))
        return drive(argc, argv);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_destination_key), cmocka_unit_test(test_destination_key_literal),
        cmocka_unit_test(test_tls_required),    cmocka_unit_test(test_route_failure),
        cmocka_unit_test(test_tally_reply),     cmocka_unit_test(test_relay_route),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
