/* Unit tests for the SMTP client (src/client): the pure helpers as tables,
 * and whole sessions against a scripted server on loopback that checks
 * each command the client sends and answers from the script. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "sktest.h"

#include "client/client_int.h"

#include <smtpkit/message.h>
#include <smtpkit/probe.h>
#include <smtpkit/proto.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* ---- pure helpers ---- */

static const struct {
    const char *in, *out;
} stuff_cases[] = {
    {"", ".\r\n"},
    {"a\r\n", "a\r\n.\r\n"},
    {"a", "a\r\n.\r\n"},
    {".\r\n", "..\r\n.\r\n"},
    {"a\r\n.b\r\n..c\r\n", "a\r\n..b\r\n...c\r\n.\r\n"},
    {"x.y\r\n", "x.y\r\n.\r\n"},
    {"a\nb\n", "a\r\nb\r\n.\r\n"},
    {"a\n.b", "a\r\n..b\r\n.\r\n"},
    {"a\r", "a\r\n.\r\n"},
    /* A lone CR is a line end too (RFC 5321 2.3.8): "\r.\r\n" must not
     * reach a server as a bare-CR end-of-data marker. */
    {"a\r.\r\nb", "a\r\n..\r\nb\r\n.\r\n"},
    {"a\r\rb", "a\r\n\r\nb\r\n.\r\n"},
    {"Subject: \xc3\xa9\r\n\r\nbody", "Subject: \xc3\xa9\r\n\r\nbody\r\n.\r\n"},
    /* Long runs inside lines (skipped to their ends), each kind of end. */
    {"abcdefghij\r\n.k\nlmnop\r.q", "abcdefghij\r\n..k\r\nlmnop\r\n..q\r\n.\r\n"},
    {"0123456789abcdef.\r\n", "0123456789abcdef.\r\n.\r\n"},
};

static void test_stuff(void **state)
{
    for (size_t i = 0; i < SKT_N(stuff_cases); i++) {
        /* At once, and one octet per call: the same octets come out. */
        for (int bytewise = 0; bytewise < 2; bytewise++) {
            sk_buf out = SK_BUF_INIT(1024);
            int bol = 1;
            size_t n = strlen(stuff_cases[i].in);
            if (!bytewise || n == 0) {
                assert_int_equal(cl_stuff(&out, stuff_cases[i].in, n, &bol, 1), SK_OK);
            } else {
                for (size_t k = 0; k < n; k++)
                    assert_int_equal(cl_stuff(&out, stuff_cases[i].in + k, 1, &bol, k == n - 1),
                                     SK_OK);
            }
            print_message("case %zu bytewise %d\n", i, bytewise);
            assert_string_equal(sk_buf_cstr(&out), stuff_cases[i].out);
            sk_buf_free(&out);
        }
    }
}

static const struct {
    const char *lines;
    unsigned ext;
    uint64_t size;
    const char *auth, *domain;
} ehlo_cases[] = {
    {"mx.example.org Hello", 0, 0, "", "mx.example.org"},
    {"mx\nPIPELINING\nSIZE 10240000\n8BITMIME\nSMTPUTF8\nENHANCEDSTATUSCODES\nDSN\nCHUNKING",
     SK_CLIENT_EXT_PIPELINING | SK_CLIENT_EXT_SIZE | SK_CLIENT_EXT_8BITMIME |
         SK_CLIENT_EXT_SMTPUTF8 | SK_CLIENT_EXT_ENHANCEDSTATUSCODES | SK_CLIENT_EXT_DSN |
         SK_CLIENT_EXT_CHUNKING,
     10240000, "", "mx"},
    {"mx\nSTARTTLS\nAUTH PLAIN LOGIN\nAUTH=CRAM-MD5\nMT-PRIORITY MIXER",
     SK_CLIENT_EXT_STARTTLS | SK_CLIENT_EXT_AUTH | SK_CLIENT_EXT_MT_PRIORITY, 0,
     "PLAIN LOGIN CRAM-MD5", "mx"},
    {"mx\nsize\npipelining\nX-UNKNOWN 1\nSIZEX 5", SK_CLIENT_EXT_SIZE | SK_CLIENT_EXT_PIPELINING, 0,
     "", "mx"},
};

static void test_parse_ehlo(void **state)
{
    for (size_t i = 0; i < SKT_N(ehlo_cases); i++) {
        sk_ehlo_info info;
        cl_parse_ehlo(ehlo_cases[i].lines, &info);
        print_message("case %zu\n", i);
        assert_int_equal(info.ext, ehlo_cases[i].ext);
        assert_int_equal(info.size_max, ehlo_cases[i].size);
        assert_string_equal(info.auth, ehlo_cases[i].auth);
        assert_string_equal(info.domain, ehlo_cases[i].domain);
        assert_int_equal(info.esmtp, 1);
    }
}

static const struct {
    const char *text, *id;
} qid_cases[] = {
    {"2.0.0 Ok: queued as 4Bx7Yz0abc", "4Bx7Yz0abc"},
    {"Ok: queued as ABC123.", "ABC123"},
    {"OK id=1qXyZ-0001aB-Cd", "1qXyZ-0001aB-Cd"},
    {"Ok", ""},
    {"queued as ", ""},
};

static void test_queue_id_and_8bit(void **state)
{
    for (size_t i = 0; i < SKT_N(qid_cases); i++) {
        char id[64];
        cl_queue_id(qid_cases[i].text, id, sizeof id);
        assert_string_equal(id, qid_cases[i].id);
    }
    assert_int_equal(cl_has_8bit("abc", 3), 0);
    assert_int_equal(cl_has_8bit("a\xc3\xa9", 3), 1);
    /* Whole words, then the tail. */
    assert_int_equal(cl_has_8bit("abcdefgh\x80ijklmnop", 17), 1);
    assert_int_equal(cl_has_8bit("abcdefghijklmnop\xc3", 17), 1);
    assert_int_equal(cl_has_8bit("abcdefghijklmnopq", 17), 0);
}

/* What a peer's first octets say it is (identification of a port that
 * does not greet), and how they are quoted. */
static const struct {
    const char *in;
    size_t n; /* 0: strlen(in) */
    sk_peer_kind kind;
    const char *said;
} classify_cases[] = {
    {"220 mx.test ESMTP\r\n", 0, SK_PEER_SMTP, "220 mx.test ESMTP"},
    {"220-mx.test teaser\r\n", 0, SK_PEER_SMTP, "220-mx.test teaser"},
    {"554 5.5.0 pre-greeting traffic\r\n", 0, SK_PEER_SMTP, "554 5.5.0 pre-greeting traffic"},
    {"22", 0, SK_PEER_SMTP, "22"},
    {"421\r\n", 0, SK_PEER_SMTP, "421"},
    {"2200 no", 0, SK_PEER_OTHER, "2200 no"},
    {"HTTP/1.0 200 OK\r\nServer: x\r\n", 0, SK_PEER_HTTP, "HTTP/1.0 200 OK"},
    {"HTTP", 0, SK_PEER_HTTP, "HTTP"},
    {"<!DOCTYPE HTML>\n<html>", 0, SK_PEER_HTTP, "<!DOCTYPE HTML>"},
    {"<html><body>400</body>", 0, SK_PEER_HTTP, "<html><body>400</body>"},
    {"\x16\x03\x03\x00\x7a\x02", 6, SK_PEER_TLS, "(a TLS handshake record)"},
    {"\x15\x03\x01\x00\x02\x02\x46", 7, SK_PEER_TLS, "(a TLS alert)"},
    {"\x17", 1, SK_PEER_TLS, "(a TLS record)"},
    {"\x16\x01", 2, SK_PEER_OTHER, ".."},
    {"SSH-2.0-OpenSSH_9.2\r\n", 0, SK_PEER_OTHER, "SSH-2.0-OpenSSH_9.2"},
    {"+OK POP3 ready\r\n", 0, SK_PEER_OTHER, "+OK POP3 ready"},
    {"a\x01\x7f", 3, SK_PEER_OTHER, "a.."},
    {"", 0, SK_PEER_UNKNOWN, ""},
};

static void test_classify_peer(void **state)
{
    for (size_t i = 0; i < sizeof classify_cases / sizeof classify_cases[0]; i++) {
        const unsigned char *b = (const unsigned char *)classify_cases[i].in;
        size_t n = classify_cases[i].n ? classify_cases[i].n : strlen(classify_cases[i].in);
        char said[96];
        cl_peer_said(b, n, said, sizeof said);
        if (cl_classify(b, n) != classify_cases[i].kind ||
            strcmp(said, classify_cases[i].said) != 0)
            fail_msg("case %zu: kind %s said \"%s\", expected %s \"%s\"", i,
                     sk_peer_kind_name(cl_classify(b, n)), said,
                     sk_peer_kind_name(classify_cases[i].kind), classify_cases[i].said);
    }
    assert_string_equal(sk_peer_kind_name(SK_PEER_TLS), "tls");
    assert_string_equal(sk_peer_kind_name(SK_PEER__COUNT), "unknown");
}

/* ---- scripted server ----
 * Script lines: "S:text" the server sends text+CRLF; "C:prefix" the next
 * line from the client must start with prefix; "D:body" the client sends
 * message data that, up to and without the final ".", must equal body;
 * "d:text" message data containing text (and no Bcc field);
 * "R:octets" the server sends octets as they are; "W" the server reads
 * until the client closes; "X" the server closes; "T" the server does a
 * TLS handshake (implicit TLS first, or after a 220 to STARTTLS). */

typedef struct script_server {
    SSL_CTX *tls; /* for "T": the server's certificate */
    SSL *ssl;     /* after "T" */
    int lfd;
    unsigned short port;
    const char *const *script;
    pthread_t thread;
    char failure[512];
    int steps_done;
    int skip; /* connections to accept and close first (a probe's TCP check) */
} script_server;

static ssize_t srv_recv(script_server *s, int fd, void *p, size_t n)
{
    if (!s->ssl) return recv(fd, p, n, 0);
    size_t got = 0;
    return SSL_read_ex(s->ssl, p, n, &got) == 1 ? (ssize_t)got : -1;
}

static ssize_t srv_send(script_server *s, int fd, const void *p, size_t n)
{
    if (!s->ssl) return send(fd, p, n, MSG_NOSIGNAL);
    size_t w = 0;
    return SSL_write_ex(s->ssl, p, n, &w) == 1 ? (ssize_t)w : -1;
}

static int read_line(script_server *s, int fd, char *buf, size_t size)
{
    size_t n = 0;
    while (n + 1 < size) {
        char ch;
        ssize_t r = srv_recv(s, fd, &ch, 1);
        if (r <= 0) return -1;
        buf[n++] = ch;
        if (ch == '\n') break;
    }
    buf[n] = '\0';
    return (int)n;
}

static void *server_main(void *ctx)
{
    script_server *s = ctx;
    struct pollfd p = {.fd = s->lfd, .events = POLLIN};
    for (int i = 0; i < s->skip; i++) {
        if (poll(&p, 1, 10000) != 1) {
            snprintf(s->failure, sizeof s->failure, "no connection to skip");
            return NULL;
        }
        int fd = accept(s->lfd, NULL, NULL);
        if (fd >= 0) close(fd);
    }
    if (poll(&p, 1, 10000) != 1) {
        snprintf(s->failure, sizeof s->failure, "no connection");
        return NULL;
    }
    int fd = accept(s->lfd, NULL, NULL);
    if (fd < 0) {
        snprintf(s->failure, sizeof s->failure, "accept failed");
        return NULL;
    }
    /* Bounded: a client that stops talking fails the test, never hangs it. */
    struct timeval tv = {.tv_sec = 10};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    static char line[70000];
    for (const char *const *st = s->script; *st; st++, s->steps_done++) {
        const char *arg = *st + 2;
        if (**st == 'S' || **st == 'R') {
            char out[1100];
            int n = snprintf(out, sizeof out, **st == 'S' ? "%s\r\n" : "%s", arg);
            if (srv_send(s, fd, out, (size_t)n) != n) break;
        } else if (**st == 'C') {
            if (read_line(s, fd, line, sizeof line) < 0) {
                snprintf(s->failure, sizeof s->failure, "step %d: no line, wanted \"%.200s\"",
                         s->steps_done, arg);
                break;
            }
            if (strncmp(line, arg, strlen(arg))) {
                snprintf(s->failure, sizeof s->failure,
                         "step %d: got \"%.200s\", wanted \"%.200s\"", s->steps_done, line, arg);
                break;
            }
        } else if (**st == 'D') {
            size_t n = 0;
            for (;;) {
                int r = read_line(s, fd, line + n, sizeof line - n);
                if (r < 0) break;
                if (!strcmp(line + n, ".\r\n")) break;
                n += (size_t)r;
            }
            line[n] = '\0';
            if (strcmp(line, arg)) {
                snprintf(s->failure, sizeof s->failure,
                         "step %d: data \"%.200s\", wanted \"%.200s\"", s->steps_done, line, arg);
                break;
            }
        } else if (**st == 'd') {
            /* Message data that contains arg, and no Bcc field. */
            size_t n = 0;
            for (;;) {
                int r = read_line(s, fd, line + n, sizeof line - n);
                if (r < 0 || !strcmp(line + n, ".\r\n")) break;
                n += (size_t)r;
            }
            line[n] = '\0';
            if (!strstr(line, arg) || strstr(line, "\nBcc:")) {
                snprintf(s->failure, sizeof s->failure, "step %d: data \"%.200s\" lacks \"%s\"",
                         s->steps_done, line, arg);
                break;
            }
        } else if (**st == 'W') {
            /* Wait for the client to close, so our close sends no reset. */
            while (srv_recv(s, fd, line, sizeof line) > 0) continue;
        } else if (**st == 'T') {
            s->ssl = SSL_new(s->tls);
            SSL_set_fd(s->ssl, fd);
            /* A client that rejects the certificate may close mid-way;
             * what follows then fails on its own ("W" ends at once). */
            (void)SSL_accept(s->ssl);
        } else if (**st == 'X') {
            break;
        }
    }
    if (s->ssl) SSL_free(s->ssl);
    s->ssl = NULL;
    close(fd);
    return NULL;
}

static void server_start_skip(script_server *s, const char *const *script, SSL_CTX *tls, int skip)
{
    memset(s, 0, sizeof *s);
    s->skip = skip;
    s->tls = tls;
    s->script = script;
    s->lfd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(s->lfd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(s->lfd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(s->lfd, 1), 0);
    socklen_t sl = sizeof a;
    assert_int_equal(getsockname(s->lfd, (struct sockaddr *)&a, &sl), 0);
    s->port = ntohs(a.sin_port);
    assert_int_equal(pthread_create(&s->thread, NULL, server_main, s), 0);
}

static void server_start_tls(script_server *s, const char *const *script, SSL_CTX *tls)
{
    server_start_skip(s, script, tls, 0);
}

static void server_start(script_server *s, const char *const *script)
{
    server_start_tls(s, script, NULL);
}

/* Wait for the server's end and check it saw the whole script. */
static void server_finish(script_server *s)
{
    pthread_join(s->thread, NULL);
    close(s->lfd);
    if (s->failure[0]) fail_msg("server: %s", s->failure);
    size_t n = 0;
    while (s->script[n]) n++;
    if ((size_t)s->steps_done != n && !(s->script[s->steps_done][0] == 'X'))
        fail_msg("server stopped at step %d of %zu (%s)", s->steps_done, n,
                 s->script[s->steps_done]);
}

typedef struct transcript {
    char text[8192];
    size_t len;
} transcript;

static void on_line(void *ctx, char dir, const char *line, size_t len)
{
    transcript *t = ctx;
    int w = snprintf(t->text + t->len, sizeof t->text - t->len, "%c: %.*s\n", dir, (int)len, line);
    if (w > 0 && (size_t)w < sizeof t->text - t->len) t->len += (size_t)w;
}

static sk_client_opts opts_for(const script_server *s, transcript *t)
{
    sk_client_opts o = {.host = "127.0.0.1",
                        .port = s->port,
                        .tls = SK_TLS_NONE,
                        .helo_name = "client.test",
                        .connect_timeout_ms = 10000,
                        .greeting_timeout_ms = 10000,
                        .command_timeout_ms = 10000,
                        .transcript = on_line,
                        .transcript_ctx = t};
    return o;
}

#define EHLO_BASIC "S:250-mx.test", "S:250-8BITMIME", "S:250 SIZE 1000"

/* Pipelined: one recipient refused, the message goes to the other. */
static const char *const script_pipelined[] = {
    "S:220 mx.test ESMTP",
    "C:EHLO client.test",
    "S:250-mx.test",
    "S:250-PIPELINING",
    "S:250-ENHANCEDSTATUSCODES",
    "S:250-DSN",
    "S:250 SIZE 1000",
    "C:MAIL FROM:<a@x.test> SIZE=20 RET=HDRS ENVID=id+2B1",
    "C:RCPT TO:<b@y.test> NOTIFY=FAILURE ORCPT=rfc822;b@y.test",
    "C:RCPT TO:<c@y.test> NOTIFY=FAILURE ORCPT=rfc822;c@y.test",
    "C:DATA",
    "S:250 2.1.0 Ok",
    "S:550 5.1.1 <b@y.test>: no such user",
    "S:250 2.1.5 Ok",
    "S:354 go ahead",
    "D:Subject: t\r\n\r\n..dot\r\n",
    "S:250 2.0.0 Ok: queued as Q1",
    "C:QUIT",
    "S:221 2.0.0 Bye",
    NULL,
};

static void test_send_pipelined_partial(void **state)
{
    script_server s;
    transcript t = {0};
    server_start(&s, script_pipelined);
    sk_client_opts o = opts_for(&s, &t);
    sk_client *c = sk_client_new(&o);
    assert_non_null(c);
    sk_error err;
    assert_int_equal(sk_client_connect(c, &err), SK_OK);
    assert_string_equal(sk_client_remote_address(c), "127.0.0.1");
    assert_int_equal(sk_client_extensions(c)->size_max, 1000);
    assert_string_equal(sk_client_ext_param(c, "size"), "1000");
    assert_string_equal(sk_client_ext_param(c, "PIPELINING"), "");
    assert_null(sk_client_ext_param(c, "STARTTLS"));
    const char *rcpts[] = {"b@y.test", "c@y.test"};
    static const char msg[] = "Subject: t\r\n\r\n.dot\r\n";
    sk_send_opts so = {
        .dsn_ret = "HDRS", .dsn_envid = "id+1", .dsn_notify = "FAILURE", .dsn_orcpt = 1};
    sk_send_result res;
    assert_int_equal(sk_client_send(c, "a@x.test", rcpts, 2, msg, strlen(msg), &so, &res, &err),
                     SK_OK);
    assert_int_equal(res.sent, 1);
    assert_int_equal(res.nrcpt, 2);
    assert_int_equal(res.naccepted, 1);
    assert_string_equal(res.rcpts[0].address, "b@y.test");
    assert_int_equal(res.rcpts[0].accepted, 0);
    assert_int_equal(res.rcpts[0].reply.code, 550);
    assert_string_equal(res.rcpts[0].reply.enhanced, "5.1.1");
    assert_int_equal(res.rcpts[1].accepted, 1);
    assert_int_equal(res.data.code, 250);
    assert_string_equal(res.queue_id, "Q1");
    sk_send_result_free(&res);
    assert_int_equal(sk_client_quit(c, &err), SK_OK);
    sk_client_free(c);
    server_finish(&s);
    /* The transcript shows both sides, the message content not. */
    assert_non_null(strstr(t.text, "C: MAIL FROM:<a@x.test>"));
    assert_non_null(strstr(t.text, "S: 550 5.1.1 <b@y.test>: no such user"));
    assert_null(strstr(t.text, "dot"));
}

/* Without PIPELINING, every recipient refused: RSET, error at RCPT; then
 * a second transaction on the same connection works. */
static const char *const script_all_refused[] = {
    "S:220 mx.test",
    "C:EHLO client.test",
    EHLO_BASIC,
    "C:MAIL FROM:<> SIZE=4",
    "S:250 ok",
    "C:RCPT TO:<b@y.test>",
    "S:450 4.2.0 mailbox busy",
    "C:RCPT TO:<c@y.test>",
    "S:550 5.1.1 unknown",
    "C:RSET",
    "S:250 ok",
    "C:MAIL FROM:<a@x.test> SIZE=4",
    "S:250 ok",
    "C:RCPT TO:<d@y.test>",
    "S:250 ok",
    "C:DATA",
    "S:354 go",
    "D:hi\r\n",
    "S:452 4.3.1 out of space",
    "C:QUIT",
    "S:221 bye",
    NULL,
};

static void test_send_all_refused_then_again(void **state)
{
    script_server s;
    transcript t = {0};
    server_start(&s, script_all_refused);
    sk_client_opts o = opts_for(&s, &t);
    sk_client *c = sk_client_new(&o);
    sk_error err;
    assert_int_equal(sk_client_connect(c, &err), SK_OK);
    const char *rcpts[] = {"b@y.test", "c@y.test"};
    sk_send_result res;
    assert_int_equal(sk_client_send(c, "", rcpts, 2, "hi\r\n", 4, NULL, &res, &err),
                     SK_ERR_PERMFAIL);
    assert_int_equal(err.step, SK_STEP_RCPT);
    assert_int_equal(err.code, 550);
    assert_int_equal(err.transient, 1); /* one refusal was 4xx */
    assert_int_equal(res.naccepted, 0);
    assert_int_equal(res.rcpts[0].reply.code, 450);
    sk_send_result_free(&res);
    const char *d[] = {"d@y.test"};
    assert_int_equal(sk_client_send(c, "a@x.test", d, 1, "hi\r\n", 4, NULL, &res, &err),
                     SK_ERR_TEMPFAIL);
    assert_int_equal(err.step, SK_STEP_DATA);
    assert_int_equal(err.code, 452);
    assert_string_equal(err.enhanced, "4.3.1");
    assert_string_equal(err.text, "out of space");
    assert_int_equal(res.sent, 0);
    sk_send_result_free(&res);
    assert_int_equal(sk_client_quit(c, &err), SK_OK);
    sk_client_free(c);
    server_finish(&s);
}

/* Checks before sending: SIZE, SMTPUTF8, 8BITMIME; nothing goes out. */
static const char *const script_preflight[] = {
    "S:220 mx.test",
    "C:EHLO client.test",
    "S:250-mx.test",
    "S:250 SIZE 10",
    "C:QUIT",
    "S:221 bye",
    NULL,
};

static void test_send_preflight(void **state)
{
    script_server s;
    transcript t = {0};
    server_start(&s, script_preflight);
    sk_client_opts o = opts_for(&s, &t);
    sk_client *c = sk_client_new(&o);
    sk_error err;
    assert_int_equal(sk_client_connect(c, &err), SK_OK);
    static const char *ascii[] = {"b@y.test"}, *utf8[] = {"zoë@y.test"};
    static const sk_send_opts bad_ret = {.dsn_ret = "FULL\r\nRSET"},
                              bad_notify = {.dsn_notify = "SUCCESS,SOMETIMES"},
                              bad_priority = {.has_priority = 1, .priority = 10};
    static const struct {
        const char *const *rcpts;
        const char *data;
        const sk_send_opts *opts;
        sk_err want;
        sk_step step;
    } cases[] = {
        {ascii, "0123456789ab", NULL, SK_ERR_TOO_LONG, SK_STEP_MAIL},
        {utf8, "x", NULL, SK_ERR_UNSUPPORTED, SK_STEP_MAIL},
        {ascii, "\xc3\xa9", NULL, SK_ERR_UNSUPPORTED, SK_STEP_DATA},
        {ascii, "x", &bad_ret, SK_ERR_INVAL, SK_STEP_MAIL},
        {ascii, "x", &bad_notify, SK_ERR_INVAL, SK_STEP_MAIL},
        {ascii, "x", &bad_priority, SK_ERR_INVAL, SK_STEP_MAIL},
    };
    for (size_t i = 0; i < SKT_N(cases); i++) {
        sk_send_result res;
        print_message("case %zu\n", i);
        assert_int_equal(sk_client_send(c, "a@x.test", cases[i].rcpts, 1, cases[i].data,
                                        strlen(cases[i].data), cases[i].opts, &res, &err),
                         cases[i].want);
        assert_int_equal(err.step, cases[i].step);
        assert_int_equal(err.transient, 0);
        sk_send_result_free(&res);
    }
    assert_int_equal(sk_client_quit(c, &err), SK_OK);
    sk_client_free(c);
    server_finish(&s);
}

/* Per-recipient DSN parameters (a relay passing on what it received, RFC
 * 3461 5.2.1): each RCPT its own NOTIFY and ORCPT, ENVID as given; lines
 * compared whole (with CRLF), pipelined and not. */
static const char *const script_rcpts_dsn_pipelined[] = {
    "S:220 mx.test",
    "C:EHLO client.test",
    "S:250-mx.test",
    "S:250-PIPELINING",
    "S:250 DSN",
    "C:MAIL FROM:<a@x.test> RET=FULL ENVID=Q+2B1.x\r\n",
    "C:RCPT TO:<b@y.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;B+2Bold@y.test\r\n",
    "C:RCPT TO:<c@y.test> NOTIFY=NEVER\r\n",
    "C:RCPT TO:<d@y.test> NOTIFY=DELAY ORCPT=rfc822;d@y.test\r\n",
    "C:RCPT TO:<e@y.test>\r\n",
    "C:DATA\r\n",
    "S:250 ok",
    "S:250 ok",
    "S:250 ok",
    "S:250 ok",
    "S:250 ok",
    "S:354 go",
    "D:x\r\n",
    "S:250 ok",
    "C:QUIT",
    "S:221 bye",
    NULL,
};

static const char *const script_rcpts_dsn_plain[] = {
    "S:220 mx.test",
    "C:EHLO client.test",
    "S:250-mx.test",
    "S:250 DSN",
    "C:MAIL FROM:<a@x.test> RET=FULL ENVID=Q+2B1.x\r\n",
    "S:250 ok",
    "C:RCPT TO:<b@y.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;B+2Bold@y.test\r\n",
    "S:250 ok",
    "C:RCPT TO:<c@y.test> NOTIFY=NEVER\r\n",
    "S:250 ok",
    "C:RCPT TO:<d@y.test> NOTIFY=DELAY ORCPT=rfc822;d@y.test\r\n",
    "S:250 ok",
    "C:RCPT TO:<e@y.test>\r\n",
    "S:250 ok",
    "C:DATA\r\n",
    "S:354 go",
    "D:x\r\n",
    "S:250 ok",
    "C:QUIT",
    "S:221 bye",
    NULL,
};

/* A server without DSN gets none of the parameters. */
static const char *const script_rcpts_no_dsn[] = {
    "S:220 mx.test",
    "C:EHLO client.test",
    "S:250-mx.test",
    "S:250 PIPELINING",
    "C:MAIL FROM:<a@x.test>\r\n",
    "C:RCPT TO:<b@y.test>\r\n",
    "C:RCPT TO:<c@y.test>\r\n",
    "C:RCPT TO:<d@y.test>\r\n",
    "C:RCPT TO:<e@y.test>\r\n",
    "C:DATA\r\n",
    "S:250 ok",
    "S:250 ok",
    "S:250 ok",
    "S:250 ok",
    "S:250 ok",
    "S:354 go",
    "D:x\r\n",
    "S:250 ok",
    "C:QUIT",
    "S:221 bye",
    NULL,
};

static void test_send_rcpts_dsn(void **state)
{
    static const sk_rcpt_spec rcpts[] = {
        {"b@y.test", "SUCCESS,FAILURE", "rfc822;B+2Bold@y.test"},
        {"c@y.test", "NEVER", NULL},
        {"d@y.test", "DELAY", "rfc822;d@y.test"},
        {"e@y.test", NULL, NULL},
    };
    const char *const *scripts[] = {script_rcpts_dsn_pipelined, script_rcpts_dsn_plain,
                                    script_rcpts_no_dsn};
    for (size_t k = 0; k < SKT_N(scripts); k++) {
        print_message("script %zu\n", k);
        script_server s;
        transcript t = {0};
        server_start(&s, scripts[k]);
        sk_client_opts o = opts_for(&s, &t);
        sk_client *c = sk_client_new(&o);
        sk_error err;
        assert_int_equal(sk_client_connect(c, &err), SK_OK);
        /* ENVID already in xtext goes out as it is ("+2B" not encoded again). */
        sk_send_opts so = {.dsn_ret = "FULL", .dsn_envid = "Q+2B1.x", .dsn_envid_xtext = 1};
        sk_send_result res;
        assert_int_equal(sk_client_send_rcpts(c, "a@x.test", rcpts, 4, "x\r\n", 3, &so, &res, &err),
                         SK_OK);
        assert_int_equal(res.sent, 1);
        assert_int_equal(res.naccepted, 4);
        assert_string_equal(res.rcpts[1].address, "c@y.test");
        sk_send_result_free(&res);
        assert_int_equal(sk_client_quit(c, &err), SK_OK);
        sk_client_free(c);
        server_finish(&s);
        if (k == 2)
            assert_non_null(strstr(t.text, "does not offer DSN"));
        else
            assert_null(strstr(t.text, "does not offer DSN"));
    }
}

/* ORCPT for UTF-8 addresses (RFC 6533 3): the client writes the "utf-8"
 * type, with UTF-8 as it is (utf-8-addr-unitext) when SMTPUTF8 is in use
 * and no ASCII character needs an escape, else in the 7-bit
 * utf-8-addr-xtext form; a received one goes on unchanged, or in the
 * 7-bit form where SMTPUTF8 is not in use. */
/* 120 "ö" (240 octets): with a "+" the 7-bit form takes 840, over the
 * 500 octets of an ORCPT, which is then left out. */
#define OE5   "\xc3\xb6\xc3\xb6\xc3\xb6\xc3\xb6\xc3\xb6"
#define OE40  OE5 OE5 OE5 OE5 OE5 OE5 OE5 OE5
#define OE120 OE40 OE40 OE40
static const char *const script_orcpt_utf8[] = {
    "S:220 mx.test",
    "C:EHLO client.test",
    "S:250-mx.test",
    "S:250-PIPELINING",
    "S:250-SMTPUTF8",
    "S:250 DSN",
    "C:MAIL FROM:<a@x.test> SMTPUTF8\r\n",
    "C:RCPT TO:<j\xc3\xb6rg@y.test> ORCPT=utf-8;j\xc3\xb6rg@y.test\r\n",
    "C:RCPT TO:<j\xc3\xb6rg+x@y.test> ORCPT=utf-8;j\\x{F6}rg\\x{2B}x@y.test\r\n",
    "C:RCPT TO:<\"j\xc3\xb6 rg\"@y.test> ORCPT=utf-8;\"j\\x{F6}\\x{20}rg\"@y.test\r\n",
    "C:RCPT TO:<b@y.test> ORCPT=utf-8;j\xc3\xb6rg@old.test\r\n",
    "C:RCPT TO:<c+1@y.test> ORCPT=rfc822;c+2B1@y.test\r\n",
    "C:RCPT TO:<\xe7\x94\xa8@y.test> ORCPT=utf-8;\xe7\x94\xa8@y.test\r\n",
    "C:RCPT TO:<" OE120 "+@y.test>\r\n",
    "C:DATA\r\n",
    "S:250 ok",
    "S:250 ok",
    "S:250 ok",
    "S:250 ok",
    "S:250 ok",
    "S:250 ok",
    "S:250 ok",
    "S:250 ok",
    "S:354 go",
    "D:x\r\n",
    "S:250 ok",
    "C:QUIT",
    "S:221 bye",
    NULL,
};

/* The same ORCPTs received, to a server without SMTPUTF8 (the recipients
 * themselves are ASCII): UTF-8 in ORCPT goes in the 7-bit form. */
static const char *const script_orcpt_7bit[] = {
    "S:220 mx.test",
    "C:EHLO client.test",
    "S:250-mx.test",
    "S:250 DSN",
    "C:MAIL FROM:<a@x.test>\r\n",
    "S:250 ok",
    "C:RCPT TO:<b@y.test> ORCPT=utf-8;j\\x{F6}rg@old.test\r\n",
    "S:250 ok",
    "C:RCPT TO:<c@y.test> ORCPT=utf-8;j\\x{F6}rg@old.test\r\n",
    "S:250 ok",
    "C:RCPT TO:<d@y.test> ORCPT=utf-8;\\x{7528}\\x{1F600}\\x{2B}@old.test\r\n",
    "S:250 ok",
    "C:RCPT TO:<e@y.test> ORCPT=rfc822;e@y.test\r\n",
    "S:250 ok",
    "C:DATA\r\n",
    "S:354 go",
    "D:x\r\n",
    "S:250 ok",
    "C:QUIT",
    "S:221 bye",
    NULL,
};

static void test_send_orcpt_utf8(void **state)
{
    static const sk_rcpt_spec utf8_rcpts[] = {
        {"j\xc3\xb6rg@y.test", NULL, NULL},
        {"j\xc3\xb6rg+x@y.test", NULL, NULL},
        {"\"j\xc3\xb6 rg\"@y.test", NULL, NULL},
        {"b@y.test", NULL, "utf-8;j\xc3\xb6rg@old.test"},
        {"c+1@y.test", NULL, NULL},
        {"\xe7\x94\xa8@y.test", NULL, NULL},
        {OE120 "+@y.test", NULL, NULL},
    };
    static const sk_rcpt_spec ascii_rcpts[] = {
        {"b@y.test", NULL, "utf-8;j\xc3\xb6rg@old.test"},
        {"c@y.test", NULL, "utf-8;j\\x{F6}rg@old.test"},
        {"d@y.test", NULL, "utf-8;\xe7\x94\xa8\xf0\x9f\x98\x80\\x{2B}@old.test"},
        {"e@y.test", NULL, NULL},
    };
    static const struct {
        const char *const *script;
        const sk_rcpt_spec *rcpts;
        size_t n;
    } cases[] = {{script_orcpt_utf8, utf8_rcpts, 7}, {script_orcpt_7bit, ascii_rcpts, 4}};
    for (size_t k = 0; k < SKT_N(cases); k++) {
        print_message("case %zu\n", k);
        script_server s;
        transcript t = {0};
        server_start(&s, cases[k].script);
        sk_client_opts o = opts_for(&s, &t);
        sk_client *c = sk_client_new(&o);
        sk_error err;
        assert_int_equal(sk_client_connect(c, &err), SK_OK);
        sk_send_opts so = {.dsn_orcpt = 1};
        sk_send_result res;
        assert_int_equal(sk_client_send_rcpts(c, "a@x.test", cases[k].rcpts, cases[k].n, "x\r\n", 3,
                                              &so, &res, &err),
                         SK_OK);
        assert_int_equal(res.sent, 1);
        assert_int_equal(res.naccepted, cases[k].n);
        sk_send_result_free(&res);
        assert_int_equal(sk_client_quit(c, &err), SK_OK);
        sk_client_free(c);
        server_finish(&s);
        if (k == 0) assert_non_null(strstr(t.text, "+@y.test> left out"));
    }
}

/* Malformed per-recipient values are refused before anything is sent. */
static void test_send_rcpts_invalid(void **state)
{
    script_server s;
    transcript t = {0};
    server_start(&s, script_preflight);
    sk_client_opts o = opts_for(&s, &t);
    sk_client *c = sk_client_new(&o);
    sk_error err;
    assert_int_equal(sk_client_connect(c, &err), SK_OK);
    static const struct {
        sk_rcpt_spec r;
        const char *envid; /* as xtext */
    } cases[] = {
        {{"b@y.test", "SUCCESS,", NULL}, NULL},
        {{"b@y.test", "SUCCESS\r\nRSET", NULL}, NULL},
        {{"b@y.test", "", NULL}, NULL},
        {{"b@y.test", NULL, "b@y.test"}, NULL},           /* no type */
        {{"b@y.test", NULL, ";b@y.test"}, NULL},          /* empty type */
        {{"b@y.test", NULL, "rfc822;"}, NULL},            /* empty address */
        {{"b@y.test", NULL, "rfc822;b c@y.test"}, NULL},  /* space: not xtext */
        {{"b@y.test", NULL, "rfc822;b+2b@y.test"}, NULL}, /* lower-case hex */
        {{"b@y.test", NULL, "rfc 822;b@y.test"}, NULL},
        {{"b@y.test", NULL, "rfc822;j\xc3\xb6rg@y.test"}, NULL}, /* rfc822 is xtext: ASCII */
        {{"b@y.test", NULL, "utf-8;a+2Bb@y.test"}, NULL},        /* "+" is not in RFC 6533 3 */
        {{"b@y.test", NULL, "utf-8;a=b@y.test"}, NULL},
        {{"b@y.test", NULL, "utf-8;a\\b@y.test"}, NULL},        /* a bare "\" */
        {{"b@y.test", NULL, "utf-8;a\\x{0A}b@y.test"}, NULL},   /* LF has no HEXPOINT */
        {{"b@y.test", NULL, "utf-8;a\\x{41}b@y.test"}, NULL},   /* "A" is written as itself */
        {{"b@y.test", NULL, "utf-8;a\\x{00F6}b@y.test"}, NULL}, /* leading zero */
        {{"b@y.test", NULL, "utf-8;a\\x{D800}b@y.test"}, NULL}, /* surrogate */
        {{"b@y.test", NULL, "utf-8;a\\x{110000}b@y.test"}, NULL},
        {{"b@y.test", NULL, "utf-8;a\\x{F6b@y.test"}, NULL},
        {{"b@y.test", NULL,
          "utf-8;a\xc3"
          "b@y.test"},
         NULL}, /* not UTF-8 */
        {{"b@y.test", NULL, "utf-8;"}, NULL},
        {{"b@y.test", NULL, NULL}, "a b"},
        {{"b@y.test", NULL, NULL}, "a+4"},
        {{NULL, NULL, NULL}, NULL},
    };
    for (size_t i = 0; i < SKT_N(cases); i++) {
        print_message("case %zu\n", i);
        sk_send_opts so = {.dsn_envid = cases[i].envid, .dsn_envid_xtext = 1};
        sk_send_result res;
        assert_int_equal(
            sk_client_send_rcpts(c, "a@x.test", &cases[i].r, 1, "x\r\n", 3, &so, &res, &err),
            SK_ERR_INVAL);
        assert_int_equal(err.transient, 0);
        sk_send_result_free(&res);
    }
    /* A long ORCPT: 500 octets pass the check (then SIZE refuses the
     * message here), 501 do not. */
    char big[SK_DSN_ORCPT_MAX_OCTETS + 2];
    memcpy(big, "rfc822;", 7);
    memset(big + 7, 'a', sizeof big - 8);
    big[sizeof big - 1] = '\0';
    sk_rcpt_spec r = {"b@y.test", NULL, big};
    sk_send_result res;
    assert_int_equal(sk_client_send_rcpts(c, "a@x.test", &r, 1, "x\r\n", 3, NULL, &res, &err),
                     SK_ERR_INVAL);
    sk_send_result_free(&res);
    big[sizeof big - 2] = '\0';
    assert_int_equal(
        sk_client_send_rcpts(c, "a@x.test", &r, 1, "0123456789ab", 12, NULL, &res, &err),
        SK_ERR_TOO_LONG);
    sk_send_result_free(&res);
    assert_int_equal(sk_client_quit(c, &err), SK_OK);
    sk_client_free(c);
    server_finish(&s);
}

/* A composed message: envelope from From, To, Cc and Bcc; one shot. */
static const char *const script_message[] = {
    "S:220 mx.test",
    "C:EHLO client.test",
    "S:250-mx.test",
    "S:250 8BITMIME",
    "C:MAIL FROM:<zoe@x.test>",
    "S:250 ok",
    "C:RCPT TO:<bob@y.test>",
    "S:250 ok",
    "C:RCPT TO:<carol@y.test>",
    "S:250 ok",
    "C:RCPT TO:<dave@y.test>",
    "S:250 ok",
    "C:DATA",
    "S:354 go",
    "d:Subject: Hi there\r\n",
    "S:250 2.0.0 Ok: queued as Z9",
    "C:QUIT",
    "S:221 bye",
    NULL,
};

static void test_send_message(void **state)
{
    script_server s;
    transcript t = {0};
    server_start(&s, script_message);
    sk_client_opts o = opts_for(&s, &t);
    sk_message *m = sk_message_new();
    sk_error err;
    assert_non_null(m);
    assert_int_equal(sk_message_set_from(m, "Zoe <zoe@x.test>", &err), SK_OK);
    assert_int_equal(sk_message_add_to(m, "Bob <bob@y.test>", &err), SK_OK);
    assert_int_equal(sk_message_add_cc(m, "carol@y.test", &err), SK_OK);
    assert_int_equal(sk_message_add_bcc(m, "dave@y.test", &err), SK_OK);
    assert_int_equal(sk_message_set_subject(m, "Hi there", &err), SK_OK);
    assert_int_equal(sk_message_set_text(m, "Hello\n.\n", &err), SK_OK);
    assert_int_equal(sk_send(&o, m, &err), SK_OK);
    sk_message_free(m);
    server_finish(&s);
}

/* The progress callback: 0 first, then after each block of the message
 * (32 KiB of it), last the whole size. */
static const char *const script_progress[] = {"S:220 mx.test",
                                              "C:EHLO client.test",
                                              "S:250 mx.test",
                                              "C:MAIL FROM:<a@x.test>",
                                              "S:250 ok",
                                              "C:RCPT TO:<b@y.test>",
                                              "S:250 ok",
                                              "C:DATA",
                                              "S:354 go",
                                              "d:xxxxxxxx",
                                              "S:250 ok: queued as P1",
                                              "C:QUIT",
                                              "S:221 bye",
                                              NULL};

typedef struct progress_log {
    uint64_t sent[16], total[16];
    size_t n;
} progress_log;

static void on_progress(void *ctx, uint64_t sent, uint64_t total)
{
    progress_log *l = ctx;
    if (l->n < 16) l->sent[l->n] = sent, l->total[l->n] = total;
    l->n++;
}

static void test_send_progress(void **state)
{
    static const struct {
        size_t len;
        size_t ncalls;
        uint64_t calls[4];
    } cases[] = {
        {20, 2, {0, 20}},
        {60000, 3, {0, 32768, 60000}},
    };
    static char data[60000];
    for (size_t i = 0; i < sizeof data; i += 80) {
        memset(data + i, 'x', 78);
        memcpy(data + i + 78, "\r\n", 2);
    }
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        script_server s;
        transcript t = {0};
        progress_log log = {0};
        server_start(&s, script_progress);
        sk_client_opts o = opts_for(&s, &t);
        o.progress = on_progress;
        o.progress_ctx = &log;
        sk_client *c = sk_client_new(&o);
        sk_error err;
        const char *to[] = {"b@y.test"};
        assert_int_equal(sk_client_connect(c, &err), SK_OK);
        assert_int_equal(sk_client_send(c, "a@x.test", to, 1, data, cases[k].len, NULL, NULL, &err),
                         SK_OK);
        assert_int_equal(sk_client_quit(c, &err), SK_OK);
        sk_client_free(c);
        server_finish(&s);
        assert_int_equal(log.n, cases[k].ncalls);
        for (size_t i = 0; i < cases[k].ncalls; i++) {
            assert_int_equal(log.sent[i], cases[k].calls[i]);
            assert_int_equal(log.total[i], cases[k].len);
        }
    }
}

/* What the server says instead of a usable greeting. */
static const char *const script_http[] = {"R:HTTP/1.1 400 Bad Request\r\n\r\n", "X", NULL};
static const char *const script_tls_bytes[] = {"R:\x16\x03\x01\x02\x00\x01", "X", NULL};
static const char *const script_refused[] = {"S:554 5.7.1 go away", "C:QUIT", "S:221 bye", NULL};
static const char *const script_plain_on_implicit[] = {"S:220 mx.test ESMTP", "W", NULL};
static const char *const script_no_starttls[] = {"S:220 mx.test", "C:EHLO client.test", EHLO_BASIC,
                                                 "X", NULL};
static const char *const script_helo_fallback[] = {"S:220 old.test",    "C:EHLO client.test",
                                                   "S:502 5.5.2 what?", "C:HELO client.test",
                                                   "S:250 old.test",    "C:QUIT",
                                                   "S:221 bye",         NULL};
static const char *const script_auth_cleartext[] = {
    "S:220 mx.test", "C:EHLO client.test", "S:250-mx.test", "S:250 AUTH PLAIN", "X", NULL};

static const struct {
    const char *name;
    const char *const *script;
    sk_tls_mode tls;
    const char *user;
    sk_err want;
    sk_step step;
    const char *text; /* part of err.text */
} connect_cases[] = {
    {"HTTP", script_http, SK_TLS_NONE, NULL, SK_ERR_PROTOCOL, SK_STEP_GREETING,
     "not an SMTP server (HTTP)"},
    {"TLS bytes", script_tls_bytes, SK_TLS_NONE, NULL, SK_ERR_PROTOCOL, SK_STEP_GREETING,
     "sent TLS instead of an SMTP greeting"},
    {"554 greeting", script_refused, SK_TLS_NONE, NULL, SK_ERR_PERMFAIL, SK_STEP_GREETING,
     "go away"},
    {"plain on implicit", script_plain_on_implicit, SK_TLS_IMPLICIT, NULL, SK_ERR_TLS, SK_STEP_TLS,
     "spoke plain SMTP"},
    {"STARTTLS missing", script_no_starttls, SK_TLS_STARTTLS, NULL, SK_ERR_UNSUPPORTED, SK_STEP_TLS,
     "does not offer STARTTLS"},
    {"HELO fallback", script_helo_fallback, SK_TLS_NONE, NULL, SK_OK, SK_STEP_NONE, ""},
    {"AUTH without TLS", script_auth_cleartext, SK_TLS_NONE, "zoe", SK_ERR_CONFIG, SK_STEP_AUTH,
     "without TLS"},
};

static void test_connect_cases(void **state)
{
    for (size_t i = 0; i < SKT_N(connect_cases); i++) {
        print_message("case %s\n", connect_cases[i].name);
        script_server s;
        transcript t = {0};
        server_start(&s, connect_cases[i].script);
        sk_client_opts o = opts_for(&s, &t);
        o.tls = connect_cases[i].tls;
        o.user = connect_cases[i].user;
        o.password = "secret";
        sk_client *c = sk_client_new(&o);
        sk_error err;
        sk_err e = sk_client_connect(c, &err);
        assert_int_equal(e, connect_cases[i].want);
        if (e) {
            assert_int_equal(err.step, connect_cases[i].step);
            assert_non_null(strstr(err.text, connect_cases[i].text));
        } else {
            assert_int_equal(sk_client_extensions(c)->esmtp, 0);
            assert_int_equal(sk_client_quit(c, &err), SK_OK);
        }
        sk_client_free(c);
        server_finish(&s);
        assert_null(strstr(t.text, "secret"));
    }
}

/* AUTH exchanges (allowed in the clear here), secrets masked on the
 * transcript. CRAM-MD5 uses the RFC 2195 example. */
static const char *const script_auth_plain[] = {
    "S:220 mx.test",
    "C:EHLO client.test",
    "S:250-mx.test",
    "S:250 AUTH LOGIN PLAIN",
    "C:AUTH PLAIN AHRpbQB0YW5zdGFhZnRhbnN0YWFm",
    "S:235 2.7.0 ok",
    "X",
    NULL,
};
static const char *const script_auth_cram[] = {
    "S:220 mx.test",
    "C:EHLO client.test",
    "S:250-mx.test",
    "S:250 AUTH LOGIN PLAIN CRAM-MD5",
    "C:AUTH CRAM-MD5",
    "S:334 PDE4OTYuNjk3MTcwOTUyQHBvc3RvZmZpY2UucmVzdG9uLm1jaS5uZXQ+",
    "C:dGltIGI5MTNhNjAyYzdlZGE3YTQ5NWI0ZTZlNzMzNGQzODkw",
    "S:235 ok",
    "X",
    NULL,
};
static const char *const script_auth_login_fail[] = {
    "S:220 mx.test",
    "C:EHLO client.test",
    "S:250-mx.test",
    "S:250 AUTH LOGIN",
    "C:AUTH LOGIN",
    "S:334 VXNlcm5hbWU6",
    "C:dGlt",
    "S:334 UGFzc3dvcmQ6",
    "C:dGFuc3RhYWZ0YW5zdGFhZg==",
    "S:535 5.7.8 Authentication credentials invalid",
    "X",
    NULL,
};

/* XOAUTH2 refused: a 334 with the error (base64 JSON), our empty line,
 * then the final 535. */
static const char *const script_auth_xoauth2_fail[] = {
    "S:220 mx.test",
    "C:EHLO client.test",
    "S:250-mx.test",
    "S:250 AUTH PLAIN XOAUTH2",
    "C:AUTH XOAUTH2 dXNlcj10aW0BYXV0aD1CZWFyZXIgdG9rAQE=",
    "S:334 eyJzdGF0dXMiOiI0MDEifQ==",
    "C:\r\n",
    "S:535 5.7.8 Username and Password not accepted",
    "X",
    NULL,
};

static const struct {
    const char *name;
    const char *const *script;
    const char *token;
    sk_err want;
    sk_sasl_mech mech;
} auth_cases[] = {
    {"PLAIN", script_auth_plain, NULL, SK_OK, SK_SASL_PLAIN},
    {"CRAM-MD5", script_auth_cram, NULL, SK_OK, SK_SASL_CRAM_MD5},
    {"LOGIN refused", script_auth_login_fail, NULL, SK_ERR_AUTH, SK_SASL_NONE},
    {"XOAUTH2 refused", script_auth_xoauth2_fail, "tok", SK_ERR_AUTH, SK_SASL_NONE},
};

static void test_auth_cases(void **state)
{
    for (size_t i = 0; i < SKT_N(auth_cases); i++) {
        print_message("case %s\n", auth_cases[i].name);
        script_server s;
        transcript t = {0};
        server_start(&s, auth_cases[i].script);
        sk_client_opts o = opts_for(&s, &t);
        o.user = "tim";
        o.password = auth_cases[i].token ? NULL : "tanstaaftanstaaf";
        o.oauth_token = auth_cases[i].token;
        o.allow_plaintext_auth = 1;
        sk_client *c = sk_client_new(&o);
        sk_error err;
        assert_int_equal(sk_client_connect(c, &err), auth_cases[i].want);
        assert_int_equal(sk_client_auth_mech(c), auth_cases[i].mech);
        if (auth_cases[i].want) {
            assert_int_equal(err.step, SK_STEP_AUTH);
            assert_int_equal(err.code, 535);
            assert_string_equal(err.enhanced, "5.7.8");
        }
        sk_client_free(c);
        server_finish(&s);
        /* Neither the password nor its encodings appear on the transcript. */
        assert_null(strstr(t.text, "AHRpbQB0"));
        assert_null(strstr(t.text, "dGFuc3RhYWZ0"));
        assert_null(strstr(t.text, "dGltIGI5"));
        assert_null(strstr(t.text, "dXNlcj10aW0B"));
        assert_non_null(strstr(t.text, "****"));
    }
}

/* Steps out of order are refused; a connection refused is a connect
 * error (the port of a listener we closed). */
/* The EHLO name is one word (RFC 5321 4.1.1.1): a line end, which would
 * start another command, or a blank is refused before anything is sent. */
static const char *const script_greet_only[] = {"S:220 mx.test ESMTP", NULL};
static const char *const bad_helo_names[] = {"client.test\r\nRSET", "client.test\nRSET", "bad name",
                                             "tab\tname", ""};

static void test_bad_helo_name(void **state)
{
    for (size_t i = 0; i < SKT_N(bad_helo_names); i++) {
        script_server s;
        server_start(&s, script_greet_only);
        transcript t = {0};
        sk_client_opts o = opts_for(&s, &t);
        o.helo_name = bad_helo_names[i];
        sk_client *c = sk_client_new(&o);
        assert_non_null(c);
        sk_error err;
        print_message("case %zu\n", i);
        assert_int_equal(sk_client_connect(c, &err), SK_ERR_CONFIG); /* it greets */
        assert_int_equal(err.step, SK_STEP_EHLO);
        assert_null(strstr(t.text, "C: EHLO"));
        sk_client_free(c);
        server_finish(&s);
    }
}

static void test_state_and_refused(void **state)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    socklen_t sl = sizeof a;
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &sl), 0);
    close(fd);
    sk_client_opts o = {.host = "localhost",
                        .connect_address = "127.0.0.1",
                        .port = ntohs(a.sin_port),
                        .tls = SK_TLS_NONE};
    sk_client *c = sk_client_new(&o);
    sk_error err;
    assert_int_equal(sk_client_ehlo(c, &err), SK_ERR_STATE);
    assert_int_equal(sk_client_mail(c, "a@x", NULL, NULL, &err), SK_ERR_STATE);
    assert_int_equal(sk_client_connect(c, &err), SK_ERR_CONNECT);
    assert_int_equal(err.step, SK_STEP_CONNECT);
    assert_int_equal(err.transient, 1);
    sk_client_free(c);
    assert_null(sk_client_new(&(sk_client_opts){.host = NULL}));
}

/* sk_client_abort from another thread while a call waits for the server:
 * the call returns SK_ERR_STATE ("aborted") and closes the connection;
 * the client stays aborted. The server answers the greeting and then
 * nothing, and the command timeout is far beyond the test's: without the
 * abort the call would end only at that timeout, as SK_ERR_TIMEOUT. */
typedef struct abort_run {
    sk_client *c;
    sk_err rc;
    sk_error err;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int ehlo_sent;
} abort_run;

static void abort_on_line(void *ctx, char dir, const char *line, size_t len)
{
    abort_run *r = ctx;
    if (dir != 'C' || len < 4 || memcmp(line, "EHLO", 4)) return;
    pthread_mutex_lock(&r->mu);
    r->ehlo_sent = 1;
    pthread_cond_signal(&r->cv);
    pthread_mutex_unlock(&r->mu);
}

static void *abort_connect(void *ctx)
{
    abort_run *r = ctx;
    r->rc = sk_client_connect(r->c, &r->err);
    return NULL;
}

static void test_abort(void **state)
{
    static const char *const script[] = {"S:220 mx.test ESMTP", "C:EHLO", "W", NULL};
    script_server s;
    server_start(&s, script);
    abort_run r = {.rc = SK_OK};
    pthread_mutex_init(&r.mu, NULL);
    pthread_cond_init(&r.cv, NULL);
    sk_client_opts o = {.host = "localhost",
                        .connect_address = "127.0.0.1",
                        .port = s.port,
                        .tls = SK_TLS_NONE,
                        .helo_name = "client.test",
                        .command_timeout_ms = 600000,
                        .transcript = abort_on_line,
                        .transcript_ctx = &r};
    r.c = sk_client_new(&o);
    assert_non_null(r.c);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, abort_connect, &r), 0);
    pthread_mutex_lock(&r.mu);
    while (!r.ehlo_sent) pthread_cond_wait(&r.cv, &r.mu);
    pthread_mutex_unlock(&r.mu);
    sk_client_abort(r.c);
    pthread_join(t, NULL);
    assert_int_equal(r.rc, SK_ERR_STATE);
    assert_int_equal(r.err.step, SK_STEP_EHLO);
    assert_non_null(strstr(r.err.text, "aborted"));
    server_finish(&s); /* the server saw the connection close */
    /* Aborted for good: the next call fails before connecting. */
    sk_error err;
    assert_int_equal(sk_client_connect(r.c, &err), SK_ERR_STATE);
    assert_non_null(strstr(err.text, "aborted"));
    sk_client_free(r.c);
    sk_client_abort(NULL);
    pthread_cond_destroy(&r.cv);
    pthread_mutex_destroy(&r.mu);
}

/* ---- TLS: certificates made here, verification outcomes ---- */

static EVP_PKEY *ca_key, *srv_key;
static X509 *ca_cert, *good_cert, *expired_cert;
static char ca_path[] = "/tmp/sk-test-client-ca-XXXXXX";

static void add_ext(X509 *issuer, X509 *x, int nid, const char *value)
{
    X509V3_CTX ctx;
    X509V3_set_ctx(&ctx, issuer, x, NULL, NULL, 0);
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
    assert_non_null(ext);
    assert_int_equal(X509_add_ext(x, ext, -1), 1);
    X509_EXTENSION_free(ext);
}

/* A certificate for cn, valid from `from` to `to` seconds from now,
 * signed by the CA (or by itself when issuer is NULL: the CA). */
static X509 *make_cert(const char *cn, EVP_PKEY *key, X509 *issuer, long from, long to,
                       const char *san)
{
    static long serial = 1;
    X509 *x = X509_new();
    assert_non_null(x);
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), serial++);
    X509_gmtime_adj(X509_getm_notBefore(x), from);
    X509_gmtime_adj(X509_getm_notAfter(x), to);
    X509_set_pubkey(x, key);
    X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_ASC,
                               (const unsigned char *)cn, -1, -1, 0);
    X509_set_issuer_name(x, X509_get_subject_name(issuer ? issuer : x));
    if (!issuer) {
        add_ext(x, x, NID_basic_constraints, "critical,CA:TRUE");
        add_ext(x, x, NID_key_usage, "critical,keyCertSign,cRLSign");
    } else {
        add_ext(issuer, x, NID_subject_alt_name, san);
        add_ext(issuer, x, NID_ext_key_usage, "serverAuth");
    }
    assert_true(X509_sign(x, issuer ? ca_key : key, EVP_sha256()) > 0);
    return x;
}

static int tls_setup(void **state)
{
    /* The scripted server's TLS writes go through write(2): a client that
     * hung up must not kill the test with SIGPIPE. */
    signal(SIGPIPE, SIG_IGN);
    ca_key = EVP_EC_gen("P-256");
    srv_key = EVP_EC_gen("P-256");
    if (!ca_key || !srv_key) return -1;
    ca_cert = make_cert("SMTPKit Unit CA", ca_key, NULL, -3600, 86400, NULL);
    good_cert =
        make_cert("localhost", srv_key, ca_cert, -3600, 86400, "DNS:localhost,IP:127.0.0.1");
    expired_cert =
        make_cert("localhost", srv_key, ca_cert, -2 * 86400, -86400, "DNS:localhost,IP:127.0.0.1");
    int fd = mkstemp(ca_path);
    if (fd < 0) return -1;
    FILE *f = fdopen(fd, "w");
    if (!f || !PEM_write_X509(f, ca_cert)) return -1;
    fclose(f);
    return 0;
}

static int tls_teardown(void **state)
{
    unlink(ca_path);
    X509_free(ca_cert);
    X509_free(good_cert);
    X509_free(expired_cert);
    EVP_PKEY_free(ca_key);
    EVP_PKEY_free(srv_key);
    return 0;
}

static SSL_CTX *server_ctx(X509 *cert)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    assert_non_null(ctx);
    assert_int_equal(SSL_CTX_use_certificate(ctx, cert), 1);
    assert_int_equal(SSL_CTX_use_PrivateKey(ctx, srv_key), 1);
    return ctx;
}

static const char *const script_starttls_ok[] = {"S:220 mx.test",
                                                 "C:EHLO client.test",
                                                 "S:250-mx.test",
                                                 "S:250 STARTTLS",
                                                 "C:STARTTLS",
                                                 "S:220 go ahead",
                                                 "T",
                                                 "C:EHLO client.test",
                                                 "S:250 mx.test",
                                                 "C:QUIT",
                                                 "S:221 bye",
                                                 NULL};
static const char *const script_starttls_rejected[] = {"S:220 mx.test",
                                                       "C:EHLO client.test",
                                                       "S:250-mx.test",
                                                       "S:250 STARTTLS",
                                                       "C:STARTTLS",
                                                       "S:220 go ahead",
                                                       "T",
                                                       "W",
                                                       NULL};
static const char *const script_implicit_ok[] = {
    "T", "S:220 mx.test", "C:EHLO client.test", "S:250 mx.test", "C:QUIT", "S:221 bye", NULL};

static const struct {
    const char *name;
    int expired;
    sk_tls_mode mode;
    int use_ca, insecure;
    const char *host, *tls_name, *connect_address;
    sk_err want;
    long verify_code;
} tls_cases[] = {
    {"verified", 0, SK_TLS_STARTTLS, 1, 0, "localhost", NULL, "127.0.0.1", SK_OK, X509_V_OK},
    {"verified IP", 0, SK_TLS_STARTTLS, 1, 0, "127.0.0.1", NULL, NULL, SK_OK, X509_V_OK},
    {"implicit", 0, SK_TLS_IMPLICIT, 1, 0, "localhost", NULL, "127.0.0.1", SK_OK, X509_V_OK},
    {"wrong name", 0, SK_TLS_STARTTLS, 1, 0, "localhost", "mx.other.test", "127.0.0.1",
     SK_ERR_TLS_VERIFY, X509_V_ERR_HOSTNAME_MISMATCH},
    {"unknown issuer", 0, SK_TLS_STARTTLS, 0, 0, "localhost", NULL, "127.0.0.1", SK_ERR_TLS_VERIFY,
     X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY},
    {"expired", 1, SK_TLS_STARTTLS, 1, 0, "localhost", NULL, "127.0.0.1", SK_ERR_TLS_VERIFY,
     X509_V_ERR_CERT_HAS_EXPIRED},
    {"insecure", 1, SK_TLS_STARTTLS, 1, 1, "localhost", NULL, "127.0.0.1", SK_OK,
     X509_V_ERR_CERT_HAS_EXPIRED},
    {"opportunistic", 0, SK_TLS_STARTTLS_OPPORTUNISTIC, 0, 0, "localhost", NULL, "127.0.0.1", SK_OK,
     X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY},
};

static void test_tls_cases(void **state)
{
    for (size_t i = 0; i < SKT_N(tls_cases); i++) {
        print_message("case %s\n", tls_cases[i].name);
        SSL_CTX *sctx = server_ctx(tls_cases[i].expired ? expired_cert : good_cert);
        script_server s;
        transcript t = {0};
        server_start_tls(&s,
                         tls_cases[i].mode == SK_TLS_IMPLICIT ? script_implicit_ok
                         : tls_cases[i].want                  ? script_starttls_rejected
                                                              : script_starttls_ok,
                         sctx);
        sk_client_opts o = opts_for(&s, &t);
        o.tls = tls_cases[i].mode;
        o.host = tls_cases[i].host;
        o.tls_name = tls_cases[i].tls_name;
        o.connect_address = tls_cases[i].connect_address;
        o.ca_file = tls_cases[i].use_ca ? ca_path : NULL;
        o.insecure = tls_cases[i].insecure;
        sk_client *c = sk_client_new(&o);
        sk_error err;
        sk_err e = sk_client_connect(c, &err);
        assert_int_equal(e, tls_cases[i].want);
        const sk_tls_info *ti = sk_client_tls_info(c);
        assert_non_null(ti);
        assert_int_equal(ti->active, 1);
        assert_int_equal(ti->verify_code, tls_cases[i].verify_code);
        assert_int_equal(ti->verified, tls_cases[i].verify_code == X509_V_OK);
        assert_non_null(strstr(ti->version, "TLSv1."));
        /* The chain is there even when verification failed. */
        assert_true(ti->chain_len >= 1);
        assert_string_equal(ti->chain[0].subject, "CN=localhost");
        assert_string_equal(ti->chain[0].issuer, "CN=SMTPKit Unit CA");
        assert_string_equal(ti->chain[0].san, "DNS:localhost, IP:127.0.0.1");
        assert_true(ti->chain[0].not_after > ti->chain[0].not_before);
        if (e) {
            assert_int_equal(err.step, SK_STEP_TLS);
            assert_int_equal(err.transient, 0);
        } else {
            assert_int_equal(sk_client_is_tls(c), 1);
            assert_int_equal(sk_client_quit(c, &err), SK_OK);
        }
        sk_client_free(c);
        server_finish(&s);
        SSL_CTX_free(sctx);
    }
}

/* ---- the probe checklist (sk_client_probe) against scripted servers ---- */

static const char *const probe_plain[] = {"S:220 mx.test ESMTP", "C:EHLO client.test",
                                          "S:250-mx.test",       "S:250-SIZE 35882577",
                                          "S:250 STARTTLS",      "C:MAIL FROM:<a@x.test>",
                                          "S:250 2.1.0 ok",      "C:RCPT TO:<b@y.test>",
                                          "S:250 2.1.5 ok",      "C:RSET",
                                          "S:250 2.0.0 ok",      "C:QUIT",
                                          "S:221 bye",           NULL};
static const char *const probe_rcpt_refused[] = {"S:220 mx.test ESMTP",
                                                 "C:EHLO client.test",
                                                 "S:250 mx.test",
                                                 "C:MAIL FROM:<a@x.test>",
                                                 "S:250 2.1.0 ok",
                                                 "C:RCPT TO:<b@y.test>",
                                                 "S:550 5.1.1 no such user",
                                                 "C:QUIT",
                                                 "S:221 bye",
                                                 NULL};
static const char *const probe_cleartext_auth[] = {"S:220 mx.test",
                                                   "C:EHLO client.test",
                                                   "S:250-mx.test",
                                                   "S:250 AUTH PLAIN LOGIN",
                                                   "C:QUIT",
                                                   "S:221 bye",
                                                   NULL};

static const sk_option_names cli_names = {
    .tls_starttls = "--tls starttls", .tls_implicit = "--tls implicit", .tls_none = "--tls none"};

static const struct {
    const char *name;
    const char *const *script; /* NULL: a closed port */
    sk_tls_mode tls;
    const char *user;
    int envelope; /* MAIL FROM:<a@x.test>, RCPT TO b@y.test and c@y.test (or only b) */
    size_t nto;
    const sk_option_names *names;
    sk_err want;
    const char *steps; /* check=verdict ... */
    size_t hint_step;  /* a step whose hint (or detail) holds hint */
    const char *hint;
} probe_cases[] = {
    {"plain, envelope", probe_plain, SK_TLS_NONE, NULL, 1, 1, NULL, SK_OK,
     "dns=pass tcp=pass greeting=pass ehlo=pass tls=warn mail=pass rcpt=pass rset=pass", 4,
     "use STARTTLS: without TLS"},
    {"plain, the caller's names", probe_plain, SK_TLS_NONE, NULL, 1, 1, &cli_names, SK_OK,
     "dns=pass tcp=pass greeting=pass ehlo=pass tls=warn mail=pass rcpt=pass rset=pass", 4,
     "use --tls starttls: without TLS"},
    {"554 greeting", script_refused, SK_TLS_NONE, NULL, 0, 0, NULL, SK_ERR_PERMFAIL,
     "dns=pass tcp=pass greeting=fail ehlo=skip tls=skip", 2, "the server refused the session"},
    {"HELO fallback", script_helo_fallback, SK_TLS_NONE, NULL, 0, 0, NULL, SK_OK,
     "dns=pass tcp=pass greeting=pass ehlo=warn tls=warn", 3, "an old or minimal server"},
    {"no STARTTLS", script_no_starttls, SK_TLS_STARTTLS, "zoe", 1, 1, &cli_names,
     SK_ERR_UNSUPPORTED,
     "dns=pass tcp=pass greeting=pass ehlo=pass tls=fail ehlo=skip auth=skip mail=skip rcpt=skip "
     "rset=skip",
     4, "implicit-TLS port with --tls implicit"},
    {"cleartext AUTH offered", probe_cleartext_auth, SK_TLS_NONE, NULL, 0, 0, NULL, SK_OK,
     "dns=pass tcp=pass greeting=pass ehlo=warn tls=warn", 3, "only after STARTTLS"},
    {"second recipient refused", probe_rcpt_refused, SK_TLS_NONE, NULL, 1, 2, NULL, SK_ERR_PERMFAIL,
     "dns=pass tcp=pass greeting=pass ehlo=pass tls=warn mail=pass rcpt=fail "
     "rcpt=skip rset=skip",
     6, "RCPT TO:<b@y.test> refused: 550 5.1.1 no such user"},
    {"closed port", NULL, SK_TLS_NONE, NULL, 0, 0, NULL, SK_ERR_CONNECT,
     "dns=pass tcp=fail greeting=skip ehlo=skip tls=skip", 1, "nothing is listening"},
};

static void count_step(void *ctx, const sk_probe_step *s)
{
    (void)s;
    ++*(size_t *)ctx;
}

static void test_probe_cases(void **state)
{
    static const char *const to[] = {"b@y.test", "c@y.test"};
    for (size_t i = 0; i < SKT_N(probe_cases); i++) {
        print_message("case %s\n", probe_cases[i].name);
        script_server s;
        transcript t = {0};
        if (probe_cases[i].script) {
            /* The probe's TCP check connects first, then the session. */
            server_start_skip(&s, probe_cases[i].script, NULL, 1);
        } else {
            /* A port where nothing listens: bound, then closed. */
            memset(&s, 0, sizeof s);
            int fd = socket(AF_INET, SOCK_STREAM, 0);
            struct sockaddr_in a = {.sin_family = AF_INET,
                                    .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
            socklen_t sl = sizeof a;
            assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
            assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &sl), 0);
            s.port = ntohs(a.sin_port);
            close(fd);
        }
        sk_client_opts o = opts_for(&s, &t);
        o.tls = probe_cases[i].tls;
        o.user = probe_cases[i].user;
        o.password = "secret";
        sk_client *c = sk_client_new(&o);
        size_t calls = 0;
        sk_probe_opts po = {.from = probe_cases[i].envelope ? "a@x.test" : NULL,
                            .to = to,
                            .nto = probe_cases[i].nto,
                            .names = probe_cases[i].names,
                            .on_step = count_step,
                            .on_step_ctx = &calls};
        sk_probe *p = NULL;
        sk_error err;
        sk_err e = sk_client_probe(c, &po, &p, &err);
        assert_non_null(p);
        if (e != probe_cases[i].want)
            fail_msg("returned %s, wanted %s", sk_strerror(e), sk_strerror(probe_cases[i].want));
        char got[512] = "";
        size_t used = 0;
        for (size_t k = 0; k < sk_probe_count(p); k++) {
            const sk_probe_step *st = sk_probe_step_at(p, k);
            used += (size_t)snprintf(got + used, sizeof got - used, "%s%s=%s", k ? " " : "",
                                     sk_probe_check_name(st->check),
                                     sk_probe_verdict_name(st->verdict));
        }
        if (strcmp(got, probe_cases[i].steps)) fail_msg("steps \"%s\"", got);
        assert_int_equal(calls, sk_probe_count(p));
        const sk_probe_step *h = sk_probe_step_at(p, probe_cases[i].hint_step);
        if (!strstr(h->hint, probe_cases[i].hint) && !strstr(h->detail, probe_cases[i].hint))
            fail_msg("step %zu: detail \"%s\" hint \"%s\"", probe_cases[i].hint_step, h->detail,
                     h->hint);
        const sk_probe_step *f = sk_probe_failure(p);
        if (e) {
            assert_non_null(f);
            assert_int_equal(f->error.err, e);
            assert_int_equal(err.err, e);
            assert_int_equal(sk_probe_overall(p), SK_PROBE_FAIL);
        } else {
            assert_null(f);
        }
        assert_int_equal(sk_probe_step_at(p, 0)->naddresses, 1);
        assert_string_equal(sk_probe_step_at(p, 0)->addresses[0], "127.0.0.1");
        sk_probe_free(p);
        /* The client is closed again and can be used (and probed) anew. */
        assert_int_equal(c->state, CL_CLOSED);
        sk_client_free(c);
        if (probe_cases[i].script) server_finish(&s);
        assert_null(strstr(t.text, "secret"));
    }
}

/* What the probe found is kept as data: the extensions explained, the
 * replies and the recipients. */
static void test_probe_data(void **state)
{
    static const char *const to[] = {"b@y.test"};
    script_server s;
    transcript t = {0};
    server_start_skip(&s, probe_plain, NULL, 1);
    sk_client_opts o = opts_for(&s, &t);
    sk_client *c = sk_client_new(&o);
    sk_probe_opts po = {.from = "a@x.test", .to = to, .nto = 1};
    sk_probe *p = NULL;
    sk_error err;
    assert_int_equal(sk_client_probe(c, &po, &p, &err), SK_OK);
    const sk_probe_step *ehlo = sk_probe_step_at(p, 3);
    assert_int_equal(ehlo->check, SK_PROBE_EHLO);
    assert_string_equal(ehlo->server_name, "mx.test");
    assert_int_equal(ehlo->esmtp, 1);
    assert_int_equal(ehlo->nextensions, 2);
    assert_string_equal(ehlo->extensions[0].keyword, "SIZE");
    assert_string_equal(ehlo->extensions[0].params, "35882577");
    assert_string_equal(ehlo->extensions[0].meaning,
                        "messages up to 35.9 MB (35882577 octets, RFC 1870)");
    assert_string_equal(ehlo->extensions[1].keyword, "STARTTLS");
    const sk_probe_step *rcpt = sk_probe_step_at(p, 6);
    assert_int_equal(rcpt->check, SK_PROBE_RCPT);
    assert_string_equal(rcpt->recipient, "b@y.test");
    assert_int_equal(rcpt->has_reply, 1);
    assert_int_equal(rcpt->reply.code, 250);
    assert_string_equal(rcpt->reply.enhanced, "2.1.5");
    assert_int_equal(rcpt->error.step, SK_STEP_RCPT);
    assert_int_equal(rcpt->error.err, SK_OK);
    const sk_probe_step *g = sk_probe_step_at(p, 2);
    assert_string_equal(g->address, "127.0.0.1");
    assert_true(g->elapsed_ms >= 0);
    sk_probe_free(p);
    /* Recipients without a sender, or too many, are refused up front. */
    sk_probe_opts bad = {.to = to, .nto = 1};
    assert_int_equal(sk_client_probe(c, &bad, &p, &err), SK_ERR_INVAL);
    assert_null(p);
    sk_client_free(c);
    server_finish(&s);
}

/* sk_client_hint: what the session learned and the error, to the hint in
 * the caller's words. */
static const sk_option_names hint_cli = {
    .tls_starttls = "--tls starttls",
    .tls_implicit = "--tls implicit",
    .tls_none = "--tls none",
    .ca_file = "--ca-file",
    .insecure = "--insecure",
    .tls_name = "--tls-name",
    .timeout = "--timeout",
    .server = "--server",
    .credentials = "--user and the password (--password-file or SMTPKIT_PASSWORD)",
    .allow_plaintext_auth = "--allow-plaintext-auth",
};
static const sk_option_names hint_swift = {
    .tls_starttls = "security: .startTLS",
    .tls_implicit = "security: .implicitTLS",
    .tls_none = "security: .none",
    .timeout = "timeouts",
    .server = "host/port",
};
static const sk_option_names hint_only_implicit = {.tls_implicit = "IMPLICIT"};

enum { NO_PEER = -1 };

static const struct {
    const char *name;
    int client;  /* 0: no client (NULL) */
    int peer;    /* an sk_peer_kind identification found, or NO_PEER */
    int greeted; /* 1: the greeting came */
    int tls;     /* 1: a TLS session is up */
    sk_err err;
    sk_step step;
    int code;
    const char *lib_hint; /* what the library put in the error */
    const sk_option_names *names;
    const char *want; /* NULL: no hint */
} hint_cases[] = {
    {"TLS-first port, caller's names", 1, SK_PEER_TLS, 0, 0, SK_ERR_PROTOCOL, SK_STEP_GREETING, 0,
     "this port expects implicit TLS (RFC 8314; usually port 465)", &hint_cli,
     "this port speaks TLS first: use --tls implicit"},
    {"TLS-first port, plain words", 1, SK_PEER_TLS, 0, 0, SK_ERR_PROTOCOL, SK_STEP_GREETING, 0,
     NULL, NULL, "this port speaks TLS first: use implicit TLS"},
    {"TLS-first port, Swift names", 1, SK_PEER_TLS, 0, 0, SK_ERR_TIMEOUT, SK_STEP_GREETING, 0, NULL,
     &hint_swift, "this port speaks TLS first: use security: .implicitTLS"},
    {"TLS peer at the TLS step: the kind's hint", 1, SK_PEER_TLS, 0, 0, SK_ERR_TLS, SK_STEP_TLS, 0,
     NULL, &hint_cli,
     "the TLS handshake failed; check the TLS mode: --tls implicit on 465, --tls starttls on "
     "587"},
    {"web server", 1, SK_PEER_HTTP, 0, 0, SK_ERR_PROTOCOL, SK_STEP_GREETING, 0,
     "this looks like an HTTP server: check the port (SMTP is on 25, 587 or 465)", &hint_swift,
     "this looks like an HTTP server: check the port in host/port (SMTP is on 587, 465 or 25)"},
    {"plain SMTP where implicit TLS was tried", 1, SK_PEER_SMTP, 0, 0, SK_ERR_TLS, SK_STEP_TLS, 0,
     NULL, &hint_cli,
     "this port speaks plain SMTP: use --tls starttls (or --tls none), or the implicit-TLS "
     "port (usually 465)"},
    {"greets others, not this one", 1, SK_PEER_SMTP, 0, 0, SK_ERR_TIMEOUT, SK_STEP_GREETING, 0,
     NULL, NULL,
     "the server greets other connections but not this one in time: it is slow or overloaded; "
     "try again later, or raise the timeout"},
    {"SMTP peer, closed: the kind's hint", 1, SK_PEER_SMTP, 0, 0, SK_ERR_CLOSED, SK_STEP_GREETING,
     0, NULL, &hint_cli, "the server closed the connection; try again later"},
    {"silent port, caller's names", 1, SK_PEER_SILENT, 0, 0, SK_ERR_TIMEOUT, SK_STEP_GREETING, 0,
     "the server accepted the connection but sent no greeting", &hint_cli,
     "the server accepted the connection but said nothing, not even to a TLS or an HTTP hello: "
     "check the host and port in --server, or raise --timeout for a slow server"},
    {"silent port, Swift names", 1, SK_PEER_SILENT, 0, 0, SK_ERR_TIMEOUT, SK_STEP_GREETING, 0, NULL,
     &hint_swift,
     "the server accepted the connection but said nothing, not even to a TLS or an HTTP hello: "
     "check the host and port in host/port, or raise timeouts for a slow server"},
    {"after the greeting the peer does not matter", 1, SK_PEER_TLS, 1, 0, SK_ERR_TIMEOUT,
     SK_STEP_GREETING, 0, NULL, &hint_cli,
     "the server did not answer in time; check the port and firewalls, or raise --timeout"},
    {"no greeting, nothing identified", 1, NO_PEER, 0, 0, SK_ERR_TIMEOUT, SK_STEP_GREETING, 0,
     "no greeting: a server expecting implicit TLS (port 465) waits silently", &hint_cli,
     "no greeting: a server expecting implicit TLS (port 465) waits silently; try --tls "
     "implicit, or check the port"},
    {"no greeting, no client", 0, NO_PEER, 0, 0, SK_ERR_TIMEOUT, SK_STEP_GREETING, 0, NULL,
     &hint_swift,
     "no greeting: a server expecting implicit TLS (port 465) waits silently; try security: "
     ".implicitTLS, or check the port"},
    {"no greeting inside TLS", 1, NO_PEER, 0, 1, SK_ERR_TIMEOUT, SK_STEP_GREETING, 0, NULL,
     &hint_cli,
     "TLS works, but no SMTP greeting came inside it: is this an SMTP server? (an HTTPS port, "
     "too, waits silently for its client) Check the port in --server"},
    {"closed without a word: the library's hint", 1, SK_PEER_CLOSED, 0, 0, SK_ERR_TIMEOUT,
     SK_STEP_GREETING, 0, "it refuses this client", &hint_cli, "it refuses this client"},
    {"AUTH without TLS, caller's names", 1, NO_PEER, 1, 0, SK_ERR_CONFIG, SK_STEP_AUTH, 0,
     "use TLS (STARTTLS or implicit), or allow plain-text AUTH", &hint_cli,
     "use TLS (--tls starttls or --tls implicit), or --allow-plaintext-auth on a trusted "
     "network"},
    {"AUTH without TLS, plain words", 1, NO_PEER, 1, 0, SK_ERR_CONFIG, SK_STEP_AUTH, 0, NULL, NULL,
     "use TLS (STARTTLS or implicit TLS), or allow plain-text AUTH on a trusted network"},
    {"no STARTTLS", 1, NO_PEER, 1, 0, SK_ERR_UNSUPPORTED, SK_STEP_TLS, 0,
     "the server offers no TLS here", &hint_cli,
     "the server does not offer STARTTLS: try its implicit-TLS port with --tls implicit "
     "(usually 465), or --tls none only on a network you trust"},
    {"a refusal: the library's hint", 1, NO_PEER, 1, 0, SK_ERR_PERMFAIL, SK_STEP_RCPT, 550,
     "the mailbox does not exist", &hint_cli, "the mailbox does not exist"},
    {"a reply without a hint: explained", 1, NO_PEER, 1, 0, SK_ERR_PERMFAIL, SK_STEP_DATA, 599,
     NULL, &hint_cli,
     "permanent failure: retrying the same thing will fail the same way; read the server's "
     "text"},
    {"a refusal without a reply: the kind's", 1, NO_PEER, 1, 0, SK_ERR_PERMFAIL, SK_STEP_DATA, 0,
     NULL, &hint_cli, "a permanent refusal: sending again as is will fail the same way"},
    {"wrong password", 1, NO_PEER, 1, 1, SK_ERR_AUTH, SK_STEP_AUTH, 0, NULL, &hint_cli,
     "check --user and the password (--password-file or SMTPKIT_PASSWORD)"},
    {"wrong password, plain words", 1, NO_PEER, 1, 1, SK_ERR_AUTH, SK_STEP_AUTH, 0, NULL, NULL,
     "check the user name and password"},
    {"refused connection", 0, NO_PEER, 0, 0, SK_ERR_CONNECT, SK_STEP_CONNECT, 0, NULL, &hint_cli,
     "is the server running and listening on that port? (check the port in --server)"},
    {"name does not resolve", 1, NO_PEER, 0, 0, SK_ERR_DNS, SK_STEP_DNS, 0, NULL, &hint_swift,
     "the server's name did not resolve; check host/port"},
    {"certificate, plain words", 1, NO_PEER, 1, 1, SK_ERR_TLS_VERIFY, SK_STEP_TLS, 0, NULL, NULL,
     "the certificate is not trusted or names another host: give the CA with the CA file "
     "setting (or verification off, for tests only)"},
    {"one name given, plain words for the rest", 1, NO_PEER, 1, 0, SK_ERR_PROTOCOL, SK_STEP_EHLO, 0,
     NULL, &hint_only_implicit,
     "the peer does not speak SMTP there; check the port and the TLS mode: IMPLICIT on 465, "
     "STARTTLS on 587"},
    {"nothing to say", 1, NO_PEER, 1, 0, SK_ERR_NOMEM, SK_STEP_DATA, 0, NULL, &hint_cli, NULL},
    {"no error", 1, NO_PEER, 1, 0, SK_OK, SK_STEP_NONE, 0, NULL, &hint_cli, NULL},
};

static void test_hint_cases(void **state)
{
    (void)state;
    sk_client_opts o = {.host = "mx.test"};
    for (size_t i = 0; i < SKT_N(hint_cases); i++) {
        print_message("case %s\n", hint_cases[i].name);
        sk_client *c = hint_cases[i].client ? sk_client_new(&o) : NULL;
        if (c) {
            c->have_peer = hint_cases[i].peer != NO_PEER;
            c->peer.kind = c->have_peer ? (sk_peer_kind)hint_cases[i].peer : SK_PEER_UNKNOWN;
            c->have_greeting = hint_cases[i].greeted;
            if (c->have_greeting) c->greeting = sk_reply_make(220, "", "mx.test ready");
            c->tls_tried = hint_cases[i].tls;
            c->tls.active = hint_cases[i].tls;
        }
        sk_error e;
        sk_error_clear(&e);
        if (hint_cases[i].err != SK_OK)
            (void)sk_error_set(&e, hint_cases[i].err, hint_cases[i].step, "what happened");
        e.code = hint_cases[i].code;
        e.hint = hint_cases[i].lib_hint;
        char out[SK_CLIENT_HINT_MAX_OCTETS];
        memset(out, 'x', sizeof out);
        const char *got = sk_client_hint(c, &e, hint_cases[i].names, out, sizeof out);
        if (!hint_cases[i].want) {
            if (got) fail_msg("hint \"%s\", wanted none", got);
            assert_string_equal(out, "");
        } else {
            if (!got) fail_msg("no hint, wanted \"%s\"", hint_cases[i].want);
            assert_ptr_equal(got, out);
            assert_string_equal(got, hint_cases[i].want);
        }
        sk_client_free(c);
    }
    /* The buffer bounds what is written; none at all, nothing. */
    sk_error e;
    (void)sk_error_set(&e, SK_ERR_AUTH, SK_STEP_AUTH, "no");
    char small[8];
    assert_ptr_equal(sk_client_hint(NULL, &e, NULL, small, sizeof small), small);
    assert_string_equal(small, "check t");
    assert_null(sk_client_hint(NULL, &e, NULL, small, 0));
    assert_null(sk_client_hint(NULL, NULL, NULL, small, sizeof small));
    assert_string_equal(small, "");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stuff),
        cmocka_unit_test(test_parse_ehlo),
        cmocka_unit_test(test_queue_id_and_8bit),
        cmocka_unit_test(test_classify_peer),
        cmocka_unit_test(test_send_pipelined_partial),
        cmocka_unit_test(test_send_all_refused_then_again),
        cmocka_unit_test(test_send_preflight),
        cmocka_unit_test(test_send_rcpts_dsn),
        cmocka_unit_test(test_send_orcpt_utf8),
        cmocka_unit_test(test_send_rcpts_invalid),
        cmocka_unit_test(test_send_message),
        cmocka_unit_test(test_send_progress),
        cmocka_unit_test(test_connect_cases),
        cmocka_unit_test(test_auth_cases),
        cmocka_unit_test(test_state_and_refused),
        cmocka_unit_test(test_abort),
        cmocka_unit_test(test_bad_helo_name),
        cmocka_unit_test(test_tls_cases),
        cmocka_unit_test(test_probe_cases),
        cmocka_unit_test(test_probe_data),
        cmocka_unit_test(test_hint_cases),
    };
    return cmocka_run_group_tests(tests, tls_setup, tls_teardown);
}
