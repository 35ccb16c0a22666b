/* Private parts of the queue runner: rate buckets and bounce building. */
#ifndef SK_QUEUE_INT_H
#define SK_QUEUE_INT_H

#include <smtpkit/dsn.h>
#include <smtpkit/queue.h>

/* Look for due messages and start what the limits allow, now (tests that
 * move an injected clock call this instead of waiting for the timers). */
void sk_queue_poke(sk_queue *q);

/* A token bucket as a "theoretical arrival time" (GCRA): every message
 * moves tat on by per_ms/count milliseconds; a message may go while tat is
 * no more than burst-1 intervals ahead of now. Kept in units of
 * 1/count ms so that intervals like 1000/3 ms stay exact. */
typedef struct sk_bucket {
    sk_queue_rate rate;
    int64_t tat; /* in ms * rate.count */
} sk_bucket;

/* 0 when a message may go at now_ms, else how many ms until one may. */
uint64_t sk_bucket_wait(const sk_bucket *b, int64_t now_ms);
/* Take one message's worth (call when sk_bucket_wait said 0). */
void sk_bucket_take(sk_bucket *b, int64_t now_ms);

/* The rate for a destination containing domain: the first rule naming it,
 * else the default. */
sk_queue_rate sk_queue_rate_for(const sk_queue_opts *o, const char *domain, int *overridden);

/* One recipient reported in a DSN: failed (bounce), delayed, delivered
 * or relayed. */
typedef struct sk_bounce_rcpt {
    const sk_spool_rcpt *rcpt;
    sk_dsn_action action;
    const char *status;          /* "5.1.1", "4.4.7", "2.0.0" */
    const char *diagnostic;      /* reply, or our own text; NULL = none */
    const char *diagnostic_type; /* NULL = smtp */
    const char *remote;
    int64_t retry_until; /* delayed: Will-Retry-Until, unix seconds */
} sk_bounce_rcpt;

/* Build the DSN about env for these recipients into out (RET and ENVID
 * from env; the message read from the spool). The whole message is
 * returned only when a recipient failed (RFC 3461 4.3: RET applies to
 * failure reports; others carry the headers). */
SK_NODISCARD sk_err sk_queue_bounce_build(sk_spool *spool, const sk_queue_opts *o,
                                          const sk_spool_envelope *env, const sk_bounce_rcpt *r,
                                          size_t n, int64_t now_s, sk_buf *out, sk_error *err);

/* Split a stored reply line "550 5.1.1 text" into its code (0 when
 * missing), enhanced code ("" when none) and text. */
void sk_queue_reply_split(const char *line, int *code, char enhanced[16], const char **text);

#endif
