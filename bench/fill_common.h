/* The loop bench/spool_fill.c and bench/wide_fill.c share: messages
 * committed through the library's own spool (sk_spool_begin/write/commit,
 * the path `smtpkit serve` takes after DATA), one recipient each, many
 * commits in flight; each program says what its messages look like. */
#ifndef SMTPKIT_BENCH_FILL_COMMON_H
#define SMTPKIT_BENCH_FILL_COMMON_H

#include <smtpkit/spool.h>

#include <stddef.h>
#include <stdint.h>

/* The largest message body a fill program writes. */
#define FILL_BODY_MAX_OCTETS 1024
/* An address line: local part, '@', domain (RFC 5321 4.5.3.1) and more. */
#define FILL_RCPT_MAX 512

typedef struct fill_opts {
    const char *name;    /* the program's name, before its messages on stderr */
    const char *subject; /* every message's Subject: */
    size_t body_octets;  /* every message's size, at most FILL_BODY_MAX_OCTETS */
    sk_spool_state state;
    unsigned attempts;
    int64_t retry_after_s; /* the next attempt this long after arrival */
    char *last_reply;      /* the message's and the recipient's; NULL when none */
    /* "NAME: N committed" on stderr every this many commits; 0: never. */
    unsigned long progress_every;
    /* Writes message number i's recipient into rcpt (cap octets, i from
     * 0); returns 0 when there are no more messages. */
    int (*next_rcpt)(void *ctx, unsigned long i, char *rcpt, size_t cap);
    void *ctx;
} fill_opts;

/* Opens the spool of the data directory dir, commits a message for every
 * recipient next_rcpt gives and prints "committed=N failed=M" on stdout.
 * A message that cannot be begun or written is counted as failed and the
 * next one started. Returns the exit status: 0 when every message was
 * committed, 1 otherwise. */
int fill_run(const char *dir, const fill_opts *o);

#endif
