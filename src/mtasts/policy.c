/* The MTA-STS policy file (RFC 8461 3.2) read by its ABNF, and the match
 * of MX host names against its mx patterns (4.1). */
#include "mtasts_int.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#define QUOTE_OCTETS 40
/* 3.2: sts-policy-max-age-value = 1*10(DIGIT). */
#define MAX_AGE_DIGITS_MAX 10

/* The fields that must appear exactly once. */
enum { SEEN_VERSION = 1, SEEN_MODE = 2, SEEN_MAX_AGE = 4 };

const char *sk_mtasts_mode_name(sk_mtasts_mode m)
{
    switch (m) {
    case SK_MTASTS_MODE_NONE:
        return "none";
    case SK_MTASTS_MODE_TESTING:
        return "testing";
    case SK_MTASTS_MODE_ENFORCE:
        return "enforce";
    }
    return "?";
}

void sk_mtasts_policy_clear(sk_mtasts_policy *p)
{
    if (!p) return;
    for (size_t i = 0; i < p->n_mx; i++) sk_free(p->mx[i]);
    sk_free(p->mx);
    memset(p, 0, sizeof *p);
}

/* Octets of one UTF-8 character at s (RFC 3629 4: no overlong forms, no
 * surrogates, nothing past U+10FFFF), 0 when there is none. */
static size_t utf8_char(const unsigned char *s, size_t n)
{
    if (n == 0) return 0;
    unsigned char c = s[0];
    size_t len;
    unsigned char lo = 0x80, hi = 0xbf;
    if (c >= 0xc2 && c <= 0xdf)
        len = 2;
    else if (c >= 0xe0 && c <= 0xef) {
        len = 3;
        if (c == 0xe0) lo = 0xa0;
        if (c == 0xed) hi = 0x9f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        len = 4;
        if (c == 0xf0) lo = 0x90;
        if (c == 0xf4) hi = 0x8f;
    } else
        return 0;
    if (n < len || s[1] < lo || s[1] > hi) return 0;
    for (size_t i = 2; i < len; i++)
        if (s[i] < 0x80 || s[i] > 0xbf) return 0;
    return len;
}

/* sts-policy-ext-value = vchar [*(%x20 / vchar) vchar], vchar = %x21-7E /
 * UTF-8 beyond ASCII. */
static int ext_value_valid(const char *v, size_t n)
{
    if (n == 0 || v[0] == ' ' || v[n - 1] == ' ') return 0;
    for (size_t i = 0; i < n;) {
        unsigned char c = (unsigned char)v[i];
        if (c >= 0x20 && c <= 0x7e) {
            i++;
            continue;
        }
        size_t k = utf8_char((const unsigned char *)v + i, n - i);
        if (!k) return 0;
        i += k;
    }
    return 1;
}

static int is_known(const char *name, size_t n, const char *want)
{
    return n == strlen(want) && !memcmp(name, want, n); /* %s"...": case-sensitive */
}

static sk_err add_mx(sk_mtasts_policy *p, const char *v, size_t n)
{
    if (p->n_mx == SK_MTASTS_MX_MAX) return SK_ERR_TOO_LONG;
    if (p->n_mx == 0 || (p->n_mx & (p->n_mx - 1)) == 0) {
        size_t cap = p->n_mx ? p->n_mx * 2 : 4;
        char **mx = sk_realloc(p->mx, cap * sizeof *mx);
        if (!mx) return SK_ERR_NOMEM;
        p->mx = mx;
    }
    char *s = sk_strndup(v, n);
    if (!s) return SK_ERR_NOMEM;
    for (size_t i = 0; i < n; i++)
        if (s[i] >= 'A' && s[i] <= 'Z') s[i] = (char)(s[i] - 'A' + 'a');
    p->mx[p->n_mx++] = s;
    return SK_OK;
}

/* One line without its end: name ":" *WSP value *WSP. */
static sk_err parse_line(sk_mtasts_policy *p, const char *l, size_t n, size_t lineno,
                         unsigned *seen, char *why, size_t why_size)
{
    char q[QUOTE_OCTETS + 4];
    if (n == 0) return sk_syntax_why(why, why_size, "line %zu: empty", lineno);
    size_t c = 0;
    while (c < n && l[c] != ':') c++;
    if (c == n)
        return sk_syntax_why(why, why_size, "line %zu: \"%s\" is not name: value", lineno,
                             mts_quote(l, n, q, QUOTE_OCTETS));
    if (!mts_ext_name_valid(l, c))
        return sk_syntax_why(why, why_size, "line %zu: \"%s\" is not a field name", lineno,
                             mts_quote(l, c, q, QUOTE_OCTETS));
    size_t vs = c + 1, ve = n;
    while (vs < n && mts_is_wsp((unsigned char)l[vs])) vs++;
    while (ve > vs && mts_is_wsp((unsigned char)l[ve - 1])) ve--;
    const char *v = l + vs;
    size_t vn = ve - vs;
    const char *shown = mts_quote(v, vn, q, QUOTE_OCTETS);
    if (is_known(l, c, "version")) {
        if (*seen & SEEN_VERSION)
            return sk_syntax_why(why, why_size, "line %zu: a second version", lineno);
        *seen |= SEEN_VERSION;
        if (vn != 5 || memcmp(v, "STSv1", 5))
            return sk_syntax_why(why, why_size, "line %zu: version \"%s\" is not STSv1", lineno,
                                 shown);
    } else if (is_known(l, c, "mode")) {
        if (*seen & SEEN_MODE)
            return sk_syntax_why(why, why_size, "line %zu: a second mode", lineno);
        *seen |= SEEN_MODE;
        if (vn == 7 && !memcmp(v, "enforce", 7))
            p->mode = SK_MTASTS_MODE_ENFORCE;
        else if (vn == 7 && !memcmp(v, "testing", 7))
            p->mode = SK_MTASTS_MODE_TESTING;
        else if (vn == 4 && !memcmp(v, "none", 4))
            p->mode = SK_MTASTS_MODE_NONE;
        else
            return sk_syntax_why(why, why_size,
                                 "line %zu: mode \"%s\" is not enforce, testing or none", lineno,
                                 shown);
    } else if (is_known(l, c, "max_age")) {
        if (*seen & SEEN_MAX_AGE)
            return sk_syntax_why(why, why_size, "line %zu: a second max_age", lineno);
        *seen |= SEEN_MAX_AGE;
        uint64_t age = 0;
        if (vn == 0 || vn > MAX_AGE_DIGITS_MAX)
            return sk_syntax_why(why, why_size, "line %zu: max_age \"%s\" is not 1 to %d digits",
                                 lineno, shown, MAX_AGE_DIGITS_MAX);
        for (size_t i = 0; i < vn; i++) {
            if (!mts_is_digit((unsigned char)v[i]))
                return sk_syntax_why(why, why_size, "line %zu: max_age \"%s\" is not a number",
                                     lineno, shown);
            age = age * 10 + (uint64_t)(v[i] - '0');
        }
        if (age > SK_MTASTS_MAX_AGE_MAX_S)
            return sk_syntax_why(why, why_size,
                                 "line %zu: max_age %llu is over %u seconds (a year, RFC 8461 3.2)",
                                 lineno, (unsigned long long)age, SK_MTASTS_MAX_AGE_MAX_S);
        p->max_age_s = (uint32_t)age;
    } else if (is_known(l, c, "mx")) {
        int wild = vn >= 2 && v[0] == '*' && v[1] == '.';
        if (!mts_domain_valid(v + (wild ? 2 : 0), vn - (wild ? 2 : 0)))
            return sk_syntax_why(
                why, why_size,
                "line %zu: mx \"%s\" is not a host name or *. and a domain (without a "
                "final dot)",
                lineno, shown);
        sk_err e = add_mx(p, v, vn);
        if (e == SK_ERR_TOO_LONG)
            return sk_syntax_why(why, why_size, "line %zu: more than %d mx patterns", lineno,
                                 SK_MTASTS_MX_MAX);
        if (e) return e;
    } else {
        if (!ext_value_valid(v, vn))
            return sk_syntax_why(why, why_size, "line %zu: the value of %s is not text", lineno,
                                 mts_quote(l, c, q, QUOTE_OCTETS));
        p->extensions++;
    }
    return SK_OK;
}

sk_err sk_mtasts_policy_parse(const char *text, size_t len, sk_mtasts_policy *out, char *why,
                              size_t why_size)
{
    memset(out, 0, sizeof *out);
    if (why && why_size) why[0] = '\0';
    if (!text || len == 0) return sk_syntax_why(why, why_size, "the policy is empty");
    unsigned seen = 0;
    size_t lineno = 0, i = 0;
    sk_err e = SK_OK;
    while (i < len && !e) {
        lineno++;
        size_t s = i;
        while (i < len && text[i] != '\n' && text[i] != '\r' && text[i] != '\0') i++;
        size_t end = i;
        if (i < len && text[i] == '\0') {
            e = sk_syntax_why(why, why_size, "line %zu: a NUL octet", lineno);
            break;
        }
        if (i < len && text[i] == '\r') {
            if (i + 1 >= len || text[i + 1] != '\n') {
                e = sk_syntax_why(why, why_size, "line %zu: a CR not followed by LF", lineno);
                break;
            }
            i++;
        }
        if (i < len) i++; /* the LF */
        e = parse_line(out, text + s, end - s, lineno, &seen, why, why_size);
    }
    if (!e) {
        if (!(seen & SEEN_VERSION))
            e = sk_syntax_why(why, why_size, "no version field (version: STSv1)");
        else if (!(seen & SEEN_MODE))
            e = sk_syntax_why(why, why_size, "no mode field (mode: enforce, testing or none)");
        else if (!(seen & SEEN_MAX_AGE))
            e = sk_syntax_why(why, why_size, "no max_age field");
        else if (out->n_mx == 0 && out->mode != SK_MTASTS_MODE_NONE)
            e = sk_syntax_why(why, why_size, "no mx field (mode %s needs at least one)",
                              sk_mtasts_mode_name(out->mode));
    }
    if (e) sk_mtasts_policy_clear(out);
    return e;
}

int sk_mtasts_mx_match(const char *pattern, const char *host)
{
    if (!pattern || !host) return 0;
    size_t hn = strlen(host);
    if (hn && host[hn - 1] == '.') hn--;
    if (hn == 0) return 0;
    if (pattern[0] == '*' && pattern[1] == '.') {
        /* 4.1: the wildcard matches exactly one leftmost label. */
        const char *dot = memchr(host, '.', hn);
        if (!dot || dot == host) return 0;
        size_t rest = hn - (size_t)(dot + 1 - host);
        return strlen(pattern + 2) == rest && !strncasecmp(dot + 1, pattern + 2, rest);
    }
    return strlen(pattern) == hn && !strncasecmp(pattern, host, hn);
}

const char *sk_mtasts_policy_match(const sk_mtasts_policy *p, const char *host)
{
    for (size_t i = 0; p && i < p->n_mx; i++)
        if (sk_mtasts_mx_match(p->mx[i], host)) return p->mx[i];
    return NULL;
}
