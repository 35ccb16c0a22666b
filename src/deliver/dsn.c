/* Delivery status notifications: building multipart/report bounces (RFC
 * 3464, RFC 3461, RFC 6522), and the DSN action and NOTIFY names. */
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
