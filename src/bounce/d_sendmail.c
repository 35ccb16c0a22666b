/* Detector "sendmail": Sendmail's text bounce (before and besides its
 * DSNs). Marks: "----- The following addresses had permanent fatal
 * errors -----" (failures) or "... transient non-fatal errors -----"
 * (delays), the addresses on the lines after it; the reason in the
 * "----- Transcript of session follows -----" part: "<<< 550 5.1.1
 * ... User unknown" or "550 5.1.1 <addr>... User unknown". */
#include "bounce_int.h"

#include <string.h>

sk_err bn_sendmail(const bn_msg *m, sk_bounce *b)
{
    const char *p = bn_find_buf(&m->text, "following addresses had permanent fatal errors");
    int action = SK_DSN_FAILED;
    if (!p) {
        p = bn_find_buf(&m->text, "following addresses had transient non-fatal errors");
        action = SK_DSN_DELAYED;
    }
    if (!p) return SK_OK;
    sk_err e = bn_blocks(m, p, "Transcript of session follows", b, action);
    const char *tr = bn_find_buf(&m->text, "Transcript of session follows");
    size_t tn = tr ? (size_t)(m->text.data + m->text.len - tr) : 0;
    for (size_t i = 0; !e && tr && i < b->nrcpts; i++) {
        sk_bounce_rcpt *r = &b->rcpts[i];
        /* The transcript line that names the address, else the first
         * reply in the transcript. */
        const char *at = r->reported ? bn_find(tr, tn, r->reported) : NULL;
        const char *from = tr;
        char reply[SK_REPLY_TEXT_MAX_OCTETS], status[16];
        if (at) {
            const char *ls;
            size_t ll;
            bn_line_of(&m->text, at, &ls, &ll);
            from = ls;
        }
        if (!bn_smtp_reply(from, (size_t)(m->text.data + m->text.len - from), reply, sizeof reply))
            continue;
        sk_free(r->reply);
        r->reply = sk_strdup(reply);
        if (!r->reply) return SK_ERR_NOMEM;
        if (!r->status && bn_status(reply, strlen(reply), status)) {
            r->status = sk_strdup(status);
            if (!r->status) return SK_ERR_NOMEM;
        }
    }
    char host[256];
    bn_word_after(&m->text, "The original message was received at", host, sizeof host);
    char v[512];
    if (!e && bn_header(&m->top, "From", v, sizeof v)) {
        const char *at = bn_find(v, strlen(v), "MAILER-DAEMON@");
        char h[256];
        if (at && bn_address(at, strlen(at), h, sizeof h)) e = bn_set_mta(b, strchr(h, '@') + 1);
    }
    return e;
}
