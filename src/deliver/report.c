/* Reading the reports others send: DSNs (RFC 3464) and ARF feedback reports
 * (RFC 5965) taken apart into sk_report (public API in dsn.h). */
#include <smtpkit/dsn.h>
#include <smtpkit/reply.h>

#include <ctype.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

typedef struct span {
    const char *p;
    size_t n;
} span;

typedef struct field {
    char *name;
    char *value;
} field;

typedef struct fields {
    field *f;
    size_t n, cap;
} fields;

static void fields_free(fields *fs)
{
    for (size_t i = 0; i < fs->n; i++) {
        sk_free(fs->f[i].name);
        sk_free(fs->f[i].value);
    }
    sk_free(fs->f);
    memset(fs, 0, sizeof *fs);
}

static const char *fields_get(const fields *fs, const char *name)
{
    for (size_t i = 0; i < fs->n; i++)
        if (strcasecmp(fs->f[i].name, name) == 0) return fs->f[i].value;
    return NULL;
}

/* Next line of s[*pos..len): its span without the line break. */
static int next_line(const char *s, size_t len, size_t *pos, span *line)
{
    if (*pos >= len) return 0;
    const char *nl = memchr(s + *pos, '\n', len - *pos);
    size_t end = nl ? (size_t)(nl - s) : len;
    line->p = s + *pos;
    line->n = end - *pos;
    if (line->n && line->p[line->n - 1] == '\r') line->n--;
    *pos = nl ? end + 1 : len;
    return 1;
}

static int blank(span l)
{
    for (size_t i = 0; i < l.n; i++)
        if (l.p[i] != ' ' && l.p[i] != '\t') return 0;
    return 1;
}

static span trim(span s)
{
    while (s.n && isspace((unsigned char)s.p[0])) s.p++, s.n--;
    while (s.n && isspace((unsigned char)s.p[s.n - 1])) s.n--;
    return s;
}

/* Read fields up to an empty (or blank) line, unfolding continuation
 * lines (RFC 5322 2.2.3). Lines without a colon are skipped: real
 * reports have them, and they carry nothing we need. *pos ends after the
 * empty line. */
static sk_err parse_fields(const char *s, size_t len, size_t *pos, fields *fs)
{
    span line;
    while (next_line(s, len, pos, &line)) {
        if (blank(line)) break;
        if ((line.p[0] == ' ' || line.p[0] == '\t') && fs->n) {
            field *f = &fs->f[fs->n - 1];
            span t = trim(line);
            size_t old = strlen(f->value);
            if (old + t.n + 2 > SK_REPORT_MAX_OCTETS) return SK_ERR_TOO_LONG;
            char *v = sk_realloc(f->value, old + t.n + 2);
            if (!v) return SK_ERR_NOMEM;
            v[old] = ' ';
            memcpy(v + old + 1, t.p, t.n);
            v[old + 1 + t.n] = '\0';
            f->value = v;
            continue;
        }
        const char *colon = memchr(line.p, ':', line.n);
        if (!colon) continue;
        span name = trim((span){line.p, (size_t)(colon - line.p)});
        span value = trim((span){colon + 1, line.n - (size_t)(colon + 1 - line.p)});
        if (!name.n) continue;
        sk_err e = sk_array_grow(&fs->f, &fs->cap, fs->n + 1, sizeof *fs->f, SK_REPORT_FIELDS_MAX);
        if (e) return e;
        field *f = &fs->f[fs->n];
        f->name = sk_strndup(name.p, name.n);
        f->value = sk_strndup(value.p, value.n);
        if (!f->name || !f->value) {
            sk_free(f->name);
            sk_free(f->value);
            return SK_ERR_NOMEM;
        }
        fs->n++;
    }
    return SK_OK;
}

/* "Multipart/Report; ..." -> "multipart/report" in out. */
static void media_type(const char *v, char *out, size_t outsize)
{
    size_t o = 0;
    if (!v) v = "text/plain"; /* RFC 2045 5.2 default */
    while (isspace((unsigned char)*v)) v++;
    for (; *v && *v != ';' && !isspace((unsigned char)*v) && o + 1 < outsize; v++)
        out[o++] = (char)tolower((unsigned char)*v);
    out[o] = '\0';
}

/* A Content-Type parameter (RFC 2045 5.1), quoted or not, into *out
 * (NULL if absent or longer than we keep). Fails only for memory. */
static sk_err media_param(const char *v, const char *name, char **out)
{
    *out = NULL;
    const char *p = v ? strchr(v, ';') : NULL;
    size_t nlen = strlen(name);
    while (p && *p == ';') {
        p++;
        while (isspace((unsigned char)*p)) p++;
        const char *k = p;
        while (*p && *p != '=' && *p != ';') p++;
        span key = trim((span){k, (size_t)(p - k)});
        if (*p != '=') continue;
        p++;
        while (isspace((unsigned char)*p)) p++;
        sk_buf val = SK_BUF_INIT(SK_RULES_LINE_MAX_OCTETS);
        sk_err e = SK_OK;
        if (*p == '"') {
            for (p++; *p && *p != '"' && !e; p++) {
                if (*p == '\\' && p[1]) p++;
                e = sk_buf_putc(&val, *p);
            }
            if (*p == '"') p++;
            while (*p && *p != ';') p++;
        } else {
            const char *start = p;
            while (*p && *p != ';' && !isspace((unsigned char)*p)) p++;
            e = sk_buf_append(&val, start, (size_t)(p - start));
            while (*p && *p != ';') p++;
        }
        if (e == SK_ERR_NOMEM) return e;
        if (!e && key.n == nlen && strncasecmp(key.p, name, nlen) == 0) {
            *out = sk_buf_detach(&val, NULL);
            return *out ? SK_OK : SK_ERR_NOMEM;
        }
        sk_buf_free(&val);
    }
    return SK_OK;
}

/* Split a multipart body at its boundary (RFC 2046 5.1.1); the line break
 * before each delimiter belongs to the delimiter. */
static size_t split_parts(const char *s, size_t len, const char *boundary, span *parts, size_t max)
{
    size_t blen = strlen(boundary), pos = 0, n = 0, line_start;
    const char *part = NULL;
    span line;
    while (line_start = pos, next_line(s, len, &pos, &line)) {
        if (line.n < 2 + blen || line.p[0] != '-' || line.p[1] != '-' ||
            memcmp(line.p + 2, boundary, blen) != 0)
            continue;
        span rest = trim((span){line.p + 2 + blen, line.n - 2 - blen});
        int close = rest.n == 2 && rest.p[0] == '-' && rest.p[1] == '-';
        if (rest.n && !close) continue;
        if (part && n < max) {
            size_t end = line_start;
            if (end > (size_t)(part - s) && s[end - 1] == '\n') end--;
            if (end > (size_t)(part - s) && s[end - 1] == '\r') end--;
            parts[n++] = (span){part, end - (size_t)(part - s)};
        }
        if (close) return n;
        part = s + pos;
    }
    /* No closing delimiter: keep the last part (truncated reports exist). */
    if (part && n < max && (size_t)(part - s) < len)
        parts[n++] = (span){part, len - (size_t)(part - s)};
    return n;
}

/* Undo Content-Transfer-Encoding (RFC 2045 6); unknown ones are kept. */
static sk_err decode_body(const fields *h, span body, sk_buf *out)
{
    const char *cte = fields_get(h, "Content-Transfer-Encoding");
    char enc[32];
    media_type(cte ? cte : "7bit", enc, sizeof enc);
    if (strcmp(enc, "base64") == 0) {
        sk_buf clean = SK_BUF_INIT(body.n);
        sk_err e = SK_OK;
        for (size_t i = 0; i < body.n && !e; i++)
            if (!isspace((unsigned char)body.p[i])) e = sk_buf_putc(&clean, body.p[i]);
        if (!e) e = sk_base64_decode(out, sk_buf_cstr(&clean), clean.len);
        sk_buf_free(&clean);
        if (e != SK_ERR_SYNTAX) return e;
        sk_buf_reset(out); /* not base64 after all: take it as it is */
    } else if (strcmp(enc, "quoted-printable") == 0) {
        sk_err e = SK_OK;
        for (size_t i = 0; i < body.n && !e; i++) {
            char c = body.p[i];
            if (c == '=' && i + 1 < body.n && (body.p[i + 1] == '\r' || body.p[i + 1] == '\n')) {
                i++; /* soft line break */
                if (body.p[i] == '\r' && i + 1 < body.n && body.p[i + 1] == '\n') i++;
                continue;
            }
            if (c == '=' && i + 2 < body.n && sk_hex_value(body.p[i + 1]) >= 0 &&
                sk_hex_value(body.p[i + 2]) >= 0) {
                c = (char)(sk_hex_value(body.p[i + 1]) * 16 + sk_hex_value(body.p[i + 2]));
                i += 2;
            }
            e = sk_buf_putc(out, c);
        }
        return e;
    }
    return sk_buf_append(out, body.p, body.n);
}

/* "rfc822; <a@b>" -> "a@b"; "smtp; 550 ..." -> "550 ...": the type is a
 * short atom before ';' (RFC 3464 2.1.2); text without one is kept. */
static char *typed_value(const char *v)
{
    if (!v) return NULL;
    const char *semi = strchr(v, ';');
    if (semi && semi - v <= 20) {
        const char *q = v;
        while (q < semi && (isalnum((unsigned char)*q) || *q == '-' || *q == ' ')) q++;
        span atom = trim((span){v, (size_t)(semi - v)});
        int spaced = memchr(atom.p, ' ', atom.n) != NULL;
        if (q == semi && atom.n && !spaced) v = semi + 1;
    }
    span s = trim((span){v, strlen(v)});
    if (s.n >= 2 && s.p[0] == '<' && s.p[s.n - 1] == '>') s.p++, s.n -= 2;
    return sk_strndup(s.p, s.n);
}

/* An address field's value without its type; one of the RFC 6533 3
 * "utf-8" type decoded to UTF-8 (either form, and raw UTF-8 as in
 * message/global-delivery-status). One that does not decode is kept as
 * written: reports from others are read tolerantly. */
static char *address_value(const char *v)
{
    char *s = typed_value(v);
    if (!s) return NULL;
    while (isspace((unsigned char)*v)) v++;
    /* The type first: a shorter value ends before v + 5. */
    if (strncasecmp(v, "utf-8", 5)) return s;
    const char *q = v + 5;
    while (*q == ' ' || *q == '\t') q++;
    if (*q != ';' || !*s) return s;
    /* Decoding never lengthens: an escape of 6 or more octets gives at
     * most 4. */
    size_t n = strlen(s);
    char *dec = sk_malloc(n + 1);
    if (!dec) {
        sk_free(s);
        return NULL;
    }
    if (sk_utf8_addr_decode(s, n, 1, dec, n + 1) == SK_OK) {
        sk_free(s);
        return dec;
    }
    sk_free(dec);
    return s;
}

/* "5.1.1 (bad mailbox)" -> "5.1.1". */
static char *status_value(const char *v)
{
    if (!v) return NULL;
    while (isspace((unsigned char)*v)) v++;
    size_t n = 0;
    while (isdigit((unsigned char)v[n]) || v[n] == '.') n++;
    return sk_strndup(v, n);
}

static sk_err set_str(char **dst, char *v, const char *src)
{
    if (!src) return SK_OK;
    if (!v) return SK_ERR_NOMEM;
    if (*dst) {
        sk_free(v); /* the first one wins */
        return SK_OK;
    }
    *dst = v;
    return SK_OK;
}

/* RFC 3464 2.3.3 names five actions; MTAs write others ("expired",
 * "failure", "Failed " ...). Read the meaning, not the spelling. */
static int action_value(const char *v)
{
    int a = sk_dsn_action_parse(v);
    if (a >= 0 || !v) return a;
    while (isspace((unsigned char)*v)) v++;
    static const struct {
        const char *word;
        sk_dsn_action action;
    } words[] = {
        {"fail", SK_DSN_FAILED},       {"failure", SK_DSN_FAILED}, {"expired", SK_DSN_FAILED},
        {"bounce", SK_DSN_FAILED},     {"bounced", SK_DSN_FAILED}, {"undeliverable", SK_DSN_FAILED},
        {"rejected", SK_DSN_FAILED},   {"error", SK_DSN_FAILED},   {"delay", SK_DSN_DELAYED},
        {"deferred", SK_DSN_DELAYED},  {"retry", SK_DSN_DELAYED},  {"retrying", SK_DSN_DELAYED},
        {"success", SK_DSN_DELIVERED}, {"sent", SK_DSN_DELIVERED},
    };
    size_t n = 0;
    while (isalpha((unsigned char)v[n])) n++;
    for (size_t i = 0; i < sizeof words / sizeof words[0]; i++)
        if (n == strlen(words[i].word) && strncasecmp(v, words[i].word, n) == 0)
            return (int)words[i].action;
    return -1;
}

/* "5.1.1 (user unknown)" -> "user unknown": some MTAs give the reason
 * only as a comment on the Status line. NULL when there is none. */
static char *status_comment(const char *v)
{
    const char *open = v ? strchr(v, '(') : NULL;
    const char *close = open ? strrchr(open, ')') : NULL;
    if (!close) return NULL;
    span c = trim((span){open + 1, (size_t)(close - open - 1)});
    return c.n ? sk_strndup(c.p, c.n) : NULL;
}

static sk_err add_rcpt(sk_report *r, const fields *g)
{
    if (r->nrcpts >= SK_REPORT_RCPTS_MAX) return SK_OK;
    sk_report_rcpt *n = sk_realloc(r->rcpts, (r->nrcpts + 1) * sizeof *n);
    if (!n) return SK_ERR_NOMEM;
    r->rcpts = n;
    sk_report_rcpt *rc = &r->rcpts[r->nrcpts++];
    memset(rc, 0, sizeof *rc);
    const char *fr = fields_get(g, "Final-Recipient"), *orr = fields_get(g, "Original-Recipient");
    const char *st = fields_get(g, "Status"), *dc = fields_get(g, "Diagnostic-Code");
    const char *rm = fields_get(g, "Remote-MTA");
    rc->action = action_value(fields_get(g, "Action"));
    sk_err e = set_str(&rc->final_recipient, address_value(fr), fr);
    if (!e && st && strchr(st, '(')) {
        char *c = status_comment(st);
        e = set_str(&rc->status_comment, c, c);
    }
    if (!e) e = set_str(&rc->original_recipient, address_value(orr), orr);
    if (!e) e = set_str(&rc->status, status_value(st), st);
    if (!e) e = set_str(&rc->diagnostic, typed_value(dc), dc);
    if (!e) e = set_str(&rc->remote_mta, typed_value(rm), rm);
    return e;
}

static int is_rcpt_group(const fields *g)
{
    return fields_get(g, "Final-Recipient") || fields_get(g, "Original-Recipient");
}

/* A block with a Status or Action but no recipient field: the address is
 * in the human-readable part (sk_bounce finds it there). */
static int is_status_group(const fields *g)
{
    return fields_get(g, "Status") || fields_get(g, "Action");
}

/* Per-recipient blocks written without the empty line between them: a
 * recipient field (Final- or Original-Recipient) that the block already
 * has starts the next one. Moves the fields of g into one group after
 * another. */
static sk_err add_rcpts(sk_report *r, fields *g)
{
    fields cur = {0};
    sk_err e = SK_OK;
    for (size_t i = 0; i < g->n && !e; i++) {
        const char *name = g->f[i].name;
        int is_rcpt_field =
            !strcasecmp(name, "Final-Recipient") || !strcasecmp(name, "Original-Recipient");
        if (is_rcpt_field && fields_get(&cur, name)) {
            e = add_rcpt(r, &cur);
            fields_free(&cur);
            if (e) break;
        }
        e = sk_array_grow(&cur.f, &cur.cap, cur.n + 1, sizeof *cur.f, SK_REPORT_FIELDS_MAX);
        if (e) break;
        cur.f[cur.n++] = g->f[i];
        g->f[i] = (field){0};
    }
    if (!e && cur.n) e = add_rcpt(r, &cur);
    fields_free(&cur);
    return e;
}

/* RFC 3464 2.1: per-message fields, then per-recipient groups, separated
 * by empty lines. */
static sk_err parse_status(sk_report *r, const char *s, size_t len)
{
    size_t pos = 0;
    int first = 1;
    sk_err e = SK_OK;
    while (!e && pos < len) {
        fields g = {0};
        e = parse_fields(s, len, &pos, &g);
        if (!e && g.n) {
            if (first) {
                const char *rm = fields_get(&g, "Reporting-MTA");
                const char *env = fields_get(&g, "Original-Envelope-Id");
                e = set_str(&r->reporting_mta, typed_value(rm), rm);
                if (!e) e = set_str(&r->envid, env ? sk_strdup(env) : NULL, env);
            }
            /* Some MTAs omit the empty line after the per-message fields. */
            if (!e && (!first || is_rcpt_group(&g))) e = add_rcpts(r, &g);
            /* ...or every per-recipient field but Status and Action. */
            else if (!e && first && is_status_group(&g))
                e = add_rcpt(r, &g);
            first = 0;
        }
        fields_free(&g);
    }
    r->type = SK_REPORT_DSN;
    return e;
}

/* RFC 5965 3.1: the machine-readable part of a feedback report. */
static sk_err parse_arf(sk_report *r, const char *s, size_t len)
{
    size_t pos = 0;
    fields g = {0};
    sk_err e = parse_fields(s, len, &pos, &g);
    static const struct {
        const char *name;
        size_t off;
        int addr;
    } map[] = {
        {"Feedback-Type", offsetof(sk_report, feedback_type), 0},
        {"User-Agent", offsetof(sk_report, user_agent), 0},
        {"Original-Mail-From", offsetof(sk_report, original_mail_from), 1},
        {"Original-Rcpt-To", offsetof(sk_report, original_rcpt_to), 1},
        {"Source-IP", offsetof(sk_report, source_ip), 0},
        {"Arrival-Date", offsetof(sk_report, arrival_date), 0},
        {"Received-Date", offsetof(sk_report, arrival_date), 0}, /* RFC 5965 3.1 older name */
    };
    for (size_t i = 0; !e && i < sizeof map / sizeof map[0]; i++) {
        const char *v = fields_get(&g, map[i].name);
        char **dst = (char **)((char *)r + map[i].off);
        e = set_str(dst, map[i].addr ? address_value(v) : (v ? sk_strdup(v) : NULL), v);
    }
    fields_free(&g);
    if (!e && !r->feedback_type) return SK_ERR_SYNTAX; /* RFC 5965 3.1: required */
    r->type = SK_REPORT_ARF;
    return e;
}

static sk_err original_id(sk_report *r, const char *s, size_t len)
{
    if (r->original_message_id) return SK_OK;
    size_t pos = 0;
    fields h = {0};
    sk_err e = parse_fields(s, len, &pos, &h);
    const char *mid = fields_get(&h, "Message-ID");
    if (!e) e = set_str(&r->original_message_id, mid ? sk_strdup(mid) : NULL, mid);
    fields_free(&h);
    return e;
}

typedef struct walk_state {
    sk_report *r;
    int saw_report;   /* a multipart/report was found */
    int other_report; /* a multipart/report of another report-type */
} walk_state;

static sk_err walk(walk_state *w, const char *s, size_t len, int depth);

static int is_status_type(const char *type)
{
    return strcmp(type, "message/delivery-status") == 0 ||
           strcmp(type, "message/global-delivery-status") == 0; /* RFC 6533 */
}

static sk_err report_part(walk_state *w, span part)
{
    size_t pos = 0;
    fields h = {0};
    sk_buf body = SK_BUF_INIT(SK_REPORT_MAX_OCTETS);
    char type[64];
    sk_err e = parse_fields(part.p, part.n, &pos, &h);
    media_type(fields_get(&h, "Content-Type"), type, sizeof type);
    if (!e) e = decode_body(&h, (span){part.p + pos, part.n - pos}, &body);
    if (e) {
        /* nothing more to do */
    } else if (is_status_type(type)) {
        if (w->r->type == SK_REPORT_NONE) e = parse_status(w->r, body.data, body.len);
    } else if (strcmp(type, "message/feedback-report") == 0) {
        if (w->r->type == SK_REPORT_NONE) e = parse_arf(w->r, body.data, body.len);
    } else if (strcmp(type, "message/rfc822") == 0 || strcmp(type, "message/global") == 0 ||
               strcmp(type, "text/rfc822-headers") == 0 ||
               strcmp(type, "message/global-headers") == 0) {
        e = original_id(w->r, body.data, body.len);
    }
    fields_free(&h);
    sk_buf_free(&body);
    return e;
}

static sk_err walk(walk_state *w, const char *s, size_t len, int depth)
{
    if (depth > SK_REPORT_MIME_DEPTH_MAX) return SK_OK;
    size_t pos = 0;
    fields h = {0};
    sk_err e = parse_fields(s, len, &pos, &h);
    const char *ct = fields_get(&h, "Content-Type");
    char type[64];
    media_type(ct, type, sizeof type);
    char *boundary = NULL, *rtype = NULL;
    if (!e && strncmp(type, "multipart/", 10) == 0) e = media_param(ct, "boundary", &boundary);
    if (!e && strcmp(type, "multipart/report") == 0) e = media_param(ct, "report-type", &rtype);
    if (!e && boundary && boundary[0]) {
        span parts[64];
        size_t n = split_parts(s + pos, len - pos, boundary, parts, 64);
        int is_report = strcmp(type, "multipart/report") == 0;
        /* RFC 6522: a report of another type (a quota notice, say) is read
         * for what its parts say, not refused. */
        if (is_report && rtype && strcasecmp(rtype, "delivery-status") &&
            strcasecmp(rtype, "feedback-report"))
            w->other_report = 1;
        else
            w->saw_report |= is_report;
        for (size_t i = 0; i < n && !e; i++) {
            if (is_report)
                e = report_part(w, parts[i]);
            else if (w->r->type == SK_REPORT_NONE)
                e = walk(w, parts[i].p, parts[i].n, depth + 1);
        }
    } else if (!e && depth > 0 && w->r->type == SK_REPORT_NONE && is_status_type(type)) {
        /* A status part inside multipart/mixed (OpenSMTPD and several
         * gateways send reports that way). */
        w->saw_report = 1;
        e = report_part(w, (span){s, len});
    } else if (!e && depth > 0 && w->r->type == SK_REPORT_NONE &&
               (strcmp(type, "message/rfc822") == 0 || strcmp(type, "message/global") == 0)) {
        /* A bounce forwarded as an attached message. */
        sk_buf body = SK_BUF_INIT(SK_REPORT_MAX_OCTETS);
        e = decode_body(&h, (span){s + pos, len - pos}, &body);
        if (!e) e = walk(w, body.data ? body.data : "", body.len, depth + 1);
        sk_buf_free(&body);
    }
    sk_free(boundary);
    sk_free(rtype);
    fields_free(&h);
    return e;
}

sk_err sk_report_parse(const char *msg, size_t len, sk_report **out, sk_error *err)
{
    *out = NULL;
    if (!msg) return sk_error_set(err, SK_ERR_INVAL, SK_STEP_NONE, "no message");
    if (len > SK_REPORT_MAX_OCTETS)
        return sk_error_set(err, SK_ERR_TOO_LONG, SK_STEP_NONE, "report larger than %u octets",
                            (unsigned)SK_REPORT_MAX_OCTETS);
    sk_report *r = sk_calloc(1, sizeof *r);
    if (!r) return sk_error_set(err, SK_ERR_NOMEM, SK_STEP_NONE, "out of memory");
    walk_state w = {.r = r};
    sk_err e = walk(&w, msg, len, 0);
    if (!e && w.saw_report && r->type == SK_REPORT_NONE) e = SK_ERR_SYNTAX;
    if (e) {
        sk_report_free(r);
        return sk_error_set(err, e, SK_STEP_NONE,
                            e == SK_ERR_SYNTAX ? "multipart/report without a status part"
                                               : "cannot parse the report: %s",
                            sk_strerror(e));
    }
    *out = r;
    return SK_OK;
}

void sk_report_free(sk_report *r)
{
    if (!r) return;
    for (size_t i = 0; i < r->nrcpts; i++) {
        sk_report_rcpt *rc = &r->rcpts[i];
        sk_free(rc->final_recipient);
        sk_free(rc->original_recipient);
        sk_free(rc->status);
        sk_free(rc->diagnostic);
        sk_free(rc->remote_mta);
        sk_free(rc->status_comment);
    }
    sk_free(r->rcpts);
    char **strs[] = {&r->reporting_mta,      &r->envid,
                     &r->feedback_type,      &r->user_agent,
                     &r->original_mail_from, &r->original_rcpt_to,
                     &r->source_ip,          &r->arrival_date,
                     &r->original_message_id};
    for (size_t i = 0; i < sizeof strs / sizeof strs[0]; i++) sk_free(*strs[i]);
    sk_free(r);
}
