/* Detector "exim": Exim's bounce and delay messages (its default
 * bounce_message_text and warn_message_file). Marks: "This message was
 * created automatically by mail delivery software." with "could not be
 * delivered to one or more of its recipients" (a failure) or "has not yet
 * been delivered" (a delay); each recipient on a line of its own indented
 * by two spaces, the reason on the more indented lines after it ("host X
 * [IP]", "SMTP error from remote mail server after RCPT TO:<a>:", "550
 * 5.1.1 ..."); X-Failed-Recipients lists them too. An address Exim
 * will not show ("an undisclosed address", its redirection targets) is
 * named by the "(generated from ADDR)" line under it. */
#include "bounce_int.h"

#include <string.h>

sk_err bn_exim(const bn_msg *m, sk_bounce *b)
{
    const char *p = bn_find_buf(&m->text, "created automatically by mail delivery software");
    if (!p) return SK_OK;
    const char *start = bn_find_buf(&m->text, "could not be delivered to one or more");
    int action = SK_DSN_FAILED;
    if (!start) start = bn_find_buf(&m->text, "following address(es) failed");
    if (!start) {
        start = bn_find_buf(&m->text, "has not yet been delivered");
        action = SK_DSN_DELAYED;
    }
    if (!start) return SK_OK;
    /* Exim's From is "Mail Delivery System <Mailer-Daemon@HOST>". */
    char v[512], from[SK_SMTP_PATH_MAX_OCTETS + 1];
    const char *host = NULL;
    if (bn_header(&m->top, "From", v, sizeof v) && bn_address(v, strlen(v), from, sizeof from))
        host = strchr(from, '@') + 1;
    sk_err e = bn_set_mta(b, host);
    if (!e) e = bn_blocks(m, start, "------ This is a copy of the message", b, action);
    const char *g =
        bn_find(start, (size_t)(m->text.data + m->text.len - start), "(generated from ");
    char addr[SK_SMTP_PATH_MAX_OCTETS + 1];
    if (!e && !b->nrcpts && g && bn_address(g, strcspn(g, ")\n"), addr, sizeof addr)) {
        char reason[SK_REPLY_TEXT_MAX_OCTETS], status[16] = "";
        const char *nl = strchr(g, '\n');
        bn_reason(nl ? nl : g, (size_t)(m->text.data + m->text.len - (nl ? nl : g)), 6, reason,
                  sizeof reason);
        bn_status(reason, strlen(reason), status);
        e = bn_add(b, addr, action, status, reason[0] ? reason : NULL, NULL);
    }
    return e;
}
