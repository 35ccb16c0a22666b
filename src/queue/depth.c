/* The queue's depth by recipient domain, for metrics, and where it
 * stands per domain (GET /v1/queue). */
#include "queue/queue_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static const char *domain_of(const char *addr)
{
    const char *at = strrchr(addr, '@');
    return at ? at + 1 : "";
}

static int by_domain(const void *a, const void *b)
{
    return strcasecmp(*(const char *const *)a, *(const char *const *)b);
}

size_t sk_queue_depth(const sk_queue *q, sk_queue_depth_fn fn, void *ctx)
{
    size_t n = 0;
    qmsg *m;
    TAILQ_FOREACH(m, &q->msgs, link)
    for (size_t i = 0; i < m->env->nrcpts; i++) n += m->env->rcpts[i].state == SK_RCPT_PENDING;
    if (!fn || !n) return n;
    const char **d = sk_calloc(n, sizeof *d);
    if (!d) return n; /* the total without the breakdown */
    size_t k = 0;
    TAILQ_FOREACH(m, &q->msgs, link)
    for (size_t i = 0; i < m->env->nrcpts; i++)
        if (m->env->rcpts[i].state == SK_RCPT_PENDING) d[k++] = domain_of(m->env->rcpts[i].addr);
    qsort(d, n, sizeof *d, by_domain);
    char low[SK_SMTP_DOMAIN_MAX_OCTETS + 1];
    for (size_t i = 0, j; i < n; i = j) {
        for (j = i + 1; j < n && !strcasecmp(d[i], d[j]);) j++;
        snprintf(low, sizeof low, "%s", d[i]);
        sk_ascii_lower(low, strlen(low));
        fn(ctx, low, j - i);
    }
    sk_free(d);
    return n;
}

/* A pending recipient: its domain and message. */
typedef struct pend {
    const char *domain;
    const qmsg *m;
} pend;

static int by_domain_then_msg(const void *a, const void *b)
{
    const pend *x = a, *y = b;
    int c = strcasecmp(x->domain, y->domain);
    if (c) return c;
    return x->m->seq < y->m->seq ? -1 : x->m->seq > y->m->seq;
}

sk_err sk_queue_destinations(const sk_queue *q, sk_queue_dest_fn fn, void *ctx, size_t *ndest)
{
    *ndest = 0;
    size_t n = sk_queue_depth(q, NULL, NULL);
    if (!n) return SK_OK;
    pend *p = sk_calloc(n, sizeof *p);
    if (!p) return SK_ERR_NOMEM;
    size_t k = 0;
    qmsg *m;
    TAILQ_FOREACH(m, &q->msgs, link)
    for (size_t i = 0; i < m->env->nrcpts; i++)
        if (m->env->rcpts[i].state == SK_RCPT_PENDING)
            p[k++] = (pend){domain_of(m->env->rcpts[i].addr), m};
    qsort(p, n, sizeof *p, by_domain_then_msg);
    int64_t now_s = sk_queue_now_s(q);
    char low[SK_SMTP_DOMAIN_MAX_OCTETS + 1];
    for (size_t i = 0, j; i < n; i = j) {
        sk_queue_dest_info d = {.domain = low};
        snprintf(low, sizeof low, "%s", p[i].domain);
        sk_ascii_lower(low, strlen(low));
        for (j = i; j < n && !strcasecmp(p[i].domain, p[j].domain); j++) {
            d.recipients++;
            const qmsg *x = p[j].m;
            if (j > i && p[j - 1].m == x) continue; /* a message counts once */
            d.messages++;
            if (!d.oldest_s || x->env->arrival < d.oldest_s) d.oldest_s = x->env->arrival;
            if (x->state == QMSG_HELD) {
                d.held++;
                continue;
            }
            if (x->state == QMSG_DELIVERING) d.delivering++;
            int64_t next = x->state == QMSG_WAITING && x->env->next_attempt > now_s
                               ? x->env->next_attempt
                               : now_s;
            if (!d.next_attempt_s || next < d.next_attempt_s) d.next_attempt_s = next;
        }
        const qdest *qd = sk_queue_dest_of(q, low);
        if (qd) {
            int64_t now_ms = sk_queue_now_ms(q);
            d.queue_key = qd->key;
            d.in_flight = qd->in_flight;
            d.waiting_jobs = qd->queued;
            if (qd->pace.suspended_until > now_ms) d.suspended_until_ms = qd->pace.suspended_until;
            if (qd->pace.slow_until > now_ms) d.throttled_until_ms = qd->pace.slow_until;
        }
        fn(ctx, &d);
        (*ndest)++;
    }
    sk_free(p);
    return SK_OK;
}
