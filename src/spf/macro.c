/* SPF macros (RFC 7208 7): the grammar of macro-strings and explanation
 * strings, expansion with transformers and delimiters, URL escaping. */
#include "spf_int.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

int spf_ip_parse(const char *text, spf_ip *out)
{
    memset(out, 0, sizeof *out);
    if (!text) return -1;
    if (inet_pton(AF_INET, text, out->a) == 1) {
        out->family = 4;
        return 0;
    }
    if (inet_pton(AF_INET6, text, out->a) != 1) return -1;
    /* RFC 7208 5: an IPv4-mapped IPv6 address is an IPv4 address. */
    static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (!memcmp(out->a, mapped, sizeof mapped)) {
        memmove(out->a, out->a + 12, 4);
        memset(out->a + 4, 0, 12);
        out->family = 4;
        return 0;
    }
    out->family = 6;
    return 0;
}

int spf_prefix_match(const unsigned char *a, const unsigned char *b, int bits)
{
    int full = bits / 8, rest = bits % 8;
    if (memcmp(a, b, (size_t)full) != 0) return 0;
    if (!rest) return 1;
    unsigned char mask = (unsigned char)(0xff << (8 - rest));
    return (a[full] & mask) == (b[full] & mask);
}

int spf_toplabel_ok(const char *s, size_t len)
{
    if (!len || !isalnum((unsigned char)s[0]) || !isalnum((unsigned char)s[len - 1])) return 0;
    int alpha = 0, hyphen = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch == '-')
            hyphen = 1;
        else if (isalpha(ch))
            alpha = 1;
        else if (!isdigit(ch))
            return 0;
    }
    return alpha || hyphen;
}

/* 7.1 macro-literal: visible ASCII but "%". */
static int is_literal(unsigned char ch)
{
    return ch >= 0x21 && ch <= 0x7e && ch != '%';
}

static int is_delimiter(char ch)
{
    return ch && strchr(".-+,/_=", ch) != NULL;
}

/* The value of a macro letter (lowercase) into out. */
static sk_err letter_value(char letter, const sk_spf_macro_vars *v, sk_buf *out)
{
    spf_ip ip;
    switch (letter) {
    case 's':
        return sk_buf_puts(out, v->sender ? v->sender : "");
    case 'l':
        return sk_buf_puts(out, v->local ? v->local : "");
    case 'o':
        return sk_buf_puts(out, v->sender_domain ? v->sender_domain : "");
    case 'd':
        return sk_buf_puts(out, v->domain ? v->domain : "");
    case 'h':
        return sk_buf_puts(out, v->helo ? v->helo : "");
    case 'p':
        return sk_buf_puts(out, v->ptr_name ? v->ptr_name : "unknown");
    case 'r':
        return sk_buf_puts(out, v->receiver ? v->receiver : "unknown");
    case 't': {
        long long t = v->now_s ? (long long)v->now_s : (long long)time(NULL);
        return sk_buf_printf(out, "%lld", t);
    }
    case 'v':
        if (spf_ip_parse(v->ip, &ip)) return SK_ERR_INVAL;
        return sk_buf_puts(out, ip.family == 4 ? "in-addr" : "ip6");
    case 'c':
    case 'i': {
        if (spf_ip_parse(v->ip, &ip)) return SK_ERR_INVAL;
        char text[INET6_ADDRSTRLEN];
        if (ip.family == 4 || letter == 'c') {
            /* 7.3: IPv4 dotted quad for both; "c" of IPv6 is a colon form. */
            inet_ntop(ip.family == 4 ? AF_INET : AF_INET6, ip.a, text, sizeof text);
            return sk_buf_puts(out, text);
        }
        /* 7.3: "i" of IPv6 is the dot-format of 32 nibbles. Uppercase, as
         * the RFC 7208 test suite expects in explanations; DNS names
         * compare without case. */
        static const char hex[] = "0123456789ABCDEF";
        for (int k = 0; k < 16; k++) {
            char nib[5] = {hex[ip.a[k] >> 4], '.', hex[ip.a[k] & 0xf], k < 15 ? '.' : '\0', '\0'};
            sk_err e = sk_buf_puts(out, nib);
            if (e) return e;
        }
        return SK_OK;
    }
    default:
        return SK_ERR_SYNTAX;
    }
}

/* 7.3: split value on the delimiters, reverse with r, keep the rightmost
 * digits parts, join with "."; URL-escape for an uppercase letter. */
static sk_err transform(const char *value, size_t vlen, unsigned keep, int reverse,
                        const char *delims, size_t ndelims, int escape, sk_buf *out)
{
    /* Part boundaries: at most one part per octet plus one. */
    size_t nparts = 1;
    for (size_t i = 0; i < vlen; i++)
        if (ndelims ? memchr(delims, value[i], ndelims) != NULL : value[i] == '.') nparts++;
    size_t *start = sk_calloc(nparts, sizeof *start), *end = sk_calloc(nparts, sizeof *end);
    sk_err e = SK_OK;
    if (!start || !end) {
        e = SK_ERR_NOMEM;
        goto done;
    }
    size_t n = 0;
    start[0] = 0;
    for (size_t i = 0; i < vlen; i++) {
        if (ndelims ? memchr(delims, value[i], ndelims) != NULL : value[i] == '.') {
            end[n++] = i;
            start[n] = i + 1;
        }
    }
    end[n++] = vlen;
    size_t first = keep && keep < n ? n - keep : 0;
    for (size_t k = first; k < n && !e; k++) {
        size_t idx = reverse ? n - 1 - k : k;
        if (k > first) e = sk_buf_putc(out, '.');
        for (size_t i = start[idx]; i < end[idx] && !e; i++) {
            unsigned char ch = (unsigned char)value[i];
            /* RFC 3986 2.3 unreserved characters stay. */
            if (!escape || isalnum(ch) || ch == '-' || ch == '.' || ch == '_' || ch == '~')
                e = sk_buf_putc(out, (char)ch);
            else
                e = sk_buf_printf(out, "%%%02X", ch);
        }
    }
done:
    sk_free(start);
    sk_free(end);
    return e;
}

sk_err spf_macro_walk(const char *s, size_t len, sk_spf_macro_mode mode, const sk_spf_macro_vars *v,
                      sk_buf *out, size_t *last_macro_end)
{
    int expand = v && out;
    /* The whole string is checked first: a syntax error is reported as
     * such even when the output would overflow before reaching it. */
    if (expand) {
        sk_err e = spf_macro_walk(s, len, mode, NULL, NULL, NULL);
        if (e) return e;
    }
    if (last_macro_end) *last_macro_end = 0;
    size_t i = 0;
    sk_err e = SK_OK;
    while (i < len && !e) {
        unsigned char ch = (unsigned char)s[i];
        if (ch != '%') {
            if (!is_literal(ch) && !(mode == SK_SPF_MACRO_EXPLAIN && ch == ' '))
                return SK_ERR_SYNTAX;
            if (expand) e = sk_buf_putc(out, (char)ch);
            i++;
            continue;
        }
        if (i + 1 >= len) return SK_ERR_SYNTAX;
        char next = s[i + 1];
        if (next == '%' || next == '_' || next == '-') {
            if (expand) e = sk_buf_puts(out, next == '%' ? "%" : next == '_' ? " " : "%20");
            i += 2;
            if (last_macro_end) *last_macro_end = i;
            continue;
        }
        if (next != '{' || i + 2 >= len) return SK_ERR_SYNTAX;
        /* %{ letter *DIGIT [r] *delimiter } */
        size_t p = i + 2;
        char letter = s[p++];
        char lower = (char)tolower((unsigned char)letter);
        const char *allowed = mode == SK_SPF_MACRO_EXPLAIN ? "slodiphcrtv" : "slodiphv";
        if (!isalpha((unsigned char)letter) || !strchr(allowed, lower)) return SK_ERR_SYNTAX;
        unsigned long keep = 0;
        int digits = 0;
        while (p < len && isdigit((unsigned char)s[p])) {
            /* More parts than any name has is "all of them". */
            if (keep < 1000) keep = keep * 10 + (unsigned long)(s[p] - '0');
            digits = 1;
            p++;
        }
        /* 7.3: a DIGIT transformer must be nonzero. */
        if (digits && keep == 0) return SK_ERR_SYNTAX;
        int reverse = 0;
        if (p < len && (s[p] == 'r' || s[p] == 'R')) {
            reverse = 1;
            p++;
        }
        size_t dstart = p;
        while (p < len && is_delimiter(s[p])) p++;
        if (p >= len || s[p] != '}') return SK_ERR_SYNTAX;
        if (expand) {
            sk_buf val = SK_BUF_INIT(out->max);
            e = letter_value(lower, v, &val);
            if (!e)
                e = transform(sk_buf_cstr(&val), val.len, (unsigned)keep, reverse, s + dstart,
                              p - dstart, isupper((unsigned char)letter), out);
            sk_buf_free(&val);
        }
        i = p + 1;
        if (last_macro_end) *last_macro_end = i;
    }
    return e;
}

sk_err sk_spf_macro_expand(const char *spec, size_t len, sk_spf_macro_mode mode,
                           const sk_spf_macro_vars *v, sk_buf *out)
{
    if (!spec || (v && !out)) return SK_ERR_INVAL;
    return spf_macro_walk(spec, len, mode, v, out, NULL);
}

int sk_spf_macro_uses_p(const char *spec, size_t len)
{
    for (size_t i = 0; i + 2 < len; i++) {
        if (spec[i] != '%') continue;
        if (spec[i + 1] == '{' && (spec[i + 2] == 'p' || spec[i + 2] == 'P')) return 1;
        i++; /* "%%" is one token: "%%{p}" is literal */
    }
    return 0;
}
