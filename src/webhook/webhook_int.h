/* Private to the webhook module: the sender (send.c) and the outbox's
 * reads and updates on its thread (store.c). */
#ifndef SK_WEBHOOK_INT_H
#define SK_WEBHOOK_INT_H

#include <smtpkit/webhook.h>
#include <smtpkit/worker.h>

#include <curl/curl.h>
#include <sqlite3.h>

/* One outbox row being sent, then its result. */
typedef struct wh_item {
    struct wh_item *next;
    struct sk_webhooks *w;
    int64_t row;        /* webhook_outbox.id */
    int64_t created_ms; /* the row's (the event's) time */
    unsigned attempts;  /* made before this one */
    char *url;          /* the endpoint's, a copy */
    char id[64];        /* webhook-id */
    char *body;
    size_t len;
    bool orphan; /* its event is gone: remove the row, count it dropped */
    /* The result: answered 2xx, or why not. */
    bool ok;
    char err[SK_WEBHOOK_ERROR_OCTETS];
    CURL *h;
    struct curl_slist *hdrs;
} wh_item;

/* What one pass on the store's thread does: apply results, then lease up
 * to want[i] due rows of urls[i] (in order per message). */
typedef struct wh_pass {
    wh_item *results;
    char *urls[SK_WEBHOOKS_MAX];
    unsigned want[SK_WEBHOOKS_MAX];
    size_t n;
    uint64_t max_age_ms;
    bool count_backlog;
    /* Out: the rows leased, and with count_backlog the backlog per url. */
    wh_item *fetched;
    uint64_t backlog[SK_WEBHOOKS_MAX];
    sk_err err;
    char err_text[SK_WEBHOOK_ERROR_OCTETS];
} wh_pass;

/* An endpoint as the sender knows it: copies of the URL and secret. */
typedef struct wh_ep {
    char *url, *secret;
} wh_ep;

/* store.c: on the store's own connection (opened here). */
sqlite3 *wh_store_open(const char *path, sk_error *err);
void wh_store_pass(sqlite3 *db, wh_pass *p);
/* Leases of a process that died are free again. */
SK_NODISCARD sk_err wh_store_unlease(sqlite3 *db, sk_error *err);
void wh_item_free(wh_item *it);
/* Endpoint changes, each one transaction (nothing changes on error): the
 * configuration's endpoints replace those it named before (an endpoint
 * added at run time with the same URL becomes the configuration's); one
 * added at run time (SK_ERR_STATE when its URL is known, SK_ERR_TOO_LONG
 * past SK_WEBHOOKS_MAX); one removed with its events not sent
 * (SK_ERR_NOT_FOUND). */
SK_NODISCARD sk_err wh_store_configure(sqlite3 *db, const sk_webhook_endpoint *eps, size_t n,
                                       sk_error *err);
SK_NODISCARD sk_err wh_store_add(sqlite3 *db, const sk_webhook_endpoint *ep, sk_error *err);
SK_NODISCARD sk_err wh_store_remove(sqlite3 *db, const char *url, sk_error *err);
/* The endpoints in the store, in the order they were created. */
SK_NODISCARD sk_err wh_store_endpoints(sqlite3 *db, wh_ep eps[SK_WEBHOOKS_MAX], size_t *n,
                                       sk_error *err);
/* Frees the copies (the secrets wiped first). */
void wh_eps_clear(wh_ep *eps, size_t n);

#endif
