/* The webhooks' outbox in the tracking store (DATA-DIR/track.db): the
 * tables, which the tracking store creates and fills in the transaction
 * that writes each event, and the webhook module reads and empties
 * (docs/webhooks.md). */
#ifndef SMTPKIT_OUTBOX_H
#define SMTPKIT_OUTBOX_H

#ifdef __cplusplus
extern "C" {
#endif

/* webhook_endpoints: url (key), secret ("whsec_..."), events ("*" or
 * ",delivered,bounced," with commas around each name), source ("config"
 * or "api"), created_ms, and the state shown by `smtpkit stats`:
 * delivered, failures, dropped (past the maximum age), last_ok_ms,
 * failing_since_ms (NULL while it answers), last_error.
 * webhook_outbox: one row per event (events.id) and endpoint still to
 * send: msg_key (the message's queue ID, else its Message-ID: events of
 * one message go in order), attempts, next_ms (due then; Unix ms),
 * leased (being sent; cleared at start), created_ms. */
extern const char sk_outbox_schema[];

#ifdef __cplusplus
}
#endif
#endif
