/* Hexadecimal digits: the value of one, and octets written as two each
 * (log escapes, xtext, %XX and quoted-printable escapes, random tokens). */
#include <smtpkit/util.h>

int sk_hex_value(int c)
{
    /* RFC 5234 2.3: HEXDIG's "A"-"F" match either case. */
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

void sk_hex_encode(char *out, const void *in, size_t n, bool upper)
{
    const char *digits = upper ? "0123456789ABCDEF" : "0123456789abcdef";
    const unsigned char *p = in;
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[p[i] >> 4];
        out[2 * i + 1] = digits[p[i] & 15];
    }
    out[2 * n] = '\0';
}
