/* The spool-filling loop of bench/fill_common.h: FILL_IN_FLIGHT commits at
 * once on the spool's event base, a new message begun as each one ends. */
#include "fill_common.h"

#include <smtpkit/util.h>

#include <event2/event.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

/* Commits in flight at once: enough for large groups. */
#define FILL_IN_FLIGHT 1024

typedef struct fill {
    const fill_opts *o;
    sk_spool *spool;
    struct event_base *base;
    unsigned long started, done, failed;
    int eof;
    char body[FILL_BODY_MAX_OCTETS + 1];
} fill;

static void start_one(fill *f);

static void on_done(void *ctx, sk_err err, const char *id)
{
    fill *f = ctx;
    (void)id;
    f->done++;
    if (err) f->failed++;
    if (f->o->progress_every && f->done % f->o->progress_every == 0)
        fprintf(stderr, "%s: %lu committed\n", f->o->name, f->done);
    if (!f->eof) start_one(f);
    if (f->eof && f->done == f->started) event_base_loopbreak(f->base);
}

/* Begins the next message and hands it to the committer; one that cannot be
 * begun or written counts as failed, and the one after it is tried. */
static void start_one(fill *f)
{
    const fill_opts *o = f->o;
    char rcpt[FILL_RCPT_MAX], sender[] = "sender@bench.test", helo[] = "client.test",
                              peer[] = "127.0.0.1";
    for (;;) {
        if (!o->next_rcpt(o->ctx, f->started, rcpt, sizeof rcpt)) {
            f->eof = 1;
            if (f->done == f->started) event_base_loopbreak(f->base);
            return;
        }
        sk_spool_rcpt r = {.addr = rcpt, .state = SK_RCPT_PENDING, .last_reply = o->last_reply};
        int64_t now = (int64_t)time(NULL);
        sk_spool_envelope env = {
            .sender = sender,
            .rcpts = &r,
            .nrcpts = 1,
            .helo = helo,
            .peer = peer,
            .esmtp = 1,
            .arrival = now,
            .state = o->state,
            .attempts = o->attempts,
            .next_attempt = now + o->retry_after_s,
            .last_reply = o->last_reply,
        };
        f->started++;
        sk_error err;
        sk_spool_msg *m = sk_spool_begin(f->spool, &env, &err);
        if (m && !sk_spool_write(m, f->body, o->body_octets)) {
            sk_spool_commit(m, on_done, f);
            return;
        }
        fprintf(stderr, "%s: %s\n", o->name, m ? "write failed" : err.text);
        if (m) sk_spool_abort(m);
        f->done++;
        f->failed++;
    }
}

int fill_run(const char *dir, const fill_opts *o)
{
    static fill f;
    f.o = o;
    /* A header block and lines of 78 octets, CRLF ends. */
    size_t n = (size_t)snprintf(f.body, o->body_octets + 1,
                                "From: sender@bench.test\r\nTo: someone\r\nSubject: %s\r\n\r\n",
                                o->subject);
    while (n < o->body_octets) {
        f.body[n] = (n + 2) % 80 == 0 ? '\r' : (n + 1) % 80 == 0 ? '\n' : (char)('a' + n % 26);
        n++;
    }
    f.body[o->body_octets - 2] = '\r';
    f.body[o->body_octets - 1] = '\n';
    f.base = event_base_new();
    sk_error err;
    f.spool = f.base ? sk_spool_open(dir, NULL, f.base, &err) : NULL;
    if (!f.spool) {
        fprintf(stderr, "%s: %s\n", o->name, f.base ? err.text : "no event base");
        return 1;
    }
    for (unsigned i = 0; i < FILL_IN_FLIGHT && !f.eof; i++) start_one(&f);
    /* A break asked for before the loop runs would be lost. */
    if (!f.eof || f.done < f.started) event_base_dispatch(f.base);
    sk_spool_free(f.spool);
    event_base_free(f.base);
    printf("committed=%lu failed=%lu\n", f.done - f.failed, f.failed);
    return f.failed ? 1 : 0;
}
