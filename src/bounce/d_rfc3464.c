/* Detector "rfc3464": standard delivery status notifications (RFC 3464
 * inside RFC 6522 multipart/report, read leniently by sk_report_parse:
 * also inside multipart/mixed, forwarded, blocks without separating empty
 * lines, non-standard Action values). Marks: a message/delivery-status
 * part with at least one per-recipient block. A block without a
 * Diagnostic-Code takes its reason from the human-readable part: the
 * reason the text detectors read under its address ("ADDR: 550 5.1.1 ..."
 * in OpenSMTPD's, the lines under it in Exim's), when it is not a reply of
 * another class than the block's Status. */
#include "bounce_int.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

/* The reason the human-readable part gives for addr, read as the text
 * detectors read a recipient's block (the lines under the address), into
 * out; "" when it names none, or when it is a reply of another class than
 * status (a 4xx under a failure's 5.x.x). *text holds those blocks, read
 * on first use. */
static sk_err text_reason(const bn_msg *m, sk_bounce **text, const char *addr, const char *status,
                          char *out, size_t outsize)
{
    out[0] = '\0';
    if (!addr || !m->text.len) return SK_OK;
    if (!*text) {
        if (!(*text = sk_calloc(1, sizeof **text))) return SK_ERR_NOMEM;
        sk_err e = bn_blocks(m, m->text.data, NULL, *text, SK_DSN_FAILED);
        if (e) return e;
    }
    for (size_t i = 0; i < (*text)->nrcpts; i++) {
        const sk_bounce_rcpt *t = &(*text)->rcpts[i];
        if (t->reported && t->reply && !strcasecmp(t->reported, addr)) {
            char c = t->reply[0];
            if (c >= '2' && c <= '5' && status && status[0] && status[0] != c) break;
            snprintf(out, outsize, "%s", t->reply);
            break;
        }
    }
    return SK_OK;
}

sk_err bn_rfc3464(const bn_msg *m, sk_bounce *b)
{
    const sk_report *r = m->report;
    if (!r || r->type != SK_REPORT_DSN || !r->nrcpts) return SK_OK;
    sk_err e = bn_set_mta(b, r->reporting_mta);
    sk_bounce *text = NULL;
    for (size_t i = 0; i < r->nrcpts && !e; i++) {
        const sk_report_rcpt *rc = &r->rcpts[i];
        const char *reply = rc->diagnostic ? rc->diagnostic : rc->status_comment;
        char reason[SK_REPLY_TEXT_MAX_OCTETS];
        char addr[SK_SMTP_PATH_MAX_OCTETS + 1];
        const char *fr = rc->final_recipient;
        if (!fr && !rc->original_recipient) {
            /* A block without recipient fields: the address is in the
             * human-readable part, in the first line that holds one. */
            size_t pos = 0;
            const char *line;
            size_t len;
            while (!fr && bn_next_line(&m->text, &pos, &line, &len))
                if (bn_address(line, len, addr, sizeof addr) && !bn_not_recipient(m, addr))
                    fr = addr;
        }
        if (!fr) fr = rc->original_recipient;
        /* A block with neither address nor anything else is no result;
         * one with a status keeps its place (X-Failed-Recipients may
         * name it, read.c). */
        if (!fr && !rc->status && rc->action < 0) continue;
        /* No Diagnostic-Code (a failure of the reporting MTA itself, as
         * Exim's own "mailbox is full: retry timeout exceeded" under
         * Status 5.0.0): the human-readable part's reason for the address
         * is all that says why. */
        if (!reply && !(e = text_reason(m, &text, fr, rc->status, reason, sizeof reason)) &&
            reason[0])
            reply = reason;
        if (e) break;
        size_t before = b->nrcpts;
        e = bn_add(b, fr, rc->action, rc->status, reply, rc->remote_mta);
        /* RFC 3464 2.3.1: Original-Recipient is the envelope recipient. */
        if (!e && b->nrcpts > before && rc->original_recipient) {
            b->rcpts[b->nrcpts - 1].recipient = sk_strdup(rc->original_recipient);
            if (!b->rcpts[b->nrcpts - 1].recipient) e = SK_ERR_NOMEM;
        }
    }
    sk_bounce_free(text);
    return e;
}
