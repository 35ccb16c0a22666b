/* The request-to-message builder: a POST /v1/messages body (JSON) made
 * into messages with the library's composer, or a /v1/messages/raw body
 * into a prepared message and its envelope. No I/O: what it builds goes to
 * the spool in api.c. Fields are checked strictly; the first one at fault
 * is named (docs/http-api.md). */
#include "http_int.h"

#include <smtpkit/message.h>

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* Fields a compose body may have; anything else is refused by name. */
static const char *const compose_fields[] = {
    "from",        "to",     "cc",      "bcc",      "reply_to",      "subject",    "text", "html",
    "attachments", "inline", "headers", "priority", "envelope_from", "recipients", NULL};
static const char *const raw_fields[] = {"envelope", "message", "message_base64", NULL};

static sk_err fail(sk_http_build *b, sk_err e, const char *field, const char *fmt, ...)
    SK_PRINTF(4, 5);
static sk_err fail(sk_http_build *b, sk_err e, const char *field, const char *fmt, ...)
{
    snprintf(b->field, sizeof b->field, "%s", field);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(b->message, sizeof b->message, fmt, ap);
    va_end(ap);
    return e;
}

/* base.name: a field inside an object of the body, for error messages
 * (a path too long for SK_HTTP_FIELD_PATH_OCTETS is cut short). */
static void field_at(char *out, size_t size, const char *base, const char *name)
{
    if (snprintf(out, size, "%s.%s", base, name) >= (int)size) out[size - 1] = '\0';
}

static bool known(const char *key, const char *const *names)
{
    for (; *names; names++)
        if (!strcmp(key, *names)) return true;
    return false;
}

static sk_err check_fields(sk_http_build *b, const json_t *obj, const char *const *names)
{
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)obj, key, v)
    {
        if (!known(key, names)) return fail(b, SK_ERR_INVAL, key, "unknown field");
    }
    return SK_OK;
}

/* A string field: NULL when absent; an error when present and not a string. */
static sk_err opt_string(sk_http_build *b, const json_t *obj, const char *name, const char **out)
{
    *out = NULL;
    json_t *v = json_object_get(obj, name);
    if (!v) return SK_OK;
    if (!json_is_string(v)) return fail(b, SK_ERR_INVAL, name, "must be a string");
    const char *s = json_string_value(v);
    if (strlen(s) != json_string_length(v))
        return fail(b, SK_ERR_INVAL, name, "must not contain NUL characters");
    *out = s;
    return SK_OK;
}

void sk_http_build_free(sk_http_build *b)
{
    for (size_t i = 0; b->msgs && i < b->n; i++) {
        sk_http_out *o = &b->msgs[i];
        sk_free(o->sender);
        for (size_t k = 0; k < o->nrcpts; k++) sk_free(o->rcpts[k]);
        sk_free(o->rcpts);
        sk_buf_free(&o->data);
        sk_free(o->message_id);
    }
    sk_free(b->msgs);
    b->msgs = NULL;
    b->n = 0;
}

static sk_http_out *add_out(sk_http_build *b, size_t *cap, uint64_t max_octets)
{
    if (sk_array_grow(&b->msgs, cap, b->n + 1, sizeof *b->msgs, SK_HTTP_BATCH_MAX)) return NULL;
    sk_http_out *o = &b->msgs[b->n++];
    memset(o, 0, sizeof *o);
    sk_buf_init(&o->data, max_octets ? max_octets : SK_HTTP_BUILD_MAX_OCTETS);
    return o;
}

/* The envelope of out from env (and the override of the reverse path). */
static sk_err take_envelope(sk_http_out *o, const sk_message_envelope *env, const char *sender)
{
    if (!(o->sender = sk_strdup(sender ? sender : env->reverse_path ? env->reverse_path : "")))
        return SK_ERR_NOMEM;
    if (!(o->rcpts = sk_calloc(env->recipient_count ? env->recipient_count : 1, sizeof *o->rcpts)))
        return SK_ERR_NOMEM;
    for (size_t i = 0; i < env->recipient_count; i++) {
        if (!(o->rcpts[i] = sk_strdup(env->recipients[i]))) return SK_ERR_NOMEM;
        o->nrcpts = i + 1;
    }
    o->smtputf8 = env->smtputf8;
    return SK_OK;
}

/* ---- {{name}} substitution ---- */

static bool name_char(char c)
{
    return sk_is_alnum(c) || c == '_' || c == '-' || c == '.';
}

static sk_err put_escaped(sk_buf *out, const char *s, size_t n)
{
    sk_err e = SK_OK;
    for (size_t i = 0; !e && i < n; i++) {
        switch (s[i]) {
        case '&':
            e = sk_buf_puts(out, "&amp;");
            break;
        case '<':
            e = sk_buf_puts(out, "&lt;");
            break;
        case '>':
            e = sk_buf_puts(out, "&gt;");
            break;
        case '"':
            e = sk_buf_puts(out, "&quot;");
            break;
        case '\'':
            e = sk_buf_puts(out, "&#39;");
            break;
        default:
            e = sk_buf_putc(out, s[i]);
        }
    }
    return e;
}

sk_err sk_http_substitute(const char *text, const json_t *vars, bool html, sk_buf *out, size_t *bad)
{
    const char *p = text;
    for (;;) {
        const char *open = strstr(p, "{{");
        if (!open) return sk_buf_puts(out, p);
        sk_err e = sk_buf_append(out, p, (size_t)(open - p));
        if (e) return e;
        const char *n = open + 2, *q = n;
        while (name_char(*q)) q++;
        char name[SK_HTTP_FIELD_PATH_OCTETS];
        size_t len = (size_t)(q - n);
        json_t *v = NULL;
        if (q[0] == '}' && q[1] == '}' && len > 0 && len < sizeof name && vars) {
            memcpy(name, n, len);
            name[len] = '\0';
            v = json_object_get(vars, name);
        }
        if (!v || !json_is_string(v)) {
            *bad = (size_t)(open - text);
            return SK_ERR_INVAL;
        }
        e = html ? put_escaped(out, json_string_value(v), json_string_length(v))
                 : sk_buf_append(out, json_string_value(v), json_string_length(v));
        if (e) return e;
        p = q + 2;
    }
}

/* ---- composed messages ---- */

typedef sk_err (*add_fn)(sk_message *, const char *, sk_error *);

static sk_err add_list(sk_http_build *b, sk_message *m, const json_t *body, const char *name,
                       add_fn add)
{
    json_t *v = json_object_get(body, name);
    if (!v) return SK_OK;
    if (!json_is_array(v)) return fail(b, SK_ERR_INVAL, name, "must be an array of addresses");
    size_t i;
    json_t *a;
    json_array_foreach(v, i, a)
    {
        char path[SK_HTTP_FIELD_PATH_OCTETS];
        snprintf(path, sizeof path, "%s[%zu]", name, i);
        if (!json_is_string(a)) return fail(b, SK_ERR_INVAL, path, "must be a string");
        sk_error err = {0};
        sk_err e = add(m, json_string_value(a), &err);
        if (e == SK_ERR_NOMEM) return e;
        if (e) return fail(b, SK_ERR_INVAL, path, "%s", err.text[0] ? err.text : sk_strerror(e));
    }
    return SK_OK;
}

static sk_err decode_b64(sk_http_build *b, const json_t *item, const char *path, sk_buf *out)
{
    char field[SK_HTTP_FIELD_PATH_OCTETS];
    field_at(field, sizeof field, path, "content");
    json_t *c = json_object_get(item, "content");
    if (!json_is_string(c)) return fail(b, SK_ERR_INVAL, field, "must be a base64 string");
    sk_err e = sk_base64_decode(out, json_string_value(c), json_string_length(c));
    if (e == SK_ERR_NOMEM) return e;
    if (e == SK_ERR_TOO_LONG) return fail(b, SK_ERR_TOO_LONG, field, "too large");
    if (e) return fail(b, SK_ERR_INVAL, field, "not valid base64");
    return SK_OK;
}

/* attachments[] and inline[]: {filename, content_type?, content, cid (inline)}. */
static sk_err add_parts(sk_http_build *b, sk_message *m, const json_t *body, const char *name,
                        bool inl)
{
    json_t *v = json_object_get(body, name);
    if (!v) return SK_OK;
    if (!json_is_array(v)) return fail(b, SK_ERR_INVAL, name, "must be an array");
    static const char *const att_fields[] = {"filename", "content_type", "content", NULL};
    static const char *const inl_fields[] = {"cid", "filename", "content_type", "content", NULL};
    size_t i;
    json_t *a;
    json_array_foreach(v, i, a)
    {
        char path[SK_HTTP_FIELD_PATH_OCTETS], field[SK_HTTP_FIELD_PATH_OCTETS];
        snprintf(path, sizeof path, "%s[%zu]", name, i);
        if (!json_is_object(a)) return fail(b, SK_ERR_INVAL, path, "must be an object");
        const char *key;
        json_t *x;
        json_object_foreach(a, key, x)
        {
            if (!known(key, inl ? inl_fields : att_fields)) {
                field_at(field, sizeof field, path, key);
                return fail(b, SK_ERR_INVAL, field, "unknown field");
            }
        }
        const char *filename = NULL, *ctype = NULL, *cid = NULL;
        field_at(field, sizeof field, path, "filename");
        json_t *f = json_object_get(a, "filename");
        if (!json_is_string(f)) return fail(b, SK_ERR_INVAL, field, "must be a string");
        filename = json_string_value(f);
        json_t *ct = json_object_get(a, "content_type");
        if (ct && !json_is_string(ct)) {
            field_at(field, sizeof field, path, "content_type");
            return fail(b, SK_ERR_INVAL, field, "must be a string");
        }
        ctype = ct ? json_string_value(ct) : NULL;
        if (inl) {
            json_t *c = json_object_get(a, "cid");
            if (!json_is_string(c)) {
                field_at(field, sizeof field, path, "cid");
                return fail(b, SK_ERR_INVAL, field, "must be a string");
            }
            cid = json_string_value(c);
        }
        sk_buf data = SK_BUF_INIT(SK_MIME_ATTACHMENT_MAX_OCTETS);
        sk_err e = decode_b64(b, a, path, &data);
        if (!e) {
            sk_error err = {0};
            const char *bytes = data.data ? data.data : "";
            e = inl ? sk_message_add_inline_data(m, cid, filename, bytes, data.len, ctype, &err)
                    : sk_message_attach_data(m, filename, bytes, data.len, ctype, &err);
            if (e && e != SK_ERR_NOMEM)
                e = fail(b, e == SK_ERR_TOO_LONG ? SK_ERR_TOO_LONG : SK_ERR_INVAL, path, "%s",
                         err.text[0] ? err.text : sk_strerror(e));
        }
        sk_buf_free(&data);
        if (e) return e;
    }
    return SK_OK;
}

/* Subject, text or html of one message, with the recipient's
 * substitutions (vars NULL: none given, the text is used as it is). */
static sk_err set_text(sk_http_build *b, sk_message *m, const char *field, const char *text,
                       const json_t *vars, const char *vars_path, add_fn set)
{
    if (!text) return SK_OK;
    sk_buf s = SK_BUF_INIT(SK_HTTP_BUILD_MAX_OCTETS);
    const char *use = text;
    if (vars) {
        size_t bad = 0;
        sk_err e = sk_http_substitute(text, vars, !strcmp(field, "html"), &s, &bad);
        if (e == SK_ERR_INVAL) {
            sk_buf_free(&s);
            return fail(b, SK_ERR_INVAL, vars_path,
                        "%s has a {{...}} at offset %zu that the substitutions do not name", field,
                        bad);
        }
        if (e) {
            sk_buf_free(&s);
            return e;
        }
        use = sk_buf_cstr(&s);
    }
    sk_error err = {0};
    sk_err e = set(m, use, &err);
    sk_buf_free(&s);
    if (e == SK_ERR_NOMEM) return e;
    if (e) return fail(b, SK_ERR_INVAL, field, "%s", err.text[0] ? err.text : sk_strerror(e));
    return SK_OK;
}

static sk_err set_from(sk_message *m, const char *v, sk_error *err)
{
    return sk_message_set_from(m, v, err);
}
static sk_err set_reply_to(sk_message *m, const char *v, sk_error *err)
{
    return sk_message_set_reply_to(m, v, err);
}

/* One composed message: the shared fields of body, then, in a batch, the
 * recipient rcpt (its "to" and substitutions). */
static sk_err compose_one(sk_http_build *b, const json_t *body, const json_t *rcpt,
                          const char *rcpt_path, uint64_t max_octets, size_t *cap)
{
    sk_message *m = sk_message_new();
    if (!m) return SK_ERR_NOMEM;
    sk_err e = SK_OK;
    const char *from, *reply_to, *subject, *text, *html, *env_from;
    if (!e) e = opt_string(b, body, "from", &from);
    if (!e && !from) e = fail(b, SK_ERR_INVAL, "from", "is required");
    if (!e) e = opt_string(b, body, "reply_to", &reply_to);
    if (!e) e = opt_string(b, body, "subject", &subject);
    if (!e) e = opt_string(b, body, "text", &text);
    if (!e) e = opt_string(b, body, "html", &html);
    if (!e) e = opt_string(b, body, "envelope_from", &env_from);
    if (!e) e = set_text(b, m, "from", from, NULL, NULL, set_from);
    if (!e && reply_to) e = set_text(b, m, "reply_to", reply_to, NULL, NULL, set_reply_to);
    json_t *vars = NULL;
    char vars_path[SK_HTTP_FIELD_PATH_OCTETS] = "";
    if (!e && rcpt) {
        char field[SK_HTTP_FIELD_PATH_OCTETS];
        static const char *const rcpt_fields[] = {"to", "substitutions", NULL};
        const char *key;
        json_t *x;
        json_object_foreach((json_t *)rcpt, key, x)
        {
            if (!e && !known(key, rcpt_fields)) {
                field_at(field, sizeof field, rcpt_path, key);
                e = fail(b, SK_ERR_INVAL, field, "unknown field");
            }
        }
        json_t *to = json_object_get(rcpt, "to");
        field_at(field, sizeof field, rcpt_path, "to");
        if (!e && !json_is_string(to)) e = fail(b, SK_ERR_INVAL, field, "must be a string");
        if (!e) {
            sk_error err = {0};
            e = sk_message_add_to(m, json_string_value(to), &err);
            if (e && e != SK_ERR_NOMEM)
                e = fail(b, SK_ERR_INVAL, field, "%s", err.text[0] ? err.text : sk_strerror(e));
        }
        vars = json_object_get(rcpt, "substitutions");
        field_at(vars_path, sizeof vars_path, rcpt_path, "substitutions");
        if (!e && vars) {
            const char *k;
            json_t *val;
            if (!json_is_object(vars))
                e = fail(b, SK_ERR_INVAL, vars_path, "must be an object of strings");
            json_object_foreach(vars, k, val)
            {
                if (!e && !json_is_string(val))
                    e = fail(b, SK_ERR_INVAL, vars_path, "'%s' must be a string", k);
            }
        }
    }
    /* In a batch, a {{...}} has to be named even with no substitutions. */
    json_t *empty = NULL;
    if (!e && rcpt && !vars) vars = empty = json_object();
    if (!e && rcpt && !vars) e = SK_ERR_NOMEM;
    if (!e) e = add_list(b, m, body, "to", sk_message_add_to);
    if (!e) e = add_list(b, m, body, "cc", sk_message_add_cc);
    if (!e) e = add_list(b, m, body, "bcc", sk_message_add_bcc);
    if (!e) e = set_text(b, m, "subject", subject, vars, vars_path, sk_message_set_subject);
    if (!e) e = set_text(b, m, "text", text, vars, vars_path, sk_message_set_text);
    if (!e) e = set_text(b, m, "html", html, vars, vars_path, sk_message_set_html);
    json_decref(empty);
    if (!e) e = add_parts(b, m, body, "attachments", false);
    if (!e) e = add_parts(b, m, body, "inline", true);
    json_t *hdrs = json_object_get(body, "headers");
    if (!e && hdrs && !json_is_object(hdrs))
        e = fail(b, SK_ERR_INVAL, "headers", "must be an object of strings");
    if (!e && hdrs) {
        const char *k;
        json_t *val;
        json_object_foreach(hdrs, k, val)
        {
            char field[SK_HTTP_FIELD_PATH_OCTETS];
            snprintf(field, sizeof field, "headers.%s", k);
            if (!e && !json_is_string(val)) e = fail(b, SK_ERR_INVAL, field, "must be a string");
            if (!e) {
                sk_error err = {0};
                e = sk_message_add_header(m, k, json_string_value(val), &err);
                if (e && e != SK_ERR_NOMEM)
                    e = fail(b, SK_ERR_INVAL, field, "%s", err.text[0] ? err.text : sk_strerror(e));
            }
        }
    }
    int has_priority = 0, priority = 0;
    json_t *pr = json_object_get(body, "priority");
    if (!e && pr) {
        if (!json_is_integer(pr) || json_integer_value(pr) < -9 || json_integer_value(pr) > 9)
            e = fail(b, SK_ERR_INVAL, "priority", "must be an integer from -9 to 9 (RFC 6710)");
        else {
            has_priority = 1;
            priority = (int)json_integer_value(pr);
        }
    }
    char *sender = NULL;
    if (!e && env_from && env_from[0]) {
        sk_mailbox mb = {0};
        sk_error err = {0};
        sk_err pe = sk_mailbox_parse(env_from, &mb, &err);
        if (pe == SK_ERR_NOMEM)
            e = pe;
        else if (pe || strchr(env_from, '<'))
            e = fail(b, SK_ERR_INVAL, "envelope_from", "must be an addr-spec (user@domain)");
        else if (!(sender = sk_strdup(mb.addr)))
            e = SK_ERR_NOMEM;
        sk_mailbox_clear(&mb);
    }
    sk_message_envelope env = {0};
    if (!e) {
        sk_error err = {0};
        e = sk_message_get_envelope(m, &env, &err);
        if (e && e != SK_ERR_NOMEM)
            e = fail(b, SK_ERR_INVAL, "from", "%s", err.text[0] ? err.text : sk_strerror(e));
    }
    if (!e && env.recipient_count == 0)
        e = fail(b, SK_ERR_INVAL, "to", "at least one recipient (to, cc, bcc or recipients)");
    sk_http_out *o = NULL;
    if (!e && !(o = add_out(b, cap, max_octets))) e = SK_ERR_NOMEM;
    if (!e) e = take_envelope(o, &env, env_from ? (sender ? sender : "") : NULL);
    if (!e) {
        o->has_priority = has_priority;
        o->priority = priority;
        sk_error err = {0};
        e = sk_message_render(m, &o->data, &err);
        if (e == SK_ERR_TOO_LONG)
            e = fail(b, e, "", "the message is larger than allowed");
        else if (e && e != SK_ERR_NOMEM)
            e = fail(b, SK_ERR_INVAL, "", "%s", err.text[0] ? err.text : sk_strerror(e));
    }
    if (!e) {
        sk_buf id = SK_BUF_INIT(SK_MIME_LINE_MAX_OCTETS);
        if (sk_message_get_message_id(m, &id) == SK_OK) o->message_id = sk_buf_detach(&id, NULL);
        sk_buf_free(&id);
    }
    sk_free(sender);
    sk_message_envelope_clear(&env);
    sk_message_free(m);
    return e;
}

static sk_err build_compose(sk_http_build *b, const json_t *body, uint64_t max_octets)
{
    sk_err e = check_fields(b, body, compose_fields);
    if (e) return e;
    size_t cap = 0;
    json_t *rcpts = json_object_get(body, "recipients");
    if (!rcpts) return compose_one(b, body, NULL, NULL, max_octets, &cap);
    if (json_object_get(body, "to") || json_object_get(body, "cc") || json_object_get(body, "bcc"))
        return fail(b, SK_ERR_INVAL, "recipients", "cannot be given with to, cc or bcc");
    if (!json_is_array(rcpts) || json_array_size(rcpts) == 0)
        return fail(b, SK_ERR_INVAL, "recipients", "must be a non-empty array of objects");
    if (json_array_size(rcpts) > SK_HTTP_BATCH_MAX)
        return fail(b, SK_ERR_TOO_LONG, "recipients", "at most %d recipients a request",
                    SK_HTTP_BATCH_MAX);
    size_t i;
    json_t *r;
    json_array_foreach(rcpts, i, r)
    {
        char path[SK_HTTP_FIELD_PATH_OCTETS];
        snprintf(path, sizeof path, "recipients[%zu]", i);
        if (!json_is_object(r)) return fail(b, SK_ERR_INVAL, path, "must be an object");
        if ((e = compose_one(b, body, r, path, max_octets, &cap))) return e;
    }
    return SK_OK;
}

/* ---- prepared messages ---- */

static sk_err addr_spec(sk_http_build *b, const char *field, const char *s, bool empty_ok,
                        char **out)
{
    *out = NULL;
    if (empty_ok && !s[0]) return (*out = sk_strdup("")) ? SK_OK : SK_ERR_NOMEM;
    sk_mailbox mb = {0};
    sk_error err = {0};
    sk_err e = sk_mailbox_parse(s, &mb, &err);
    if (e == SK_ERR_NOMEM) return e;
    if (e || strchr(s, '<') || mb.name[0]) {
        sk_mailbox_clear(&mb);
        return fail(b, SK_ERR_INVAL, field, "must be an addr-spec (user@domain)");
    }
    *out = sk_strdup(mb.addr);
    sk_mailbox_clear(&mb);
    return *out ? SK_OK : SK_ERR_NOMEM;
}

static sk_err build_raw(sk_http_build *b, const json_t *body, uint64_t max_octets)
{
    sk_err e = check_fields(b, body, raw_fields);
    if (e) return e;
    const char *text = NULL, *b64 = NULL;
    if ((e = opt_string(b, body, "message", &text))) return e;
    json_t *bv = json_object_get(body, "message_base64");
    if (bv && !json_is_string(bv))
        return fail(b, SK_ERR_INVAL, "message_base64", "must be a base64 string");
    b64 = bv ? json_string_value(bv) : NULL;
    if (!text == !b64)
        return fail(b, SK_ERR_INVAL, "message", "give one of message and message_base64");
    sk_buf raw = SK_BUF_INIT(max_octets ? max_octets : SK_HTTP_BUILD_MAX_OCTETS);
    const char *msg = text;
    size_t len = text ? strlen(text) : 0;
    if (b64) {
        e = sk_base64_decode(&raw, b64, json_string_length(bv));
        if (e == SK_ERR_TOO_LONG)
            e = fail(b, e, "message_base64", "too large");
        else if (e && e != SK_ERR_NOMEM)
            e = fail(b, SK_ERR_INVAL, "message_base64", "not base64");
        msg = raw.data ? raw.data : "";
        len = raw.len;
    }
    size_t cap = 0;
    sk_http_out *o = NULL;
    if (!e && !(o = add_out(b, &cap, max_octets))) e = SK_ERR_NOMEM;
    if (!e && memchr(msg, '\0', len))
        e = fail(b, SK_ERR_INVAL, b64 ? "message_base64" : "message", "contains a NUL octet");
    if (!e) {
        sk_error err = {0};
        e = sk_message_prepare_raw(msg, len, &o->data, &err);
        if (e == SK_ERR_TOO_LONG && o->data.len + 2 >= o->data.max)
            e = fail(b, e, b64 ? "message_base64" : "message",
                     "the message is larger than allowed");
        else if (e && e != SK_ERR_NOMEM)
            e = fail(b, SK_ERR_INVAL, b64 ? "message_base64" : "message", "%s",
                     err.text[0] ? err.text : sk_strerror(e));
    }
    json_t *env = json_object_get(body, "envelope");
    if (!e && env) {
        static const char *const env_fields[] = {"from", "to", NULL};
        const char *key;
        json_t *x;
        char field[SK_HTTP_FIELD_PATH_OCTETS];
        if (!json_is_object(env)) e = fail(b, SK_ERR_INVAL, "envelope", "must be an object");
        json_object_foreach(env, key, x)
        {
            if (!e && !known(key, env_fields)) {
                snprintf(field, sizeof field, "envelope.%s", key);
                e = fail(b, SK_ERR_INVAL, field, "unknown field");
            }
        }
        json_t *from = json_object_get(env, "from"), *to = json_object_get(env, "to");
        if (!e && !json_is_string(from))
            e = fail(b, SK_ERR_INVAL, "envelope.from", "must be a string (\"\" for <>)");
        if (!e) e = addr_spec(b, "envelope.from", json_string_value(from), true, &o->sender);
        if (!e && (!json_is_array(to) || json_array_size(to) == 0))
            e = fail(b, SK_ERR_INVAL, "envelope.to", "must be a non-empty array of addresses");
        if (!e && json_array_size(to) > SK_HTTP_BATCH_MAX)
            e = fail(b, SK_ERR_TOO_LONG, "envelope.to", "at most %d recipients", SK_HTTP_BATCH_MAX);
        if (!e && !(o->rcpts = sk_calloc(json_array_size(to), sizeof *o->rcpts))) e = SK_ERR_NOMEM;
        size_t i;
        json_t *a;
        json_array_foreach(e ? NULL : to, i, a)
        {
            snprintf(field, sizeof field, "envelope.to[%zu]", i);
            if (!e && !json_is_string(a)) e = fail(b, SK_ERR_INVAL, field, "must be a string");
            if (!e) e = addr_spec(b, field, json_string_value(a), false, &o->rcpts[i]);
            if (!e) o->nrcpts = i + 1;
        }
        for (size_t k = 0; !e && k < o->nrcpts; k++)
            for (const unsigned char *c = (const unsigned char *)o->rcpts[k]; *c; c++)
                if (*c > 0x7f) o->smtputf8 = 1;
        for (const unsigned char *c = (const unsigned char *)(o->sender ? o->sender : ""); !e && *c;
             c++)
            if (*c > 0x7f) o->smtputf8 = 1;
    } else if (!e) {
        /* No envelope: from the header, as sendmail -t does. */
        sk_message_envelope me = {0};
        sk_error err = {0};
        e = sk_message_parse_envelope(msg, len, &me, &err);
        if (e && e != SK_ERR_NOMEM)
            e = fail(b, SK_ERR_INVAL, b64 ? "message_base64" : "message", "%s",
                     err.text[0] ? err.text : sk_strerror(e));
        if (!e && me.recipient_count == 0)
            e = fail(b, SK_ERR_INVAL, "envelope",
                     "the message names no recipient: give envelope.to");
        if (!e) e = take_envelope(o, &me, NULL);
        sk_message_envelope_clear(&me);
    }
    if (!e) {
        /* RFC 6532: a header that is not ASCII needs SMTPUTF8 too. */
        size_t hlen = o->data.len;
        const char *end = o->data.data ? strstr(o->data.data, "\r\n\r\n") : NULL;
        if (end) hlen = (size_t)(end - o->data.data);
        for (size_t i = 0; i < hlen; i++)
            if ((unsigned char)o->data.data[i] > 0x7f) o->smtputf8 = 1;
    }
    sk_buf_free(&raw);
    return e;
}

sk_err sk_http_build_messages(sk_http_body_kind kind, const char *body, size_t len,
                              uint64_t max_octets, sk_http_build *out)
{
    memset(out, 0, sizeof *out);
    json_error_t jerr;
    json_t *root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        return fail(out, SK_ERR_SYNTAX, "", "not JSON: %s at line %d column %d", jerr.text,
                    jerr.line, jerr.column);
    }
    sk_err e;
    if (!json_is_object(root))
        e = fail(out, SK_ERR_SYNTAX, "", "the body must be a JSON object");
    else
        e = kind == SK_HTTP_RAW ? build_raw(out, root, max_octets)
                                : build_compose(out, root, max_octets);
    json_decref(root);
    if (e == SK_ERR_NOMEM) fail(out, e, "", "out of memory");
    if (e) sk_http_build_free(out);
    return e;
}
