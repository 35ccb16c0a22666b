/* The queue's summary (`smtpkit queue summary`, like Postfix's qshape):
 * messages by state, and per recipient domain the messages and recipients
 * still to be delivered there with the oldest arrival. One pass over the
 * messages with a hash index of the domains, so that a deep queue (a
 * million messages over thousands of domains) is summed up in a fraction
 * of a second, without a sort of every recipient. */
#include "queue/queue_int.h"
#include "spool/spool_int.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static const char *const sum_state_names[] = {
    [SK_QUEUE_SUM_ACTIVE] = "active",
    [SK_QUEUE_SUM_DELIVERING] = "delivering",
    [SK_QUEUE_SUM_DEFERRED] = "deferred",
    [SK_QUEUE_SUM_HOLD] = "hold",
};
_Static_assert(sizeof sum_state_names / sizeof sum_state_names[0] == SK_QUEUE_SUM__COUNT,
               "a summary state without a name");

const char *sk_queue_summary_state_name(sk_queue_summary_state s)
{
    return (unsigned)s < SK_QUEUE_SUM__COUNT ? sum_state_names[s] : "?";
}

sk_queue_summary_state sk_queue_summary_state_of(sk_spool_state s)
{
    switch (s) {
    case SK_SPOOL_DEFERRED:
        return SK_QUEUE_SUM_DEFERRED;
    case SK_SPOOL_HOLD:
        return SK_QUEUE_SUM_HOLD;
    default:
        return SK_QUEUE_SUM_ACTIVE;
    }
}

/* FNV-1a of the domain in lower case. */
static size_t hash_domain(const char *d, size_t n)
{
    uint64_t h = 14695981039346656037ull;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)d[i];
        if (c >= 'A' && c <= 'Z') c = (unsigned char)(c - 'A' + 'a');
        h = (h ^ c) * 1099511628211ull;
    }
    return (size_t)h;
}

/* Double the index (kept at most half full). */
static sk_err grow(sk_queue_summary *s)
{
    size_t nslots = s->nslots ? s->nslots * 2 : 64;
    size_t *slots = sk_calloc(nslots, sizeof *slots);
    if (!slots) return SK_ERR_NOMEM;
    for (size_t i = 0; i < s->ndomains; i++) {
        const char *d = s->domains[i].domain;
        size_t h = hash_domain(d, strlen(d)) & (nslots - 1);
        while (slots[h]) h = (h + 1) & (nslots - 1);
        slots[h] = i + 1;
    }
    sk_free(s->slots);
    s->slots = slots;
    s->nslots = nslots;
    return SK_OK;
}

/* The entry of domain d (n octets), made when new; NULL when out of memory. */
static sk_queue_summary_domain *find_domain(sk_queue_summary *s, const char *d, size_t n)
{
    if ((s->ndomains + 1) * 2 > s->nslots && grow(s)) return NULL;
    size_t h = hash_domain(d, n) & (s->nslots - 1);
    for (; s->slots[h]; h = (h + 1) & (s->nslots - 1)) {
        sk_queue_summary_domain *x = &s->domains[s->slots[h] - 1];
        if (!strncasecmp(x->domain, d, n) && !x->domain[n]) return x;
    }
    if (s->ndomains == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 16;
        sk_queue_summary_domain *nd = sk_realloc(s->domains, cap * sizeof *nd);
        if (!nd) return NULL;
        s->domains = nd;
        s->cap = cap;
    }
    char *copy = sk_malloc(n + 1);
    if (!copy) return NULL;
    memcpy(copy, d, n);
    copy[n] = '\0';
    sk_ascii_lower(copy, n);
    s->domains[s->ndomains] = (sk_queue_summary_domain){.domain = copy};
    s->slots[h] = ++s->ndomains;
    return &s->domains[s->ndomains - 1];
}

sk_err sk_queue_summary_add(sk_queue_summary *s, const sk_spool_envelope *env,
                            sk_queue_summary_state st)
{
    if ((unsigned)st >= SK_QUEUE_SUM__COUNT) st = SK_QUEUE_SUM_ACTIVE;
    s->messages++;
    s->by_state[st]++;
    if (env->arrival && (!s->oldest_s || env->arrival < s->oldest_s)) s->oldest_s = env->arrival;
    for (size_t i = 0; i < env->nrcpts; i++) {
        if (env->rcpts[i].state != SK_RCPT_PENDING) continue;
        s->recipients++;
        const char *at = strrchr(env->rcpts[i].addr, '@');
        const char *d = at ? at + 1 : "";
        sk_queue_summary_domain *x = find_domain(s, d, strlen(d));
        if (!x) return SK_ERR_NOMEM;
        x->recipients++;
        /* A message counts once per domain (marked with its number). */
        if (x->mark == s->messages) continue;
        x->mark = s->messages;
        x->messages++;
        if (env->arrival && (!x->oldest_s || env->arrival < x->oldest_s))
            x->oldest_s = env->arrival;
    }
    return SK_OK;
}

static int by_messages(const void *a, const void *b)
{
    const sk_queue_summary_domain *x = a, *y = b;
    if (x->messages != y->messages) return x->messages > y->messages ? -1 : 1;
    return strcmp(x->domain, y->domain);
}

void sk_queue_summary_finish(sk_queue_summary *s)
{
    if (s->ndomains) qsort(s->domains, s->ndomains, sizeof *s->domains, by_messages);
    /* The index points at the old order. */
    sk_free(s->slots);
    s->slots = NULL;
    s->nslots = 0;
}

void sk_queue_summary_free(sk_queue_summary *s)
{
    for (size_t i = 0; i < s->ndomains; i++) sk_free(s->domains[i].domain);
    sk_free(s->domains);
    sk_free(s->slots);
    *s = (sk_queue_summary){0};
}

sk_err sk_queue_summarize(const sk_queue *q, sk_queue_summary *out)
{
    *out = (sk_queue_summary){0};
    const qmsg *m;
    TAILQ_FOREACH(m, &q->msgs, link)
    {
        /* Leaving the queue: not counted. */
        if (m->state == QMSG_DELETED || m->state == QMSG_REMOVED) continue;
        sk_queue_summary_state st = m->state == QMSG_DELIVERING ? SK_QUEUE_SUM_DELIVERING
                                    : m->state == QMSG_HELD
                                        ? SK_QUEUE_SUM_HOLD
                                        : sk_queue_summary_state_of(m->env->state);
        if (sk_queue_summary_add(out, m->env, st)) {
            sk_queue_summary_free(out);
            return SK_ERR_NOMEM;
        }
    }
    out->loading = q->loading;
    out->unchecked = q->loading ? sk_spool_unchecked_count(q->spool) : 0;
    sk_queue_summary_finish(out);
    return SK_OK;
}

int sk_queue_loading(const sk_queue *q)
{
    return q->loading;
}

static json_t *age_json(int64_t oldest, int64_t now)
{
    return json_integer(oldest ? (now > oldest ? now - oldest : 0) : 0);
}

sk_err sk_queue_summary_json(const sk_queue_summary *s, int64_t now_s, size_t max_domains,
                             sk_buf *out)
{
    json_t *o = json_object(), *states = json_object(), *domains = json_array();
    int bad = !o || !states || !domains;
    for (unsigned i = 0; !bad && i < SK_QUEUE_SUM__COUNT; i++)
        bad = json_object_set_new(states, sum_state_names[i],
                                  json_integer((json_int_t)s->by_state[i]));
    size_t shown = s->ndomains < max_domains ? s->ndomains : max_domains;
    for (size_t i = 0; !bad && i < shown; i++) {
        const sk_queue_summary_domain *d = &s->domains[i];
        json_t *x = json_pack("{s:s, s:I, s:I, s:o}", "domain", d->domain, "messages",
                              (json_int_t)d->messages, "recipients", (json_int_t)d->recipients,
                              "oldest_age_s", age_json(d->oldest_s, now_s));
        bad = !x || json_array_append_new(domains, x);
    }
    if (!bad) {
        /* set_new takes the value even when it fails. */
        bad = json_object_set_new(o, "states", states);
        bad |= json_object_set_new(o, "domains", domains);
        states = domains = NULL;
        bad = bad || json_object_set_new(o, "loading", json_boolean(s->loading)) ||
              json_object_set_new(o, "unchecked", json_integer((json_int_t)s->unchecked)) ||
              json_object_set_new(o, "messages", json_integer((json_int_t)s->messages)) ||
              json_object_set_new(o, "recipients", json_integer((json_int_t)s->recipients)) ||
              json_object_set_new(o, "oldest_age_s", age_json(s->oldest_s, now_s)) ||
              json_object_set_new(o, "domains_total", json_integer((json_int_t)s->ndomains)) ||
              json_object_set_new(o, "domains_left_out",
                                  json_integer((json_int_t)(s->ndomains - shown)));
    }
    char *text = bad ? NULL : json_dumps(o, JSON_COMPACT);
    json_decref(o);
    json_decref(states);
    json_decref(domains);
    if (!text) return SK_ERR_NOMEM;
    sk_err e = sk_buf_puts(out, text);
    if (!e) e = sk_buf_putc(out, '\n');
    free(text);
    return e;
}
