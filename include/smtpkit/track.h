/* Delivery tracking: what happened to each message and recipient, kept in
 * SQLite (DATA-DIR/track.db) for `smtpkit track` and `smtpkit stats`
 * (docs/tracking.md). */
#ifndef SMTPKIT_TRACK_H
#define SMTPKIT_TRACK_H

#include <stdint.h>

#include "util.h"

#ifdef __cplusplus
extern "C" {
#endif

struct event_base;

/* The tracking store's file name under the data directory. */
#define SK_TRACK_DB_NAME "track.db"

/* What happened. The names ("received", ...) are the JSON and database
 * values; their meanings are in docs/tracking.md. */
typedef enum sk_track_kind {
    SK_TRACK_RECEIVED = 0, /* accepted and on disk (the 250 after DATA) */
    SK_TRACK_QUEUED,       /* handed to the queue for a recipient */
    SK_TRACK_DEFERRED,     /* a delivery attempt failed temporarily */
    SK_TRACK_DELIVERED,    /* the next hop (or the mailbox) took it */
    SK_TRACK_BOUNCED,      /* failed permanently; a DSN goes to the sender */
    SK_TRACK_EXPIRED,      /* still failing at the end of the queue lifetime */
    SK_TRACK_SUPPRESSED,   /* not attempted: the recipient is suppressed */
    SK_TRACK_COMPLAINED,   /* the recipient reported it as spam (ARF) */
    SK_TRACK__COUNT
} sk_track_kind;
const char *sk_track_kind_name(sk_track_kind k);
int sk_track_kind_parse(const char *name); /* -1 when unknown */

/* One event. Strings may be NULL (absent); each is at most
 * SK_TRACK_FIELD_MAX_OCTETS. At least one of queue_id and message_id is
 * needed. message_id is stored without its angle brackets. */
typedef struct sk_track_ev {
    int64_t time_ms; /* Unix time in ms; 0 when recording: now */
    sk_track_kind kind;
    const char *queue_id;
    const char *message_id;
    const char *recipient;   /* "user@domain", no angle brackets */
    unsigned attempt;        /* delivery attempt (1, 2, ...); 0: not one */
    const char *remote_host; /* "mx.example.net[192.0.2.1]:25" or a Maildir */
    const char *reply;       /* the remote reply, "550 5.1.1 no such user" */
    const char *tls;         /* "TLSv1.3 TLS_AES_256_GCM_SHA384"; NULL: none */
    const char *cls;         /* bounce class (sk_class_name): "bad-mailbox" */
    /* The queue ID of the DSN that reported this outcome to the sender
     * (bounced, expired, delivered with NOTIFY=SUCCESS); set by
     * sk_track_dsn_sent once the DSN is spooled, NULL when none. */
    const char *dsn_id;
    /* received, from outside: the DKIM, SPF and DMARC results on one
     * line ("dkim=pass header.d=example.org header.s=s1; spf=pass
     * smtp.mailfrom=a@example.org; dmarc=pass header.from=example.org"),
     * as in the message's Authentication-Results; NULL: not checked. */
    const char *auth;
    /* The message's tags (a JSON array of strings) and metadata (a JSON
     * object of strings), as the HTTP API took them; given with its
     * received event, kept once per queue ID (every event of the message
     * is read back with them, and webhooks carry them). NULL: none. */
    const char *tags;
    const char *metadata;
} sk_track_ev;

/* An open store: one connection. Not thread-safe; use it from one thread
 * (the daemon's loop thread). */
typedef struct sk_track sk_track;

/* Open (readonly = 0: create if missing) the store at path, in WAL mode so
 * readers never wait for the writer. A missing file opened read-only is
 * SK_ERR_NOT_FOUND; a schema newer than this library is SK_ERR_CONFIG. */
sk_track *sk_track_open(const char *path, int readonly, sk_error *err);
/* Flushes pending events (sk_track_flush), then closes. NULL is fine. */
void sk_track_free(sk_track *tr);

typedef struct sk_track_opts {
    unsigned batch_events;    /* flush when this many are pending; 0: default */
    unsigned batch_delay_ms;  /* ...or this long after the first; 0: default */
    unsigned busy_timeout_ms; /* wait for another writer; 0: default */
    sk_logger log;
    /* Wall clock in Unix ms, for tests; NULL: the system clock. */
    int64_t (*clock_ms)(void *ctx);
    void *clock_ctx;
    /* Told of every event sk_track_event accepts, on the caller's thread
     * (metrics count them); NULL: nobody. */
    void (*on_event)(void *ctx, const sk_track_ev *ev);
    void *event_ctx;
} sk_track_opts;
/* Change the options. With base, a timer on that loop flushes pending
 * events batch_delay_ms after the first; without one, they are flushed
 * by the next sk_track_event after the delay, by sk_track_flush, or when
 * batch_events are pending. */
SK_NODISCARD sk_err sk_track_set_opts(sk_track *tr, const sk_track_opts *opts,
                                      struct event_base *base, sk_error *err);

/* Record an event. Cheap: it is copied to memory and written with others in
 * one transaction later (see sk_track_set_opts). Events not yet flushed are
 * lost if the process dies: tracking data is not the message (the spool
 * is), and losing the last moments of it in a crash is accepted. */
SK_NODISCARD sk_err sk_track_event(sk_track *tr, const sk_track_ev *ev, sk_error *err);
/* Record that the DSN spooled as dsn_id reports the outcome of recipient
 * of message queue_id: its bounced, expired or delivered event (the
 * latest such event without a DSN) gets dsn_id. Batched and written in
 * order with the events, so the event may still be pending. */
SK_NODISCARD sk_err sk_track_dsn_sent(sk_track *tr, const char *queue_id, const char *recipient,
                                      const char *dsn_id, sk_error *err);
/* Write pending events now, in one transaction. On failure (another writer
 * held the lock past the busy timeout, disk full) they stay pending. */
SK_NODISCARD sk_err sk_track_flush(sk_track *tr, sk_error *err);
/* Hand the pending events to the store's writer thread without waiting
 * for them to be written; *ticket names them for sk_track_wait. Without a
 * writer (no event base given) this is sk_track_flush and *ticket is one
 * already reached. On an error (the flush failed; events the writer could
 * not take, its queue being full, stay pending) *ticket is still set: it
 * names what was handed over. */
SK_NODISCARD sk_err sk_track_ticket(sk_track *tr, uint64_t *ticket, sk_error *err);
/* The one call any thread may make on a store used by the loop thread:
 * wait until the writer has written the events of ticket (SK_OK), or
 * reports a failure of a batch after the call began, or lost them (an
 * error: the writer's), or timeout_ms pass (0: SK_TRACK_WAIT_MAX_MS;
 * SK_ERR_TIMEOUT). The store must outlive the call. */
SK_NODISCARD sk_err sk_track_wait(sk_track *tr, uint64_t ticket, unsigned timeout_ms,
                                  sk_error *err);
size_t sk_track_pending(const sk_track *tr);
/* Delete events older than before_ms, except those the webhooks' outbox
 * still has to send (outbox.h): they go with a later prune, once their
 * rows are sent or given up. */
SK_NODISCARD sk_err sk_track_prune(sk_track *tr, int64_t before_ms, sk_error *err);
/* The store's clock (sk_track_opts.clock_ms or the system's), Unix ms. */
int64_t sk_track_now_ms(const sk_track *tr);

/* The events of one message. */
typedef struct sk_track_result {
    char *id;         /* queue ID; NULL if only events without one matched */
    char *message_id; /* NULL when none was recorded */
    sk_track_ev *events;
    size_t nevents;
    size_t other_ids; /* further queue IDs with the same Message-ID */
} sk_track_result;
/* Find a message by queue ID or by Message-ID (with or without <>); a
 * queue ID wins. A Message-ID seen under several queue IDs picks the one
 * with the latest event (other_ids counts the rest). Events are ordered by
 * time, then by the order they were recorded. SK_ERR_NOT_FOUND if no event
 * matches. */
SK_NODISCARD sk_err sk_track_query(sk_track *tr, const char *id, sk_track_result **out,
                                   sk_error *err);
void sk_track_result_free(sk_track_result *r);

/* Counts of events in a window, by event and by recipient domain. */
typedef struct sk_track_domain_count {
    char *domain; /* NULL in other_domains and no_recipient */
    uint64_t total;
    uint64_t by_kind[SK_TRACK__COUNT];
} sk_track_domain_count;
typedef struct sk_track_window {
    int64_t since_ms, until_ms; /* (since, until] */
    uint64_t total;
    uint64_t by_kind[SK_TRACK__COUNT];
    sk_track_domain_count *domains; /* most events first */
    size_t ndomains;
    size_t domains_omitted; /* beyond SK_TRACK_STATS_DOMAINS_MAX */
    /* The events of the omitted domains, and those without a recipient
     * domain (received; complaints without a recipient): with the
     * domains, they add up to total. */
    sk_track_domain_count other_domains, no_recipient;
} sk_track_window;
typedef struct sk_track_stats {
    int64_t now_ms;
    sk_track_window hour, day;
} sk_track_stats;
/* Summarise the last hour and day before now_ms (0: the store's clock). */
SK_NODISCARD sk_err sk_track_stats_query(sk_track *tr, int64_t now_ms, sk_track_stats **out,
                                         sk_error *err);
/* The same, counting only the events of messages tagged tag (NULL: all). */
SK_NODISCARD sk_err sk_track_stats_query_tag(sk_track *tr, int64_t now_ms, const char *tag,
                                             sk_track_stats **out, sk_error *err);

/* Events of every message, oldest recorded first, a page at a time. A
 * page goes on after the event numbered after_id (0: from the first):
 * events recorded later are numbered higher, so a cursor is stable while
 * events are added. Fields set filter (AND). */
typedef struct sk_track_filter {
    int kind;              /* an sk_track_kind; -1: any */
    const char *recipient; /* this recipient (ASCII case ignored); NULL: any */
    const char *tag;       /* events of messages with this tag; NULL: any */
    int64_t since_ms;      /* time_ms >= since_ms; 0: no bound */
    int64_t until_ms;      /* time_ms < until_ms; 0: no bound */
    int64_t after_id;      /* the cursor */
    size_t limit;          /* events on the page (1 to SK_TRACK_PAGE_MAX) */
} sk_track_filter;
typedef struct sk_track_page {
    sk_track_ev *events; /* with tags and metadata */
    int64_t *ids;        /* each event's number */
    size_t n;
    int64_t next_after; /* the cursor of the next page; 0: this was the last */
} sk_track_page;
SK_NODISCARD sk_err sk_track_events_list(sk_track *tr, const sk_track_filter *f, sk_track_page *out,
                                         sk_error *err);
void sk_track_page_free(sk_track_page *p);
void sk_track_stats_free(sk_track_stats *s);

#ifdef __cplusplus
}
#endif
#endif
