/* xtext (RFC 3461 4), the form of ENVID, ORCPT's rfc822 addresses and
 * AUTH= (RFC 4954 5): checking, encoding and decoding, for the server's
 * parameter parser, the client's MAIL and RCPT, and DSNs. */
#include <smtpkit/proto.h>

/* RFC 3461 4: xchar is "!".."~" except "+" and "="; any other octet is
 * "+" and two upper-case hex digits. */
static int xchar(unsigned char c)
{
    return c >= 33 && c <= 126 && c != '+' && c != '=';
}

int sk_xtext_valid(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '+') {
            if (i + 2 >= n) return 0;
            for (int k = 1; k <= 2; k++) {
                unsigned char h = (unsigned char)s[i + (size_t)k];
                if (sk_hex_value(h) < 0 || (h >= 'a' && h <= 'f')) return 0;
            }
            i += 2;
        } else if (!xchar(c)) {
            return 0;
        }
    }
    return 1;
}

sk_err sk_xtext_encode(const char *s, sk_buf *out)
{
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        sk_err e;
        if (xchar(*p)) {
            e = sk_buf_putc(out, (char)*p);
        } else {
            char esc[4] = {'+'};
            sk_hex_encode(esc + 1, p, 1, true);
            e = sk_buf_append(out, esc, 3);
        }
        if (e) return e;
    }
    return SK_OK;
}

sk_err sk_xtext_decode(const char *in, char *out, size_t outsize)
{
    size_t o = 0;
    if (!outsize) return SK_ERR_TOO_LONG;
    for (const char *p = in; *p; p++) {
        int c = (unsigned char)*p;
        if (c == '+') {
            /* Lower-case digits are taken too: what was meant is clear. */
            int h = sk_hex_value(p[1]), l = h >= 0 ? sk_hex_value(p[2]) : -1;
            if (h < 0 || l < 0) return SK_ERR_SYNTAX;
            c = h * 16 + l;
            p += 2;
        }
        if (o + 1 >= outsize) return SK_ERR_TOO_LONG;
        out[o++] = (char)c;
    }
    out[o] = '\0';
    return SK_OK;
}
