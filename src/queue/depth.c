/* The queue's depth by recipient domain, for metrics. */
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
