/* The control channel of `smtpkit serve`: a UNIX stream socket in the
 * spool directory through which `smtpkit queue` asks the running daemon to
 * flush, release or delete messages, by ID or by filter; and the same
 * operations directly on the spool when no daemon holds it. A layer on top
 * of the queue's public API (queue.h); docs/queue.md "Control". */
#ifndef SMTPKIT_CONTROL_H
#define SMTPKIT_CONTROL_H

#include <stddef.h>

#include "limits.h"
#include "queue.h"
#include "spool.h"
#include "util.h"

#ifdef __cplusplus
extern "C" {
#endif

struct event_base;

/* The socket's name in the spool directory (sk_spool_dir). */
#define SK_CONTROL_SOCKET_NAME "control.sock"

/* One request: an operation and the messages it applies to. */
typedef struct sk_control_request {
    sk_queue_op op;
    sk_queue_filter filter; /* not empty */
} sk_control_request;

/* Parse a request line (n octets, without its line end):
 *   VERB *(SP TERM)   VERB = flush / release / delete
 *   TERM = "all" / "id=" QUEUE-ID / "destination=" XTEXT / "sender=" XTEXT
 *        / "state=" ("active" / "deferred" / "hold")
 * at least one term, each at most once; values in RFC 3461 4 xtext.
 * SK_ERR_SYNTAX (or SK_ERR_TOO_LONG) with err saying what is wrong. */
SK_NODISCARD sk_err sk_control_request_parse(const char *line, size_t n, sk_control_request *out,
                                             sk_error *err);
/* Append r as a request line with its LF; SK_ERR_INVAL for an empty filter. */
SK_NODISCARD sk_err sk_control_request_format(const sk_control_request *r, sk_buf *out);

/* A reply line: "progress matched=N changed=N" while a bulk operation
 * runs, then one status line, "ok matched=N changed=N" or
 * "error WORD TEXT". */
typedef enum sk_control_reply_kind {
    SK_CONTROL_PROGRESS = 0,
    SK_CONTROL_OK,
    SK_CONTROL_ERROR,
} sk_control_reply_kind;

typedef struct sk_control_reply {
    sk_control_reply_kind kind;
    size_t matched, changed;
    sk_err err; /* SK_CONTROL_ERROR: what its WORD stands for */
    char text[SK_CONTROL_REPLY_LINE_MAX_OCTETS];
} sk_control_reply;

/* Parse a reply line (without its line end); SK_ERR_SYNTAX when it is not one. */
SK_NODISCARD sk_err sk_control_reply_parse(const char *line, size_t n, sk_control_reply *out);
/* Append r as a reply line with its LF (the text is cut to fit and its
 * octets outside printable ASCII become '?'). */
SK_NODISCARD sk_err sk_control_reply_format(const sk_control_reply *r, sk_buf *out);

/* What an operation did. */
typedef struct sk_control_result {
    size_t matched, changed;
    int direct; /* 1: done on the spool, no daemon held it */
} sk_control_result;

/* Do r on the spool under data_dir, from another process (`smtpkit
 * queue`): through the running daemon's socket when one answers there;
 * else, when no daemon holds the spool lock, directly on the spool
 * (holding the lock meanwhile). A daemon that holds the lock but does not
 * answer (it is starting) is tried again until timeout_ms, which is also
 * how long each reply line may take. SK_ERR_NOT_FOUND for an ID that is
 * not in the queue; SK_ERR_CONFIG when there is no spool; SK_ERR_AUTH
 * when the daemon refuses this user; SK_ERR_TIMEOUT when it does not
 * answer in time. */
SK_NODISCARD sk_err sk_control_run(const char *data_dir, const sk_control_request *r,
                                   unsigned timeout_ms, sk_control_result *res, sk_error *err);

/* The daemon's side: listens on SK_CONTROL_SOCKET_NAME in the spool's
 * directory, replacing a socket left there by a daemon that died (the
 * spool must be open as its owner: holding the spool lock proves that no
 * other daemon runs on it). The socket is made mode 0600, and a peer
 * whose user (SO_PEERCRED) is neither root nor this process's effective
 * user is refused. Requests are answered on base's loop, bulk operations
 * spread over its passes (SK_CONTROL_BATCH_MESSAGES). An operation that
 * comes while the queue is still loading the spool's stored messages
 * after the start (sk_queue_loading) waits for the end of the load, with
 * progress lines meanwhile, so that it applies to every message. The
 * server answers SK_CONTROL_SUMMARY_VERB itself. Free before the queue;
 * the socket is removed. */
typedef struct sk_control_server sk_control_server;
sk_control_server *sk_control_server_new(sk_queue *q, sk_spool *spool, const sk_logger *log,
                                         struct event_base *base, sk_error *err);
void sk_control_server_free(sk_control_server *s);
/* Clients connected or with an operation running (tests, status). */
size_t sk_control_server_clients(const sk_control_server *s);

/* The read request every daemon answers with the queue's summary, as
 * JSON (sk_queue_summary_json; docs/queue.md "Summary"). */
#define SK_CONTROL_SUMMARY_VERB "summary"

/* Read requests: a line that is only verb (lower-case letters, not one of
 * the operations) is answered with the text fn appends to out, as
 * "data N" LF, N octets, then the status line. At most
 * SK_CONTROL_DATA_VERBS_MAX verbs; SK_ERR_INVAL past that or for a bad
 * verb. `smtpkit stats --metrics` asks "metrics". */
typedef sk_err (*sk_control_data_fn)(void *ctx, sk_buf *out);
SK_NODISCARD sk_err sk_control_server_on_data(sk_control_server *s, const char *verb,
                                              sk_control_data_fn fn, void *ctx);
/* The client's side: ask the daemon running on data_dir for verb's text,
 * appended to out (bounded by SK_CONTROL_DATA_MAX_OCTETS). SK_ERR_NOT_FOUND
 * when no daemon answers there (none runs); the daemon's error otherwise
 * (SK_ERR_SYNTAX for a verb it does not know). */
SK_NODISCARD sk_err sk_control_fetch(const char *data_dir, const char *verb, unsigned timeout_ms,
                                     sk_buf *out, sk_error *err);

#ifdef __cplusplus
}
#endif
#endif
