/* Private to src/dns: the resolver's inside, shared by resolver.c (c-ares on
 * the libevent loop, plain lookups) and route.c (MX routing built on it). */
#ifndef SK_DNS_RESOLVER_INT_H
#define SK_DNS_RESOLVER_INT_H

#include "dns_int.h"

#include <ares.h>
#include <event2/event.h>

typedef struct sock_watch {
    ares_socket_t fd;
    struct event *ev;
} sock_watch;

struct sk_resolver {
    struct event_base *base;
    ares_channel ch;
    struct event *timer;
    sock_watch *socks;
    size_t nsocks, capsocks;
    int prefer_ipv6;
    sk_logger log;
    int depth;        /* > 0 while c-ares may be calling us back */
    int free_pending; /* sk_resolver_free was called inside a callback */
    dns_cache *cache; /* NULL: no cache */
    int64_t (*clock_ms)(void *ctx);
    void *clock_ctx;
    /* Lookups whose answer is in and waits for the loop's next turn (from
     * the cache, or refused by c-ares inside ares_query), oldest first. */
    struct sk_dns_query *ready_head, *ready_tail;
    struct event *ready_ev;
};

/* Around every call into c-ares that may call back: dns_leave returns 0 when
 * the resolver was released inside (sk_resolver_free from a callback) and
 * must not be touched; otherwise call dns_reschedule to follow c-ares'
 * next timeout. */
void dns_enter(sk_resolver *r);
int dns_leave(sk_resolver *r);
void dns_reschedule(sk_resolver *r);
/* Whether a c-ares status means the query was cancelled (the channel is
 * going away). */
int dns_cancelled(int ares_status);

#endif
