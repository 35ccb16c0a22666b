/* Server-side parsing of SMTP paths (RFC 5321 4.1.2, RFC 6531 3.3) and HELO
 * arguments. Sans I/O: strings in, structures out. */
#include <smtpkit/proto.h>

#include <arpa/inet.h>
#include <ctype.h>
#include <string.h>
#include <strings.h>

/* Length of the well-formed UTF-8 sequence at p (RFC 3629 4), 0 if
 * malformed. Overlong forms, surrogates and values past U+10FFFF fail. */
static size_t utf8_len(const unsigned char *p)
{
    unsigned c = p[0];
    if (c < 0x80) return 1;
    if (c >= 0xc2 && c <= 0xdf) return (p[1] & 0xc0) == 0x80 ? 2 : 0;
    if (c >= 0xe0 && c <= 0xef) {
        unsigned lo = c == 0xe0 ? 0xa0 : 0x80, hi = c == 0xed ? 0x9f : 0xbf;
        if (p[1] < lo || p[1] > hi || (p[2] & 0xc0) != 0x80) return 0;
        return 3;
    }
    if (c >= 0xf0 && c <= 0xf4) {
        unsigned lo = c == 0xf0 ? 0x90 : 0x80, hi = c == 0xf4 ? 0x8f : 0xbf;
        if (p[1] < lo || p[1] > hi || (p[2] & 0xc0) != 0x80 || (p[3] & 0xc0) != 0x80) return 0;
        return 4;
    }
    return 0;
}

/* RFC 5322 3.2.3 atext. */
static int is_atext(unsigned char c)
{
    return isalnum(c) || (c && strchr("!#$%&'*+-/=?^_`{|}~", c));
}

/* Dot-string (RFC 5321 4.1.2); returns the end or NULL. */
static const char *scan_dot_string(const char *s, int utf8_ok, int *utf8)
{
    const unsigned char *p = (const unsigned char *)s;
    for (;;) {
        const unsigned char *atom = p;
        for (;;) {
            if (is_atext(*p)) {
                p++;
            } else if (*p >= 0x80) {
                size_t n = utf8_len(p);
                if (!n) return NULL;
                *utf8 = 1;
                if (!utf8_ok) return NULL;
                p += n;
            } else {
                break;
            }
        }
        if (p == atom) return NULL;
        if (*p != '.') return (const char *)p;
        p++;
    }
}

/* Quoted-string (RFC 5321 4.1.2 qtextSMTP / quoted-pairSMTP). */
static const char *scan_quoted(const char *s, int utf8_ok, int *utf8)
{
    const unsigned char *p = (const unsigned char *)s + 1;
    for (;;) {
        unsigned char c = *p;
        if (c == '"') return (const char *)p + 1;
        if (c == '\\') {
            if (p[1] < 32 || p[1] > 126) return NULL;
            p += 2;
        } else if (c >= 32 && c <= 126) {
            p++;
        } else if (c >= 0x80) {
            size_t n = utf8_len(p);
            if (!n) return NULL;
            *utf8 = 1;
            if (!utf8_ok) return NULL;
            p += n;
        } else {
            return NULL;
        }
    }
}

/* Domain (RFC 5321 4.1.2; U-labels per RFC 6531 3.3): labels of
 * letters, digits and inner hyphens, at most 63 octets each. */
static const char *scan_domain(const char *s, int utf8_ok, int *utf8)
{
    const unsigned char *p = (const unsigned char *)s;
    for (;;) {
        const unsigned char *label = p;
        while (isalnum(*p) || *p == '-' || *p >= 0x80) {
            if (*p >= 0x80) {
                size_t n = utf8_len(p);
                if (!n) return NULL;
                *utf8 = 1;
                if (!utf8_ok) return NULL;
                p += n;
            } else {
                p++;
            }
        }
        if (p == label || *label == '-' || p[-1] == '-' || p - label > 63) return NULL;
        if (*p != '.') return (const char *)p;
        p++;
    }
}

/* address-literal (RFC 5321 4.1.3): IPv4, "IPv6:" address, or a
 * General-address-literal with a standardized tag. */
static const char *scan_literal(const char *s)
{
    const char *close = strchr(s, ']');
    if (!close || close - s > 64) return NULL;
    char lit[72];
    size_t n = (size_t)(close - s - 1);
    memcpy(lit, s + 1, n);
    lit[n] = '\0';
    unsigned char addr[16];
    if (strncasecmp(lit, "IPv6:", 5) == 0)
        return inet_pton(AF_INET6, lit + 5, addr) == 1 ? close + 1 : NULL;
    if (inet_pton(AF_INET, lit, addr) == 1) return close + 1;
    /* General-address-literal: Ldh-str ":" 1*dcontent. */
    const char *colon = strchr(lit, ':');
    if (!colon || colon == lit || !colon[1]) return NULL;
    for (const char *p = lit; p < colon; p++)
        if (!isalnum((unsigned char)*p) && *p != '-') return NULL;
    for (const char *p = colon + 1; *p; p++) {
        unsigned char c = (unsigned char)*p;
        if (c < 33 || c > 126 || c == '[' || c == '\\' || c == ']') return NULL;
    }
    return close + 1;
}

sk_err sk_path_parse(const char *s, unsigned flags, sk_path *out, const char **end)
{
    memset(out, 0, sizeof *out);
    int utf8_ok = (flags & SK_PATH_UTF8_OK) != 0;
    int utf8 = 0;
    if (*s != '<') return SK_ERR_SYNTAX;
    const char *p = s + 1;
    if (*p == '>') {
        if (!(flags & SK_PATH_NULL_OK)) return SK_ERR_SYNTAX;
        *end = p + 1;
        return SK_OK;
    }
    /* A-d-l: "@dom,@dom:" is obsolete; RFC 5321 C says to accept and
     * ignore it. */
    if (*p == '@') {
        /* The route is dropped, so its octets do not make the path UTF-8. */
        int route_utf8 = 0;
        for (;;) {
            const char *d = scan_domain(p + 1, 1, &route_utf8);
            if (!d) return SK_ERR_SYNTAX;
            p = d;
            if (*p == ',' && p[1] == '@') {
                p++;
                continue;
            }
            if (*p != ':') return SK_ERR_SYNTAX;
            p++;
            break;
        }
    }
    const char *local = p;
    const char *le =
        *p == '"' ? scan_quoted(p, utf8_ok, &utf8) : scan_dot_string(p, utf8_ok, &utf8);
    if (!le) return utf8 && !utf8_ok ? SK_ERR_UNSUPPORTED : SK_ERR_SYNTAX;
    size_t local_len = (size_t)(le - local);
    if (*le == '>' && (flags & SK_PATH_POSTMASTER_OK) && local_len == 10 &&
        strncasecmp(local, "postmaster", 10) == 0) {
        memcpy(out->local, local, 10);
        memcpy(out->mailbox, local, 10);
        *end = le + 1;
        return SK_OK;
    }
    if (*le != '@') return SK_ERR_SYNTAX;
    const char *dom = le + 1;
    const char *de = *dom == '[' ? scan_literal(dom) : scan_domain(dom, utf8_ok, &utf8);
    if (!de) return utf8 && !utf8_ok ? SK_ERR_UNSUPPORTED : SK_ERR_SYNTAX;
    if (*de != '>') return SK_ERR_SYNTAX;
    size_t dom_len = (size_t)(de - dom);
    /* RFC 5321 4.5.3.1.1-3. */
    if (local_len > SK_SMTP_LOCAL_PART_MAX_OCTETS || dom_len > SK_SMTP_DOMAIN_MAX_OCTETS ||
        local_len + 1 + dom_len > SK_SMTP_PATH_MAX_OCTETS - 2)
        return SK_ERR_TOO_LONG;
    memcpy(out->local, local, local_len);
    memcpy(out->domain, dom, dom_len);
    memcpy(out->mailbox, local, local_len + 1 + dom_len);
    out->utf8 = utf8;
    *end = de + 1;
    return SK_OK;
}

int sk_proto_helo_valid(const char *s)
{
    int utf8 = 0;
    const char *e = *s == '[' ? scan_literal(s) : scan_domain(s, 1, &utf8);
    return e && *e == '\0' && strlen(s) <= SK_SMTP_DOMAIN_MAX_OCTETS;
}
