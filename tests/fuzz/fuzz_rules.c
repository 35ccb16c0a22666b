/* Fuzz target: the classification rules file (docs/delivery.md), then
 * matching a few replies against what it accepted. */
#include <smtpkit/classify.h>

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const struct {
    int code;
    const char *enhanced, *text;
} replies[] = {
    {550, "5.1.1", "5.1.1 <a@example.org>: Recipient address rejected: User unknown"},
    {452, "4.2.2", "Mailbox full"},
    {421, "4.7.0", "Too many connections, slow down"},
    {554, "", "Transaction failed\nlisted at zen.example"},
    {530, "5.7.0", "Must issue a STARTTLS command first"},
    {250, NULL, NULL},
    {0, NULL, ""},
    {999, "9.9.9", "\xff\xfe"},
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    sk_rules *rs = NULL;
    sk_error err;
    sk_error_clear(&err);
    sk_err e = sk_rules_parse((const char *)data, size, "fuzz", &rs, &err);
    if (e != SK_OK) {
        if (rs) abort();
        if (e != SK_ERR_CONFIG && e != SK_ERR_TOO_LONG && e != SK_ERR_NOMEM) abort();
        /* Errors name the origin and the line: "fuzz:LINE: ...". */
        if (err.err != e || strncmp(err.text, "fuzz:", 5) != 0) abort();
        return 0;
    }
    if (!rs) abort();
    /* At most one rule per line. */
    size_t lines = 1;
    for (size_t i = 0; i < size; i++) lines += data[i] == '\n';
    if (sk_rules_count(rs) > lines) abort();
    for (size_t i = 0; i < sizeof replies / sizeof replies[0]; i++) {
        sk_rule_match m = sk_rules_match(rs, replies[i].code, replies[i].enhanced, replies[i].text);
        if (!m.matched) {
            if (m.cls != SK_CLASS_OTHER || m.action.kind != SK_TRAFFIC_NONE) abort();
            continue;
        }
        if ((unsigned)m.cls >= SK_CLASS__COUNT || m.line < 1 || m.line > lines) abort();
        if (m.action.kind == SK_TRAFFIC_SUSPEND && !m.action.duration_ms) abort();
        if (m.action.kind == SK_TRAFFIC_RATE &&
            (!m.action.rate_count || !m.action.rate_per_ms || !m.action.duration_ms))
            abort();
    }
    sk_rules_free(rs);
    return 0;
}
