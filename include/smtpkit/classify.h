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
    SK_CLASS_AUTH, /* authentication needed or refused */
    SK_CLASS__COUNT
} sk_class;
const char *sk_class_name(sk_class c); /* "bad-mailbox", ... (the rules file's names) */
int sk_class_parse(const char *name);  /* -1 when unknown */

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
void sk_rules_free(sk_rules *r);

/* First rule that matches a reply wins. code: 3-digit reply code;
 * enhanced: "5.1.1" or NULL/""; text: the reply text (lines joined by
 * '\n') or NULL. */
sk_rule_match sk_rules_match(const sk_rules *r, int code, const char *enhanced, const char *text);

#ifdef __cplusplus
}
#endif
#endif
