/* The ORCPT parameter (RFC 3461 4.2) and its "utf-8" address type with
 * the \x{HEX} encoding of RFC 6533 3: checking, encoding, decoding. */
#include <smtpkit/proto.h>

#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

/* RFC 6533 3: QCHAR = %x21-2a / %x2c-3c / %x3e-5b / %x5d-7e, printable
 * ASCII except SP, "\", "+" and "=". */
static int qchar(unsigned c)
{
    return c >= 0x21 && c <= 0x7e && c != '+' && c != '=' && c != '\\';
}

/* RFC 6533 3 HEXPOINT, two-digit "xtext-specials": 01-09, 10-19, 20, 2B,
 * 3D, 7F and "5C"; the other C0 controls (NUL, LF, CR among them) have no
 * form at all, so no decoded address can end a command line. */
static int escapable_ascii(unsigned c)
{
    return (c >= 0x01 && c <= 0x09) || (c >= 0x10 && c <= 0x19) || c == 0x20 || c == '+' ||
           c == '=' || c == 0x7f || c == '\\';
}

/* Decode the well-formed UTF-8 sequence at p (RFC 3629 4) into *cp;
 * returns its length, 0 when malformed (overlong, surrogate, past
 * U+10FFFF, cut short). */
static size_t utf8_decode(const unsigned char *p, size_t n, uint32_t *cp)
{
    unsigned c = p[0];
    size_t len;
    uint32_t v, min;
    if (c < 0x80) {
        *cp = c;
        return 1;
    } else if (c >= 0xc2 && c <= 0xdf) {
        len = 2, v = c & 0x1f, min = 0x80;
    } else if (c >= 0xe0 && c <= 0xef) {
        len = 3, v = c & 0x0f, min = 0x800;
    } else if (c >= 0xf0 && c <= 0xf4) {
        len = 4, v = c & 0x07, min = 0x10000;
    } else {
        return 0;
    }
    if (n < len) return 0;
    for (size_t i = 1; i < len; i++) {
        if ((p[i] & 0xc0) != 0x80) return 0;
        v = v << 6 | (p[i] & 0x3f);
    }
    if (v < min || v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff)) return 0;
    *cp = v;
    return len;
}

static size_t utf8_encode(uint32_t v, char out[4])
{
    if (v < 0x80) return out[0] = (char)v, 1;
    if (v < 0x800) return out[0] = (char)(0xc0 | v >> 6), out[1] = (char)(0x80 | (v & 0x3f)), 2;
    if (v < 0x10000) {
        out[0] = (char)(0xe0 | v >> 12);
        out[1] = (char)(0x80 | (v >> 6 & 0x3f));
        out[2] = (char)(0x80 | (v & 0x3f));
        return 3;
    }
    out[0] = (char)(0xf0 | v >> 18);
    out[1] = (char)(0x80 | (v >> 12 & 0x3f));
    out[2] = (char)(0x80 | (v >> 6 & 0x3f));
    out[3] = (char)(0x80 | (v & 0x3f));
    return 4;
}

/* Does the address need an escape for an ASCII character? */
static int has_ascii_special(const char *s)
{
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if (*p < 0x80 && !qchar(*p)) return 1;
    return 0;
}

static int is_ascii(const char *s)
{
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if (*p >= 0x80) return 0;
    return 1;
}

sk_err sk_utf8_addr_encode(const char *addr, sk_utf8_addr_form form, sk_buf *out)
{
    if (!addr || !*addr) return SK_ERR_SYNTAX; /* 1*(...) */
    size_t start = out->len, n = strlen(addr);
    sk_err e = SK_OK;
    for (size_t i = 0; i < n && !e;) {
        uint32_t cp;
        size_t len = utf8_decode((const unsigned char *)addr + i, n - i, &cp);
        if (!len || cp < 0x20 || cp == 0x7f) {
            /* Not UTF-8, or a control character, which no Mailbox holds
             * (RFC 6531 3.3) and some of which HEXPOINT cannot carry. */
            e = SK_ERR_SYNTAX;
        } else if (cp < 0x80 && qchar(cp)) {
            e = sk_buf_putc(out, (char)cp);
        } else if (cp >= 0x80 && form == SK_UTF8_ADDR_UNITEXT) {
            e = sk_buf_append(out, addr + i, len); /* QUCHAR: UTF8-2/3/4 as is */
        } else {
            /* The shortest HEXPOINT: two digits up to FF, then no leading
             * zero (RFC 6533 3 admits no other spelling). */
            e = sk_buf_printf(out, cp < 0x100 ? "\\x{%02X}" : "\\x{%X}", (unsigned)cp);
        }
        i += len ? len : 1;
    }
    if (e) sk_buf_truncate(out, start);
    return e;
}

/* One EmbeddedUnicodeChar at p ("\x{" HEXPOINT "}"); returns its length
 * and the code point, 0 when it is not one. */
static size_t embedded_char(const char *p, size_t n, uint32_t *cp)
{
    if (n < 6 || p[0] != '\\' || p[1] != 'x' || p[2] != '{') return 0;
    size_t k = 3;
    uint32_t v = 0;
    while (k < n && k < 3 + 7 && sk_hex_value(p[k]) >= 0)
        v = v << 4 | (uint32_t)sk_hex_value(p[k]), k++;
    size_t digits = k - 3;
    if (k >= n || p[k] != '}' || digits < 2 || digits > 6) return 0;
    int first = sk_hex_value(p[3]);
    /* RFC 6533 3 HEXPOINT: two digits for the xtext-specials, "\" and
     * 80-FF; more digits only without a leading zero, no surrogates, at
     * most 10FFFF. */
    if (digits == 2) {
        if (v < 0x80 ? !escapable_ascii(v) : 0) return 0;
    } else {
        if (first == 0 || v < 0x100 || v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff)) return 0;
        if ((digits == 3 && v > 0xfff) || (digits == 4 && v < 0x1000) ||
            (digits == 5 && v < 0x10000) || (digits == 6 && v < 0x100000))
            return 0;
    }
    *cp = v;
    return k + 1;
}

sk_err sk_utf8_addr_decode(const char *in, size_t n, int allow_utf8, char *out, size_t outsize)
{
    size_t o = 0;
    if (!outsize) return SK_ERR_TOO_LONG;
    if (!n) return SK_ERR_SYNTAX;
    for (size_t i = 0; i < n;) {
        const unsigned char c = (unsigned char)in[i];
        uint32_t cp;
        size_t len;
        if (c == '\\') {
            len = embedded_char(in + i, n - i, &cp);
        } else if (c >= 0x80) {
            /* QUCHAR: UTF-8 as is, in utf-8-addr-unitext only. */
            len = allow_utf8 ? utf8_decode((const unsigned char *)in + i, n - i, &cp) : 0;
        } else {
            len = qchar(c) ? 1 : 0;
            cp = c;
        }
        if (!len) return SK_ERR_SYNTAX;
        /* RFC 6533 3: the dequoted form is a Mailbox (RFC 6531), which
         * holds no control characters. */
        if (cp < 0x20 || cp == 0x7f) return SK_ERR_SYNTAX;
        char u[4];
        size_t ulen = utf8_encode(cp, u);
        if (o + ulen >= outsize) return SK_ERR_TOO_LONG;
        memcpy(out + o, u, ulen);
        o += ulen;
        i += len;
    }
    out[o] = '\0';
    return SK_OK;
}

/* Split "type;value": 1 with *type_len and *val when the type is an atom
 * (RFC 3461 4.2 addr-type, RFC 5322 3.2.3 atext) and the value is not
 * empty. */
static int split(const char *v, size_t n, size_t *type_len, const char **val, size_t *val_len)
{
    const char *semi = memchr(v, ';', n);
    if (!semi || semi == v || (size_t)(semi - v) + 1 == n) return 0;
    for (const char *q = v; q < semi; q++)
        if (!sk_is_atext((unsigned char)*q)) return 0;
    *type_len = (size_t)(semi - v);
    *val = semi + 1;
    *val_len = n - *type_len - 1;
    return 1;
}

static int utf8_type(const char *v, size_t type_len)
{
    return type_len == 5 && !strncasecmp(v, "utf-8", 5);
}

int sk_orcpt_valid(const char *v, size_t n, int utf8)
{
    size_t tlen, vlen;
    const char *val;
    if (!v || n > SK_DSN_ORCPT_MAX_OCTETS || !split(v, n, &tlen, &val, &vlen)) return 0;
    if (utf8_type(v, tlen)) {
        char addr[4 * SK_DSN_ORCPT_MAX_OCTETS + 1];
        return sk_utf8_addr_decode(val, vlen, utf8, addr, sizeof addr) == SK_OK;
    }
    /* RFC 3461 4.2: every other type carries xtext, which is ASCII. */
    return sk_xtext_valid(val, vlen);
}

sk_err sk_orcpt_format(const char *addr, int utf8, sk_buf *out)
{
    if (!addr || !*addr) return SK_ERR_SYNTAX;
    size_t start = out->len;
    sk_err e;
    if (is_ascii(addr)) {
        /* RFC 3461 4.2: "rfc822" and the address in xtext. */
        e = sk_buf_puts(out, "rfc822;");
        if (!e) e = sk_xtext_encode(addr, out);
    } else {
        /* RFC 6533 3: the UTF-8 as it is (utf-8-addr-unitext) only to a
         * server that takes SMTPUTF8 and for an address without ASCII
         * characters to escape; otherwise the 7-bit utf-8-addr-xtext. */
        sk_utf8_addr_form form =
            utf8 && !has_ascii_special(addr) ? SK_UTF8_ADDR_UNITEXT : SK_UTF8_ADDR_XTEXT;
        e = sk_buf_puts(out, "utf-8;");
        if (!e) e = sk_utf8_addr_encode(addr, form, out);
    }
    if (!e && out->len - start > SK_DSN_ORCPT_MAX_OCTETS) e = SK_ERR_TOO_LONG;
    if (e) sk_buf_truncate(out, start);
    return e;
}

sk_err sk_orcpt_pass(const char *v, int utf8, sk_buf *out)
{
    size_t n = v ? strlen(v) : 0, tlen, vlen;
    const char *val;
    if (!sk_orcpt_valid(v, n, 1) || !split(v, n, &tlen, &val, &vlen)) return SK_ERR_SYNTAX;
    /* RFC 3461 5.2.1: passed on as received. A "utf-8" value with UTF-8
     * in it (utf-8-addr-unitext) cannot go where SMTPUTF8 is not in use;
     * it goes as the same address in utf-8-addr-xtext (RFC 6533 3). */
    if (utf8 || !utf8_type(v, tlen) || is_ascii(val)) return sk_buf_puts(out, v);
    char addr[4 * SK_DSN_ORCPT_MAX_OCTETS + 1];
    sk_err e = sk_utf8_addr_decode(val, vlen, 1, addr, sizeof addr);
    if (e) return e;
    size_t start = out->len;
    e = sk_buf_append(out, v, tlen + 1);
    if (!e) e = sk_utf8_addr_encode(addr, SK_UTF8_ADDR_XTEXT, out);
    if (!e && out->len - start > SK_DSN_ORCPT_MAX_OCTETS) e = SK_ERR_TOO_LONG;
    if (e) sk_buf_truncate(out, start);
    return e;
}
