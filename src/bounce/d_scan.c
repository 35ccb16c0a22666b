/* Detector "scan", the last resort: a message whose subject or text says
 * in one of several languages that mail could not be delivered (or is
 * delayed), with the failed address near those words: on a line that
 * labels it ("Unknown user: a@b", "Intended recipient: a@b", "Failed
 * Recipient: a@b", "Error-For: a@b", "Did not reach the following
 * recipient: a@b", "(Originally addressed to a@b)"), the label form of
 * many small MTAs (SMTP32/IMail, LISTSERV, USA.NET, Dovecot's rejects);
 * else on a line that starts with an address, from a few lines before
 * the words on; else the first address near the words that is not a
 * sender's (one after "from": "not accepting mail from a@b"); else named
 * by X-Failed-Recipients, or the single To of the returned message
 * when that is not a list's or a sender's address (read.c). */
#include "bounce_int.h"

#include <string.h>
#include <strings.h>

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
    "following recipient",
    "following address",
    "did not reach",
    "not delivered",
    "failed permanently",
    "could not deliver",
    "cannot be delivered",
    "can't be delivered",
    "not able to deliver",
    "automatically rejected",
    "not yet been delivered",
    "has been delayed",
    "user unknown",
    "unknown user",
    "no such user",
    "mailbox is full",
    "delivery problems",
    "has been postponed",
    "was not accepted",
    "has been returned",
    "failed addresses",
    "undelivered mail",
    "did not receive your message",
};

/* Labels that put the failed address right after them on their line
 * (compared with the end of the text before the address, lower case). */
static const char *const labels[] = {
    "unknown user",        "user unknown",         "userid",
    "intended recipient",  "failed recipient",     "error-for",
    "following recipient", "following recipients", "mailbox is full",
    "addressed to",        "invalid recipient",    "bad recipient",
    "your message to",     "undeliverable to",     "unknown recipient",
};

/* The line's text before its first address ends with a label. */
static int labelled(const char *line, size_t len, char *addr, size_t asize, const char **after)
{
    const char *end = bn_address(line, len, addr, asize);
    if (!end) return 0;
    const char *at = end - strlen(addr);
    while (at > line && strncasecmp(at, addr, strlen(addr)) != 0) at--;
    size_t n = (size_t)(at - line);
    while (n && (sk_is_wsp(line[n - 1]) || line[n - 1] == ':' || line[n - 1] == '<' ||
                 line[n - 1] == '"' || line[n - 1] == '\''))
        n--;
    for (size_t i = 0; i < sizeof labels / sizeof labels[0]; i++) {
        size_t k = strlen(labels[i]);
        if (n >= k && !strncasecmp(line + n - k, labels[i], k) &&
            (n == k || !sk_is_alnum(line[n - k - 1]))) {
            *after = end;
            return 1;
        }
    }
    return 0;
}

/* Every labelled address of the text, its reply from the lines after it. */
static sk_err by_labels(const bn_msg *m, sk_bounce *b, int action)
{
    size_t pos = 0, len;
    const char *line, *after;
    char addr[SK_SMTP_PATH_MAX_OCTETS + 1];
    sk_err e = SK_OK;
    while (!e && bn_next_line(&m->text, &pos, &line, &len)) {
        if (!labelled(line, len, addr, sizeof addr, &after) || bn_not_recipient(m, addr)) continue;
        char reply[SK_REPLY_TEXT_MAX_OCTETS], status[16] = "";
        size_t rn = (size_t)(m->text.data + m->text.len - after);
        /* The reply in the next few lines, before the next address line. */
        size_t lim = rn < 600 ? rn : 600;
        if (!bn_smtp_reply(after, lim, reply, sizeof reply))
            bn_reason(after, rn, 3, reply, sizeof reply);
        bn_status(reply, strlen(reply), status);
        e = bn_add(b, addr, action, status, reply[0] ? reply : NULL, NULL);
    }
    return e;
}

/* The address that ends at end (found from q on) follows the word "from"
 * ("not accepting mail from a@b", "a message from a@b"): a sender, never
 * the failed recipient. An alias's "expanded from" or "generated from"
 * names the recipient the message was sent to, and stays. */
static int after_from(const char *q, const char *end, const char *addr)
{
    const char *p = end - strlen(addr);
    while (p > q && (sk_is_wsp(p[-1]) || p[-1] == '<' || p[-1] == ':' || p[-1] == '"')) p--;
    if (p - q < 4 || strncasecmp(p - 4, "from", 4) != 0 || (p - q > 4 && sk_is_alnum(p[-5])))
        return 0;
    static const char *const alias[] = {"expanded from", "generated from"};
    for (size_t i = 0; i < sizeof alias / sizeof alias[0]; i++) {
        size_t k = strlen(alias[i]);
        if ((size_t)(p - q) >= k && !strncasecmp(p - k, alias[i], k)) return 0;
    }
    return 1;
}

sk_err bn_scan(const bn_msg *m, sk_bounce *b)
{
    char subject[512];
    bn_header(&m->top, "Subject", subject, sizeof subject);
    const char *first = NULL, *last = NULL;
    int in_subject = 0;
    for (size_t i = 0; i < sizeof phrases / sizeof phrases[0]; i++) {
        const char *p = bn_find_buf(&m->text, phrases[i]);
        if (p && (!first || p < first)) first = p;
        /* The last place the words are said: the address is near one. */
        for (const char *q = p; q;
             q = bn_find(q + 1, (size_t)(m->text.data + m->text.len - q - 1), phrases[i]))
            if (q > last) last = q;
        in_subject |= bn_find(subject, strlen(subject), phrases[i]) != NULL;
    }
    if (!first && !in_subject) return SK_OK;
    int action = bn_delayed(m) ? SK_DSN_DELAYED : SK_DSN_FAILED;
    /* The address may come just before the words ("Your message to:",
     * the address, "has not yet been delivered"): start a few lines up;
     * when only the subject has the words, at the start of the text. */
    const char *from = m->text.data;
    if (first) {
        from = first;
        for (int up = 0; up < 3 && from > m->text.data; up++) {
            from--;
            while (from > m->text.data && from[-1] != '\n') from--;
        }
    }
    sk_err e = by_labels(m, b, action);
    /* Near the words only: explanations further down name addresses of
     * their own ("if a@b fails, try c@d"). */
    if (!e && !b->nrcpts && from) {
        size_t n = SK_BOUNCE_SCAN_LINES;
        for (const char *q = from; last && q < last; q++)
            if (*q == '\n') n++;
        e = bn_blocks_n(m, from, NULL, n, b, action);
    }
    if (!e && !b->nrcpts && !first) first = from;
    if (!e && !b->nrcpts && first) {
        /* No line starts with an address: the first address in the few
         * lines after the phrase that is not the sender's. */
        size_t pos = (size_t)(first - m->text.data), lines = 0;
        const char *line;
        size_t len;
        char addr[SK_SMTP_PATH_MAX_OCTETS + 1];
        while (!b->nrcpts && lines++ < SK_BOUNCE_SCAN_NEAR_LINES &&
               bn_next_line(&m->text, &pos, &line, &len)) {
            const char *q = line;
            size_t n = len;
            const char *next;
            while ((next = bn_address(q, n, addr, sizeof addr)) != NULL) {
                if (!bn_not_recipient(m, addr) && !after_from(q, next, addr)) {
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
        char v[16], to[SK_SMTP_PATH_MAX_OCTETS + 1];
        if (bn_header(&m->top, "X-Failed-Recipients", v, sizeof v) ||
            bn_returned_to(m, to, sizeof to)) {
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
