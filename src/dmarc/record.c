/* DMARC policy records (RFC 7489 6.3 and 6.4; np= from RFC 9091 4.1): the
 * DKIM tag-list syntax (RFC 6376 3.2) with DMARC's values. */
#include <smtpkit/dmarc.h>

#include <stdint.h>
#include <string.h>
#include <strings.h>

/* A span of the record. */
typedef struct span {
    const char *p;
    size_t n;
} span;

static span trim(const char *p, size_t n)
{
    while (n && sk_is_wsp(*p)) p++, n--;
    while (n && sk_is_wsp(p[n - 1])) n--;
    return (span){p, n};
}

static int span_is(span s, const char *word)
{
    return s.n == strlen(word) && strncasecmp(s.p, word, s.n) == 0;
}

const char *sk_dmarc_policy_name(sk_dmarc_policy p)
{
    switch (p) {
    case SK_DMARC_POLICY_NONE:
        return "none";
    case SK_DMARC_POLICY_QUARANTINE:
        return "quarantine";
    case SK_DMARC_POLICY_REJECT:
        return "reject";
    }
    return "none";
}

int sk_dmarc_is_record(const char *txt, size_t len)
{
    size_t i = 0;
    while (i < len && sk_is_wsp(txt[i])) i++;
    if (i >= len || (txt[i] != 'v' && txt[i] != 'V')) return 0;
    i++;
    while (i < len && sk_is_wsp(txt[i])) i++;
    if (i >= len || txt[i] != '=') return 0;
    i++;
    while (i < len && sk_is_wsp(txt[i])) i++;
    /* %x44 %x4d %x41 %x52 %x43 %x31: case-sensitive in the ABNF. */
    if (len - i < 6 || memcmp(txt + i, "DMARC1", 6) != 0) return 0;
    i += 6;
    return i == len || txt[i] == ';' || sk_is_wsp(txt[i]);
}

/* RFC 6376 3.2 tval-char (%x21-3A / %x3C-7E) and white space inside. */
static int value_chars_ok(span v)
{
    for (size_t i = 0; i < v.n; i++) {
        unsigned char c = (unsigned char)v.p[i];
        if (!sk_is_wsp((char)c) && (c < 0x21 || c > 0x7e || c == ';')) return 0;
    }
    return 1;
}

static int parse_policy(span v, sk_dmarc_policy *out)
{
    if (span_is(v, "none"))
        *out = SK_DMARC_POLICY_NONE;
    else if (span_is(v, "quarantine"))
        *out = SK_DMARC_POLICY_QUARANTINE;
    else if (span_is(v, "reject"))
        *out = SK_DMARC_POLICY_REJECT;
    else
        return 0;
    return 1;
}

static int parse_align(span v, sk_dmarc_align *out)
{
    if (span_is(v, "r"))
        *out = SK_DMARC_ALIGN_RELAXED;
    else if (span_is(v, "s"))
        *out = SK_DMARC_ALIGN_STRICT;
    else
        return 0;
    return 1;
}

/* 1*max_digits DIGIT with a value at most max. */
static int parse_uint(span v, size_t max_digits, uint64_t max, uint64_t *out)
{
    if (v.n == 0 || v.n > max_digits) return 0;
    uint64_t x = 0;
    for (size_t i = 0; i < v.n; i++) {
        if (!sk_is_digit(v.p[i])) return 0;
        x = x * 10 + (uint64_t)(v.p[i] - '0');
    }
    if (x > max) return 0;
    *out = x;
    return 1;
}

/* Items separated by sep with white space around it; cb gets each trimmed
 * item and returns 0 to reject it. Returns 0 when an item is empty or was
 * rejected. */
static int each_item(span v, char sep, int (*cb)(span item, void *ctx), void *ctx)
{
    int ok = 1;
    size_t i = 0;
    for (;;) {
        size_t j = i;
        while (j < v.n && v.p[j] != sep) j++;
        span item = trim(v.p + i, j - i);
        if (item.n == 0 || !cb(item, ctx)) ok = 0;
        if (j >= v.n) break;
        i = j + 1;
    }
    return ok;
}

static int fo_item(span item, void *ctx)
{
    unsigned *fo = ctx;
    if (span_is(item, "0"))
        *fo |= SK_DMARC_FO_0;
    else if (span_is(item, "1"))
        *fo |= SK_DMARC_FO_1;
    else if (span_is(item, "d"))
        *fo |= SK_DMARC_FO_D;
    else if (span_is(item, "s"))
        *fo |= SK_DMARC_FO_S;
    else
        return 0;
    return 1;
}

/* RFC 5321 Keyword (Ldh-str): letters, digits and '-', not ending in '-'. */
static int rf_item(span item, void *ctx)
{
    unsigned *rf = ctx;
    if (!sk_is_ldh_word(item.p, item.n)) return 0;
    if (span_is(item, "afrf")) *rf |= SK_DMARC_RF_AFRF;
    return 1;
}

/* RFC 3986 URI characters: unreserved, reserved and pct-encoded; '!' and
 * ',' must be encoded in a DMARC URI (6.4). */
static int uri_ok(span u)
{
    size_t i = 0;
    if (u.n == 0 || !sk_is_alpha(u.p[0])) return 0;
    while (i < u.n && (sk_is_alnum(u.p[i]) || u.p[i] == '+' || u.p[i] == '-' || u.p[i] == '.')) i++;
    if (i >= u.n || u.p[i] != ':' || i + 1 >= u.n) return 0;
    for (i++; i < u.n; i++) {
        char c = u.p[i];
        if (c == '%') {
            if (i + 2 >= u.n || sk_hex_value(u.p[i + 1]) < 0 || sk_hex_value(u.p[i + 2]) < 0)
                return 0;
            i += 2;
        } else if (!(sk_is_alnum(c) || strchr("-._~:/?#[]@$&'()*+;=", c))) {
            return 0;
        }
    }
    return 1;
}

typedef struct uri_list {
    sk_dmarc_uri *items;
    size_t *n;
    int nomem;
} uri_list;

static int uri_item(span item, void *ctx)
{
    uri_list *l = ctx;
    span u = item, size = {NULL, 0};
    const char *bang = memchr(item.p, '!', item.n);
    if (bang) {
        u = (span){item.p, (size_t)(bang - item.p)};
        size = (span){bang + 1, item.n - u.n - 1};
    }
    if (!uri_ok(u)) return 0;
    uint64_t max = 0;
    if (bang) {
        /* "!" 1*DIGIT [ "k" / "m" / "g" / "t" ]: the number fits in 64 bits,
         * and so must the product. */
        unsigned shift = 0;
        if (size.n > 0 && !sk_is_digit(size.p[size.n - 1])) {
            switch (size.p[size.n - 1]) {
            case 'k':
            case 'K':
                shift = 10;
                break;
            case 'm':
            case 'M':
                shift = 20;
                break;
            case 'g':
            case 'G':
                shift = 30;
                break;
            case 't':
            case 'T':
                shift = 40;
                break;
            default:
                return 0;
            }
            size.n--;
        }
        if (size.n == 0) return 0;
        uint64_t x = 0;
        for (size_t i = 0; i < size.n; i++) {
            if (!sk_is_digit(size.p[i])) return 0;
            uint64_t d = (uint64_t)(size.p[i] - '0');
            if (x > (UINT64_MAX - d) / 10) return 0;
            x = x * 10 + d;
        }
        if (x > (UINT64_MAX >> shift)) return 0;
        max = x << shift;
    }
    if (*l->n >= SK_DMARC_URIS_MAX) return 1; /* valid, beyond what we keep */
    char *copy = sk_strndup(u.p, u.n);
    if (!copy) {
        l->nomem = 1;
        return 1;
    }
    l->items[*l->n] = (sk_dmarc_uri){copy, max};
    (*l->n)++;
    return 1;
}

void sk_dmarc_record_clear(sk_dmarc_record *r)
{
    if (!r) return;
    for (size_t i = 0; i < r->n_rua; i++) sk_free(r->rua[i].uri);
    for (size_t i = 0; i < r->n_ruf; i++) sk_free(r->ruf[i].uri);
    memset(r, 0, sizeof *r);
}

/* The tags this parser knows; a bit each to find duplicates of them. */
static const char *const known_tags[] = {"v",  "p",  "sp", "np",  "adkim", "aspf", "pct",
                                         "ri", "fo", "rf", "rua", "ruf",   NULL};

static sk_err fail(sk_dmarc_record *out, const char **why, const char *text)
{
    sk_dmarc_record_clear(out);
    if (why) *why = text;
    return SK_ERR_SYNTAX;
}

sk_err sk_dmarc_record_parse(const char *txt, size_t len, sk_dmarc_record *out, const char **why)
{
    memset(out, 0, sizeof *out);
    if (why) *why = NULL;
    if (len > SK_DMARC_RECORD_MAX_OCTETS) {
        if (why) *why = "record too long";
        return SK_ERR_TOO_LONG;
    }
    if (!sk_dmarc_is_record(txt, len)) return fail(out, why, "not a DMARC record (v=DMARC1 first)");
    out->pct = 100;
    out->fo = SK_DMARC_FO_0;
    out->rf = SK_DMARC_RF_AFRF;
    out->ri = SK_DMARC_RI_DEFAULT_S;
    int have_p = 0, sp_bad = 0;
    unsigned seen = 0;
    /* Unknown tags seen, for duplicates among them too. */
    span unknown[32];
    size_t n_unknown = 0;
    size_t index = 0; /* of the non-empty tag-specs */
    size_t i = 0;
    for (;;) {
        size_t j = i;
        while (j < len && txt[j] != ';') j++;
        span spec = trim(txt + i, j - i);
        if (spec.n > 0) {
            /* tag-name = ALPHA *ALNUMPUNC */
            size_t k = 0;
            if (!sk_is_alpha(spec.p[0])) return fail(out, why, "malformed tag name");
            while (k < spec.n && (sk_is_alnum(spec.p[k]) || spec.p[k] == '_')) k++;
            span name = {spec.p, k};
            while (k < spec.n && sk_is_wsp(spec.p[k])) k++;
            if (k >= spec.n || spec.p[k] != '=') return fail(out, why, "a tag without '='");
            span v = trim(spec.p + k + 1, spec.n - k - 1);
            int t = -1;
            for (int x = 0; known_tags[x]; x++)
                if (span_is(name, known_tags[x])) t = x;
            if (t >= 0) {
                if (seen & (1u << t)) return fail(out, why, "a tag given twice");
                seen |= 1u << t;
            } else {
                for (size_t u = 0; u < n_unknown; u++)
                    if (unknown[u].n == name.n && !strncasecmp(unknown[u].p, name.p, name.n))
                        return fail(out, why, "a tag given twice");
                if (n_unknown < sizeof unknown / sizeof unknown[0]) unknown[n_unknown++] = name;
                out->problems |= SK_DMARC_REC_UNKNOWN_TAG;
            }
            int chars_ok = value_chars_ok(v);
            const char *tag = t >= 0 ? known_tags[t] : "";
            if (index == 0) {
                /* sk_dmarc_is_record checked v=DMARC1; it must be exact. */
                if (strcmp(tag, "v") || v.n != 6 || memcmp(v.p, "DMARC1", 6))
                    return fail(out, why, "not a DMARC record (v=DMARC1 first)");
            } else if (!strcmp(tag, "v")) {
                return fail(out, why, "a tag given twice");
            } else if (!strcmp(tag, "p")) {
                if (index != 1)
                    out->problems |= SK_DMARC_REC_P_NOT_SECOND;
                else if (chars_ok && parse_policy(v, &out->p))
                    have_p = 1;
            } else if (!strcmp(tag, "sp")) {
                if (chars_ok && parse_policy(v, &out->sp))
                    out->has_sp = 1;
                else
                    sp_bad = 1;
            } else if (!strcmp(tag, "np")) {
                if (chars_ok && parse_policy(v, &out->np))
                    out->has_np = 1;
                else
                    out->problems |= SK_DMARC_REC_NP_INVALID;
            } else if (!strcmp(tag, "adkim")) {
                if (!chars_ok || !parse_align(v, &out->adkim))
                    out->problems |= SK_DMARC_REC_ADKIM_INVALID;
            } else if (!strcmp(tag, "aspf")) {
                if (!chars_ok || !parse_align(v, &out->aspf))
                    out->problems |= SK_DMARC_REC_ASPF_INVALID;
            } else if (!strcmp(tag, "pct")) {
                uint64_t x;
                if (chars_ok && parse_uint(v, 3, 100, &x))
                    out->pct = (unsigned)x;
                else
                    out->problems |= SK_DMARC_REC_PCT_INVALID;
            } else if (!strcmp(tag, "ri")) {
                uint64_t x;
                if (chars_ok && parse_uint(v, 10, UINT32_MAX, &x))
                    out->ri = (uint32_t)x;
                else
                    out->problems |= SK_DMARC_REC_RI_INVALID;
            } else if (!strcmp(tag, "fo")) {
                unsigned fo = 0;
                if (chars_ok && each_item(v, ':', fo_item, &fo))
                    out->fo = fo;
                else
                    out->problems |= SK_DMARC_REC_FO_INVALID;
            } else if (!strcmp(tag, "rf")) {
                unsigned rf = 0;
                if (chars_ok && each_item(v, ':', rf_item, &rf))
                    out->rf = rf;
                else
                    out->problems |= SK_DMARC_REC_RF_INVALID;
            } else if (!strcmp(tag, "rua") || !strcmp(tag, "ruf")) {
                int rua = !strcmp(tag, "rua");
                uri_list l = {rua ? out->rua : out->ruf, rua ? &out->n_rua : &out->n_ruf, 0};
                int ok = chars_ok && each_item(v, ',', uri_item, &l);
                if (l.nomem) {
                    sk_dmarc_record_clear(out);
                    return SK_ERR_NOMEM;
                }
                if (!ok) out->problems |= rua ? SK_DMARC_REC_RUA_INVALID : SK_DMARC_REC_RUF_INVALID;
            }
            index++;
        }
        if (j >= len) break;
        i = j + 1;
    }
    if (!have_p || sp_bad) {
        /* RFC 7489 6.6.3: without a valid p= (or with an invalid sp=), a
         * record with a valid reporting URI is read as p=none; any other
         * gets no DMARC processing. */
        if (!have_p) out->problems |= SK_DMARC_REC_P_INVALID;
        if (sp_bad) out->problems |= SK_DMARC_REC_SP_INVALID;
        if (out->n_rua == 0)
            return fail(out, why,
                        !have_p ? (out->problems & SK_DMARC_REC_P_NOT_SECOND
                                       ? "p= is not right after v=DMARC1, and no valid rua="
                                       : "no valid p= and no valid rua=")
                                : "invalid sp= and no valid rua=");
        out->p = out->sp = out->np = SK_DMARC_POLICY_NONE;
        out->has_sp = out->has_np = 0;
    }
    if (!out->has_sp) out->sp = out->p;
    if (!out->has_np) out->np = out->sp;
    return SK_OK;
}
