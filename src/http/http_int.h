/* Inside the HTTP module: the substitution of batch sending (build.c),
 * the idempotency store (idem.c), the routes (api.c) and what they need
 * of the listener (server.c). */
#ifndef SK_HTTP_INT_H
#define SK_HTTP_INT_H

#include <smtpkit/http.h>
#include <smtpkit/track.h>
#include <smtpkit/worker.h>

#include <jansson.h>
#include <stdbool.h>

struct event_base;

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
 * (-1: no key), the handler, and flags. */
#define SK_HTTP_ROUTE_METRICS 1u /* no key with sk_http_opts.metrics_public */
struct sk_http_route {
    const char *method;
    const char *pattern;
    int scope;
    sk_http_handler fn;
    unsigned flags;
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
/* Any text of content_type (text, len copied). */
void sk_http_reply_text(sk_http *h, sk_http_req *r, int status, const char *content_type,
                        const char *text, size_t len);
/* With a Retry-After header (429, 503). */
void sk_http_reply_retry(sk_http *h, sk_http_req *r, int status, unsigned retry_after_s,
                         const char *code, const char *message);

/* ---- SQLite off the loop (work.c) ----
 * The idempotency store and the tracking store's queries and suppression
 * changes run on the API's group of worker threads ("http"); each thread
 * has its own connections (sk_http_conns), opened by it on first use. A
 * route hands a job (sk_http_work, kept in its request's state) and
 * answers from the job's completion, on the loop. */
typedef struct sk_http_pool sk_http_pool;
typedef struct sk_http_conns sk_http_conns;
typedef struct sk_http_work sk_http_work;
/* Worker thread: the job's SQLite work, with this thread's connections. */
typedef void (*sk_http_work_run_fn)(sk_http_work *w, sk_http_pool *p, sk_http_conns *c);
/* Loop: answer the request (w->cancelled: the job did not run). */
typedef void (*sk_http_work_done_fn)(sk_http_work *w);
struct sk_http_work {
    sk_job job;
    sk_http_pool *pool;
    sk_http_work_run_fn run;
    sk_http_work_done_fn done;
    bool cancelled;
    /* A read of events (sk_http_track_sync): before run, the worker waits
     * until the store's writer reached track_ticket; a failed or timed out
     * wait is kept in track_err and logged by the completion. NULL: none. */
    sk_track *track;
    uint64_t track_ticket;
    sk_error track_err;
};
sk_http_pool *sk_http_pool_new(struct event_base *base, const char *data_dir, bool track,
                               const sk_logger *log, sk_error *err);
/* The jobs in flight finish (up to SK_HTTP_WORKERS_STOP_MS) and their
 * completions run, then the connections close. */
void sk_http_pool_free(sk_http_pool *p);
/* Queue w (false when the pool is stopping: answer the request now). */
SK_NODISCARD bool sk_http_work_submit(sk_http_pool *p, sk_http_work *w, sk_http_work_run_fn run,
                                      sk_http_work_done_fn done);
bool sk_http_pool_stopping(const sk_http_pool *p);
/* Forget old idempotency answers (a job; one at a time). */
void sk_http_pool_prune(sk_http_pool *p);
/* Worker thread: this thread's connection to track.db (read-write, for
 * the suppression changes) or to http.db; NULL and err on failure. */
sk_track *sk_http_conns_track(sk_http_pool *p, sk_http_conns *c, sk_error *err);
sk_idem *sk_http_conns_idem(sk_http_pool *p, sk_http_conns *c, sk_error *err);

/* What the routes work on. */
const sk_http_opts *sk_http_get_opts(const sk_http *h);
const sk_http_deps *sk_http_get_deps(const sk_http *h);
const sk_logger *sk_http_log(const sk_http *h);
/* Loop, before w, a read of the tracking store, is queued: the events
 * recorded so far are handed to the store's writer, without waiting, and
 * w waits on its worker until they are written (so that the read sees
 * them; bounded: SK_TRACK_WAIT_MAX_MS). False when there is no tracking
 * store. */
bool sk_http_track_sync(sk_http *h, sk_http_work *w);
/* Queue w for r on the pool; when the pool no longer takes jobs, r is
 * answered 503 and false returned (done is not called). */
bool sk_http_req_work(sk_http *h, sk_http_req *r, sk_http_work *w, sk_http_work_run_fn run,
                      sk_http_work_done_fn done);
/* Answer r 503 "the server is stopping": the pool took no job, or did not
 * run the one it took. */
void sk_http_reply_stopping(sk_http *h, sk_http_req *r);
/* In a job's done: true when it did not run (the server is stopping), r
 * being answered so; the done returns at once. */
bool sk_http_work_stopped(sk_http *h, sk_http_req *r, const sk_http_work *w);

/* ---- The routes beyond sending (api_ops.c) ---- */
void sk_http_get_metrics(sk_http *h, sk_http_req *r);
void sk_http_list_webhooks(sk_http *h, sk_http_req *r);
void sk_http_add_webhook(sk_http *h, sk_http_req *r);
void sk_http_delete_webhook(sk_http *h, sk_http_req *r);
void sk_http_list_events(sk_http *h, sk_http_req *r);
void sk_http_list_queue(sk_http *h, sk_http_req *r);
/* An event as the API shows it (GET /v1/messages/{id}, /v1/events). */
json_t *sk_http_event_json(const sk_track_ev *ev);

#endif
