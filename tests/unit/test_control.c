/* Unit tests for src/control: the request and reply lines (table-driven,
 * with round trips), and the channel end to end in one process: the
 * server on an event loop with a queue, the client in a thread (as
 * `smtpkit queue` and `smtpkit serve` would be, in two processes); the
 * direct path without a daemon; a stale socket; a full house; a data
 * directory too deep for sun_path. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "sktest.h"

#include <errno.h>
#include <event2/event.h>
#include <event2/thread.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <jansson.h>
#include <smtpkit/control.h>
#include <time.h>

#include "deliver/deliver.h"

/* ---- request lines ---- */

static const char ID[] = "01HF3Z4Q7M2ABCDE";

static void test_request_parse(void **state)
{
    const unsigned H = 1u << SK_SPOOL_HOLD, D = 1u << SK_SPOOL_DEFERRED, A = 1u << SK_SPOOL_ACTIVE;
    static const struct {
        const char *line;
        sk_err want;
        sk_queue_op op;
        const char *id, *destination, *sender; /* sender NULL: not set */
        int all;
        unsigned states;
    } cases[] = {
        {.line = "release all", .want = SK_OK, .op = SK_QUEUE_OP_RELEASE, .all = 1},
        {.line = "delete id=01HF3Z4Q7M2ABCDE", .want = SK_OK, .op = SK_QUEUE_OP_DELETE, .id = ID},
        {.line = "flush destination=example.org state=deferred,hold",
         .want = SK_OK,
         .op = SK_QUEUE_OP_FLUSH,
         .destination = "example.org",
         .states = 0},
        {.line = "release sender=", .want = SK_OK, .op = SK_QUEUE_OP_RELEASE, .sender = ""},
        {.line = "release sender=a+2Bb+20c@x.example",
         .want = SK_OK,
         .op = SK_QUEUE_OP_RELEASE,
         .sender = "a+b c@x.example"},
        {.line = "delete all destination=x.example sender=a@b.example state=hold",
         .want = SK_OK,
         .op = SK_QUEUE_OP_DELETE,
         .all = 1,
         .destination = "x.example",
         .sender = "a@b.example"},
        {.line = "release state=active", .want = SK_OK, .op = SK_QUEUE_OP_RELEASE},
        /* UTF-8 in xtext: every octet encoded. */
        {.line = "release destination=b+C3+BCcher.example",
         .want = SK_OK,
         .op = SK_QUEUE_OP_RELEASE,
         .destination = "b\xc3\xbc"
                        "cher.example"},
        {.line = "", .want = SK_ERR_SYNTAX},
        {.line = "release", .want = SK_ERR_SYNTAX},      /* nothing to apply to */
        {.line = "release ", .want = SK_ERR_SYNTAX},     /* trailing space */
        {.line = "release  all", .want = SK_ERR_SYNTAX}, /* two spaces */
        {.line = "release all ", .want = SK_ERR_SYNTAX},
        {.line = "Release all", .want = SK_ERR_SYNTAX}, /* verbs are lower case */
        {.line = "hold all", .want = SK_ERR_SYNTAX},
        {.line = "release all all", .want = SK_ERR_SYNTAX}, /* a term twice */
        {.line = "release all\tstate=hold", .want = SK_ERR_SYNTAX},
        {.line = "release id=01HF3Z4Q7M2ABCD", .want = SK_ERR_SYNTAX},  /* 15 characters */
        {.line = "release id=01HF3Z4Q7M2ABCDI", .want = SK_ERR_SYNTAX}, /* I is not base32 */
        {.line = "release id=01HF3Z4Q7M2ABCDE id=01HF3Z4Q7M2ABCDE", .want = SK_ERR_SYNTAX},
        {.line = "release destination=", .want = SK_ERR_SYNTAX},
        {.line = "release destination=a+40b", .want = SK_ERR_SYNTAX}, /* an '@' */
        {.line = "release destination=a+20b", .want = SK_ERR_SYNTAX}, /* a space */
        {.line = "release sender=a+00b@x", .want = SK_ERR_SYNTAX},    /* a NUL */
        {.line = "release sender=a+0Ab@x", .want = SK_ERR_SYNTAX},    /* a line feed */
        {.line = "release sender=a+7Fb@x", .want = SK_ERR_SYNTAX},    /* DEL */
        {.line = "release sender=a+2bb@x", .want = SK_ERR_SYNTAX},    /* xtext hex is upper case */
        {.line = "release sender=a+2", .want = SK_ERR_SYNTAX},
        {.line = "release sender=a=b", .want = SK_ERR_SYNTAX},
        {.line = "release sender= sender=", .want = SK_ERR_SYNTAX},
        {.line = "release state=held", .want = SK_ERR_SYNTAX},
        {.line = "release state=hold,hold", .want = SK_ERR_SYNTAX},
        {.line = "release state=hold,", .want = SK_ERR_SYNTAX},
        {.line = "release state=", .want = SK_ERR_SYNTAX},
        {.line = "release state=hold state=active", .want = SK_ERR_SYNTAX},
        {.line = "release foo=bar", .want = SK_ERR_SYNTAX},
        {.line = "release =x", .want = SK_ERR_SYNTAX},
        {.line = "release all\xc3\xbc", .want = SK_ERR_SYNTAX}, /* outside printable ASCII */
    };
    for (size_t i = 0; i < SKT_N(cases); i++) {
        sk_control_request r;
        sk_error err;
        sk_err e = sk_control_request_parse(cases[i].line, strlen(cases[i].line), &r, &err);
        if (e != cases[i].want)
            fail_msg("case %zu '%s': %s, want %s (%s)", i, cases[i].line, sk_strerror(e),
                     sk_strerror(cases[i].want), err.text);
        if (e) {
            assert_true(err.text[0] != '\0');
            continue;
        }
        assert_int_equal(r.op, cases[i].op);
        assert_string_equal(r.filter.id, cases[i].id ? cases[i].id : "");
        assert_string_equal(r.filter.destination, cases[i].destination ? cases[i].destination : "");
        assert_int_equal(r.filter.has_sender, cases[i].sender != NULL);
        if (cases[i].sender) assert_string_equal(r.filter.sender, cases[i].sender);
        assert_int_equal(r.filter.all, cases[i].all);
    }
    /* States, separately (the table above cannot hold the masks as
     * constants). */
    static const struct {
        const char *line;
        unsigned mask_index;
    } st[] = {{"release state=hold", 0},
              {"release state=deferred,hold", 1},
              {"release state=hold,active,deferred", 2}};
    const unsigned masks[] = {H, D | H, A | D | H};
    for (size_t i = 0; i < SKT_N(st); i++) {
        sk_control_request r;
        assert_int_equal(sk_control_request_parse(st[i].line, strlen(st[i].line), &r, NULL), SK_OK);
        assert_int_equal(r.filter.states, masks[st[i].mask_index]);
    }
    /* The limit: a line one octet over it is refused as too long. */
    char big[SK_CONTROL_REQUEST_MAX_OCTETS + 2];
    memset(big, 'a', sizeof big);
    memcpy(big, "release sender=", 15);
    sk_control_request r;
    assert_int_equal(sk_control_request_parse(big, SK_CONTROL_REQUEST_MAX_OCTETS + 1, &r, NULL),
                     SK_ERR_TOO_LONG);
}

static void test_request_round_trip(void **state)
{
    static const char *const senders[] = {
        "", "a@b.example", "\"john smith\"@x.example", "a+b=c@x.example", "j\xc3\xb6rg@x.example",
        /* the longest path: 64 + '@' + 191 octets, each encoded */
        "++++++++++++++++++++++++++++++++++++++++++++++++++++++++++++++++@"
        "=================================================================================="
        "=================================================================================="
        "==========================="};
    for (size_t i = 0; i < SKT_N(senders); i++)
        for (unsigned op = 0; op <= SK_QUEUE_OP_DELETE; op++) {
            sk_control_request r = {.op = (sk_queue_op)op}, back;
            r.filter.has_sender = 1;
            snprintf(r.filter.sender, sizeof r.filter.sender, "%s", senders[i]);
            snprintf(r.filter.id, sizeof r.filter.id, "%s", ID);
            memset(r.filter.destination, '=', SK_SMTP_DOMAIN_MAX_OCTETS);
            r.filter.destination[SK_SMTP_DOMAIN_MAX_OCTETS] = '\0';
            r.filter.all = 1;
            r.filter.states = (1u << SK_SPOOL_STATE__COUNT) - 1;
            sk_buf b = SK_BUF_INIT(SK_CONTROL_REQUEST_MAX_OCTETS);
            assert_int_equal(sk_control_request_format(&r, &b), SK_OK);
            assert_true(b.len <= SK_CONTROL_REQUEST_MAX_OCTETS);
            assert_int_equal(b.data[b.len - 1], '\n');
            sk_error err;
            sk_err e = sk_control_request_parse(b.data, b.len - 1, &back, &err);
            if (e) fail_msg("%s: %s", sk_buf_cstr(&b), err.text);
            assert_memory_equal(&r, &back, sizeof r);
            sk_buf_free(&b);
        }
    /* An empty filter, an unknown op, a bad ID: nothing is written. */
    sk_buf b = SK_BUF_INIT(SK_CONTROL_REQUEST_MAX_OCTETS);
    sk_control_request bad[] = {{.op = SK_QUEUE_OP_DELETE},
                                {.op = (sk_queue_op)9, .filter.all = 1},
                                {.op = SK_QUEUE_OP_DELETE, .filter.id = "not-an-id"}};
    for (size_t i = 0; i < SKT_N(bad); i++)
        assert_int_equal(sk_control_request_format(&bad[i], &b), SK_ERR_INVAL);
    sk_buf_free(&b);
}

static void test_reply_lines(void **state)
{
    static const struct {
        const char *line;
        sk_err want;
        sk_control_reply_kind kind;
        size_t matched, changed;
        sk_err err;
        const char *text;
    } cases[] = {
        {.line = "ok matched=3 changed=2",
         .want = SK_OK,
         .kind = SK_CONTROL_OK,
         .matched = 3,
         .changed = 2},
        {.line = "ok matched=0 changed=0",
         .want = SK_OK,
         .kind = SK_CONTROL_OK,
         .matched = 0,
         .changed = 0},
        {.line = "progress matched=10000 changed=64",
         .want = SK_OK,
         .kind = SK_CONTROL_PROGRESS,
         .matched = 10000,
         .changed = 64},
        {.line = "error not-found no message X in the queue",
         .want = SK_OK,
         .kind = SK_CONTROL_ERROR,
         .err = SK_ERR_NOT_FOUND,
         .text = "no message X in the queue"},
        {.line = "error denied",
         .want = SK_OK,
         .kind = SK_CONTROL_ERROR,
         .err = SK_ERR_AUTH,
         .text = ""},
        {.line = "error busy try again",
         .want = SK_OK,
         .kind = SK_CONTROL_ERROR,
         .err = SK_ERR_TEMPFAIL,
         .text = "try again"},
        {.line = "error novel-word what it says",
         .want = SK_OK,
         .kind = SK_CONTROL_ERROR,
         .err = SK_ERR_IO,
         .text = "what it says"},
        {.line = "ok matched=2 changed=3", .want = SK_ERR_SYNTAX}, /* more changed than matched */
        {.line = "ok matched=01 changed=0", .want = SK_ERR_SYNTAX},
        {.line = "ok matched=18446744073709551616 changed=0", .want = SK_ERR_SYNTAX},
        {.line = "ok matched=-1 changed=0", .want = SK_ERR_SYNTAX},
        {.line = "ok matched=1", .want = SK_ERR_SYNTAX},
        {.line = "ok matched=1 changed=1 more", .want = SK_ERR_SYNTAX},
        {.line = "OK matched=1 changed=1", .want = SK_ERR_SYNTAX},
        {.line = "error", .want = SK_ERR_SYNTAX},
        {.line = "error ", .want = SK_ERR_SYNTAX},
        {.line = "", .want = SK_ERR_SYNTAX},
        {.line = "error failed a\tb", .want = SK_ERR_SYNTAX},
    };
    for (size_t i = 0; i < SKT_N(cases); i++) {
        sk_control_reply r;
        sk_err e = sk_control_reply_parse(cases[i].line, strlen(cases[i].line), &r);
        if (e != cases[i].want) fail_msg("case %zu '%s': %s", i, cases[i].line, sk_strerror(e));
        if (e) continue;
        assert_int_equal(r.kind, cases[i].kind);
        assert_int_equal(r.matched, cases[i].matched);
        assert_int_equal(r.changed, cases[i].changed);
        if (r.kind == SK_CONTROL_ERROR) {
            assert_int_equal(r.err, cases[i].err);
            assert_string_equal(r.text, cases[i].text);
        }
        /* What parses formats back to the same line (known words). */
        if (r.kind != SK_CONTROL_ERROR || r.err != SK_ERR_IO) {
            sk_buf b = SK_BUF_INIT(SK_CONTROL_REPLY_LINE_MAX_OCTETS);
            assert_int_equal(sk_control_reply_format(&r, &b), SK_OK);
            assert_int_equal(b.len, strlen(cases[i].line) + 1);
            assert_memory_equal(b.data, cases[i].line, b.len - 1);
            sk_buf_free(&b);
        }
    }
    /* A line at the limit is refused; a long error text is cut to fit,
     * and octets outside printable ASCII become '?'. */
    char big[SK_CONTROL_REPLY_LINE_MAX_OCTETS + 1];
    memset(big, 'x', sizeof big);
    memcpy(big, "error failed ", 13);
    sk_control_reply r;
    assert_int_equal(sk_control_reply_parse(big, SK_CONTROL_REPLY_LINE_MAX_OCTETS, &r),
                     SK_ERR_TOO_LONG);
    r = (sk_control_reply){.kind = SK_CONTROL_ERROR, .err = SK_ERR_TOO_LONG};
    memset(r.text, '\n', sizeof r.text - 1);
    r.text[sizeof r.text - 1] = '\0';
    sk_buf b = SK_BUF_INIT(SK_CONTROL_REPLY_LINE_MAX_OCTETS);
    assert_int_equal(sk_control_reply_format(&r, &b), SK_OK);
    assert_true(b.len <= SK_CONTROL_REPLY_LINE_MAX_OCTETS);
    sk_control_reply back;
    assert_int_equal(sk_control_reply_parse(b.data, b.len - 1, &back), SK_OK);
    assert_int_equal(back.err, SK_ERR_TOO_LONG);
    assert_non_null(strchr(back.text, '?'));
    assert_null(strchr(back.text, '\n'));
    sk_buf_free(&b);
}

/* ---- the channel end to end ---- */

typedef struct fake_daemon {
    char *dir;
    struct event_base *base;
    sk_spool *spool;
    sk_queue *q;
    sk_control_server *srv;
    skt_log log;
    struct event *guard;
} fake_daemon;

static void on_guard(evutil_socket_t fd, short what, void *arg)
{
    /* A bound on how long a test may run, not an assertion on timing. */
    fail_msg("the loop did not finish");
}

/* A spool and a queue on one loop, as `smtpkit serve` has them: no
 * transports (a released message is deferred, "no transport"). With
 * with_socket, the control server listens too. */
static void daemon_start(fake_daemon *d, int with_socket)
{
    sk_error err;
    d->base = event_base_new();
    d->spool = sk_spool_open(d->dir, NULL, d->base, &err);
    assert_non_null(d->spool);
    d->q = sk_queue_new(d->spool, &(sk_queue_opts){0}, d->base, &err);
    assert_non_null(d->q);
    sk_logger log = {skt_log_line, &d->log, SK_LOG_DEBUG, NULL};
    if (with_socket) {
        d->srv = sk_control_server_new(d->q, d->spool, &log, d->base, &err);
        if (!d->srv) fail_msg("control server: %s", err.text);
    }
    d->guard = evtimer_new(d->base, on_guard, d);
    struct timeval tv = {60, 0};
    evtimer_add(d->guard, &tv);
}

static void daemon_stop(fake_daemon *d)
{
    sk_control_server_free(d->srv);
    sk_queue_free(d->q);
    sk_spool_free(d->spool);
    event_free(d->guard);
    event_base_free(d->base);
    d->srv = NULL;
    d->q = NULL;
    d->spool = NULL;
    d->base = NULL;
}

static void on_committed(void *ctx, sk_err err, const char *id)
{
    assert_int_equal(err, SK_OK);
    *(int *)ctx = 1;
}

static void inject(const char *dir, int n, sk_spool_state st, const char *sender, const char *rcpt,
                   char (*ids)[SK_SPOOL_ID_SIZE])
{
    /* No event base: commits are synchronous (no daemon runs meanwhile). */
    sk_error err;
    sk_spool *s = sk_spool_open(dir, NULL, NULL, &err);
    assert_non_null(s);
    sk_spool_rcpt r = {.addr = (char *)rcpt};
    sk_spool_envelope env = {
        .sender = (char *)sender, .rcpts = &r, .nrcpts = 1, .state = st, .esmtp = 1};
    for (int i = 0; i < n; i++) {
        sk_spool_msg *m = sk_spool_begin(s, &env, &err);
        assert_non_null(m);
        assert_int_equal(sk_spool_write(m, "Subject: c\r\n\r\nx\r\n", 17), SK_OK);
        if (ids) snprintf(ids[i], SK_SPOOL_ID_SIZE, "%s", sk_spool_msg_id(m));
        int done = 0;
        sk_spool_commit(m, on_committed, &done);
        assert_true(done);
    }
    sk_spool_free(s);
}

typedef struct call {
    const char *dir;
    sk_control_request req;
    unsigned timeout_ms;
    sk_control_result res;
    sk_error err;
    sk_err result;
    struct event_base *base;
} call;

static void *call_thread(void *arg)
{
    call *c = arg;
    c->result = sk_control_run(c->dir, &c->req, c->timeout_ms, &c->res, &c->err);
    if (c->base) event_base_loopbreak(c->base);
    return NULL;
}

/* sk_control_run in a thread while d's loop runs (d NULL: no loop). */
static sk_err run(fake_daemon *d, const char *dir, sk_queue_op op, const sk_queue_filter *f,
                  unsigned timeout_ms, sk_control_result *res, sk_error *err)
{
    call c = {.dir = dir,
              .req = {.op = op, .filter = *f},
              .timeout_ms = timeout_ms,
              .base = d ? d->base : NULL};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, call_thread, &c), 0);
    if (d) event_base_dispatch(d->base);
    pthread_join(t, NULL);
    *res = c.res;
    if (err) *err = c.err;
    return c.result;
}

static sk_queue_filter filter_all(void)
{
    return (sk_queue_filter){.all = 1};
}

static void test_channel(void **state)
{
    fake_daemon d = {.dir = skt_tmpdir("control")};
    char ids[100][SK_SPOOL_ID_SIZE];
    inject(d.dir, 100, SK_SPOOL_HOLD, "a@x.example", "r@y.example", ids);
    inject(d.dir, 20, SK_SPOOL_HOLD, "b@x.example", "r@z.example", NULL);

    /* A socket left behind by a daemon that died is replaced. */
    char path[4200];
    snprintf(path, sizeof path, "%s/spool/%s", d.dir, SK_CONTROL_SOCKET_NAME);
    int stale = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    assert_true(strlen(path) < sizeof sa.sun_path);
    memcpy(sa.sun_path, path, strlen(path) + 1);
    assert_int_equal(bind(stale, (struct sockaddr *)&sa, sizeof sa), 0);
    close(stale);
    daemon_start(&d, 1);
    assert_int_equal(skt_log_count(&d.log, -1, "stale-socket-removed"), 1);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_true(S_ISSOCK(st.st_mode));
    assert_int_equal(st.st_mode & 0777, 0600);

    sk_control_result res;
    sk_error err;
    /* By ID: not there; there. */
    sk_queue_filter f = {.id = "0000000000000000"};
    assert_int_equal(run(&d, d.dir, SK_QUEUE_OP_RELEASE, &f, 10000, &res, &err), SK_ERR_NOT_FOUND);
    assert_non_null(strstr(err.text, "0000000000000000"));
    snprintf(f.id, sizeof f.id, "%s", ids[7]);
    assert_int_equal(run(&d, d.dir, SK_QUEUE_OP_DELETE, &f, 10000, &res, &err), SK_OK);
    assert_int_equal(res.matched, 1);
    assert_int_equal(res.changed, 1);
    assert_int_equal(res.direct, 0);

    /* By filter, over several batches: 99 of a's, not b's. */
    f = (sk_queue_filter){.destination = "Y.example", .states = 1u << SK_SPOOL_HOLD};
    assert_int_equal(run(&d, d.dir, SK_QUEUE_OP_DELETE, &f, 10000, &res, &err), SK_OK);
    assert_int_equal(res.matched, 99);
    assert_int_equal(res.changed, 99);
    assert_int_equal(sk_queue_count(d.q), 20);
    f = (sk_queue_filter){.has_sender = 1, .sender = "b@X.EXAMPLE"};
    assert_int_equal(run(&d, d.dir, SK_QUEUE_OP_FLUSH, &f, 10000, &res, &err), SK_OK);
    assert_int_equal(res.matched, 20);
    assert_int_equal(res.changed, 0);
    assert_int_equal(skt_log_count(&d.log, SK_LOG_INFO, "control delete"), 2);

    /* A full house: every slot taken by a client that says nothing, the
     * next one is told "busy". */
    int idle[SK_CONTROL_CLIENTS_MAX];
    for (size_t i = 0; i < SKT_N(idle); i++) {
        idle[i] = socket(AF_UNIX, SOCK_STREAM, 0);
        assert_int_equal(connect(idle[i], (struct sockaddr *)&sa, sizeof sa), 0);
    }
    f = filter_all();
    assert_int_equal(run(&d, d.dir, SK_QUEUE_OP_FLUSH, &f, 10000, &res, &err), SK_ERR_TEMPFAIL);
    assert_int_equal(sk_control_server_clients(d.srv), SK_CONTROL_CLIENTS_MAX);
    for (size_t i = 0; i < SKT_N(idle); i++) close(idle[i]);
    while (sk_control_server_clients(d.srv)) event_base_loop(d.base, EVLOOP_ONCE);
    assert_int_equal(run(&d, d.dir, SK_QUEUE_OP_FLUSH, &f, 10000, &res, &err), SK_OK);

    /* The lock held without a socket (a daemon starting): the client
     * waits, then gives up. */
    sk_control_server_free(d.srv);
    d.srv = NULL;
    assert_int_equal(lstat(path, &st), -1);
    assert_int_equal(run(NULL, d.dir, SK_QUEUE_OP_FLUSH, &f, 200, &res, &err), SK_ERR_TIMEOUT);

    /* No daemon: straight on the spool, with the same filters. */
    daemon_stop(&d);
    f = (sk_queue_filter){.has_sender = 1, .sender = "b@x.example"};
    assert_int_equal(run(NULL, d.dir, SK_QUEUE_OP_RELEASE, &f, 1000, &res, &err), SK_OK);
    assert_int_equal(res.matched, 20);
    assert_int_equal(res.changed, 20);
    assert_int_equal(res.direct, 1);
    f = (sk_queue_filter){.states = 1u << SK_SPOOL_HOLD};
    assert_int_equal(run(NULL, d.dir, SK_QUEUE_OP_DELETE, &f, 1000, &res, &err), SK_OK);
    assert_int_equal(res.matched, 0);
    f = (sk_queue_filter){.id = "0000000000000000"};
    assert_int_equal(run(NULL, d.dir, SK_QUEUE_OP_DELETE, &f, 1000, &res, &err), SK_ERR_NOT_FOUND);
    f = filter_all();
    assert_int_equal(run(NULL, d.dir, SK_QUEUE_OP_DELETE, &f, 1000, &res, &err), SK_OK);
    assert_int_equal(res.changed, 20);
    /* An empty filter is refused before anything is asked. */
    f = (sk_queue_filter){0};
    assert_int_equal(run(NULL, d.dir, SK_QUEUE_OP_DELETE, &f, 1000, &res, &err), SK_ERR_INVAL);
    /* No spool at all. */
    f = filter_all();
    assert_int_equal(run(NULL, "/nonexistent/sk", SK_QUEUE_OP_FLUSH, &f, 1000, &res, &err),
                     SK_ERR_CONFIG);

    /* Something else where the socket goes: not ours to remove. */
    skt_write_file(path, "x", 1);
    sk_error e2;
    d.base = event_base_new();
    d.spool = sk_spool_open(d.dir, NULL, d.base, &e2);
    d.q = sk_queue_new(d.spool, &(sk_queue_opts){0}, d.base, &e2);
    assert_null(sk_control_server_new(d.q, d.spool, NULL, d.base, &e2));
    assert_int_equal(e2.err, SK_ERR_CONFIG);
    assert_int_equal(lstat(path, &st), 0);
    sk_queue_free(d.q);
    sk_spool_free(d.spool);
    event_base_free(d.base);
    skt_log_free(&d.log);
    skt_rmtree(d.dir);
    free(d.dir);
}

/* ---- the summary and a bulk operation during the load ---- */

static int no_sync(void *ctx, int fd)
{
    (void)ctx;
    (void)fd;
    return 0; /* nothing here needs the disk's durability */
}

/* n copies of env into the spool under dir (no daemon runs meanwhile). */
static void inject_env(const char *dir, const sk_spool_envelope *env, int n)
{
    sk_error err;
    sk_spool *s = sk_spool_open(dir, &(sk_spool_opts){.sync_fn = no_sync}, NULL, &err);
    assert_non_null(s);
    for (int i = 0; i < n; i++) {
        sk_spool_msg *m = sk_spool_begin(s, env, &err);
        assert_non_null(m);
        assert_int_equal(sk_spool_write(m, "Subject: c\r\n\r\nx\r\n", 17), SK_OK);
        int done = 0;
        sk_spool_commit(m, on_committed, &done);
        assert_true(done);
    }
    sk_spool_free(s);
}

/* A transport whose deliveries never end: their messages stay delivering. */
static void deliver_forever(sk_transport *t, const sk_delivery *job, sk_delivery_done_fn done,
                            void *ctx)
{
    (void)t;
    (void)job;
    (void)done;
    (void)ctx;
}

/* Send line on a new connection to d's control socket and run d's loop
 * until the status line has come; everything read, as a string. */
static char *converse_raw(fake_daemon *d, const char *line)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/spool/%s", d->dir, SK_CONTROL_SOCKET_NAME);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    memcpy(sa.sun_path, path, strlen(path) + 1);
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(send(fd, line, strlen(line), 0), (ssize_t)strlen(line));
    sk_buf in = SK_BUF_INIT(SK_CONTROL_DATA_MAX_OCTETS * 2);
    for (;;) {
        event_base_loop(d->base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
        char chunk[4096];
        ssize_t n = recv(fd, chunk, sizeof chunk, MSG_DONTWAIT);
        if (n == 0) break; /* the server closes after the status line */
        if (n > 0) assert_int_equal(sk_buf_append(&in, chunk, (size_t)n), SK_OK);
        if (n < 0) assert_true(errno == EAGAIN || errno == EWOULDBLOCK);
    }
    close(fd);
    assert_int_equal(sk_buf_putc(&in, '\0'), SK_OK);
    return sk_buf_detach(&in, NULL);
}

static size_t json_count(const json_t *o, const char *key)
{
    const json_t *v = json_object_get(o, key);
    if (!json_is_integer(v)) fail_msg("no count %s", key);
    return (size_t)json_integer_value(v);
}

static void test_summary(void **state)
{
    fake_daemon d = {.dir = skt_tmpdir("control-summary")};
    int64_t now = (int64_t)time(NULL);
    /* The messages by state, each to its own domain; one with two
     * recipients at the same domain (in two cases) and one already
     * delivered elsewhere. */
    sk_spool_rcpt one[] = {{.addr = "r@Act.example"}};
    sk_spool_rcpt two[] = {{.addr = "a@def.example"},
                           {.addr = "b@DEF.example"},
                           {.addr = "c@gone.example", .state = SK_RCPT_DELIVERED}};
    sk_spool_rcpt held[] = {{.addr = "r@hold.example"}};
    sk_spool_rcpt later[] = {{.addr = "r@later.example"}};
    static const struct {
        int n;
        sk_spool_state st;
        int rcpts; /* 0: one, 1: two, 2: held, 3: later */
        int in_future;
    } cases[] = {
        {2, SK_SPOOL_ACTIVE, 0, 0},
        {3, SK_SPOOL_DEFERRED, 1, 1},
        {4, SK_SPOOL_HOLD, 2, 0},
        {5, SK_SPOOL_DEFERRED, 3, 0}, /* due now: to be delivering */
    };
    sk_spool_rcpt *lists[] = {one, two, held, later};
    size_t nlists[] = {1, 3, 1, 1};
    for (size_t i = 0; i < SKT_N(cases); i++) {
        sk_spool_envelope env = {.sender = "s@x.example",
                                 .rcpts = lists[cases[i].rcpts],
                                 .nrcpts = nlists[cases[i].rcpts],
                                 .state = cases[i].st,
                                 .attempts = cases[i].st == SK_SPOOL_DEFERRED,
                                 .next_attempt = cases[i].in_future ? now + 3600 : 0,
                                 .esmtp = 1};
        inject_env(d.dir, &env, cases[i].n);
    }
    sk_transport forever = {.name = "smtp", .deliver = deliver_forever};
    sk_error err;
    d.base = event_base_new();
    d.spool = sk_spool_open(d.dir, NULL, d.base, &err);
    assert_non_null(d.spool);
    d.q = sk_queue_new(d.spool, &(sk_queue_opts){.remote_transport = &forever}, d.base, &err);
    assert_non_null(d.q);
    d.srv = sk_control_server_new(d.q, d.spool, NULL, d.base, &err);
    assert_non_null(d.srv);
    d.guard = evtimer_new(d.base, on_guard, &d);
    struct timeval tv = {60, 0};
    evtimer_add(d.guard, &tv);

    /* Loaded, nothing started yet: the envelopes' states. */
    sk_queue_summary sum;
    assert_int_equal(sk_queue_summarize(d.q, &sum), SK_OK);
    assert_int_equal(sum.messages, 14);
    assert_int_equal(sum.by_state[SK_QUEUE_SUM_ACTIVE], 2);
    assert_int_equal(sum.by_state[SK_QUEUE_SUM_DEFERRED], 8);
    assert_int_equal(sum.by_state[SK_QUEUE_SUM_HOLD], 4);
    assert_int_equal(sum.by_state[SK_QUEUE_SUM_DELIVERING], 0);
    assert_int_equal(sum.recipients, 2 + 6 + 4 + 5);
    assert_false(sum.loading);
    /* By messages, most first; domains in lower case, a message once per
     * domain, delivered recipients not counted. */
    static const struct {
        const char *domain;
        size_t messages, recipients;
    } want[] = {{"later.example", 5, 5},
                {"hold.example", 4, 4},
                {"def.example", 3, 6},
                {"act.example", 2, 2}};
    assert_int_equal(sum.ndomains, SKT_N(want));
    for (size_t i = 0; i < SKT_N(want); i++) {
        assert_string_equal(sum.domains[i].domain, want[i].domain);
        assert_int_equal(sum.domains[i].messages, want[i].messages);
        assert_int_equal(sum.domains[i].recipients, want[i].recipients);
        assert_true(sum.domains[i].oldest_s >= now - 5 && sum.domains[i].oldest_s <= now + 5);
    }
    sk_queue_summary_free(&sum);

    /* Once the loop ran: those due are delivering (and stay so). */
    while (sk_queue_in_flight(d.q) < 7) event_base_loop(d.base, EVLOOP_ONCE);
    static const struct {
        const char *state;
        size_t n;
    } states[] = {{"active", 0}, {"delivering", 7}, {"deferred", 3}, {"hold", 4}};
    /* Through the socket, as JSON; a limit on the domains listed. */
    char *got = converse_raw(&d, SK_CONTROL_SUMMARY_VERB "\n");
    const char *body = strchr(got, '\n');
    assert_non_null(body);
    assert_int_equal(strncmp(got, "data ", 5), 0);
    json_error_t jerr;
    json_t *o = json_loadb(body + 1, strtoul(got + 5, NULL, 10), 0, &jerr);
    if (!o) fail_msg("summary JSON: %s in %s", jerr.text, got);
    assert_int_equal(json_count(o, "messages"), 14);
    for (size_t i = 0; i < SKT_N(states); i++)
        if (json_count(json_object_get(o, "states"), states[i].state) != states[i].n)
            fail_msg("state %s: %zu, want %zu", states[i].state,
                     json_count(json_object_get(o, "states"), states[i].state), states[i].n);
    assert_int_equal(json_count(o, "domains_total"), 4);
    assert_int_equal(json_array_size(json_object_get(o, "domains")), 4);
    assert_false(json_is_true(json_object_get(o, "loading")));
    assert_non_null(strstr(got, "\nok matched=0 changed=0\n"));
    json_decref(o);
    free(got);

    assert_int_equal(sk_queue_summarize(d.q, &sum), SK_OK);
    sk_buf b = SK_BUF_INIT(SK_CONTROL_DATA_MAX_OCTETS);
    assert_int_equal(sk_queue_summary_json(&sum, now, 2, &b), SK_OK);
    o = json_loadb(b.data, b.len, 0, &jerr);
    assert_non_null(o);
    assert_int_equal(json_array_size(json_object_get(o, "domains")), 2);
    assert_int_equal(json_count(o, "domains_left_out"), 2);
    json_decref(o);
    sk_buf_free(&b);
    sk_queue_summary_free(&sum);
    daemon_stop(&d);
    skt_rmtree(d.dir);
    free(d.dir);
}

/* A bulk operation asked for while the queue is still loading a spool of
 * many of its batches waits for the end of the load, and so applies to
 * every stored message, not only to those loaded when it came: here the
 * only ones that match are the last stored, loaded last (without the
 * wait the operation would be over, having matched none, before their
 * batch). */
static void test_bulk_waits_for_load(void **state)
{
    enum { EARLY = 7 * SK_QUEUE_RECOVER_BATCH, LATE = SK_QUEUE_RECOVER_BATCH };
    fake_daemon d = {.dir = skt_tmpdir("control-load")};
    sk_spool_rcpt r = {.addr = "r@y.example"};
    sk_spool_envelope env = {
        .sender = "s@x.example", .rcpts = &r, .nrcpts = 1, .state = SK_SPOOL_HOLD, .esmtp = 1};
    inject_env(d.dir, &env, EARLY);
    r.addr = "r@z.example";
    inject_env(d.dir, &env, LATE);
    daemon_start(&d, 1);
    /* The first batch was loaded at the start, the others follow on the
     * loop: the request is read one pass after the connection is
     * accepted, long before the eighth batch. */
    assert_true(sk_queue_loading(d.q));
    assert_true(sk_queue_count(d.q) < EARLY);
    char *got = converse_raw(&d, "release destination=z.example\n");
    char want[64];
    snprintf(want, sizeof want, "ok matched=%d changed=%d\n", LATE, LATE);
    if (!strstr(got, want)) fail_msg("release during the load: %s", got);
    free(got);
    assert_false(sk_queue_loading(d.q));
    assert_int_equal(skt_log_count(&d.log, SK_LOG_INFO, "waiting=queue-load"), 1);
    assert_int_equal(skt_log_count(&d.log, SK_LOG_INFO, "waited=queue-load"), 1);
    /* Once loaded, the summary counts them all. */
    sk_queue_summary sum;
    assert_int_equal(sk_queue_summarize(d.q, &sum), SK_OK);
    assert_int_equal(sum.messages, EARLY + LATE);
    assert_int_equal(sum.by_state[SK_QUEUE_SUM_HOLD], EARLY);
    sk_queue_summary_free(&sum);
    daemon_stop(&d);
    skt_log_free(&d.log);
    skt_rmtree(d.dir);
    free(d.dir);
}

/* A data directory deeper than sun_path's 108 octets. */
static void test_deep_data_dir(void **state)
{
    char *top = skt_tmpdir("control-deep");
    fake_daemon d = {.dir = malloc(4096)};
    snprintf(d.dir, 4096, "%s/%0150d", top, 0);
    assert_true(strlen(d.dir) > sizeof(((struct sockaddr_un *)0)->sun_path));
    char ids[3][SK_SPOOL_ID_SIZE];
    inject(d.dir, 3, SK_SPOOL_HOLD, "", "r@y.example", ids);
    daemon_start(&d, 1);
    sk_control_result res;
    sk_queue_filter f = {.has_sender = 1, .sender = ""};
    assert_int_equal(run(&d, d.dir, SK_QUEUE_OP_DELETE, &f, 10000, &res, NULL), SK_OK);
    assert_int_equal(res.changed, 3);
    assert_int_equal(res.direct, 0);
    daemon_stop(&d);
    skt_log_free(&d.log);
    skt_rmtree(top);
    free(top);
    free(d.dir);
}

int main(void)
{
    /* The client thread breaks the loop when it is done. */
    evthread_use_pthreads();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_request_parse),       cmocka_unit_test(test_request_round_trip),
        cmocka_unit_test(test_reply_lines),         cmocka_unit_test(test_channel),
        cmocka_unit_test(test_deep_data_dir),       cmocka_unit_test(test_summary),
        cmocka_unit_test(test_bulk_waits_for_load),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
