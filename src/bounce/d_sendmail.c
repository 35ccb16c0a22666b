/* Detector "sendmail": Sendmail's text bounce (before and besides its
 * DSNs). Marks: "----- The following addresses had permanent fatal
 * errors -----" (failures) or "... transient non-fatal errors -----"
 * (delays), the addresses on the lines after it, an alias's expansion
 * under its address ("    (expanded from: alias@x)": the envelope
 * recipient is the alias, bn_blocks); the reason in the
 * "----- Transcript of session follows -----" part: "<<< 550 5.1.1
 * ... User unknown" or "550 5.1.1 <addr>... User unknown". A warning of
 * Sendmail 8.14 and later has no address list: "**  THIS IS A WARNING
 * MESSAGE ONLY  **", the transcript's "<addr>... Deferred: 451 ..." lines
 * naming each delayed address, and "Warning: message still undelivered
 * after ...". */
#include "bounce_int.h"

#include <string.h>

/* A warning without an address list: each "ADDR... Deferred: REPLY" line
 * of the transcript. */
static sk_err deferred_lines(const bn_msg *m, const char *tr, sk_bounce *b)
{
    size_t pos = (size_t)(tr - m->text.data);
    const char *line;
    size_t len;
    sk_err e = SK_OK;
    while (!e && bn_next_line(&m->text, &pos, &line, &len)) {
        const char *d = bn_find(line, len, "... Deferred:");
        char addr[SK_SMTP_PATH_MAX_OCTETS + 1], reply[SK_REPLY_TEXT_MAX_OCTETS], status[16];
        if (!d || !bn_address(line, (size_t)(d - line), addr, sizeof addr) ||
            bn_not_recipient(m, addr))
            continue;
        const char *r = d + strlen("... Deferred:");
        while (r < line + len && sk_is_wsp(*r)) r++;
        size_t rn = (size_t)(line + len - r);
        if (rn >= sizeof reply) rn = sizeof reply - 1;
        memcpy(reply, r, rn);
        reply[rn] = '\0';
        e = bn_add(b, addr, SK_DSN_DELAYED, bn_status(reply, rn, status) ? status : NULL, reply,
                   NULL);
    }
    return e;
}

sk_err bn_sendmail(const bn_msg *m, sk_bounce *b)
{
    const char *p = bn_find_buf(&m->text, "following addresses had permanent fatal errors");
    int action = SK_DSN_FAILED;
    if (!p) {
        p = bn_find_buf(&m->text, "following addresses had transient non-fatal errors");
        action = SK_DSN_DELAYED;
    }
    const char *tr = bn_find_buf(&m->text, "Transcript of session follows");
    sk_err e;
    if (p)
        e = bn_blocks(m, p, "Transcript of session follows", b, action);
    else if (tr && bn_find_buf(&m->text, "message still undelivered after"))
        e = deferred_lines(m, tr, b);
    else
        return SK_OK;
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
