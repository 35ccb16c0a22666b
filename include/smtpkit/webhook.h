/* Webhooks: tracking events POSTed to HTTP endpoints as JSON, signed as
 * Standard Webhooks 1.0 says (webhook-id, webhook-timestamp,
 * webhook-signature: "v1," + base64 HMAC-SHA256 over "id.timestamp.body"
 * with the secret "whsec_" + base64), from the durable outbox the
 * tracking store fills (outbox.h); at least once, in order per message,
 * retried with exponential backoff up to a maximum age, each endpoint on
 * its own (docs/webhooks.md). */
#ifndef SMTPKIT_WEBHOOK_H
#define SMTPKIT_WEBHOOK_H

#include <stdint.h>

#include "limits.h"
#include "track.h"
#include "util.h"

#ifdef __cplusplus
extern "C" {
#endif

struct event_base;

/* The secret's prefix (Standard Webhooks). */
#define SK_WEBHOOK_SECRET_PREFIX "whsec_"

/* An endpoint: where, the secret, which events (NULL or "": all; else
 * event names separated by commas, "delivered,bounced"). */
typedef struct sk_webhook_endpoint {
    const char *url;
    const char *secret;
    const char *events;
} sk_webhook_endpoint;

/* Check an endpoint: an http or https URL, a "whsec_" secret whose base64
 * gives 24 to 64 octets, known event names. SK_ERR_SYNTAX and why. */
SK_NODISCARD sk_err sk_webhook_endpoint_check(const sk_webhook_endpoint *ep, sk_error *err);
/* "URL SECRET [EVENTS]" (the --webhook option) into ep, pointing into
 * buf (a copy of spec the caller frees); checked as above. */
SK_NODISCARD sk_err sk_webhook_spec_parse(const char *spec, char **buf, sk_webhook_endpoint *ep,
                                          sk_error *err);

/* The webhook-signature value ("v1," base64) of id.timestamp.body under
 * secret ("whsec_..."), into out (at least SK_WEBHOOK_SIGNATURE_OCTETS).
 * SK_ERR_SYNTAX for a bad secret. */
SK_NODISCARD sk_err sk_webhook_sign(const char *secret, const char *id, int64_t timestamp_s,
                                    const char *body, size_t len,
                                    char out[SK_WEBHOOK_SIGNATURE_OCTETS]);
/* The JSON body of one event ({"type": "message.KIND", "timestamp",
 * "data": {...}}), appended to out. */
SK_NODISCARD sk_err sk_webhook_event_json(const sk_track_ev *ev, sk_buf *out);

typedef struct sk_webhooks sk_webhooks;
typedef struct sk_webhooks_opts {
    const char *track_path; /* DATA-DIR/track.db, already created */
    uint64_t max_age_ms;    /* retried this long after the event; 0: default */
    /* Requests in flight per endpoint; 0: SK_WEBHOOK_CONCURRENCY_DEFAULT. */
    unsigned concurrency;
    /* The configuration's endpoints, set at start as sk_webhooks_configure
     * sets them (read during sk_webhooks_new only). */
    const sk_webhook_endpoint *endpoints;
    size_t nendpoints;
    sk_logger log;
} sk_webhooks_opts;
/* Start sending on base's loop (a thread of its own reads and updates the
 * outbox). Endpoints leased by a process that died are due again. The
 * configuration's endpoints are written before it returns (the loop is
 * not running yet); an error in them or in the store fails the start. */
sk_webhooks *sk_webhooks_new(const sk_webhooks_opts *o, struct event_base *base, sk_error *err);
/* Requests in flight are dropped (their events are sent again later).
 * Endpoint changes asked for are made first, without their callbacks. */
void sk_webhooks_free(sk_webhooks *w);

/* The end of an endpoint change, on the loop's thread: e is SK_OK or the
 * error, err->text says why (never a secret). */
typedef void (*sk_webhooks_done_fn)(void *ctx, sk_err e, const sk_error *err);

/* Endpoint changes run on the sender's thread (SQLite stays off the
 * loop), in the order asked, each in one transaction (nothing changes on
 * error); then, on the loop, the sender uses the endpoints the store
 * holds and done (may be NULL) is called once. Each call checks its
 * endpoints first: an error there, or no memory, is returned at once and
 * done is not called.
 * configure: the configuration's endpoints replace those it named before
 * (an endpoint added at run time with the same URL becomes the
 * configuration's; a secret or event list that changed is taken; one no
 * longer named is removed with its events not sent). SIGHUP calls it. */
SK_NODISCARD sk_err sk_webhooks_configure(sk_webhooks *w, const sk_webhook_endpoint *eps, size_t n,
                                          sk_webhooks_done_fn done, void *ctx, sk_error *err);
/* At run time (the HTTP API): add an endpoint, kept in the data directory
 * across restarts (done gets SK_ERR_STATE when its URL is known,
 * SK_ERR_TOO_LONG past SK_WEBHOOKS_MAX), or remove one and its events not
 * sent (SK_ERR_NOT_FOUND). */
SK_NODISCARD sk_err sk_webhooks_add(sk_webhooks *w, const sk_webhook_endpoint *ep,
                                    sk_webhooks_done_fn done, void *ctx, sk_error *err);
SK_NODISCARD sk_err sk_webhooks_remove(sk_webhooks *w, const char *url, sk_webhooks_done_fn done,
                                       void *ctx, sk_error *err);
/* How long an event is retried from now on (0: the default). */
void sk_webhooks_set_max_age(sk_webhooks *w, uint64_t max_age_ms);

/* An endpoint's state (no secret). */
typedef struct sk_webhook_state {
    char *url, *events, *source;
    uint64_t backlog;             /* events not sent yet */
    int64_t oldest_ms;            /* the oldest of them (0: none) */
    uint64_t delivered, failures; /* requests answered 2xx; failed attempts */
    uint64_t dropped;             /* given up after the maximum age */
    int64_t last_ok_ms;           /* 0: never */
    int64_t failing_since_ms;     /* 0: answering */
    char *last_error;             /* NULL: none */
} sk_webhook_state;
/* The endpoints and their state, from the store at track_path (another
 * process may read it: `smtpkit stats`). A store without webhooks gives 0. */
SK_NODISCARD sk_err sk_webhooks_list(const char *track_path, sk_webhook_state **out, size_t *n,
                                     sk_error *err);
void sk_webhook_states_free(sk_webhook_state *s, size_t n);
/* When the next request of each endpoint of s (from sk_webhooks_list)
 * is due, Unix ms, into next_ms[i]: the earliest of its events not being
 * sent (0: none waits). */
SK_NODISCARD sk_err sk_webhooks_next_attempts(const char *track_path, const sk_webhook_state *s,
                                              size_t n, int64_t *next_ms, sk_error *err);
/* For metrics: fn(ctx, url, backlog) per endpoint, from the counts the
 * sender last read (at most SK_WEBHOOK_BACKLOG_MS old). */
void sk_webhooks_backlog(const sk_webhooks *w, void (*fn)(void *ctx, const char *url, uint64_t n),
                         void *ctx);

#ifdef __cplusplus
}
#endif
#endif
