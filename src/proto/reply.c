/* sk_reply construction, classification and its one-line text form. */
#include <smtpkit/reply.h>

#include <ctype.h>
#include <stdio.h>
#include <string.h>

sk_reply_class sk_reply_class_of(int code)
{
    if (code < 200 || code > 599) return SK_REPLY_INVALID;
    switch (code / 100) {
    case 2:
        return SK_REPLY_SUCCESS;
    case 3:
        return SK_REPLY_INTERMEDIATE;
    case 4:
        return SK_REPLY_TRANSIENT;
    default:
        return SK_REPLY_PERMANENT;
    }
}

sk_reply_class sk_enhanced_class(const char *enhanced)
{
    if (!enhanced) return SK_REPLY_INVALID;
    switch (enhanced[0]) {
    case '2':
        return SK_REPLY_SUCCESS;
    case '4':
        return SK_REPLY_TRANSIENT;
    case '5':
        return SK_REPLY_PERMANENT;
    default:
        return SK_REPLY_INVALID;
    }
}

sk_reply sk_reply_make(int code, const char *enhanced, const char *fmt, ...)
{
    sk_reply r;
    memset(&r, 0, sizeof r);
    r.code = code;
    if (enhanced) snprintf(r.enhanced, sizeof r.enhanced, "%s", enhanced);
    if (fmt) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(r.text, sizeof r.text, fmt, ap);
        va_end(ap);
    }
    return r;
}

/* RFC 3463 2: class "." subject "." detail; subject and detail 1-3 digits
 * without leading zeros beyond a single 0. */
static const char *digits(const char *p, int max)
{
    int n = 0;
    if (*p == '0' && isdigit((unsigned char)p[1])) return NULL;
    while (isdigit((unsigned char)*p) && n < max + 1) p++, n++;
    return n >= 1 && n <= max ? p : NULL;
}

int sk_enhanced_valid(const char *s, int code)
{
    if (!s || (s[0] != '2' && s[0] != '4' && s[0] != '5') || s[1] != '.') return 0;
    if (code && sk_reply_class_of(code) != sk_enhanced_class(s)) return 0;
    const char *p = digits(s + 2, 3);
    if (!p || *p != '.') return 0;
    p = digits(p + 1, 3);
    return p && *p == '\0';
}

sk_err sk_reply_to_line(const sk_reply *r, sk_buf *out)
{
    size_t start = out->len;
    sk_err e =
        sk_buf_printf(out, "%d%s%s %s", r->code, r->enhanced[0] ? " " : "", r->enhanced, r->text);
    /* Multi-line replies are joined by '\n'; keep one line for display. */
    for (size_t i = start; !e && i < out->len; i++)
        if (out->data[i] == '\n' || out->data[i] == '\r') out->data[i] = ' ';
    return e;
}

void sk_reply_from_line(const char *line, sk_reply *out)
{
    memset(out, 0, sizeof *out);
    if (!line) return;
    const char *p = line;
    if (isdigit((unsigned char)p[0]) && isdigit((unsigned char)p[1]) &&
        isdigit((unsigned char)p[2]) && (p[3] == ' ' || p[3] == '\0')) {
        out->code = (p[0] - '0') * 100 + (p[1] - '0') * 10 + (p[2] - '0');
        p += p[3] ? 4 : 3;
    }
    size_t n = strcspn(p, " ");
    if (n && n < sizeof out->enhanced) {
        memcpy(out->enhanced, p, n);
        out->enhanced[n] = '\0';
        if (sk_enhanced_valid(out->enhanced, out->code)) {
            p += n;
            if (*p == ' ') p++;
        } else {
            out->enhanced[0] = '\0';
        }
    }
    snprintf(out->text, sizeof out->text, "%s", p);
}
