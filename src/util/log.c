/* Logging through the caller's callback, and escaping of peer strings. */
#include <smtpkit/util.h>

#include <stdio.h>

void sk_log(const sk_logger *l, sk_log_level level, const char *fmt, ...)
{
    if (!l || !l->fn || level > l->max_level) return;
    char line[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    l->fn(l->ctx, level, line);
}

sk_err sk_log_escape(sk_buf *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        sk_err e;
        if (c == '"' || c == '\\') {
            char esc[2] = {'\\', (char)c};
            e = sk_buf_append(b, esc, 2);
        } else if (c < 0x20 || c >= 0x7f) {
            char esc[4] = {'\\', 'x', hex[c >> 4], hex[c & 15]};
            e = sk_buf_append(b, esc, 4);
        } else {
            e = sk_buf_putc(b, (char)c);
        }
        if (e) return e;
    }
    return SK_OK;
}
