/* A bounce taken apart once for the detectors: its header block, its
 * human-readable text (decoded, HTML reduced to text), the header block
 * of the message it returns, and its RFC 3464 status part. */
#include "bounce_int.h"

#include <smtpkit/message.h>

#include <string.h>
#include <strings.h>

/* The media type of a Content-Type value, lower case, into out. */
static void media_type(const char *v, char *out, size_t outsize)
{
    size_t o = 0;
    if (!*v) v = "text/plain"; /* RFC 2045 5.2 default */
    while (sk_is_wsp(*v)) v++;
    for (; *v && *v != ';' && !sk_is_wsp(*v) && o + 1 < outsize; v++)
        out[o++] = (char)sk_to_lower(*v);
    out[o] = '\0';
}

/* The boundary parameter (RFC 2046 5.1.1), quoted or not. */
static int boundary_of(const char *ct, char *out, size_t outsize)
{
    const char *p = bn_find(ct, strlen(ct), "boundary=");
    if (!p) return 0;
    p += 9;
    size_t o = 0;
    if (*p == '"') {
        for (p++; *p && *p != '"' && o + 1 < outsize; p++) out[o++] = *p;
    } else {
        for (; *p && *p != ';' && !sk_is_wsp(*p) && o + 1 < outsize; p++) out[o++] = *p;
    }
    out[o] = '\0';
    return o > 0;
}

/* Undo the transfer encoding of body into out (RFC 2045 6). */
static sk_err decode(const char *cte, const char *p, size_t n, sk_buf *out)
{
    if (bn_find(cte, strlen(cte), "base64")) {
        sk_buf clean = SK_BUF_INIT(n + 1);
        sk_err e = SK_OK;
        for (size_t i = 0; i < n && !e; i++)
            if (!sk_is_wsp(p[i]) && p[i] != '\r' && p[i] != '\n') e = sk_buf_putc(&clean, p[i]);
        size_t before = out->len;
        if (!e) e = sk_base64_decode(out, clean.data ? clean.data : "", clean.len);
        sk_buf_free(&clean);
        if (e != SK_ERR_SYNTAX) return e;
        sk_buf_truncate(out, before); /* not base64 after all: keep it as it is */
    } else if (bn_find(cte, strlen(cte), "quoted-printable")) {
        sk_err e = SK_OK;
        for (size_t i = 0; i < n && !e; i++) {
            char c = p[i];
            if (c == '=' && i + 1 < n && (p[i + 1] == '\r' || p[i + 1] == '\n')) {
                i++;
                if (p[i] == '\r' && i + 1 < n && p[i + 1] == '\n') i++;
                continue;
            }
            if (c == '=' && i + 2 < n && sk_hex_value(p[i + 1]) >= 0 &&
                sk_hex_value(p[i + 2]) >= 0) {
                c = (char)(sk_hex_value(p[i + 1]) * 16 + sk_hex_value(p[i + 2]));
                i += 2;
            }
            e = sk_buf_putc(out, c);
        }
        return e;
    }
    return sk_buf_append(out, p, n);
}

/* Append text to out with LF line ends; HTML tags dropped and the
 * commonest entities read (the words, not the page, are wanted). */
static sk_err add_text(sk_buf *out, const char *p, size_t n, int html)
{
    /* Past SK_BOUNCE_TEXT_MAX_OCTETS the text is the returned message's,
     * not the bounce's: not read. */
    if (out->len >= SK_BOUNCE_TEXT_MAX_OCTETS) return SK_OK;
    if (n > SK_BOUNCE_TEXT_MAX_OCTETS - out->len) n = SK_BOUNCE_TEXT_MAX_OCTETS - out->len;
    sk_err e = SK_OK;
    int in_tag = 0;
    for (size_t i = 0; i < n && !e; i++) {
        char c = p[i];
        if (c == '\r') continue;
        if (html) {
            if (c == '<') {
                /* Block elements end lines; others vanish. */
                if (i + 3 < n && (!strncasecmp(p + i, "<br", 3) || !strncasecmp(p + i, "<p", 2) ||
                                  !strncasecmp(p + i, "</p", 3) || !strncasecmp(p + i, "<div", 4) ||
                                  !strncasecmp(p + i, "<tr", 3) || !strncasecmp(p + i, "<li", 3)))
                    e = sk_buf_putc(out, '\n');
                in_tag = 1;
                continue;
            }
            if (in_tag) {
                if (c == '>') in_tag = 0;
                continue;
            }
            if (c == '&') {
                static const struct {
                    const char *name;
                    char c;
                } ents[] = {{"&lt;", '<'},   {"&gt;", '>'},   {"&amp;", '&'},
                            {"&nbsp;", ' '}, {"&quot;", '"'}, {"&#39;", '\''}};
                size_t k = 0;
                while (k < sizeof ents / sizeof ents[0] &&
                       (n - i < strlen(ents[k].name) ||
                        strncasecmp(p + i, ents[k].name, strlen(ents[k].name))))
                    k++;
                if (k < sizeof ents / sizeof ents[0]) {
                    e = sk_buf_putc(out, ents[k].c);
                    i += strlen(ents[k].name) - 1;
                    continue;
                }
            }
        }
        e = sk_buf_putc(out, c);
    }
    if (!e && out->len && out->data[out->len - 1] != '\n') e = sk_buf_putc(out, '\n');
    return e;
}

static sk_err walk(bn_msg *m, const char *s, size_t len, int depth, int returned);

/* The header block of raw[0..len): where it ends, past the empty line
 * that ends it (RFC 5322 2.1), so that what follows is the body.
 * sk_header_next stops at the start of that line: its line end (LF, CRLF
 * or a lone CR) is stepped over here. */
static size_t header_end(const char *raw, size_t len)
{
    size_t pos = 0;
    sk_header_field f;
    while (sk_header_next(raw, len, &pos, &f)) {
    }
    if (pos < len && raw[pos] == '\r') pos++;
    if (pos < len && raw[pos] == '\n') pos++;
    return pos;
}

static sk_err entity(bn_msg *m, const char *s, size_t len, int depth, int returned)
{
    size_t hend = header_end(s, len);
    sk_buf h = SK_BUF_INIT(hend + 1);
    sk_err e = sk_buf_append(&h, s, hend);
    char ct[512], cte[64], type[64];
    if (!e) {
        bn_header(&h, "Content-Type", ct, sizeof ct);
        bn_header(&h, "Content-Transfer-Encoding", cte, sizeof cte);
        media_type(ct, type, sizeof type);
    }
    if (e) goto out;
    if (!strncmp(type, "multipart/", 10)) {
        char bd[200];
        if (!boundary_of(ct, bd, sizeof bd)) {
            e = add_text(&m->text, s + hend, len - hend, 0);
            goto out;
        }
        /* Parts between "--boundary" lines (RFC 2046 5.1.1). */
        size_t blen = strlen(bd), pos = hend, start = 0;
        int in_part = 0;
        while (pos < len && !e) {
            const char *line = s + pos;
            const char *nl = memchr(line, '\n', len - pos);
            size_t ll = nl ? (size_t)(nl - line) : len - pos;
            size_t next = pos + ll + (nl ? 1 : 0);
            if (ll >= blen + 2 && line[0] == '-' && line[1] == '-' && !memcmp(line + 2, bd, blen)) {
                int close = ll >= blen + 4 && line[blen + 2] == '-' && line[blen + 3] == '-';
                if (in_part && pos > start)
                    e = walk(m, s + start, pos - start, depth + 1, returned);
                in_part = !close;
                start = next;
                if (close) break;
            }
            pos = next;
        }
        if (!e && in_part && start < len) e = walk(m, s + start, len - start, depth + 1, returned);
        goto out;
    }
    sk_buf body = SK_BUF_INIT(SK_REPORT_MAX_OCTETS);
    e = decode(cte, s + hend, len - hend, &body);
    const char *bp = body.data ? body.data : "";
    if (e) {
    } else if (!strcmp(type, "message/rfc822") || !strcmp(type, "message/global")) {
        /* The returned message (or a forwarded bounce, read as one). */
        if (!m->orig.len) e = sk_buf_append(&m->orig, bp, header_end(bp, body.len));
        /* Kept whole: when the outer message is no bounce, it may be a
         * bounce forwarded as an attachment (read.c reads it then). */
        if (!e && !returned && !m->attached.len) e = sk_buf_append(&m->attached, bp, body.len);
    } else if (!strcmp(type, "text/rfc822-headers") || !strcmp(type, "message/global-headers")) {
        if (!m->orig.len) e = sk_buf_append(&m->orig, bp, body.len);
    } else if (!strcmp(type, "text/plain") && !returned) {
        e = add_text(&m->text, bp, body.len, 0);
    } else if (!strcmp(type, "text/html") && !returned && !m->text.len) {
        e = add_text(&m->text, bp, body.len, 1);
    }
    sk_buf_free(&body);
out:
    sk_buf_free(&h);
    return e;
}

static sk_err walk(bn_msg *m, const char *s, size_t len, int depth, int returned)
{
    if (depth > SK_REPORT_MIME_DEPTH_MAX) return SK_OK;
    return entity(m, s, len, depth, returned);
}

/* The header block of the copy that starts at pos in the text (after
 * blank lines) into m->orig, when no part gave one: only a block whose
 * first line is a header field, not indented (a quote or a sentence is
 * no header block). */
static sk_err quoted_headers(bn_msg *m, size_t pos)
{
    if (m->orig.len) return SK_OK;
    const char *line;
    size_t len, start = pos;
    while (bn_next_line(&m->text, &pos, &line, &len) && bn_blank(line, len)) start = pos;
    const char *raw = m->text.data + start;
    size_t n = m->text.len - start, at = 0;
    sk_header_field f;
    if (!n || sk_is_wsp(raw[0]) || !sk_header_next(raw, n, &at, &f) || !f.name_len) return SK_OK;
    return sk_buf_append(&m->orig, raw, header_end(raw, n));
}

/* Where a copy of the returned message starts inside the text. Bounces
 * in one text part quote the message they return after a line that says
 * so; addresses in that copy (its list headers, its Received lines) are
 * not the failed recipients. A mark is either a whole sentence that only
 * such a line says, or a line decorated with dashes, equals signs or bars
 * that names the message. Session transcripts ("----- Transcript of
 * session follows -----") and recipient lists name no message and stay.
 * The copy's header block, when it starts right after the mark, is the
 * returned message's (its Message-ID, its To), unless a MIME part gave
 * one. */
static sk_err cut_returned(bn_msg *m)
{
    static const char *const sentences[] = {
        "below this line is a copy of the message",
        "this is a copy of the message",
        "original message follows",
        "returned message follows",
        "returned mail follows",
        "start of returned message",
        "original message as received",
        "message text follows",
        "header of the source mail",
        "enclosed are the original headers",
        "of the message follows",
        "undelivered message follows",
    };
    static const char *const decorated[] = {
        "original message", "returned message",    "returned mail",       "message header",
        "message text",     "undelivered message", "copy of the message", "source mail",
    };
    size_t pos = 0, len;
    const char *line;
    while (bn_next_line(&m->text, &pos, &line, &len)) {
        size_t i = 0;
        while (i < len && sk_is_wsp(line[i])) i++;
        int deco = i + 1 < len &&
                   (line[i] == '-' || line[i] == '=' || line[i] == '|' || line[i] == '*') &&
                   line[i + 1] == line[i];
        int hit = 0;
        for (size_t k = 0; k < sizeof sentences / sizeof sentences[0] && !hit; k++)
            hit = bn_find(line, len, sentences[k]) != NULL;
        for (size_t k = 0; deco && k < sizeof decorated / sizeof decorated[0] && !hit; k++)
            hit = bn_find(line, len, decorated[k]) != NULL;
        if (!hit || len > 2 * SK_BOUNCE_MARK_MAX_OCTETS) continue;
        size_t k = len - i < SK_BOUNCE_MARK_MAX_OCTETS ? len - i : SK_BOUNCE_MARK_MAX_OCTETS;
        memcpy(m->returned_mark, line + i, k);
        m->returned_mark[k] = '\0';
        sk_err e = quoted_headers(m, pos);
        sk_buf_truncate(&m->text, (size_t)(line - m->text.data));
        return e;
    }
    return SK_OK;
}

/* 1 when the returned message's To or Cc names addr. */
static int addressed_to(const bn_msg *m, const char *addr)
{
    static const char *const fields[] = {"To", "Cc"};
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) {
        char v[1024], a[SK_SMTP_PATH_MAX_OCTETS + 1];
        if (!bn_header(&m->orig, fields[i], v, sizeof v)) continue;
        for (const char *p = v; (p = bn_address(p, strlen(p), a, sizeof a)) != NULL;)
            if (!strcasecmp(a, addr)) return 1;
    }
    return 0;
}

sk_err bn_msg_read(const char *msg, size_t len, bn_msg *m)
{
    memset(m, 0, sizeof *m);
    sk_buf_init(&m->top, SK_REPORT_MAX_OCTETS);
    sk_buf_init(&m->text, SK_REPORT_MAX_OCTETS);
    sk_buf_init(&m->orig, SK_REPORT_MAX_OCTETS);
    sk_buf_init(&m->attached, SK_REPORT_MAX_OCTETS);
    sk_buf_init(&m->lists, SK_REPORT_MAX_OCTETS);
    sk_err e = sk_buf_append(&m->top, msg, header_end(msg, len));
    if (!e) e = walk(m, msg, len, 0, 0);
    if (!e) e = cut_returned(m);
    if (!e) e = bn_list_addresses(m);
    /* The senders of the bounce and of the returned message; not a sender
     * of the returned message that it was also sent to (a message to
     * oneself, or to one's own alias, bounces for that address). */
    static const char *const fields[] = {"From", "Return-Path", "Sender"};
    const sk_buf *blocks[] = {&m->top, &m->orig};
    for (size_t k = 0; !e && k < 2; k++)
        for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) {
            if (m->n_not_rcpt >= SK_BOUNCE_NOT_RCPT_MAX) break;
            char v[1024];
            char *a = m->not_rcpt[m->n_not_rcpt];
            if (bn_header(blocks[k], fields[i], v, sizeof v) &&
                bn_address(v, strlen(v), a, sizeof m->not_rcpt[0]) &&
                !(k == 1 && addressed_to(m, a)))
                m->n_not_rcpt++;
        }
    if (!e) {
        sk_error err;
        e = sk_report_parse(msg, len, &m->report, &err);
        /* A report that claims to be one and is not: read for its text. */
        if (e == SK_ERR_SYNTAX) e = SK_OK;
    }
    return e;
}

void bn_msg_clear(bn_msg *m)
{
    sk_buf_free(&m->top);
    sk_buf_free(&m->text);
    sk_buf_free(&m->orig);
    sk_buf_free(&m->attached);
    sk_buf_free(&m->lists);
    sk_report_free(m->report);
    memset(m, 0, sizeof *m);
}
