/* Fills a data directory's spool with N deferred messages through the
 * library's own spool (sk_spool_begin/write/commit, the path `smtpkit serve`
 * takes after DATA: the same files, journal, checkpoints and fsyncs), for
 * the deep-queue benchmark without N SMTP sessions. Each message: 1 KiB,
 * one recipient at one of DOMAINS domains, deferred with its next attempt
 * an hour away, one attempt made. The loop is bench/fill_common.c's.
 * Usage: spool_fill DATA_DIR N DOMAINS */
#include "fill_common.h"

#include <stdio.h>
#include <stdlib.h>

/* The messages' size: the deep-queue benchmark's 1 KiB. */
#define SPOOL_FILL_BODY_OCTETS 1024
/* The next attempt this far away: nothing is delivered while measuring. */
#define SPOOL_FILL_RETRY_AFTER_S 3600
/* A progress line on stderr every so many commits. */
#define SPOOL_FILL_PROGRESS_EVERY 100000

typedef struct deep {
    unsigned long total, domains;
} deep;

static int next_rcpt(void *ctx, unsigned long i, char *rcpt, size_t cap)
{
    const deep *d = ctx;
    if (i >= d->total) return 0;
    snprintf(rcpt, cap, "user%lu@d%lu.deep.test", i, i % d->domains);
    return 1;
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: spool_fill DATA_DIR N DOMAINS\n");
        return 64;
    }
    deep d = {.total = strtoul(argv[2], NULL, 10), .domains = strtoul(argv[3], NULL, 10)};
    if (!d.total || !d.domains) {
        fprintf(stderr, "spool_fill: N and DOMAINS must be positive\n");
        return 64;
    }
    static char reply[] = "451 4.4.1 later";
    fill_opts o = {
        .name = "spool_fill",
        .subject = "deep queue",
        .body_octets = SPOOL_FILL_BODY_OCTETS,
        .state = SK_SPOOL_DEFERRED,
        .attempts = 1,
        .retry_after_s = SPOOL_FILL_RETRY_AFTER_S,
        .last_reply = reply,
        .progress_every = SPOOL_FILL_PROGRESS_EVERY,
        .next_rcpt = next_rcpt,
        .ctx = &d,
    };
    return fill_run(argv[1], &o);
}
