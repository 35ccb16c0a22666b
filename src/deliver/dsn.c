/* Delivery status notifications: building multipart/report bounces (RFC
 * 3464, RFC 3461, RFC 6522) and parsing DSNs and ARF reports (RFC 5965). */
#include <smtpkit/dsn.h>
#include <smtpkit/reply.h>

#include <ctype.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

static const char *const action_names[] = {
    [SK_DSN_FAILED] = "failed",   [SK_DSN_DELAYED] = "delayed",   [SK_DSN_DELIVERED] = "delivered",
    [SK_DSN_RELAYED] = "relayed", [SK_DSN_EXPANDED] = "expanded",
};
_Static_assert(sizeof action_names / sizeof action_names[0] == SK_DSN_ACTION__COUNT,
               "action_names");

const char *sk_dsn_action_name(sk_dsn_action a)
{
    return (unsigned)a < SK_DSN_ACTION__COUNT ? action_names[a] : "unknown";
}

int sk_dsn_action_parse(const char *s)
{
    if (!s) return -1;
    while (isspace((unsigned char)*s)) s++;
    size_t n = 0;
    while (isalpha((unsigned char)s[n])) n++;
    for (int i = 0; i < SK_DSN_ACTION__COUNT; i++)
        if (n == strlen(action_names[i]) && strncasecmp(s, action_names[i], n) == 0) return i;
    return -1;
}

int sk_dsn_wanted(const char *sender, unsigned notify, sk_dsn_action action)
{
    /* RFC 3461 6.2 / RFC 5321 6.1: nothing is ever sent to the null
     * sender, so DSNs cannot loop. */
    if (!sender || !sender[0]) return 0;
    if (notify & SK_DSN_NOTIFY_NEVER) return 0;
    switch (action) {
    case SK_DSN_FAILED:
        return notify == 0 || (notify & SK_DSN_NOTIFY_FAILURE);
    case SK_DSN_DELAYED:
        return (notify & SK_DSN_NOTIFY_DELAY) != 0;
    case SK_DSN_DELIVERED:
    case SK_DSN_RELAYED:
    case SK_DSN_EXPANDED:
        return (notify & SK_DSN_NOTIFY_SUCCESS) != 0;
    case SK_DSN_ACTION__COUNT:
        break;
    }
    return 0;
}

const char *sk_dsn_notify_format(unsigned notify, char buf[SK_DSN_NOTIFY_TEXT_SIZE])
{
    if (!notify) return NULL;
    /* RFC 3461 4.1: NEVER stands alone. */
    if (notify & SK_DSN_NOTIFY_NEVER) return strcpy(buf, "NEVER");
    buf[0] = '\0';
    static const struct {
        unsigned bit;
        const char *name;
    } names[] = {{SK_DSN_NOTIFY_SUCCESS, "SUCCESS"},
                 {SK_DSN_NOTIFY_FAILURE, "FAILURE"},
                 {SK_DSN_NOTIFY_DELAY, "DELAY"}};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        if (!(notify & names[i].bit)) continue;
        if (buf[0]) strcat(buf, ",");
        strcat(buf, names[i].name);
    }
    return buf[0] ? buf : NULL;
}

/* ---- building ---- */

/* Append a header field, folded at spaces near 78 columns (RFC 5322
 * 2.2.3), with any CR, LF or other control character turned into a space
 * so that peer text can never start a new field. */
static sk_err put_field(sk_buf *b, const char *name, const char *value)
{
    sk_err e = sk_buf_printf(b, "%s: ", name);
    size_t col = strlen(name) + 2;
    const char *p = value;
    while (!e && *p) {
        while (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n') p++;
        if (!*p) break;
        size_t w = 0;
        while (p[w] && p[w] != ' ' && p[w] != '\t' && p[w] != '\r' && p[w] != '\n') w++;
        if (p != value && col > 0) {
            if (col + 1 + w > SK_MIME_LINE_SOFT_OCTETS) {
                e = sk_buf_puts(b, "\r\n ");
                col = 1;
            } else {
                e = sk_buf_putc(b, ' ');
                col++;
            }
        }
        for (size_t i = 0; !e && i < w; i++) {
            unsigned char c = (unsigned char)p[i];
            e = sk_buf_putc(b, (c < 0x20 || c == 0x7f) ? ' ' : (char)c);
        }
        col += w;
        p += w;
    }
    return e ? e : sk_buf_puts(b, "\r\n");
}

static sk_err put_fieldf(sk_buf *b, const char *name, const char *fmt, ...) SK_PRINTF(3, 4);
static sk_err put_fieldf(sk_buf *b, const char *name, const char *fmt, ...)
{
    char v[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(v, sizeof v, fmt, ap);
    va_end(ap);
    return put_field(b, name, v);
}

static void rfc5322_date(int64_t t, char out[40])
{
    sk_time_rfc5322(t, out);
}

/* Append msg with every line ending made CRLF (bare LF and bare CR too). */
static sk_err put_crlf(sk_buf *b, const char *msg, size_t len)
{
    size_t start = 0;
    sk_err e = SK_OK;
    for (size_t i = 0; i < len && !e; i++) {
        if (msg[i] != '\r' && msg[i] != '\n') continue;
        e = sk_buf_append(b, msg + start, i - start);
        if (!e) e = sk_buf_puts(b, "\r\n");
        if (msg[i] == '\r' && i + 1 < len && msg[i + 1] == '\n') i++;
        start = i + 1;
    }
    if (!e && start < len) e = sk_buf_append(b, msg + start, len - start);
    if (!e && len && msg[len - 1] != '\n') e = sk_buf_puts(b, "\r\n");
    return e;
}

/* Length of the header section including the empty line that ends it. */
static size_t header_len(const char *msg, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        if (msg[i] != '\n') continue;
        if (i + 1 < len && msg[i + 1] == '\n') return i + 2;
        if (i + 2 < len && msg[i + 1] == '\r' && msg[i + 2] == '\n') return i + 3;
    }
    return len;
}

static int has_8bit(const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)p[i] >= 0x80) return 1;
    return 0;
}

static sk_err random_hex(char *out, size_t nbytes)
{
    unsigned char r[32];
    if (nbytes > sizeof r) nbytes = sizeof r;
    sk_err e = sk_random(r, nbytes);
    if (e) return e;
    sk_hex_encode(out, r, nbytes, false);
    return SK_OK;
}

/* The longest typed address we write in a field: one word, so it must
 * stay within a line (RFC 5322 2.1.1). */
#define DSN_ADDR_FIELD_MAX_OCTETS 900

/* "rfc822;a+2Bb@c" -> "rfc822; a+b@c" (RFC 3464 2.3.1: the ORCPT value
 * with its xtext decoded). The "utf-8" type is not xtext (RFC 6533 3):
 * its address goes in the 7-bit utf-8-addr-xtext form, as this
 * message/delivery-status part is 7-bit. */
static sk_err original_recipient(const char *orcpt, sk_buf *out)
{
    const char *semi = strchr(orcpt, ';');
    if (!semi || semi == orcpt) return SK_ERR_SYNTAX;
    size_t tlen = (size_t)(semi - orcpt);
    char addr[4 * SK_DSN_ORCPT_MAX_OCTETS + 1];
    int utf8 = tlen == 5 && !strncasecmp(orcpt, "utf-8", 5);
    sk_err e = utf8 ? sk_utf8_addr_decode(semi + 1, strlen(semi + 1), 1, addr, sizeof addr)
                    : sk_xtext_decode(semi + 1, addr, sizeof addr);
    if (!e) e = sk_buf_printf(out, "%.*s; ", (int)tlen, orcpt);
    if (!e) e = utf8 ? sk_utf8_addr_encode(addr, SK_UTF8_ADDR_XTEXT, out) : sk_buf_puts(out, addr);
    return e;
}

/* Final-Recipient: "rfc822; a@b", or for a non-ASCII address the RFC 6533
 * 3 "utf-8" type in its 7-bit form. */
static sk_err final_recipient(const char *address, sk_buf *out)
{
    if (!has_8bit(address, strlen(address))) return sk_buf_printf(out, "rfc822; %s", address);
    sk_err e = sk_buf_puts(out, "utf-8; ");
    if (!e) e = sk_utf8_addr_encode(address, SK_UTF8_ADDR_XTEXT, out);
    return e;
}

static sk_err put_human(sk_buf *b, const sk_dsn_opts *o, const sk_dsn_rcpt *rcpts, size_t n)
{
    sk_err e = sk_buf_printf(b, "This is the mail system at %s.\r\n\r\n", o->reporting_mta);
    static const char *const intro[] = {
        [SK_DSN_FAILED] = "Your message could not be delivered to these recipients;\r\n"
                          "the mail system has given up:",
        [SK_DSN_DELAYED] = "Your message has not been delivered to these recipients yet.\r\n"
                           "The mail system keeps trying; you need not send it again:",
        [SK_DSN_DELIVERED] = "Your message was delivered to these recipients:",
        [SK_DSN_RELAYED] = "Your message was passed on to a system that does not send\r\n"
                           "delivery reports, for these recipients:",
        [SK_DSN_EXPANDED] = "Your message was delivered to these lists or aliases:",
    };
    for (int a = 0; a < SK_DSN_ACTION__COUNT && !e; a++) {
        int first = 1;
        for (size_t i = 0; i < n && !e; i++) {
            const sk_dsn_rcpt *r = &rcpts[i];
            if ((int)r->action != a) continue;
            if (first) e = sk_buf_printf(b, "%s\r\n\r\n", intro[a]);
            first = 0;
            const char *what = sk_enhanced_describe(r->status);
            if (!e)
                e = sk_buf_printf(b, "  <%s>: %s%s%s%s\r\n", r->address, r->status,
                                  what ? " (" : "", what ? what : "", what ? ")" : "");
            if (!e && r->diagnostic) {
                char line[SK_REPLY_TEXT_MAX_OCTETS + 1];
                snprintf(line, sizeof line, "%s", r->diagnostic);
                for (char *c = line; *c; c++)
                    if ((unsigned char)*c < 0x20) *c = ' ';
                e = sk_buf_printf(b, "    %s%s said: %s\r\n", r->remote_mta ? "host " : "",
                                  r->remote_mta ? r->remote_mta : "the remote server", line);
            }
            if (!e && a == SK_DSN_DELAYED && r->retry_until) {
                char d[40];
                rfc5322_date(r->retry_until, d);
                e = sk_buf_printf(b, "    it will keep trying until %s\r\n", d);
            }
        }
        if (!first && !e) e = sk_buf_puts(b, "\r\n");
    }
    return e;
}

static sk_err put_status(sk_buf *b, const sk_dsn_opts *o, const sk_dsn_rcpt *rcpts, size_t n)
{
    char d[40];
    /* RFC 3464 2.2: per-message fields. */
    sk_err e = put_fieldf(b, "Reporting-MTA", "dns; %s", o->reporting_mta);
    if (!e && o->envid && o->envid[0]) {
        char envid[SK_DSN_ENVID_MAX_OCTETS + 1];
        e = sk_xtext_decode(o->envid, envid, sizeof envid);
        if (!e) e = put_field(b, "Original-Envelope-Id", envid);
    }
    if (!e && o->arrival) {
        rfc5322_date(o->arrival, d);
        e = put_field(b, "Arrival-Date", d);
    }
    /* RFC 3464 2.3: per-recipient groups, each after an empty line. */
    for (size_t i = 0; i < n && !e; i++) {
        const sk_dsn_rcpt *r = &rcpts[i];
        e = sk_buf_puts(b, "\r\n");
        if (!e && r->orcpt && r->orcpt[0]) {
            sk_buf orig = SK_BUF_INIT(DSN_ADDR_FIELD_MAX_OCTETS);
            e = original_recipient(r->orcpt, &orig);
            if (!e) e = put_field(b, "Original-Recipient", sk_buf_cstr(&orig));
            /* An ORCPT stored before the RFC 6533 check that does not
             * decode, or one whose 7-bit form exceeds a line: the report
             * goes without the field rather than not at all. */
            if (e == SK_ERR_SYNTAX || e == SK_ERR_TOO_LONG) e = SK_OK;
            sk_buf_free(&orig);
        }
        if (!e) {
            sk_buf fin = SK_BUF_INIT(DSN_ADDR_FIELD_MAX_OCTETS);
            e = final_recipient(r->address, &fin);
            if (!e) e = put_field(b, "Final-Recipient", sk_buf_cstr(&fin));
            sk_buf_free(&fin);
        }
        if (!e) e = put_field(b, "Action", sk_dsn_action_name(r->action));
        if (!e) e = put_field(b, "Status", r->status);
        if (!e && r->remote_mta) e = put_fieldf(b, "Remote-MTA", "dns; %s", r->remote_mta);
        if (!e && r->diagnostic)
            e = put_fieldf(b, "Diagnostic-Code", "%s; %s",
                           r->diagnostic_type ? r->diagnostic_type : "smtp", r->diagnostic);
        if (!e && r->last_attempt) {
            rfc5322_date(r->last_attempt, d);
            e = put_field(b, "Last-Attempt-Date", d);
        }
        if (!e && r->action == SK_DSN_DELAYED && r->retry_until) {
            rfc5322_date(r->retry_until, d);
            e = put_field(b, "Will-Retry-Until", d);
        }
    }
    return e;
}

static int text_ok(const char *s)
{
    if (!s || !*s) return 0;
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f) return 0;
    return 1;
}

sk_err sk_dsn_build(const sk_dsn_opts *o, const sk_dsn_rcpt *rcpts, size_t n, const char *msg,
                    size_t msg_len, sk_buf *out, sk_error *err)
{
    if (!o || !text_ok(o->reporting_mta) || !text_ok(o->sender) || !rcpts || !n || !out ||
        (!msg && msg_len))
        return sk_error_set(err, SK_ERR_INVAL, SK_STEP_COMPOSE,
                            "a DSN needs a reporting MTA, a sender and recipients");
    for (size_t i = 0; i < n; i++) {
        const char *dt = rcpts[i].diagnostic_type;
        if (dt && (!text_ok(dt) || strpbrk(dt, " ;")))
            return sk_error_set(err, SK_ERR_INVAL, SK_STEP_COMPOSE,
                                "recipient %zu: bad diagnostic type", i);
        if (!text_ok(rcpts[i].address) || !sk_enhanced_valid(rcpts[i].status, 0) ||
            (unsigned)rcpts[i].action >= SK_DSN_ACTION__COUNT)
            return sk_error_set(err, SK_ERR_INVAL, SK_STEP_COMPOSE,
                                "recipient %zu: address, status (x.y.z) and action required", i);
    }
    int64_t now = o->now ? o->now : (int64_t)time(NULL);
    size_t full_max = o->full_max_octets ? o->full_max_octets : SK_DSN_FULL_MAX_OCTETS_DEFAULT;
    size_t hlen = header_len(msg ? msg : "", msg_len);
    /* RFC 3461 4.3: RET=HDRS asks for headers only; for RET=FULL (or none)
     * a message too large to send back is returned as headers too. */
    int full = o->ret != SK_DSN_RET_HDRS && msg_len <= full_max;
    int any_failed = 0, any_delayed = 0;
    for (size_t i = 0; i < n; i++) {
        any_failed |= rcpts[i].action == SK_DSN_FAILED;
        any_delayed |= rcpts[i].action == SK_DSN_DELAYED;
    }
    char boundary[64], mid[64], date[40];
    memcpy(boundary, "=_sk", 4);
    sk_err e = random_hex(boundary + 4, 16);
    if (!e) e = random_hex(mid, 12);
    if (e) return sk_error_set(err, e, SK_STEP_COMPOSE, "no randomness for the MIME boundary");
    rfc5322_date(now, date);
    size_t start = out->len;

    e = put_fieldf(out, "From", "Mail Delivery System <MAILER-DAEMON@%s>", o->reporting_mta);
    if (!e) e = put_fieldf(out, "To", "<%s>", o->sender);
    if (!e)
        e = put_field(out, "Subject",
                      any_failed    ? "Undelivered Mail Returned to Sender"
                      : any_delayed ? "Delayed Mail (still being retried)"
                                    : "Successful Mail Delivery Report");
    if (!e) e = put_field(out, "Date", date);
    if (!e)
        e = put_fieldf(out, "Message-ID", "<%s.%lld@%s>", mid, (long long)now, o->reporting_mta);
    /* RFC 3834 5: automatic responses are marked so nothing answers them. */
    if (!e) e = put_field(out, "Auto-Submitted", "auto-replied");
    if (!e) e = put_field(out, "MIME-Version", "1.0");
    if (!e)
        e = put_fieldf(out, "Content-Type",
                       "multipart/report; report-type=delivery-status; boundary=\"%s\"", boundary);
    if (!e) e = sk_buf_puts(out, "\r\nThis is a MIME-formatted delivery status notification.\r\n");
    /* RFC 6522 3: part 1, the human-readable explanation. */
    if (!e) e = sk_buf_printf(out, "\r\n--%s\r\n", boundary);
    if (!e) e = put_field(out, "Content-Type", "text/plain; charset=utf-8");
    if (!e) e = put_field(out, "Content-Description", "Notification");
    if (!e) e = sk_buf_puts(out, "\r\n");
    if (!e) e = put_human(out, o, rcpts, n);
    /* Part 2, message/delivery-status (RFC 3464 2.1). */
    if (!e) e = sk_buf_printf(out, "\r\n--%s\r\n", boundary);
    if (!e) e = put_field(out, "Content-Type", "message/delivery-status");
    if (!e) e = put_field(out, "Content-Description", "Delivery report");
    if (!e) e = sk_buf_puts(out, "\r\n");
    if (!e) e = put_status(out, o, rcpts, n);
    /* Part 3, the message or its headers (RFC 3462 / RFC 6522 3). */
    if (!e && msg_len) {
        const char *type = full ? "message/rfc822" : "text/rfc822-headers";
        size_t plen = full ? msg_len : hlen;
        e = sk_buf_printf(out, "\r\n--%s\r\n", boundary);
        if (!e) e = put_field(out, "Content-Type", type);
        const char *what = any_failed || any_delayed ? "Undelivered message" : "Delivered message";
        if (!e) e = put_fieldf(out, "Content-Description", "%s%s", what, full ? "" : " headers");
        /* RFC 2046 5.2.1: message/rfc822 is 7bit, 8bit or binary only. */
        if (!e && has_8bit(msg, plen)) e = put_field(out, "Content-Transfer-Encoding", "8bit");
        if (!e) e = sk_buf_puts(out, "\r\n");
        if (!e) e = put_crlf(out, msg, plen);
    }
    if (!e) e = sk_buf_printf(out, "\r\n--%s--\r\n", boundary);
    if (e) {
        sk_buf_truncate(out, start);
        return sk_error_set(err, e, SK_STEP_COMPOSE, "cannot build the DSN: %s", sk_strerror(e));
    }
    return SK_OK;
}

/* ---- parsing ---- */

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
    rc->action = sk_dsn_action_parse(fields_get(g, "Action"));
    sk_err e = set_str(&rc->final_recipient, address_value(fr), fr);
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
            if (!e && (!first || is_rcpt_group(&g))) e = add_rcpt(r, &g);
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
    int saw_report; /* a multipart/report was found */
} walk_state;

static sk_err walk(walk_state *w, const char *s, size_t len, int depth);

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
    } else if (strcmp(type, "message/delivery-status") == 0 ||
               strcmp(type, "message/global-delivery-status") == 0) { /* RFC 6533 */
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
    char *boundary = NULL;
    if (!e && strncmp(type, "multipart/", 10) == 0) e = media_param(ct, "boundary", &boundary);
    if (!e && boundary && boundary[0]) {
        span parts[64];
        size_t n = split_parts(s + pos, len - pos, boundary, parts, 64);
        int is_report = strcmp(type, "multipart/report") == 0;
        w->saw_report |= is_report;
        for (size_t i = 0; i < n && !e; i++) {
            if (is_report)
                e = report_part(w, parts[i]);
            else if (w->r->type == SK_REPORT_NONE)
                e = walk(w, parts[i].p, parts[i].n, depth + 1);
        }
    }
    sk_free(boundary);
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
