/* Fills a data directory's spool through the library's own spool (as
 * bench/spool_fill.c does) with one message per line of standard input,
 * the line being its one recipient; every message active and due now, so
 * that `smtpkit serve` started on the spool delivers the whole queue at
 * once. For the wide-queue benchmark (bench/wide_queue.sh): many
 * destinations queued together without an SMTP session per message.
 * Usage: wide_fill DATA_DIR < RECIPIENTS */
#include <smtpkit/spool.h>
#include <smtpkit/util.h>

#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Commits in flight at once: enough for large groups. */
#define FILL_IN_FLIGHT 1024
/* A small message: the benchmark measures dispatch, not bulk transfer. */
#define FILL_BODY_OCTETS 320
/* An address line: local part, '@', domain (RFC 5321 4.5.3.1) and more. */
#define FILL_RCPT_MAX 512

typedef struct fill {
    sk_spool *spool;
    struct event_base *base;
    unsigned long started, done, failed;
    int eof;
    char body[FILL_BODY_OCTETS + 1];
} fill;

static void start_one(fill *f);

static void on_done(void *ctx, sk_err err, const char *id)
{
    fill *f = ctx;
    (void)id;
    f->done++;
    if (err) f->failed++;
    if (!f->eof) start_one(f);
    if (f->eof && f->done == f->started) event_base_loopbreak(f->base);
}

static void start_one(fill *f)
{
    char rcpt[FILL_RCPT_MAX], sender[] = "sender@bench.test", helo[] = "client.test",
                              peer[] = "127.0.0.1";
    do { /* blank lines are skipped */
        if (!fgets(rcpt, sizeof rcpt, stdin)) {
            f->eof = 1;
            if (f->done == f->started) event_base_loopbreak(f->base);
            return;
        }
        rcpt[strcspn(rcpt, "\r\n")] = '\0';
    } while (!rcpt[0]);
    sk_spool_rcpt r = {.addr = rcpt, .state = SK_RCPT_PENDING};
    int64_t now = (int64_t)time(NULL);
    sk_spool_envelope env = {
        .sender = sender,
        .rcpts = &r,
        .nrcpts = 1,
        .helo = helo,
        .peer = peer,
        .esmtp = 1,
        .arrival = now,
        .state = SK_SPOOL_ACTIVE,
        .next_attempt = now,
    };
    f->started++;
    sk_error err;
    sk_spool_msg *m = sk_spool_begin(f->spool, &env, &err);
    if (!m || sk_spool_write(m, f->body, FILL_BODY_OCTETS)) {
        fprintf(stderr, "wide_fill: %s\n", m ? "write failed" : err.text);
        if (m) sk_spool_abort(m);
        f->done++;
        f->failed++;
        if (!f->eof) start_one(f);
        return;
    }
    sk_spool_commit(m, on_done, f);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: wide_fill DATA_DIR < RECIPIENTS\n");
        return 64;
    }
    static fill f;
    /* A header block and lines of 78 octets, CRLF ends. */
    size_t n =
        (size_t)snprintf(f.body, sizeof f.body,
                         "From: sender@bench.test\r\nTo: someone\r\nSubject: wide queue\r\n\r\n");
    while (n < FILL_BODY_OCTETS) {
        f.body[n] = (n + 2) % 80 == 0 ? '\r' : (n + 1) % 80 == 0 ? '\n' : (char)('a' + n % 26);
        n++;
    }
    f.body[FILL_BODY_OCTETS - 2] = '\r';
    f.body[FILL_BODY_OCTETS - 1] = '\n';
    f.base = event_base_new();
    sk_error err;
    f.spool = f.base ? sk_spool_open(argv[1], NULL, f.base, &err) : NULL;
    if (!f.spool) {
        fprintf(stderr, "wide_fill: %s\n", f.base ? err.text : "no event base");
        return 1;
    }
    for (unsigned i = 0; i < FILL_IN_FLIGHT && !f.eof; i++) start_one(&f);
    if (!f.eof || f.done < f.started) event_base_dispatch(f.base);
    sk_spool_free(f.spool);
    event_base_free(f.base);
    printf("committed=%lu failed=%lu\n", f.done - f.failed, f.failed);
    return f.failed ? 1 : 0;
}
