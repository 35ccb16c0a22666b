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
    sk_logger log;
} sk_webhooks_opts;
/* Start sending on base's loop (a thread of its own reads and updates the
 * outbox). Endpoints leased by a process that died are due again. */
sk_webhooks *sk_webhooks_new(const sk_webhooks_opts *o, struct event_base *base, sk_error *err);
/* Requests in flight are dropped (their events are sent again later). */
void sk_webhooks_free(sk_webhooks *w);

/* The endpoints of the configuration replace those from it before (an
 * endpoint of the configuration that was added at run time becomes the
 * configuration's). Checked first; nothing changes on error. */
SK_NODISCARD sk_err sk_webhooks_configure(sk_webhooks *w, const sk_webhook_endpoint *eps, size_t n,
                                          sk_error *err);
/* At run time (the HTTP API): add an endpoint, kept in the data directory
 * across restarts (SK_ERR_STATE when its URL is known), or remove one and
 * its events not sent (SK_ERR_NOT_FOUND). */
SK_NODISCARD sk_err sk_webhooks_add(sk_webhooks *w, const sk_webhook_endpoint *ep, sk_error *err);
SK_NODISCARD sk_err sk_webhooks_remove(sk_webhooks *w, const char *url, sk_error *err);

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
