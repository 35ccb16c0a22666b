/* Body encodings of MIME (RFC 2045 6): canonical text, the choice between
 * 7bit, quoted-printable and base64, and the encoders themselves. */
#include "mime/mime_int.h"

#include <string.h>

bool sk_mime_utf8_valid(const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        unsigned char c = p[i];
        size_t len;
        uint32_t cp;
        if (c < 0x80) {
            i++;
            continue;
        } else if (c >= 0xc2 && c <= 0xdf) {
            len = 2;
            cp = c & 0x1f;
        } else if (c >= 0xe0 && c <= 0xef) {
            len = 3;
            cp = c & 0x0f;
        } else if (c >= 0xf0 && c <= 0xf4) {
            len = 4;
            cp = c & 0x07;
        } else {
            return false;
        }
        if (n - i < len) return false;
        for (size_t k = 1; k < len; k++) {
            if ((p[i + k] & 0xc0) != 0x80) return false;
            cp = cp << 6 | (p[i + k] & 0x3f);
        }
        /* RFC 3629 3: overlong forms, surrogates and values past U+10FFFF. */
        if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
            (cp >= 0xd800 && cp <= 0xdfff))
            return false;
        i += len;
    }
    return true;
}

size_t sk_mime_utf8_seq_len(const char *s, size_t n)
{
    unsigned char c = (unsigned char)s[0];
    size_t len = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc0 ? 2 : 1;
    return len > n ? n : len;
}

bool sk_mime_is_ascii(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] >= 0x80) return false;
    return true;
}

bool sk_mime_has_crlf(const char *s)
{
    return strpbrk(s, "\r\n") != NULL;
}

const char *sk_cte_name(sk_cte c)
{
    switch (c) {
    case SK_CTE_7BIT:
        return "7bit";
    case SK_CTE_QP:
        return "quoted-printable";
    case SK_CTE_BASE64:
        return "base64";
    }
    return "base64";
}

sk_err sk_mime_canon_text(sk_buf *out, const char *in, size_t n)
{
    size_t start = 0;
    for (size_t i = 0; i < n; i++) {
        if (in[i] != '\r' && in[i] != '\n') continue;
        sk_err e = sk_buf_append(out, in + start, i - start);
        if (!e) e = sk_buf_append(out, "\r\n", 2);
        if (e) return e;
        if (in[i] == '\r' && i + 1 < n && in[i + 1] == '\n') i++;
        start = i + 1;
    }
    return sk_buf_append(out, in + start, n - start);
}

/* The QP encoder writes through this sink so that one function both
 * measures and encodes. */
typedef struct qp_sink {
    sk_buf *out; /* NULL: count only */
    size_t len;
    sk_err err;
} qp_sink;

static void qp_put(qp_sink *s, const char *p, size_t n)
{
    s->len += n;
    if (s->out && !s->err) s->err = sk_buf_append(s->out, p, n);
}

static void qp_run(qp_sink *s, const unsigned char *in, size_t n, bool text)
{
    size_t col = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = in[i];
        if (text && c == '\r' && i + 1 < n && in[i + 1] == '\n') {
            qp_put(s, "\r\n", 2); /* a hard line break */
            col = 0;
            i++;
            continue;
        }
        bool at_line_end =
            i + 1 == n || (text && in[i + 1] == '\r' && i + 2 < n && in[i + 2] == '\n');
        for (int pass = 0; pass < 2; pass++) {
            bool encode;
            if (c == ' ' || c == '\t')
                encode = at_line_end; /* RFC 2045 6.7 (3): no trailing white space */
            else if (c < 33 || c > 126 || c == '=')
                encode = true;
            else if (col == 0 && c == '.')
                encode = true;
            else if (col == 0 && c == 'F' && n - i >= 5 && memcmp(in + i, "From ", 5) == 0)
                encode = true;
            else
                encode = false;
            size_t width = encode ? 3 : 1;
            /* RFC 2045 6.7 (5): lines of at most 76 characters, the soft
             * break's '=' included; the last token of a line needs no '='. */
            size_t room = at_line_end ? SK_MIME_QP_LINE_OCTETS : SK_MIME_QP_LINE_OCTETS - 1;
            if (col + width > room && pass == 0) {
                qp_put(s, "=\r\n", 3);
                col = 0;
                continue; /* the class of c may differ at the start of a line */
            }
            if (encode) {
                char esc[4] = {'='};
                sk_hex_encode(esc + 1, &c, 1, true);
                qp_put(s, esc, 3);
            } else {
                qp_put(s, (const char *)&c, 1);
            }
            col += width;
            break;
        }
    }
}

sk_err sk_mime_qp_encode(sk_buf *out, const void *in, size_t n, bool text)
{
    qp_sink s = {out, 0, SK_OK};
    qp_run(&s, in, n, text);
    return s.err;
}

size_t sk_mime_qp_length(const void *in, size_t n, bool text)
{
    qp_sink s = {NULL, 0, SK_OK};
    qp_run(&s, in, n, text);
    return s.len;
}

static size_t base64_lines_length(size_t n)
{
    size_t chars = (n + 2) / 3 * 4;
    size_t lines = (chars + SK_MIME_BASE64_LINE_OCTETS - 1) / SK_MIME_BASE64_LINE_OCTETS;
    return chars + 2 * lines;
}

sk_err sk_mime_base64_lines(sk_buf *out, const void *in, size_t n)
{
    /* 57 octets make one line of 76 characters. */
    const size_t per_line = SK_MIME_BASE64_LINE_OCTETS / 4 * 3;
    const char *p = in;
    sk_err e = sk_buf_reserve(out, base64_lines_length(n));
    for (size_t off = 0; !e && off < n; off += per_line) {
        size_t k = n - off < per_line ? n - off : per_line;
        e = sk_base64_encode(out, p + off, k);
        if (!e) e = sk_buf_append(out, "\r\n", 2);
    }
    return e;
}

sk_cte sk_mime_choose_text_cte(const char *text, size_t n)
{
    bool plain = true;
    size_t col = 0;
    for (size_t i = 0; i < n && plain; i++) {
        unsigned char c = (unsigned char)text[i];
        if (c == '\r' && i + 1 < n && text[i + 1] == '\n') {
            col = 0;
            i++;
            continue;
        }
        /* RFC 2045 2.7: 7bit data has no NUL and no bare CR or LF. */
        if (c == 0 || c >= 0x80 || c == '\r' || c == '\n') plain = false;
        /* Our boundaries start with "=_", which QP and base64 never produce;
         * 7bit text containing it is encoded so no boundary can occur. */
        if (c == '=' && i + 1 < n && text[i + 1] == '_') plain = false;
        if (++col > SK_MIME_LINE_SOFT_OCTETS) plain = false;
    }
    if (plain) return SK_CTE_7BIT;
    return sk_mime_qp_length(text, n, true) <= base64_lines_length(n) ? SK_CTE_QP : SK_CTE_BASE64;
}
