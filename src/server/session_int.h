/* The inside of an SMTP session, shared by the files that run it: its
 * states, its structure, and what each file offers the others (one section
 * per file). Not for server.c, which sees sessions through server_int.h.
 * Functions are named sk_sess_*: the public API of a session is sk_session_*
 * (server.h). */
#ifndef SK_SERVER_SESSION_INT_H
#define SK_SERVER_SESSION_INT_H

#include "server/server_int.h"

#include <openssl/crypto.h>

typedef enum sstate {
    SS_NEW,       /* accepted, being set up */
    SS_DELAY,     /* greeting delay: a client that talks now is an early talker */
    SS_TLS,       /* TLS handshake in progress */
    SS_CONNECTED, /* banner sent, no HELO/EHLO yet */
    SS_READY,     /* after HELO/EHLO, no transaction */
    SS_MAIL,      /* in a transaction (after MAIL) */
    SS_AUTH,      /* SASL exchange: the next line is a response */
    SS_DATA,      /* reading the DATA stream */
    SS_BDAT,      /* reading a BDAT chunk */
    SS_WAIT,      /* waiting for the program's asynchronous reply */
    SS_CLOSING,   /* last reply being flushed */
    SS__COUNT
} sstate;

/* What became of the message being received. */
typedef enum msg_state {
    MSG_NONE,    /* no message open */
    MSG_OPEN,    /* receiving, all well */
    MSG_BAD_EOL, /* bare CR or LF seen (RFC 5321 2.3.8) */
    MSG_BAD_NUL, /* NUL seen (RFC 2045 2.7, 2.8; no BINARYMIME offered) */
    MSG_TOO_BIG, /* over max_message_size (RFC 1870) */
    MSG_FAILED,  /* on_data_chunk failed */
    MSG_REFUSED  /* on_data_start refused (BDAT: its reply is kept) */
} msg_state;

/* The SASL mechanisms offered (RFC 4616 PLAIN, and LOGIN). */
typedef enum sasl_mech { MECH_NONE, MECH_PLAIN, MECH_LOGIN } sasl_mech;

struct sk_session {
    sk_session *next, *prev;
    sk_server *srv;
    sk_server_cfg *cfg;
    struct bufferevent *bev;
    struct event *timer; /* greeting delay; flushing a TLS close */
    sstate state;
    sk_listen_kind kind;
    char id[16];
    char peer[INET6_ADDRSTRLEN];
    int port;
    int loopback;
    int refused; /* over a connection limit: not counted per address */
    int gone;    /* client went away while a reply was pending */
    int discarding, throttled, close_polls;
    unsigned idle;
    unsigned commands;
    char *helo;
    int esmtp;
    int tls;
    char tls_version[16];
    char tls_cipher[64];
    char *auth_user;
    void *user;
    /* SASL exchange */
    sasl_mech mech;
    char *pending_user; /* on_auth answers later: who is being checked */
    sk_buf sasl;        /* LOGIN: the user name between steps */
    /* transaction */
    sk_path *from; /* allocated at MAIL: sessions at rest stay small */
    sk_mail_params *mp;
    sk_envelope_rcpt *rcpts;
    size_t nrcpts, cap_rcpts;
    size_t rcpt_over; /* RCPTs past max_recipients (RFC 5321 4.5.3.1.10) */
    msg_state msg;
    void *msg_ctx;
    int msg_started; /* on_data_start accepted: on_data_end is owed */
    int bdat_mode;
    sk_reply *refusal;
    uint64_t msg_size;
    sk_buf chunk;
    sk_data_decoder dec;
    uint64_t bdat_left;
    int bdat_last;
    /* Slow senders: when the pending command line began, when DATA began
     * and how many octets it has brought (SK_SERVER_DATA_MIN_OCTETS_PER_S). */
    uint64_t line_started_ms, data_started_ms, data_octets;
    uint64_t accepted_ms; /* monotonic: the session's length (sk_session_age_ms) */
};

static inline const sk_logger *logger(const sk_session *s)
{
    return &s->cfg->logger;
}

/* A transaction is open from MAIL until its end or RSET. */
static inline int in_tx(const sk_session *s)
{
    return s->from != NULL;
}

/* Where a session rests between transactions. */
static inline sstate rest_state(const sk_session *s)
{
    return s->helo ? SS_READY : SS_CONNECTED;
}

/* A program's reply that is no SMTP reply (out of range, or 0: "later"
 * where later is not allowed) becomes 451. */
static inline void reply_check(sk_reply *r)
{
    if (sk_reply_class_of(r->code) == SK_REPLY_INVALID)
        *r = sk_reply_make(451, "4.3.0", "Internal error");
}

/* Free a buffer that held AUTH data, overwriting it first. */
static inline void buf_wipe(sk_buf *b)
{
    if (b->data) OPENSSL_cleanse(b->data, b->cap);
    sk_buf_free(b);
}

/* ---- session.c: life, I/O, state and replies ---- */

/* The one place the session state changes (and it is logged). */
void sk_sess_set_state(sk_session *s, sstate to);
/* Write a reply; text lines separated by '\n' become a multi-line reply
 * (RFC 5321 4.2.1). Error replies count against the idle-command limit. */
void sk_sess_reply_text(sk_session *s, int code, const char *enh, const char *text);
void sk_sess_reply(sk_session *s, int code, const char *enh, const char *fmt, ...) SK_PRINTF(4, 5);
void sk_sess_reply_r(sk_session *s, const sk_reply *r);
/* A hook's answer: 0 to go on, 1 when its refusal was sent. */
int sk_sess_hook_refused(sk_session *s, sk_reply *r, const char *hook);
/* Stop reading; the session ends once its last reply is sent. */
void sk_sess_close_after_flush(sk_session *s);
/* The last reply: end the transaction, say it, close after it. */
void sk_sess_end(sk_session *s, int code, const char *enh, const char *fmt, ...) SK_PRINTF(4, 5);
/* 500 for a line that is no command; it also ends a SASL exchange. */
void sk_sess_bad_line(sk_session *s, const char *text);
/* The program answers later, through sk_session_reply (on_auth, on_data_end). */
void sk_sess_wait(sk_session *s);
/* Read what the client sent, as far as the state allows. */
void sk_sess_process(sk_session *s);
/* The server is stopping: a session at rest says 421 and ends (RFC 5321
 * 3.8); 1 when it did. */
int sk_sess_maybe_stop(sk_session *s);
/* A client trickling octets in keeps the idle timeout from firing: end it
 * the way a timeout does. */
void sk_sess_too_slow(sk_session *s, const char *what);
/* The session reads and writes through bev from now on. */
void sk_sess_use_bev(sk_session *s, struct bufferevent *bev);

/* ---- commands.c: the command table and the envelope commands ---- */

/* One command line of n octets with its CRLF (not in DATA or BDAT). */
void sk_sess_handle_line(sk_session *s, char *line, size_t n);
/* End the transaction: envelope and message. */
void sk_sess_tx_reset(sk_session *s);
/* 501 for a command that takes no parameters but was given some: 0. */
int sk_sess_no_args(sk_session *s, const char *args);

/* ---- auth.c: AUTH (RFC 4954) and its throttling ---- */

/* AUTH is announced and taken: a program checks passwords, and the
 * connection is protected (or loopback is allowed in clear text). */
int sk_sess_auth_offered(const sk_session *s);
void sk_sess_cmd_auth(sk_session *s, const char *args);
/* A line of a SASL exchange (state SS_AUTH). */
void sk_sess_auth_line(sk_session *s, const char *line);
/* The program's later answer to AUTH, through sk_session_reply. */
void sk_sess_auth_answer(sk_session *s, sk_reply r);

/* ---- body.c: DATA and BDAT (RFC 5321 4.1.1.4, RFC 3030) ---- */

void sk_sess_cmd_data(sk_session *s, const char *args);
void sk_sess_cmd_bdat(sk_session *s, const char *args);
/* BDAT, or a BDAT refused (with refuse) before it began: either way its
 * chunk is read, never taken for commands (RFC 3030 2). */
void sk_sess_bdat_start(sk_session *s, const char *args, const sk_reply *refuse);
/* Read the stream (states SS_DATA, SS_BDAT); 1 when the caller should look
 * at the input again. */
int sk_sess_data_consume(sk_session *s, struct evbuffer *in);
int sk_sess_bdat_consume(sk_session *s, struct evbuffer *in);
/* Drop the message being received (the program hears of it). */
void sk_sess_msg_abort(sk_session *s);
/* Send the reply to the message and end the transaction. */
void sk_sess_msg_done(sk_session *s, const sk_reply *r);

/* ---- tls.c: implicit TLS, STARTTLS (RFC 3207) ---- */

/* The bufferevent of an implicit TLS connection (RFC 8314 3.3): the
 * handshake starts at once; NULL on failure. */
struct bufferevent *sk_sess_tls_accept(sk_session *s, evutil_socket_t fd);
/* The handshake is done: note and log the version and cipher. */
void sk_sess_tls_up(sk_session *s);
/* The connection failed: log OpenSSL's reason, if it is TLS's doing. */
void sk_sess_tls_error(sk_session *s);
/* STARTTLS is announced: a certificate, and no TLS yet (RFC 3207 4.2). */
int sk_sess_starttls_offered(const sk_session *s);
/* On a submission listener with a certificate, commands without CF_PRE_TLS
 * get 530 until STARTTLS (unless clear-text AUTH on loopback is allowed). */
int sk_sess_tls_required(const sk_session *s);
void sk_sess_cmd_starttls(sk_session *s, const char *args);

#endif
