/* The SMTP transport: mail for remote domains straight to their MX hosts
 * (RFC 5321 section 5), or all of it to one relay host, with connection
 * reuse per destination. Private. */
#ifndef SK_DELIVER_MX_H
#define SK_DELIVER_MX_H

#include <smtpkit/dns.h>

#include "deliver.h"

#define SK_MX_PORT_DEFAULT          25 /* RFC 5321 4.5.4 */
#define SK_MX_WORKERS_DEFAULT       8
#define SK_MX_MSGS_PER_CONN_DEFAULT 100
/* "Idles briefly": long enough for the queue to hand over the next
 * message to the same destination, short of a receiver's own timeout. */
#define SK_MX_IDLE_MS_DEFAULT 5000
/* A relay host takes all our mail, so a session to it is kept longer. */
#define SK_MX_RELAY_IDLE_MS_DEFAULT (30 * 1000)
/* How long freeing the transport waits for a worker in a delivery. */
#define SK_MX_JOIN_WAIT_MS 5000

typedef struct sk_mx_transport_opts {
    /* The resolver to use (lives on the same event_base; not freed here;
     * free the transport first). NULL: the transport makes its own from
     * dns_server ("IP:PORT"; NULL = the system's). */
    sk_resolver *resolver;
    const char *dns_server;
    unsigned short port;   /* TCP port of MX hosts; 0 = 25 */
    const char *helo_name; /* our name for EHLO and Received: */
    unsigned workers;      /* delivery threads; 0 = SK_MX_WORKERS_DEFAULT */
    /* Messages one connection carries before QUIT, unless the job says
     * (sk_delivery.max_per_conn); 0 = SK_MX_MSGS_PER_CONN_DEFAULT. */
    unsigned max_messages_per_connection;
    /* How long a connection waits for another message to its destination
     * before QUIT; 0 = SK_MX_IDLE_MS_DEFAULT. */
    unsigned idle_ms;
    /* Client timeouts; 0 = the RFC 5321 4.5.3.2 defaults. */
    unsigned connect_timeout_ms;
    unsigned greeting_timeout_ms;
    unsigned command_timeout_ms;
    /* Domains whose MX hosts must give verified TLS: "example.com" matches
     * that domain, ".example.com" its subdomains. Case-insensitive. */
    const char *const *tls_required;
    size_t ntls_required;
    const char *ca_file; /* trust anchors for MX certificates; NULL = system store */
    /* A relay host (name or numeric address) that takes every job instead
     * of the domain's MX hosts: a fixed route, no MX lookup, port is its
     * port. The name is resolved (A and AAAA, /etc/hosts first) by the
     * system resolver in the worker thread that connects. The transport
     * is then named "smtp", logs as "smtp", and has no route_key: domains
     * stay their own destinations in the queue. NULL: MX routing. */
    const char *relay_host;
    sk_logger log;
} sk_mx_transport_opts;

/* Jobs complete on base's loop thread. Strings are copied. NULL on error
 * (err says why). */
sk_transport *sk_mx_transport_new(const sk_mx_transport_opts *o, struct event_base *base,
                                  sk_error *err);

/* The destination key of a route: its MX host names, lower-cased, sorted
 * and joined by ','; the domain itself when the route has no hosts
 * (failures) or is an implicit MX. Two domains hosted by the same set of
 * MX hosts share it, so connections (and the queue's limits) are shared. */
SK_NODISCARD sk_err sk_mx_destination_key(const sk_route *route, sk_buf *out);

/* 1 when domain is in the TLS-required list (see the options). */
int sk_mx_tls_required(const char *const *list, size_t n, const char *domain);

/* The reply every recipient gets when the route itself is a failure (the
 * resolver's enhanced status when it set one of the right class):
 * null MX 550 5.1.10 (RFC 7505 3), NXDOMAIN 550 5.1.2, no address 550
 * 5.4.4, DNS failure 451 4.4.3. Returns 0 (and leaves *out) for an OK
 * route. */
int sk_mx_route_failure(const sk_route *route, sk_reply *out);

/* What trying the hosts of a route gave, when no host took a session. */
typedef struct sk_mx_tally {
    unsigned hosts;     /* hosts tried */
    unsigned hosts_5xx; /* hosts that refused with 5xx to greeting/EHLO */
    unsigned hosts_tls; /* hosts that failed a TLS requirement */
    sk_reply last_5xx;  /* the last such 5xx */
    /* "mx1.example.net[192.0.2.1]:25: connect: refused" */
    char last_error[SK_REPLY_TEXT_MAX_OCTETS];
    char last_host[320]; /* "mx1.example.net[192.0.2.1]:25" */
} sk_mx_tally;

/* The reply for "no host took the session". Permanent only when every
 * host tried refused with 5xx (RFC 5321 3.1, 4.2: 554 greeting; a single
 * unreachable host keeps it transient): the last 5xx. All hosts failing
 * the TLS requirement: 451 4.7.10. Otherwise 451 4.4.1 with the last
 * error. */
sk_reply sk_mx_tally_reply(const sk_mx_tally *t, const char *domain);

#endif
