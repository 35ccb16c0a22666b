/* Inside the HTTP API's listener, shared by its files: the listener and
 * its connections with their limits (server.c), the answers and what a
 * handler reads of its request (answer.c), API-key authentication and its
 * throttle per client address (keyauth.c), and the router with the
 * Idempotency-Key step before a route (router.c). The routes see only
 * http_int.h. */
#ifndef SK_HTTP_LISTENER_INT_H
#define SK_HTTP_LISTENER_INT_H

#include "http_int.h"

#include <event2/keyvalq_struct.h>
#include <openssl/ssl.h>
#include <stdint.h>

struct evbuffer;
struct evhttp_request;

/* A failed-key count for one client address (SMTP AUTH's throttle). */
typedef struct auth_fail {
    char peer[64];
    unsigned count;
    uint64_t first_ms;
} auth_fail;

struct sk_http_req {
    struct sk_http_req *prev, *next; /* in h->pending while a handler has it */
    sk_http *h;                      /* NULL once the listener is gone */
    struct evhttp_request *ev;
    const sk_http_route *route;
    char params[SK_HTTP_PARAMS_MAX][SK_HTTP_PARAM_OCTETS];
    struct evkeyvalq query;
    bool has_query;
    char peer[64];
    const sk_apikey *key;
    sk_apikey key_copy; /* the key's fields, kept for a later answer */
    char idem_key[SK_HTTP_IDEMPOTENCY_KEY_MAX_OCTETS + 1];
    /* Set from the Idempotency-Key check until the request is answered:
     * no other request with the same key pair runs meanwhile (409). */
    bool idem_claim;
    /* The idempotency store's work on a worker: the lookup before the
     * route runs, then keeping the answer before it is sent. */
    sk_http_work idem_work;
    sk_err idem_err;
    int idem_status;
    char *idem_body;
    /* The answer being kept (idem_work), sent from its completion. */
    int ans_status;
    char ans_ctype[64];
    char *ans_text;
    size_t ans_len;
    unsigned ans_retry;
    /* The routes' own state for answers given later (api.c). */
    void *state;
    void (*state_free)(void *state);
    struct hconn *conn; /* its connection's record; NULL once it closed */
};

/* A connection, as the listener watches it beside evhttp: the octets and
 * the time of the request being read (evhttp's limits answer with HTML
 * and its timeout is an idle one), and the cap on connections. */
typedef enum hconn_state {
    HC_NEW = 0, /* accepted; evhttp's connection not known yet */
    HC_IDLE,    /* between requests */
    HC_READING, /* a request is arriving: octets counted, deadline armed */
    HC_BUSY,    /* a request is with its handler */
    HC_REFUSED, /* answered by us (413, 408, 503) and closing */
} hconn_state;

typedef struct hconn {
    struct hconn *prev, *next;
    sk_http *h;
    struct bufferevent *bev;
    struct evhttp_connection *evc;
    struct event *timer; /* attach, then the request's deadline, then the linger */
    hconn_state state;
    bool ref;                /* we hold a reference on bev (until attached) */
    uint64_t octets;         /* of the request being read */
    unsigned line_ends;      /* header block scanner: line ends in a row */
    bool in_body;            /* the header block is over */
    struct sk_http_req *req; /* with its handler (HC_BUSY) */
} hconn;

struct sk_http {
    sk_http_opts o;
    char *listen, *data_dir, *hostname, *tls_cert, *tls_key;
    sk_http_deps deps;
    struct event_base *base;
    struct evhttp *http;
    int port;
    SSL_CTX *ssl;
    sk_apikey_store *keys;
    sk_http_pool *pool;
    auth_fail *fails;
    size_t nfails, capfails;
    sk_http_req *pending;
    unsigned nrequests;
    struct event *prune;
    hconn *conns;
    unsigned nconns;
};

/* ---- server.c ---- */
/* A request starts arriving on c with the octets in `in` from `from` on:
 * its octets are counted and its deadline armed. */
void sk_http_conn_start(hconn *c, struct evbuffer *in, size_t from);

/* ---- answer.c ---- */
/* The request is done with: unlinked from the listener and freed. */
void sk_http_req_done(sk_http_req *r);
/* Answer r with the JSON text (len octets), with Retry-After when retry. */
void sk_http_finish(sk_http_req *r, int status, const char *text, size_t len, unsigned retry);

/* ---- keyauth.c ---- */
/* The request's API key checked against its route's scope, failures
 * throttled per client address; false when r was answered (401, 403,
 * 429, 500). */
bool sk_http_authenticate(sk_http *h, sk_http_req *r);

/* ---- router.c ---- */
/* evhttp's callback for every request: the limits, the route, its key,
 * an Idempotency-Key, then the route's handler. */
void sk_http_dispatch(struct evhttp_request *ev, void *arg);

#endif
