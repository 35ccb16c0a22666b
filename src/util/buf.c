/* sk_buf: the one growable, bounded byte buffer. */
#include <smtpkit/util.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* What one read(2) asks for when reading to the end of a file. */
#define READ_CHUNK_OCTETS (64 * 1024)
/* What sk_buf_vprintf formats on the stack before it needs the buffer's
 * own room: more than the usual log line, reply or path. */
#define PRINTF_SMALL_OCTETS 512

void sk_buf_init(sk_buf *b, size_t max)
{
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
    b->max = max;
}

void sk_buf_free(sk_buf *b)
{
    sk_free(b->data);
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
}

void sk_buf_reset(sk_buf *b)
{
    sk_buf_truncate(b, 0);
}

void sk_buf_truncate(sk_buf *b, size_t len)
{
    if (len > b->len) return;
    b->len = len;
    if (b->data) b->data[len] = '\0';
}

sk_err sk_buf_reserve(sk_buf *b, size_t extra)
{
    if (extra > b->max || b->len > b->max - extra) return SK_ERR_TOO_LONG;
    size_t need = b->len + extra + 1; /* room for the NUL */
    if (need <= b->cap) return SK_OK;
    sk_err e = sk_array_grow(&b->data, &b->cap, need, 1, b->max + 1);
    if (e) return e;
    b->data[b->len] = '\0'; /* sk_buf_cstr is valid right after a reserve */
    return SK_OK;
}

sk_err sk_buf_append(sk_buf *b, const void *p, size_t n)
{
    sk_err e = sk_buf_reserve(b, n);
    if (e) return e;
    if (n) memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
    return SK_OK;
}

sk_err sk_buf_puts(sk_buf *b, const char *s)
{
    return sk_buf_append(b, s, strlen(s));
}

sk_err sk_buf_putc(sk_buf *b, char c)
{
    return sk_buf_append(b, &c, 1);
}

sk_err sk_buf_vprintf(sk_buf *b, const char *fmt, va_list ap)
{
    /* Formatted once into a buffer on the stack when it fits (nearly
     * always), instead of once to measure and once to write. */
    char small[PRINTF_SMALL_OCTETS];
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf(small, sizeof small, fmt, ap2);
    va_end(ap2);
    if (n < 0) return SK_ERR_INVAL;
    if ((size_t)n < sizeof small) return sk_buf_append(b, small, (size_t)n);
    sk_err e = sk_buf_reserve(b, (size_t)n);
    if (e) return e;
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    b->len += (size_t)n;
    return SK_OK;
}

sk_err sk_buf_printf(sk_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    sk_err e = sk_buf_vprintf(b, fmt, ap);
    va_end(ap);
    return e;
}

void sk_buf_consume(sk_buf *b, size_t n)
{
    if (n >= b->len) {
        sk_buf_reset(b);
        return;
    }
    memmove(b->data, b->data + n, b->len - n);
    b->len -= n;
    b->data[b->len] = '\0';
}

char *sk_buf_detach(sk_buf *b, size_t *len)
{
    char *p = b->data;
    if (len) *len = b->len;
    if (!p) p = sk_strdup("");
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
    return p;
}

const char *sk_buf_cstr(const sk_buf *b)
{
    return b->data ? b->data : "";
}

sk_err sk_buf_read_fd(sk_buf *b, int fd, uint64_t octets)
{
    bool all = octets == SK_BUF_READ_ALL;
    size_t start = b->len;
    sk_err e = SK_OK;
    for (uint64_t got = 0; !e && (all || got < octets);) {
        /* A known length is made room for at once; the end of a file is
         * read for in chunks, and a full buffer reads one octet more only
         * to learn whether the file ends there. */
        uint64_t want = all ? READ_CHUNK_OCTETS : octets - got;
        size_t room = b->max - b->len;
        if (want > room && !all) {
            e = SK_ERR_TOO_LONG;
            break;
        }
        if (want > room) want = room;
        char probe;
        char *dst = &probe;
        if (want) {
            if ((e = sk_buf_reserve(b, (size_t)want))) break;
            dst = b->data + b->len;
        } else {
            want = 1;
        }
        ssize_t r = read(fd, dst, (size_t)want);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0 || (r == 0 && !all)) {
            e = SK_ERR_IO;
        } else if (r == 0) {
            break;
        } else if (dst == &probe) {
            e = SK_ERR_TOO_LONG;
        } else {
            b->len += (size_t)r;
            b->data[b->len] = '\0';
            got += (uint64_t)r;
        }
    }
    if (e) {
        int saved = errno;
        sk_buf_truncate(b, start);
        errno = saved;
    }
    return e;
}
