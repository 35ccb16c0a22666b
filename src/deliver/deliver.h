/* The deliver module's internal API, for the queue and the daemon: the
 * transport interface the queue runner delivers through, and the two
 * transports, Maildir and SMTP (by MX or through a relay host). Private to
 * the library; what only the module's own files share is in deliver_int.h
 * and smtp_int.h. */
#ifndef SK_DELIVER_H
#define SK_DELIVER_H

#include <smtpkit/reply.h>
#include <smtpkit/spool.h>

struct event_base;
struct sk_resolver;

typedef enum sk_delivery_status {
    SK_DELIVERY_OK = 0,    /* delivered (2xx) */
    SK_DELIVERY_TRANSIENT, /* try again later (4xx, connection trouble) */
    SK_DELIVERY_PERMANENT, /* give up (5xx); a DSN may be due */
} sk_delivery_status;

/* One recipient of a job. */
typedef struct sk_delivery_rcpt {
    const char *addr;  /* forward path without <> */
    const char *orcpt; /* RFC 3461 ORCPT, NULL when none */
    unsigned notify;   /* SK_DSN_NOTIFY_* */
    size_t index;      /* position in env->rcpts (stable; used in Maildir names) */
} sk_delivery_rcpt;

/* A delivery job: one message to recipients that share a destination (all
 * local recipients, or one remote domain). Valid until done is called. */
typedef struct sk_delivery {
    const char *queue_id;
    const sk_spool_envelope *env; /* sender, session details, MAIL parameters */
    const char *body_path;        /* the message file; its first env->body_octets octets are the
                                   * body (CRLF line ends, as received), the envelope follows */
    const char *domain;           /* destination domain, lower case */
    const sk_delivery_rcpt *rcpts;
    size_t nrcpts;
    /* 1 when an earlier attempt may have delivered without the spool
     * recording it (the message was recovered after a crash): the
     * transport must check before delivering again, if it can. */
    int maybe_delivered;
    /* Messages one connection to this destination may carry before it is
     * closed (connection reuse); 0 = the transport's own default. */
    unsigned max_per_conn;
    /* The envelope sender to use instead of env->sender (VERP), or NULL. */
    const char *sender;
} sk_delivery;

typedef struct sk_delivery_rcpt_result {
    sk_delivery_status status;
    sk_reply reply; /* what the peer (or we) answered; shown in queue/track */
} sk_delivery_rcpt_result;

/* Results, one per job recipient and in the same order (a result with
 * nrcpts 0, e.g. out of memory, counts as a transient failure for all).
 * Valid during the done callback only. */
typedef struct sk_delivery_result {
    const sk_delivery_rcpt_result *rcpts;
    size_t nrcpts;
    const char *remote_host; /* for tracking; NULL when local */
    /* Maildir transport: the file each recipient's copy was written to,
     * in the order of rcpts (NULL for one not delivered); NULL for other
     * transports. For tracking (docs/tracking.md). */
    const char *const *files;
    const char *tls;         /* "TLSv1.3 TLS_AES_256_GCM_SHA384" when encrypted, else NULL */
    int tls_verified;        /* 1: the peer's certificate verified (chain and name) */
    const char *destination; /* SMTP transport: the destination key (MX host set or relay host);
                                NULL for Maildir */
    /* SMTP transport: the next hop announced DSN and was given the
     * recipients' NOTIFY/ORCPT and the message's RET/ENVID, so any later
     * notification is its to send (RFC 3461 5.2.1). 0: it did not, and a
     * success is reported by us as "relayed" (RFC 3461 5.2.2). */
    int next_hop_dsn;
} sk_delivery_result;

typedef void (*sk_delivery_done_fn)(void *ctx, const sk_delivery_result *res);

/* Answer of route_key: the destination key of a domain (for MX delivery
 * the sorted MX host set, e.g. "mx1.example.net,mx2.example.net"), or NULL
 * when it could not be found (the queue then uses the domain). Called on
 * the loop thread, possibly before route_key returns; key is only valid
 * during the call. */
typedef void (*sk_route_key_fn)(void *ctx, const char *domain, const char *key);

/* A transport. deliver() must not block the loop for network I/O (run
 * blocking work in a worker thread) and calls done exactly once, on the
 * loop thread of the queue's event_base; it may call done before it
 * returns. cancel() stops jobs in flight: done is not called for them
 * afterwards (used at shutdown, before the queue is freed); it also drops
 * pending route_key calls. free releases the transport. cancel and free
 * may be NULL. */
typedef struct sk_transport sk_transport;
struct sk_transport {
    const char *name; /* "maildir", "smtp" */
    void (*deliver)(sk_transport *t, const sk_delivery *job, sk_delivery_done_fn done, void *ctx);
    void (*cancel)(sk_transport *t);
    void (*free)(sk_transport *t);
    /* Optional (NULL: the domain is its own destination): find the key
     * that groups domains served by the same provider, so the queue shapes
     * them as one (docs/queue.md "Scheduling"). */
    void (*route_key)(sk_transport *t, const char *domain, sk_route_key_fn cb, void *ctx);
    /* Optional (NULL: none): connections open now, in use or idle, for
     * metrics; any thread. */
    size_t (*connections)(sk_transport *t);
};

static inline void sk_transport_free(sk_transport *t)
{
    if (t && t->free) t->free(t);
}

/* Maildir delivery to mailboxes_dir/DOMAIN/LOCALPART/{tmp,new,cur}, with
 * Return-Path: and Received: added and CRLF turned into LF
 * (docs/queue.md). hostname is ours, for Received: and file names.
 * Synchronous until started: done is called before deliver returns. */
sk_transport *sk_maildir_transport_new(const char *mailboxes_dir, const char *hostname,
                                       const sk_logger *log, sk_error *err);
/* Deliver in a worker thread from now on, so that file writes and fsyncs
 * do not stall the loop; done is then called on evb's loop thread. Free
 * the transport before evb. */
sk_err sk_maildir_transport_start(sk_transport *base, struct event_base *evb, sk_error *err);

/* The SMTP transport (smtp_route.c, smtp_pool.c, smtp_txn.c): mail for
 * remote domains straight to their MX hosts (RFC 5321 section 5), or all
 * of it to one relay host, with connection reuse per destination
 * (docs/delivery.md). */
#define SK_SMTP_MX_PORT_DEFAULT 25 /* RFC 5321 4.5.4 */
/* Delivery threads: as many as the queue starts jobs at once (its
 * max_in_flight default is this), so a job never waits in the transport
 * for a thread. With fewer, the sessions of one slow destination (up to
 * its SK_QUEUE_DEST_CONNS_DEFAULT) could hold every thread while the jobs
 * of healthy destinations wait behind them. */
#define SK_SMTP_WORKERS_DEFAULT       32
#define SK_SMTP_MSGS_PER_CONN_DEFAULT 100
/* "Idles briefly": long enough for the queue to hand over the next
 * message to the same destination, short of a receiver's own timeout. */
#define SK_SMTP_IDLE_MS_DEFAULT 5000
/* A relay host takes all our mail, so a session to it is kept longer. */
#define SK_SMTP_RELAY_IDLE_MS_DEFAULT (30 * 1000)

typedef struct sk_smtp_transport_opts {
    /* The resolver to use (lives on the same event_base; not freed here;
     * free the transport first). NULL: the transport makes its own from
     * dns_server ("IP:PORT"; NULL = the system's). */
    struct sk_resolver *resolver;
    const char *dns_server;
    unsigned short port;   /* TCP port of MX hosts; 0 = 25 */
    const char *helo_name; /* our name for EHLO and Received: */
    unsigned workers;      /* delivery threads; 0 = SK_SMTP_WORKERS_DEFAULT */
    /* Messages one connection carries before QUIT, unless the job says
     * (sk_delivery.max_per_conn); 0 = SK_SMTP_MSGS_PER_CONN_DEFAULT. */
    unsigned max_messages_per_connection;
    /* How long a connection waits for another message to its destination
     * before QUIT; 0 = SK_SMTP_IDLE_MS_DEFAULT. */
    unsigned idle_ms;
    /* Client timeouts; 0 = the RFC 5321 4.5.3.2 defaults. */
    unsigned connect_timeout_ms;
    unsigned greeting_timeout_ms;
    unsigned command_timeout_ms;
    /* Domains whose MX hosts must give verified TLS: "example.com" matches
     * that domain, ".example.com" its subdomains. Case-insensitive. */
    const char *const *tls_required;
    size_t ntls_required;
    const char *ca_file; /* trust anchors for MX certificates; NULL = system store */
    /* A relay host (name or numeric address) that takes every job instead
     * of the domain's MX hosts: a fixed route, no MX lookup, port is its
     * port. The name is resolved (A and AAAA, /etc/hosts first) by the
     * system resolver in the worker thread that connects. The transport
     * is then named "smtp", logs as "smtp", and has no route_key: domains
     * stay their own destinations in the queue. NULL: MX routing (the
     * transport is named "mx"). */
    const char *relay_host;
    sk_logger log;
} sk_smtp_transport_opts;

/* Jobs complete on base's loop thread. Strings are copied. NULL on error
 * (err says why). */
sk_transport *sk_smtp_transport_new(const sk_smtp_transport_opts *o, struct event_base *base,
                                    sk_error *err);

#endif
