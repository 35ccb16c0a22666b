/* Allocation through a replaceable allocator (tests fail allocations), and
 * the growth of arrays. */
#include <smtpkit/util.h>

#include <stdlib.h>
#include <string.h>

static sk_allocator allocator = {malloc, realloc, free};

void sk_set_allocator(const sk_allocator *a)
{
    if (a)
        allocator = *a;
    else
        allocator = (sk_allocator){malloc, realloc, free};
}

void *sk_malloc(size_t n)
{
    return allocator.malloc_fn(n ? n : 1);
}

void *sk_calloc(size_t n, size_t size)
{
    if (size && n > SIZE_MAX / size) return NULL;
    void *p = sk_malloc(n * size);
    if (p) memset(p, 0, n * size);
    return p;
}

void *sk_realloc(void *p, size_t n)
{
    return allocator.realloc_fn(p, n ? n : 1);
}

void sk_free(void *p)
{
    if (p) allocator.free_fn(p);
}

char *sk_strndup(const char *s, size_t n)
{
    char *p = sk_malloc(n + 1);
    if (!p) return NULL;
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

char *sk_strdup(const char *s)
{
    return s ? sk_strndup(s, strlen(s)) : NULL;
}

sk_err sk_array_grow(void *arrayp, size_t *cap, size_t need, size_t elem, size_t max)
{
    if (need <= *cap) return SK_OK;
    if (!elem) return SK_ERR_INVAL;
    if (need > max) return SK_ERR_TOO_LONG;
    size_t most = SIZE_MAX / elem; /* elements whose octets fit in a size_t */
    if (need > most) return SK_ERR_NOMEM;
    if (max > most) max = most;
    size_t ncap = *cap ? *cap : SK_ARRAY_FIRST_OCTETS / elem;
    if (!ncap) ncap = 1;
    while (ncap < need) ncap = ncap > max / 2 ? max : ncap * 2;
    if (ncap > max) ncap = max;
    /* The pointer is read and written as octets: arrayp may point to any
     * object pointer type. */
    void *old;
    memcpy(&old, arrayp, sizeof old);
    void *p = sk_realloc(old, ncap * elem);
    if (!p) return SK_ERR_NOMEM;
    memcpy(arrayp, &p, sizeof p);
    *cap = ncap;
    return SK_OK;
}
