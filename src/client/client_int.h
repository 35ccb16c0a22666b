/* Private parts of the SMTP client: the session structure, the connection
 * layer (conn.c) and pure helpers the unit tests check directly. */
#ifndef SK_CLIENT_INT_H
#define SK_CLIENT_INT_H

/* OpenSSL's pre-1.1 names include a macro "sk_free", which is ours:
 * hide the deprecated names (we use none). */
#ifndef OPENSSL_NO_DEPRECATED
#define OPENSSL_API_COMPAT    30000
#define OPENSSL_NO_DEPRECATED 1
#endif

#include <openssl/ssl.h>
#include <smtpkit/client.h>
#include <stdatomic.h>

#include "tls/tls_int.h"

/* Session states (RFC 5321 4.1.4 command order). */
typedef enum cl_state {
    CL_CLOSED = 0,
    CL_CONNECTED, /* greeting read (or TLS just established): EHLO next */
    CL_READY,     /* EHLO done: STARTTLS, AUTH or MAIL */
    CL_MAIL,      /* inside a transaction: RSET needed before the next */
    CL__COUNT
} cl_state;

struct sk_client {
    sk_client_opts o; /* strings point into owned copies below */
    char *strings[12];
    size_t nstrings;

    cl_state state;
    int fd;
    sk_tls_sock sock;
    SSL_CTX *ctx;
    SSL *ssl;
    int tls_tried;
    sk_tls_info tls;

    sk_reply_parser parser;
    sk_buf in;  /* received and not yet parsed (pipelined replies) */
    sk_buf raw; /* the raw lines of the reply being read, for the transcript */

    sk_reply greeting;
    int have_greeting;
    sk_reply ehlo;
    int have_ehlo;
    sk_ehlo_info ext;
    /* The EHLO lines, '\n'-joined for callers, and a copy split into
     * keyword / parameter strings for sk_client_ext_param. */
    sk_buf ehlo_lines;
    sk_buf ext_split;
    size_t next;
    size_t ext_kw[SK_SMTP_REPLY_MAX_LINES];
    size_t ext_param[SK_SMTP_REPLY_MAX_LINES];

    sk_sasl_mech authed;
    char remote[64];
    unsigned short rport;
    /* The address connected to, for sk_client_identify's connections. */
    struct sockaddr_storage raddr;
    socklen_t raddrlen;
    sk_peer_info peer; /* what identification found */
    int have_peer;

    /* sk_client_abort, from any thread: the flag, and a pipe whose read end
     * every wait polls with the socket (one octet is written to it), so a
     * call blocked in poll returns at once. Made at sk_client_new, closed
     * at sk_client_free only: another thread may write to it any time. */
    atomic_int aborted;
    int abort_rd, abort_wr;
};

/* conn.c: the socket, TLS and reply reading. Deadlines are sk_now_ms()
 * values. Transport failures close the connection. */
sk_err cl_connect_tcp(sk_client *c, sk_error *err);
/* The handshake, bounded by timeout_ms. first: it is implicit TLS's, the
 * server's first words (identification may run while it waits). */
sk_err cl_tls_handshake(sk_client *c, unsigned timeout_ms, int first, sk_error *err);
/* Wait for events on fd until the deadline (an sk_now_ms() value).
 * SK_ERR_STATE once sk_client_abort was called on c. */
sk_err cl_wait_fd(const sk_client *c, int fd, short events, uint64_t deadline);
/* 1 once sk_client_abort was called on c. */
int cl_aborted(const sk_client *c);
sk_err cl_write(sk_client *c, const char *p, size_t n, unsigned timeout_ms, sk_step step,
                sk_error *err);
/* Write a command line (CRLF added), reported on the transcript as shown
 * (NULL: as sent). */
sk_err cl_send_line(sk_client *c, const char *line, const char *shown, unsigned timeout_ms,
                    sk_step step, sk_error *err);
sk_err cl_read_reply(sk_client *c, unsigned timeout_ms, sk_step step, sk_reply *r, sk_error *err);
void cl_disconnect(sk_client *c);
void cl_info(sk_client *c, const char *fmt, ...) SK_PRINTF(2, 3);
void cl_set_state(sk_client *c, cl_state s);

/* Turn a reply that is not the expected class into an error: 4xx is
 * SK_ERR_TEMPFAIL, 5xx SK_ERR_PERMFAIL (or as given), with code, status,
 * text and hint. Returns the error. */
sk_err cl_reply_error(sk_error *err, sk_step step, const sk_reply *r, sk_err perm);

/* identify.c. Before the greeting on a plain connection: wait until the
 * server says something, at most until deadline; after
 * opts.identify_after_ms of silence identify the peer, and fail
 * (SK_ERR_PROTOCOL, connection closed) when it is a TLS or web server. */
sk_err cl_await_greeting(sk_client *c, uint64_t deadline, sk_error *err);
/* During implicit TLS's handshake, after the ClientHello: the same wait,
 * failing when the peer is a web server or greets in plain SMTP. */
sk_err cl_await_handshake(sk_client *c, uint64_t deadline, sk_error *err);
/* What a peer sent where a TLS handshake was expected: the octets the
 * BIO kept (OpenSSL reads a record header, 5 octets, before it gives up)
 * and what is still waiting on the socket. Returns the length. */
size_t cl_tls_heard(const sk_tls_sock *sock, unsigned char *out, size_t size);
/* The hint for a greeting that did not come in time, from what
 * identification found (NULL when it did not run). */
const char *cl_silence_hint(const sk_client *c);

/* hint.c. The hints that name the caller's settings, one text each: what
 * sk_client_hint chooses from, and what the probe checklist shares. */
typedef enum cl_hint {
    CL_HINT_NONE = 0,
    CL_HINT_TLS_FIRST,       /* a greeting awaited, the port speaks TLS first */
    CL_HINT_HTTP,            /* a web server */
    CL_HINT_PLAIN_SMTP,      /* implicit TLS tried, the port speaks plain SMTP */
    CL_HINT_GREETS_OTHERS,   /* greets other connections, not this one in time */
    CL_HINT_SILENT,          /* says nothing even when spoken to */
    CL_HINT_AUTH_NEEDS_TLS,  /* credentials withheld without TLS */
    CL_HINT_NO_STARTTLS,     /* STARTTLS required, not offered */
    CL_HINT_TLS_NO_GREETING, /* TLS works, no greeting inside it */
    CL_HINT_NO_GREETING,     /* no greeting, nothing identified */
    /* By the kind of error alone. */
    CL_HINT_CONNECT,
    CL_HINT_DNS,
    CL_HINT_TIMEOUT,
    CL_HINT_CLOSED,
    CL_HINT_NOT_SMTP,
    CL_HINT_TLS,
    CL_HINT_TLS_VERIFY,
    CL_HINT_UNSUPPORTED,
    CL_HINT_AUTH,
    CL_HINT_TEMPFAIL,
    CL_HINT_PERMFAIL,
    CL_HINT_CONFIG,
} cl_hint;
/* in's names, with plain words where in (or a member) is NULL. */
void cl_names_resolve(const sk_option_names *in, sk_option_names *out);
/* Hint h with the names n (resolved: no NULL member) into out. */
void cl_hint_format(cl_hint h, const sk_option_names *n, char *out, size_t size);

/* Pure helpers (unit-tested). */
/* What the first octets a peer sent say it is: SK_PEER_SMTP (a reply
 * code), SK_PEER_HTTP, SK_PEER_TLS (a record header), else SK_PEER_OTHER;
 * SK_PEER_UNKNOWN for n == 0. */
sk_peer_kind cl_classify(const unsigned char *b, size_t n);
/* The printable start of the first line of b for sk_peer_info.said. */
void cl_peer_said(const unsigned char *b, size_t n, char *out, size_t size);
/* Parse the lines of an EHLO reply ('\n'-joined text) into info. */
void cl_parse_ehlo(const char *lines, sk_ehlo_info *info);
/* Append data to out dot-stuffed (RFC 5321 4.5.2), lone LF made CRLF,
 * and ended with CRLF "." CRLF (a final CRLF added when missing). *at_bol
 * carries the line state between calls (start with 1); last = 1 for the
 * final piece. */
sk_err cl_stuff(sk_buf *out, const char *data, size_t len, int *at_bol, int last);
/* Extract the queue ID from a final reply's text ("queued as ID"). */
void cl_queue_id(const char *text, char *out, size_t size);
/* 1 when the string has an octet over 127. */
int cl_has_8bit(const char *s, size_t n);

#endif
