/* Destinations and dispatch: each job waits in its destination's queue, by
 * priority then arrival, and starts as far as the limits allow. */
#include <ctype.h>
#include <limits.h>
#include <event2/event.h>
#include <string.h>
#include <strings.h>

#include "queue/queue_int.h"

/* A route key lookup that failed is tried again after at most this. */
#define QUEUE_ROUTE_FAIL_TTL_MS 60000

static unsigned hash_key(const char *s)
{
    /* FNV-1a over the lower-cased key. */
    uint32_t h = 2166136261u;
    for (; *s; s++) h = (h ^ (uint32_t)tolower((unsigned char)*s)) * 16777619u;
    return h % QUEUE_HASH_SIZE;
}

/* Make the dispatch timer fire at at_ms, unless it fires earlier anyway. */
static void arm_dispatch(sk_queue *q, int64_t at_ms)
{
    if (q->disp_at && q->disp_at <= at_ms && evtimer_pending(q->disp_ev, NULL)) return;
    int64_t now = sk_queue_now_ms(q);
    int64_t d = at_ms > now ? at_ms - now : 0;
    struct timeval tv = {.tv_sec = d / 1000, .tv_usec = (d % 1000) * 1000};
    q->disp_at = at_ms;
    event_add(q->disp_ev, &tv);
}

static void dest_activate(sk_queue *q, qdest *d)
{
    if (d->active) return;
    d->active = 1;
    TAILQ_INSERT_TAIL(&q->active, d, alink);
}

static void dest_deactivate(sk_queue *q, qdest *d)
{
    if (!d->active) return;
    TAILQ_REMOVE(&q->active, d, alink);
    d->active = 0;
}

/* The destination named key, created on first use; domain is the one
 * that brings the job (for per-domain rates). NULL when out of memory. */
static qdest *dest_get(sk_queue *q, const char *key, const char *domain, int local)
{
    unsigned h = hash_key(key);
    qdest *d = q->dests[h];
    while (d && (d->local != local || strcasecmp(d->key, key))) d = d->hnext;
    int fresh = 0;
    if (!d) {
        d = sk_calloc(1, sizeof *d);
        if (!d || !(d->key = sk_strdup(key))) {
            sk_free(d);
            return NULL;
        }
        d->local = local;
        for (int lv = 0; lv < SK_QUEUE_PRIORITY_LEVELS; lv++) TAILQ_INIT(&d->level[lv]);
        d->hnext = q->dests[h];
        q->dests[h] = d;
        /* Local delivery is not paced: only remote receivers need it. */
        d->pace.unpaced = local;
        fresh = 1;
    }
    sk_pace_join(&d->pace, &q->opts, domain, fresh);
    return d;
}

/* The FIFO of j's priority in d's queue. */
static struct qjob_list *job_level(qdest *d, const qjob *j)
{
    return &d->level[sk_queue_priority_level(j->m->priority)];
}

/* Put j in d's queue: after every job of higher priority, and after those
 * of its own priority that arrived earlier. New
 * messages belong at the tail and retries of old ones near the head, so
 * the place is looked for from both ends at once. */
static void dest_enqueue(sk_queue *q, qdest *d, qjob *j)
{
    struct qjob_list *l = job_level(d, j);
    uint64_t seq = j->m->seq;
    qjob *after = TAILQ_LAST(l, qjob_list), *before = TAILQ_FIRST(l);
    while (after && after->m->seq > seq) {
        if (before->m->seq > seq) {
            after = TAILQ_PREV(before, qjob_list, link);
            break;
        }
        after = TAILQ_PREV(after, qjob_list, link);
        before = TAILQ_NEXT(before, link);
    }
    if (after)
        TAILQ_INSERT_AFTER(l, after, j, link);
    else
        TAILQ_INSERT_HEAD(l, j, link);
    j->d = d;
    j->state = JOB_QUEUED;
    d->queued++;
    dest_activate(q, d);
}

static void dest_unqueue(qdest *d, qjob *j)
{
    TAILQ_REMOVE(job_level(d, j), j, link);
    d->queued--;
}

static qjob *dest_pop(qdest *d)
{
    for (int lv = SK_QUEUE_PRIORITY_LEVELS - 1; lv >= 0; lv--) {
        qjob *j = TAILQ_FIRST(&d->level[lv]);
        if (j) {
            dest_unqueue(d, j);
            return j;
        }
    }
    return NULL;
}

static void route_unwait(qroute *r, qjob *j)
{
    TAILQ_REMOVE(&r->waiting, j, link);
    j->route = NULL;
}

static void job_to_dest(sk_queue *q, qjob *j, const char *key, int local)
{
    qdest *d = dest_get(q, key, j->domain, local);
    if (!d) {
        /* Out of memory: let the attempt end with this job unstarted. */
        sk_log(&q->opts.log, SK_LOG_ERR, "%s queue job-failed error=nomem", j->m->env->id);
        qmsg *m = j->m;
        sk_queue_job_unlink(j);
        sk_queue_job_free(j);
        sk_queue_attempt_release(q, m);
        return;
    }
    dest_enqueue(q, d, j);
}

static void route_done(void *ctx, const char *domain, const char *key)
{
    qroute *r = ctx;
    sk_queue *q = r->q;
    r->pending = 0;
    sk_free(r->key);
    /* Without a key the domain stands alone, and the lookup is tried again
     * soon (it failed, or the domain has no MX yet). */
    r->key = sk_strdup(key ? key : r->domain);
    uint64_t ttl = q->opts.route_ttl_ms;
    if (!key && ttl > QUEUE_ROUTE_FAIL_TTL_MS) ttl = QUEUE_ROUTE_FAIL_TTL_MS;
    r->expires_ms = sk_queue_now_ms(q) + (int64_t)ttl;
    qjob *j;
    while ((j = TAILQ_FIRST(&r->waiting))) {
        route_unwait(r, j);
        job_to_dest(q, j, r->key ? r->key : r->domain, 0);
    }
    sk_queue_kick(q);
}

static qroute *route_get(sk_queue *q, const char *domain)
{
    unsigned h = hash_key(domain);
    qroute *r = q->routes[h];
    while (r && strcasecmp(r->domain, domain)) r = r->hnext;
    if (r) return r;
    r = sk_calloc(1, sizeof *r);
    if (!r || !(r->domain = sk_strdup(domain))) {
        sk_free(r);
        return NULL;
    }
    r->q = q;
    TAILQ_INIT(&r->waiting);
    r->hnext = q->routes[h];
    q->routes[h] = r;
    return r;
}

/* Send j to its destination's queue, finding the route key first when
 * domains are grouped by provider. */
void sk_queue_route_job(sk_queue *q, qjob *j)
{
    int local = j->t && j->t == q->opts.local_transport;
    sk_transport *t = j->t;
    if (local || q->opts.group_by_domain || !t || !t->route_key) {
        job_to_dest(q, j, j->domain, local);
        return;
    }
    qroute *r = route_get(q, j->domain);
    if (!r) {
        job_to_dest(q, j, j->domain, 0);
        return;
    }
    if (r->key && !r->pending && sk_queue_now_ms(q) < r->expires_ms) {
        job_to_dest(q, j, r->key, 0);
        return;
    }
    j->state = JOB_ROUTING;
    j->route = r;
    TAILQ_INSERT_TAIL(&r->waiting, j, link);
    if (!r->pending) {
        r->pending = 1;
        t->route_key(t, r->domain, route_done, r); /* may answer at once */
    }
}

/* Drop the jobs of m that have not started (it is being removed). */
void sk_queue_cancel_waiting(qmsg *m)
{
    qjob *next;
    for (qjob *j = LIST_FIRST(&m->jobs); j; j = next) {
        next = LIST_NEXT(j, mlink);
        if (j->state == JOB_RUNNING) continue;
        if (j->state == JOB_ROUTING)
            route_unwait(j->route, j);
        else
            dest_unqueue(j->d, j);
        sk_queue_job_unlink(j);
        sk_queue_job_free(j);
        m->jobs_out--;
    }
}

/* Start the delivery of a queued job. */
static void start_job(sk_queue *q, qjob *j)
{
    j->state = JOB_RUNNING;
    TAILQ_INSERT_HEAD(&q->running, j, link);
    q->in_flight++;
    if (j->d->in_flight++ == 0) q->dests_in_flight++;
    sk_queue_job_deliver(q, j);
}

void sk_queue_job_ended(sk_queue *q, qjob *j)
{
    TAILQ_REMOVE(&q->running, j, link);
    q->in_flight--;
    if (--j->d->in_flight == 0) q->dests_in_flight--;
}

/* Whether d would take more than its fair share of the delivery slots by
 * starting a job now (limits.h SK_QUEUE_FAIR_RESERVE_DIV): ready is how
 * many destinations have jobs that could start now. The reserved slots go
 * only to destinations holding none. */
static int over_share(const sk_queue *q, const qdest *d, size_t ready)
{
    size_t max = q->opts.max_in_flight;
    if (ready > 1 && d->in_flight >= (max + ready - 1) / ready) return 1;
    size_t reserve = max / SK_QUEUE_FAIR_RESERVE_DIV;
    size_t others = q->dests_in_flight - (d->in_flight ? 1 : 0);
    return others && q->in_flight + reserve >= max && d->in_flight > 0;
}

/* How long d must wait before its next job: 0 now, -1 until one of its
 * jobs in flight reports. */
static int64_t dest_wait(const sk_queue *q, const qdest *d, int64_t now)
{
    if (d->in_flight >= q->opts.dest_max_conns) return -1;
    return sk_pace_wait(&d->pace, now);
}

/* Start queued jobs as far as the global and per-destination limits
 * allow; then wake when a paced one may go on. Slots go level by level:
 * a pass starts one job for each ready destination holding the fewest
 * jobs in flight, and a destination that starts one goes to the back of
 * the line. A slot is held as long as its destination takes to answer,
 * so a freed slot goes to the destination holding least: one whose
 * deliveries are quick holds few and gets it, instead of the slow ones
 * that came first refilling theirs (docs/queue.md "Scheduling"). */
void sk_queue_dispatch(sk_queue *q)
{
    int64_t now = sk_queue_now_ms(q);
    int64_t wake = INT64_MAX;
    while (q->in_flight < q->opts.max_in_flight) {
        /* Destinations with jobs that could start now (for the shares),
         * and the fewest jobs in flight any of them holds. */
        size_t ready = 0, n = 0;
        unsigned level = UINT_MAX;
        qdest *next;
        for (qdest *d = TAILQ_FIRST(&q->active); d; d = next) {
            next = TAILQ_NEXT(d, alink);
            /* Emptied by a removal (sk_queue_cancel_waiting): it would set
             * a level no job can start at. */
            if (!d->queued) {
                dest_deactivate(q, d);
                continue;
            }
            n++;
            int64_t w = dest_wait(q, d, now);
            if (w > 0 && now + w < wake) wake = now + w;
            if (w) continue;
            ready++;
            if (d->in_flight < level) level = d->in_flight;
        }
        if (!ready) break;
        int progress = 0;
        /* At most n visits: a destination sent to the back is not met
         * again in this pass. */
        for (qdest *d = TAILQ_FIRST(&q->active); d && n-- && q->in_flight < q->opts.max_in_flight;
             d = next) {
            next = TAILQ_NEXT(d, alink);
            if (d->in_flight != level || dest_wait(q, d, now) || over_share(q, d, ready)) continue;
            qjob *j = dest_pop(d);
            /* To the back of the line (out of it when nothing is left). */
            dest_deactivate(q, d);
            if (d->queued) dest_activate(q, d);
            if (!j) continue;
            sk_pace_take(&d->pace, now);
            /* May report before it returns; a report changes no
             * destination's place in the list (only this loop does). */
            start_job(q, j);
            progress = 1;
        }
        if (!progress) break;
    }
    if (wake != INT64_MAX) arm_dispatch(q, wake);
}

/* Forget destinations and route keys that hold nothing a fresh one would
 * not: no jobs, no suspension or slow-down, an idle bucket, an expired key.
 * Keeps memory bounded by the domains in use, not all ever seen. */
void sk_queue_collect(sk_queue *q)
{
    int64_t now = sk_queue_now_ms(q);
    for (size_t h = 0; h < QUEUE_HASH_SIZE; h++) {
        for (qdest **pd = &q->dests[h]; *pd;) {
            qdest *d = *pd;
            int idle = !d->queued && !d->in_flight && !d->active && sk_pace_idle(&d->pace, now);
            if (!idle) {
                pd = &d->hnext;
                continue;
            }
            *pd = d->hnext;
            sk_free(d->key);
            sk_free(d);
        }
        for (qroute **pr = &q->routes[h]; *pr;) {
            qroute *r = *pr;
            if (r->pending || !TAILQ_EMPTY(&r->waiting) || now < r->expires_ms) {
                pr = &r->hnext;
                continue;
            }
            *pr = r->hnext;
            sk_free(r->domain);
            sk_free(r->key);
            sk_free(r);
        }
    }
}

const qdest *sk_queue_dest_of(const sk_queue *q, const char *domain)
{
    const char *key = domain;
    for (const qroute *r = q->routes[hash_key(domain)]; r; r = r->hnext)
        if (!strcasecmp(r->domain, domain) && r->key) key = r->key;
    for (const qdest *d = q->dests[hash_key(key)]; d; d = d->hnext)
        if (!strcasecmp(d->key, key)) return d;
    return NULL;
}

void sk_queue_dests_free(sk_queue *q)
{
    for (size_t h = 0; h < QUEUE_HASH_SIZE; h++) {
        while (q->dests[h]) {
            qdest *d = q->dests[h];
            q->dests[h] = d->hnext;
            for (int lv = 0; lv < SK_QUEUE_PRIORITY_LEVELS; lv++)
                for (qjob *j; (j = TAILQ_FIRST(&d->level[lv]));) {
                    TAILQ_REMOVE(&d->level[lv], j, link);
                    sk_queue_job_free(j);
                }
            sk_free(d->key);
            sk_free(d);
        }
        while (q->routes[h]) {
            qroute *r = q->routes[h];
            q->routes[h] = r->hnext;
            for (qjob *j; (j = TAILQ_FIRST(&r->waiting));) {
                TAILQ_REMOVE(&r->waiting, j, link);
                sk_queue_job_free(j);
            }
            sk_free(r->domain);
            sk_free(r->key);
            sk_free(r);
        }
    }
}
