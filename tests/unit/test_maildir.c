/* Unit tests for the Maildir transport: folder and file names, trace
 * headers, CRLF to LF, and delivering once across retries and restarts. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "sktest.h"

#include <dirent.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "deliver/deliver_int.h"

static void test_folder_names(void **state)
{
    static const struct {
        const char *in, *out; /* out NULL: refused */
    } cases[] = {
        {"bob", "bob"},
        {"Bob.Smith", "bob.smith"},
        {"a+tag", "a+tag"},
        {"Zo\xc3\xab", "zo\xc3\xab"}, /* UTF-8 kept, ASCII folded */
        {"a b", "a b"},
        {".hidden", NULL},
        {"..", NULL},
        {"a/b", NULL},
        {"/etc", NULL},
        {"", NULL},
        {"a\nb", NULL},
        {"x123456789012345678901234567890123456789012345678901234567890abcd", NULL}, /* 65 */
    };
    for (size_t i = 0; i < SKT_N(cases); i++) {
        sk_buf b = SK_BUF_INIT(256);
        sk_err e = sk_maildir_folder_name(cases[i].in, &b);
        if (cases[i].out) {
            assert_int_equal(e, SK_OK);
            assert_string_equal(b.data, cases[i].out);
        } else {
            assert_int_equal(e, SK_ERR_INVAL);
        }
        sk_buf_free(&b);
    }
}

static void test_file_names(void **state)
{
    static const struct {
        int64_t arrival;
        size_t index;
        const char *host, *want;
    } cases[] = {
        {1700000000, 0, "mx.example.org", "1700000000.M01HF3Z4Q7M2ABCDER0.mx.example.org"},
        {1700000001, 12, "a:b/c", "1700000001.M01HF3Z4Q7M2ABCDER12.a\\072b\\057c"},
    };
    for (size_t i = 0; i < SKT_N(cases); i++) {
        sk_spool_envelope env = {.id = "01HF3Z4Q7M2ABCDE", .arrival = cases[i].arrival};
        sk_buf b = SK_BUF_INIT(256);
        assert_int_equal(sk_maildir_file_name(&env, cases[i].index, cases[i].host, &b), SK_OK);
        assert_string_equal(b.data, cases[i].want);
        sk_buf_free(&b);
    }
}

static void test_trace_headers(void **state)
{
    setenv("TZ", "UTC", 1);
    tzset();
    static const struct {
        sk_spool_envelope env;
        const char *want;
    } cases[] = {
        {{.id = "01HF3Z4Q7M2ABCDE",
          .sender = "alice@example.org",
          .helo = "client.example.org",
          .peer = "192.0.2.1",
          .esmtp = 1},
         "Return-Path: <alice@example.org>\n"
         "Received: from client.example.org ([192.0.2.1])\n"
         "\tby mx.example.net with ESMTP id 01HF3Z4Q7M2ABCDE\n"
         "\tfor <bob@example.net>; Tue, 14 Nov 2023 22:13:20 +0000\n"},
        {{.id = "01HF3Z4Q7M2ABCDE",
          .sender = "",
          .helo = "[IPv6:2001:db8::1]",
          .peer = "IPv6:2001:db8::1",
          .peer_name = "c.example",
          .esmtp = 1,
          .tls = "TLSv1.3 TLS_AES_128_GCM_SHA256",
          .auth_user = "alice"},
         "Return-Path: <>\n"
         "Received: from [IPv6:2001:db8::1] (c.example [IPv6:2001:db8::1])\n"
         "\tby mx.example.net with ESMTPSA (TLSv1.3 TLS_AES_128_GCM_SHA256) id "
         "01HF3Z4Q7M2ABCDE\n"
         "\tfor <bob@example.net>; Tue, 14 Nov 2023 22:13:20 +0000\n"},
        {{.id = "01HF3Z4Q7M2ABCDE", .sender = "a@b"},
         "Return-Path: <a@b>\n"
         "Received: from unknown\n"
         "\tby mx.example.net with SMTP id 01HF3Z4Q7M2ABCDE\n"
         "\tfor <bob@example.net>; Tue, 14 Nov 2023 22:13:20 +0000\n"},
    };
    for (size_t i = 0; i < SKT_N(cases); i++) {
        sk_buf b = SK_BUF_INIT(4096);
        assert_int_equal(sk_maildir_trace_headers(&cases[i].env, "bob@example.net",
                                                  "mx.example.net", 1700000000, &b),
                         SK_OK);
        assert_string_equal(b.data, cases[i].want);
        sk_buf_free(&b);
    }
}

/* ---- delivery ---- */

typedef struct result_rec {
    int calls;
    size_t n;
    sk_delivery_rcpt_result r[4];
} result_rec;

static void on_done(void *ctx, const sk_delivery_result *res)
{
    result_rec *rec = ctx;
    rec->calls++;
    rec->n = res->nrcpts;
    for (size_t i = 0; i < res->nrcpts && i < 4; i++) rec->r[i] = res->rcpts[i];
}

/* Files in dir (one level), and the name of the last one seen. */
static int count_dir(const char *dir, char *last, size_t lastsize)
{
    DIR *d = opendir(dir);
    if (!d) return 0;
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)))
        if (de->d_name[0] != '.') {
            n++;
            if (last) snprintf(last, lastsize, "%s", de->d_name);
        }
    closedir(d);
    return n;
}

/* Run the same checks with synchronous delivery and with the worker
 * thread (state points to 0 or 1). */
static void test_deliver_once(void **state)
{
    int use_worker = *(int *)*state;
    struct event_base *evb = use_worker ? event_base_new() : NULL;
    char *root = skt_tmpdir("maildir");

    /* A body that crosses the transport's 64 KiB read size with a CRLF
     * split across it, and has a bare CR that must stay. */
    size_t big = 70000;
    char *body = malloc(big);
    memset(body, 'x', big);
    memcpy(body, "Subject: t\r\n\r\nbare\rcr\r\n", 24);
    body[65535] = '\r';
    body[65536] = '\n';
    memcpy(body + big - 4, "\r\n\r\n", 4);
    char *want_body = malloc(big);
    size_t wn = 0;
    for (size_t i = 0; i < big; i++) {
        if (body[i] == '\r' && i + 1 < big && body[i + 1] == '\n') continue;
        want_body[wn++] = body[i];
    }
    char body_path[512];
    snprintf(body_path, sizeof body_path, "%s/body.msg", root);
    FILE *f = fopen(body_path, "wb");
    fwrite(body, 1, big, f);
    /* A spool file goes on after the body (its envelope): never copied. */
    fputs("smtpkit-envelope 1\nend\n", f);
    fclose(f);

    char boxes[512];
    snprintf(boxes, sizeof boxes, "%s/mailboxes", root);
    sk_transport *t = sk_maildir_transport_new(boxes, "mx.test", NULL, NULL);
    assert_non_null(t);
    if (evb) assert_int_equal(sk_maildir_transport_start(t, evb, NULL), SK_OK);
    sk_spool_rcpt rc[] = {{.addr = "Bob@localhost"}, {.addr = "../x@localhost"}};
    sk_spool_envelope env = {.id = "01HF3Z4Q7M2ABCDE",
                             .arrival = 1700000000,
                             .sender = "a@example.org",
                             .rcpts = rc,
                             .nrcpts = 2,
                             .helo = "c",
                             .peer = "127.0.0.1",
                             .esmtp = 1,
                             .body_octets = big};
    sk_delivery_rcpt jr[] = {{.addr = "Bob@localhost", .index = 0},
                             {.addr = ".x@localhost", .index = 1}};
    sk_delivery job = {.queue_id = env.id,
                       .env = &env,
                       .body_path = body_path,
                       .domain = "localhost",
                       .rcpts = jr,
                       .nrcpts = 2};
    char newdir[600], curdir[600], tmpdir[600], name[256];
    snprintf(newdir, sizeof newdir, "%s/localhost/bob/new", boxes);
    snprintf(curdir, sizeof curdir, "%s/localhost/bob/cur", boxes);
    snprintf(tmpdir, sizeof tmpdir, "%s/localhost/bob/tmp", boxes);

    /* Attempts: first; a retry; after the user read it (moved to cur/)
     * with the restart flag; each must leave exactly one copy. */
    for (int attempt = 0; attempt < 3; attempt++) {
        if (attempt == 2) {
            char from[900], to[900];
            snprintf(from, sizeof from, "%s/%s", newdir, name);
            snprintf(to, sizeof to, "%s/%s:2,S", curdir, name);
            assert_int_equal(rename(from, to), 0);
            job.maybe_delivered = 1;
        }
        result_rec rec = {0};
        t->deliver(t, &job, on_done, &rec);
        /* With the worker, the result comes on the loop, never inside. */
        if (evb) assert_int_equal(rec.calls, 0);
        while (evb && !rec.calls) event_base_loop(evb, EVLOOP_ONCE);
        assert_int_equal(rec.calls, 1);
        assert_int_equal(rec.n, 2);
        assert_int_equal(rec.r[0].status, SK_DELIVERY_OK);
        assert_int_equal(rec.r[0].reply.code, 250);
        assert_int_equal(rec.r[1].status, SK_DELIVERY_PERMANENT);
        assert_int_equal(rec.r[1].reply.code, 550);
        assert_int_equal(count_dir(newdir, name, sizeof name) + count_dir(curdir, NULL, 0), 1);
        assert_int_equal(count_dir(tmpdir, NULL, 0), 0);
        if (attempt == 0) {
            assert_string_equal(name, "1700000000.M01HF3Z4Q7M2ABCDER0.mx.test");
            char path[900];
            snprintf(path, sizeof path, "%s/%s", newdir, name);
            size_t len;
            char *got = skt_read_file(path, &len);
            const char *sep = strstr(got, "Subject: t\n");
            assert_non_null(sep);
            assert_true(!strncmp(got, "Return-Path: <a@example.org>\nReceived: from c ", 46));
            assert_non_null(strstr(got, "\tfor <Bob@localhost>; "));
            assert_int_equal(len - (size_t)(sep - got), wn);
            assert_memory_equal(sep, want_body, wn);
            assert_null(memchr(got, '\r', (size_t)(strstr(got, "bare") - got)));
            free(got);
        }
    }
    sk_transport_free(t);
    if (evb) event_base_free(evb);
    free(body);
    free(want_body);
    skt_rmtree(root);
    free(root);
}

/* Cancel: jobs queued or in progress report nothing afterwards. */
static void test_cancel(void **state)
{
    char *root = skt_tmpdir("maildir");
    char body_path[512], boxes[512];
    snprintf(body_path, sizeof body_path, "%s/body.msg", root);
    snprintf(boxes, sizeof boxes, "%s/mailboxes", root);
    static const char body[] = "Subject: c\r\n\r\nx\r\n";
    skt_write_file(body_path, body, sizeof body - 1);
    struct event_base *evb = event_base_new();
    sk_transport *t = sk_maildir_transport_new(boxes, "mx.test", NULL, NULL);
    assert_int_equal(sk_maildir_transport_start(t, evb, NULL), SK_OK);
    sk_spool_rcpt rc = {.addr = "c@localhost"};
    sk_spool_envelope env = {.id = "01HF3Z4Q7M2ABCDE",
                             .arrival = 1700000000,
                             .sender = "",
                             .rcpts = &rc,
                             .nrcpts = 1,
                             .body_octets = sizeof body - 1};
    sk_delivery_rcpt jr = {.addr = "c@localhost"};
    sk_delivery job = {.queue_id = env.id,
                       .env = &env,
                       .body_path = body_path,
                       .domain = "localhost",
                       .rcpts = &jr,
                       .nrcpts = 1};
    result_rec rec = {0};
    for (int i = 0; i < 5; i++) t->deliver(t, &job, on_done, &rec);
    t->cancel(t);
    for (int i = 0; i < 5; i++) event_base_loop(evb, EVLOOP_NONBLOCK);
    assert_int_equal(rec.calls, 0);
    /* Still usable after a cancel. */
    t->deliver(t, &job, on_done, &rec);
    while (!rec.calls) event_base_loop(evb, EVLOOP_ONCE);
    assert_int_equal(rec.r[0].status, SK_DELIVERY_OK);
    sk_transport_free(t);
    event_base_free(evb);
    skt_rmtree(root);
    free(root);
}

static int sync_mode = 0, worker_mode = 1;

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_folder_names),
        cmocka_unit_test(test_file_names),
        cmocka_unit_test(test_trace_headers),
        cmocka_unit_test_prestate(test_deliver_once, &sync_mode),
        cmocka_unit_test_prestate(test_deliver_once, &worker_mode),
        cmocka_unit_test(test_cancel),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
