/* The text helpers of the bounce detectors: searching, addresses, status
 * codes and replies in free text, and adding recipients to a result. */
#include "bounce_int.h"

#include <smtpkit/message.h>

#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

const char *bn_find(const char *p, size_t n, const char *needle)
{
    size_t k = strlen(needle);
    if (!p || !k || k > n) return NULL;
    char first = sk_to_lower(needle[0]);
    for (size_t i = 0; i + k <= n; i++)
        if (sk_to_lower(p[i]) == first && strncasecmp(p + i, needle, k) == 0) return p + i;
    return NULL;
}

const char *bn_find_buf(const sk_buf *b, const char *needle)
{
    return b->data ? bn_find(b->data, b->len, needle) : NULL;
}

int bn_header(const sk_buf *block, const char *name, char *out, size_t outsize)
{
    size_t pos = 0;
    sk_header_field f;
    out[0] = '\0';
    while (block->data && sk_header_next(block->data, block->len, &pos, &f)) {
        if (!f.name_len || !sk_header_is(&f, name)) continue;
        sk_buf v = SK_BUF_INIT(outsize > 1 ? outsize - 1 : 1);
        sk_err e = sk_header_unfold(&f, &v);
        /* A value longer than out is cut: headers here are informative. */
        size_t n = v.len < outsize ? v.len : outsize - 1;
        if (v.data) memcpy(out, v.data, n);
        out[n] = '\0';
        sk_buf_free(&v);
        return e == SK_ERR_NOMEM ? 0 : 1;
    }
    return 0;
}

static int addr_char(char c)
{
    return sk_is_alnum(c) || (c && strchr(".!#$%&'*+/=?^_`{|}~-", c)) || (unsigned char)c >= 0x80;
}

/* A domain holds letters, digits, dots and hyphens (RFC 5321 4.1.2), or
 * an address literal in brackets: "a@b.example?subject=x" (a mailto:
 * link) ends at the '?'. */
static int domain_char(char c)
{
    return sk_is_alnum(c) || c == '.' || c == '-' || c == '_' || c == '[' || c == ']' || c == ':' ||
           (unsigned char)c >= 0x80;
}

const char *bn_address(const char *p, size_t n, char *out, size_t outsize)
{
    for (size_t i = 0; i < n; i++) {
        if (p[i] != '@') continue;
        size_t s = i, e = i + 1;
        while (s > 0 && addr_char(p[s - 1])) s--;
        while (e < n && domain_char(p[e])) e++;
        /* Trailing dots and colons belong to the sentence, not the domain. */
        while (e > i + 1 && (p[e - 1] == '.' || p[e - 1] == ':' || p[e - 1] == ']')) e--;
        /* "mailto:" glued to the local part (Exchange's "<mailto:a@b>"). */
        if (i - s > 7 && strncasecmp(p + s, "mailto:", 7) == 0) s += 7;
        /* An X.400 address's SMTP part (old Exchange: "dda:SMTP=a@b"). */
        if (i - s > 5 && strncasecmp(p + s, "smtp=", 5) == 0) s += 5;
        while (s < i && (p[s] == '.' || p[s] == '\'')) s++;
        if (s == i || e == i + 1 || !memchr(p + i + 1, '.', e - i - 1)) continue;
        if (e - s >= outsize || e - s > SK_SMTP_PATH_MAX_OCTETS) continue;
        memcpy(out, p + s, e - s);
        out[e - s] = '\0';
        return p + e;
    }
    return NULL;
}

int bn_status(const char *p, size_t n, char out[16])
{
    for (size_t i = 0; i + 5 <= n; i++) {
        if ((p[i] != '2' && p[i] != '4' && p[i] != '5') || p[i + 1] != '.') continue;
        if (i > 0 && (sk_is_digit(p[i - 1]) || p[i - 1] == '.')) continue;
        size_t k = i + 2, d1 = 0, d2 = 0;
        while (k < n && sk_is_digit(p[k]) && d1 < 3) k++, d1++;
        if (!d1 || k >= n || p[k] != '.') continue;
        k++;
        while (k < n && sk_is_digit(p[k]) && d2 < 3) k++, d2++;
        if (!d2 ||
            (k < n && (sk_is_digit(p[k]) || (p[k] == '.' && k + 1 < n && sk_is_digit(p[k + 1])))))
            continue;
        memcpy(out, p + i, k - i);
        out[k - i] = '\0';
        return 1;
    }
    return 0;
}

int bn_smtp_reply(const char *p, size_t n, char *out, size_t outsize)
{
    for (size_t i = 0; i + 4 <= n; i++) {
        if ((p[i] != '4' && p[i] != '5') || !sk_is_digit(p[i + 1]) || !sk_is_digit(p[i + 2]) ||
            (p[i + 3] != ' ' && p[i + 3] != '-'))
            continue;
        if (i > 0 && (sk_is_alnum(p[i - 1]) || p[i - 1] == '.' || p[i - 1] == '#')) continue;
        size_t e = i;
        while (e < n && p[e] != '\n' && p[e] != '\r') e++;
        while (e > i && (p[e - 1] == ' ' || p[e - 1] == '\t' || p[e - 1] == '\'')) e--;
        size_t k = e - i < outsize ? e - i : outsize - 1;
        memcpy(out, p + i, k);
        out[k] = '\0';
        return 1;
    }
    return 0;
}

void bn_line_of(const sk_buf *t, const char *p, const char **start, size_t *len)
{
    const char *s = p, *e = p, *end = t->data + t->len;
    while (s > t->data && s[-1] != '\n') s--;
    while (e < end && *e != '\n') e++;
    *start = s;
    *len = (size_t)(e - s);
}

int bn_next_line(const sk_buf *t, size_t *pos, const char **line, size_t *len)
{
    if (!t->data || *pos >= t->len) return 0;
    const char *p = t->data + *pos;
    const char *nl = memchr(p, '\n', t->len - *pos);
    *line = p;
    *len = nl ? (size_t)(nl - p) : t->len - *pos;
    *pos += *len + (nl ? 1 : 0);
    return 1;
}

int bn_blank(const char *line, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (!sk_is_wsp(line[i]) && line[i] != '\r') return 0;
    return 1;
}

void bn_reason(const char *p, size_t n, size_t maxlines, char *out, size_t outsize)
{
    size_t o = 0, lines = 0, i = 0;
    out[0] = '\0';
    while (i < n && lines < maxlines) {
        size_t s = i;
        while (i < n && p[i] != '\n') i++;
        size_t e = i;
        if (i < n) i++;
        while (s < e && (sk_is_wsp(p[s]) || p[s] == '\r')) s++;
        while (e > s && (sk_is_wsp(p[e - 1]) || p[e - 1] == '\r')) e--;
        if (s == e) {
            if (o) break; /* a blank line after text ends the reason */
            continue;
        }
        if (o && o + 1 < outsize) out[o++] = ' ';
        size_t k = e - s < outsize - 1 - o ? e - s : outsize - 1 - o;
        memcpy(out + o, p + s, k);
        o += k;
        out[o] = '\0';
        lines++;
    }
}

static char *dup_or_null(const char *s, int *oom)
{
    if (!s || !*s) return NULL;
    char *d = sk_strdup(s);
    if (!d) *oom = 1;
    return d;
}

sk_err bn_add(sk_bounce *b, const char *addr, int action, const char *status, const char *reply,
              const char *remote)
{
    /* What a report names may be anything: only an address is one. */
    const char *at = addr ? strrchr(addr, '@') : NULL;
    if (addr && (!at || at == addr || !at[1])) addr = NULL;
    for (size_t i = 0; addr && i < b->nrcpts; i++) {
        sk_bounce_rcpt *r = &b->rcpts[i];
        if (!r->reported || strcasecmp(r->reported, addr) != 0) continue;
        int oom = 0;
        if (!r->status) r->status = dup_or_null(status, &oom);
        if (!r->reply) r->reply = dup_or_null(reply, &oom);
        if (!r->remote_mta) r->remote_mta = dup_or_null(remote, &oom);
        if (r->action < 0) r->action = action;
        return oom ? SK_ERR_NOMEM : SK_OK;
    }
    if (b->nrcpts >= SK_REPORT_RCPTS_MAX) return SK_OK;
    sk_bounce_rcpt *n = sk_realloc(b->rcpts, (b->nrcpts + 1) * sizeof *n);
    if (!n) return SK_ERR_NOMEM;
    b->rcpts = n;
    sk_bounce_rcpt *r = &b->rcpts[b->nrcpts++];
    memset(r, 0, sizeof *r);
    int oom = 0;
    r->reported = dup_or_null(addr, &oom);
    r->action = action;
    r->status = dup_or_null(status, &oom);
    r->reply = dup_or_null(reply, &oom);
    r->remote_mta = dup_or_null(remote, &oom);
    return oom ? SK_ERR_NOMEM : SK_OK;
}

sk_err bn_set_mta(sk_bounce *b, const char *mta)
{
    if (b->reporting_mta || !mta || !*mta) return SK_OK;
    b->reporting_mta = sk_strdup(mta);
    return b->reporting_mta ? SK_OK : SK_ERR_NOMEM;
}

/* Addresses that are never the failed recipient: the daemon that wrote
 * the bounce, postmasters, the sender of the returned message, and the
 * addresses of a mailing list the message passed through (a list hands
 * the message on to its members: one of them failed, not the list). */
int bn_not_recipient(const bn_msg *m, const char *addr)
{
    static const char *const locals[] = {"mailer-daemon@", "postmaster@", "noreply@", "no-reply@",
                                         "abuse@"};
    for (size_t i = 0; i < sizeof locals / sizeof locals[0]; i++)
        if (!strncasecmp(addr, locals[i], strlen(locals[i]))) return 1;
    for (size_t i = 0; i < m->n_not_rcpt; i++)
        if (!strcasecmp(m->not_rcpt[i], addr)) return 1;
    return bn_list_address(m, addr);
}

int bn_returned_to(const bn_msg *m, char *out, size_t outsize)
{
    char to[1024], other[SK_SMTP_PATH_MAX_OCTETS + 1];
    /* A post to a list (its To or Cc names the list): its To is whom the
     * author wrote to, not the member it failed for. A sender's own list
     * headers (a newsletter's List-Unsubscribe, List-Id) do not make its
     * To a list's. */
    static const char *const fields[] = {"To", "Cc"};
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) {
        if (!bn_header(&m->orig, fields[i], to, sizeof to)) continue;
        for (const char *p = to; (p = bn_address(p, strlen(p), other, sizeof other)) != NULL;)
            if (bn_list_address(m, other)) return 0;
    }
    if (!bn_header(&m->orig, "To", to, sizeof to)) return 0;
    const char *next = bn_address(to, strlen(to), out, outsize);
    /* Several addresses: the bounce does not say which one failed. */
    if (!next || bn_address(next, strlen(next), other, sizeof other)) return 0;
    return !bn_not_recipient(m, out);
}

int bn_delayed(const bn_msg *m)
{
    static const char *const marks[] = {
        "has not yet been delivered",
        "still being retried",
        "will continue trying",
        "transient non-fatal",
        "will retry",
        "(delay)",
        "delayed mail",
        "warning: message",
        "has been delayed",
        "delivery attempts will continue",
        "will continue to attempt",
        "will be retried",
        "warning message only",
        "just a warning",
        "has been postponed",
        "will continue to try",
    };
    char subject[512];
    bn_header(&m->top, "Subject", subject, sizeof subject);
    for (size_t i = 0; i < sizeof marks / sizeof marks[0]; i++)
        if (bn_find(subject, strlen(subject), marks[i])) return 1;
    /* In the text, only near its start: a failure may quote a delay. */
    size_t n = m->text.len < 800 ? m->text.len : 800;
    for (size_t i = 0; i < sizeof marks / sizeof marks[0]; i++)
        if (bn_find(m->text.data, n, marks[i])) return 1;
    return 0;
}

/* The reason's reply, status and remote host, from free text. */
static void reason_parts(const char *reason, char *reply, size_t rsize, char status[16],
                         char *remote, size_t msize)
{
    size_t n = strlen(reason);
    if (!bn_smtp_reply(reason, n, reply, rsize)) snprintf(reply, rsize, "%s", reason);
    if (!bn_status(reason, n, status)) status[0] = '\0';
    remote[0] = '\0';
    /* "host mx.example.com[192.0.2.1] said:", "host mx.example.com [192.0.2.1]" */
    const char *h = bn_find(reason, n, "host ");
    if (h) {
        h += 5;
        size_t k = 0;
        while (h[k] && !sk_is_wsp(h[k]) && h[k] != ':' && k + 1 < msize) k++;
        if (k && memchr(h, '.', k)) {
            memcpy(remote, h, k);
            remote[k] = '\0';
        }
    }
}

/* An address line: its trimmed content starts with an address, maybe in
 * angle brackets or quotes. *after is what follows the address. */
static int address_line(const char *line, size_t len, char *addr, size_t asize, const char **after)
{
    size_t i = 0;
    while (i < len && (sk_is_wsp(line[i]) || line[i] == '<' || line[i] == '"' || line[i] == '-' ||
                       line[i] == '*' || line[i] == '\'' || line[i] == '>'))
        i++;
    if (i == len) return 0;
    /* An X.400 address with an SMTP part ("c=US;a= ;p=ORG;dda:SMTP=a@b;",
     * old Exchange): the SMTP part is the address. */
    if (len - i > 2 && !strncasecmp(line + i, "c=", 2)) {
        const char *smtp = bn_find(line + i, len - i, "smtp=");
        if (!smtp) return 0;
        i = (size_t)(smtp + 5 - line);
    }
    const char *end = bn_address(line + i, len - i, addr, asize);
    if (!end) return 0;
    /* The address must start the content: its first octet at line[i]. */
    if (strncasecmp(line + i, addr, strlen(addr)) != 0 && strncasecmp(line + i, "mailto:", 7) != 0)
        return 0;
    *after = end;
    return 1;
}

/* One block read: the address and its reason. A reason that says the
 * address was "expanded from" another (Postfix: "(expanded from
 * <alias@x>): reason", Sendmail: "(expanded from: alias@x)" on a line of
 * its own) names the envelope recipient, the alias the message was sent
 * to; the note is no part of the reply. */
static sk_err add_block(sk_bounce *b, const char *addr, const char *reason, int action)
{
    char why[SK_REPLY_TEXT_MAX_OCTETS], alias[SK_SMTP_PATH_MAX_OCTETS + 1] = "";
    snprintf(why, sizeof why, "%s", reason);
    char *x = (char *)bn_find(why, strlen(why), "expanded from");
    const char *end = x ? bn_address(x, strlen(x), alias, sizeof alias) : NULL;
    if (end) {
        /* The alias right after the words, not an address further on. */
        for (const char *c = x + strlen("expanded from"); c < end - strlen(alias); c++)
            if (!sk_is_wsp(*c) && *c != ':' && *c != '<') {
                end = NULL;
                alias[0] = '\0';
                break;
            }
    }
    if (end) {
        char *s = x > why && x[-1] == '(' ? x - 1 : x;
        const char *close = *s == '(' ? strchr(end, ')') : NULL;
        if (close) end = close + 1;
        while (*end == ':' || *end == '>' || sk_is_wsp(*end)) end++;
        memmove(s, end, strlen(end) + 1);
    }
    char reply[SK_REPLY_TEXT_MAX_OCTETS], status[16], remote[256];
    reason_parts(why, reply, sizeof reply, status, remote, sizeof remote);
    sk_err e = bn_add(b, addr, action, status, reply[0] ? reply : NULL, remote);
    for (size_t i = 0; !e && alias[0] && i < b->nrcpts; i++) {
        sk_bounce_rcpt *r = &b->rcpts[i];
        if (r->recipient || !r->reported || strcasecmp(r->reported, addr) != 0) continue;
        r->recipient = sk_strdup(alias);
        return r->recipient ? SK_OK : SK_ERR_NOMEM;
    }
    return e;
}

sk_err bn_blocks(const bn_msg *m, const char *from, const char *stop, sk_bounce *b, int action)
{
    return bn_blocks_n(m, from, stop, SIZE_MAX, b, action);
}

sk_err bn_blocks_n(const bn_msg *m, const char *from, const char *stop, size_t maxlines,
                   sk_bounce *b, int action)
{
    const sk_buf *t = &m->text;
    if (!from) return SK_OK;
    size_t pos = (size_t)(from - t->data);
    const char *line;
    size_t len;
    char addr[SK_SMTP_PATH_MAX_OCTETS + 1];
    char reason[SK_REPLY_TEXT_MAX_OCTETS] = "";
    char cur[SK_SMTP_PATH_MAX_OCTETS + 1] = "";
    size_t rlen = 0, rlines = 0;
    sk_err e = SK_OK;
    int blank_after = 0;
    size_t indent = 0; /* of the current address line */
    size_t nlines = 0;
    while (!e && nlines++ < maxlines && bn_next_line(t, &pos, &line, &len)) {
        if (stop && bn_find(line, len, stop)) break;
        const char *after;
        size_t ind = 0;
        while (ind < len && sk_is_wsp(line[ind])) ind++;
        /* A line indented deeper than its address line continues the
         * reason, even when it starts with an address (Postfix folds
         * "<a@b>: Recipient address rejected" under the address). */
        int continues = cur[0] && !blank_after && ind > indent;
        if (!continues && address_line(line, len, addr, sizeof addr, &after) &&
            !bn_not_recipient(m, addr)) {
            indent = ind;
            if (cur[0]) e = add_block(b, cur, reason, action);
            snprintf(cur, sizeof cur, "%s", addr);
            rlen = rlines = 0;
            reason[0] = '\0';
            blank_after = 0;
            /* The rest of the line: "<a@b>: reason", "a@b (reason)". */
            while (after < line + len && (*after == '>' || *after == ':' || *after == '"' ||
                                          *after == ',' || sk_is_wsp(*after)))
                after++;
            line = after;
            len = (size_t)(t->data + pos - after);
            while (len && (line[len - 1] == '\n' || line[len - 1] == '\r')) len--;
        } else if (bn_blank(line, len)) {
            if (cur[0] && rlen) blank_after = 1;
            continue;
        }
        if (!cur[0] || blank_after || rlines >= 8) continue;
        while (len && sk_is_wsp(*line)) line++, len--;
        while (len && sk_is_wsp(line[len - 1])) len--;
        /* "(reason)" after an address (GroupWise, gateways). */
        if (len >= 2 && line[0] == '(' && line[len - 1] == ')') line++, len -= 2;
        if (!len) continue;
        if (rlen && rlen + 1 < sizeof reason) reason[rlen++] = ' ';
        size_t k = len < sizeof reason - 1 - rlen ? len : sizeof reason - 1 - rlen;
        memcpy(reason + rlen, line, k);
        rlen += k;
        reason[rlen] = '\0';
        rlines++;
    }
    if (!e && cur[0]) e = add_block(b, cur, reason, action);
    return e;
}

/* The word after mark in the text ("at host X", "program at X"). */
void bn_word_after(const sk_buf *t, const char *mark, char *out, size_t outsize)
{
    out[0] = '\0';
    const char *p = bn_find_buf(t, mark);
    if (!p) return;
    p += strlen(mark);
    while (sk_is_wsp(*p)) p++;
    size_t k = 0;
    while (p + k < t->data + t->len && !sk_is_wsp(p[k]) && p[k] != '\n' && p[k] != ',' &&
           k + 1 < outsize)
        k++;
    while (k && (p[k - 1] == '.' || p[k - 1] == ':')) k--;
    memcpy(out, p, k);
    out[k] = '\0';
}
