/* SPF records (RFC 7208 4.5, 4.6.1, 5, 6, 7.1): selection and the parse of
 * every term, so that a syntax error anywhere is a permerror (4.6). */
#include "spf_int.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

static const char *const mech_names[SK_SPF_MECH__COUNT] = {
    [SK_SPF_ALL] = "all", [SK_SPF_INCLUDE] = "include", [SK_SPF_A] = "a",
    [SK_SPF_MX] = "mx",   [SK_SPF_PTR] = "ptr",         [SK_SPF_IP4] = "ip4",
    [SK_SPF_IP6] = "ip6", [SK_SPF_EXISTS] = "exists",
};

const char *sk_spf_mech_name(sk_spf_mech m)
{
    return (unsigned)m < SK_SPF_MECH__COUNT ? mech_names[m] : "?";
}

int sk_spf_is_record(const char *txt, size_t len)
{
    return txt && len >= 6 && !strncasecmp(txt, "v=spf1", 6) && (len == 6 || txt[6] == ' ');
}

void sk_spf_record_free(sk_spf_record *rec)
{
    if (!rec) return;
    for (size_t i = 0; i < rec->nterms; i++) {
        sk_free(rec->terms[i].domain_spec);
        sk_free(rec->terms[i].text);
    }
    sk_free(rec->terms);
    sk_free(rec->redirect);
    sk_free(rec->exp);
    sk_free(rec);
}

/* A term as messages show it: at most 80 octets, anything outside
 * printable ASCII as \xHH (records may hold any octet). */
static const char *shown(const char *s, size_t len, char *buf, size_t size)
{
    size_t n = 0;
    for (size_t i = 0; i < len && n + 5 < size && i < 80; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch >= 0x20 && ch < 0x7f && ch != '\\')
            buf[n++] = (char)ch;
        else
            n += (size_t)snprintf(buf + n, size - n, "\\x%02x", ch);
    }
    buf[n] = '\0';
    return buf;
}

/* 7.1: domain-spec = macro-string domain-end, where domain-end is a
 * macro-expand or "." toplabel ["."]. */
static int domain_spec_ok(const char *s, size_t len)
{
    size_t last = 0;
    if (!len || spf_macro_walk(s, len, SK_SPF_MACRO_DOMAIN, NULL, NULL, &last)) return 0;
    if (last == len) return 1;
    const char *tail = s + last;
    size_t n = len - last;
    if (tail[n - 1] == '.') n--;
    const char *dot = NULL;
    for (size_t i = n; i-- > 0;)
        if (tail[i] == '.') {
            dot = tail + i;
            break;
        }
    if (!dot) return 0;
    return spf_toplabel_ok(dot + 1, (size_t)(tail + n - dot - 1));
}

/* A CIDR length: decimal without leading zeros (RFC 7208 5.6: as in
 * ip4-network), at most max. -1 when not. */
static int cidr_value(const char *s, size_t len, int max)
{
    if (!len || len > 3 || (len > 1 && s[0] == '0')) return -1;
    int v = 0;
    for (size_t i = 0; i < len; i++) {
        if (!isdigit((unsigned char)s[i])) return -1;
        v = v * 10 + (s[i] - '0');
    }
    return v <= max ? v : -1;
}

/* The length of a trailing "/" 1*DIGIT in s[0..len) (0 when none), not
 * counting one preceded by another "/". */
static size_t trailing_cidr(const char *s, size_t len, int double_slash)
{
    size_t i = len;
    while (i > 0 && isdigit((unsigned char)s[i - 1])) i--;
    if (i == len || i == 0 || s[i - 1] != '/') return 0;
    i--;
    if (double_slash) {
        if (i == 0 || s[i - 1] != '/') return 0;
        i--;
    } else if (i > 0 && s[i - 1] == '/') {
        return 0;
    }
    return len - i;
}

/* 5.6: ip4-network = qnum "." qnum "." qnum "." qnum, no leading zeros. */
static int ip4_ok(const char *s, size_t len, unsigned char out[4])
{
    char buf[16];
    if (len >= sizeof buf) return 0;
    memcpy(buf, s, len);
    buf[len] = '\0';
    int parts = 0;
    for (size_t i = 0; i < len;) {
        size_t j = i;
        while (j < len && isdigit((unsigned char)buf[j])) j++;
        if (j == i || j - i > 3 || (j - i > 1 && buf[i] == '0')) return 0;
        parts++;
        if (j < len && (buf[j] != '.' || j + 1 == len)) return 0;
        i = j + 1;
    }
    return parts == 4 && inet_pton(AF_INET, buf, out) == 1;
}

static sk_err dup_term_text(sk_spf_term *t, const char *s, size_t len)
{
    t->text = sk_strndup(s, len);
    return t->text ? SK_OK : SK_ERR_NOMEM;
}

/* One mechanism: [qualifier] name [":" ...] ["/" ...]. */
static sk_err parse_mechanism(const char *s, size_t len, sk_spf_term *t, char *why, size_t wsize)
{
    char sb[128];
    const char *term = s;
    size_t tlen = len;
    t->qualifier = SK_SPF_PASS;
    if (len && s[0] && strchr("+-~?", s[0])) {
        t->qualifier = s[0] == '+'   ? SK_SPF_PASS
                       : s[0] == '-' ? SK_SPF_FAIL
                       : s[0] == '~' ? SK_SPF_SOFTFAIL
                                     : SK_SPF_NEUTRAL;
        s++;
        len--;
    }
    size_t nlen = 0;
    while (nlen < len && s[nlen] != ':' && s[nlen] != '/') nlen++;
    int m = -1;
    for (int k = 0; k < SK_SPF_MECH__COUNT; k++)
        if (strlen(mech_names[k]) == nlen && !strncasecmp(s, mech_names[k], nlen)) m = k;
    if (m < 0)
        return sk_syntax_why(why, wsize, "unknown mechanism \"%s\"",
                             shown(term, tlen, sb, sizeof sb));
    t->mech = (sk_spf_mech)m;
    t->cidr4 = 32;
    t->cidr6 = 128;
    const char *rest = s + nlen;
    size_t rlen = len - nlen;
    switch (t->mech) {
    case SK_SPF_ALL:
        if (rlen)
            return sk_syntax_why(why, wsize, "\"%s\": all takes no argument",
                                 shown(term, tlen, sb, sizeof sb));
        break;
    case SK_SPF_INCLUDE:
    case SK_SPF_EXISTS:
    case SK_SPF_PTR:
        if (!rlen && t->mech == SK_SPF_PTR) break;
        if (!rlen || rest[0] != ':' || !domain_spec_ok(rest + 1, rlen - 1))
            return sk_syntax_why(why, wsize, "\"%s\": %s needs \":\" and a valid domain-spec",
                                 shown(term, tlen, sb, sizeof sb), mech_names[m]);
        t->domain_spec = sk_strndup(rest + 1, rlen - 1);
        if (!t->domain_spec) return SK_ERR_NOMEM;
        break;
    case SK_SPF_A:
    case SK_SPF_MX: {
        /* 5.3, 5.4: [":" domain-spec] [ip4-cidr-length] ["/" ip6-cidr-length] */
        size_t c6 = trailing_cidr(rest, rlen, 1);
        if (c6) {
            t->cidr6 = cidr_value(rest + rlen - c6 + 2, c6 - 2, 128);
            if (t->cidr6 < 0)
                return sk_syntax_why(why, wsize, "\"%s\": bad IPv6 prefix length",
                                     shown(term, tlen, sb, sizeof sb));
            rlen -= c6;
        }
        size_t c4 = trailing_cidr(rest, rlen, 0);
        if (c4) {
            t->cidr4 = cidr_value(rest + rlen - c4 + 1, c4 - 1, 32);
            if (t->cidr4 < 0)
                return sk_syntax_why(why, wsize, "\"%s\": bad IPv4 prefix length",
                                     shown(term, tlen, sb, sizeof sb));
            rlen -= c4;
        }
        if (!rlen) break;
        if (rest[0] != ':' || !domain_spec_ok(rest + 1, rlen - 1))
            return sk_syntax_why(why, wsize, "\"%s\": not a valid domain-spec or prefix length",
                                 shown(term, tlen, sb, sizeof sb));
        t->domain_spec = sk_strndup(rest + 1, rlen - 1);
        if (!t->domain_spec) return SK_ERR_NOMEM;
        break;
    }
    case SK_SPF_IP4:
    case SK_SPF_IP6: {
        if (!rlen || rest[0] != ':')
            return sk_syntax_why(why, wsize, "\"%s\": %s needs \":\" and a network",
                                 shown(term, tlen, sb, sizeof sb), mech_names[m]);
        rest++;
        rlen--;
        int v4 = t->mech == SK_SPF_IP4, bits = v4 ? 32 : 128;
        const char *slash = memchr(rest, '/', rlen);
        size_t alen = slash ? (size_t)(slash - rest) : rlen;
        if (slash) {
            bits = cidr_value(slash + 1, rlen - alen - 1, v4 ? 32 : 128);
            if (bits < 0)
                return sk_syntax_why(why, wsize, "\"%s\": bad prefix length",
                                     shown(term, tlen, sb, sizeof sb));
        }
        int ok;
        if (v4) {
            ok = ip4_ok(rest, alen, t->addr);
        } else {
            char buf[INET6_ADDRSTRLEN + 1];
            ok = alen < sizeof buf;
            if (ok) {
                memcpy(buf, rest, alen);
                buf[alen] = '\0';
                ok = inet_pton(AF_INET6, buf, t->addr) == 1;
            }
        }
        if (!ok)
            return sk_syntax_why(why, wsize, "\"%s\": not an %s network",
                                 shown(term, tlen, sb, sizeof sb), v4 ? "IPv4" : "IPv6");
        if (v4)
            t->cidr4 = bits;
        else
            t->cidr6 = bits;
        break;
    }
    case SK_SPF_MECH__COUNT:
        break;
    }
    return dup_term_text(t, term, tlen);
}

/* 4.6.1: name = ALPHA *( ALPHA / DIGIT / "-" / "_" / "." ) */
static int modifier_name_ok(const char *s, size_t len)
{
    if (!len || !isalpha((unsigned char)s[0])) return 0;
    for (size_t i = 1; i < len; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (!isalnum(ch) && ch != '-' && ch != '_' && ch != '.') return 0;
    }
    return 1;
}

static sk_err parse_modifier(sk_spf_record *rec, const char *s, size_t len, size_t eq, char *why,
                             size_t wsize)
{
    char sb[128];
    const char *val = s + eq + 1;
    size_t vlen = len - eq - 1;
    if (!modifier_name_ok(s, eq))
        return sk_syntax_why(why, wsize, "\"%s\": bad modifier name", shown(s, len, sb, sizeof sb));
    int redirect = eq == 8 && !strncasecmp(s, "redirect", 8);
    int exp = eq == 3 && !strncasecmp(s, "exp", 3);
    if (redirect || exp) {
        char **slot = redirect ? &rec->redirect : &rec->exp;
        /* 6: each at most once. */
        if (*slot)
            return sk_syntax_why(why, wsize, "%s= appears twice", redirect ? "redirect" : "exp");
        if (!domain_spec_ok(val, vlen))
            return sk_syntax_why(why, wsize, "\"%s\": not a valid domain-spec",
                                 shown(s, len, sb, sizeof sb));
        *slot = sk_strndup(val, vlen);
        return *slot ? SK_OK : SK_ERR_NOMEM;
    }
    /* A-3, 6: unknown modifiers are ignored, but their value must be a
     * macro-string. */
    if (spf_macro_walk(val, vlen, SK_SPF_MACRO_EXPLAIN, NULL, NULL, NULL))
        return sk_syntax_why(why, wsize, "\"%s\": bad macro-string", shown(s, len, sb, sizeof sb));
    return SK_OK;
}

sk_err sk_spf_record_parse(const char *txt, size_t len, sk_spf_record **out, char *why,
                           size_t why_size)
{
    *out = NULL;
    if (why && why_size) why[0] = '\0';
    if (!txt || !sk_spf_is_record(txt, len))
        return sk_syntax_why(why, why_size, "not an SPF record (no \"v=spf1\")");
    sk_spf_record *rec = sk_calloc(1, sizeof *rec);
    if (!rec) return SK_ERR_NOMEM;
    sk_err e = SK_OK;
    size_t cap = 0;
    for (size_t i = 6; i < len && !e;) {
        /* 4.6.1: terms are separated by one or more SP, nothing else. */
        if (txt[i] == ' ') {
            i++;
            continue;
        }
        size_t j = i;
        while (j < len && txt[j] != ' ') j++;
        const char *s = txt + i;
        size_t n = j - i;
        i = j;
        /* 4.6.1, 7.1: every term is visible ASCII (a NUL would otherwise
         * end a name or an address early). */
        for (size_t k = 0; k < n && !e; k++)
            if ((unsigned char)s[k] < 0x21 || (unsigned char)s[k] > 0x7e) {
                char sb[128];
                e = sk_syntax_why(why, why_size, "\"%s\": a character outside printable ASCII",
                                  shown(s, n, sb, sizeof sb));
            }
        if (e) break;
        /* "=" before any ":" or "/" makes a modifier. */
        size_t k = 0;
        while (k < n && s[k] != '=' && s[k] != ':' && s[k] != '/') k++;
        if (k < n && s[k] == '=') {
            e = parse_modifier(rec, s, n, k, why, why_size);
            continue;
        }
        if (rec->nterms == SK_SPF_TERMS_MAX) {
            e = sk_syntax_why(why, why_size, "more than %d terms", SK_SPF_TERMS_MAX);
            break;
        }
        if (rec->nterms == cap) {
            size_t ncap = cap ? cap * 2 : 8;
            sk_spf_term *p = sk_realloc(rec->terms, ncap * sizeof *p);
            if (!p) {
                e = SK_ERR_NOMEM;
                break;
            }
            rec->terms = p;
            cap = ncap;
        }
        sk_spf_term *t = &rec->terms[rec->nterms];
        memset(t, 0, sizeof *t);
        rec->nterms++;
        e = parse_mechanism(s, n, t, why, why_size);
        if (!e) {
            if (t->mech == SK_SPF_ALL) rec->has_all = 1;
            if (t->mech == SK_SPF_INCLUDE || t->mech == SK_SPF_A || t->mech == SK_SPF_MX ||
                t->mech == SK_SPF_PTR || t->mech == SK_SPF_EXISTS)
                rec->lookup_terms++;
        }
    }
    if (!e && rec->redirect && !rec->has_all) rec->lookup_terms++;
    if (e) {
        sk_spf_record_free(rec);
        return e;
    }
    *out = rec;
    return SK_OK;
}
