/* The queue runner: delivers spooled messages through transports, retries
 * transient failures on a schedule, and obeys hold/release/flush/delete
 * requests, by ID or for every message that matches a filter (the control
 * channel of `smtpkit queue` is a layer on top of these: control.h). */
#ifndef SMTPKIT_QUEUE_H
#define SMTPKIT_QUEUE_H

#include <stdint.h>

#include "classify.h"
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
/* --delay-warning default: 4 hours, as Postfix's delay_warning_time when
 * set; long enough that the usual greylisting and short outages pass
 * without a notice (RFC 3461 5.2.5 leaves the time to the MTA). */
#define SK_QUEUE_DELAY_WARNING_DEFAULT_MS (4ull * 3600 * 1000)
/* Per-destination defaults (docs/queue.md "Scheduling"). */
#define SK_QUEUE_DEST_CONNS_DEFAULT          8   /* jobs in flight per destination */
#define SK_QUEUE_MSGS_PER_CONN_DEFAULT       100 /* messages one connection carries */
#define SK_QUEUE_ROUTE_TTL_MS_DEFAULT        (3600u * 1000)
#define SK_QUEUE_THROTTLE_SUSPEND_MS_DEFAULT (60u * 1000) /* 421 / 4.7.x without a rule */

/* The local part of VERP senders starts with this (then "ID=LOCAL=DOMAIN"). */
#define SK_QUEUE_VERP_PREFIX "bounces+"

/* What happened to a message or a recipient, for logs and tracking. */
typedef enum sk_queue_event_type {
    SK_QUEUE_EV_QUEUED = 0, /* committed and known to the queue */
    SK_QUEUE_EV_DELIVERED,  /* one recipient */
    SK_QUEUE_EV_DEFERRED,   /* one recipient, transient failure */
    SK_QUEUE_EV_BOUNCED,    /* one recipient, permanent failure */
    SK_QUEUE_EV_EXPIRED,    /* one recipient, queue lifetime over */
    SK_QUEUE_EV_REMOVED,    /* the message left the queue (done or deleted) */
    SK_QUEUE_EV_DSN,        /* a DSN about env was spooled; dsn_id names it */
    SK_QUEUE_EV_THROTTLED,  /* destination suspended or slowed (env is the message
                               whose reply caused it; recipient is that recipient) */
} sk_queue_event_type;

typedef struct sk_queue_event {
    sk_queue_event_type type;
    const sk_spool_envelope *env;
    const char *recipient;   /* NULL for message events */
    unsigned attempt;        /* attempts made, counting the one reported */
    const char *remote_host; /* NULL when local or unknown */
    const char *reply;       /* "250 2.0.0 ...", NULL when none */
    /* Failure replies (deferred, bounced, expired, throttled): their
     * classification by the rules (SK_CLASS_OTHER when none matched). */
    sk_class cls;
    const char *tls;         /* "TLSv1.3 TLS_AES_256_GCM_SHA384" of the delivery, NULL = none */
    const char *destination; /* queue key: domain or provider key; NULL for message events */
    int priority;            /* effective priority of the message (-9..9) */
    const char *dsn_id;      /* SK_QUEUE_EV_DSN: queue ID of the new DSN message */
    /* SK_QUEUE_EV_DSN: the recipients whose final outcome it reports
     * (failed, expired, delivered or relayed; not those only delayed). */
    const char *const *dsn_rcpts;
    size_t ndsn_rcpts;
    /* SK_QUEUE_EV_DELIVERED by the local transport: the Maildir file
     * written; NULL otherwise. */
    const char *mailbox_file;
    uint64_t throttle_ms; /* SK_QUEUE_EV_THROTTLED: for how long */
} sk_queue_event;

/* A per-destination rate: at most count messages per per_ms, as a token
 * bucket holding up to burst tokens (0 = 1: the strictest pacing). count 0
 * means no limit. */
typedef struct sk_queue_rate {
    unsigned count;
    uint64_t per_ms;
    unsigned burst;
} sk_queue_rate;

/* A --rate-limit value: "DOMAIN=N/UNIT" or "default=N/UNIT" with UNIT s, m
 * or h (also "sec", "min", "hour"). domain is lower case; "" for default. */
typedef struct sk_queue_rate_rule {
    char domain[SK_SMTP_DOMAIN_MAX_OCTETS + 1];
    sk_queue_rate rate;
} sk_queue_rate_rule;
/* Parse one such string. SK_ERR_SYNTAX with err text saying what is wrong. */
SK_NODISCARD sk_err sk_queue_rate_parse(const char *s, sk_queue_rate_rule *out, sk_error *err);

/* A priority setting: messages whose authenticated user (auth 1) or
 * envelope sender (auth 0) matches get this priority, over MT-PRIORITY.
 * For senders, match is "user@domain" (whole address) or "domain" (every
 * sender at that domain); case-insensitive. First matching rule wins. */
typedef struct sk_queue_priority_rule {
    int auth;
    char match[SK_SMTP_PATH_MAX_OCTETS + 1];
    int priority; /* -9..9 as in RFC 6710 */
} sk_queue_priority_rule;
/* Parse "SENDER=PRIO" or "auth:USER=PRIO" (PRIO -9..9). */
SK_NODISCARD sk_err sk_queue_priority_parse(const char *s, sk_queue_priority_rule *out,
                                            sk_error *err);
/* The effective priority of a message: first matching rule, else
 * MT-PRIORITY when given (RFC 6710 2), else 0. */
int sk_queue_priority_of(const sk_spool_envelope *env, const sk_queue_priority_rule *rules,
                         size_t nrules);

typedef struct sk_queue_opts {
    sk_logger log;
    /* Recipients in these domains (case-insensitive) go to local_transport;
     * all others to remote_transport (NULL: they are deferred with
     * 451 4.3.5 "no transport for DOMAIN"). Not owned. */
    const char *const *local_domains;
    size_t nlocal_domains;
    struct sk_transport *local_transport;
    struct sk_transport *remote_transport;
    /* Retry schedule: waits after the 1st, 2nd, ... failed attempt; the last
     * repeats. NULL = SK_QUEUE_RETRY_DEFAULT_MS. Copied. */
    const uint64_t *retry_ms;
    size_t nretry;
    uint64_t max_lifetime_ms; /* 0 = SK_QUEUE_LIFETIME_DEFAULT_MS */
    /* A message still deferred this long after arrival gets one delay DSN
     * (RFC 3464 "delayed") for its recipients with NOTIFY=DELAY; 0 = none
     * (the daemon's default is SK_QUEUE_DELAY_WARNING_DEFAULT_MS). */
    uint64_t delay_warning_ms;
    unsigned max_in_flight; /* delivery jobs at once, 0 = 32 */
    void (*on_event)(void *ctx, const sk_queue_event *ev);
    void *event_ctx;

    /* ---- scheduling (docs/queue.md "Scheduling") ---- */
    /* Destinations: 0 = provider grouping (domains whose route key, the
     * sorted MX host set from the transport's route_key hook, is the same
     * share one queue and one set of limits); 1 = one queue per domain. */
    int group_by_domain;
    uint64_t route_ttl_ms; /* how long a route key is cached, 0 = SK_QUEUE_ROUTE_TTL_MS_DEFAULT */
    /* Per destination: delivery jobs in flight (~ connections), 0 =
     * SK_QUEUE_DEST_CONNS_DEFAULT; messages per connection, passed to the
     * transport in sk_delivery.max_per_conn, 0 = SK_QUEUE_MSGS_PER_CONN_DEFAULT. */
    unsigned dest_max_conns;
    unsigned msgs_per_conn;
    /* Rate per destination: default (count 0 = unlimited), and overrides by
     * recipient domain (a provider group takes the first override that
     * names one of its domains). Copied. */
    sk_queue_rate rate_default;
    const sk_queue_rate_rule *rate_rules;
    size_t nrate_rules;
    /* Priorities by sender or authenticated user. Copied. */
    const sk_queue_priority_rule *priority_rules;
    size_t npriority_rules;
    /* Classification and traffic rules for failure replies; NULL = the
     * built-in rules (sk_rules_default). Not owned; must outlive the queue. */
    const sk_rules *rules;
    /* How long a destination is suspended after 421 or 4.7.x when no rule
     * gives an action; 0 = SK_QUEUE_THROTTLE_SUSPEND_MS_DEFAULT. */
    uint64_t throttle_suspend_ms;

    /* ---- bounces (docs/queue.md "Bounces") ---- */
    /* Our host name: Reporting-MTA and From of DSNs; NULL = "localhost". */
    const char *hostname;
    size_t dsn_full_max_octets; /* RET=FULL up to this size, 0 = SK_DSN_FULL_MAX_OCTETS_DEFAULT */
    /* Called on the loop with each DSN as built (the whole message, CRLF
     * line ends) before it is spooled: header fields it appends to fields
     * (each ending in CRLF) go on top of the DSN. An error is logged and
     * the DSN goes without them. NULL: none. (`smtpkit serve` signs its
     * DSNs with DKIM here.) */
    sk_err (*dsn_fields)(void *ctx, const char *msg, size_t len, sk_buf *fields, sk_error *err);
    void *dsn_ctx;
    /* VERP: when set, remote jobs of a message with a sender carry one
     * recipient each, from SK_QUEUE_VERP_PREFIX "ID=LOCAL=DOMAIN@" verp_host,
     * so that a bounce names the message and recipient it is about. */
    const char *verp_host;

    /* Test hook: the clock in milliseconds since the epoch; NULL = real time. */
    int64_t (*now_ms)(void *ctx);
    void *clock_ctx;
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
/* The recipients still to be delivered, by recipient domain (lower case),
 * over every message in the queue (held ones too), for metrics (loop
 * thread): fn is called once per domain, in no set order, and the total
 * is returned. Costs a sort of the pending recipients. */
typedef void (*sk_queue_depth_fn)(void *ctx, const char *domain, size_t recipients);
size_t sk_queue_depth(const sk_queue *q, sk_queue_depth_fn fn, void *ctx);

/* Where the queue stands for one recipient domain (GET /v1/queue). */
typedef struct sk_queue_dest_info {
    const char *domain;    /* lower case */
    const char *queue_key; /* the destination queue it goes to (the domain, or its
                              provider's MX set); NULL until a delivery was routed */
    size_t recipients;     /* still to be delivered there */
    size_t messages;       /* messages with such recipients */
    size_t held;           /* of those, in the hold queue */
    size_t delivering;     /* of those, with an attempt under way */
    int64_t oldest_s;      /* the oldest one's arrival, Unix s */
    /* The earliest next attempt of those not held (Unix s; now for one
     * due or under way); 0: every one is held. */
    int64_t next_attempt_s;
    /* The destination queue's state: delivery jobs running, jobs waiting
     * for the limits, suspended (after 421 or 4.7.x, or a rule) or slowed
     * to an imposed rate until then (Unix ms; 0: not). */
    unsigned in_flight;
    size_t waiting_jobs;
    int64_t suspended_until_ms, throttled_until_ms;
} sk_queue_dest_info;
typedef void (*sk_queue_dest_fn)(void *ctx, const sk_queue_dest_info *d);
/* fn once per recipient domain with pending recipients, the domains in
 * order (loop thread); how many. SK_ERR_NOMEM: none reported. */
SK_NODISCARD sk_err sk_queue_destinations(const sk_queue *q, sk_queue_dest_fn fn, void *ctx,
                                          size_t *n);

/* A summary of the queue, as Postfix's qshape gives one: messages by
 * state, and by recipient domain the messages and recipients still to be
 * delivered there with the oldest arrival. Built by the running daemon
 * from its table (sk_queue_summarize, `smtpkit queue summary` through the
 * control socket), or from envelopes one by one (sk_queue_summary_add:
 * the same on a spool without a daemon). */
typedef enum sk_queue_summary_state {
    SK_QUEUE_SUM_ACTIVE = 0, /* to be delivered now */
    SK_QUEUE_SUM_DELIVERING, /* an attempt under way */
    SK_QUEUE_SUM_DEFERRED,   /* waiting for its next attempt */
    SK_QUEUE_SUM_HOLD,       /* in the hold queue */
    SK_QUEUE_SUM__COUNT
} sk_queue_summary_state;
/* "active", "delivering", "deferred", "hold". */
const char *sk_queue_summary_state_name(sk_queue_summary_state s);
/* A message not being delivered counts under its envelope's state. */
sk_queue_summary_state sk_queue_summary_state_of(sk_spool_state s);

typedef struct sk_queue_summary_domain {
    char *domain;      /* lower case */
    size_t messages;   /* with a recipient still to be delivered there */
    size_t recipients; /* still to be delivered there */
    int64_t oldest_s;  /* the oldest such message's arrival, Unix s */
    size_t mark;       /* internal: the last message counted here */
} sk_queue_summary_domain;

typedef struct sk_queue_summary {
    size_t messages;
    size_t by_state[SK_QUEUE_SUM__COUNT];
    size_t recipients; /* still to be delivered */
    int64_t oldest_s;  /* the oldest message's arrival, Unix s; 0: none */
    /* The daemon is still checking the spool's messages after its start:
     * `unchecked` of them are not counted yet. */
    int loading;
    size_t unchecked;
    /* After sk_queue_summary_finish: by messages (most first), then name. */
    sk_queue_summary_domain *domains;
    size_t ndomains;
    /* internal: the domains' hash index (slots of domains + 1, 0 = free) */
    size_t *slots, nslots, cap;
} sk_queue_summary;

/* Count one envelope, in state st (zero *s first). SK_ERR_NOMEM. */
SK_NODISCARD sk_err sk_queue_summary_add(sk_queue_summary *s, const sk_spool_envelope *env,
                                         sk_queue_summary_state st);
/* Sort the domains (after the last add). */
void sk_queue_summary_finish(sk_queue_summary *s);
void sk_queue_summary_free(sk_queue_summary *s);
/* The running queue's summary from its table (loop thread); one pass over
 * the messages in memory, no file read. SK_ERR_NOMEM. */
SK_NODISCARD sk_err sk_queue_summarize(const sk_queue *q, sk_queue_summary *out);
/* As JSON (docs/queue.md "Summary"): now_s for the ages, at most
 * max_domains domains (the rest counted in "domains_left_out"). */
SK_NODISCARD sk_err sk_queue_summary_json(const sk_queue_summary *s, int64_t now_s,
                                          size_t max_domains, sk_buf *out);
/* Still checking the spool's stored messages after the start (bulk
 * operations wait for the end of it: control.h). */
int sk_queue_loading(const sk_queue *q);

/* The operations, by ID or by filter. */
typedef enum sk_queue_op {
    SK_QUEUE_OP_FLUSH = 0, /* a deferred message: active and due now */
    SK_QUEUE_OP_RELEASE,   /* a held or deferred message: active and due now */
    SK_QUEUE_OP_DELETE,    /* removed from the queue */
    /* An active or deferred message into the hold queue (kept until
     * released); one being delivered is left alone. Not a request of the
     * control socket (its verbs are the three above). */
    SK_QUEUE_OP_HOLD,
} sk_queue_op;
const char *sk_queue_op_name(sk_queue_op op); /* "flush", "release", "delete", "hold" */
/* Whether op changes a message in state s (a delete changes any). */
int sk_queue_op_changes(sk_queue_op op, sk_spool_state s);

/* Apply op to one message (loop thread): sk_queue_flush (id ignored),
 * sk_queue_release or sk_queue_delete. */
SK_NODISCARD sk_err sk_queue_apply(sk_queue *q, sk_queue_op op, const char *id);

/* Which messages a bulk operation applies to: those that match every
 * field set (AND). A filter with nothing set matches nothing: "every
 * message" has to be said with all. */
typedef struct sk_queue_filter {
    char id[SK_SPOOL_ID_SIZE]; /* this message; "" = any */
    int all;                   /* 1: every message (with the other fields: every one of those) */
    /* A recipient still pending at this domain (ASCII letters in any
     * case); "" = any. */
    char destination[SK_SMTP_DOMAIN_MAX_OCTETS + 1];
    /* The envelope sender, its domain in any case and its local part
     * exactly; with has_sender, "" is the null sender <>. */
    int has_sender;
    char sender[SK_SMTP_PATH_MAX_OCTETS + 1];
    unsigned states; /* 1u << sk_spool_state for each state that matches; 0 = any */
} sk_queue_filter;
/* 1 when f sets nothing (and so matches nothing). */
int sk_queue_filter_empty(const sk_queue_filter *f);
/* 1 when env matches f. */
int sk_queue_filter_match(const sk_queue_filter *f, const sk_spool_envelope *env);

/* A bulk operation in progress, kept by the caller between calls to
 * sk_queue_apply_filter; zero it before the first. It applies to the
 * messages in the queue at the first call (later arrivals are left
 * alone), oldest first. */
typedef struct sk_queue_bulk {
    size_t matched; /* messages that matched so far */
    size_t changed; /* of those, the ones op changed */
    int done;       /* 1 once every message was looked at */
    /* Where the next call goes on (the queue's arrival numbers). */
    int started;
    uint64_t next_seq, last_seq;
} sk_queue_bulk;
/* Apply op to the messages matching f (loop thread), changing at most max
 * of them in this call (0 = no limit), so that a large operation can be
 * spread over several passes of the event loop: call again until b->done.
 * A message with a delivery in flight is counted as matched; flush and
 * release leave it alone, delete removes it once the delivery reports.
 * SK_ERR_INVAL for an unknown op or an empty filter. */
SK_NODISCARD sk_err sk_queue_apply_filter(sk_queue *q, sk_queue_op op, const sk_queue_filter *f,
                                          size_t max, sk_queue_bulk *b);

#ifdef __cplusplus
}
#endif
#endif
