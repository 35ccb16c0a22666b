/* Allocation through a replaceable allocator (tests fail allocations). */
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
