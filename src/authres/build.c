/* Writing Authentication-Results (RFC 8601 2.2) and its ARC form (RFC 8617
 * 4.1.1): words joined by spaces, folded before a word that would take the
 * line past the soft limit, values quoted only when they must be. */
#include <smtpkit/authres.h>

#include <stdio.h>
#include <string.h>

typedef struct writer {
    sk_buf *out;
    size_t start;    /* of the field in out */
    size_t line_len; /* octets on the current line */
    sk_err e;
} writer;

static void put(writer *w, const char *s, size_t n)
{
    if (w->e) return;
    w->e = sk_buf_append(w->out, s, n);
    w->line_len += n;
}

/* One word: after a space, or on a new folded line when it does not fit. */
static void word(writer *w, const char *s, size_t n, int newline)
{
    if (w->e) return;
    if (newline || w->line_len + 1 + n > SK_AUTHRES_LINE_SOFT_OCTETS) {
        put(w, "\r\n\t", 3);
        w->line_len = 1;
    } else {
        put(w, " ", 1);
    }
    /* RFC 5322 2.1.1: 998 octets a line, whatever the folding. */
    if (!w->e && w->line_len + n > SK_MIME_LINE_MAX_OCTETS) w->e = SK_ERR_TOO_LONG;
    put(w, s, n);
}

/* RFC 5321 Keyword (Ldh-str): what methods, results, ptypes and
 * properties are. */
static int is_keyword(const char *s)
{
    return s && sk_is_ldh_word(s, strlen(s));
}

/* Text allowed in a quoted string or comment: no control characters
 * (UTF-8 is allowed, RFC 6532). */
static int is_text(const char *s)
{
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if (*p < 0x20 || *p == 0x7f) return 0;
    return 1;
}

/* RFC 2045 5.1 token: no space, CTL or tspecial. */
static int is_token(const char *s)
{
    if (!*s) return 0;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if (*p <= 0x20 || *p >= 0x7f || strchr("()<>@,;:\\\"/[]?=", *p)) return 0;
    return 1;
}

static int is_dot_atom(const char *s, size_t n)
{
    if (n == 0 || s[0] == '.' || s[n - 1] == '.') return 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '.' && s[i + 1] == '.') return 0;
        if (s[i] != '.' && !sk_is_atext((unsigned char)s[i])) return 0;
    }
    return 1;
}

static int is_domain_name(const char *s, size_t n)
{
    if (n == 0 || s[0] == '.' || s[n - 1] == '.') return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '.' && s[i + 1] == '.') return 0;
        if (!sk_is_alnum(c) && c != '-' && c != '.' && c != '_') return 0;
    }
    return 1;
}

/* RFC 8601 2.2 pvalue: [ [ local-part ] "@" ] domain-name, unquoted. */
static int is_addr_value(const char *s)
{
    const char *at = strrchr(s, '@');
    if (!at) return 0;
    size_t local = (size_t)(at - s);
    return (local == 0 || is_dot_atom(s, local)) && is_domain_name(at + 1, strlen(at + 1));
}

/* A value as a token, an address, or a quoted string. */
static sk_err value_text(sk_buf *b, const char *v, int pvalue)
{
    if (is_token(v) || (pvalue && is_addr_value(v))) return sk_buf_puts(b, v);
    sk_err e = sk_buf_putc(b, '"');
    for (const char *p = v; !e && *p; p++) {
        if (*p == '"' || *p == '\\') e = sk_buf_putc(b, '\\');
        if (!e) e = sk_buf_putc(b, *p);
    }
    return e ? e : sk_buf_putc(b, '"');
}

static sk_err bad(sk_error *err, const char *what, const char *v)
{
    return sk_error_set(err, SK_ERR_INVAL, SK_STEP_NONE,
                        "Authentication-Results: invalid %s \"%.60s\"", what, v ? v : "(null)");
}

static sk_err check(const sk_authres_result *r, size_t n, sk_error *err)
{
    for (size_t i = 0; i < n; i++) {
        if (!is_keyword(r[i].method)) return bad(err, "method", r[i].method);
        if (!is_keyword(r[i].result)) return bad(err, "result", r[i].result);
        if (r[i].comment && !is_text(r[i].comment)) return bad(err, "comment", r[i].comment);
        if (r[i].reason && !is_text(r[i].reason)) return bad(err, "reason", r[i].reason);
        for (size_t k = 0; k < r[i].n_props; k++) {
            const sk_authres_prop *p = &r[i].props[k];
            if (!is_keyword(p->ptype)) return bad(err, "property type", p->ptype);
            if (!is_keyword(p->property)) return bad(err, "property", p->property);
            if (!p->value || !*p->value || !is_text(p->value))
                return bad(err, "property value", p->value);
        }
    }
    return SK_OK;
}

/* Each piece is formatted into tmp and then placed as one word. */
static void resinfo(writer *w, const sk_authres_result *r, sk_buf *tmp)
{
    sk_buf_reset(tmp);
    sk_err e = r->version ? sk_buf_printf(tmp, "%s/%u=%s", r->method, r->version, r->result)
                          : sk_buf_printf(tmp, "%s=%s", r->method, r->result);
    if (e && !w->e) w->e = e;
    word(w, tmp->data, tmp->len, 1);
    if (r->comment) {
        sk_buf_reset(tmp);
        e = sk_buf_putc(tmp, '(');
        for (const char *p = r->comment; !e && *p; p++) {
            if (*p == '(' || *p == ')' || *p == '\\') e = sk_buf_putc(tmp, '\\');
            if (!e) e = sk_buf_putc(tmp, *p);
        }
        if (!e) e = sk_buf_putc(tmp, ')');
        if (e && !w->e) w->e = e;
        word(w, tmp->data, tmp->len, 0);
    }
    if (r->reason) {
        sk_buf_reset(tmp);
        e = sk_buf_puts(tmp, "reason=");
        if (!e) e = value_text(tmp, r->reason, 0);
        if (e && !w->e) w->e = e;
        word(w, tmp->data, tmp->len, 0);
    }
    for (size_t k = 0; k < r->n_props; k++) {
        const sk_authres_prop *p = &r->props[k];
        sk_buf_reset(tmp);
        e = sk_buf_printf(tmp, "%s.%s=", p->ptype, p->property);
        if (!e) e = value_text(tmp, p->value, 1);
        if (e && !w->e) w->e = e;
        word(w, tmp->data, tmp->len, 0);
    }
}

/* Text given whole (sk_authres_build_arc_text): placed word by word, a
 * quoted string or a comment being one word, so that folding never falls
 * inside one (it would turn a space into a TAB there). Whitespace runs
 * become one space or a fold. */
static void text_words(writer *w, const char *text)
{
    const char *p = text;
    for (;;) {
        while (*p == ' ' || *p == '\t') p++;
        if (!*p) return;
        const char *start = p;
        int quoted = 0, depth = 0;
        while (*p && (quoted || depth || (*p != ' ' && *p != '\t'))) {
            if (*p == '\\' && (quoted || depth) && p[1]) {
                p += 2;
                continue;
            }
            if (*p == '"' && !depth) quoted = !quoted;
            if (!quoted && *p == '(') depth++;
            if (!quoted && *p == ')' && depth) depth--;
            p++;
        }
        /* After a ';' (the end of a resinfo) the next one starts a line. */
        int newline = 0;
        for (const char *q = start; q > text; q--) {
            if (q[-1] == ' ' || q[-1] == '\t') continue;
            newline = q[-1] == ';';
            break;
        }
        word(w, start, (size_t)(p - start), newline);
    }
}

static sk_err build(const char *name, unsigned instance, const char *authserv_id,
                    const sk_authres_result *r, size_t n, const char *text, sk_buf *out,
                    sk_error *err)
{
    if (!authserv_id || !*authserv_id || !is_text(authserv_id))
        return bad(err, "authserv-id", authserv_id);
    if (n && !r) return bad(err, "result list", NULL);
    sk_err e = check(r, n, err);
    if (e) return e;
    writer w = {.out = out, .start = out->len};
    sk_buf tmp = SK_BUF_INIT(SK_AUTHRES_HEADER_MAX_OCTETS);
    put(&w, name, strlen(name));
    put(&w, ":", 1);
    if (instance) {
        char inst[16];
        int k = snprintf(inst, sizeof inst, "i=%u;", instance);
        word(&w, inst, (size_t)k, 0);
    }
    if (!w.e) w.e = value_text(&tmp, authserv_id, 0);
    if (!w.e) w.e = sk_buf_putc(&tmp, ';');
    if (!w.e) word(&w, tmp.data, tmp.len, 0);
    if (text) {
        text_words(&w, text);
    } else if (n == 0) {
        word(&w, "none", 4, 0);
    }
    for (size_t i = 0; i < n; i++) {
        resinfo(&w, &r[i], &tmp);
        if (i + 1 < n) put(&w, ";", 1);
    }
    put(&w, "\r\n", 2);
    sk_buf_free(&tmp);
    if (!w.e && out->len - w.start > SK_AUTHRES_HEADER_MAX_OCTETS) w.e = SK_ERR_TOO_LONG;
    if (w.e) {
        sk_buf_truncate(out, w.start);
        return sk_error_set(err, w.e, SK_STEP_NONE, "cannot write %s: %s", name,
                            w.e == SK_ERR_TOO_LONG ? "a word or the field is too long"
                                                   : sk_strerror(w.e));
    }
    return SK_OK;
}

sk_err sk_authres_build(const char *authserv_id, const sk_authres_result *r, size_t n, sk_buf *out,
                        sk_error *err)
{
    return build("Authentication-Results", 0, authserv_id, r, n, NULL, out, err);
}

sk_err sk_authres_build_arc(unsigned instance, const char *authserv_id, const sk_authres_result *r,
                            size_t n, sk_buf *out, sk_error *err)
{
    if (instance < 1 || instance > SK_ARC_INSTANCE_MAX)
        return sk_error_set(err, SK_ERR_INVAL, SK_STEP_NONE,
                            "ARC instance %u is outside 1..%d (RFC 8617 4.2.1)", instance,
                            SK_ARC_INSTANCE_MAX);
    return build("ARC-Authentication-Results", instance, authserv_id, r, n, NULL, out, err);
}

sk_err sk_authres_build_arc_text(unsigned instance, const char *authserv_id, const char *text,
                                 sk_buf *out, sk_error *err)
{
    if (instance < 1 || instance > SK_ARC_INSTANCE_MAX)
        return sk_error_set(err, SK_ERR_INVAL, SK_STEP_NONE,
                            "ARC instance %u is outside 1..%d (RFC 8617 4.2.1)", instance,
                            SK_ARC_INSTANCE_MAX);
    size_t len = text ? strlen(text) : 0;
    while (len && (text[len - 1] == ' ' || text[len - 1] == '\t')) len--;
    /* Tabs are white space here; any other control character (a line
     * break, which would end the field) is refused. */
    int blank = 1;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)text[i];
        if ((c < 0x20 && c != '\t') || c == 0x7f) return bad(err, "results text", text);
        if (c != ' ' && c != '\t') blank = 0;
    }
    if (blank) return bad(err, "results text", text);
    if (len > SK_AUTHRES_HEADER_MAX_OCTETS)
        return sk_error_set(err, SK_ERR_TOO_LONG, SK_STEP_NONE,
                            "cannot write ARC-Authentication-Results: the results are longer "
                            "than %u octets",
                            (unsigned)SK_AUTHRES_HEADER_MAX_OCTETS);
    return build("ARC-Authentication-Results", instance, authserv_id, NULL, 0, text, out, err);
}
