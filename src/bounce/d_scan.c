/* Detector "scan", the last resort: a message whose subject or text says
 * in one of several languages that mail could not be delivered, with the
 * failed address near those words (a line that starts with an address
 * after them), or named by X-Failed-Recipients, or the single To of the
 * returned message (read.c). */
#include "bounce_int.h"

#include <string.h>

/* Failure phrases: English, German, French, Spanish, Italian, Dutch,
 * Portuguese, and the subjects of common notices. */
static const char *const phrases[] = {
    "could not be delivered",
    "couldn't be delivered",
    "undeliverable",
    "delivery failed",
    "delivery failure",
    "delivery has failed",
    "failed to deliver",
    "returned mail",
    "unable to deliver",
    "not be delivered",
    "permanent error",
    "delivery status notification (failure)",
    "unzustellbar",
    "konnte nicht zugestellt werden",
    "nicht zugestellt",
    "non remis",
    "n'a pas pu",
    "impossible de remettre",
    "echec de la remise",
    "\303\251chec de la remise",
    "no se pudo entregar",
    "no pudo ser entregado",
    "error de entrega",
    "non recapitabile",
    "impossibile recapitare",
    "non \xc3\xa8 stato possibile recapitare",
    "onbestelbaar",
    "niet afgeleverd",
    "kon niet worden bezorgd",
    "n\xc3\xa3o foi poss\xc3\xadvel entregar",
    "falha na entrega",
};

sk_err bn_scan(const bn_msg *m, sk_bounce *b)
{
    char subject[512];
    bn_header(&m->top, "Subject", subject, sizeof subject);
    const char *first = NULL;
    int in_subject = 0;
    for (size_t i = 0; i < sizeof phrases / sizeof phrases[0]; i++) {
        const char *p = bn_find_buf(&m->text, phrases[i]);
        if (p && (!first || p < first)) first = p;
        in_subject |= bn_find(subject, strlen(subject), phrases[i]) != NULL;
    }
    if (!first && !in_subject) return SK_OK;
    int action = bn_delayed(m) ? SK_DSN_DELAYED : SK_DSN_FAILED;
    sk_err e = first ? bn_blocks(m, first, NULL, b, action) : SK_OK;
    if (!e && !b->nrcpts && first) {
        /* No line starts with an address: the first address in the few
         * lines after the phrase that is not the sender's. */
        size_t pos = (size_t)(first - m->text.data), lines = 0;
        const char *line;
        size_t len;
        char addr[SK_SMTP_PATH_MAX_OCTETS + 1];
        while (!b->nrcpts && lines++ < 12 && bn_next_line(&m->text, &pos, &line, &len)) {
            const char *q = line;
            size_t n = len;
            const char *next;
            while ((next = bn_address(q, n, addr, sizeof addr)) != NULL) {
                if (!bn_not_recipient(m, addr)) {
                    char reply[SK_REPLY_TEXT_MAX_OCTETS], status[16] = "";
                    const char *rest = first;
                    size_t rn = (size_t)(m->text.data + m->text.len - rest);
                    if (!bn_smtp_reply(rest, rn < 4000 ? rn : 4000, reply, sizeof reply))
                        bn_reason(first, rn, 2, reply, sizeof reply);
                    bn_status(reply, strlen(reply), status);
                    e = bn_add(b, addr, action, status, reply, NULL);
                    break;
                }
                n -= (size_t)(next - q);
                q = next;
            }
        }
    }
    if (!e && !b->nrcpts) {
        /* Failure words but no address in the text: X-Failed-Recipients
         * or the returned message's To names it (read.c), when there is
         * one of them. */
        char v[16], to[8];
        if (bn_header(&m->top, "X-Failed-Recipients", v, sizeof v) ||
            bn_header(&m->orig, "To", to, sizeof to)) {
            char reply[SK_REPLY_TEXT_MAX_OCTETS] = "", status[16] = "";
            if (first) {
                size_t rn = (size_t)(m->text.data + m->text.len - first);
                if (!bn_smtp_reply(first, rn < 4000 ? rn : 4000, reply, sizeof reply))
                    bn_reason(first, rn, 2, reply, sizeof reply);
                bn_status(reply, strlen(reply), status);
            }
            e = bn_add(b, NULL, action, status, reply, NULL);
        }
    }
    return e;
}
