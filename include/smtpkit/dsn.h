/* Delivery status notifications: building bounces (RFC 3464, RFC 3461,
 * RFC 6522 multipart/report) and reading the reports others send us (DSNs
 * and RFC 5965 ARF complaints). */
#ifndef SMTPKIT_DSN_H
#define SMTPKIT_DSN_H

#include <stdint.h>

#include "proto.h" /* sk_dsn_ret, SK_DSN_NOTIFY_* */
#include "util.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Room for the longest NOTIFY value, "SUCCESS,FAILURE,DELAY". */
#define SK_DSN_NOTIFY_TEXT_SIZE 32

/* RFC 3464 2.3.3 Action values. */
typedef enum sk_dsn_action {
    SK_DSN_FAILED = 0,
    SK_DSN_DELAYED,
    SK_DSN_DELIVERED,
    SK_DSN_RELAYED,
    SK_DSN_EXPANDED,
    SK_DSN_ACTION__COUNT
} sk_dsn_action;
const char *sk_dsn_action_name(sk_dsn_action a); /* "failed", "delayed", ... */
/* Parse an Action value (case-insensitive, comments ignored); -1 if unknown. */
int sk_dsn_action_parse(const char *s);

/* Must a DSN with this action be sent for a recipient? Never to the null
 * sender (RFC 5321 6.1, RFC 3461 6.2), never with NOTIFY=NEVER; otherwise
 * when notify (SK_DSN_NOTIFY_* bits, 0 = NOTIFY not given) asks for it.
 * Without NOTIFY we report failures only (RFC 3461 4.1 leaves the choice
 * between FAILURE and FAILURE,DELAY to the MTA). */
int sk_dsn_wanted(const char *sender, unsigned notify, sk_dsn_action action);

/* One recipient reported in a DSN we build. Strings are not owned. */
typedef struct sk_dsn_rcpt {
    const char *address; /* Final-Recipient: the address we tried */
    /* RFC 3461 ORCPT as received ("rfc822;a+2Bb@c", or RFC 6533
     * "utf-8;j\x{F6}rg@c"), NULL = none */
    const char *orcpt;
    sk_dsn_action action;
    const char *status;     /* RFC 3463 "5.1.1" (required) */
    const char *remote_mta; /* host that answered ("mx.example.net"), NULL = none */
    const char *diagnostic; /* its reply ("550 5.1.1 no such user"), NULL = none */
    /* RFC 3464 2.3.6 diagnostic type: NULL = "smtp" (diagnostic is an SMTP
     * reply); for our own text (DNS failure, expiry) e.g. "X-SMTPKit". */
    const char *diagnostic_type;
    int64_t last_attempt; /* unix seconds, 0 = not given */
    int64_t retry_until;  /* delayed: when we give up (Will-Retry-Until), 0 = not given */
} sk_dsn_rcpt;

/* The message being reported on and how to report. Strings not owned. */
typedef struct sk_dsn_opts {
    const char *reporting_mta; /* our host name (required): From, Reporting-MTA */
    const char *sender;        /* the original envelope sender: the DSN's To */
    const char *envid;         /* RFC 3461 ENVID as received (xtext), NULL = none */
    int64_t arrival;           /* when we accepted the message, unix seconds; 0 = not given */
    sk_dsn_ret ret;            /* RET=FULL or HDRS; UNSPECIFIED = FULL when small */
    /* The whole message is returned only up to this size, else its headers
     * (0 = SK_DSN_FULL_MAX_OCTETS_DEFAULT). */
    size_t full_max_octets;
    int64_t now; /* Date of the report; 0 = the current time */
} sk_dsn_opts;

/* Build the DSN: a complete RFC 5322 message with CRLF line ends, appended
 * to out. Its envelope sender is the null sender ("MAIL FROM:<>", RFC 3461
 * 6.2) and its recipient o->sender; the caller submits it. msg is the
 * original message as stored (CRLF or LF line ends). */
SK_NODISCARD sk_err sk_dsn_build(const sk_dsn_opts *o, const sk_dsn_rcpt *rcpts, size_t n,
                                 const char *msg, size_t msg_len, sk_buf *out, sk_error *err);

/* The NOTIFY value for a set of SK_DSN_NOTIFY_* bits, as it goes on a RCPT
 * command ("NEVER", "SUCCESS,FAILURE,DELAY"); NULL for 0 (not given).
 * buf holds the text. */
const char *sk_dsn_notify_format(unsigned notify, char buf[SK_DSN_NOTIFY_TEXT_SIZE]);

/* ---- reading reports ---- */

typedef enum sk_report_type {
    SK_REPORT_NONE = 0, /* not a report we understand */
    SK_REPORT_DSN,      /* multipart/report; report-type=delivery-status */
    SK_REPORT_ARF,      /* multipart/report; report-type=feedback-report (RFC 5965) */
} sk_report_type;

/* One per-recipient block of a DSN. Strings are NULL when absent; address
 * fields lose their address type ("rfc822;") and angle brackets, and an
 * RFC 6533 "utf-8" address is decoded to UTF-8. */
typedef struct sk_report_rcpt {
    char *final_recipient;
    char *original_recipient;
    int action;       /* sk_dsn_action, or -1 when absent or unknown */
    char *status;     /* "5.1.1" (comments dropped) */
    char *diagnostic; /* Diagnostic-Code without its type: "550 5.1.1 ..." */
    char *remote_mta; /* Remote-MTA without its type */
    /* The comment of the Status line ("5.0.0 (user unknown)"): some MTAs
     * give their reason only there. */
    char *status_comment;
} sk_report_rcpt;

typedef struct sk_report {
    sk_report_type type;
    /* DSN */
    char *reporting_mta;
    char *envid; /* Original-Envelope-Id */
    size_t nrcpts;
    sk_report_rcpt *rcpts;
    /* ARF (RFC 5965 3.1, 3.2) */
    char *feedback_type; /* "abuse", "fraud", ... */
    char *user_agent;
    char *original_mail_from;
    char *original_rcpt_to; /* the first one */
    char *source_ip;
    char *arrival_date;
    /* Both: Message-ID of the returned message or headers, for matching */
    char *original_message_id;
} sk_report;

/* Parse a report (a whole message, CRLF or LF). Tolerant of common
 * variants: missing report-type, a report nested in multipart/mixed or a
 * status part straight inside one, a bounce forwarded as an attached
 * message/rfc822, base64 or quoted-printable parts, LF line ends, folded
 * fields, address fields without type, per-recipient blocks without the
 * empty line between them, Action values outside RFC 3464 ("expired",
 * "failure"), a block with Status but no recipient field (final_recipient
 * NULL: the address is in the text). SK_OK with type NONE when the
 * message is not a report, or is a report of another report-type (RFC
 * 6522: a quota notice, say); SK_ERR_SYNTAX when it claims to be a DSN
 * but has no status part.
 * *out is released with sk_report_free. */
SK_NODISCARD sk_err sk_report_parse(const char *msg, size_t len, sk_report **out, sk_error *err);
void sk_report_free(sk_report *r);

#ifdef __cplusplus
}
#endif
#endif
