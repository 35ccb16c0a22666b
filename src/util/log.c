/* Logging through the caller's callback, escaping of peer strings, and log
 * lines taken apart again for structured output. */
#include <smtpkit/util.h>

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

void sk_log(const sk_logger *l, sk_log_level level, const char *fmt, ...)
{
    if (!l || !l->fn || level > l->max_level) return;
    char line[SK_LOG_LINE_MAX_OCTETS + 1];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    l->fn(l->ctx, level, line);
}

static const char *const level_names[] = {"error", "warning", "info", "debug"};

const char *sk_log_level_name(sk_log_level level)
{
    return (unsigned)level < sizeof level_names / sizeof level_names[0] ? level_names[level]
                                                                        : "debug";
}

sk_err sk_log_level_parse(const char *name, sk_log_level *out)
{
    for (size_t i = 0; i < sizeof level_names / sizeof level_names[0]; i++) {
        if (!strcmp(name, level_names[i])) {
            *out = (sk_log_level)i;
            return SK_OK;
        }
    }
    return SK_ERR_SYNTAX;
}

sk_err sk_log_escape(sk_buf *b, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        sk_err e;
        if (c == '"' || c == '\\') {
            char esc[2] = {'\\', (char)c};
            e = sk_buf_append(b, esc, 2);
        } else if (c < 0x20 || c >= 0x7f) {
            char esc[5] = {'\\', 'x'};
            sk_hex_encode(esc + 2, &c, 1, false);
            e = sk_buf_append(b, esc, 4);
        } else {
            e = sk_buf_putc(b, (char)c);
        }
        if (e) return e;
    }
    return SK_OK;
}

/* Undo sk_log_escape on s[0..n) into out; returns the octets written (never
 * more than n). */
static size_t unescape(const char *s, size_t n, char *out)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '\\' && i + 1 < n && (s[i + 1] == '"' || s[i + 1] == '\\')) {
            out[o++] = s[++i];
        } else if (s[i] == '\\' && i + 3 < n && s[i + 1] == 'x' && sk_hex_value(s[i + 2]) >= 0 &&
                   sk_hex_value(s[i + 3]) >= 0) {
            out[o++] = (char)(sk_hex_value(s[i + 2]) * 16 + sk_hex_value(s[i + 3]));
            i += 3;
        } else {
            out[o++] = s[i];
        }
    }
    return o;
}

/* The end of a value that starts with open ('"' or '<') at s: just after
 * its closing character, which must be followed by a space or the end;
 * NULL when there is none. In a <path>, a '>' inside a quoted local part
 * (between escaped quotes: <\"a> b\"@x>) does not close it when a later
 * one can. */
static const char *delimited_end(const char *s, char open)
{
    char close = open == '"' ? '"' : '>';
    bool quoted = false;
    const char *first = NULL;
    for (const char *p = s + 1; *p; p++) {
        if (*p == '\\' && p[1]) {
            if (open == '<' && p[1] == '"') quoted = !quoted;
            p++;
        } else if (*p == close && (p[1] == ' ' || p[1] == '\0')) {
            if (!quoted) return p + 1;
            if (!first) first = p + 1;
        }
    }
    return first;
}

static bool is_key_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '-' || c == '.';
}

sk_err sk_log_record_parse(const char *line, sk_log_record *out)
{
    size_t len = strlen(line);
    if (len > SK_LOG_LINE_MAX_OCTETS) return SK_ERR_TOO_LONG;
    /* Every piece copied into store is a part of the line followed by at
     * least one octet of it (a space, '=' or the end), so store holds them
     * all with their NULs. */
    char *st = out->store;
    size_t tl = 0;
    out->n_fields = 0;
    out->id = out->module = out->event = "";
    const char **head[] = {&out->id, &out->module, &out->event};
    const char *p = line;
    for (size_t h = 0; h < 3; h++) {
        while (*p == ' ') p++;
        size_t n = strcspn(p, " ");
        if (n == 0) break;
        memcpy(st, p, n);
        st[n] = '\0';
        *head[h] = st;
        st += n + 1;
        p += n;
    }
    for (;;) {
        while (*p == ' ') p++;
        if (!*p) break;
        const char *k = p;
        while (is_key_char(*p)) p++;
        const char *end = NULL;
        if (p > k && *p == '=' && out->n_fields < SK_LOG_FIELDS_MAX) {
            const char *v = p + 1;
            if (*v == '"' || *v == '<') end = delimited_end(v, *v);
            sk_log_field *f = &out->fields[out->n_fields++];
            memcpy(st, k, (size_t)(p - k));
            st[p - k] = '\0';
            f->key = st;
            st += p - k + 1;
            f->value = st;
            if (end) {
                /* Quotes are dropped, angle brackets kept: "<>" is a value. */
                bool quoted = *v == '"';
                const char *from = quoted ? v + 1 : v;
                const char *to = quoted ? end - 1 : end;
                f->value_len = unescape(from, (size_t)(to - from), st);
            } else {
                end = v + strcspn(v, " ");
                f->value_len = (size_t)(end - v);
                memcpy(st, v, f->value_len);
            }
            st[f->value_len] = '\0';
            st += f->value_len + 1;
            p = end;
            continue;
        }
        /* A word of free text, kept as it is. */
        p = k + strcspn(k, " ");
        if (tl) out->text_store[tl++] = ' ';
        memcpy(out->text_store + tl, k, (size_t)(p - k));
        tl += (size_t)(p - k);
    }
    out->text_store[tl] = '\0';
    out->text = out->text_store;
    return SK_OK;
}
