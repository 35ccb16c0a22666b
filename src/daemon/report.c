/* Reports that come back by mail (--verp): VERP addresses, the Message-ID
 * of received mail, and recording DSNs (RFC 3464) and complaints (RFC 5965). */
#include "daemon_int.h"

#include <smtpkit/bounce.h>
#include <smtpkit/dsn.h>
#include <smtpkit/queue.h>

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

sk_err sk_daemon_verp_parse(const char *addr, char *id, size_t idsize, char *rcpt, size_t rcptsize)
{
    size_t plen = strlen(SK_QUEUE_VERP_PREFIX);
    if (strncasecmp(addr, SK_QUEUE_VERP_PREFIX, plen) != 0) return SK_ERR_SYNTAX;
    const char *p = addr + plen;
    const char *at = strrchr(p, '@');
    if (!at) return SK_ERR_SYNTAX;
    /* ID up to the first '=', the recipient's domain after the last one
     * before '@' (a domain has no '='), its local part in between (which
     * may itself hold '='). */
    const char *eq1 = memchr(p, '=', (size_t)(at - p));
    if (!eq1 || eq1 == p) return SK_ERR_SYNTAX;
    const char *eq2 = NULL;
    for (const char *q = at - 1; q > eq1; q--)
        if (*q == '=') {
            eq2 = q;
            break;
        }
    if (!eq2 || eq2 == eq1 + 1 || eq2 + 1 == at) return SK_ERR_SYNTAX;
    size_t idlen = (size_t)(eq1 - p);
    size_t llen = (size_t)(eq2 - eq1 - 1), dlen = (size_t)(at - eq2 - 1);
    if (idlen >= idsize || llen + 1 + dlen >= rcptsize) return SK_ERR_SYNTAX;
    memcpy(id, p, idlen);
    id[idlen] = '\0';
    snprintf(rcpt, rcptsize, "%.*s@%.*s", (int)llen, eq1 + 1, (int)dlen, eq2 + 1);
    return SK_OK;
}

void sk_daemon_message_id(const char *headers, size_t len, char *out, size_t outsize)
{
    static const char name[] = "message-id:";
    const size_t nlen = sizeof name - 1;
    out[0] = '\0';
    for (size_t i = 0; i < len;) {
        /* i is at the start of a line. */
        if (len - i > nlen && strncasecmp(headers + i, name, nlen) == 0) {
            /* RFC 5322 3.6.4: msg-id = "<" id-left "@" id-right ">", maybe
             * after folding white space. */
            const char *v = headers + i + nlen, *end = headers + len;
            while (v < end && (*v == ' ' || *v == '\t' || *v == '\r' || *v == '\n')) v++;
            if (v >= end || *v != '<') return;
            const char *close = memchr(v, '>', (size_t)(end - v));
            const char *eol = memchr(v, '\n', (size_t)(end - v));
            if (!close || (eol && eol < close)) return;
            size_t n = (size_t)(close - v - 1);
            if (n == 0 || n >= outsize) return;
            memcpy(out, v + 1, n);
            out[n] = '\0';
            return;
        }
        const char *nl = memchr(headers + i, '\n', len - i);
        if (!nl) break;
        i = (size_t)(nl - headers) + 1;
    }
}

/* The result of the bounce about rcpt: by its recipient or the address
 * it reports, else the only one. */
static const sk_bounce_rcpt *bounce_rcpt(const sk_bounce *b, const char *rcpt)
{
    for (size_t i = 0; i < b->nrcpts; i++) {
        const sk_bounce_rcpt *r = &b->rcpts[i];
        if ((r->recipient && !strcasecmp(r->recipient, rcpt)) ||
            (r->reported && !strcasecmp(r->reported, rcpt)))
            return r;
    }
    return b->nrcpts == 1 ? &b->rcpts[0] : NULL;
}

const char *sk_daemon_verp_report(const sk_verp_ctx *x, const char *addr, const char *msg,
                                  size_t len)
{
    char id[SK_SPOOL_ID_SIZE], rcpt[SK_SMTP_PATH_MAX_OCTETS + 1];
    sk_error err;
    if (!x->track) return "no-tracking";
    if (sk_daemon_verp_parse(addr, id, sizeof id, rcpt, sizeof rcpt)) return "unmatched-address";
    /* Events of the original may still be waiting in memory. */
    if (sk_track_flush(x->track, &err))
        sk_log(x->log, SK_LOG_WARN, "%s daemon track-flush-failed error=\"%s\"", id, err.text);
    sk_track_result *known = NULL;
    if (sk_track_query(x->track, id, &known, &err)) return "unmatched-queue-id";
    sk_track_ev ev = {.queue_id = id, .message_id = known->message_id, .recipient = rcpt};
    sk_report *r = NULL;
    sk_bounce *bn = NULL;
    const char *outcome;
    char reason[SK_REPLY_TEXT_MAX_OCTETS];
    if (sk_report_parse(msg, len, &r, &err) == SK_OK && r->type == SK_REPORT_ARF) {
        /* RFC 5965: the recipient said it is unwanted; stop sending. */
        ev.kind = SK_TRACK_COMPLAINED;
        ev.reply = r->feedback_type;
        outcome = "complained";
        if (sk_track_event(x->track, &ev, &err))
            sk_log(x->log, SK_LOG_ERR, "%s daemon track-failed error=\"%s\"", id, err.text);
        snprintf(reason, sizeof reason, "complaint: %s",
                 r->feedback_type ? r->feedback_type : "abuse");
        int64_t now_s = sk_track_now_ms(x->track) / 1000;
        int64_t for_s = x->suppress_for_s ? x->suppress_for_s : SK_SUPPRESS_DURATION_S_DEFAULT;
        if (sk_suppress_add(x->track, rcpt, reason, now_s, now_s + for_s, &err))
            sk_log(x->log, SK_LOG_ERR, "%s daemon suppress-failed error=\"%s\"", id, err.text);
    } else if (sk_bounce_read(msg, len, &bn, &err) || !bn->detector) {
        outcome = "not-a-report";
    } else {
        /* A standard DSN or the text bounce of an MTA (src/bounce). */
        const sk_bounce_rcpt *b = bounce_rcpt(bn, rcpt);
        outcome = "unmatched-recipient";
        sk_bounce_verdict v = {0};
        if (b) {
            v = sk_bounce_classify(b, x->rules);
            ev.reply = b->reply ? b->reply : b->status;
            ev.remote_host = b->remote_mta;
            switch (b->action) {
            case SK_DSN_FAILED:
                ev.kind = SK_TRACK_BOUNCED;
                ev.cls = sk_class_name(v.cls);
                outcome = "bounced";
                break;
            case SK_DSN_DELAYED:
                ev.kind = SK_TRACK_DEFERRED;
                outcome = "deferred";
                break;
            case SK_DSN_DELIVERED:
            case SK_DSN_RELAYED:
            case SK_DSN_EXPANDED:
                ev.kind = SK_TRACK_DELIVERED;
                outcome = "delivered";
                break;
            default:
                outcome = "unknown-action";
                b = NULL;
            }
        }
        if (b) {
            if (sk_track_event(x->track, &ev, &err))
                sk_log(x->log, SK_LOG_ERR, "%s daemon track-failed error=\"%s\"", id, err.text);
            const char *domain = strrchr(rcpt, '@');
            const char *answered = b->remote_mta ? b->remote_mta : bn->reporting_mta;
            sk_suppress_evidence how = {
                .rules = x->rules,
                .from_recipient_domain = domain && sk_bounce_host_in_domain(answered, domain + 1),
                .detector = bn->detector,
                .for_s = x->suppress_for_s};
            int added = 0;
            if (ev.kind == SK_TRACK_BOUNCED &&
                sk_suppress_after_bounce(x->track, &ev, &how, &added, &err))
                sk_log(x->log, SK_LOG_ERR, "%s daemon suppress-failed error=\"%s\"", id, err.text);
        }
    }
    sk_bounce_free(bn);
    sk_report_free(r);
    sk_track_result_free(known);
    return outcome;
}
