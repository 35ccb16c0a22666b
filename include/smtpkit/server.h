/* The embeddable SMTP server: listeners, sessions, and hooks through which
 * the embedding program decides and stores. Runs on a libevent event_base. */
#ifndef SMTPKIT_SERVER_H
#define SMTPKIT_SERVER_H

#include "proto.h"
#include "reply.h"
#include "util.h"

#include <sys/socket.h>

#ifdef __cplusplus
extern "C" {
#endif

struct event_base;

typedef struct sk_server sk_server;
typedef struct sk_session sk_session;

/* Kinds of listener. */
typedef enum sk_listen_kind {
    SK_LISTEN_SMTP = 1,       /* port 25 style: STARTTLS offered when a certificate is set */
    SK_LISTEN_SUBMISSION = 2, /* RFC 6409: AUTH required before MAIL */
    SK_LISTEN_SMTPS = 4       /* RFC 8314 submission over implicit TLS; AUTH required */
} sk_listen_kind;

/* Settings. Zero means the default from limits.h for every number. The
 * strings are copied by sk_server_new and sk_server_reload. */
typedef struct sk_server_opts {
    const char *hostname; /* greeting and EHLO name; NULL: gethostname() */
    /* PEM files. STARTTLS is offered on SMTP and SUBMISSION listeners only
     * when both are set; SMTPS listeners need them. */
    const char *tls_cert_file;
    const char *tls_key_file;
    uint64_t max_message_size;       /* octets; SIZE (RFC 1870) */
    unsigned max_recipients;         /* per message; 452 4.5.3 past it */
    unsigned max_connections;        /* in all; 421 4.7.0 past it */
    unsigned max_connections_per_ip; /* 421 4.7.0 past it */
    unsigned greeting_timeout_ms;    /* from the banner to the first command */
    unsigned command_timeout_ms;     /* waiting for a command (RFC 5321 4.5.3.2.7) */
    unsigned data_timeout_ms;        /* waiting for the next DATA/BDAT octets */
    unsigned greeting_delay_ms;      /* early-talker check; 0: no delay (default) */
    unsigned max_idle_commands;      /* commands without progress before 421 */
    unsigned auth_failures_max;      /* failures per address within the window */
    unsigned auth_throttle_ms;       /* the window */
    int auth_plaintext_loopback;     /* 1: AUTH without TLS from 127/8 and ::1 */
    sk_logger logger;
} sk_server_opts;

/* Per-recipient and per-message data handed to the program. */
typedef struct sk_envelope_rcpt {
    sk_path path;
    sk_rcpt_params params;
} sk_envelope_rcpt;

typedef struct sk_envelope {
    sk_path from; /* from.mailbox "" is the null sender */
    sk_mail_params params;
    const sk_envelope_rcpt *rcpts;
    size_t nrcpts;
    const char *session_id;
    const char *helo;      /* "" when none */
    const char *peer_addr; /* "192.0.2.1" or "2001:db8::1"; never "::ffff:192.0.2.1" */
    /* RFC 3848 / RFC 6531 protocol name for Received "with": SMTP, ESMTP,
     * ESMTPS, ESMTPA, ESMTPSA, or UTF8SMTP, UTF8SMTPS, UTF8SMTPA, UTF8SMTPSA. */
    const char *protocol;
    int tls;                 /* TLS active */
    const char *tls_version; /* "TLSv1.3", "" without TLS */
    const char *tls_cipher;  /* "" without TLS */
    const char *auth_user;   /* "" when not authenticated */
    sk_listen_kind kind;
    int bdat;                /* 1: the body came in BDAT chunks (RFC 3030) */
    const char *server_name; /* the hostname this session greeted with (Received "by") */
    int peer_port;
} sk_envelope;

/* Hooks. Every hook is optional; each returns the reply to send, built with
 * sk_reply_make, or SK_REPLY_OK (250) to go on with the server's own text.
 * A 4xx/5xx reply refuses. Only on_auth and on_data_end may answer
 * SK_REPLY_ASYNC (then call sk_session_reply once the answer is known). */
/* peer: the client's address; an IPv4-mapped IPv6 address comes as AF_INET. */
typedef sk_reply (*sk_on_connect_fn)(sk_session *s, const struct sockaddr *peer, void *ctx);
typedef sk_reply (*sk_on_helo_fn)(sk_session *s, const char *name, void *ctx);
/* The program's credential check for AUTH PLAIN/LOGIN (the framework
 * decodes them). authzid is "" when not given. Return 235 (SK_REPLY_OK
 * counts as success), or 535 5.7.8 / 454 4.7.0. */
typedef sk_reply (*sk_on_auth_fn)(sk_session *s, const char *mech, const char *authzid,
                                  const char *user, const char *password, void *ctx);
typedef sk_reply (*sk_on_mail_fn)(sk_session *s, const sk_path *from, const sk_mail_params *p,
                                  void *ctx);
typedef sk_reply (*sk_on_rcpt_fn)(sk_session *s, const sk_path *rcpt, const sk_rcpt_params *p,
                                  void *ctx);
/* The message as a stream. on_data_start sets *msg to the program's
 * per-message state; a 4xx/5xx refuses the message (e.g. 452 4.3.1 store
 * full). on_data_chunk gets the body un-dot-stuffed, CRLF line ends as
 * received, in pieces; non-SK_OK aborts the message (451 4.3.0 at its end).
 * on_data_end: ok = 1 when the message is complete and valid: answer its
 * final reply, or SK_REPLY_ASYNC and later sk_session_reply() once it is
 * durably stored. ok = 0: the message is refused or the client went away;
 * discard it (the reply is ignored). */
typedef sk_reply (*sk_on_data_start_fn)(sk_session *s, const sk_envelope *env, void **msg,
                                        void *ctx);
typedef sk_err (*sk_on_data_chunk_fn)(sk_session *s, void *msg, const char *bytes, size_t len,
                                      void *ctx);
typedef sk_reply (*sk_on_data_end_fn)(sk_session *s, void *msg, int ok, void *ctx);
/* Last call for a session; the pointer is invalid after it returns. */
typedef void (*sk_on_disconnect_fn)(sk_session *s, void *ctx);

/* Create a server on base, or on its own event_base when base is NULL.
 * NULL on failure (err says why: bad options, unreadable certificate). */
sk_server *sk_server_new(const sk_server_opts *o, struct event_base *base, sk_error *err);
void sk_server_free(sk_server *srv);

void sk_server_on_connect(sk_server *srv, sk_on_connect_fn fn, void *ctx);
void sk_server_on_helo(sk_server *srv, sk_on_helo_fn fn, void *ctx);
void sk_server_on_auth(sk_server *srv, sk_on_auth_fn fn, void *ctx);
void sk_server_on_mail(sk_server *srv, sk_on_mail_fn fn, void *ctx);
void sk_server_on_rcpt(sk_server *srv, sk_on_rcpt_fn fn, void *ctx);
void sk_server_on_data(sk_server *srv, sk_on_data_start_fn start, sk_on_data_chunk_fn chunk,
                       sk_on_data_end_fn end, void *ctx);
void sk_server_on_disconnect(sk_server *srv, sk_on_disconnect_fn fn, void *ctx);

/* Bind and listen on "ADDR:PORT" or "[V6ADDR]:PORT" (port 0: any free one,
 * see sk_server_port). Binding happens here, so a daemon started as root
 * can drop privileges afterwards. */
SK_NODISCARD sk_err sk_server_listen(sk_server *srv, const char *addr, sk_listen_kind kind,
                                     sk_error *err);
/* The port the i-th listener (in sk_server_listen order) is bound to; 0
 * when there is no such listener. */
int sk_server_port(const sk_server *srv, size_t i);

/* Run the event loop until sk_server_stop has finished (only when the
 * server owns its loop; with a caller's base, run that base instead). */
SK_NODISCARD sk_err sk_server_run(sk_server *srv);
/* Graceful stop: close the listeners, let sessions in flight finish (each
 * is told 421 at its next command), then end sk_server_run. Safe to call
 * from a signal event callback. */
void sk_server_stop(sk_server *srv);
/* fn is called once when a stop has finished: listeners closed and no
 * session left. A program running its own event_base ends its loop there
 * (it must not free the server inside fn). */
typedef void (*sk_on_stopped_fn)(sk_server *srv, void *ctx);
void sk_server_on_stopped(sk_server *srv, sk_on_stopped_fn fn, void *ctx);
/* Number of sessions open (including those waiting for an async reply). */
size_t sk_server_sessions(const sk_server *srv);
/* New settings and certificates for sessions that start after this call;
 * sessions in flight keep theirs. On error nothing changes. */
SK_NODISCARD sk_err sk_server_reload(sk_server *srv, const sk_server_opts *o, sk_error *err);
struct event_base *sk_server_base(const sk_server *srv);
/* Conveniences for programs that do not use libevent themselves: call fn
 * once after ms milliseconds, on the server's loop; call fn on the loop
 * whenever signal signum arrives (e.g. SIGHUP: sk_server_reload); stop
 * gracefully (sk_server_stop) when signum arrives. At most 8 signals. */
SK_NODISCARD sk_err sk_server_after(sk_server *srv, unsigned ms, void (*fn)(void *ctx), void *ctx);
typedef void (*sk_signal_fn)(sk_server *srv, int signum, void *ctx);
SK_NODISCARD sk_err sk_server_on_signal(sk_server *srv, int signum, sk_signal_fn fn, void *ctx);
SK_NODISCARD sk_err sk_server_stop_on_signal(sk_server *srv, int signum);

/* Session accessors. Strings are owned by the session. */
const char *sk_session_id(const sk_session *s);
/* The client's address, no port. An IPv4 client of an IPv6 listener
 * ([::], ::ffff:192.0.2.1) is named by its IPv4 address, 192.0.2.1. */
const char *sk_session_peer(const sk_session *s);
int sk_session_peer_port(const sk_session *s);
uint64_t sk_session_age_ms(const sk_session *s);  /* since the connection was accepted */
const char *sk_session_helo(const sk_session *s); /* "" before HELO/EHLO */
int sk_session_tls(const sk_session *s);
const char *sk_session_tls_version(const sk_session *s); /* "" without TLS */
const char *sk_session_tls_cipher(const sk_session *s);
const char *sk_session_auth_user(const sk_session *s); /* "" when not authenticated */
sk_listen_kind sk_session_kind(const sk_session *s);
sk_server *sk_session_server(const sk_session *s);
void *sk_session_user(const sk_session *s);
void sk_session_set_user(sk_session *s, void *user);
/* Answer an AUTH or a message whose on_auth or on_data_end returned
 * SK_REPLY_ASYNC; call it from the event loop's thread. The session stays
 * valid until then, even if the client has gone (on_disconnect follows this
 * call in that case). For AUTH, a 2xx reply means success. */
SK_NODISCARD sk_err sk_session_reply(sk_session *s, const sk_reply *r);

#ifdef __cplusplus
}
#endif
#endif
