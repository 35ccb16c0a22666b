/* The SMTP transport's private header, shared by its three files and its
 * unit tests:
 *   smtp_route.c  which hosts, in which order: MX routing (RFC 5321
 *                 section 5) with the resolver, or the fixed relay host;
 *                 the destination key; opening a session to a route
 *   smtp_pool.c   sessions kept per destination, their reuse and expiry,
 *                 the worker threads that run blocking client sessions,
 *                 and the transport's life (new, cancel, free)
 *   smtp_txn.c    one delivery attempt on a session: the job's copy of
 *                 the message and envelope, MAIL/RCPT/DATA, per-recipient
 *                 results, and the TLS policy for outbound sessions
 * The queue and the daemon see only deliver.h. */
#ifndef SK_DELIVER_SMTP_INT_H
#define SK_DELIVER_SMTP_INT_H

#include <smtpkit/client.h>
#include <smtpkit/dns.h>
#include <smtpkit/dsn.h>
#include <smtpkit/worker.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <sys/queue.h>

#include "deliver/deliver.h"

/* Buckets of the route cache's table (SK_SMTP_ROUTE_CACHE_MAX entries). */
#define SMTP_RCACHE_BUCKETS 1024

/* How long freeing the transport waits for the workers in deliveries. */
#define SK_SMTP_JOIN_WAIT_MS 5000

/* ---- pure parts (smtp_route.c, smtp_txn.c), exposed for unit tests ---- */

/* The destination key of a route: its MX host names, lower-cased, sorted
 * and joined by ','; the domain itself when the route has no hosts
 * (failures) or is an implicit MX. Two domains hosted by the same set of
 * MX hosts share it, so connections (and the queue's limits) are shared. */
SK_NODISCARD sk_err sk_smtp_destination_key(const sk_route *route, sk_buf *out);

/* The reply every recipient gets when the route itself is a failure (the
 * resolver's enhanced status when it set one of the right class):
 * null MX 550 5.1.10 (RFC 7505 3), NXDOMAIN 550 5.1.2, no address 550
 * 5.4.4, DNS failure 451 4.4.3. Returns 0 (and leaves *out) for an OK
 * route. */
int sk_smtp_route_failure(const sk_route *route, sk_reply *out);

/* What trying the hosts of a route gave, when no host took a session. */
typedef struct sk_smtp_tally {
    unsigned hosts;     /* hosts tried */
    unsigned hosts_5xx; /* hosts that refused with 5xx to greeting/EHLO */
    unsigned hosts_tls; /* hosts that failed a TLS requirement */
    sk_reply last_5xx;  /* the last such 5xx */
    /* "mx1.example.net[192.0.2.1]:25: connect: refused" */
    char last_error[SK_REPLY_TEXT_MAX_OCTETS];
    char last_host[320]; /* "mx1.example.net[192.0.2.1]:25" */
} sk_smtp_tally;

/* The reply for "no host took the session". Permanent only when every
 * host tried refused with 5xx (RFC 5321 3.1, 4.2: 554 greeting; a single
 * unreachable host keeps it transient): the last 5xx. All hosts failing
 * the TLS requirement: 451 4.7.10. Otherwise 451 4.4.1 with the last
 * error. */
sk_reply sk_smtp_tally_reply(const sk_smtp_tally *t, const char *domain);

/* 1 when domain is in the TLS-required list (sk_smtp_transport_opts). */
int sk_smtp_tls_required(const char *const *list, size_t n, const char *domain);

/* ---- the transport's state ---- */

typedef struct smtp smtp;
typedef struct smtp_rcache smtp_rcache; /* a cached route (smtp_route.c) */

/* One delivery job, from the queue's call to its done callback. */
typedef struct smtp_job {
    sk_job work;           /* in the workers (smtp_pool.c) */
    struct smtp_job *next; /* in the lookups in flight (smtp_route.c) */
    uint64_t generation;   /* results of an older generation were cancelled */
    smtp *owner;           /* NULL: orphaned lookup (the transport is gone) */
    /* Copies: the queue's sk_delivery may be gone once a job is cancelled. */
    char *queue_id;
    char *domain;
    char *sender;
    char **rcpts;
    size_t nrcpts;
    char *body_path;
    uint64_t body_octets; /* the body is this much of the file (docs/queue.md) */
    char *received;       /* our Received: header, built on the loop thread */
    unsigned max_per_conn;
    bool tls_required;
    sk_send_opts send_opts; /* RFC 6710 MT-PRIORITY, RFC 3461 RET and ENVID passed on */
    /* RFC 3461 5.2.1: per recipient the NOTIFY and ORCPT passed on. */
    sk_rcpt_spec *specs;
    char (*notify)[SK_DSN_NOTIFY_TEXT_SIZE];
    char **orcpt;
    char envid[SK_DSN_ENVID_MAX_OCTETS + 1];
    int next_hop_dsn; /* the host announced DSN and got the parameters */
    sk_route *route;
    char *key; /* destination key (sk_smtp_destination_key) */
    /* Non-NULL: route and key are this cache entry's, borrowed (one of its
     * references), not the job's own. */
    smtp_rcache *cached;
    /* Where among hosts of equal preference this job starts (RFC 5321
     * 5.1: spread the load), so that a cached route does not send every
     * message to the same one. */
    unsigned spread;
    sk_delivery_done_fn done;
    void *ctx;
    sk_delivery_rcpt_result *results;
    char remote_host[320];
    char tls[96]; /* "" = plain */
    int tls_verified;
} smtp_job;

/* An open session to one host of a destination, idle in the pool or in
 * use by one worker. */
typedef struct smtp_conn {
    struct smtp_conn *next;
    char *key;
    sk_client *c;
    unsigned messages;
    uint64_t idle_until_ms;
    char remote_host[320];
    char tls[96];
    int tls_verified;
    atomic_size_t *open; /* the transport's count of open connections */
} smtp_conn;

typedef struct smtp_keyreq smtp_keyreq; /* a route_key request (smtp_route.c) */

struct smtp {
    sk_transport t; /* first: the queue sees only this */
    sk_resolver *resolver;
    bool own_resolver;
    char *helo_name;
    char *ca_file;
    char *relay_host; /* NULL: MX routing */
    char **tls_required;
    size_t ntls_required;
    unsigned short port;
    unsigned idle_ms, max_per_conn, connect_timeout_ms, greeting_timeout_ms, command_timeout_ms;
    sk_logger log;

    struct event_base *base;
    /* Loop thread only: lookups in flight (for cancel and free). */
    smtp_job *lookups;
    smtp_keyreq *keyreqs;
    uint64_t generation; /* results of an older generation were cancelled */
    bool stopping;
    /* Loop thread only: routes kept per domain (SK_SMTP_ROUTE_CACHE_MS),
     * by domain and in the order cached, and the jobs' spread counter. */
    smtp_rcache *rcache[SMTP_RCACHE_BUCKETS];
    TAILQ_HEAD(smtp_rcache_list, smtp_rcache) rcache_order;
    size_t nrcache;
    unsigned spread;

    /* The workers run jobs (blocking client sessions) and hand them back
     * through wake; expiry fires when the earliest idle session is due,
     * and quit_job then closes the expired ones on a worker. */
    sk_workers *workers;
    struct event *wake, *expiry;
    sk_job quit_job;
    bool quit_queued; /* loop thread */

    pthread_mutex_t mu; /* guards the sessions below */
    smtp_conn *idle;    /* newest first */
    size_t nidle, max_idle;
    smtp_conn *quitting; /* expired, for quit_job */
    /* Connections open now, in use or idle (metrics: sk_transport.connections). */
    atomic_size_t open_conns;
};

/* ---- smtp_route.c ---- */

/* Set up routing for sm (sm->base set): the transport's deliver and
 * route_key, and the relay host or the resolver (o's, or our own); false
 * on error (err says why). */
bool smtp_route_init(smtp *sm, const sk_smtp_transport_opts *o, sk_error *err);
/* Routing's part of freeing the transport, on the loop thread: our own
 * resolver is freed and the lookups in flight with it; lookups in a shared
 * resolver are orphaned (they clean up when it calls back). */
void smtp_route_free(smtp *sm);
/* Let go of the cached route a job borrowed (loop thread). */
void smtp_route_unref(smtp_rcache *c);
/* Empty the route cache (loop thread; jobs still holding an entry keep it
 * until they are freed). */
void smtp_route_cache_clear(smtp *sm);
/* Open a session with the first host of the job's route that takes one
 * (RFC 5321 5.1), in a worker thread. NULL when none did; tally says why. */
smtp_conn *smtp_route_connect(smtp *sm, const smtp_job *j, sk_smtp_tally *tally);

/* ---- smtp_pool.c ---- */

/* Hand a routed job to the workers (loop thread). */
void smtp_pool_submit(smtp *sm, smtp_job *j);
/* A session for key on the connected client c, which it then owns; NULL
 * when out of memory (c is still the caller's). */
smtp_conn *smtp_conn_new(sk_client *c, const char *key, atomic_size_t *open);
/* Close a session, with QUIT first when quit (RFC 5321 4.1.1.10). */
void smtp_conn_free(smtp_conn *k, bool quit);

/* ---- smtp_txn.c ---- */

/* The transport's copy of a job (Received: built, DSN parameters ready);
 * NULL when out of memory. */
smtp_job *smtp_job_new(smtp *sm, const sk_delivery *job, sk_delivery_done_fn done, void *ctx);
void smtp_job_free(smtp_job *j);
/* Give every recipient of j the same reply. */
void smtp_job_fail(smtp_job *j, const sk_reply *reply);
/* Hand j's results to the queue (loop thread). */
void smtp_job_finish(const smtp_job *j);
/* Answer a job that has no smtp_job (or lost it) at once with rep. */
void smtp_fail_now(const sk_delivery *job, sk_delivery_done_fn done, void *ctx, sk_reply rep);
/* The message as sent: our Received: then the body. On error a reply
 * text is in err. */
sk_err smtp_txn_message(const smtp_job *j, sk_buf *out, sk_error *err);
/* The transaction on an open session; false when the session is gone.
 * *retry: it was a reused session the host had closed before taking
 * anything, so a new session is worth it. */
bool smtp_txn_send(smtp *sm, smtp_conn *k, smtp_job *j, const sk_buf *msg, bool *retry);

/* TLS policy for outbound sessions. */
/* The mode of the first attempt with a host: required or opportunistic. */
sk_tls_mode smtp_tls_mode(const smtp_job *j);
/* After a failed attempt in mode *mode: true when the same host is to be
 * tried again in the mode it sets (opportunistic TLS falls back to plain
 * text). */
bool smtp_tls_fallback(sk_tls_mode *mode, const sk_error *err);
/* true when the failure broke j's TLS requirement (the host is then counted
 * in sk_smtp_tally.hosts_tls and not tried on its other addresses). */
bool smtp_tls_failed(const smtp_job *j, const sk_error *err);
/* true when a pooled session k gives the TLS job j needs. */
bool smtp_tls_fits(const smtp_job *j, const smtp_conn *k);
/* Record the TLS of k's session (version, cipher, verified). */
void smtp_tls_record(smtp_conn *k);

#endif
