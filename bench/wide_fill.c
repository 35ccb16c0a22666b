/* Fills a data directory's spool through the library's own spool (the loop
 * of bench/fill_common.c, as bench/spool_fill.c) with one message per line
 * of standard input, the line being its one recipient; every message
 * active and due now, so that `smtpkit serve` started on the spool
 * delivers the whole queue at once. For the wide-queue benchmark
 * (bench/wide_queue.sh): many destinations queued together without an
 * SMTP session per message.
 * Usage: wide_fill DATA_DIR < RECIPIENTS */
#include "fill_common.h"

#include <stdio.h>
#include <string.h>

/* A small message: the benchmark measures dispatch, not bulk transfer. */
#define WIDE_FILL_BODY_OCTETS 320

/* The next line of standard input that is not blank. */
static int next_rcpt(void *ctx, unsigned long i, char *rcpt, size_t cap)
{
    (void)ctx;
    (void)i;
    do {
        if (!fgets(rcpt, (int)cap, stdin)) return 0;
        rcpt[strcspn(rcpt, "\r\n")] = '\0';
    } while (!rcpt[0]);
    return 1;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: wide_fill DATA_DIR < RECIPIENTS\n");
        return 64;
    }
    fill_opts o = {
        .name = "wide_fill",
        .subject = "wide queue",
        .body_octets = WIDE_FILL_BODY_OCTETS,
        .state = SK_SPOOL_ACTIVE,
        .next_rcpt = next_rcpt,
    };
    return fill_run(argv[1], &o);
}
