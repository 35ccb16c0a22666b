/* What a DKIM verifier and an ARC verifier share once the message is in:
 * the body hashes their signatures ask for, and the key lookups through
 * the resolver (each name asked once, answers applied as they come, the
 * owner told when none is left; the blocking form on a loop of its own). */
#include "dkim/dkim_int.h"

#include <event2/event.h>

#include <string.h>

void dkim_copy_str(char *dst, size_t cap, const char *src)
{
    size_t n = src ? strlen(src) : 0;
    if (n >= cap) n = cap - 1;
    if (n) memcpy(dst, src, n);
    dst[n] = '\0';
}

/* ---- body hashes ---- */

sk_err dkim_body_checks_init(dkim_body_checks *s, size_t cap)
{
    memset(s, 0, sizeof *s);
    if (!cap) return SK_OK;
    s->c = sk_calloc(cap, sizeof *s->c);
    if (!s->c) return SK_ERR_NOMEM;
    s->cap = cap;
    return SK_OK;
}

dkim_body_check *dkim_body_checks_for(dkim_body_checks *s, const dkim_sig *sig)
{
    const EVP_MD *md = dkim_algo_md(sig->algo);
    uint64_t limit = sig->has_l ? sig->l : UINT64_MAX;
    for (size_t i = 0; i < s->n; i++) {
        const dkim_body_hash *h = &s->c[i].h;
        if (h->canon == sig->bcanon && h->md == md && h->limit == limit) return &s->c[i];
    }
    if (s->n == s->cap) return NULL;
    dkim_body_check *c = &s->c[s->n];
    if (dkim_body_hash_init(&c->h, sig->bcanon, md, limit)) return NULL;
    s->n++;
    return c;
}

void dkim_body_checks_feed(void *ctx, const char *p, size_t n)
{
    dkim_body_checks *s = ctx;
    for (size_t i = 0; i < s->n; i++) dkim_body_hash_feed(&s->c[i].h, p, n);
}

sk_err dkim_body_checks_final(dkim_body_checks *s)
{
    for (size_t i = 0; i < s->n; i++) {
        sk_err e = dkim_body_hash_final(&s->c[i].h, s->c[i].digest, &s->c[i].digest_len);
        if (e) return e;
    }
    return SK_OK;
}

int dkim_body_check_matches(const dkim_body_check *c, const dkim_sig *sig)
{
    return c->digest_len == sig->bh_len && !memcmp(c->digest, sig->bh, sig->bh_len);
}

void dkim_body_checks_clear(dkim_body_checks *s)
{
    for (size_t i = 0; i < s->n; i++) dkim_body_hash_clear(&s->c[i].h);
    sk_free(s->c);
    memset(s, 0, sizeof *s);
}

/* ---- key lookups ---- */

struct dkim_lookup {
    dkim_lookups *l; /* NULL: the owner went away; drop the answer */
    struct dkim_lookup *next;
    char name[SK_DKIM_KEY_NAME_MAX_OCTETS + 1];
};

void dkim_lookups_init(dkim_lookups *l, void *owner, dkim_lookup_name_fn name,
                       dkim_lookup_apply_fn apply)
{
    memset(l, 0, sizeof *l);
    l->owner = owner;
    l->name = name;
    l->apply = apply;
}

int dkim_lookups_busy(const dkim_lookups *l)
{
    return l->issuing || l->inflight;
}

static void on_key(void *ctx, const sk_dns_result *res)
{
    dkim_lookup *q = ctx;
    dkim_lookups *l = q->l;
    if (!l) {
        sk_free(q);
        return;
    }
    for (dkim_lookup **pp = &l->queries; *pp; pp = &(*pp)->next)
        if (*pp == q) {
            *pp = q->next;
            break;
        }
    l->apply(l->owner, q->name, res->status, (const char *const *)res->values, res->count);
    sk_free(q);
    /* Last: the owner may be freed by its done callback. */
    if (--l->inflight == 0 && !l->issuing && l->done) l->done(l->done_ctx);
}

sk_err dkim_lookups_resolve(dkim_lookups *l, sk_resolver *r, size_t count, void (*done)(void *),
                            void *ctx)
{
    if (dkim_lookups_busy(l)) return SK_ERR_STATE;
    l->done = done;
    l->done_ctx = ctx;
    l->issuing = 1;
    sk_err e = SK_OK;
    /* Each name once. A name answered at once (c-ares may refuse one
     * before asking) leaves its signatures done: they name no key after. */
    for (size_t i = 0; i < count && !e; i++) {
        const char *name = l->name(l->owner, i);
        if (!name) continue;
        int asked = 0;
        for (dkim_lookup *q = l->queries; q && !asked; q = q->next) asked = !strcmp(q->name, name);
        if (asked) continue;
        dkim_lookup *q = sk_calloc(1, sizeof *q);
        if (!q) {
            e = SK_ERR_NOMEM;
            break;
        }
        q->l = l;
        dkim_copy_str(q->name, sizeof q->name, name);
        q->next = l->queries;
        l->queries = q;
        l->inflight++;
        if (sk_resolver_lookup(r, q->name, SK_DNS_TXT, on_key, q)) {
            /* Never asked: a failure of the moment for its signatures. */
            l->queries = q->next;
            l->inflight--;
            l->apply(l->owner, q->name, SK_DNS_TEMPFAIL, NULL, 0);
            sk_free(q);
        }
    }
    l->issuing = 0;
    if (e) return e;
    if (l->inflight == 0 && done) done(ctx);
    return SK_OK;
}

typedef struct sync_wait {
    struct event_base *base;
    int done;
} sync_wait;

static void sync_done(void *ctx)
{
    sync_wait *w = ctx;
    w->done = 1;
    event_base_loopbreak(w->base);
}

sk_err dkim_lookups_resolve_sync(dkim_lookups *l, size_t count, const sk_resolver_opts *o,
                                 sk_error *err)
{
    int any = 0;
    for (size_t i = 0; i < count && !any; i++) any = l->name(l->owner, i) != NULL;
    if (!any) return SK_OK;
    sk_resolver_opts dflt = {0};
    sync_wait w = {0};
    w.base = event_base_new();
    if (!w.base) return sk_error_set(err, SK_ERR_NOMEM, SK_STEP_DNS, "no event loop");
    sk_resolver *r = sk_resolver_new_opts(w.base, o ? o : &dflt, err);
    if (!r) {
        event_base_free(w.base);
        return err ? err->err : SK_ERR_CONFIG;
    }
    sk_err e = dkim_lookups_resolve(l, r, count, sync_done, &w);
    if (!e && !w.done) event_base_dispatch(w.base);
    sk_resolver_free(r);
    event_base_free(w.base);
    l->done = NULL; /* w is gone */
    if (e) return sk_error_set(err, e, SK_STEP_DNS, "key lookups: %s", sk_strerror(e));
    if (!w.done) return sk_error_set(err, SK_ERR_STATE, SK_STEP_DNS, "key lookups did not finish");
    return SK_OK;
}

void dkim_lookups_detach(dkim_lookups *l)
{
    for (dkim_lookup *q = l->queries; q; q = q->next) q->l = NULL; /* freed by their answers */
    l->queries = NULL;
}
