/* Parsing of mailboxes and address lists (RFC 5322 3.4, RFC 6532 UTF-8),
 * with addr-specs checked against what SMTP can carry (RFC 5321 4.1.2). */
#include "mime/mime_int.h"

#include <string.h>
#include <strings.h>

typedef enum tok_type { T_ATOM, T_QSTRING, T_LITERAL, T_SPECIAL, T_END } tok_type;

typedef struct token {
    tok_type type;
    const char *p; /* raw text (quoted strings and literals with delimiters) */
    size_t n;
    bool ws_before; /* white space or a comment came before it */
} token;

typedef struct lexer {
    token *toks;
    size_t count, cap;
    size_t pos;      /* parser position */
    const char *why; /* first syntax problem, for messages */
} lexer;

static bool is_atom_char(unsigned char c)
{
    return c >= 0x80 || sk_is_atext(c); /* RFC 6532 3.2: UTF8-non-ascii */
}

static sk_err push(lexer *lx, tok_type type, const char *p, size_t n, bool ws)
{
    sk_err e =
        sk_array_grow(&lx->toks, &lx->cap, lx->count + 1, sizeof *lx->toks, SK_ARRAY_UNBOUNDED);
    if (e) return e;
    lx->toks[lx->count++] = (token){type, p, n, ws};
    return SK_OK;
}

/* Skip CFWS at s[*i]: white space, folds (CRLF + WSP) and nested comments.
 * Returns SK_ERR_SYNTAX on a bare CR/LF or an unclosed comment. */
static sk_err skip_cfws(const char *s, size_t n, size_t *i, bool *skipped)
{
    int depth = 0;
    while (*i < n) {
        char c = s[*i];
        if (c == '\r' || c == '\n') {
            size_t k = *i + (c == '\r' && *i + 1 < n && s[*i + 1] == '\n' ? 2 : 1);
            /* RFC 5322 3.2.2: a line break is only allowed as a fold. */
            if (c == '\r' && k == *i + 1) return SK_ERR_SYNTAX;
            if (k >= n || (s[k] != ' ' && s[k] != '\t')) return SK_ERR_SYNTAX;
            *i = k;
        } else if (c == ' ' || c == '\t') {
            (*i)++;
        } else if (c == '(') {
            depth++;
            (*i)++;
        } else if (depth && c == ')') {
            depth--;
            (*i)++;
        } else if (depth && c == '\\' && *i + 1 < n) {
            *i += 2;
        } else if (depth) {
            (*i)++;
        } else {
            break;
        }
        *skipped = true;
    }
    return depth ? SK_ERR_SYNTAX : SK_OK;
}

static sk_err tokenize(lexer *lx, const char *s, size_t n)
{
    size_t i = 0;
    for (;;) {
        bool ws = false;
        sk_err e = skip_cfws(s, n, &i, &ws);
        if (e) {
            lx->why = "unclosed comment or line break";
            return e;
        }
        if (i >= n) return push(lx, T_END, s + n, 0, ws);
        unsigned char c = (unsigned char)s[i];
        size_t start = i;
        if (c == '"' || c == '[') {
            char close = c == '"' ? '"' : ']';
            for (i++; i < n && s[i] != close; i++) {
                if (s[i] == '\\' && i + 1 < n) i++;
                if (s[i] == '\r' || s[i] == '\n') {
                    lx->why = "line break in a quoted string";
                    return SK_ERR_SYNTAX;
                }
            }
            if (i >= n) {
                lx->why = c == '"' ? "unclosed quoted string" : "unclosed domain literal";
                return SK_ERR_SYNTAX;
            }
            i++;
            e = push(lx, c == '"' ? T_QSTRING : T_LITERAL, s + start, i - start, ws);
        } else if (is_atom_char(c)) {
            while (i < n && is_atom_char((unsigned char)s[i])) i++;
            e = push(lx, T_ATOM, s + start, i - start, ws);
        } else if (c >= 0x21 && c < 0x7f) {
            i++;
            e = push(lx, T_SPECIAL, s + start, 1, ws);
        } else {
            lx->why = "control character";
            return SK_ERR_SYNTAX;
        }
        if (e) return e;
    }
}

static const token *peek(const lexer *lx)
{
    return &lx->toks[lx->pos];
}

static bool is_special(const token *t, char c)
{
    return t->type == T_SPECIAL && t->p[0] == c;
}

/* The content of a quoted string, unescaped. */
static sk_err unquote(sk_buf *out, const char *p, size_t n)
{
    sk_err e = sk_buf_reserve(out, n);
    for (size_t i = 1; !e && i + 1 < n; i++) {
        if (p[i] == '\\' && i + 2 < n) i++;
        e = sk_buf_putc(out, p[i]);
    }
    return e;
}

static bool is_dot_atom(const char *s, size_t n)
{
    if (n == 0 || s[0] == '.' || s[n - 1] == '.') return false;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '.') {
            if (s[i + 1] == '.') return false;
        } else if (!is_atom_char((unsigned char)s[i])) {
            return false;
        }
    }
    return true;
}

/* local-part "@" domain at the lexer's position, canonicalized into out. */
static sk_err parse_addr_spec(lexer *lx, sk_buf *out)
{
    sk_buf local = SK_BUF_INIT(4 * SK_SMTP_PATH_MAX_OCTETS);
    sk_err e = SK_OK;
    bool quoted = false;
    for (;;) {
        const token *t = peek(lx);
        if (t->type == T_ATOM) {
            e = sk_buf_append(&local, t->p, t->n);
        } else if (t->type == T_QSTRING) {
            e = unquote(&local, t->p, t->n);
            quoted = true;
        } else {
            lx->why = "expected a local part";
            e = SK_ERR_SYNTAX;
        }
        if (e) goto out;
        lx->pos++;
        if (!is_special(peek(lx), '.')) break;
        lx->pos++;
        e = sk_buf_putc(&local, '.');
        if (e) goto out;
    }
    if (!is_special(peek(lx), '@')) {
        lx->why = "expected '@'";
        e = SK_ERR_SYNTAX;
        goto out;
    }
    lx->pos++;
    const char *l = sk_buf_cstr(&local);
    /* RFC 5321 4.1.2: a quoted local part is sent unquoted when it can be. */
    if (quoted && is_dot_atom(l, local.len)) quoted = false;
    if (!quoted && !is_dot_atom(l, local.len)) {
        lx->why = "malformed local part";
        e = SK_ERR_SYNTAX;
        goto out;
    }
    size_t mark = out->len;
    if (quoted) {
        e = sk_buf_putc(out, '"');
        for (size_t i = 0; !e && i < local.len; i++) {
            unsigned char c = (unsigned char)l[i];
            if (c < 0x20 || c == 0x7f) {
                lx->why = "control character in the local part";
                e = SK_ERR_SYNTAX;
            }
            if (!e && (c == '"' || c == '\\')) e = sk_buf_putc(out, '\\');
            if (!e) e = sk_buf_putc(out, (char)c);
        }
        if (!e) e = sk_buf_putc(out, '"');
    } else {
        e = sk_buf_append(out, l, local.len);
    }
    if (!e && out->len - mark > SK_SMTP_LOCAL_PART_MAX_OCTETS) {
        lx->why = "local part over 64 octets (RFC 5321 4.5.3.1.1)";
        e = SK_ERR_SYNTAX;
    }
    if (!e) e = sk_buf_putc(out, '@');
    if (e) goto out;

    size_t dom = out->len;
    const token *t = peek(lx);
    if (t->type == T_LITERAL) {
        /* RFC 5321 4.1.3 address literal; dtext only. */
        for (size_t i = 1; i + 1 < t->n; i++) {
            unsigned char c = (unsigned char)t->p[i];
            if (c <= ' ' || c >= 0x7f || c == '\\' || c == '[') {
                lx->why = "malformed address literal";
                e = SK_ERR_SYNTAX;
                goto out;
            }
        }
        e = sk_buf_append(out, t->p, t->n);
        lx->pos++;
    } else {
        for (;;) {
            t = peek(lx);
            /* RFC 5321 4.1.2 sub-domain: letters, digits and inner hyphens;
             * RFC 6531 3.3 adds UTF-8 (U-labels). */
            bool ok = t->type == T_ATOM && t->n <= 63 && t->p[0] != '-' && t->p[t->n - 1] != '-';
            for (size_t i = 0; ok && i < t->n; i++) {
                unsigned char c = (unsigned char)t->p[i];
                ok = c >= 0x80 || c == '-' || (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
                     (c >= 'A' && c <= 'Z');
            }
            if (!ok) {
                lx->why = "malformed domain";
                e = SK_ERR_SYNTAX;
                goto out;
            }
            e = sk_buf_append(out, t->p, t->n);
            if (e) goto out;
            lx->pos++;
            if (!is_special(peek(lx), '.')) break;
            lx->pos++;
            e = sk_buf_putc(out, '.');
            if (e) goto out;
        }
    }
    if (!e && out->len - dom > SK_SMTP_DOMAIN_MAX_OCTETS) {
        lx->why = "domain over 255 octets";
        e = SK_ERR_SYNTAX;
    }
    /* RFC 5321 4.5.3.1.3: the path with its angle brackets is 256 at most. */
    if (!e && out->len - mark + 2 > SK_SMTP_PATH_MAX_OCTETS) {
        lx->why = "address over 254 octets";
        e = SK_ERR_SYNTAX;
    }
out:
    sk_buf_free(&local);
    return e;
}

/* The display name from tokens [from, to): atoms and dots (encoded words
 * decoded, RFC 2047 6.2), quoted strings unquoted and kept as they are. */
static sk_err phrase_text(const lexer *lx, size_t from, size_t to, sk_buf *out)
{
    sk_buf run = SK_BUF_INIT(SK_MIME_HEADER_FIELD_MAX_OCTETS);
    sk_err e = SK_OK;
    for (size_t i = from; !e && i <= to; i++) {
        const token *t = i < to ? &lx->toks[i] : NULL;
        if (t && t->type != T_QSTRING) {
            if (t->ws_before && i > from) e = sk_buf_putc(&run, ' ');
            if (!e) e = sk_buf_append(&run, t->p, t->n);
            continue;
        }
        /* Flush the run of atoms before a quoted string or at the end. */
        if (run.len) e = sk_mime_decode_words(out, run.data, run.len);
        sk_buf_reset(&run);
        if (!e && t) {
            if (t->ws_before && i > from) e = sk_buf_putc(out, ' ');
            if (!e) e = unquote(out, t->p, t->n);
        }
    }
    sk_buf_free(&run);
    if (!e) e = sk_buf_append(out, "", 0);
    return e;
}

static sk_err list_add(sk_address_list *l, size_t *cap, sk_buf *name, sk_buf *addr)
{
    sk_err e = sk_array_grow(&l->items, cap, l->count + 1, sizeof *l->items, SK_ARRAY_UNBOUNDED);
    if (e) return e;
    sk_mailbox mb = {sk_strdup(sk_buf_cstr(name)), sk_strdup(sk_buf_cstr(addr))};
    if (!mb.name || !mb.addr) {
        sk_mailbox_clear(&mb);
        return SK_ERR_NOMEM;
    }
    l->items[l->count++] = mb;
    return SK_OK;
}

/* One mailbox (name-addr or addr-spec) at the lexer's position. */
static sk_err parse_mailbox(lexer *lx, sk_buf *name, sk_buf *addr)
{
    size_t start = lx->pos;
    while (peek(lx)->type == T_ATOM || peek(lx)->type == T_QSTRING || is_special(peek(lx), '.'))
        lx->pos++;
    sk_buf_reset(name);
    sk_buf_reset(addr);
    if (is_special(peek(lx), '<')) {
        sk_err e = phrase_text(lx, start, lx->pos, name);
        if (e) return e;
        lx->pos++;
        /* RFC 5322 4.4 obs-route: "<@relay,@relay:user@domain>". */
        if (is_special(peek(lx), '@')) {
            while (peek(lx)->type != T_END && !is_special(peek(lx), ':')) lx->pos++;
            if (peek(lx)->type == T_END) {
                lx->why = "malformed route";
                return SK_ERR_SYNTAX;
            }
            lx->pos++;
        }
        e = parse_addr_spec(lx, addr);
        if (e) return e;
        if (!is_special(peek(lx), '>')) {
            lx->why = "expected '>'";
            return SK_ERR_SYNTAX;
        }
        lx->pos++;
        return SK_OK;
    }
    size_t phrase_end = lx->pos;
    lx->pos = start;
    sk_err e = parse_addr_spec(lx, addr);
    /* "Name user@example.org": words, then an address without its angle
     * brackets. The addr-spec parser stops at the second word; say what is
     * missing rather than "expected '@'". */
    if (e == SK_ERR_SYNTAX && lx->pos < phrase_end && is_special(&lx->toks[phrase_end], '@') &&
        lx->toks[lx->pos].ws_before) {
        lx->why = "expected '<' before the address (\"Name <user@domain>\")";
    }
    return e;
}

static sk_err parse_list(lexer *lx, sk_address_list *out, bool groups)
{
    size_t cap = 0;
    sk_buf name = SK_BUF_INIT(SK_MIME_HEADER_FIELD_MAX_OCTETS);
    sk_buf addr = SK_BUF_INIT(4 * SK_SMTP_PATH_MAX_OCTETS);
    sk_err e = SK_OK;
    bool in_group = false;
    for (;;) {
        const token *t = peek(lx);
        /* RFC 5322 4.4 obs-addr-list: empty elements between commas. */
        if (is_special(t, ',')) {
            lx->pos++;
            continue;
        }
        if (t->type == T_END) break;
        if (in_group && is_special(t, ';')) {
            lx->pos++;
            in_group = false;
            continue;
        }
        /* A group: display-name ":" [group-list] ";" (RFC 5322 3.4). */
        size_t save = lx->pos;
        while (peek(lx)->type == T_ATOM || peek(lx)->type == T_QSTRING || is_special(peek(lx), '.'))
            lx->pos++;
        if (is_special(peek(lx), ':') && lx->pos > save) {
            if (!groups || in_group) {
                lx->why = "unexpected group";
                e = SK_ERR_SYNTAX;
                break;
            }
            lx->pos++;
            in_group = true;
            continue;
        }
        lx->pos = save;
        e = parse_mailbox(lx, &name, &addr);
        if (!e) e = list_add(out, &cap, &name, &addr);
        if (e) break;
        t = peek(lx);
        if (!is_special(t, ',') && t->type != T_END && !(in_group && is_special(t, ';'))) {
            lx->why = "expected ',' between addresses";
            e = SK_ERR_SYNTAX;
            break;
        }
    }
    if (!e && in_group) {
        lx->why = "group without ';'";
        e = SK_ERR_SYNTAX;
    }
    if (!e && out->count == 0 && !groups) {
        lx->why = "no address";
        e = SK_ERR_SYNTAX;
    }
    sk_buf_free(&name);
    sk_buf_free(&addr);
    return e;
}

void sk_mailbox_clear(sk_mailbox *mb)
{
    if (!mb) return;
    sk_free(mb->name);
    sk_free(mb->addr);
    mb->name = NULL;
    mb->addr = NULL;
}

void sk_address_list_clear(sk_address_list *l)
{
    if (!l) return;
    for (size_t i = 0; i < l->count; i++) sk_mailbox_clear(&l->items[i]);
    sk_free(l->items);
    l->items = NULL;
    l->count = 0;
}

sk_err sk_mime_parse_addresses(const char *s, size_t n, sk_address_list *out, bool groups,
                               const char **why)
{
    *out = (sk_address_list){NULL, 0};
    if (!sk_mime_utf8_valid(s, n)) {
        *why = "not UTF-8";
        return SK_ERR_SYNTAX;
    }
    lexer lx = {0};
    sk_err e = tokenize(&lx, s, n);
    if (!e) e = parse_list(&lx, out, groups);
    *why = lx.why;
    sk_free(lx.toks);
    if (e) sk_address_list_clear(out);
    return e;
}

static sk_err syntax_error(sk_error *err, sk_err e, const char *s, size_t n, const char *why)
{
    if (e == SK_ERR_NOMEM) return sk_error_set(err, e, SK_STEP_COMPOSE, "out of memory");
    return sk_error_set(err, e, SK_STEP_COMPOSE, "malformed address \"%.*s\": %s",
                        (int)(n > 200 ? 200 : n), s, why ? why : "syntax error");
}

sk_err sk_address_list_parse(const char *s, size_t len, sk_address_list *out, sk_error *err)
{
    const char *why = NULL;
    if (!s || !out) return sk_error_set(err, SK_ERR_INVAL, SK_STEP_COMPOSE, "no address list");
    if (len > SK_MIME_HEADER_FIELD_MAX_OCTETS)
        return sk_error_set(err, SK_ERR_TOO_LONG, SK_STEP_COMPOSE, "address list too long");
    sk_err e = sk_mime_parse_addresses(s, len, out, true, &why);
    if (!e && out->count == 0) {
        why = "no address";
        e = SK_ERR_SYNTAX;
    }
    return e ? syntax_error(err, e, s, len, why) : SK_OK;
}

/* The lenient form of a single mailbox the CLI takes: anything before the
 * last '<' is the display name ("Doe, John <jd@example.org>"). */
static sk_err parse_lenient(const char *s, size_t n, sk_mailbox *out, const char **why)
{
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t')) n--;
    const char *lt = NULL;
    for (size_t i = 0; i < n; i++)
        if (s[i] == '<') lt = s + i;
    if (!lt || n == 0 || s[n - 1] != '>') return SK_ERR_SYNTAX;

    lexer lx = {0};
    sk_buf addr = SK_BUF_INIT(4 * SK_SMTP_PATH_MAX_OCTETS);
    sk_buf name = SK_BUF_INIT(SK_MIME_HEADER_FIELD_MAX_OCTETS);
    sk_err e = tokenize(&lx, lt + 1, (size_t)(s + n - 1 - (lt + 1)));
    if (!e) e = parse_addr_spec(&lx, &addr);
    if (!e && peek(&lx)->type != T_END) {
        lx.why = "text after the address";
        e = SK_ERR_SYNTAX;
    }
    const char *np = s;
    size_t nn = (size_t)(lt - s);
    while (nn && (*np == ' ' || *np == '\t')) np++, nn--;
    while (nn && (np[nn - 1] == ' ' || np[nn - 1] == '\t')) nn--;
    if (!e && nn >= 2 && np[0] == '"' && np[nn - 1] == '"')
        e = unquote(&name, np, nn);
    else if (!e)
        e = sk_buf_append(&name, np, nn);
    for (size_t i = 0; !e && i < name.len; i++) {
        if ((unsigned char)name.data[i] < 0x20 && name.data[i] != '\t') {
            lx.why = "control character in the name";
            e = SK_ERR_SYNTAX;
        }
    }
    if (!e) e = sk_buf_append(&name, "", 0);
    if (!e) {
        out->name = sk_buf_detach(&name, NULL);
        out->addr = sk_buf_detach(&addr, NULL);
        if (!out->name || !out->addr) {
            sk_mailbox_clear(out);
            e = SK_ERR_NOMEM;
        }
    }
    *why = lx.why;
    sk_free(lx.toks);
    sk_buf_free(&addr);
    sk_buf_free(&name);
    return e;
}

sk_err sk_mailbox_parse(const char *s, sk_mailbox *out, sk_error *err)
{
    if (!s || !out) return sk_error_set(err, SK_ERR_INVAL, SK_STEP_COMPOSE, "no address");
    *out = (sk_mailbox){NULL, NULL};
    if (sk_mime_has_crlf(s))
        return sk_error_set(err, SK_ERR_INVAL, SK_STEP_COMPOSE, "line break in address");
    size_t n = strlen(s);
    if (n > SK_MIME_HEADER_FIELD_MAX_OCTETS)
        return sk_error_set(err, SK_ERR_TOO_LONG, SK_STEP_COMPOSE, "address too long");
    const char *why = NULL;
    sk_address_list l;
    sk_err e = sk_mime_parse_addresses(s, n, &l, false, &why);
    if (!e && l.count == 1) {
        *out = l.items[0];
        sk_free(l.items);
        return SK_OK;
    }
    if (!e) {
        sk_address_list_clear(&l);
        why = "more than one address";
        e = SK_ERR_SYNTAX;
    }
    if (e == SK_ERR_SYNTAX && sk_mime_utf8_valid(s, n)) {
        const char *why2 = NULL;
        sk_err e2 = parse_lenient(s, n, out, &why2);
        if (e2 != SK_ERR_SYNTAX)
            e = e2;
        else if (why2)
            why = why2;
    }
    if (e) return syntax_error(err, e, s, n, why);
    return SK_OK;
}

bool sk_mime_addr_equal(const char *a, const char *b)
{
    const char *at_a = strrchr(a, '@'), *at_b = strrchr(b, '@');
    if (!at_a || !at_b) return strcmp(a, b) == 0;
    size_t la = (size_t)(at_a - a), lb = (size_t)(at_b - b);
    return la == lb && memcmp(a, b, la) == 0 && strcasecmp(at_a, at_b) == 0;
}

sk_err sk_mime_mailbox_copy(sk_mailbox *dst, const sk_mailbox *src)
{
    dst->name = sk_strdup(src->name ? src->name : "");
    dst->addr = sk_strdup(src->addr);
    if (!dst->name || !dst->addr) {
        sk_mailbox_clear(dst);
        return SK_ERR_NOMEM;
    }
    return SK_OK;
}
