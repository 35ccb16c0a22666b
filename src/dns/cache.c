/* The resolver's cache of plain answers: a hash table by (name, type) with
 * a list in order of use, bounded in entries; each answer kept for its TTL
 * within the caps of limits.h (positive and negative apart). */
#include "dns_int.h"

#include <ctype.h>
#include <string.h>

typedef struct entry {
    struct entry *next_hash;
    struct entry *newer, *older; /* the use list */
    char *key;                   /* lowercase, without final dot */
    sk_dns_type type;
    uint32_t hash;
    int64_t expires_ms;
    dns_answer *answer;
} entry;

struct dns_cache {
    entry **buckets;
    size_t nbuckets, count, capacity;
    entry *newest, *oldest;
    uint64_t hits, misses, evictions, expired;
};

/* The name as the cache compares it: case does not matter (RFC 4343),
 * nor does a final dot. NULL when out of memory. */
static char *make_key(const char *name)
{
    size_t len = strlen(name);
    if (len && name[len - 1] == '.') len--;
    char *k = sk_strndup(name, len);
    if (!k) return NULL;
    for (size_t i = 0; i < len; i++) k[i] = (char)tolower((unsigned char)k[i]);
    return k;
}

/* FNV-1a over the key and the type. */
static uint32_t hash_of(const char *key, sk_dns_type type)
{
    uint32_t h = 2166136261u;
    for (const unsigned char *p = (const unsigned char *)key; *p; p++) h = (h ^ *p) * 16777619u;
    return (h ^ (uint32_t)type) * 16777619u;
}

dns_cache *dns_cache_new(size_t capacity)
{
    if (!capacity) return NULL;
    dns_cache *c = sk_calloc(1, sizeof *c);
    if (!c) return NULL;
    size_t n = 16;
    while (n < capacity) n *= 2;
    c->buckets = sk_calloc(n, sizeof *c->buckets);
    if (!c->buckets) {
        sk_free(c);
        return NULL;
    }
    c->nbuckets = n;
    c->capacity = capacity;
    return c;
}

static void unlink_use(dns_cache *c, entry *e)
{
    if (e->newer)
        e->newer->older = e->older;
    else
        c->newest = e->older;
    if (e->older)
        e->older->newer = e->newer;
    else
        c->oldest = e->newer;
    e->newer = e->older = NULL;
}

static void push_newest(dns_cache *c, entry *e)
{
    e->older = c->newest;
    e->newer = NULL;
    if (c->newest) c->newest->newer = e;
    c->newest = e;
    if (!c->oldest) c->oldest = e;
}

static void remove_entry(dns_cache *c, entry *e)
{
    entry **pp = &c->buckets[e->hash & (c->nbuckets - 1)];
    while (*pp != e) pp = &(*pp)->next_hash;
    *pp = e->next_hash;
    unlink_use(c, e);
    dns_answer_free(e->answer);
    sk_free(e->key);
    sk_free(e);
    c->count--;
}

static entry *find(dns_cache *c, const char *key, sk_dns_type type, uint32_t h)
{
    for (entry *e = c->buckets[h & (c->nbuckets - 1)]; e; e = e->next_hash)
        if (e->hash == h && e->type == type && !strcmp(e->key, key)) return e;
    return NULL;
}

void dns_cache_clear(dns_cache *c)
{
    if (!c) return;
    while (c->oldest) remove_entry(c, c->oldest);
}

void dns_cache_free(dns_cache *c)
{
    if (!c) return;
    dns_cache_clear(c);
    sk_free(c->buckets);
    sk_free(c);
}

dns_answer *dns_cache_get(dns_cache *c, const char *name, sk_dns_type type, int64_t now_ms)
{
    if (!c) return NULL;
    char *key = make_key(name);
    if (!key) return NULL;
    uint32_t h = hash_of(key, type);
    entry *e = find(c, key, type, h);
    sk_free(key);
    if (e && now_ms >= e->expires_ms) {
        c->expired++;
        remove_entry(c, e);
        e = NULL;
    }
    if (!e) {
        c->misses++;
        return NULL;
    }
    dns_answer *a = dns_answer_dup(e->answer);
    if (!a) return NULL;
    /* The copy carries the name asked now, and the TTL that is left. */
    char *asked = sk_strdup(name);
    if (!asked) {
        dns_answer_free(a);
        return NULL;
    }
    sk_free(a->name);
    a->name = asked;
    a->ttl_s = (uint32_t)((e->expires_ms - now_ms) / 1000);
    unlink_use(c, e);
    push_newest(c, e);
    c->hits++;
    return a;
}

void dns_cache_put(dns_cache *c, const dns_answer *a, int64_t now_ms)
{
    if (!c || !a->ttl_s) return;
    uint32_t keep_s;
    if (a->status == SK_DNS_OK)
        keep_s = a->ttl_s < SK_DNS_CACHE_TTL_MAX_S ? a->ttl_s : SK_DNS_CACHE_TTL_MAX_S;
    else if (a->status == SK_DNS_NODATA || a->status == SK_DNS_NXDOMAIN)
        keep_s =
            a->ttl_s < SK_DNS_CACHE_NEGATIVE_TTL_MAX_S ? a->ttl_s : SK_DNS_CACHE_NEGATIVE_TTL_MAX_S;
    else
        return; /* failures are asked again */
    char *key = make_key(a->name);
    if (!key) return;
    uint32_t h = hash_of(key, a->type);
    entry *old = find(c, key, a->type, h);
    if (old) remove_entry(c, old);
    entry *e = sk_calloc(1, sizeof *e);
    dns_answer *copy = e ? dns_answer_dup(a) : NULL;
    if (!copy) {
        sk_free(e);
        sk_free(key);
        return; /* not kept: the next lookup asks DNS */
    }
    while (c->count >= c->capacity) {
        c->evictions++;
        remove_entry(c, c->oldest);
    }
    e->key = key;
    e->type = a->type;
    e->hash = h;
    e->answer = copy;
    e->expires_ms = now_ms + (int64_t)keep_s * 1000;
    entry **bucket = &c->buckets[h & (c->nbuckets - 1)];
    e->next_hash = *bucket;
    *bucket = e;
    push_newest(c, e);
    c->count++;
}

void dns_cache_stats(const dns_cache *c, sk_dns_cache_stats *out)
{
    memset(out, 0, sizeof *out);
    if (!c) return;
    out->entries = c->count;
    out->capacity = c->capacity;
    out->hits = c->hits;
    out->misses = c->misses;
    out->evictions = c->evictions;
    out->expired = c->expired;
}
