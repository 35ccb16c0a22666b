/* sk_bounce_read: the detectors in their order, then the recipient each
 * result names put back to the original envelope recipient where the
 * bounce lets us find it; sk_bounce_classify: what an outcome means. */
#include "bounce_int.h"

#include <smtpkit/queue.h>
#include <smtpkit/reply.h>

#include <stdio.h>
#include <string.h>
#include <strings.h>

/* Standard reports first (they say the most, in fields), then the
 * families whose marks are specific, then the last-resort scanner. A
 * detector runs only when every one before it found nothing. Yahoo's
 * layout is qmail's with its own words: it runs before qmail's, whose
 * marks it also has. A list manager's notice about a post comes right
 * after the standard reports: its words are specific, and it may quote a
 * bounce-like text the later detectors would misread. */
static const bn_detector detectors[] = {
    {"rfc3464", bn_rfc3464},   {"list", bn_list},         {"postfix", bn_postfix},
    {"exim", bn_exim},         {"yahoo", bn_yahoo},       {"qmail", bn_qmail},
    {"sendmail", bn_sendmail}, {"exchange", bn_exchange}, {"groupwise", bn_groupwise},
    {"domino", bn_domino},     {"courier", bn_courier},   {"gateway", bn_gateway},
    {"scan", bn_scan},
};
#define N_DETECTORS (sizeof detectors / sizeof detectors[0])

const char *const *sk_bounce_detectors(void)
{
    static const char *names[N_DETECTORS + 1];
    /* Filled from the table on every call: same values, so no race. */
    for (size_t i = 0; i < N_DETECTORS; i++) names[i] = detectors[i].name;
    names[N_DETECTORS] = NULL;
    return names;
}

void sk_bounce_free(sk_bounce *b)
{
    if (!b) return;
    for (size_t i = 0; i < b->nrcpts; i++) {
        sk_bounce_rcpt *r = &b->rcpts[i];
        sk_free(r->recipient);
        sk_free(r->reported);
        sk_free(r->status);
        sk_free(r->reply);
        sk_free(r->remote_mta);
    }
    sk_free(b->rcpts);
    sk_free(b->reporting_mta);
    sk_free(b->original_message_id);
    sk_free(b);
}

/* A VERP address of ours (SK_QUEUE_VERP_PREFIX "ID=LOCAL=DOMAIN@HOST")
 * in the header field name: the original recipient LOCAL@DOMAIN. */
static int verp_recipient(const sk_buf *top, const char *name, char *out, size_t outsize)
{
    char v[SK_SMTP_PATH_MAX_OCTETS * 2], addr[SK_SMTP_PATH_MAX_OCTETS + 1];
    if (!bn_header(top, name, v, sizeof v) || !bn_address(v, strlen(v), addr, sizeof addr))
        return 0;
    size_t plen = strlen(SK_QUEUE_VERP_PREFIX);
    if (strncasecmp(addr, SK_QUEUE_VERP_PREFIX, plen) != 0) return 0;
    const char *p = addr + plen, *at = strrchr(p, '@');
    const char *eq1 = memchr(p, '=', (size_t)(at - p));
    /* The recipient's domain follows the last '=' (a domain has none). */
    const char *eq2 = NULL;
    for (const char *q = at - 1; eq1 && q > eq1; q--)
        if (*q == '=') {
            eq2 = q;
            break;
        }
    if (!eq1 || !eq2 || eq2 == eq1 + 1 || eq2 + 1 == at) return 0;
    int n = snprintf(out, outsize, "%.*s@%.*s", (int)(eq2 - eq1 - 1), eq1 + 1, (int)(at - eq2 - 1),
                     eq2 + 1);
    return n > 0 && (size_t)n < outsize;
}

static sk_err set_recipient(sk_bounce_rcpt *r, const char *addr)
{
    if (r->recipient || !addr || !*addr) return SK_OK;
    r->recipient = sk_strdup(addr);
    return r->recipient ? SK_OK : SK_ERR_NOMEM;
}

/* The recipient of each result: an Original-Recipient the detector set
 * stays; else the VERP address the bounce came back to (when it reports
 * on one recipient), else X-Failed-Recipients for a result without an
 * address, else the address the bounce names; when nothing names one,
 * the returned message's single To unless that is a sender's or a list's
 * own address (bn_returned_to). */
static sk_err recipients(const bn_msg *m, sk_bounce *b)
{
    char verp[SK_SMTP_PATH_MAX_OCTETS + 1] = "", failed[1024] = "",
                                        addr[SK_SMTP_PATH_MAX_OCTETS + 1];
    static const char *const verp_fields[] = {"X-Original-To", "Delivered-To", "To", "Envelope-To"};
    for (size_t i = 0; i < sizeof verp_fields / sizeof verp_fields[0] && !verp[0]; i++)
        verp_recipient(&m->top, verp_fields[i], verp, sizeof verp);
    bn_header(&m->top, "X-Failed-Recipients", failed, sizeof failed);
    const char *fp = failed;
    sk_err e = SK_OK;
    for (size_t i = 0; i < b->nrcpts && !e; i++) {
        sk_bounce_rcpt *r = &b->rcpts[i];
        if (!r->reported && fp && (fp = bn_address(fp, strlen(fp), addr, sizeof addr)) != NULL) {
            r->reported = sk_strdup(addr);
            if (!r->reported) return SK_ERR_NOMEM;
        }
        if (b->nrcpts == 1 && verp[0]) e = set_recipient(r, verp);
        if (!e) e = set_recipient(r, r->reported);
    }
    if (!e && b->nrcpts == 1 && !b->rcpts[0].recipient && bn_returned_to(m, addr, sizeof addr)) {
        e = set_recipient(&b->rcpts[0], addr);
        if (!e && !b->rcpts[0].reported) {
            b->rcpts[0].reported = sk_strdup(addr);
            if (!b->rcpts[0].reported) e = SK_ERR_NOMEM;
        }
    }
    return e;
}

static sk_err read_depth(const char *msg, size_t len, sk_bounce *b, int depth)
{
    bn_msg m;
    sk_err e = bn_msg_read(msg, len, &m);
    /* A list's probe, warning or digest: read nothing, not even what it
     * attaches (the bounce of a member's address). */
    int own = !e && bn_list_own(&m);
    for (size_t i = 0; !own && i < N_DETECTORS && !e && !b->detector; i++) {
        e = detectors[i].fn(&m, b);
        if (!e && b->nrcpts) b->detector = detectors[i].name;
    }
    if (!e && !own && !b->detector && m.attached.len && depth < 1)
        e = read_depth(m.attached.data, m.attached.len, b, depth + 1);
    if (!e && b->detector && depth == 0) e = recipients(&m, b);
    if (!e && b->detector && !b->original_message_id) {
        char mid[SK_SMTP_PATH_MAX_OCTETS + 1];
        if (bn_header(&m.orig, "Message-ID", mid, sizeof mid)) {
            b->original_message_id = sk_strdup(mid);
            if (!b->original_message_id) e = SK_ERR_NOMEM;
        }
    }
    bn_msg_clear(&m);
    return e;
}

sk_err sk_bounce_read(const char *msg, size_t len, sk_bounce **out, sk_error *err)
{
    *out = NULL;
    if (!msg) return sk_error_set(err, SK_ERR_INVAL, SK_STEP_NONE, "no message");
    if (len > SK_REPORT_MAX_OCTETS)
        return sk_error_set(err, SK_ERR_TOO_LONG, SK_STEP_NONE, "bounce larger than %u octets",
                            (unsigned)SK_REPORT_MAX_OCTETS);
    sk_bounce *b = sk_calloc(1, sizeof *b);
    if (!b) return sk_error_set(err, SK_ERR_NOMEM, SK_STEP_NONE, "out of memory");
    sk_err e = read_depth(msg, len, b, 0);
    if (e) {
        sk_bounce_free(b);
        return sk_error_set(err, e, SK_STEP_NONE, "cannot read the bounce: %s", sk_strerror(e));
    }
    /* Nothing found: no detector named, no partial results. */
    if (!b->detector) {
        sk_bounce_free(b);
        b = sk_calloc(1, sizeof *b);
        if (!b) return sk_error_set(err, SK_ERR_NOMEM, SK_STEP_NONE, "out of memory");
    }
    *out = b;
    return SK_OK;
}

int sk_bounce_host_in_domain(const char *host, const char *domain)
{
    if (!host || !domain || !*domain) return 0;
    size_t hn = strcspn(host, "[: \t"), dn = strlen(domain);
    while (hn && host[hn - 1] == '.') hn--;
    if (hn < dn || strncasecmp(host + hn - dn, domain, dn) != 0) return 0;
    return hn == dn || host[hn - dn - 1] == '.';
}

void sk_bounce_split_reply(const char *s, int *code, char *enhanced, size_t esize,
                           const char **text)
{
    *code = 0;
    enhanced[0] = '\0';
    *text = s ? s : "";
    if (!s) return;
    while (sk_is_wsp(*s)) s++;
    if (sk_is_digit(s[0]) && sk_is_digit(s[1]) && sk_is_digit(s[2]) &&
        (s[3] == ' ' || s[3] == '-' || s[3] == '\0')) {
        *code = (s[0] - '0') * 100 + (s[1] - '0') * 10 + (s[2] - '0');
        s += s[3] ? 4 : 3;
    }
    size_t n = strcspn(s, " ");
    char st[16];
    if (n > 0 && n < esize && n < sizeof st && bn_status(s, n, st) && strlen(st) == n) {
        memcpy(enhanced, s, n);
        enhanced[n] = '\0';
        s += n;
        while (*s == ' ') s++;
    }
    *text = s;
}

sk_bounce_verdict sk_bounce_classify(const sk_bounce_rcpt *r, const sk_rules *rules)
{
    sk_bounce_verdict v = {.cls = SK_CLASS_UNDETERMINED};
    int code;
    char enhanced[16];
    const char *text;
    sk_bounce_split_reply(r->reply, &code, enhanced, sizeof enhanced, &text);
    if (!enhanced[0] && r->status) snprintf(enhanced, sizeof enhanced, "%s", r->status);
    int temp = sk_enhanced_class(enhanced) == SK_REPLY_TRANSIENT || (code >= 400 && code < 500);
    if (!code) code = temp ? 450 : 550;
    sk_rule_match m = sk_rules_match(rules, code, enhanced, text);
    if (m.matched && (m.cls != SK_CLASS_OTHER || temp)) {
        v.cls = m.cls;
        v.rule_line = m.line;
    }
    if (r->action == SK_DSN_DELAYED || r->action == SK_DSN_DELIVERED ||
        r->action == SK_DSN_RELAYED || r->action == SK_DSN_EXPANDED) {
        /* Not a failure: nothing to suppress, whatever the words. */
        if (v.cls == SK_CLASS_UNDETERMINED) v.cls = SK_CLASS_OTHER;
        return v;
    }
    /* A failure with a temporary reply: the reporting MTA gave up after
     * retries; the address itself is not known to be wrong. */
    if (temp && !sk_class_is_temporary(v.cls)) {
        v.cls = SK_CLASS_EXPIRED;
        v.rule_line = 0;
    }
    v.permanent = !temp;
    sk_class_policy p = sk_rules_class_policy(rules, v.cls);
    v.suppress = v.permanent && p.suppress && !sk_class_is_temporary(v.cls);
    v.suppress_s = v.suppress ? p.suppress_s : 0;
    v.evidence_any = p.evidence_any;
    return v;
}
