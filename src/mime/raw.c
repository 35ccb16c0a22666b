/* Prepared messages (`smtpkit send --message FILE`, like `sendmail -t`):
 * the envelope from the header, and the copy that is sent (no Bcc, CRLF). */
#include "mime/mime_int.h"

#include <string.h>
#include <strings.h>

/* The next line of raw at *pos (LF, CRLF or a lone CR ends it); false at
 * the end. */
static bool next_line(const char *raw, size_t len, size_t *pos, const char **line, size_t *n)
{
    if (*pos >= len) return false;
    size_t i = *pos;
    while (i < len && raw[i] != '\r' && raw[i] != '\n') i++;
    *line = raw + *pos;
    *n = i - *pos;
    if (i < len) i += raw[i] == '\r' && i + 1 < len && raw[i + 1] == '\n' ? 2 : 1;
    *pos = i;
    return true;
}

/* The name of the field starting on this line, or 0 when the line does not
 * start one. RFC 5322 3.6.8 ftext, and 4.5 obs: white space before ':'. */
static size_t field_name(const char *line, size_t n, size_t *colon)
{
    size_t i = 0;
    while (i < n && line[i] >= 33 && line[i] <= 126 && line[i] != ':') i++;
    size_t name_len = i;
    while (i < n && (line[i] == ' ' || line[i] == '\t')) i++;
    if (name_len == 0 || i >= n || line[i] != ':') return 0;
    *colon = i;
    return name_len;
}

static bool name_is(const char *line, size_t n, const char *name)
{
    return n == strlen(name) && strncasecmp(line, name, n) == 0;
}

typedef enum kind { K_OTHER, K_FROM, K_SENDER, K_RCPT } kind;

typedef struct env_state {
    sk_message_envelope *env;
    char *from, *sender;
    size_t cap;
    const char *why;
    const char *field;
} env_state;

static sk_err add_rcpt(env_state *st, const char *addr)
{
    sk_message_envelope *env = st->env;
    for (size_t i = 0; i < env->recipient_count; i++)
        if (sk_mime_addr_equal(env->recipients[i], addr)) return SK_OK;
    sk_err e = sk_array_grow(&env->recipients, &st->cap, env->recipient_count + 1,
                             sizeof *env->recipients, SK_ARRAY_UNBOUNDED);
    if (e) return e;
    char *copy = sk_strdup(addr);
    if (!copy) return SK_ERR_NOMEM;
    env->recipients[env->recipient_count++] = copy;
    return SK_OK;
}

static sk_err finish_field(env_state *st, kind k, const sk_buf *value)
{
    if (k == K_OTHER) return SK_OK;
    sk_address_list l;
    const char *why = NULL;
    /* Only To, Cc and Bcc may be groups or empty ("undisclosed-recipients:;"). */
    sk_err e = sk_mime_parse_addresses(sk_buf_cstr(value), value->len, &l, k == K_RCPT, &why);
    if (e) {
        st->why = why;
        st->field = k == K_FROM ? "From" : k == K_SENDER ? "Sender" : "To/Cc/Bcc";
        return e;
    }
    char **slot = k == K_FROM ? &st->from : &st->sender;
    if (k != K_RCPT && !*slot && l.count) {
        *slot = sk_strdup(l.items[0].addr);
        if (!*slot) e = SK_ERR_NOMEM;
    }
    for (size_t i = 0; !e && k == K_RCPT && i < l.count; i++) e = add_rcpt(st, l.items[i].addr);
    sk_address_list_clear(&l);
    return e;
}

sk_err sk_message_parse_envelope(const char *raw, size_t len, sk_message_envelope *env,
                                 sk_error *err)
{
    if (!raw || !env) return sk_error_set(err, SK_ERR_INVAL, SK_STEP_COMPOSE, "no message");
    memset(env, 0, sizeof *env);
    env_state st = {env, NULL, NULL, 0, NULL, NULL};
    sk_buf value = SK_BUF_INIT(SK_MIME_HEADER_FIELD_MAX_OCTETS);
    kind k = K_OTHER;
    bool in_field = false;
    size_t pos = 0;
    const char *line;
    size_t n;
    sk_err e = SK_OK;
    while (!e && next_line(raw, len, &pos, &line, &n)) {
        if (!sk_mime_is_ascii(line, n)) env->smtputf8 = 1; /* RFC 6532 header */
        if (n == 0) break;                                 /* end of the header */
        size_t colon;
        if (line[0] == ' ' || line[0] == '\t') {
            if (!in_field) {
                st.why = "continuation line before any field";
                e = SK_ERR_SYNTAX;
            } else if (k != K_OTHER) {
                /* Unfolding removes only the line break (RFC 5322 2.2.3). */
                e = sk_buf_append(&value, line, n);
            }
            continue;
        }
        size_t name_len = field_name(line, n, &colon);
        if (!name_len) {
            st.why = "a header line that is not a field";
            e = SK_ERR_SYNTAX;
            break;
        }
        if (in_field) e = finish_field(&st, k, &value);
        sk_buf_reset(&value);
        in_field = true;
        k = name_is(line, name_len, "From")     ? K_FROM
            : name_is(line, name_len, "Sender") ? K_SENDER
            : name_is(line, name_len, "To") || name_is(line, name_len, "Cc") ||
                    name_is(line, name_len, "Bcc")
                ? K_RCPT
                : K_OTHER;
        if (!e && k != K_OTHER) e = sk_buf_append(&value, line + colon + 1, n - colon - 1);
    }
    if (!e && in_field) e = finish_field(&st, k, &value);
    for (size_t i = pos; !e && i < len; i++)
        if ((unsigned char)raw[i] >= 0x80) env->eightbit = 1;
    const char *rp = st.sender ? st.sender : st.from;
    if (!e && !rp) {
        st.why = "no From field";
        e = SK_ERR_SYNTAX;
    }
    if (!e) {
        env->reverse_path = sk_strdup(rp);
        if (!env->reverse_path) e = SK_ERR_NOMEM;
    }
    for (size_t i = 0; !e && i < env->recipient_count; i++)
        if (!sk_mime_is_ascii(env->recipients[i], strlen(env->recipients[i]))) env->smtputf8 = 1;
    sk_free(st.from);
    sk_free(st.sender);
    sk_buf_free(&value);
    if (!e) return SK_OK;
    sk_message_envelope_clear(env);
    if (e == SK_ERR_NOMEM) return sk_error_set(err, e, SK_STEP_COMPOSE, "out of memory");
    if (e == SK_ERR_TOO_LONG)
        return sk_error_set(err, SK_ERR_SYNTAX, SK_STEP_COMPOSE, "header field over %u octets",
                            SK_MIME_HEADER_FIELD_MAX_OCTETS);
    if (st.field)
        return sk_error_set(err, e, SK_STEP_COMPOSE, "malformed %s field: %s", st.field,
                            st.why ? st.why : "syntax error");
    return sk_error_set(err, e, SK_STEP_COMPOSE, "malformed message header: %s",
                        st.why ? st.why : "syntax error");
}

sk_err sk_message_prepare_raw(const char *raw, size_t len, sk_buf *out, sk_error *err)
{
    if (!raw || !out) return sk_error_set(err, SK_ERR_INVAL, SK_STEP_COMPOSE, "no message");
    size_t mark = out->len;
    bool in_header = true, in_field = false, skipping = false;
    size_t pos = 0, lineno = 0, kept = 0;
    const char *line;
    size_t n;
    sk_err e = sk_buf_append(out, "", 0); /* out->data is a string even if nothing is kept */
    const char *why = NULL;
    while (!e && next_line(raw, len, &pos, &line, &n)) {
        lineno++;
        /* RFC 5322 2.1.1: at most 998 octets before the CRLF. */
        if (n > SK_MIME_LINE_MAX_OCTETS) {
            why = "line over 998 octets (RFC 5322 2.1.1)";
            e = SK_ERR_SYNTAX;
            break;
        }
        if (in_header) {
            size_t colon;
            if (n == 0 && kept == 0) {
                /* RFC 5322 3.6: From and Date at least; no header at all
                 * is not a message. */
                why = "no header fields (besides Bcc)";
                e = SK_ERR_SYNTAX;
                break;
            } else if (n == 0) {
                in_header = false;
            } else if (line[0] == ' ' || line[0] == '\t') {
                if (!in_field) {
                    why = "continuation line before any field";
                    e = SK_ERR_SYNTAX;
                    break;
                }
                if (skipping) continue;
            } else {
                size_t name_len = field_name(line, n, &colon);
                if (!name_len) {
                    why = "a header line that is not a field";
                    e = SK_ERR_SYNTAX;
                    break;
                }
                in_field = true;
                /* RFC 5322 3.6.3: Bcc is removed from what is sent. */
                skipping = name_is(line, name_len, "Bcc");
                if (skipping) continue;
                kept++;
            }
        }
        e = sk_buf_append(out, line, n);
        if (!e) e = sk_buf_append(out, "\r\n", 2);
    }
    if (!e && kept == 0) {
        why = lineno ? "no header fields (besides Bcc)" : "empty message";
        e = SK_ERR_SYNTAX;
    }
    if (!e) return SK_OK;
    sk_buf_truncate(out, mark);
    if (e == SK_ERR_SYNTAX)
        return sk_error_set(err, e, SK_STEP_COMPOSE, "line %zu: %s", lineno, why);
    return sk_error_set(err, e, SK_STEP_COMPOSE, "%s", sk_strerror(e));
}
