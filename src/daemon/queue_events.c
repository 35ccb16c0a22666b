/* `smtpkit serve`: what the queue reports, into the tracking store, with
 * the suppression a hard bounce adds (docs/tracking.md); and the two
 * helpers the transaction's hooks (hooks.c) share with it: an event
 * recorded, a field appended to a log line escaped. */
#include "daemon_impl.h"

#include <string.h>

void sk_daemon_track(sk_daemon *d, const sk_track_ev *ev)
{
    sk_error err;
    if (d->track && sk_track_event(d->track, ev, &err))
        sk_log(&d->log, SK_LOG_ERR, "%s daemon track-failed error=\"%s\"",
               ev->queue_id ? ev->queue_id : "-", err.text);
}

void sk_daemon_log_escaped(sk_buf *b, const char *key, const char *value)
{
    /* Log lines are best effort: a failed append only shortens the line. */
    if (sk_buf_printf(b, " %s=\"", key) || sk_log_escape(b, value, strlen(value)) ||
        sk_buf_putc(b, '"'))
        return;
}

/* What the queue reports, into the tracking store (docs/tracking.md). */
void sk_daemon_on_queue_event(void *ctx, const sk_queue_event *qe)
{
    sk_daemon *d = ctx;
    if (qe->type == SK_QUEUE_EV_DELIVERED) sk_dmetrics_delivered(d->metrics, qe->env->arrival);
    if (!d->track) return;
    sk_track_ev ev = {.queue_id = qe->env->id,
                      .recipient = qe->recipient,
                      .attempt = qe->attempt,
                      .remote_host = qe->remote_host,
                      .reply = qe->reply};
    switch (qe->type) {
    case SK_QUEUE_EV_QUEUED:
        /* One queued event per recipient still to be delivered. */
        ev.kind = SK_TRACK_QUEUED;
        ev.attempt = 0;
        for (size_t i = 0; i < qe->env->nrcpts; i++) {
            if (qe->env->rcpts[i].state != SK_RCPT_PENDING) continue;
            ev.recipient = qe->env->rcpts[i].addr;
            sk_daemon_track(d, &ev);
        }
        return;
    case SK_QUEUE_EV_DELIVERED:
        ev.kind = SK_TRACK_DELIVERED;
        ev.tls = qe->tls;
        /* docs/tracking.md: a local delivery names its Maildir file. */
        if (qe->mailbox_file) ev.remote_host = qe->mailbox_file;
        break;
    case SK_QUEUE_EV_DEFERRED:
        ev.kind = SK_TRACK_DEFERRED;
        ev.cls = sk_class_name(qe->cls);
        break;
    case SK_QUEUE_EV_BOUNCED:
        ev.kind = SK_TRACK_BOUNCED;
        ev.cls = sk_class_name(qe->cls);
        break;
    case SK_QUEUE_EV_EXPIRED:
        ev.kind = SK_TRACK_EXPIRED;
        ev.cls = sk_class_name(qe->cls);
        break;
    case SK_QUEUE_EV_DSN:
        /* The DSN is on disk: each outcome it reports names it. */
        for (size_t i = 0; i < qe->ndsn_rcpts; i++) {
            sk_error err;
            if (sk_track_dsn_sent(d->track, qe->env->id, qe->dsn_rcpts[i], qe->dsn_id, &err))
                sk_log(&d->log, SK_LOG_WARN, "%s daemon track-failed dsn=%s error=\"%s\"",
                       qe->env->id, qe->dsn_id, err.text);
        }
        return;
    default:
        return;
    }
    sk_daemon_track(d, &ev);
    if (ev.kind == SK_TRACK_BOUNCED) {
        /* A hard bounce (bad mailbox, domain not found) suppresses. */
        sk_error err;
        int added = 0;
        /* Our own delivery's answer comes from the recipient domain's own
         * servers (its MX, or our mailbox) unless a relay host gave it. */
        sk_suppress_evidence how = {.rules = d->rules,
                                    .from_recipient_domain = !d->cfg->relay_host,
                                    .for_s = d->suppress_for_s};
        if (sk_suppress_after_bounce(d->track, &ev, &how, &added, &err))
            sk_log(&d->log, SK_LOG_ERR, "%s daemon suppress-failed error=\"%s\"", ev.queue_id,
                   err.text);
        else if (added) {
            sk_suppress_mirror_poke(d->suppress);
            sk_buf b = SK_BUF_INIT(1024);
            sk_daemon_log_escaped(&b, "rcpt", ev.recipient ? ev.recipient : "");
            sk_log(&d->log, SK_LOG_INFO, "%s daemon suppressed%s class=%s", ev.queue_id,
                   sk_buf_cstr(&b), ev.cls);
            sk_buf_free(&b);
        }
    }
}
