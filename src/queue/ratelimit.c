/* Throttling and rates: the token bucket destinations are paced with, the
 * --rate-limit syntax, and suspending or slowing a destination on replies. */
#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "queue/queue_int.h"

/* Rates above this many per unit are not pacing anything useful, and the
 * bound keeps ms * count inside int64_t. */
#define RATE_COUNT_MAX 1000000u

uint64_t sk_bucket_wait(const sk_bucket *b, int64_t now_ms)
{
    const sk_queue_rate *r = &b->rate;
    if (!r->count || !r->per_ms) return 0;
    int64_t now = now_ms * (int64_t)r->count;
    int64_t slack = (int64_t)((r->burst ? r->burst : 1) - 1) * (int64_t)r->per_ms;
    int64_t ahead = b->tat - slack - now;
    if (ahead <= 0) return 0;
    return (uint64_t)((ahead + (int64_t)r->count - 1) / (int64_t)r->count);
}

void sk_bucket_take(sk_bucket *b, int64_t now_ms)
{
    const sk_queue_rate *r = &b->rate;
    if (!r->count || !r->per_ms) return;
    int64_t now = now_ms * (int64_t)r->count;
    /* An idle bucket does not bank more than burst messages. */
    if (b->tat < now) b->tat = now;
    b->tat += (int64_t)r->per_ms;
}

static uint64_t unit_ms(const char *u)
{
    static const struct {
        const char *name;
        uint64_t ms;
    } units[] = {{"s", 1000},    {"sec", 1000},     {"second", 1000}, {"m", 60000},
                 {"min", 60000}, {"minute", 60000}, {"h", 3600000},   {"hour", 3600000}};
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++)
        if (!strcasecmp(u, units[i].name)) return units[i].ms;
    return 0;
}

sk_err sk_queue_rate_parse(const char *s, sk_queue_rate_rule *out, sk_error *err)
{
    sk_error_clear(err);
    memset(out, 0, sizeof *out);
    const char *eq = s ? strrchr(s, '=') : NULL;
    const char *spec = eq ? eq + 1 : s;
    if (!s || !*spec)
        return sk_error_set(err, SK_ERR_SYNTAX, SK_STEP_NONE,
                            "rate limit: expected DOMAIN=N/UNIT or default=N/UNIT");
    if (eq) {
        size_t n = (size_t)(eq - s);
        if (!n || n > SK_SMTP_DOMAIN_MAX_OCTETS)
            return sk_error_set(err, SK_ERR_SYNTAX, SK_STEP_NONE,
                                "rate limit: bad domain in \"%s\"", s);
        for (size_t i = 0; i < n; i++) {
            unsigned char c = (unsigned char)s[i];
            if (!isalnum(c) && c != '.' && c != '-' && c != '_')
                return sk_error_set(err, SK_ERR_SYNTAX, SK_STEP_NONE,
                                    "rate limit: bad domain in \"%s\"", s);
            out->domain[i] = (char)tolower(c);
        }
        out->domain[n] = '\0';
        if (!strcmp(out->domain, "default")) out->domain[0] = '\0';
    }
    if (!isdigit((unsigned char)*spec))
        return sk_error_set(err, SK_ERR_SYNTAX, SK_STEP_NONE,
                            "rate limit: \"%s\" does not start with a count", spec);
    errno = 0;
    char *end;
    unsigned long n = strtoul(spec, &end, 10);
    if (errno || !n || n > RATE_COUNT_MAX || *end != '/')
        return sk_error_set(err, SK_ERR_SYNTAX, SK_STEP_NONE,
                            "rate limit: \"%s\": expected N/UNIT with N from 1 to %u", spec,
                            RATE_COUNT_MAX);
    uint64_t ms = unit_ms(end + 1);
    if (!ms)
        return sk_error_set(err, SK_ERR_SYNTAX, SK_STEP_NONE,
                            "rate limit: \"%s\": unit must be s, m or h", spec);
    out->rate = (sk_queue_rate){.count = (unsigned)n, .per_ms = ms};
    return SK_OK;
}

sk_queue_rate sk_queue_rate_for(const sk_queue_opts *o, const char *domain, int *overridden)
{
    if (overridden) *overridden = 0;
    for (size_t i = 0; domain && i < o->nrate_rules; i++) {
        if (!o->rate_rules[i].domain[0] || strcasecmp(o->rate_rules[i].domain, domain)) continue;
        if (overridden) *overridden = 1;
        return o->rate_rules[i].rate;
    }
    for (size_t i = 0; i < o->nrate_rules; i++)
        if (!o->rate_rules[i].domain[0]) return o->rate_rules[i].rate;
    return o->rate_default;
}

void sk_pace_join(sk_pace *p, const sk_queue_opts *o, const char *domain, int fresh)
{
    if (p->unpaced || p->overridden) return;
    int ov;
    sk_queue_rate r = sk_queue_rate_for(o, domain, &ov);
    if (fresh || ov) {
        p->bucket = (sk_bucket){.rate = r};
        p->overridden = ov;
    }
}

int64_t sk_pace_wait(const sk_pace *p, int64_t now_ms)
{
    if (now_ms < p->suspended_until) return p->suspended_until - now_ms;
    if (p->unpaced) return 0;
    int64_t w = (int64_t)sk_bucket_wait(&p->bucket, now_ms);
    if (now_ms < p->slow_until) {
        int64_t s = (int64_t)sk_bucket_wait(&p->slow, now_ms);
        if (s > w) w = s;
    }
    return w;
}

void sk_pace_take(sk_pace *p, int64_t now_ms)
{
    if (p->unpaced) return;
    sk_bucket_take(&p->bucket, now_ms);
    if (now_ms < p->slow_until) sk_bucket_take(&p->slow, now_ms);
}

int sk_pace_idle(const sk_pace *p, int64_t now_ms)
{
    const sk_bucket *b = &p->bucket;
    return now_ms >= p->suspended_until && now_ms >= p->slow_until &&
           (!b->rate.count || b->tat <= now_ms * (int64_t)b->rate.count);
}

static void suspend(sk_pace *p, uint64_t ms, int64_t now_ms)
{
    if (now_ms + (int64_t)ms > p->suspended_until) p->suspended_until = now_ms + (int64_t)ms;
}

int sk_pace_throttle(sk_pace *p, const sk_reply *r, const sk_rule_match *mt,
                     uint64_t default_suspend_ms, int64_t now_ms, uint64_t *for_ms)
{
    const sk_traffic_action *a = &mt->action;
    uint64_t ms;
    if (mt->matched && a->kind == SK_TRAFFIC_SUSPEND) {
        ms = a->duration_ms;
        suspend(p, ms, now_ms);
    } else if (mt->matched && a->kind == SK_TRAFFIC_RATE && a->rate_count && a->rate_per_ms) {
        ms = a->duration_ms;
        p->slow = (sk_bucket){.rate = {.count = a->rate_count, .per_ms = a->rate_per_ms}};
        p->slow_until = now_ms + (int64_t)ms;
    } else if ((r->code == 421 || !strncmp(r->enhanced, "4.7.", 4)) &&
               !(mt->matched && mt->cls == SK_CLASS_OTHER)) {
        ms = default_suspend_ms;
        suspend(p, ms, now_ms);
    } else {
        return 0;
    }
    *for_ms = ms;
    return 1;
}
