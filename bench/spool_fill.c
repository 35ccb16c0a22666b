/* Fills a data directory's spool with N deferred messages through the
 * library's own spool (sk_spool_begin/write/commit, the path `smtpkit serve`
 * takes after DATA: the same files, journal, checkpoints and fsyncs), for
 * the deep-queue benchmark without N SMTP sessions. Each message: 1 KiB,
 * one recipient at one of DOMAINS domains, deferred with its next attempt
 * an hour away, one attempt made.
 * Usage: spool_fill DATA_DIR N DOMAINS */
#include <smtpkit/spool.h>
#include <smtpkit/util.h>

#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Commits in flight at once: enough for large groups. */
#define FILL_IN_FLIGHT   1024
#define FILL_BODY_OCTETS 1024

typedef struct fill {
    sk_spool *spool;
    struct event_base *base;
    unsigned long total, started, done, failed, domains;
    char body[FILL_BODY_OCTETS + 1];
} fill;

static void start_one(fill *f);

static void on_done(void *ctx, sk_err err, const char *id)
{
    fill *f = ctx;
    (void)id;
    f->done++;
    if (err) f->failed++;
    if (f->done % 100000 == 0) fprintf(stderr, "spool_fill: %lu committed\n", f->done);
    if (f->started < f->total) start_one(f);
    if (f->done == f->total) event_base_loopbreak(f->base);
}

static void start_one(fill *f)
{
    char rcpt[64], reply[] = "451 4.4.1 later", sender[] = "sender@bench.test",
                   helo[] = "client.test", peer[] = "127.0.0.1";
    snprintf(rcpt, sizeof rcpt, "user%lu@d%lu.deep.test", f->started, f->started % f->domains);
    sk_spool_rcpt r = {.addr = rcpt, .state = SK_RCPT_PENDING, .last_reply = reply};
    int64_t now = (int64_t)time(NULL);
    sk_spool_envelope env = {
        .sender = sender,
        .rcpts = &r,
        .nrcpts = 1,
        .helo = helo,
        .peer = peer,
        .esmtp = 1,
        .arrival = now,
        .state = SK_SPOOL_DEFERRED,
        .attempts = 1,
        .next_attempt = now + 3600,
        .last_reply = reply,
    };
    f->started++;
    sk_error err;
    sk_spool_msg *m = sk_spool_begin(f->spool, &env, &err);
    if (!m || sk_spool_write(m, f->body, FILL_BODY_OCTETS)) {
        fprintf(stderr, "spool_fill: %s\n", m ? "write failed" : err.text);
        if (m) sk_spool_abort(m);
        f->done++;
        f->failed++;
        if (f->done == f->total) event_base_loopbreak(f->base);
        return;
    }
    sk_spool_commit(m, on_done, f);
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: spool_fill DATA_DIR N DOMAINS\n");
        return 64;
    }
    static fill f;
    f.total = strtoul(argv[2], NULL, 10);
    f.domains = strtoul(argv[3], NULL, 10);
    if (!f.total || !f.domains) {
        fprintf(stderr, "spool_fill: N and DOMAINS must be positive\n");
        return 64;
    }
    /* A header block and lines of 78 octets, CRLF ends. */
    size_t n =
        (size_t)snprintf(f.body, sizeof f.body,
                         "From: sender@bench.test\r\nTo: someone\r\nSubject: deep queue\r\n\r\n");
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
        fprintf(stderr, "spool_fill: %s\n", f.base ? err.text : "no event base");
        return 1;
    }
    for (unsigned i = 0; i < FILL_IN_FLIGHT && f.started < f.total; i++) start_one(&f);
    event_base_dispatch(f.base);
    sk_spool_free(f.spool);
    event_base_free(f.base);
    printf("committed=%lu failed=%lu\n", f.done - f.failed, f.failed);
    return f.failed ? 1 : 0;
}
