/* Reading bounces: standard reports (RFC 3464, read leniently) and the
 * plain-text formats of the MTAs and providers that still send them, one
 * detector per family, into one result shape; and what they mean for the
 * recipient (class, suppress or not) by the rules of classify.h. */
#ifndef SMTPKIT_BOUNCE_H
#define SMTPKIT_BOUNCE_H

#include <stdint.h>

#include "classify.h"
#include "util.h"

#ifdef __cplusplus
extern "C" {
#endif

/* One recipient a bounce reports on. Strings are NULL when the bounce
 * does not say. */
typedef struct sk_bounce_rcpt {
    /* The original envelope recipient when it can be found (a VERP
     * address, an Original-Recipient field, X-Failed-Recipients), else
     * the address the bounce names. */
    char *recipient;
    char *reported;   /* the address as the bounce names it (Final-Recipient, text) */
    int action;       /* sk_dsn_action (dsn.h): failed, delayed, ...; -1 unknown */
    char *status;     /* enhanced status "5.1.1", from the report or the text */
    char *reply;      /* the remote reply or the reason in words */
    char *remote_mta; /* the host that gave the reply */
} sk_bounce_rcpt;

/* What a message says, whichever detector read it. */
typedef struct sk_bounce {
    const char *detector; /* "rfc3464", "postfix", "qmail", ... ; NULL: not a bounce */
    char *reporting_mta;  /* the MTA that wrote the bounce */
    char *original_message_id;
    size_t nrcpts;
    sk_bounce_rcpt *rcpts;
} sk_bounce;

/* Read a message (CRLF or LF, at most SK_REPORT_MAX_OCTETS). SK_OK with
 * detector NULL and no recipients when it is not a bounce we recognise;
 * errors only for memory and size. A VERP address of ours (queue.h's
 * prefix) in X-Original-To, Delivered-To or To gives the original
 * recipient of a bounce about one recipient. Free with sk_bounce_free. */
SK_NODISCARD sk_err sk_bounce_read(const char *msg, size_t len, sk_bounce **out, sk_error *err);
void sk_bounce_free(sk_bounce *b);

/* The detectors in the order they run (the last is the last-resort
 * scanner), NULL-terminated: the names sk_bounce.detector takes. */
const char *const *sk_bounce_detectors(void);

/* What one recipient's outcome means. */
typedef struct sk_bounce_verdict {
    sk_class cls;
    int permanent;       /* a failure that will not go away by retrying */
    int suppress;        /* the class's policy suppresses (evidence still needed) */
    uint64_t suppress_s; /* for this long */
    int evidence_any;    /* the class's policy needs no strong evidence */
    size_t rule_line;    /* rule that decided, 0: none (or the action did) */
} sk_bounce_verdict;

/* Classify r by rules (NULL: the built-in rules are not loaded here;
 * pass sk_rules_default's). Delayed and delivered outcomes are never
 * permanent nor suppress; a failure whose status is temporary (4.x.x)
 * is "expired" (given up after retries); a failure no rule explains is
 * "undetermined". */
sk_bounce_verdict sk_bounce_classify(const sk_bounce_rcpt *r, const sk_rules *rules);

/* 1 when host (a name, maybe with "[IP]" or ":port" after it) is domain
 * or under it: the answer came from the recipient domain's own servers
 * (the strong evidence of sk_suppress_after_bounce). */
int sk_bounce_host_in_domain(const char *host, const char *domain);

/* "550 5.1.1 text" into code, enhanced status and text (for the rules);
 * code 0 and enhanced "" when absent. */
void sk_bounce_split_reply(const char *s, int *code, char *enhanced, size_t esize,
                           const char **text);

#ifdef __cplusplus
}
#endif
#endif
