/* Unit tests for src/daemon/config.c: option values, the config file with
 * its error lines, flags over the file, defaults, networks. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <smtpkit/daemon.h>
#include <smtpkit/queue.h>

#include "daemon/daemon_int.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Write text to a new temporary file; returns its path (static storage). */
static const char *write_temp(const char *text)
{
    static char path[64];
    strcpy(path, "/tmp/sk_test_config_XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    size_t n = strlen(text);
    assert_int_equal(write(fd, text, n), (ssize_t)n);
    close(fd);
    return path;
}

static const struct {
    const char *key, *value;
    sk_err err;
    const char *why; /* part of the error text */
} set_cases[] = {
    {"listen", "127.0.0.1:2525", SK_OK, NULL},
    {"listen", "[::1]:25", SK_OK, NULL},
    {"listen", "::1:25", SK_ERR_CONFIG, "HOST:PORT"},
    {"listen", "127.0.0.1", SK_ERR_CONFIG, "HOST:PORT"},
    {"listen", "127.0.0.1:0", SK_ERR_CONFIG, "HOST:PORT"},
    {"listen", "127.0.0.1:65536", SK_ERR_CONFIG, "HOST:PORT"},
    {"relay-host", "mail.example.net:587", SK_OK, NULL},
    {"relay-host", "mail.example.net:x", SK_ERR_CONFIG, "HOST:PORT"},
    {"max-message-size", "10M", SK_OK, NULL},
    {"max-message-size", "0", SK_ERR_CONFIG, "not a size"},
    {"max-message-size", "ten", SK_ERR_CONFIG, "not a size"},
    {"hold", "yes", SK_OK, NULL},
    {"spool-sync", "log", SK_OK, NULL},
    {"spool-sync", "fs", SK_OK, NULL},
    {"spool-sync", "files", SK_OK, NULL},
    {"spool-sync", "fsync", SK_ERR_CONFIG, "not log, fs or files"},
    {"hold", "maybe", SK_ERR_CONFIG, "yes or no"},
    {"hold", NULL, SK_OK, NULL},
    {"command-timeout", "30s", SK_OK, NULL},
    {"command-timeout", "30x", SK_ERR_CONFIG, "duration"},
    {"max-recipients", "50", SK_OK, NULL},
    {"max-recipients", "-5", SK_ERR_CONFIG, "number"},
    {"max-recipients", "5k", SK_ERR_CONFIG, "number"},
    {"mx-port", "2525", SK_OK, NULL},
    {"mx-port", "70000", SK_ERR_CONFIG, "1 to 65535"},
    {"log", "syslog", SK_OK, NULL},
    {"log", "file", SK_ERR_CONFIG, "stderr nor syslog"},
    {"log-level", "error", SK_OK, NULL},
    {"log-level", "warning", SK_OK, NULL},
    {"log-level", "info", SK_OK, NULL},
    {"log-level", "debug", SK_OK, NULL},
    {"log-level", "warn", SK_ERR_CONFIG, "not error, warning, info or debug"},
    {"log-level", "DEBUG", SK_ERR_CONFIG, "not error, warning, info or debug"},
    {"log-format", "text", SK_OK, NULL},
    {"log-format", "json", SK_OK, NULL},
    {"log-format", "xml", SK_ERR_CONFIG, "neither text nor json"},
    {"local-domain", "Example.ORG", SK_OK, NULL},
    {"local-domain", "bad domain", SK_ERR_CONFIG, "domain"},
    {"relay-net", "10.0.0.0/8", SK_OK, NULL},
    {"relay-net", "10.0.0.1/8", SK_ERR_CONFIG, "network"},
    {"relay-net", "2001:db8::/32", SK_OK, NULL},
    {"relay-net", "10.0.0.0/33", SK_ERR_CONFIG, "network"},
    {"relay-net", "none", SK_OK, NULL},
    {"retry-schedule", "1m,5m,1h", SK_OK, NULL},
    {"retry-schedule", "1m,,x", SK_ERR_CONFIG, "durations"},
    {"rate-limit", "example.com=100/m", SK_OK, NULL},
    {"rate-limit", "example.com=100/week", SK_ERR_CONFIG, "unit must be s, m or h"},
    {"rate-limit", "=100/m", SK_ERR_CONFIG, "domain"},
    {"rate-limit", "default=5/s", SK_OK, NULL},
    {"rate-limit", "example.com=many/m", SK_ERR_CONFIG, "count"},
    {"rate-limit", "example.com", SK_ERR_CONFIG, "count"},
    {"priority", "auth:alice=5", SK_OK, NULL},
    {"priority", "news@example.com=-5", SK_OK, NULL},
    {"priority", "example.com=9", SK_OK, NULL},
    {"priority", "example.com=10", SK_ERR_CONFIG, "-9 to 9"},
    {"priority", "example.com", SK_ERR_CONFIG, "SENDER=N"},
    {"priority", "=3", SK_ERR_CONFIG, "bad match"},
    {"destination-connections", "4", SK_OK, NULL},
    {"destination-connections", "0", SK_ERR_CONFIG, "number"},
    {"messages-per-connection", "1", SK_OK, NULL},
    {"messages-per-connection", "x", SK_ERR_CONFIG, "number"},
    {"group-destinations", "provider", SK_OK, NULL},
    {"group-destinations", "domain", SK_OK, NULL},
    {"group-destinations", "mx", SK_ERR_CONFIG, "provider nor domain"},
    {"tls-required", "example.com", SK_OK, NULL},
    {"tls-required", ".example.com", SK_OK, NULL},
    {"tls-required", "exa mple.com", SK_ERR_CONFIG, "domain"},
    {"rules", "/nonexistent/rules.conf", SK_ERR_CONFIG, "rules.conf"},
    {"throttle-suspend", "10m", SK_OK, NULL},
    {"throttle-suspend", "soon", SK_ERR_CONFIG, "duration"},
    {"suppress-for", "30d", SK_OK, NULL},
    {"suppress-for", "0", SK_ERR_CONFIG, "duration"},
    {"delay-warning", "30m", SK_OK, NULL},
    {"delay-warning", "0", SK_OK, NULL}, /* the one duration where 0 means off */
    {"delay-warning", "later", SK_ERR_CONFIG, "duration"},
    {"verp", NULL, SK_OK, NULL},
    {"verp", "sometimes", SK_ERR_CONFIG, "yes or no"},
    {"dkim", "example.org:s2025:/etc/smtpkit/dkim/s2025.pem", SK_OK, NULL},
    {"dkim", "Example.ORG.:sel.sub:/k:with:colons.pem", SK_OK, NULL},
    {"dkim", "example.org:/etc/k.pem", SK_ERR_CONFIG, "three parts"},
    {"dkim", "example.org:s1:", SK_ERR_CONFIG, "no key file"},
    {"dkim", "exa mple.org:s1:/k.pem", SK_ERR_CONFIG, "domain"},
    {"dkim", ":s1:/k.pem", SK_ERR_CONFIG, "domain"},
    {"dkim", "example.org:s 1:/k.pem", SK_ERR_CONFIG, "selector"},
    {"dmarc-policy", "enforce", SK_OK, NULL},
    {"dmarc-policy", "report", SK_OK, NULL},
    {"dmarc-policy", "reject", SK_ERR_CONFIG, "neither enforce nor report"},
    {"spf-reject-fail", NULL, SK_OK, NULL},
    {"spf-reject-fail", "perhaps", SK_ERR_CONFIG, "yes or no"},
    {"dns-server", "127.0.0.1:5353", SK_OK, NULL},
    {"dns-server", "127.0.0.1", SK_ERR_CONFIG, "HOST:PORT"},
    {"tls-cert", "", SK_ERR_CONFIG, "empty"},
    {"tls-cert", NULL, SK_ERR_CONFIG, "needs a value"},
    {"no-such-option", "1", SK_ERR_CONFIG, "unknown option"},
    {"config", "x.conf", SK_ERR_CONFIG, "command line"},
};

static void test_set_values(void **state)
{
    for (size_t i = 0; i < sizeof set_cases / sizeof set_cases[0]; i++) {
        sk_daemon_config *c = sk_daemon_config_new();
        assert_non_null(c);
        sk_error err;
        sk_error_clear(&err);
        sk_err e = sk_daemon_config_set(c, set_cases[i].key, set_cases[i].value, &err);
        if (e != set_cases[i].err)
            fail_msg("case %zu (%s=%s): got %d (%s)", i, set_cases[i].key,
                     set_cases[i].value ? set_cases[i].value : "(null)", e, err.text);
        if (set_cases[i].why && !strstr(err.text, set_cases[i].why))
            fail_msg("case %zu: \"%s\" lacks \"%s\"", i, err.text, set_cases[i].why);
        if (set_cases[i].why) assert_non_null(strstr(err.text, set_cases[i].key));
        sk_daemon_config_free(c);
    }
}

static void test_values_stored(void **state)
{
    sk_daemon_config *c = sk_daemon_config_new();
    sk_error err;
    assert_int_equal(sk_daemon_config_set(c, "max-message-size", "10M", &err), SK_OK);
    assert_int_equal(c->max_message_size, 10u * 1024 * 1024);
    assert_int_equal(c->delay_warning_ms, SK_QUEUE_DELAY_WARNING_DEFAULT_MS);
    assert_int_equal(sk_daemon_config_set(c, "delay-warning", "90s", &err), SK_OK);
    assert_int_equal(c->delay_warning_ms, 90000);
    assert_int_equal(sk_daemon_config_set(c, "data-timeout", "2m", &err), SK_OK);
    assert_int_equal(c->data_timeout_ms, 120000);
    assert_int_equal(sk_daemon_config_set(c, "local-domain", "Example.ORG.", &err), SK_OK);
    assert_int_equal(sk_daemon_config_set(c, "local-domain", "b.example", &err), SK_OK);
    assert_int_equal(c->local_domain.n, 2);
    assert_string_equal(c->local_domain.v[0], "example.org");
    assert_int_equal(sk_daemon_config_set(c, "hold", "no", &err), SK_OK);
    assert_false(c->hold);
    assert_int_equal(sk_daemon_config_set(c, "hold", NULL, &err), SK_OK);
    assert_int_equal(sk_daemon_config_set(c, "log-level", "debug", &err), SK_OK);
    assert_string_equal(c->log_level, "debug");
    assert_int_equal(sk_daemon_config_set(c, "log-format", "json", &err), SK_OK);
    assert_string_equal(c->log_format, "json");
    assert_true(c->hold);
    sk_daemon_config_free(c);
}

static void test_defaults(void **state)
{
    sk_daemon_config *c = NULL;
    sk_error err;
    assert_int_equal(sk_daemon_config_build(NULL, NULL, 0, &c, &err), SK_OK);
    assert_int_equal(c->listen.n, 1);
    assert_string_equal(c->listen.v[0], "127.0.0.1:2525");
    assert_int_equal(c->submission.n, 0);
    assert_string_equal(c->data_dir, "./var");
    assert_int_equal(c->local_domain.n, 1);
    assert_string_equal(c->local_domain.v[0], "localhost");
    assert_int_equal(c->n_relay_net, 2);
    assert_string_equal(c->log, "stderr");
    assert_string_equal(c->log_level, "info");
    assert_string_equal(c->log_format, "text");
    assert_false(c->hold);
    assert_false(c->auth_plaintext_loopback); /* docs/SECURITY.md */
    assert_null(c->relay_host);
    /* Authenticated mail: nothing signed, DMARC only reported. */
    assert_int_equal(c->dkim.n, 0);
    assert_null(c->dmarc_policy);
    assert_false(c->spf_reject_fail);
    sk_daemon_config_free(c);
}

/* Files and the first error reported with its line. */
static const struct {
    const char *text;
    sk_err err;
    const char *where;  /* ":LINE: reason" fragment */
    const char *absent; /* a fragment the message must not have */
} file_cases[] = {
    {"# comment\n; also\n\nlisten = 127.0.0.1:2526\nhold = yes\n", SK_OK, NULL, NULL},
    {"listen = 127.0.0.1:2526\nmax-message-size = lots\n", SK_ERR_CONFIG,
     ":2: max-message-size: \"lots\" is not a size", NULL},
    {"hold = yes\n\n\nbogus = 1\nalso-bogus = 2\n", SK_ERR_CONFIG, ":4: unknown key 'bogus'",
     "did you mean"},
    {"hold = yes\njust words\n", SK_ERR_CONFIG, ":2: expected \"key = value\"", NULL},
    /* A section header is refused on its own line, also with no key after. */
    {"[server]\nhold = yes\n", SK_ERR_CONFIG, ":1: sections are not used ([server])", NULL},
    {"hold = yes\n[main]\n", SK_ERR_CONFIG, ":2: sections are not used ([main])", NULL},
    {"  [main]  \n", SK_ERR_CONFIG, ":1: sections are not used ([main]  )", NULL},
    {"[unclosed\nhold = yes\n", SK_ERR_CONFIG, ":1: sections are not used", NULL},
    /* Near-miss keys get the nearest key the file may set. */
    {"hold = yes\nlsiten = 127.0.0.1:2526\n", SK_ERR_CONFIG,
     ":2: unknown key 'lsiten' (did you mean 'listen'?)", NULL},
    {"retry-shedule = 1m\n", SK_ERR_CONFIG,
     ":1: unknown key 'retry-shedule' (did you mean 'retry-schedule'?)", NULL},
    {"log-levl = debug\n", SK_ERR_CONFIG, ":1: unknown key 'log-levl' (did you mean 'log-level'?)",
     NULL},
    {"data = /tmp/x\n", SK_ERR_CONFIG, ":1: unknown key 'data' (did you mean 'data-dir'?)", NULL},
    {"Max_Recipent = 5\n", SK_ERR_CONFIG,
     ":1: unknown key 'Max_Recipent' (did you mean 'max-recipients'?)", NULL},
    /* "config" is not a key of the file, so it is never suggested. */
    {"confg = x\n", SK_ERR_CONFIG, ":1: unknown key 'confg'", "did you mean"},
    {"= 5\n", SK_ERR_CONFIG, ":1: unknown key ''", NULL},
    /* "key: value" is not the file's syntax, nor is a line without '='. */
    {"# ok\nlisten: 127.0.0.1:2526\n", SK_ERR_CONFIG, ":2: expected \"key = value\"", NULL},
    {"hostname: a=b\n", SK_ERR_CONFIG, ":1: expected \"key = value\"", NULL},
    {"hold\n", SK_ERR_CONFIG, ":1: expected \"key = value\"", NULL},
    /* The first mistake is the one reported. */
    {"just words\nbogus = 1\n", SK_ERR_CONFIG, ":1: expected \"key = value\"", NULL},
    {"bogus = 1\n[main]\n", SK_ERR_CONFIG, ":1: unknown key 'bogus'", NULL},
    {"--hold = yes\nlog_level = debug\nlog-format = json\n", SK_OK, NULL, NULL},
    {"listen = 127.0.0.1:2526 ; inline comment\n\t\n  # indented comment\n", SK_OK, NULL, NULL},
    {"config = other.conf\n", SK_ERR_CONFIG, ":1: config: only valid on the command line", NULL},
    {"   local-domain = a.example\n  relay-net = 10.0.0.0/8\n", SK_OK, NULL, NULL},
    {"tls-cert = /x/cert.pem\n", SK_ERR_CONFIG, "tls-cert and tls-key go together", NULL},
    {"smtps = 127.0.0.1:4650\n", SK_ERR_CONFIG, "smtps needs a certificate", NULL},
    {"submission = 127.0.0.1:5870\n", SK_ERR_CONFIG, "submission requires AUTH", NULL},
};

static void test_files(void **state)
{
    for (size_t i = 0; i < sizeof file_cases / sizeof file_cases[0]; i++) {
        const char *path = write_temp(file_cases[i].text);
        sk_daemon_config *c = NULL;
        sk_error err;
        sk_error_clear(&err);
        sk_err e = sk_daemon_config_build(path, NULL, 0, &c, &err);
        if (e != file_cases[i].err) fail_msg("case %zu: got %d (%s)", i, e, err.text);
        if (file_cases[i].where) {
            if (!strstr(err.text, file_cases[i].where))
                fail_msg("case %zu: \"%s\" lacks \"%s\"", i, err.text, file_cases[i].where);
            if (file_cases[i].absent && strstr(err.text, file_cases[i].absent))
                fail_msg("case %zu: \"%s\" has \"%s\"", i, err.text, file_cases[i].absent);
            if (file_cases[i].where[0] == ':') assert_memory_equal(err.text, path, strlen(path));
        } else {
            assert_non_null(c);
        }
        sk_daemon_config_free(c);
        unlink(path);
    }
}

static void test_long_line_and_missing_file(void **state)
{
    char text[600];
    memset(text, 'x', sizeof text);
    memcpy(text, "hostname = ", 11);
    text[sizeof text - 2] = '\n';
    text[sizeof text - 1] = '\0';
    char body[700];
    snprintf(body, sizeof body, "hold = yes\n%s", text);
    const char *path = write_temp(body);
    sk_daemon_config *c = NULL;
    sk_error err;
    assert_int_equal(sk_daemon_config_build(path, NULL, 0, &c, &err), SK_ERR_CONFIG);
    assert_non_null(strstr(err.text, ":2: line too long"));
    unlink(path);
    assert_int_equal(sk_daemon_config_build("/nonexistent/smtpkit.conf", NULL, 0, &c, &err),
                     SK_ERR_CONFIG);
    assert_non_null(strstr(err.text, "cannot open"));
}

static void test_flags_override_file(void **state)
{
    const char *path = write_temp("listen = 127.0.0.1:2526\n"
                                  "listen = 127.0.0.1:2527\n"
                                  "local-domain = file.example\n"
                                  "max-recipients = 10\n"
                                  "relay-net = 10.0.0.0/8\n");
    static const sk_daemon_setting flags[] = {
        {"listen", "127.0.0.1:3000"},
        {"listen", "127.0.0.1:3001"},
        {"max-recipients", "20"},
        {"hold", NULL},
    };
    sk_daemon_config *c = NULL;
    sk_error err;
    assert_int_equal(sk_daemon_config_build(path, flags, 4, &c, &err), SK_OK);
    /* The flags' list replaced the file's; others from the file stay. */
    assert_int_equal(c->listen.n, 2);
    assert_string_equal(c->listen.v[0], "127.0.0.1:3000");
    assert_string_equal(c->listen.v[1], "127.0.0.1:3001");
    assert_int_equal(c->local_domain.n, 1);
    assert_string_equal(c->local_domain.v[0], "file.example");
    assert_int_equal(c->max_recipients, 20);
    assert_true(c->hold);
    /* relay-net from the file replaces the default networks. */
    assert_int_equal(c->n_relay_net, 1);
    sk_daemon_config_free(c);

    static const sk_daemon_setting badflag[] = {{"max-recipients", "many"}};
    assert_int_equal(sk_daemon_config_build(path, badflag, 1, &c, &err), SK_ERR_CONFIG);
    assert_non_null(strstr(err.text, "--max-recipients"));
    unlink(path);
}

static void test_hostport(void **state)
{
    static const struct {
        const char *in;
        sk_err err;
        const char *host;
        unsigned port;
    } cases[] = {
        {"127.0.0.1:25", SK_OK, "127.0.0.1", 25},
        {"[::1]:2525", SK_OK, "::1", 2525},
        {"mx.example.org:587", SK_OK, "mx.example.org", 587},
        {"[::1]2525", SK_ERR_SYNTAX, NULL, 0},
        {":25", SK_ERR_SYNTAX, NULL, 0},
        {"host:", SK_ERR_SYNTAX, NULL, 0},
        {"host:25x", SK_ERR_SYNTAX, NULL, 0},
        {"a b:25", SK_ERR_SYNTAX, NULL, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char host[64] = "";
        unsigned port = 0;
        assert_int_equal(sk_daemon_parse_hostport(cases[i].in, host, sizeof host, &port),
                         cases[i].err);
        if (cases[i].err == SK_OK) {
            assert_string_equal(host, cases[i].host);
            assert_int_equal(port, cases[i].port);
        }
    }
}

static void test_cidr_match(void **state)
{
    static const struct {
        const char *net, *addr;
        bool match;
    } cases[] = {
        {"127.0.0.0/8", "127.1.2.3", true},
        {"127.0.0.0/8", "128.0.0.1", false},
        {"10.255.255.0/24", "127.0.0.1", false},
        {"10.255.255.0/24", "10.255.255.77", true},
        {"192.168.1.128/25", "192.168.1.200", true},
        {"192.168.1.128/25", "192.168.1.100", false},
        {"::1", "::1", true},
        {"::1", "::2", false},
        {"2001:db8::/32", "2001:db8:1::5", true},
        {"2001:db8::/32", "2001:db9::5", false},
        {"127.0.0.0/8", "::ffff:127.0.0.1", true}, /* IPv4-mapped */
        {"0.0.0.0/0", "203.0.113.9", true},
        {"::/0", "203.0.113.9", false},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        sk_cidr net;
        assert_int_equal(sk_cidr_parse(cases[i].net, &net), SK_OK);
        struct sockaddr_storage ss = {0};
        if (strchr(cases[i].addr, ':')) {
            struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
            s6->sin6_family = AF_INET6;
            assert_int_equal(inet_pton(AF_INET6, cases[i].addr, &s6->sin6_addr), 1);
        } else {
            struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
            s4->sin_family = AF_INET;
            assert_int_equal(inet_pton(AF_INET, cases[i].addr, &s4->sin_addr), 1);
        }
        if (sk_cidr_match(&net, 1, (struct sockaddr *)&ss) != cases[i].match)
            fail_msg("case %zu: %s in %s", i, cases[i].addr, cases[i].net);
    }
}

static void test_users_file(void **state)
{
    static const struct {
        const char *text;
        sk_err err;
        const char *why;
    } cases[] = {
        {"# users\n\nalice:$y$j9T$abc$def\nbob:$6$salt$hash\n", SK_OK, NULL},
        {"alice:$y$j9T$abc$def\nnocolon\n", SK_ERR_CONFIG, ":2: expected \"user:HASH\""},
        {"alice:secret\n", SK_ERR_CONFIG, ":1: the hash is not a crypt(3) hash"},
        {"alice:$6$a$b\nalice:$6$c$d\n", SK_ERR_CONFIG, ":2: user listed twice"},
        {":$6$a$b\n", SK_ERR_CONFIG, ":1: expected"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *path = write_temp(cases[i].text);
        sk_users u = {0};
        sk_error err;
        sk_error_clear(&err);
        sk_err e = sk_users_load(path, &u, &err);
        if (e != cases[i].err) fail_msg("case %zu: got %d (%s)", i, e, err.text);
        if (cases[i].why && !strstr(err.text, cases[i].why))
            fail_msg("case %zu: \"%s\" lacks \"%s\"", i, err.text, cases[i].why);
        if (e == SK_OK) {
            assert_string_equal(sk_users_hash(&u, "alice"), "$y$j9T$abc$def");
            assert_string_equal(sk_users_hash(&u, "bob"), "$6$salt$hash");
            assert_null(sk_users_hash(&u, "carol"));
            assert_null(sk_users_hash(&u, "Alice"));
        }
        sk_users_free(&u);
        unlink(path);
    }
}

static void test_option_table(void **state)
{
    /* Every option has a help line, and names are unique. */
    const sk_daemon_option *o = sk_daemon_options();
    size_t n = 0;
    for (; o[n].name; n++) {
        assert_non_null(o[n].help);
        assert_ptr_equal(sk_daemon_option_find(o[n].name), &o[n]);
        assert_true((o[n].kind == SK_DOPT_BOOL) == (o[n].arg == NULL));
    }
    assert_true(n > 25);
    assert_null(sk_daemon_option_find("nope"));
}

static void test_verp_parse(void **state)
{
    static const struct {
        const char *addr;
        sk_err err;
        const char *id, *rcpt;
    } cases[] = {
        {"bounces+01ABC=bob=far.example@relay.example", SK_OK, "01ABC", "bob@far.example"},
        {"BOUNCES+01ABC=a=b=far.example@relay.example", SK_OK, "01ABC", "a=b@far.example"},
        {"bounces+01ABC=bob@relay.example", SK_ERR_SYNTAX, NULL, NULL},
        {"bounces+=bob=far.example@relay.example", SK_ERR_SYNTAX, NULL, NULL},
        {"bounces+01ABC==far.example@relay.example", SK_ERR_SYNTAX, NULL, NULL},
        {"bounces+01ABC=bob=@relay.example", SK_ERR_SYNTAX, NULL, NULL},
        {"bob@far.example", SK_ERR_SYNTAX, NULL, NULL},
        {"bounces+01ABC=bob=far.example", SK_ERR_SYNTAX, NULL, NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char id[64], rcpt[128];
        sk_err e = sk_daemon_verp_parse(cases[i].addr, id, sizeof id, rcpt, sizeof rcpt);
        if (e != cases[i].err) fail_msg("case %zu (%s): got %d", i, cases[i].addr, e);
        if (e) continue;
        assert_string_equal(id, cases[i].id);
        assert_string_equal(rcpt, cases[i].rcpt);
    }
}

static void test_message_id(void **state)
{
    static const struct {
        const char *headers, *want;
    } cases[] = {
        {"Subject: x\r\nMessage-ID: <a@b.example>\r\n", "a@b.example"},
        {"message-id:<a@b.example>\r\n", "a@b.example"},
        {"Message-ID:\r\n <folded@b.example>\r\nTo: y\r\n", "folded@b.example"},
        {"X-Message-ID: <no@b.example>\r\n", ""},
        {"Subject: Message-ID: <no@b.example>\r\n", ""},
        {"Message-ID: <unclosed@b.example\r\n", ""},
        {"", ""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char out[128];
        sk_daemon_message_id(cases[i].headers, strlen(cases[i].headers), out, sizeof out);
        if (strcmp(out, cases[i].want))
            fail_msg("case %zu: got \"%s\", want \"%s\"", i, out, cases[i].want);
    }
}

/* The delivery options land in their fields, from the file and from flags. */
static void test_delivery_options(void **state)
{
    const char *path = write_temp("dns-server = 127.0.0.1:5300\n"
                                  "mx-port = 2626\n"
                                  "rate-limit = default=10/s\n"
                                  "rate-limit = example.com=100/m\n"
                                  "priority = auth:alice=5\n"
                                  "destination-connections = 3\n"
                                  "messages-per-connection = 7\n"
                                  "group-destinations = domain\n"
                                  "tls-required = .example.net\n"
                                  "throttle-suspend = 2m\n"
                                  "suppress-for = 1d\n"
                                  "delay-warning = 0\n"
                                  "verp = yes\n");
    const sk_daemon_setting flags[] = {{"rate-limit", "other.example=1/h"}};
    sk_daemon_config *c = NULL;
    sk_error err;
    assert_int_equal(sk_daemon_config_build(path, flags, 1, &c, &err), SK_OK);
    unlink(path);
    assert_string_equal(c->dns_server, "127.0.0.1:5300");
    assert_int_equal(c->mx_port, 2626);
    /* A flag replaces the file's list. */
    assert_int_equal(c->rate_limit.n, 1);
    assert_string_equal(c->rate_limit.v[0], "other.example=1/h");
    assert_int_equal(c->priority.n, 1);
    assert_int_equal(c->destination_connections, 3);
    assert_int_equal(c->messages_per_connection, 7);
    assert_string_equal(c->group_destinations, "domain");
    assert_string_equal(c->tls_required.v[0], ".example.net");
    assert_int_equal(c->throttle_suspend_ms, 120000);
    assert_int_equal(c->suppress_for_ms, 86400000);
    assert_int_equal(c->delay_warning_ms, 0);
    assert_true(c->verp);
    assert_null(c->rules);
    sk_daemon_config_free(c);

    /* A rules file with a mistake is reported with its own line, behind
     * the config file's. */
    char rules[64];
    snprintf(rules, sizeof rules, "%s", write_temp("# rules\nthis is not a rule\n"));
    char text[160];
    snprintf(text, sizeof text, "hold = yes\nrules = %s\n", rules);
    path = write_temp(text);
    c = NULL;
    assert_int_equal(sk_daemon_config_build(path, NULL, 0, &c, &err), SK_ERR_CONFIG);
    assert_null(c);
    char where[96];
    snprintf(where, sizeof where, "%s:2: rules: %s:2:", path, rules);
    if (!strstr(err.text, where)) fail_msg("\"%s\" lacks \"%s\"", err.text, where);
    unlink(path);
    unlink(rules);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_set_values),
        cmocka_unit_test(test_values_stored),
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_files),
        cmocka_unit_test(test_long_line_and_missing_file),
        cmocka_unit_test(test_flags_override_file),
        cmocka_unit_test(test_hostport),
        cmocka_unit_test(test_cidr_match),
        cmocka_unit_test(test_option_table),
        cmocka_unit_test(test_delivery_options),
        cmocka_unit_test(test_verp_parse),
        cmocka_unit_test(test_message_id),
        cmocka_unit_test(test_users_file),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
