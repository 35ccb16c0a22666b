/* The queue runner: delivers spooled messages through transports, retries
 * transient failures on a schedule, and obeys hold/release/flush/delete
 * requests, also from `smtpkit queue` while the daemon runs. */
#ifndef SMTPKIT_QUEUE_H
#define SMTPKIT_QUEUE_H

#include <stdint.h>

#include "spool.h"

#ifdef __cplusplus
extern "C" {
#endif

struct event_base;
struct sk_transport; /* src/deliver/deliver.h */

/* Default retry schedule (DESIGN.md --retry-schedule): the last repeats. */
#define SK_QUEUE_RETRY_DEFAULT_MS                                                                  \
    {                                                                                              \
        60000, 300000, 900000, 3600000, 14400000                                                   \
    }
/* --max-queue-lifetime default: 5 days. */
#define SK_QUEUE_LIFETIME_DEFAULT_MS (5ull * 24 * 3600 * 1000)

/* What happened to a message or a recipient, for logs and tracking. */
typedef enum sk_queue_event_type {
    SK_QUEUE_EV_QUEUED = 0, /* committed and known to the queue */
    SK_QUEUE_EV_DELIVERED,  /* one recipient */
    SK_QUEUE_EV_DEFERRED,   /* one recipient, transient failure */
    SK_QUEUE_EV_BOUNCED,    /* one recipient, permanent failure */
    SK_QUEUE_EV_EXPIRED,    /* one recipient, queue lifetime over */
    SK_QUEUE_EV_REMOVED,    /* the message left the queue (done or deleted) */
} sk_queue_event_type;

typedef struct sk_queue_event {
    sk_queue_event_type type;
    const sk_spool_envelope *env;
    const char *recipient; /* NULL for message events */
    unsigned attempt;
    const char *remote_host; /* NULL when local or unknown */
    const char *reply;       /* "250 2.0.0 ...", NULL when none */
} sk_queue_event;

typedef struct sk_queue_opts {
    sk_logger log;
    /* Recipients in these domains (case-insensitive) go to local_transport;
     * all others to remote_transport (NULL: they fail permanently with
     * 5.7.1 "relaying not configured"). Not owned. */
    const char *const *local_domains;
    size_t nlocal_domains;
    struct sk_transport *local_transport;
    struct sk_transport *remote_transport;
    /* Retry schedule: waits after the 1st, 2nd, ... failed attempt; the last
     * repeats. NULL = SK_QUEUE_RETRY_DEFAULT_MS. Copied. */
    const uint64_t *retry_ms;
    size_t nretry;
    uint64_t max_lifetime_ms; /* 0 = SK_QUEUE_LIFETIME_DEFAULT_MS */
    unsigned max_in_flight;   /* delivery jobs at once, 0 = 32 */
    unsigned control_poll_ms; /* how often requests from the CLI are looked for, 0 = 200 */
    void (*on_event)(void *ctx, const sk_queue_event *ev);
    void *event_ctx;
} sk_queue_opts;

typedef struct sk_queue sk_queue;

/* Start the runner on base over an open (owner) spool: loads every stored
 * message (those already there are marked as possibly delivered, see
 * docs/queue.md) and listens for new commits. */
sk_queue *sk_queue_new(sk_spool *spool, const sk_queue_opts *opts, struct event_base *base,
                       sk_error *err);
/* Stop: cancels the transports' jobs in flight (their recipients stay
 * pending) and frees. Free before the spool. */
void sk_queue_free(sk_queue *q);

/* Operations on a running queue (its loop thread). */
SK_NODISCARD sk_err sk_queue_flush(sk_queue *q);                   /* retry deferred now */
SK_NODISCARD sk_err sk_queue_release(sk_queue *q, const char *id); /* hold -> active */
SK_NODISCARD sk_err sk_queue_delete(sk_queue *q, const char *id);  /* remove */
/* Messages known and deliveries in flight (tests, status). */
size_t sk_queue_count(const sk_queue *q);
size_t sk_queue_in_flight(const sk_queue *q);

/* The same operations from another process (`smtpkit queue`): when a
 * daemon holds the spool, the request is passed to it through
 * data_dir/spool/ctl and answered within timeout_ms (SK_ERR_TIMEOUT if
 * not); otherwise the spool is locked and changed directly.
 * SK_ERR_NOT_FOUND for an unknown ID. */
typedef enum sk_queue_op {
    SK_QUEUE_OP_FLUSH = 0,
    SK_QUEUE_OP_RELEASE,
    SK_QUEUE_OP_DELETE,
} sk_queue_op;
SK_NODISCARD sk_err sk_queue_control(const char *data_dir, sk_queue_op op, const char *id,
                                     unsigned timeout_ms, sk_error *err);

#ifdef __cplusplus
}
#endif
#endif
