/* The HTTP API of `smtpkit serve` (docs/http-api.md, docs/openapi.yaml):
 * API keys, the request-to-message builder, and the listener with its
 * routes on the daemon's event loop. */
#ifndef SMTPKIT_HTTP_H
#define SMTPKIT_HTTP_H

#include <stdbool.h>
#include <stdint.h>

#include "util.h"

#ifdef __cplusplus
extern "C" {
#endif

struct event_base;
typedef struct sk_spool sk_spool;
typedef struct sk_queue sk_queue;
typedef struct sk_track sk_track;

/* ---- API keys (DATA-DIR/apikeys) ---------------------------------------
 * A key is "skk_" ID "_" SECRET (ID: SK_APIKEY_ID_LEN hex digits, SECRET:
 * SK_APIKEY_SECRET_OCTETS random octets in hex). Only the SHA-256 of the
 * whole key is stored: the key is shown once, when made. */

typedef enum sk_apikey_scope {
    SK_APIKEY_SEND = 0, /* POST /v1/messages... */
    SK_APIKEY_READ,     /* the GET routes */
    SK_APIKEY_ADMIN,    /* everything, the changes included */
    SK_APIKEY_SCOPE__COUNT
} sk_apikey_scope;
const char *sk_apikey_scope_name(sk_apikey_scope s); /* "send", "read", "admin" */
int sk_apikey_scope_parse(const char *name);         /* -1 when unknown */
/* Does a key of scope have may do what needs `need`? admin may do all. */
bool sk_apikey_scope_allows(sk_apikey_scope have, sk_apikey_scope need);

#define SK_APIKEY_ID_LEN  12
#define SK_APIKEY_ID_SIZE (SK_APIKEY_ID_LEN + 1)
/* "skk_" + ID + "_" + 64 hex digits, and the terminating NUL. */
#define SK_APIKEY_KEY_SIZE (4 + SK_APIKEY_ID_LEN + 1 + 2 * SK_APIKEY_SECRET_OCTETS + 1)

typedef struct sk_apikey {
    char id[SK_APIKEY_ID_SIZE];
    char *name;
    sk_apikey_scope scope;
    int64_t created_s;
    int64_t revoked_s; /* 0: in force */
    char hash[65];     /* SHA-256 of the key, hex */
} sk_apikey;

/* Make a key named name (1 to SK_APIKEY_NAME_MAX_OCTETS printable octets,
 * no control characters) with scope, store its hash in
 * DATA-DIR/apikeys (created with mode 0600; the file is replaced
 * atomically under a lock), and give the key (key) and its id. Errors:
 * SK_ERR_INVAL for a bad name, SK_ERR_IO/SK_ERR_NOSPACE. */
SK_NODISCARD sk_err sk_apikey_create(const char *data_dir, const char *name, sk_apikey_scope scope,
                                     char key[SK_APIKEY_KEY_SIZE], char id[SK_APIKEY_ID_SIZE],
                                     sk_error *err);
/* Every key made, revoked ones included, oldest first. A missing file is
 * an empty list. Free with sk_apikey_list_free. */
SK_NODISCARD sk_err sk_apikey_list(const char *data_dir, sk_apikey **out, size_t *n, sk_error *err);
void sk_apikey_list_free(sk_apikey *list, size_t n);
/* Revoke the key with this id, or, when no id matches, every key of
 * this name.
 * SK_ERR_NOT_FOUND when there is none; revoking twice is no error. */
SK_NODISCARD sk_err sk_apikey_revoke(const char *data_dir, const char *id_or_name, sk_error *err);

/* The keys as a server checks them: the file read again when it changed
 * (a key made or revoked by `smtpkit apikey` is in force at the next
 * request). */
typedef struct sk_apikey_store sk_apikey_store;
sk_apikey_store *sk_apikey_store_new(const char *data_dir); /* NULL: out of memory */
void sk_apikey_store_free(sk_apikey_store *s);
/* The key in force that key (a whole "skk_..." token) is: SK_OK and *out
 * (valid until the next call) or SK_ERR_AUTH. Compared in constant time
 * on the hash. SK_ERR_IO when the file cannot be read. */
SK_NODISCARD sk_err sk_apikey_store_check(sk_apikey_store *s, const char *key,
                                          const sk_apikey **out);

/* ---- The request-to-message builder ------------------------------------
 * POST /v1/messages and /v1/messages/raw bodies (docs/http-api.md) turned
 * into messages ready for the spool, with no I/O. */

typedef struct sk_http_out {
    char *sender; /* envelope reverse path, "" for <> */
    char **rcpts; /* addr-specs */
    size_t nrcpts;
    sk_buf data;      /* the message, CRLF line ends */
    char *message_id; /* "<...>", NULL for raw messages without one */
    int smtputf8;
    int has_priority, priority; /* MT-PRIORITY (RFC 6710) */
} sk_http_out;

typedef struct sk_http_build {
    sk_http_out *msgs;
    size_t n;
    /* On SK_ERR_INVAL/SK_ERR_SYNTAX/SK_ERR_TOO_LONG: the field at fault, as
     * a path ("to[1]", "attachments[0].content"), "" for the body as a
     * whole, and why. */
    char field[SK_HTTP_FIELD_PATH_OCTETS];
    char message[SK_HTTP_ERROR_TEXT_OCTETS];
} sk_http_build;

/* Which body: a message to compose, or a prepared one. */
typedef enum sk_http_body_kind { SK_HTTP_COMPOSE = 0, SK_HTTP_RAW } sk_http_body_kind;

/* Build the messages a request body asks for (at most max_octets each).
 * SK_ERR_SYNTAX for a body that is not a JSON object, SK_ERR_INVAL for a
 * field that is wrong, SK_ERR_TOO_LONG for a message over max_octets or
 * more than SK_HTTP_BATCH_MAX recipients, SK_ERR_NOMEM. Free out with
 * sk_http_build_free in every case. */
SK_NODISCARD sk_err sk_http_build_messages(sk_http_body_kind kind, const char *body, size_t len,
                                           uint64_t max_octets, sk_http_build *out);
void sk_http_build_free(sk_http_build *b);

/* ---- The listener --------------------------------------------------------- */

typedef struct sk_http_opts {
    const char *listen; /* "ADDR:PORT" */
    bool tls;           /* HTTPS with tls_cert and tls_key */
    const char *tls_cert, *tls_key;
    const char *data_dir;        /* apikeys, http.db (idempotency keys), track.db */
    const char *hostname;        /* the Message-ID domain and Received: name */
    bool hold;                   /* new messages go to the hold queue */
    uint64_t max_request_octets; /* 0: SK_HTTP_REQUEST_MAX_OCTETS_DEFAULT */
    uint64_t max_header_octets;  /* 0: SK_HTTP_HEADER_MAX_OCTETS_DEFAULT */
    /* A connection that sends nothing (or takes nothing of the answer) for
     * this long is closed; 0: SK_HTTP_REQUEST_TIMEOUT_MS_DEFAULT. */
    uint64_t request_timeout_ms;
    unsigned max_requests;       /* in progress at once; 0: SK_HTTP_REQUESTS_MAX_DEFAULT */
    uint64_t queue_limit;        /* messages queued past which sending gets 429; 0: none */
    uint64_t max_message_octets; /* 0: no limit beyond the request's */
    sk_logger log;
} sk_http_opts;

/* What the routes work on: the daemon's spool (committed by the loop's
 * committer), queue and tracking store (NULL: none). */
typedef struct sk_http_deps {
    sk_spool *spool;
    sk_queue *queue;
    sk_track *track;
    /* Told when a suppression was added or removed through the API (the
     * daemon pokes its mirror); NULL: nobody. */
    void (*suppress_changed)(void *ctx);
    void *ctx;
} sk_http_deps;

typedef struct sk_http sk_http;
/* Bind and serve on base. SK_ERR_CONFIG for a bad address or certificate,
 * SK_ERR_IO when the port cannot be bound. */
sk_http *sk_http_new(const sk_http_opts *o, const sk_http_deps *deps, struct event_base *base,
                     sk_error *err);
int sk_http_port(const sk_http *h);
/* Requests still in progress (a commit in flight) are answered 503. */
void sk_http_free(sk_http *h);

#ifdef __cplusplus
}
#endif
#endif
