/* Client side of RFC 5321 4.2: an incremental parser turning the bytes a
 * server sends into complete replies, with no I/O of its own. */
#include <smtpkit/reply.h>

#include <ctype.h>
#include <string.h>

void sk_reply_parser_init(sk_reply_parser *p)
{
    memset(p, 0, sizeof *p);
    /* +2: the CRLF that ends a line is read into the line buffer too. */
    sk_buf_init(&p->line, SK_SMTP_REPLY_LINE_MAX_OCTETS + 2);
    sk_buf_init(&p->lines, SK_SMTP_REPLY_MAX_OCTETS);
}

void sk_reply_parser_reset(sk_reply_parser *p)
{
    sk_buf_reset(&p->line);
    sk_buf_reset(&p->lines);
    p->code = 0;
    p->nlines = 0;
    memset(&p->reply, 0, sizeof p->reply);
}

void sk_reply_parser_free(sk_reply_parser *p)
{
    sk_buf_free(&p->line);
    sk_buf_free(&p->lines);
    p->code = 0;
    p->nlines = 0;
}

const char *sk_reply_parser_text(const sk_reply_parser *p)
{
    return sk_buf_cstr(&p->lines);
}

/* Length of an RFC 3463 status at the start of s followed by a space (or
 * the end), or 0. The status's class must agree with the reply code. */
static size_t enhanced_prefix(const char *s, size_t n, int code)
{
    size_t i = 0;
    while (i < n && i < 15 && s[i] != ' ') i++;
    if (i < 5 || i >= 12 || (i < n && s[i] != ' ')) return 0;
    char tmp[16];
    memcpy(tmp, s, i);
    tmp[i] = '\0';
    return sk_enhanced_valid(tmp, code) ? i : 0;
}

/* One complete line (without its line end): check it against the reply so
 * far and add its text. Sets *last when it ends the reply. */
static sk_err take_line(sk_reply_parser *p, const char *s, size_t n, int *last)
{
    /* RFC 5321 4.2: Reply-code [ ("-" / SP) textstring ]; code 2yz..5yz. */
    if (n < 3 || !isdigit((unsigned char)s[0]) || !isdigit((unsigned char)s[1]) ||
        !isdigit((unsigned char)s[2]) || s[0] < '2' || s[0] > '5' || s[1] > '5')
        return SK_ERR_SYNTAX;
    int code = (s[0] - '0') * 100 + (s[1] - '0') * 10 + (s[2] - '0');
    if (n > 3 && s[3] != ' ' && s[3] != '-') return SK_ERR_SYNTAX;
    if (p->code && code != p->code) return SK_ERR_SYNTAX;
    if (++p->nlines > SK_SMTP_REPLY_MAX_LINES) return SK_ERR_TOO_LONG;
    p->code = code;
    *last = n == 3 || s[3] == ' ';

    const char *text = n > 4 ? s + 4 : "";
    size_t tlen = n > 4 ? n - 4 : 0;
    /* RFC 2034 4: with ENHANCEDSTATUSCODES every line starts with the
     * status; we detect it on the first line and strip it where present. */
    if (p->nlines == 1) {
        size_t e = enhanced_prefix(text, tlen, code);
        if (e) {
            memcpy(p->reply.enhanced, text, e);
            p->reply.enhanced[e] = '\0';
        }
    }
    size_t elen = strlen(p->reply.enhanced);
    if (elen && tlen >= elen && !memcmp(text, p->reply.enhanced, elen) &&
        (tlen == elen || text[elen] == ' ')) {
        text += elen;
        tlen -= elen;
        if (tlen) text++, tlen--;
    }
    sk_err e = SK_OK;
    if (p->nlines > 1) e = sk_buf_putc(&p->lines, '\n');
    if (!e) e = sk_buf_append(&p->lines, text, tlen);
    if (!e && p->lines.len == 0) e = sk_buf_reserve(&p->lines, 1); /* a valid C string */
    return e;
}

sk_err sk_reply_parser_feed(sk_reply_parser *p, const char *data, size_t len, size_t *used,
                            sk_reply *out, int *done)
{
    *used = 0;
    *done = 0;
    /* A previous call returned a reply: this one starts the next. */
    if (p->code && p->reply.code) sk_reply_parser_reset(p);
    size_t i = 0;
    while (i < len) {
        const char *nl = memchr(data + i, '\n', len - i);
        size_t take = nl ? (size_t)(nl - (data + i)) + 1 : len - i;
        sk_err e = sk_buf_append(&p->line, data + i, take);
        if (e) return e;
        i += take;
        if (!nl) break;
        size_t n = p->line.len - 1;
        if (n && p->line.data[n - 1] == '\r') n--;
        if (n > SK_SMTP_REPLY_LINE_MAX_OCTETS - 2) return SK_ERR_TOO_LONG;
        int last = 0;
        e = take_line(p, p->line.data, n, &last);
        sk_buf_reset(&p->line);
        if (e) return e;
        if (last) {
            p->reply.code = p->code;
            size_t tl =
                p->lines.len < sizeof p->reply.text - 1 ? p->lines.len : sizeof p->reply.text - 1;
            memcpy(p->reply.text, sk_buf_cstr(&p->lines), tl);
            p->reply.text[tl] = '\0';
            *out = p->reply;
            *done = 1;
            break;
        }
    }
    *used = i;
    return SK_OK;
}
