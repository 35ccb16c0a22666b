/* The retry schedule and the lifetime of queued messages: when the next
 * attempt is, when a message expires, when its delay notice is due. */
#include <string.h>

#include "queue/queue_int.h"

sk_err sk_retry_init(sk_retry *r, const sk_queue_opts *o)
{
    static const uint64_t defaults[] = SK_QUEUE_RETRY_DEFAULT_MS;
    int own = o->retry_ms && o->nretry;
    const uint64_t *src = own ? o->retry_ms : defaults;
    size_t n = own ? o->nretry : sizeof defaults / sizeof defaults[0];
    *r = (sk_retry){.lifetime_ms =
                        o->max_lifetime_ms ? o->max_lifetime_ms : SK_QUEUE_LIFETIME_DEFAULT_MS,
                    .warning_ms = o->delay_warning_ms};
    r->delay_ms = sk_calloc(n, sizeof *r->delay_ms);
    if (!r->delay_ms) return SK_ERR_NOMEM;
    memcpy(r->delay_ms, src, n * sizeof *r->delay_ms);
    r->n = n;
    return SK_OK;
}

void sk_retry_free(sk_retry *r)
{
    sk_free(r->delay_ms);
    r->delay_ms = NULL;
    r->n = 0;
}

int64_t sk_retry_next(const sk_retry *r, unsigned attempts, int64_t now_ms)
{
    size_t i = attempts ? attempts - 1 : 0;
    if (i >= r->n) i = r->n - 1;
    /* In whole seconds, rounded up from the moment itself: never earlier
     * than the schedule says (from now_ms rounded down, a 1 s wait could
     * be over at once). */
    return (now_ms + (int64_t)r->delay_ms[i] + 999) / 1000;
}

/* Has a message that arrived at arrival waited at least ms by now? An
 * arrival in the future (the clock set back) has not waited at all. */
static int waited(int64_t arrival, int64_t now_s, uint64_t ms)
{
    return now_s > arrival && (uint64_t)(now_s - arrival) * 1000u >= ms;
}

int sk_retry_expired(const sk_retry *r, int64_t arrival, int64_t now_s)
{
    return waited(arrival, now_s, r->lifetime_ms);
}

int sk_retry_warn_due(const sk_retry *r, int64_t arrival, int64_t now_s)
{
    return r->warning_ms && waited(arrival, now_s, r->warning_ms);
}

int64_t sk_retry_until(const sk_retry *r, int64_t arrival)
{
    return arrival + (int64_t)(r->lifetime_ms / 1000);
}
