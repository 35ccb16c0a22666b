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

/* store.c: on the store's own connection (opened here). */
sqlite3 *wh_store_open(const char *path, sk_error *err);
void wh_store_pass(sqlite3 *db, wh_pass *p);
/* Leases of a process that died are free again. */
SK_NODISCARD sk_err wh_store_unlease(sqlite3 *db, sk_error *err);
void wh_item_free(wh_item *it);

#endif
