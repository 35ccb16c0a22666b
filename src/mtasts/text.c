/* The pieces the MTA-STS and TLS-RPT parsers share: reasons, character
 * classes, domain names and extension names. */
#include "mtasts_int.h"

const char *mts_quote(const char *s, size_t n, char *out, size_t max)
{
    size_t o = 0;
    for (size_t i = 0; i < n && i < max; i++) {
        unsigned char c = (unsigned char)s[i];
        out[o++] = c >= 0x20 && c < 0x7f ? (char)c : '?';
    }
    if (n > max) {
        out[o++] = '.';
        out[o++] = '.';
        out[o++] = '.';
    }
    out[o] = '\0';
    return out;
}

int mts_is_alpha(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

int mts_is_digit(unsigned char c)
{
    return c >= '0' && c <= '9';
}

int mts_is_wsp(unsigned char c)
{
    return c == ' ' || c == '\t';
}

int mts_domain_valid(const char *s, size_t n)
{
    if (n == 0 || n > SK_SMTP_DOMAIN_MAX_OCTETS - 2) return 0; /* 253: RFC 1035 2.3.4 */
    size_t label = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '.') {
            if (label == 0 || s[i - 1] == '-') return 0;
            label = 0;
            continue;
        }
        if (!mts_is_alpha(c) && !mts_is_digit(c) && !(c == '-' && label > 0)) return 0;
        if (++label > 63) return 0;
    }
    return label > 0 && s[n - 1] != '-';
}

int mts_ext_name_valid(const char *s, size_t n)
{
    if (n == 0 || n > 32) return 0;
    if (!mts_is_alpha((unsigned char)s[0]) && !mts_is_digit((unsigned char)s[0])) return 0;
    for (size_t i = 1; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!mts_is_alpha(c) && !mts_is_digit(c) && c != '_' && c != '-' && c != '.') return 0;
    }
    return 1;
}
