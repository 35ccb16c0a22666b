/* An in-memory set of suppression entries, keyed by the stored address
 * form: what an SMTP server looks recipients up in (no database access). */
#include <smtpkit/suppress.h>

#include <search.h>
#include <stdbool.h>
#include <string.h>

/* A binary tree from the C library (tsearch: glibc's is red-black), of
 * entries that each live in one allocation: the entry, then its address
 * and reason. */
struct sk_suppress_set {
    void *root;
    size_t n;
};

static int cmp_entry(const void *a, const void *b)
{
    return strcmp(((const sk_suppression *)a)->address, ((const sk_suppression *)b)->address);
}

static void free_entry(void *p)
{
    sk_free(p);
}

sk_suppress_set *sk_suppress_set_new(void)
{
    return sk_calloc(1, sizeof(sk_suppress_set));
}

void sk_suppress_set_free(sk_suppress_set *set)
{
    if (!set) return;
    tdestroy(set->root, free_entry);
    sk_free(set);
}

size_t sk_suppress_set_count(const sk_suppress_set *set)
{
    return set ? set->n : 0;
}

sk_err sk_suppress_set_put(sk_suppress_set *set, const sk_suppression *e)
{
    sk_buf a = SK_BUF_INIT(SK_SMTP_PATH_MAX_OCTETS);
    sk_err err = sk_suppress_normalize(e->address, &a);
    if (err) {
        sk_buf_free(&a);
        return err == SK_ERR_NOMEM ? err : SK_ERR_INVAL;
    }
    const char *reason = e->reason ? e->reason : "";
    size_t alen = a.len + 1, rlen = strlen(reason) + 1;
    sk_suppression *copy = sk_malloc(sizeof *copy + alen + rlen);
    if (!copy) {
        sk_buf_free(&a);
        return SK_ERR_NOMEM;
    }
    copy->address = (char *)(copy + 1);
    copy->reason = copy->address + alen;
    memcpy(copy->address, sk_buf_cstr(&a), alen);
    memcpy(copy->reason, reason, rlen);
    copy->created_s = e->created_s;
    copy->until_s = e->until_s;
    sk_buf_free(&a);
    sk_suppression **slot = tsearch(copy, &set->root, cmp_entry);
    if (!slot) {
        sk_free(copy);
        return SK_ERR_NOMEM;
    }
    if (*slot != copy) {
        /* The address was there: the new entry takes the old one's place
         * (same key, so the tree's order holds). */
        sk_free(*slot);
        *slot = copy;
    } else {
        set->n++;
    }
    return SK_OK;
}

/* The stored form of addr in b; false when addr is not an address. */
static bool key_of(const char *addr, sk_buf *b)
{
    return sk_suppress_normalize(addr, b) == SK_OK;
}

sk_err sk_suppress_set_remove(sk_suppress_set *set, const char *addr)
{
    sk_buf a = SK_BUF_INIT(SK_SMTP_PATH_MAX_OCTETS);
    sk_err err = SK_ERR_NOT_FOUND;
    if (key_of(addr, &a)) {
        sk_suppression key = {.address = a.data};
        sk_suppression **slot = tfind(&key, &set->root, cmp_entry);
        if (slot) {
            sk_suppression *old = *slot;
            tdelete(&key, &set->root, cmp_entry);
            sk_free(old);
            set->n--;
            err = SK_OK;
        }
    }
    sk_buf_free(&a);
    return err;
}

const sk_suppression *sk_suppress_set_find(const sk_suppress_set *set, const char *addr,
                                           int64_t now_s)
{
    if (!set || !set->n) return NULL;
    sk_buf a = SK_BUF_INIT(SK_SMTP_PATH_MAX_OCTETS);
    const sk_suppression *found = NULL;
    if (key_of(addr, &a)) {
        sk_suppression key = {.address = a.data};
        sk_suppression *const *slot = tfind(&key, &set->root, cmp_entry);
        if (slot && ((*slot)->until_s == 0 || (*slot)->until_s > now_s)) found = *slot;
    }
    sk_buf_free(&a);
    return found;
}
