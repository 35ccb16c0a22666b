/* The control socket's line protocol, without I/O: request and reply lines
 * read and written (docs/queue.md "The control protocol"). What the server
 * reads comes from another local process: parsed strictly and bounded. */
#include <smtpkit/control.h>
#include <smtpkit/dsn.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* The longest request the grammar allows fits the limit (limits.h). */
#define XTEXT_MAX(octets) (3 * (octets))
_Static_assert(sizeof "release id=" - 1 + SK_SPOOL_ID_LEN + sizeof " all" - 1 +
                       sizeof " destination=" - 1 + XTEXT_MAX(SK_SMTP_DOMAIN_MAX_OCTETS) +
                       sizeof " sender=" - 1 + XTEXT_MAX(SK_SMTP_PATH_MAX_OCTETS) +
                       sizeof " state=active,deferred,hold" - 1 + 2 <=
                   SK_CONTROL_REQUEST_MAX_OCTETS,
               "SK_CONTROL_REQUEST_MAX_OCTETS is too small for the longest request");

static const char *const state_names[] = {"active", "deferred", "hold"};
_Static_assert(sizeof state_names / sizeof state_names[0] == SK_SPOOL_STATE__COUNT,
               "a state without a name");

static const struct {
    const char *word;
    sk_err err;
} error_words[] = {
    {"syntax", SK_ERR_SYNTAX}, {"too-long", SK_ERR_TOO_LONG}, {"not-found", SK_ERR_NOT_FOUND},
    {"denied", SK_ERR_AUTH},   {"busy", SK_ERR_TEMPFAIL},     {"timeout", SK_ERR_TIMEOUT},
    {"failed", SK_ERR_IO},
};
#define ERROR_WORDS (sizeof error_words / sizeof error_words[0])

static sk_err bad(sk_error *err, sk_err e, const char *what, const char *p, size_t n)
{
    /* Only printable octets of the request go into the text. */
    char shown[64];
    size_t k = 0;
    for (size_t i = 0; i < n && k + 1 < sizeof shown; i++)
        shown[k++] = p[i] >= 0x20 && p[i] < 0x7f ? p[i] : '?';
    shown[k] = '\0';
    return sk_error_set(err, e, SK_STEP_NONE, "%s%s%s%s", what, n ? " '" : "", shown,
                        n ? (n > k ? "...'" : "'") : "");
}

/* Decode xtext value v[0..n) into out (size octets with its NUL): no
 * octet below 0x20 and no DEL (a NUL would cut the value short). */
static sk_err value(const char *key, const char *v, size_t n, char *out, size_t size, sk_error *err)
{
    if (!sk_xtext_valid(v, n)) return bad(err, SK_ERR_SYNTAX, key, v, n);
    char enc[XTEXT_MAX(SK_SMTP_PATH_MAX_OCTETS) + 1];
    if (n >= sizeof enc) return bad(err, SK_ERR_TOO_LONG, key, v, n);
    memcpy(enc, v, n);
    enc[n] = '\0';
    sk_err e = sk_xtext_decode(enc, out, size);
    if (e) return bad(err, e, key, v, n);
    size_t escapes = 0;
    for (size_t i = 0; i < n; i++) escapes += v[i] == '+';
    if (strlen(out) != n - 2 * escapes) return bad(err, SK_ERR_SYNTAX, key, v, n);
    for (const unsigned char *p = (const unsigned char *)out; *p; p++)
        if (*p < 0x20 || *p == 0x7f) return bad(err, SK_ERR_SYNTAX, key, v, n);
    return SK_OK;
}

static sk_err states(const char *v, size_t n, unsigned *mask, sk_error *err)
{
    const char *p = v, *end = v + n;
    while (p <= end) {
        const char *comma = memchr(p, ',', (size_t)(end - p));
        size_t len = (size_t)((comma ? comma : end) - p);
        size_t s = 0;
        while (s < SK_SPOOL_STATE__COUNT &&
               (strlen(state_names[s]) != len || memcmp(state_names[s], p, len)))
            s++;
        if (s == SK_SPOOL_STATE__COUNT || (*mask & (1u << s)))
            return bad(err, SK_ERR_SYNTAX, "state", v, n);
        *mask |= 1u << s;
        if (!comma) break;
        p = comma + 1;
    }
    return SK_OK;
}

static sk_err term(const char *t, size_t n, sk_queue_filter *f, sk_error *err)
{
    if (n == 3 && !memcmp(t, "all", 3)) {
        if (f->all) return bad(err, SK_ERR_SYNTAX, "'all' given twice", NULL, 0);
        f->all = 1;
        return SK_OK;
    }
    const char *eq = memchr(t, '=', n);
    if (!eq) return bad(err, SK_ERR_SYNTAX, "unknown term", t, n);
    size_t klen = (size_t)(eq - t), vlen = n - klen - 1;
    const char *v = eq + 1;
#define KEY_IS(k) (klen == sizeof k - 1 && !memcmp(t, k, klen))
    if (KEY_IS("id")) {
        char id[SK_SPOOL_ID_SIZE];
        if (f->id[0] || vlen != SK_SPOOL_ID_LEN) return bad(err, SK_ERR_SYNTAX, "id", v, vlen);
        memcpy(id, v, vlen);
        id[vlen] = '\0';
        if (!sk_spool_id_valid(id)) return bad(err, SK_ERR_SYNTAX, "id", v, vlen);
        memcpy(f->id, id, sizeof id);
        return SK_OK;
    }
    if (KEY_IS("destination")) {
        if (f->destination[0] || !vlen) return bad(err, SK_ERR_SYNTAX, "destination", v, vlen);
        sk_err e = value("destination", v, vlen, f->destination, sizeof f->destination, err);
        if (e) return e;
        for (const char *p = f->destination; *p; p++)
            if (*p == ' ' || *p == '@') return bad(err, SK_ERR_SYNTAX, "destination", v, vlen);
        return SK_OK;
    }
    if (KEY_IS("sender")) {
        if (f->has_sender) return bad(err, SK_ERR_SYNTAX, "sender given twice", NULL, 0);
        f->has_sender = 1;
        return value("sender", v, vlen, f->sender, sizeof f->sender, err);
    }
    if (KEY_IS("state")) {
        if (f->states) return bad(err, SK_ERR_SYNTAX, "state given twice", NULL, 0);
        return states(v, vlen, &f->states, err);
    }
#undef KEY_IS
    return bad(err, SK_ERR_SYNTAX, "unknown term", t, n);
}

sk_err sk_control_request_parse(const char *line, size_t n, sk_control_request *out, sk_error *err)
{
    sk_error_clear(err);
    memset(out, 0, sizeof *out);
    if (n > SK_CONTROL_REQUEST_MAX_OCTETS)
        return sk_error_set(err, SK_ERR_TOO_LONG, SK_STEP_NONE, "request over %u octets",
                            (unsigned)SK_CONTROL_REQUEST_MAX_OCTETS);
    /* Values are xtext, so a request is printable ASCII throughout. */
    for (size_t i = 0; i < n; i++)
        if (line[i] < 0x20 || line[i] >= 0x7f)
            return bad(err, SK_ERR_SYNTAX, "octet outside printable ASCII in", line, n);
    const char *sp = memchr(line, ' ', n);
    size_t vlen = sp ? (size_t)(sp - line) : n;
    size_t op = 0;
    while (op <= SK_QUEUE_OP_DELETE && (strlen(sk_queue_op_name((sk_queue_op)op)) != vlen ||
                                        memcmp(sk_queue_op_name((sk_queue_op)op), line, vlen)))
        op++;
    if (op > SK_QUEUE_OP_DELETE) return bad(err, SK_ERR_SYNTAX, "unknown operation", line, vlen);
    out->op = (sk_queue_op)op;
    const char *p = line + vlen, *end = line + n;
    while (p < end) {
        /* One space before each term. */
        if (*p != ' ' || p + 1 == end || p[1] == ' ')
            return bad(err, SK_ERR_SYNTAX, "terms are separated by one space", line, n);
        p++;
        const char *e = memchr(p, ' ', (size_t)(end - p));
        if (!e) e = end;
        sk_err r = term(p, (size_t)(e - p), &out->filter, err);
        if (r) return r;
        p = e;
    }
    if (sk_queue_filter_empty(&out->filter))
        return sk_error_set(err, SK_ERR_SYNTAX, SK_STEP_NONE,
                            "%s needs what to apply to (all, id=, destination=, sender=, state=)",
                            sk_queue_op_name(out->op));
    return SK_OK;
}

sk_err sk_control_request_format(const sk_control_request *r, sk_buf *out)
{
    const sk_queue_filter *f = &r->filter;
    if ((unsigned)r->op > SK_QUEUE_OP_DELETE || sk_queue_filter_empty(f) ||
        (f->id[0] && !sk_spool_id_valid(f->id)) || f->states >= 1u << SK_SPOOL_STATE__COUNT)
        return SK_ERR_INVAL;
    sk_err e = sk_buf_puts(out, sk_queue_op_name(r->op));
    if (!e && f->id[0]) e = sk_buf_printf(out, " id=%s", f->id);
    if (!e && f->all) e = sk_buf_puts(out, " all");
    if (!e && f->destination[0]) {
        e = sk_buf_puts(out, " destination=");
        if (!e) e = sk_xtext_encode(f->destination, out);
    }
    if (!e && f->has_sender) {
        e = sk_buf_puts(out, " sender=");
        if (!e) e = sk_xtext_encode(f->sender, out);
    }
    for (size_t s = 0, first = 1; !e && s < SK_SPOOL_STATE__COUNT; s++) {
        if (!(f->states & (1u << s))) continue;
        e = sk_buf_printf(out, "%s%s", first ? " state=" : ",", state_names[s]);
        first = 0;
    }
    if (!e) e = sk_buf_putc(out, '\n');
    return e;
}

/* "N" in decimal, no sign, no leading zero (but "0"), within size_t. */
static int count(const char *p, size_t n, size_t *out)
{
    if (!n || n > 20 || (p[0] == '0' && n > 1)) return 0;
    unsigned long long v = 0;
    for (size_t i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9') return 0;
        unsigned d = (unsigned)(p[i] - '0');
        if (v > (SIZE_MAX - d) / 10) return 0;
        v = v * 10 + d;
    }
    *out = (size_t)v;
    return 1;
}

/* "matched=N changed=N" */
static sk_err counts(const char *p, size_t n, sk_control_reply *out)
{
    static const char m[] = "matched=", c[] = " changed=";
    if (n < sizeof m - 1 || memcmp(p, m, sizeof m - 1)) return SK_ERR_SYNTAX;
    p += sizeof m - 1;
    n -= sizeof m - 1;
    const char *sp = memchr(p, ' ', n);
    if (!sp || !count(p, (size_t)(sp - p), &out->matched)) return SK_ERR_SYNTAX;
    n -= (size_t)(sp - p);
    p = sp;
    if (n < sizeof c - 1 || memcmp(p, c, sizeof c - 1)) return SK_ERR_SYNTAX;
    if (!count(p + sizeof c - 1, n - (sizeof c - 1), &out->changed)) return SK_ERR_SYNTAX;
    return out->changed <= out->matched ? SK_OK : SK_ERR_SYNTAX;
}

sk_err sk_control_reply_parse(const char *line, size_t n, sk_control_reply *out)
{
    memset(out, 0, sizeof *out);
    if (n >= SK_CONTROL_REPLY_LINE_MAX_OCTETS) return SK_ERR_TOO_LONG;
    for (size_t i = 0; i < n; i++)
        if (line[i] < 0x20 || line[i] >= 0x7f) return SK_ERR_SYNTAX;
    static const char progress[] = "progress ", ok[] = "ok ", error[] = "error ";
#define STARTS(w) (n >= sizeof w - 1 && !memcmp(line, w, sizeof w - 1))
    if (STARTS(progress)) {
        out->kind = SK_CONTROL_PROGRESS;
        return counts(line + sizeof progress - 1, n - (sizeof progress - 1), out);
    }
    if (STARTS(ok)) {
        out->kind = SK_CONTROL_OK;
        return counts(line + sizeof ok - 1, n - (sizeof ok - 1), out);
    }
    if (!STARTS(error)) return SK_ERR_SYNTAX;
#undef STARTS
    out->kind = SK_CONTROL_ERROR;
    const char *w = line + sizeof error - 1, *end = line + n;
    const char *sp = memchr(w, ' ', (size_t)(end - w));
    size_t wlen = (size_t)((sp ? sp : end) - w);
    if (!wlen) return SK_ERR_SYNTAX;
    /* A word this side does not know is still an error. */
    out->err = SK_ERR_IO;
    for (size_t i = 0; i < ERROR_WORDS; i++)
        if (strlen(error_words[i].word) == wlen && !memcmp(error_words[i].word, w, wlen))
            out->err = error_words[i].err;
    if (sp) {
        size_t tlen = (size_t)(end - sp - 1);
        memcpy(out->text, sp + 1, tlen);
        out->text[tlen] = '\0';
    }
    return SK_OK;
}

sk_err sk_control_reply_format(const sk_control_reply *r, sk_buf *out)
{
    switch (r->kind) {
    case SK_CONTROL_PROGRESS:
    case SK_CONTROL_OK:
        return sk_buf_printf(out, "%s matched=%zu changed=%zu\n",
                             r->kind == SK_CONTROL_OK ? "ok" : "progress", r->matched, r->changed);
    case SK_CONTROL_ERROR:
        break;
    default:
        return SK_ERR_INVAL;
    }
    const char *word = "failed";
    for (size_t i = 0; i < ERROR_WORDS; i++)
        if (error_words[i].err == r->err) word = error_words[i].word;
    sk_err e = sk_buf_printf(out, "error %s", word);
    /* The line with its LF stays within the limit the client reads. */
    size_t room = SK_CONTROL_REPLY_LINE_MAX_OCTETS - 2 - (sizeof "error too-long " - 1);
    size_t tlen = strnlen(r->text, sizeof r->text);
    if (!e && tlen) e = sk_buf_putc(out, ' ');
    for (size_t i = 0; !e && i < tlen && i < room; i++) {
        char c = r->text[i];
        e = sk_buf_putc(out, c >= 0x20 && c < 0x7f ? c : '?');
    }
    if (!e) e = sk_buf_putc(out, '\n');
    return e;
}
