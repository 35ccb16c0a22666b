/* The probe checklist of a mail server (what `smtpkit probe` prints): each
 * step from the name to the envelope with a verdict, what was found, what
 * it means and what to do, as data. Part of the client module. */
#ifndef SMTPKIT_PROBE_H
#define SMTPKIT_PROBE_H

#include <netinet/in.h>

#include "client.h"
#include "limits.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum sk_probe_verdict {
    SK_PROBE_PASS = 0, /* works */
    SK_PROBE_WARN,     /* works, but something is worth knowing */
    SK_PROBE_FAIL,     /* does not work; the probe stopped here */
    SK_PROBE_SKIP,     /* not checked: an earlier step failed */
    SK_PROBE__VERDICTS
} sk_probe_verdict;

/* "pass", "warn", "fail", "skip". */
const char *sk_probe_verdict_name(sk_probe_verdict v);

typedef enum sk_probe_check {
    SK_PROBE_DNS = 0, /* the name's addresses */
    SK_PROBE_TCP,     /* a connection to one address (one step each), or all failed */
    SK_PROBE_TLS,     /* implicit TLS, STARTTLS, or none: the session and certificate */
    SK_PROBE_GREETING,
    SK_PROBE_EHLO, /* before TLS and again after STARTTLS */
    SK_PROBE_AUTH,
    SK_PROBE_MAIL,
    SK_PROBE_RCPT, /* one step per recipient */
    SK_PROBE_RSET, /* the envelope reset: nothing is sent */
    SK_PROBE__CHECKS
} sk_probe_check;

/* "dns", "tcp", "tls", "greeting", "ehlo", "auth", "mail", "rcpt", "rset". */
const char *sk_probe_check_name(sk_probe_check c);

/* One extension of an EHLO reply, explained. */
typedef struct sk_probe_ext {
    char keyword[64];  /* upper case: "SIZE" */
    char params[256];  /* "35882577", "" when none */
    char meaning[320]; /* "messages up to 35.9 MB (35882577 octets, RFC 1870)" */
} sk_probe_ext;

/* One line of the checklist. Strings are "" when absent; pointers NULL.
 * Everything stays valid until sk_probe_free. */
typedef struct sk_probe_step {
    sk_probe_check check;
    sk_probe_verdict verdict;
    /* What was found ("127.0.0.1:587 connected") or what went wrong. */
    char detail[SK_REPLY_TEXT_MAX_OCTETS + 64];
    /* What it means, for a refusal or a problem (static storage; NULL). */
    const char *explanation;
    /* What to do about a warning or failure, naming settings as
     * sk_probe_opts.names says. */
    char hint[SK_PROBE_HINT_MAX_OCTETS];
    /* A failed step's error (err, the client step, reply code, text, the
     * library's hint); err is SK_OK for the other verdicts, with step
     * still set. */
    sk_error error;
    int has_reply; /* 1: reply is the server's answer at this step */
    sk_reply reply;
    char address[INET6_ADDRSTRLEN]; /* the address this step is about (tcp, tls, greeting) */
    long elapsed_ms;                /* -1: not measured */

    /* What the step found, by check. */
    const char *const *addresses; /* dns: the addresses, in order */
    size_t naddresses;
    const sk_tls_info *tls;         /* tls: the session and chain, when a handshake completed */
    const sk_peer_info *peer;       /* tls or greeting: what listens, when no SMTP greeting came */
    char server_name[256];          /* ehlo: the server's name from the first line */
    int esmtp;                      /* ehlo: 1 EHLO accepted, 0 fell back to HELO */
    const sk_probe_ext *extensions; /* ehlo: each announced extension */
    size_t nextensions;
    const char *mechanism;                   /* auth: the mechanism that succeeded */
    char recipient[SK_SMTP_PATH_MAX_OCTETS]; /* rcpt */
    /* 1: some of the above could not be kept (out of memory) and is left
     * out whole. */
    int truncated;
} sk_probe_step;

/* Called as each step ends (skipped steps too, at the end), for live
 * output; step is valid during the call. */
typedef void (*sk_probe_step_fn)(void *ctx, const sk_probe_step *step);

typedef struct sk_probe_opts {
    /* With from: MAIL FROM:<from>, RCPT TO for each of to, then RSET.
     * NULL: no envelope. At most SK_PROBE_RCPTS_MAX recipients. */
    const char *from;
    const char *const *to;
    size_t nto;
    const sk_option_names *names; /* NULL: plain words */
    sk_probe_step_fn on_step;     /* NULL: none */
    void *on_step_ctx;
} sk_probe_opts;

typedef struct sk_probe sk_probe;

/* Run the checklist with c's settings (host, port, TLS mode and
 * verification, credentials, EHLO name, timeouts, transcript, resolve
 * hook): dns, tcp to every address (connect_timeout_ms each), then on the
 * first that connected implicit TLS, greeting (a silent port is asked what
 * it is after SK_CLIENT_IDENTIFY_AFTER_MS unless opts.identify_after_ms
 * says otherwise), EHLO, STARTTLS or why not, AUTH when a user is set,
 * the envelope when opts->from is set. Stops at the first failure; the
 * steps that would have followed are SK_PROBE_SKIP. Nothing is sent. c
 * must be closed (new, or after QUIT) and is closed again at the end (QUIT
 * sent); sk_client_abort(c) from another thread ends the probe at its next
 * wait, that step failing with SK_ERR_STATE.
 *
 * *out (free with sk_probe_free) holds the steps whenever it is set: the
 * return is SK_OK when no step failed (warnings allowed), else the failed
 * step's error, also copied to err. Without *out (NULL) the probe did not
 * run: SK_ERR_INVAL (bad opts, c not closed) or SK_ERR_NOMEM. */
SK_NODISCARD sk_err sk_client_probe(sk_client *c, const sk_probe_opts *opts, sk_probe **out,
                                    sk_error *err);

size_t sk_probe_count(const sk_probe *p);
/* The i-th step (NULL past the end). */
const sk_probe_step *sk_probe_step_at(const sk_probe *p, size_t i);
/* The failed step, NULL when none failed. */
const sk_probe_step *sk_probe_failure(const sk_probe *p);
/* The worst verdict of the steps that ran (PASS, WARN or FAIL). */
sk_probe_verdict sk_probe_overall(const sk_probe *p);
void sk_probe_free(sk_probe *p);

#ifdef __cplusplus
}
#endif
#endif
