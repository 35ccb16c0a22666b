/* The SMTP relay transport: all non-local mail to one relay host through
 * the library's client, in worker threads. Private to the library. */
#ifndef SK_DELIVER_SMTP_H
#define SK_DELIVER_SMTP_H

#include "deliver.h"

typedef struct sk_smtp_transport_opts {
    const char *host; /* relay host name or address */
    unsigned short port;
    const char *helo_name; /* our name for EHLO and Received: */
    /* Worker threads, each with its own reused connection; 0 = 4. */
    unsigned workers;
    /* An idle connection is closed (QUIT) after this long; 0 = 30 s. */
    unsigned idle_ms;
    /* Client timeouts (0 = the RFC 5321 4.5.3.2 defaults). */
    unsigned connect_timeout_ms;
    unsigned command_timeout_ms;
    sk_logger log;
} sk_smtp_transport_opts;

/* STARTTLS is used when the relay offers it (opportunistic, RFC 7435); a
 * certificate that does not verify is logged, not fatal. Jobs complete on
 * base's loop thread. The strings are copied. */
sk_transport *sk_smtp_transport_new(const sk_smtp_transport_opts *o, struct event_base *base,
                                    sk_error *err);

#endif
