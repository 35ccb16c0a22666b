/* The SMTP client: a blocking session with timeouts that connects (TCP,
 * TLS, EHLO, STARTTLS, AUTH) and sends messages, one call at a time or in
 * steps for diagnosis. */
#ifndef SMTPKIT_CLIENT_H
#define SMTPKIT_CLIENT_H

#include <stdint.h>
#include <sys/socket.h>

#include "reply.h"
#include "sasl.h"
#include "tls.h"
#include "util.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sk_client sk_client;
/* The composed message (include/smtpkit/message.h). */
typedef struct sk_message sk_message;

/* A line of the SMTP conversation as it happens: dir 'C' client to server,
 * 'S' server to client, '*' information (connected to, TLS established).
 * line has no CRLF and is not NUL-terminated. AUTH data is masked, and
 * message content (after DATA) is not reported. */
typedef void (*sk_transcript_fn)(void *ctx, char dir, const char *line, size_t len);

/* The addresses of host to connect to, in the order to try them (RFC 5321
 * 5.1): fill at most max entries of addrs, each an AF_INET or AF_INET6
 * address with its port set (normally port), and return how many; 0 when
 * the name has no address, -1 when the answer is not known now (a
 * temporary resolver failure). For programs with their own resolver or
 * address cache, and for tests. */
typedef int (*sk_client_resolve_fn)(void *ctx, const char *host, unsigned short port,
                                    struct sockaddr_storage *addrs, size_t max);

/* Progress of a message's transfer (DATA): sent octets of the message
 * handed to the network so far, of total. Called with 0 before the first
 * block, after each block, and last with sent == total. For a progress
 * display; it must not call back into the client. */
typedef void (*sk_progress_fn)(void *ctx, uint64_t sent, uint64_t total);

/* What listens on a port that gave no SMTP greeting (sk_client_identify). */
typedef enum sk_peer_kind {
    SK_PEER_UNKNOWN = 0, /* not found out (no identification ran, or it was cut short) */
    SK_PEER_SMTP,        /* answers with SMTP replies (perhaps only later) */
    SK_PEER_TLS,         /* speaks TLS from the first byte: answers a TLS ClientHello */
    SK_PEER_HTTP,        /* a web server: answers an HTTP request */
    SK_PEER_OTHER,       /* says something that is none of these */
    SK_PEER_SILENT,      /* says nothing, even when spoken to */
    SK_PEER_CLOSED,      /* closes the connection without a word */
    SK_PEER__COUNT
} sk_peer_kind;

typedef struct sk_peer_info {
    sk_peer_kind kind;
    /* The start of the first line the peer sent, printable ASCII ('.' for
     * other octets; TLS records are shown as "(TLS record)"); "" when
     * nothing came. */
    char said[96];
} sk_peer_info;

/* "smtp", "tls", "http", "other", "silent", "closed", "unknown". */
const char *sk_peer_kind_name(sk_peer_kind k);

typedef struct sk_client_opts {
    const char *host; /* name or address of the server; required */
    /* 0: 465 with SK_TLS_IMPLICIT, 587 otherwise (RFC 6409 submission). */
    unsigned short port;
    sk_tls_mode tls;
    const char *ca_file;  /* PEM trust anchors; NULL = the system store */
    int insecure;         /* 1: do not verify the certificate (still encrypts) */
    const char *tls_name; /* name to verify and send as SNI; NULL = host */
    /* Numeric IPv4/IPv6 address to connect to instead of resolving host;
     * the certificate is still verified against tls_name/host. */
    const char *connect_address;
    /* NULL: getaddrinfo(3). Not called when connect_address is set. */
    sk_client_resolve_fn resolve;
    void *resolve_ctx;
    /* NULL = this machine's FQDN; an address literal ("[192.0.2.1]") when
     * the host name has no domain (RFC 5321 4.1.4). */
    const char *helo_name;

    const char *user; /* NULL: no AUTH */
    const char *password;
    const char *oauth_token; /* XOAUTH2 bearer token (with user) */
    const char *auth_mech;   /* NULL = strongest offered (see sk_sasl_choose) */
    /* 1: allow AUTH over a connection without TLS. By default credentials
     * are never sent in the clear (RFC 4954 4, RFC 8314 3). */
    int allow_plaintext_auth;

    /* Timeouts in milliseconds; 0 = the RFC 5321 4.5.3.2 values of
     * include/smtpkit/limits.h. command_timeout_ms covers EHLO, STARTTLS,
     * AUTH, RSET, NOOP and QUIT. */
    unsigned connect_timeout_ms;
    unsigned greeting_timeout_ms;
    unsigned command_timeout_ms;
    unsigned mail_timeout_ms;
    unsigned rcpt_timeout_ms;
    unsigned data_init_timeout_ms;
    unsigned data_block_timeout_ms;
    unsigned data_end_timeout_ms;

    sk_transcript_fn transcript; /* NULL: none */
    void *transcript_ctx;
    sk_logger log; /* fn NULL: logging off */

    /* For interactive programs: when the server has said nothing this
     * long after the TCP connection (no greeting; with implicit TLS, no
     * answer to the ClientHello), find out on two more connections what
     * listens there (sk_client_identify). A TLS server or a web server
     * ends the wait at once (SK_ERR_PROTOCOL at step greeting); anything
     * else, an SMTP server that greets late included, is waited for until
     * greeting_timeout_ms. 0: never (the default; what an MTA wants). */
    unsigned identify_after_ms;
    sk_progress_fn progress; /* NULL: none */
    void *progress_ctx;
} sk_client_opts;

/* ESMTP extensions the server announced (RFC 5321 4.1.1.1), parsed. */
enum {
    SK_CLIENT_EXT_SIZE = 1u << 0,                /* RFC 1870 */
    SK_CLIENT_EXT_PIPELINING = 1u << 1,          /* RFC 2920 */
    SK_CLIENT_EXT_8BITMIME = 1u << 2,            /* RFC 6152 */
    SK_CLIENT_EXT_SMTPUTF8 = 1u << 3,            /* RFC 6531 */
    SK_CLIENT_EXT_ENHANCEDSTATUSCODES = 1u << 4, /* RFC 2034 */
    SK_CLIENT_EXT_DSN = 1u << 5,                 /* RFC 3461 */
    SK_CLIENT_EXT_CHUNKING = 1u << 6,            /* RFC 3030 */
    SK_CLIENT_EXT_STARTTLS = 1u << 7,            /* RFC 3207 */
    SK_CLIENT_EXT_MT_PRIORITY = 1u << 8,         /* RFC 6710 */
    SK_CLIENT_EXT_AUTH = 1u << 9,                /* RFC 4954 */
    SK_CLIENT_EXT_BINARYMIME = 1u << 10,         /* RFC 3030 */
};

typedef struct sk_ehlo_info {
    int esmtp;         /* 1: EHLO accepted; 0: fell back to HELO */
    unsigned ext;      /* SK_CLIENT_EXT_* bits */
    uint64_t size_max; /* SIZE parameter; 0 = none announced or no limit */
    char auth[256];    /* AUTH mechanisms, space-separated as announced */
    char domain[256];  /* the server's name from the first EHLO line */
} sk_ehlo_info;

/* A new, unconnected client; NULL on allocation failure or missing host.
 * The options' strings are copied. */
sk_client *sk_client_new(const sk_client_opts *opts);
/* Closes the connection (without QUIT) and releases everything; NULL ok. */
void sk_client_free(sk_client *c);
/* End what c is doing, from any thread (or a signal handler), while
 * another thread may be inside a call on c: that call returns at once
 * (its next wait for the network, at most one TLS record later) with
 * SK_ERR_STATE, "aborted", and the connection closed without QUIT, so a
 * message whose end (CRLF.CRLF) was not sent is not delivered (RFC 5321
 * 4.1.1.4). Name resolution (getaddrinfo) is not interrupted: it ends
 * when the resolver answers. An aborted client stays so: every later call
 * fails the same way; free it and make a new one. For bindings that map a
 * cancelled task onto the blocking calls (Swift, docs/swift.md). Must
 * not race with sk_client_free. */
void sk_client_abort(sk_client *c);

/* Everything up to ready-to-send: resolve; try each A/AAAA address in turn;
 * TCP; implicit TLS; greeting; EHLO (HELO fallback); STARTTLS and EHLO
 * again; AUTH when a user is set. On failure the connection is closed and
 * err says at which step and why. */
SK_NODISCARD sk_err sk_client_connect(sk_client *c, sk_error *err);

/* The same in steps, for diagnosis (smtpkit probe). Each step needs the
 * previous one; calling out of order is SK_ERR_STATE. */
/* Resolve, TCP (every address in turn), implicit TLS, read the greeting. */
SK_NODISCARD sk_err sk_client_open(sk_client *c, sk_error *err);
/* EHLO, or HELO when EHLO gets 5xx (RFC 5321 3.2). */
SK_NODISCARD sk_err sk_client_ehlo(sk_client *c, sk_error *err);
/* STARTTLS, handshake, verification, then EHLO again (RFC 3207 4.2: what
 * was learned before TLS is discarded). */
SK_NODISCARD sk_err sk_client_starttls(sk_client *c, sk_error *err);
/* AUTH with opts.user and opts.password/oauth_token. */
SK_NODISCARD sk_err sk_client_authenticate(sk_client *c, sk_error *err);
/* MAIL FROM:<from> [params]; RCPT TO:<rcpt> [params]. from may be "" (the
 * null reverse-path). reply (optional) receives the server's answer. A
 * 4xx/5xx answer is SK_ERR_TEMPFAIL/SK_ERR_PERMFAIL with err filled. */
SK_NODISCARD sk_err sk_client_mail(sk_client *c, const char *from, const char *params,
                                   sk_reply *reply, sk_error *err);
SK_NODISCARD sk_err sk_client_rcpt(sk_client *c, const char *rcpt, const char *params,
                                   sk_reply *reply, sk_error *err);
/* DATA, the message (CRLF lines; dot-stuffed here, RFC 5321 4.5.2), and
 * the final CRLF.CRLF. reply receives the final answer. */
SK_NODISCARD sk_err sk_client_data(sk_client *c, const char *data, size_t len, sk_reply *reply,
                                   sk_error *err);
SK_NODISCARD sk_err sk_client_rset(sk_client *c, sk_error *err);
SK_NODISCARD sk_err sk_client_noop(sk_client *c, sk_error *err);
/* QUIT, read the answer, close. The client can be opened again. */
sk_err sk_client_quit(sk_client *c, sk_error *err);
/* Close without QUIT. */
void sk_client_close(sk_client *c);

/* Find out what listens at the address the client last connected to
 * (after sk_client_open, successful or not, got a TCP connection): two
 * connections of its own, one sending a TLS ClientHello and one an HTTP
 * request (HEAD /), each waiting at most wait_ms for the first answer
 * (0: SK_CLIENT_IDENTIFY_WAIT_MS). A TLS record is SK_PEER_TLS, an HTTP
 * response SK_PEER_HTTP, an SMTP reply SK_PEER_SMTP; the client's own
 * connection is left as it is. The result is also kept for
 * sk_client_peer. SK_ERR_STATE before any connection. */
SK_NODISCARD sk_err sk_client_identify(sk_client *c, unsigned wait_ms, sk_peer_info *out,
                                       sk_error *err);
/* What the last identification found (opts.identify_after_ms during
 * sk_client_open, or sk_client_identify); NULL when none ran since the
 * last sk_client_open. */
const sk_peer_info *sk_client_peer(const sk_client *c);

/* What the session learned; valid until the next step or sk_client_free.
 * NULL when not reached yet. */
const sk_reply *sk_client_greeting(const sk_client *c);
const sk_reply *sk_client_ehlo_reply(const sk_client *c);
/* The EHLO reply's lines, untruncated, joined by '\n' (the raw extension
 * list, first line = the server's name). "" before EHLO. */
const char *sk_client_ehlo_lines(const sk_client *c);
const sk_ehlo_info *sk_client_extensions(const sk_client *c);
/* The parameters of an announced extension ("" when it has none), or NULL
 * when not announced. Keyword is case-insensitive ("SIZE", "AUTH"). */
const char *sk_client_ext_param(const sk_client *c, const char *keyword);
/* Numeric address connected to ("192.0.2.1", "2001:db8::1"); "" when not
 * connected. */
const char *sk_client_remote_address(const sk_client *c);
unsigned short sk_client_remote_port(const sk_client *c);
/* TLS details; NULL when no handshake was attempted. Filled even when
 * verification failed (verified == 0). */
const sk_tls_info *sk_client_tls_info(const sk_client *c);
int sk_client_is_tls(const sk_client *c);
/* The mechanism AUTH succeeded with, SK_SASL_NONE when not authenticated. */
sk_sasl_mech sk_client_auth_mech(const sk_client *c);

/* Per-transaction choices (all optional; a zeroed struct or NULL = none). */
typedef struct sk_send_opts {
    /* RFC 3461 DSN, used when the server announces DSN, else skipped and
     * reported on the transcript. */
    const char *dsn_ret;    /* "FULL" or "HDRS" */
    const char *dsn_envid;  /* envelope id (xtext-encoded here) */
    const char *dsn_notify; /* "NEVER" or a list of SUCCESS,FAILURE,DELAY */
    /* 1: an ORCPT naming the recipient on each RCPT without one:
     * rfc822;<xtext> for ASCII, else the RFC 6533 "utf-8" type
     * (sk_orcpt_format). */
    int dsn_orcpt;
    /* 1: dsn_envid is already xtext (an ENVID as received, RFC 3461 4.4)
     * and goes out exactly as it is; checked, not encoded again. */
    int dsn_envid_xtext;
    /* RFC 6710 MT-PRIORITY -9..9, used when has_priority and announced. */
    int has_priority;
    int priority;
} sk_send_opts;

typedef struct sk_rcpt_result {
    char *address;
    sk_reply reply;
    int accepted; /* 1: 2xx to RCPT */
} sk_rcpt_result;

typedef struct sk_send_result {
    sk_reply mail;         /* answer to MAIL */
    sk_rcpt_result *rcpts; /* one per recipient, in order */
    size_t nrcpt;
    size_t naccepted;
    sk_reply data;     /* the final answer after the message ("queued as") */
    int sent;          /* 1: the server took the message (data.code 250) */
    char queue_id[64]; /* from "queued as ID" in data.text, "" when absent */
} sk_send_result;

/* Send one message on a connected client. data is an RFC 5322 message
 * with CRLF line ends; the client dot-stuffs it and ends it with
 * CRLF.CRLF. Uses PIPELINING when announced (RFC 2920); refuses before
 * sending when SIZE is exceeded (RFC 1870, SK_ERR_TOO_LONG); adds
 * BODY=8BITMIME for 8-bit data (RFC 6152) and SMTPUTF8 for non-ASCII
 * addresses (RFC 6531), SK_ERR_UNSUPPORTED before sending anything when
 * the server does not announce what is needed. When some recipients are
 * refused the message goes to the others and res says which failed;
 * SK_OK then. When all are refused the transaction is reset and the error
 * is the last refusal. res (optional) is filled as far as the transaction
 * got; free it with sk_send_result_free. Call again for the next message
 * on the same connection. */
SK_NODISCARD sk_err sk_client_send(sk_client *c, const char *from, const char *const *rcpts,
                                   size_t nrcpt, const char *data, size_t len,
                                   const sk_send_opts *opts, sk_send_result *res, sk_error *err);
/* One recipient with its own RFC 3461 parameters, as a relay passes them
 * on (RFC 3461 5.2.1). Strings are not copied beyond the call. */
typedef struct sk_rcpt_spec {
    const char *address; /* forward path without <> (required) */
    /* NOTIFY for this recipient: "NEVER" or a list of SUCCESS, FAILURE,
     * DELAY. NULL = opts->dsn_notify. */
    const char *notify;
    /* ORCPT as received: address type, ';', xtext ("rfc822;a+2Bb@example.org",
     * RFC 3461 4.2, at most 500 octets), or the RFC 6533 "utf-8" type. It
     * goes out unchanged, but for a "utf-8" value with UTF-8 in a
     * transaction without SMTPUTF8, written in its 7-bit form
     * (sk_orcpt_pass). NULL = one naming the address when
     * opts->dsn_orcpt, else none. */
    const char *orcpt;
} sk_rcpt_spec;

/* sk_client_send with per-recipient NOTIFY and ORCPT. Like every DSN
 * parameter they go out only when the server announces DSN; otherwise
 * none is sent (and the transcript says so). A malformed value is
 * SK_ERR_INVAL before anything is sent. */
SK_NODISCARD sk_err sk_client_send_rcpts(sk_client *c, const char *from, const sk_rcpt_spec *rcpts,
                                         size_t nrcpt, const char *data, size_t len,
                                         const sk_send_opts *opts, sk_send_result *res,
                                         sk_error *err);
/* The same with a composed message: envelope from its From/Sender and
 * To/Cc/Bcc, content from sk_message_render (Bcc not rendered). */
SK_NODISCARD sk_err sk_client_send_message(sk_client *c, const sk_message *m,
                                           const sk_send_opts *opts, sk_send_result *res,
                                           sk_error *err);
void sk_send_result_free(sk_send_result *res);

/* How hints name the settings they point at: the caller's words for them
 * (`smtpkit send` says "--tls implicit", the Swift package its own
 * property names). A NULL member, or NULL for the whole, uses plain words
 * ("implicit TLS", "the timeout"). Used by sk_client_hint and by the probe
 * checklist (probe.h). */
typedef struct sk_option_names {
    const char *tls_starttls; /* "--tls starttls" */
    const char *tls_implicit; /* "--tls implicit" */
    const char *tls_none;     /* "--tls none" */
    const char *ca_file;      /* "--ca-file" */
    const char *insecure;     /* "--insecure" */
    const char *tls_name;     /* "--tls-name" */
    const char *timeout;      /* "--timeout" */
    const char *server;       /* where host and port are set: "--server" */
    /* The user and password, as one phrase ("check %s"): "--user and the
     * password (--password-file or SMTPKIT_PASSWORD)". */
    const char *credentials;
    const char *allow_plaintext_auth; /* "--allow-plaintext-auth" */
} sk_option_names;

/* What to do about err, an error of c's session, for people: one line
 * naming settings as names says. The choice uses what c learned (the
 * greeting, what identification found on a silent port, the TLS session),
 * then err (its step and kind, the library's hint, the reply explained by
 * sk_reply_explain), then the kind of error alone. c may be NULL (an error
 * of no session, or one already freed): err alone then. The line is
 * written to out (at most size - 1 octets; SK_CLIENT_HINT_MAX_OCTETS holds
 * every hint with names of up to SK_CLIENT_HINT_NAME_MAX_OCTETS); returns
 * out, or NULL with out "" when there is nothing to say (no error, or
 * nothing known about it). Reads c only: call it before sk_client_open,
 * sk_client_connect or sk_client_free change what c learned. */
const char *sk_client_hint(const sk_client *c, const sk_error *err, const sk_option_names *names,
                           char *out, size_t size);

/* One shot: connect, send m, QUIT. */
SK_NODISCARD sk_err sk_send(const sk_client_opts *opts, const sk_message *m, sk_error *err);

#ifdef __cplusplus
}
#endif
#endif
