/* Reading the authserv-id of Authentication-Results fields (RFC 8601 2.2),
 * to remove those that claim to be ours before adding our own (section 5). */
#include <smtpkit/authres.h>
#include <smtpkit/message.h>

#include <string.h>
#include <strings.h>

static int is_ws(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* Skip CFWS (RFC 5322 3.2.2): white space, folding and comments, which
 * nest and may hold quoted pairs. 0 for an unterminated comment. */
static int skip_cfws(const char *s, size_t n, size_t *i)
{
    while (*i < n) {
        if (is_ws(s[*i])) {
            (*i)++;
        } else if (s[*i] == '(') {
            size_t depth = 0;
            do {
                char c = s[*i];
                if (c == '\\') {
                    if (*i + 1 >= n) return 0;
                    (*i)++;
                } else if (c == '(') {
                    depth++;
                } else if (c == ')') {
                    depth--;
                }
                (*i)++;
            } while (depth > 0 && *i < n);
            if (depth > 0) return 0;
        } else {
            break;
        }
    }
    return 1;
}

/* RFC 2045 5.1 token character. */
static int token_char(unsigned char c)
{
    return c > 0x20 && c < 0x7f && !strchr("()<>@,;:\\\"/[]?=", c);
}

sk_err sk_authres_parse_id(const char *v, size_t n, sk_buf *id, unsigned *version)
{
    size_t i = 0, start = id->len;
    if (version) *version = 1;
    if (!skip_cfws(v, n, &i) || i >= n) return SK_ERR_SYNTAX;
    sk_err e = SK_OK;
    if (v[i] == '"') {
        /* quoted-string: qtext, quoted pairs and folding (removed). */
        for (i++;; i++) {
            if (i >= n) goto bad;
            char c = v[i];
            if (c == '"') break;
            if (c == '\r' || c == '\n') continue;
            if (c == '\\') {
                if (++i >= n) goto bad;
                c = v[i];
            }
            if ((unsigned char)c < 0x20 && c != '\t') goto bad;
            e = sk_buf_putc(id, c);
            if (e) goto fail;
        }
        i++;
    } else {
        size_t s = i;
        while (i < n && token_char((unsigned char)v[i])) i++;
        if (i == s) goto bad;
        e = sk_buf_append(id, v + s, i - s);
        if (e) goto fail;
    }
    if (id->len == start) goto bad;
    if (!skip_cfws(v, n, &i)) goto bad;
    if (i < n && v[i] >= '0' && v[i] <= '9') {
        /* authres-version = 1*DIGIT [CFWS] */
        unsigned x = 0;
        size_t s = i;
        while (i < n && v[i] >= '0' && v[i] <= '9') {
            if (i - s >= 9) goto bad;
            x = x * 10 + (unsigned)(v[i++] - '0');
        }
        if (version) *version = x;
        if (!skip_cfws(v, n, &i)) goto bad;
    }
    /* no-result or resinfo: both start with ';'. */
    if (i >= n || v[i] != ';') goto bad;
    return SK_OK;
bad:
    e = SK_ERR_SYNTAX;
fail:
    sk_buf_truncate(id, start);
    return e;
}

/* For a field that does not parse: its first word, as a lenient reader
 * might take it (white space and whole comments skipped, quotes removed). */
static int first_word_is(const char *v, size_t n, const char *want)
{
    size_t i = 0;
    for (;;) {
        while (i < n && is_ws(v[i])) i++;
        if (i < n && v[i] == '(') {
            size_t j = i;
            if (!skip_cfws(v, n, &j)) break; /* unterminated: read on from '(' */
            i = j;
            continue;
        }
        break;
    }
    if (i < n && v[i] == '(') i++;
    while (i < n && is_ws(v[i])) i++;
    int quoted = i < n && v[i] == '"';
    if (quoted) i++;
    size_t s = i;
    while (i < n && !is_ws(v[i]) && v[i] != ';' && v[i] != '(' && v[i] != '"') i++;
    size_t w = strlen(want);
    return i - s == w && strncasecmp(v + s, want, w) == 0;
}

sk_err sk_authres_find_ours(const char *headers, size_t len, const char *authserv_id,
                            sk_authres_span **out, size_t *n)
{
    *out = NULL;
    *n = 0;
    if (!authserv_id || !*authserv_id) return SK_ERR_INVAL;
    size_t pos = 0, cap = 0;
    sk_header_field f;
    sk_buf id = SK_BUF_INIT(SK_AUTHRES_HEADER_MAX_OCTETS);
    sk_err e = SK_OK;
    while (!e && sk_header_next(headers, len, &pos, &f)) {
        if (!sk_header_is(&f, "Authentication-Results")) continue;
        sk_buf_reset(&id);
        int ours;
        sk_err pe = sk_authres_parse_id(f.value, f.value_len, &id, NULL);
        if (pe == SK_ERR_NOMEM) {
            e = pe;
            break;
        }
        if (pe == SK_OK)
            ours = strcasecmp(sk_buf_cstr(&id), authserv_id) == 0;
        else
            ours = first_word_is(f.value, f.value_len, authserv_id);
        if (!ours) continue;
        e = sk_array_grow(out, &cap, *n + 1, sizeof **out, SK_ARRAY_UNBOUNDED);
        if (e) break;
        (*out)[(*n)++] = (sk_authres_span){f.offset, f.length};
    }
    sk_buf_free(&id);
    if (e) {
        sk_free(*out);
        *out = NULL;
        *n = 0;
    }
    return e;
}

sk_err sk_authres_strip(const char *headers, size_t len, const char *authserv_id, sk_buf *out,
                        size_t *removed)
{
    sk_authres_span *spans;
    size_t n;
    if (removed) *removed = 0;
    sk_err e = sk_authres_find_ours(headers, len, authserv_id, &spans, &n);
    if (e) return e;
    size_t at = 0;
    for (size_t i = 0; i < n && !e; i++) {
        e = sk_buf_append(out, headers + at, spans[i].offset - at);
        at = spans[i].offset + spans[i].length;
        /* A lone CR ending the line before a removed field, and an LF
         * starting the line after it, would join into one CRLF and merge
         * two lines: end the first with CRLF instead. */
        if (!e && out->len > 0 && out->data[out->len - 1] == '\r' && at < len &&
            headers[at] == '\n')
            e = sk_buf_putc(out, '\n');
    }
    if (!e) e = sk_buf_append(out, headers + at, len - at);
    sk_free(spans);
    if (!e && removed) *removed = n;
    return e;
}
