/* Walking the header fields of a raw message: used wherever a received
 * message's header is read as it stands (DMARC's From, removal of forged
 * Authentication-Results). */
#include <smtpkit/message.h>

#include <string.h>
#include <strings.h>

/* End of the line starting at i (index of its line end or len), and the
 * index just past its line end. */
static size_t line_end(const char *raw, size_t len, size_t i, size_t *next)
{
    while (i < len && raw[i] != '\r' && raw[i] != '\n') i++;
    size_t e = i;
    if (i < len) i += raw[i] == '\r' && i + 1 < len && raw[i + 1] == '\n' ? 2 : 1;
    *next = i;
    return e;
}

int sk_header_next(const char *raw, size_t len, size_t *pos, sk_header_field *f)
{
    size_t i = *pos;
    if (i >= len || raw[i] == '\r' || raw[i] == '\n') return 0;
    memset(f, 0, sizeof *f);
    f->offset = i;
    size_t next;
    size_t e = line_end(raw, len, i, &next);
    /* RFC 5322 3.6.8: ftext is printable ASCII but the colon. */
    size_t n = 0;
    while (i + n < e && raw[i + n] >= 33 && raw[i + n] <= 126 && raw[i + n] != ':') n++;
    size_t c = i + n;
    while (c < e && sk_is_wsp(raw[c])) c++;
    if (n > 0 && c < e && raw[c] == ':') {
        f->name = raw + i;
        f->name_len = n;
        f->value = raw + c + 1;
        /* Continuation lines start with white space. */
        while (next < len && sk_is_wsp(raw[next])) e = line_end(raw, len, next, &next);
        f->value_len = (size_t)(raw + e - f->value);
    } else {
        f->name = raw + i;
        f->value = raw + i;
        f->value_len = e - i;
    }
    f->length = next - f->offset;
    *pos = next;
    return 1;
}

int sk_header_is(const sk_header_field *f, const char *name)
{
    return f->name_len > 0 && f->name_len == strlen(name) &&
           strncasecmp(f->name, name, f->name_len) == 0;
}

sk_err sk_header_unfold(const sk_header_field *f, sk_buf *out)
{
    size_t i = 0, n = f->value_len;
    const char *v = f->value;
    while (i < n && (sk_is_wsp(v[i]) || v[i] == '\r' || v[i] == '\n')) i++;
    while (i < n) {
        size_t j = i;
        while (j < n && v[j] != '\r' && v[j] != '\n') j++;
        sk_err e = sk_buf_append(out, v + i, j - i);
        if (e) return e;
        if (j < n && v[j] == '\r') j++;
        if (j < n && v[j] == '\n') j++;
        i = j;
    }
    /* A value may be empty: the buffer still holds a string. */
    return sk_buf_reserve(out, 0);
}
