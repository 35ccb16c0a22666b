/* Unit tests for the server object: options and listen addresses, and a
 * session driven in-process on a caller's event_base (hooks, async reply,
 * graceful stop with on_stopped). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "sktest.h"

#include <smtpkit/smtpkit.h>

#include <arpa/inet.h>
#include <errno.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static void test_listen_addresses(void **state)
{
    static const struct {
        const char *addr;
        sk_listen_kind kind;
        sk_err err;
    } cases[] = {
        {"127.0.0.1:0", SK_LISTEN_SMTP, SK_OK},
        {"127.0.0.1:0", SK_LISTEN_SUBMISSION, SK_OK},
        {"127.0.0.1:0", SK_LISTEN_SMTPS, SK_ERR_CONFIG}, /* no certificate */
        {"127.0.0.1:0", (sk_listen_kind)3, SK_ERR_INVAL},
        {"localhost:25", SK_LISTEN_SMTP, SK_ERR_INVAL},
        {"127.0.0.1", SK_LISTEN_SMTP, SK_ERR_INVAL},
        {"127.0.0.1:", SK_LISTEN_SMTP, SK_ERR_INVAL},
        {"127.0.0.1:65536", SK_LISTEN_SMTP, SK_ERR_INVAL},
        {"127.0.0.1:2x", SK_LISTEN_SMTP, SK_ERR_INVAL},
        {"[::1:0", SK_LISTEN_SMTP, SK_ERR_INVAL},
        {"::1:0", SK_LISTEN_SMTP, SK_ERR_INVAL},
        {":25", SK_LISTEN_SMTP, SK_ERR_INVAL},
        {"127.0.0.1:+25", SK_LISTEN_SMTP, SK_ERR_INVAL},
        {"[127.0.0.1]:0", SK_LISTEN_SMTP, SK_OK},
    };
    sk_error err;
    sk_server *srv = sk_server_new(&(sk_server_opts){.hostname = "mx.test"}, NULL, &err);
    assert_non_null(srv);
    size_t ok = 0;
    for (size_t i = 0; i < SKT_N(cases); i++) {
        sk_err e = sk_server_listen(srv, cases[i].addr, cases[i].kind, &err);
        if (e != cases[i].err) fail_msg("case %zu (%s): %d %s", i, cases[i].addr, e, err.text);
        if (!e) {
            assert_true(sk_server_port(srv, ok) > 0);
            ok++;
        }
    }
    assert_int_equal(sk_server_port(srv, ok), 0);
    sk_server_free(srv);
}

static void test_options(void **state)
{
    static const struct {
        sk_server_opts o;
        int ok;
    } cases[] = {
        {{.hostname = "mx.example.org"}, 1},
        {{.hostname = NULL}, 1},
        {{.hostname = "bad host"}, 0},
        {{.tls_cert_file = "/nonexistent/cert.pem"}, 0},
        {{.tls_cert_file = "/nonexistent/cert.pem", .tls_key_file = "/nonexistent/key.pem"}, 0},
        {{.tls_key_file = "/nonexistent/key.pem"}, 0},
    };
    for (size_t i = 0; i < SKT_N(cases); i++) {
        sk_error err;
        sk_server *srv = sk_server_new(&cases[i].o, NULL, &err);
        if (!!srv != cases[i].ok) fail_msg("case %zu: %s", i, srv ? "accepted" : err.text);
        if (!srv) assert_true(err.err == SK_ERR_CONFIG);
        sk_server_free(srv);
    }
    sk_error err;
    sk_server *srv = sk_server_new(NULL, NULL, &err);
    assert_non_null(srv);
    /* A failed reload changes nothing and says why. */
    assert_int_equal(
        sk_server_reload(srv, &(sk_server_opts){.tls_cert_file = "/nonexistent"}, &err),
        SK_ERR_CONFIG);
    assert_int_equal(sk_server_reload(srv, &(sk_server_opts){.hostname = "mx2.test"}, &err), SK_OK);
    sk_server_free(srv);
}

/* An in-process session: a blocking client socket and the loop run in
 * small steps until the expected reply has arrived. */
typedef struct fixture {
    struct event_base *base;
    sk_server *srv;
    int fd;
    char in[4096];
    size_t nin;
    sk_session *waiting;
    int stopped;
    int disconnects;
} fixture;

static void pump_until(fixture *f, const char *needle)
{
    for (int i = 0; i < 2000 && !strstr(f->in, needle); i++) {
        event_base_loop(f->base, EVLOOP_NONBLOCK);
        ssize_t r = recv(f->fd, f->in + f->nin, sizeof f->in - 1 - f->nin, MSG_DONTWAIT);
        if (r > 0) {
            f->nin += (size_t)r;
            f->in[f->nin] = '\0';
        } else if (r == 0) {
            break;
        }
        if (!strstr(f->in, needle)) usleep(1000);
    }
    if (!strstr(f->in, needle)) fail_msg("no \"%s\" in \"%s\"", needle, f->in);
}

static void say(fixture *f, const char *s)
{
    assert_int_equal(send(f->fd, s, strlen(s), 0), (ssize_t)strlen(s));
}

static sk_reply on_data_start(sk_session *s, const sk_envelope *env, void **msg, void *ctx)
{
    assert_string_equal(env->from.mailbox, "a@example.net");
    assert_int_equal(env->nrcpts, 1);
    assert_string_equal(env->rcpts[0].path.mailbox, "b@example.org");
    assert_string_equal(env->helo, "client.example");
    assert_string_equal(env->protocol, "ESMTP");
    assert_string_equal(env->server_name, "mx.test");
    assert_string_equal(env->peer_addr, "127.0.0.1");
    assert_true(env->peer_port > 0);
    assert_int_equal(env->tls, 0);
    assert_string_equal(env->auth_user, "");
    assert_string_equal(env->session_id, sk_session_id(s));
    *msg = ctx;
    return SK_REPLY_OK;
}

static sk_err on_data_chunk(sk_session *s, void *msg, const char *b, size_t n, void *ctx)
{
    return SK_OK;
}

static sk_reply on_data_end(sk_session *s, void *msg, int ok, void *ctx)
{
    fixture *f = ctx;
    assert_true(ok);
    f->waiting = s;
    return SK_REPLY_ASYNC;
}

static void on_disconnect(sk_session *s, void *ctx)
{
    ((fixture *)ctx)->disconnects++;
}

static void on_stopped(sk_server *srv, void *ctx)
{
    ((fixture *)ctx)->stopped = 1;
}

static void test_async_and_stop(void **state)
{
    fixture f = {0};
    f.base = event_base_new();
    assert_non_null(f.base);
    sk_error err;
    f.srv = sk_server_new(&(sk_server_opts){.hostname = "mx.test"}, f.base, &err);
    assert_non_null(f.srv);
    assert_ptr_equal(sk_server_base(f.srv), f.base);
    assert_int_equal(sk_server_listen(f.srv, "127.0.0.1:0", SK_LISTEN_SMTP, &err), SK_OK);
    sk_server_on_data(f.srv, on_data_start, on_data_chunk, on_data_end, &f);
    sk_server_on_disconnect(f.srv, on_disconnect, &f);
    sk_server_on_stopped(f.srv, on_stopped, &f);
    assert_int_equal(sk_server_run(f.srv), SK_ERR_STATE); /* not its loop */

    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)sk_server_port(f.srv, 0))};
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    f.fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_int_equal(connect(f.fd, (struct sockaddr *)&sa, sizeof sa), 0);
    pump_until(&f, "220 mx.test");
    say(&f, "EHLO client.example\r\nMAIL FROM:<a@example.net>\r\nRCPT TO:<b@example.org>\r\n"
            "DATA\r\n");
    pump_until(&f, "354 ");
    say(&f, "hello\r\n.\r\nNOOP\r\n");
    pump_until(&f, "354 ");
    for (int i = 0; i < 50 && !f.waiting; i++)
        event_base_loop(f.base, EVLOOP_NONBLOCK), usleep(1000);
    assert_non_null(f.waiting);
    /* Not answered yet, and the pipelined NOOP waits behind it. */
    assert_null(strstr(f.in, "250 2.0.0 Ok\r\n"));
    assert_int_equal(sk_server_sessions(f.srv), 1);
    sk_server_stop(f.srv);
    assert_int_equal(f.stopped, 0); /* a session is in flight */
    sk_reply r = sk_reply_make(250, "2.0.0", "queued as X1");
    assert_int_equal(sk_session_reply(f.waiting, &r), SK_OK);
    assert_int_equal(sk_session_reply(f.waiting, &r), SK_ERR_STATE); /* only once */
    pump_until(&f, "250 2.0.0 queued as X1\r\n421 4.3.2");
    for (int i = 0; i < 500 && !f.stopped; i++)
        event_base_loop(f.base, EVLOOP_NONBLOCK), usleep(1000);
    assert_int_equal(f.stopped, 1);
    assert_int_equal(f.disconnects, 1);
    assert_int_equal(sk_server_sessions(f.srv), 0);
    close(f.fd);
    sk_server_free(f.srv);
    event_base_free(f.base);
}

/* Fail the Nth of our allocations for every N while creating, configuring
 * and freeing a server: every failure is reported, nothing leaks. */
static void test_alloc_failures(void **state)
{
    int done = 0;
    for (long n = 0; n < 50 && !done; n++) {
        skt_alloc_fail_from(n);
        sk_error err;
        sk_server *srv = sk_server_new(&(sk_server_opts){.hostname = "mx.test"}, NULL, &err);
        if (!srv) {
            assert_int_equal(err.err, SK_ERR_NOMEM);
        } else {
            sk_err e = sk_server_listen(srv, "127.0.0.1:0", SK_LISTEN_SMTP, &err);
            assert_true(e == SK_OK || e == SK_ERR_NOMEM);
            sk_err r = sk_server_reload(srv, &(sk_server_opts){.hostname = "mx2.test"}, &err);
            assert_true(r == SK_OK || r == SK_ERR_NOMEM);
            done = e == SK_OK && r == SK_OK;
            sk_server_free(srv);
        }
        skt_alloc_end();
    }
    assert_true(done);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_listen_addresses),
        cmocka_unit_test(test_options),
        cmocka_unit_test(test_async_and_stop),
        cmocka_unit_test(test_alloc_failures),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
