/* Fuzz target: reading bounces (sk_bounce_read: every detector, the MIME
 * walk, the recipient fix-up) and classifying what it finds. Bounces come
 * from anywhere on the internet. */
#include <smtpkit/bounce.h>
#include <smtpkit/dsn.h>

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_str(const char *s)
{
    if (s && strlen(s) > SK_REPORT_MAX_OCTETS) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static sk_rules *rules;
    if (!rules && sk_rules_default(&rules, NULL)) abort();
    sk_bounce *b = NULL;
    sk_error err;
    sk_error_clear(&err);
    sk_err e = sk_bounce_read((const char *)data, size, &b, &err);
    if (e != SK_OK) {
        if (b) abort();
        if (e != SK_ERR_TOO_LONG && e != SK_ERR_NOMEM) abort();
        if (err.err != e || !err.text[0]) abort();
        return 0;
    }
    if (!b) abort();
    /* Nothing recognised: no partial result. */
    if (!b->detector && (b->nrcpts || b->reporting_mta || b->original_message_id)) abort();
    /* The detector is one of the list. */
    if (b->detector) {
        const char *const *names = sk_bounce_detectors();
        size_t i = 0;
        while (names[i] && strcmp(names[i], b->detector)) i++;
        if (!names[i]) abort();
    }
    if (b->nrcpts > SK_REPORT_RCPTS_MAX || (b->nrcpts && !b->rcpts)) abort();
    for (size_t i = 0; i < b->nrcpts; i++) {
        const sk_bounce_rcpt *r = &b->rcpts[i];
        if (r->action < -1 || r->action >= SK_DSN_ACTION__COUNT) abort();
        check_str(r->recipient);
        check_str(r->reported);
        check_str(r->status);
        check_str(r->reply);
        check_str(r->remote_mta);
        /* A found address has an '@' with something on both sides. */
        if (r->reported) {
            const char *at = strrchr(r->reported, '@');
            if (!at || at == r->reported || !at[1]) abort();
        }
        sk_bounce_verdict v = sk_bounce_classify(r, rules);
        if ((unsigned)v.cls >= SK_CLASS__COUNT) abort();
        /* Never a suppression from a temporary kind. */
        if (v.suppress && (!v.permanent || sk_class_is_temporary(v.cls) ||
                           (r->action != SK_DSN_FAILED && r->action != -1)))
            abort();
    }
    check_str(b->reporting_mta);
    check_str(b->original_message_id);
    sk_bounce_free(b);
    return 0;
}
