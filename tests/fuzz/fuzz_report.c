/* Fuzz target: reading delivery status notifications and ARF complaints
 * (RFC 3464, RFC 5965, RFC 6522) from whole messages. */
#include <smtpkit/dsn.h>
#include <smtpkit/suppress.h>

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A field is absent or a C string; touching every octet lets the
 * sanitizers see a missing terminator or a freed string. */
static void check_str(const char *s)
{
    if (s && strlen(s) > SK_REPORT_MAX_OCTETS) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    sk_report *r = NULL;
    sk_error err;
    sk_error_clear(&err);
    sk_err e = sk_report_parse((const char *)data, size, &r, &err);
    if (e != SK_OK) {
        if (r) abort();
        if (e != SK_ERR_SYNTAX && e != SK_ERR_TOO_LONG && e != SK_ERR_NOMEM) abort();
        if (err.err != e || !err.text[0]) abort();
        return 0;
    }
    if (!r) abort();
    if (r->type != SK_REPORT_NONE && r->type != SK_REPORT_DSN && r->type != SK_REPORT_ARF) abort();
    if (r->nrcpts > SK_REPORT_RCPTS_MAX || (r->nrcpts && !r->rcpts)) abort();
    /* A message that is not a report yields nothing. */
    if (r->type == SK_REPORT_NONE && (r->nrcpts || r->reporting_mta || r->feedback_type)) abort();
    if (r->type == SK_REPORT_ARF && !r->feedback_type) abort(); /* RFC 5965 3.1: required */
    for (size_t i = 0; i < r->nrcpts; i++) {
        const sk_report_rcpt *rc = &r->rcpts[i];
        if (rc->action < -1 || rc->action >= SK_DSN_ACTION__COUNT) abort();
        check_str(rc->final_recipient);
        /* Bounced addresses go to the suppression list in normal form. */
        sk_buf norm = SK_BUF_INIT(SK_SMTP_PATH_MAX_OCTETS + 1);
        if (rc->final_recipient && sk_suppress_normalize(rc->final_recipient, &norm) == SK_OK) {
            if (norm.len > strlen(rc->final_recipient) || !memchr(norm.data, '@', norm.len))
                abort();
        }
        sk_buf_free(&norm);
        check_str(rc->original_recipient);
        check_str(rc->status);
        check_str(rc->diagnostic);
        check_str(rc->remote_mta);
    }
    const char *strs[] = {r->reporting_mta,      r->envid,
                          r->feedback_type,      r->user_agent,
                          r->original_mail_from, r->original_rcpt_to,
                          r->source_ip,          r->arrival_date,
                          r->original_message_id};
    for (size_t i = 0; i < sizeof strs / sizeof strs[0]; i++) check_str(strs[i]);
    sk_report_free(r);
    return 0;
}
