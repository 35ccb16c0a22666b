/* Header fields: folding (RFC 5322 2.2.3), RFC 2047 encoded words for text
 * that is not ASCII, and their decoding when headers are read. */
#include "mime/mime_int.h"

#include <string.h>
#include <strings.h>

/* "=?UTF-8?B?" + "?=" */
#define EW_OVERHEAD 12
/* Below this much room left on a line, an encoded word starts a new line. */
#define EW_MIN_OCTETS 24

void sk_hdr_begin(sk_hdr_writer *w, sk_buf *out, const char *name)
{
    w->out = out;
    w->err = sk_buf_puts(out, name);
    if (!w->err) w->err = sk_buf_putc(out, ':');
    w->col = strlen(name) + 1;
}

void sk_hdr_token(sk_hdr_writer *w, const char *ws, size_t wsn, const char *tok, size_t n)
{
    if (w->err) return;
    /* Fold before the white space (RFC 5322 2.2.3): unfolding removes only
     * the CRLF, so the text is unchanged. A token that does not fit even
     * on a line of its own stays where it is (lines may reach 998). */
    if (wsn && w->col + wsn + n > SK_MIME_LINE_SOFT_OCTETS && w->col > wsn) {
        w->err = sk_buf_append(w->out, "\r\n", 2);
        w->col = 0;
    }
    if (!w->err) w->err = sk_buf_append(w->out, ws, wsn);
    if (!w->err) w->err = sk_buf_append(w->out, tok, n);
    w->col += wsn + n;
    if (!w->err && w->col > SK_MIME_LINE_MAX_OCTETS) w->err = SK_ERR_TOO_LONG;
}

sk_err sk_hdr_end(sk_hdr_writer *w)
{
    if (!w->err) w->err = sk_buf_append(w->out, "\r\n", 2);
    return w->err;
}

/* RFC 2047 5(3): the characters a Q-encoded word may carry as themselves
 * in a phrase (the strictest of the three contexts, so safe in all). */
static bool q_literal(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '!' ||
           c == '*' || c == '+' || c == '-' || c == '/';
}

static size_t q_width(unsigned char c)
{
    return q_literal(c) || c == ' ' ? 1 : 3;
}

void sk_hdr_encoded_words(sk_hdr_writer *w, const char *ws, size_t wsn, const char *text, size_t n)
{
    size_t qlen = 0;
    for (size_t i = 0; i < n; i++) qlen += q_width((unsigned char)text[i]);
    bool use_q = qlen <= (n + 2) / 3 * 4;

    sk_buf word = SK_BUF_INIT(SK_MIME_ENCODED_WORD_MAX_OCTETS);
    size_t i = 0;
    while (i < n && !w->err) {
        /* Size this word to the room on the line, or to a line of its own. */
        size_t room =
            SK_MIME_LINE_SOFT_OCTETS -
            (w->col + wsn < SK_MIME_LINE_SOFT_OCTETS ? w->col + wsn : SK_MIME_LINE_SOFT_OCTETS);
        if (room < EW_MIN_OCTETS) room = SK_MIME_LINE_SOFT_OCTETS - 1 - wsn;
        if (room > SK_MIME_ENCODED_WORD_MAX_OCTETS) room = SK_MIME_ENCODED_WORD_MAX_OCTETS;
        size_t payload_max = room - EW_OVERHEAD;

        /* Take whole UTF-8 sequences while they fit (RFC 2047 5: a
         * multi-octet character is never split between words). */
        size_t end = i, used = 0;
        while (end < n) {
            size_t k = sk_mime_utf8_seq_len(text + end, n - end);
            size_t add;
            if (use_q) {
                add = 0;
                for (size_t j = 0; j < k; j++) add += q_width((unsigned char)text[end + j]);
                if (used + add > payload_max) break;
                used += add;
            } else {
                size_t octets = end + k - i;
                if ((octets + 2) / 3 * 4 > payload_max) break;
            }
            end += k;
        }
        /* room is at least EW_MIN_OCTETS, so a word always takes a
         * character; this only guards the loop. */
        if (end == i) end = i + sk_mime_utf8_seq_len(text + i, n - i);

        sk_buf_reset(&word);
        sk_err e = sk_buf_puts(&word, use_q ? "=?UTF-8?Q?" : "=?UTF-8?B?");
        if (use_q) {
            for (size_t j = i; !e && j < end; j++) {
                unsigned char c = (unsigned char)text[j];
                if (c == ' ') {
                    e = sk_buf_putc(&word, '_'); /* RFC 2047 4.2 (2) */
                } else if (q_literal(c)) {
                    e = sk_buf_putc(&word, (char)c);
                } else {
                    char esc[4] = {'='};
                    sk_hex_encode(esc + 1, &c, 1, true);
                    e = sk_buf_append(&word, esc, 3);
                }
            }
        } else if (!e) {
            e = sk_base64_encode(&word, text + i, end - i);
        }
        if (!e) e = sk_buf_puts(&word, "?=");
        if (e) {
            w->err = e;
            break;
        }
        sk_hdr_token(w, ws, wsn, word.data, word.len);
        /* RFC 2047 6.2: white space between adjacent encoded words is not
         * displayed, so a single space separates them. */
        ws = " ";
        wsn = 1;
        i = end;
    }
    sk_buf_free(&word);
}

/* Must this word be encoded? as_given: ASCII words are kept whatever
 * they look like (fields whose syntax the caller owns). */
static bool word_needs_encoding(const char *p, size_t n, bool as_given)
{
    /* A word that would not fit on a folded line even alone. */
    if (!as_given && n > SK_MIME_LINE_SOFT_OCTETS - 2) return true;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        if ((c < 0x20 && c != '\t') || c >= 0x7f) return true;
        /* RFC 2047 6.2: text that looks like an encoded word would be
         * decoded by readers; encoding it keeps it literal. */
        if (!as_given && c == '=' && i + 1 < n && p[i + 1] == '?') return true;
    }
    return false;
}

void sk_hdr_unstructured(sk_hdr_writer *w, const char *text, bool as_given)
{
    /* Runs of white space are written as one space (a fold point). */
    const char *p = text;
    while (sk_is_wsp(*p)) p++;
    while (*p && !w->err) {
        const char *word = p;
        while (*p && !sk_is_wsp(*p)) p++;
        if (!word_needs_encoding(word, (size_t)(p - word), as_given)) {
            sk_hdr_token(w, " ", 1, word, (size_t)(p - word));
        } else {
            /* Extend the run over the following words that need encoding;
             * the white space between them goes inside the encoded words. */
            const char *run_end = p;
            const char *q = p;
            for (;;) {
                while (sk_is_wsp(*q)) q++;
                if (!*q) break;
                const char *next = q;
                while (*q && !sk_is_wsp(*q)) q++;
                if (!word_needs_encoding(next, (size_t)(q - next), as_given)) break;
                run_end = q;
            }
            sk_hdr_encoded_words(w, " ", 1, word, (size_t)(run_end - word));
            p = run_end;
        }
        while (sk_is_wsp(*p)) p++;
    }
}

static bool phrase_is_atoms(const char *s)
{
    /* Words of atext separated by single spaces. */
    if (!*s || *s == ' ') return false;
    for (const char *p = s; *p; p++) {
        if (*p == ' ') {
            if (p[1] == ' ' || p[1] == '\0') return false;
        } else if (!sk_is_atext((unsigned char)*p)) {
            return false;
        }
    }
    return strstr(s, "=?") == NULL;
}

static bool phrase_is_quotable(const char *s)
{
    for (const char *p = s; *p; p++) {
        unsigned char c = (unsigned char)*p;
        if (c < 0x20 || c >= 0x7f) return false;
    }
    /* Some readers decode encoded words even inside quoted strings. */
    return strstr(s, "=?") == NULL;
}

void sk_hdr_phrase(sk_hdr_writer *w, const char *ws, const char *name)
{
    size_t wsn = strlen(ws);
    if (phrase_is_atoms(name)) {
        const char *p = name;
        while (*p) {
            const char *word = p;
            while (*p && *p != ' ') p++;
            sk_hdr_token(w, ws, wsn, word, (size_t)(p - word));
            ws = " ";
            wsn = 1;
            if (*p) p++;
        }
        return;
    }
    if (!phrase_is_quotable(name) || strlen(name) > SK_MIME_LINE_SOFT_OCTETS - 4) {
        sk_hdr_encoded_words(w, ws, wsn, name, strlen(name));
        return;
    }
    /* RFC 5322 3.2.4 quoted-string: '"' and '\\' are escaped. */
    sk_buf q = SK_BUF_INIT(2 * SK_MIME_LINE_SOFT_OCTETS + 2);
    sk_err e = sk_buf_putc(&q, '"');
    for (const char *p = name; !e && *p; p++) {
        if (*p == '"' || *p == '\\') e = sk_buf_putc(&q, '\\');
        if (!e) e = sk_buf_putc(&q, *p);
    }
    if (!e) e = sk_buf_putc(&q, '"');
    if (e)
        w->err = e;
    else
        sk_hdr_token(w, ws, wsn, q.data, q.len);
    sk_buf_free(&q);
}

void sk_hdr_mailbox(sk_hdr_writer *w, const sk_mailbox *mb, const char *sep)
{
    sk_buf tok = SK_BUF_INIT(SK_SMTP_PATH_MAX_OCTETS + 4);
    sk_err e;
    if (mb->name && *mb->name) {
        sk_hdr_phrase(w, " ", mb->name);
        e = sk_buf_printf(&tok, "<%s>%s", mb->addr, sep);
    } else {
        e = sk_buf_printf(&tok, "%s%s", mb->addr, sep);
    }
    if (e && !w->err) w->err = e;
    if (!e) sk_hdr_token(w, " ", 1, tok.data, tok.len);
    sk_buf_free(&tok);
}

/* ---- Decoding ----------------------------------------------------------- */

/* Try to decode one encoded word at s (n octets available). On success
 * append its text to out, set *used, return SK_OK; SK_ERR_SYNTAX when s
 * does not start a word we can decode. */
static sk_err decode_word(sk_buf *out, const char *s, size_t n, size_t *used)
{
    if (n < 8 || s[0] != '=' || s[1] != '?') return SK_ERR_SYNTAX;
    size_t i = 2;
    size_t cs_start = i;
    while (i < n && s[i] != '?' && s[i] > ' ' && s[i] < 0x7f) i++;
    if (i >= n || s[i] != '?') return SK_ERR_SYNTAX;
    size_t cs_len = (size_t)(i - cs_start);
    /* RFC 2231 5: "charset*language". */
    const char *star = memchr(s + cs_start, '*', cs_len);
    if (star) cs_len = (size_t)(star - (s + cs_start));
    i++;
    if (i + 2 >= n || s[i + 1] != '?') return SK_ERR_SYNTAX;
    char enc = s[i];
    i += 2;
    size_t t_start = i;
    while (i + 1 < n && !(s[i] == '?' && s[i + 1] == '=')) {
        if ((unsigned char)s[i] <= ' ' || (unsigned char)s[i] >= 0x7f) return SK_ERR_SYNTAX;
        i++;
    }
    if (i + 1 >= n) return SK_ERR_SYNTAX;
    size_t t_len = i - t_start;
    const char *t = s + t_start;

    bool latin1;
    if ((cs_len == 5 && strncasecmp(s + cs_start, "UTF-8", 5) == 0) ||
        (cs_len == 8 && strncasecmp(s + cs_start, "US-ASCII", 8) == 0))
        latin1 = false;
    else if (cs_len == 10 && strncasecmp(s + cs_start, "ISO-8859-1", 10) == 0)
        latin1 = true;
    else
        return SK_ERR_SYNTAX;

    sk_buf raw = SK_BUF_INIT(SK_MIME_HEADER_FIELD_MAX_OCTETS);
    sk_err e = SK_OK;
    if (enc == 'B' || enc == 'b') {
        e = sk_base64_decode(&raw, t, t_len);
    } else if (enc == 'Q' || enc == 'q') {
        for (size_t j = 0; !e && j < t_len; j++) {
            if (t[j] == '_') {
                e = sk_buf_putc(&raw, ' ');
            } else if (t[j] == '=') {
                int hi = j + 2 < t_len ? sk_hex_value(t[j + 1]) : -1;
                int lo = j + 2 < t_len ? sk_hex_value(t[j + 2]) : -1;
                if (hi < 0 || lo < 0) {
                    e = SK_ERR_SYNTAX;
                } else {
                    e = sk_buf_putc(&raw, (char)(hi << 4 | lo));
                    j += 2;
                }
            } else {
                e = sk_buf_putc(&raw, t[j]);
            }
        }
    } else {
        e = SK_ERR_SYNTAX;
    }
    if (!e && !latin1 && !sk_mime_utf8_valid(raw.data ? raw.data : "", raw.len)) e = SK_ERR_SYNTAX;
    for (size_t j = 0; !e && j < raw.len; j++) {
        unsigned char c = (unsigned char)raw.data[j];
        if (latin1 && c >= 0x80) {
            char u[2] = {(char)(0xc0 | c >> 6), (char)(0x80 | (c & 0x3f))};
            e = sk_buf_append(out, u, 2);
        } else {
            e = sk_buf_putc(out, (char)c);
        }
    }
    sk_buf_free(&raw);
    if (e) return e;
    *used = i + 2;
    return SK_OK;
}

sk_err sk_mime_decode_words(sk_buf *out, const char *s, size_t n)
{
    size_t i = 0;
    bool after_word = false;
    sk_err e = sk_buf_append(out, "", 0);
    while (!e && i < n) {
        if (s[i] == '=' && i + 1 < n && s[i + 1] == '?') {
            size_t used = 0;
            size_t mark = out->len;
            e = decode_word(out, s + i, n - i, &used);
            if (e == SK_OK) {
                i += used;
                after_word = true;
                continue;
            }
            if (e != SK_ERR_SYNTAX) return e;
            sk_buf_truncate(out, mark);
            e = SK_OK;
        }
        if (sk_is_wsp(s[i]) && after_word) {
            /* Drop the white space if another encoded word follows it. */
            size_t j = i;
            while (j < n && sk_is_wsp(s[j])) j++;
            size_t used = 0;
            sk_buf probe = SK_BUF_INIT(SK_MIME_HEADER_FIELD_MAX_OCTETS);
            sk_err pe = decode_word(&probe, s + j, n - j, &used);
            sk_buf_free(&probe);
            if (pe != SK_OK && pe != SK_ERR_SYNTAX) return pe;
            if (pe == SK_OK) {
                i = j;
                continue;
            }
            e = sk_buf_append(out, s + i, j - i);
            i = j;
            after_word = false;
            continue;
        }
        after_word = false;
        e = sk_buf_putc(out, s[i]);
        i++;
    }
    return e;
}
