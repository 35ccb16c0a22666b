/* Classification of delivery replies by rules that users can extend: what
 * a reply means (bad mailbox, throttled, ...) and what the queue should do
 * about the destination (suspend it, slow down). */
#ifndef SMTPKIT_CLASSIFY_H
#define SMTPKIT_CLASSIFY_H

#include <stdint.h>

#include "util.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum sk_class {
    SK_CLASS_OTHER = 0,
    SK_CLASS_BAD_MAILBOX,      /* the address does not exist */
    SK_CLASS_MAILBOX_FULL,     /* over quota */
    SK_CLASS_DOMAIN_NOT_FOUND, /* no such domain, null MX, no route */
    SK_CLASS_POLICY,           /* spam or reputation block, policy refusal */
    SK_CLASS_TLS_REQUIRED,     /* the peer wants encryption */
    SK_CLASS_THROTTLED,        /* too many connections or messages: slow down */
    SK_CLASS_MESSAGE_TOO_BIG,
    SK_CLASS_AUTH,             /* SMTP authentication needed or refused */
    SK_CLASS_EXPIRED,          /* given up after retries (queue lifetime) */
    SK_CLASS_BLOCKED,          /* the sending IP or domain is on a block list, bad reputation */
    SK_CLASS_CONTENT,          /* the message was taken for spam or its content refused */
    SK_CLASS_VIRUS,            /* a virus or malware was found */
    SK_CLASS_AUTH_FAILURE,     /* the sender failed SPF, DKIM or DMARC */
    SK_CLASS_MAILBOX_DISABLED, /* the mailbox exists but takes no mail (X.2.1) */
    SK_CLASS_SYSTEM_ERROR,     /* trouble at the receiving side (loops, local errors) */
    SK_CLASS_UNDETERMINED,     /* a failure no rule explains */
    SK_CLASS__COUNT
} sk_class;
const char *sk_class_name(sk_class c); /* "bad-mailbox", ... (the rules file's names) */
int sk_class_parse(const char *name);  /* -1 when unknown */
/* 1 for throttled and expired: classes that never suppress a recipient,
 * whatever a rules file says. */
int sk_class_is_temporary(sk_class c);

/* What a class means for the recipient, from the rules file's define
 * lines (docs/delivery.md). */
typedef struct sk_class_policy {
    int defined;         /* a define line names the class */
    int suppress;        /* a permanent failure of the class suppresses */
    uint64_t suppress_s; /* for this long (seconds) */
    int evidence_any;    /* 0: strong evidence only (the default); 1: one bounce */
} sk_class_policy;

/* What to do about the destination (the MX or relay) after such a reply. */
typedef enum sk_traffic_kind {
    SK_TRAFFIC_NONE = 0,
    SK_TRAFFIC_SUSPEND, /* send nothing there for duration_ms */
    SK_TRAFFIC_RATE,    /* at most rate_count messages per rate_per_ms, for duration_ms */
} sk_traffic_kind;

typedef struct sk_traffic_action {
    sk_traffic_kind kind;
    uint64_t duration_ms;
    unsigned rate_count;
    uint64_t rate_per_ms;
} sk_traffic_action;

typedef struct sk_rule_match {
    int matched; /* 0: no rule matched (class OTHER, no action) */
    sk_class cls;
    sk_traffic_action action;
    size_t line; /* line of the rule that matched, for logs */
    /* Rules skipped because their regex reached a match, depth or heap
     * limit (SK_RULES_REGEX_*) or memory ran out: worth a log line. */
    unsigned undecided;
} sk_rule_match;

/* A compiled rule list. Opaque; read-only once loaded, so one list can be
 * shared by threads. */
typedef struct sk_rules sk_rules;

/* Load rules from a file (format: docs/delivery.md). On error *out is NULL
 * and err->text is "FILE:LINE: what is wrong" (SK_ERR_CONFIG), or names
 * the file when it cannot be read (SK_ERR_IO). */
SK_NODISCARD sk_err sk_rules_load(const char *path, sk_rules **out, sk_error *err);
/* The same from text in memory; origin names it in errors. */
SK_NODISCARD sk_err sk_rules_parse(const char *text, size_t len, const char *origin, sk_rules **out,
                                   sk_error *err);
/* The built-in rules (the content of etc/smtpkit-rules.conf). */
SK_NODISCARD sk_err sk_rules_default(sk_rules **out, sk_error *err);
const char *sk_rules_default_text(void);
size_t sk_rules_count(const sk_rules *r);
/* The policy of class c (all zero when no define line names it, or r is
 * NULL). */
sk_class_policy sk_rules_class_policy(const sk_rules *r, sk_class c);
void sk_rules_free(sk_rules *r);

/* First rule that matches a reply wins. code: 3-digit reply code;
 * enhanced: "5.1.1" or NULL/""; text: the reply text (lines joined by
 * '\n') or NULL. */
sk_rule_match sk_rules_match(const sk_rules *r, int code, const char *enhanced, const char *text);

#ifdef __cplusplus
}
#endif
#endif
