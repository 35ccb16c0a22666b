/* Inside the HTTP module: the substitution of batch sending (build.c),
 * the idempotency store (idem.c), the routes (api.c) and what they need
 * of the listener (server.c). */
#ifndef SK_HTTP_INT_H
#define SK_HTTP_INT_H

#include <smtpkit/http.h>

#include <jansson.h>
#include <stdbool.h>

/* `{{name}}` substitution (docs/http-api.md "Batch sending"): every
 * {{name}} in text whose name (letters, digits, '_', '-', '.') is a key of
 * vars (a JSON object of strings; NULL: none) is replaced by its value,
 * HTML-escaped when html. Any other "{{" is an error: SK_ERR_INVAL with
 * *bad its offset. SK_ERR_TOO_LONG when out is full. */
SK_NODISCARD sk_err sk_http_substitute(const char *text, const json_t *vars, bool html, sk_buf *out,
                                       size_t *bad);

/* Idempotency keys: the first answer to a request with a key, kept
 * SK_HTTP_IDEMPOTENCY_KEEP_S at least, in DATA-DIR/http.db (SQLite, WAL),
 * so that it outlives a restart. Keys are per API key. */
typedef struct sk_idem sk_idem;
sk_idem *sk_idem_open(const char *data_dir, sk_error *err);
void sk_idem_free(sk_idem *db);
/* The answer stored for (api_key_id, key): SK_OK with *status and *body
 * (sk_free), SK_ERR_NOT_FOUND, SK_ERR_IO. */
SK_NODISCARD sk_err sk_idem_get(sk_idem *db, const char *api_key_id, const char *key, int *status,
                                char **body);
/* Keep the answer (replacing none: the first one stays). */
SK_NODISCARD sk_err sk_idem_put(sk_idem *db, const char *api_key_id, const char *key, int status,
                                const char *body);
/* Forget answers older than SK_HTTP_IDEMPOTENCY_KEEP_S before now_s. */
SK_NODISCARD sk_err sk_idem_prune(sk_idem *db, int64_t now_s);

/* A request being answered, as the routes see it. */
typedef struct sk_http_req sk_http_req;
typedef struct sk_http_route sk_http_route;

/* The route's handler: answer now (sk_http_reply*) or later, once, from
 * the loop (a spool commit). */
typedef void (*sk_http_handler)(sk_http *h, sk_http_req *r);

/* A route is one row: method, path pattern ("/v1/messages/{id}": a
 * {name} segment matches one non-empty segment), the scope a key needs
 * (-1: no key), and the handler. */
struct sk_http_route {
    const char *method;
    const char *pattern;
    int scope;
    sk_http_handler fn;
};
/* The router's table, ended by a row with method NULL (api.c). */
extern const sk_http_route sk_http_routes[];
/* Does path match pattern? The values of its {name} segments go to
 * params (up to nparams, each up to SK_HTTP_PARAM_OCTETS, percent-decoded). */
#define SK_HTTP_PARAMS_MAX   2
#define SK_HTTP_PARAM_OCTETS 512
bool sk_http_route_match(const char *pattern, const char *path, char params[][SK_HTTP_PARAM_OCTETS],
                         size_t nparams);

/* What a handler reads of its request. */
const char *sk_http_req_param(const sk_http_req *r, size_t i);         /* {name} values in order */
const char *sk_http_req_query(const sk_http_req *r, const char *name); /* NULL: absent */
const char *sk_http_req_body(const sk_http_req *r, size_t *len);
const char *sk_http_req_header(const sk_http_req *r, const char *name);
const char *sk_http_req_peer(const sk_http_req *r);
const sk_apikey *sk_http_req_key(const sk_http_req *r); /* NULL on routes without a key */

/* A handler that answers later (after a spool commit) keeps its state
 * with the request; state_free runs when the request is done. A request
 * is orphaned when the listener went before the answer: answering it
 * then only frees it. */
void sk_http_req_set_state(sk_http_req *r, void *state, void (*state_free)(void *));
bool sk_http_req_orphaned(const sk_http_req *r);

/* Answers. reply takes ownership of body (a JSON value; NULL: no body).
 * error answers {"error": {"code", "message", "field"}} (field NULL: none). */
void sk_http_reply(sk_http *h, sk_http_req *r, int status, json_t *body);
void sk_http_reply_error(sk_http *h, sk_http_req *r, int status, const char *code,
                         const char *field, const char *fmt, ...) SK_PRINTF(6, 7);
/* With a Retry-After header (429, 503). */
void sk_http_reply_retry(sk_http *h, sk_http_req *r, int status, unsigned retry_after_s,
                         const char *code, const char *message);

/* What the routes work on. */
const sk_http_opts *sk_http_get_opts(const sk_http *h);
const sk_http_deps *sk_http_get_deps(const sk_http *h);
sk_idem *sk_http_get_idem(const sk_http *h);
const sk_logger *sk_http_log(const sk_http *h);
/* The daemon's tracking store, for queries and suppressions (the loop
 * thread's, as the SMTP side uses it); NULL without one. */
sk_track *sk_http_track_reader(sk_http *h);

#endif
