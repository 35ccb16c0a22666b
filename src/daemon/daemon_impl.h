/* The inside of a running `smtpkit serve`, shared by the daemon's files:
 * the daemon object, and what each file offers the others (one section per
 * file). The pure pieces the unit tests reach are in daemon_int.h. */
#ifndef SK_DAEMON_IMPL_H
#define SK_DAEMON_IMPL_H

#include "daemon_int.h"
#include "dmetrics.h"

#include "authd.h"

#include <smtpkit/control.h>
#include <smtpkit/http.h>
#include <smtpkit/webhook.h>
#include <smtpkit/queue.h>
#include <smtpkit/server.h>
#include <smtpkit/spool.h>

#include "deliver/deliver.h"

#include <event2/util.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

struct event_base;
struct event;
struct daemon_msg;

struct sk_daemon {
    /* What to build the configuration from again on SIGHUP. */
    char *config_path;
    sk_daemon_setting *flags;
    size_t n_flags;

    sk_daemon_config *cfg;
    sk_users users;
    sk_authd *authd; /* holds the users file (privilege split); NULL without one */
    sk_recipients recipients;
    bool have_recipients;
    /* The logger everything logs through: user_log itself, or, when that
     * one can buffer (flush set), a wrapper that has it flushed once per
     * pass of the event loop (log_flush_ev). */
    sk_logger log, user_log;
    struct event *log_flush_ev;
    atomic_int log_flush_pending;

    struct event_base *base;
    sk_server *srv;
    sk_spool *spool;
    sk_queue *queue;
    sk_control_server *control; /* `smtpkit queue` asks here (spool/control.sock) */
    sk_http *http;              /* --http: the HTTP API (http_api.c); NULL when off */
    sk_dmetrics *metrics;       /* `smtpkit stats --metrics` (docs/metrics.md) */
    sk_webhooks *webhooks;      /* docs/webhooks.md; NULL without a tracking store */
    sk_transport *local, *remote;
    uint64_t *retry_ms;
    size_t nretry;
    /* Fixed at start (a reload does not change them): our name, VERP,
     * the rules, tracking and suppression. */
    char *hostname;
    const char *verp_domain; /* hostname with --verp, else NULL */
    sk_rules *rules;
    sk_track *track; /* DATA-DIR/track.db; NULL when it could not be opened */
    /* The suppression list in memory, for RCPT (docs/tracking.md); NULL
     * without a tracking store. */
    sk_suppress_mirror *suppress;
    bool track_opened;      /* tried already (before the ports opened) */
    int64_t suppress_for_s; /* --suppress-for; 0: each class's duration (rules) */

    /* Authenticated mail: the keys that sign (--dkim; replaced on SIGHUP,
     * signers hold their own references), the checks of mail from
     * outside. */
    sk_dkim_keyring *keys;
    /* --arc-seal: the key, domain and selector of the ARC sets added to
     * mail from outside (read at start). */
    sk_dkim_key *arc_key;
    char arc_domain[SK_SMTP_DOMAIN_MAX_OCTETS + 1], arc_selector[SK_SMTP_DOMAIN_MAX_OCTETS + 1];
    sk_sign_pool *signpool;
    sk_inbound *inbound;

    struct daemon_msg *receiving; /* between data start and end */
    /* After the end, before the commit: checks running or signatures
     * being made. */
    struct daemon_msg *finishing;
    struct event *sig_term, *sig_int, *sig_hup, *drain_timer;
    uint64_t stop_started_ms;
    bool stopping;
};

/* ---- hooks.c: one SMTP transaction ---- */

/* Set the server's hooks (AUTH only with an AUTH helper, MAIL, RCPT, the
 * message, the end of a session) on d->srv. */
void sk_daemon_hooks_set(sk_daemon *d);
/* Stopping: the messages being received lose their spool handles (their
 * sessions get no 250), and those whose checks or signatures are still
 * being made are dropped (after the signing pool has stopped). */
void sk_daemon_receiving_abort(sk_daemon *d);
void sk_daemon_finishing_drop(sk_daemon *d);

/* ---- queue_events.c: the queue's events, and helpers of hooks.c ---- */

/* The queue's on_event hook: what it reports, into the tracking store. */
void sk_daemon_on_queue_event(void *ctx, const sk_queue_event *qe);
/* Record ev in the tracking store (if any); a failure is logged. */
void sk_daemon_track(sk_daemon *d, const sk_track_ev *ev);
/* Append ` key="value"` to a log line, value escaped (best effort). */
void sk_daemon_log_escaped(sk_buf *b, const char *key, const char *value);

/* ---- reload.c: the configuration applied again on SIGHUP, and stopping
 * on SIGTERM or SIGINT ---- */

/* The server's options from a configuration. */
void sk_daemon_server_opts(const sk_daemon *d, const sk_daemon_config *c, sk_server_opts *o);
/* Load the tables a configuration names (users, local recipients). */
/* The configuration's --webhook specs parsed into eps (pointing into
 * bufs[i], which the caller frees with sk_daemon_webhooks_free). */
SK_NODISCARD sk_err sk_daemon_webhook_specs(const sk_daemon_config *c,
                                            sk_webhook_endpoint eps[SK_WEBHOOKS_MAX],
                                            char *bufs[SK_WEBHOOKS_MAX], size_t *n, sk_error *err);
void sk_daemon_webhooks_free(char *bufs[SK_WEBHOOKS_MAX]);
SK_NODISCARD sk_err sk_daemon_load_tables(const sk_daemon_config *c, sk_users *users,
                                          sk_recipients *rcpts, bool *have_rcpts, sk_error *err);
/* The signal events' callback (SIGHUP, SIGTERM, SIGINT), and the timer's
 * of a stopping daemon waiting for its sessions (d->drain_timer). */
void sk_daemon_on_signal(evutil_socket_t sig, short what, void *arg);
void sk_daemon_drain_check(evutil_socket_t fd, short what, void *arg);

/* ---- prestart.c: before the daemon serves ---- */

/* The data directory: created when missing, a directory, writable by the
 * user the daemon will run as (given to it when starting as root). */
SK_NODISCARD sk_err sk_daemon_check_data_dir(sk_daemon *d, sk_error *err);
/* Switch to --user once the listeners are bound. */
SK_NODISCARD sk_err sk_daemon_drop_privileges(sk_daemon *d, sk_error *err);

#endif
