/* DKIM tag lists (RFC 6376 3.2), DKIM-Signature fields (3.5) and key
 * records (3.6.1, RFC 8463 4), parsed strictly: what does not follow the
 * grammar is refused with a reason, never guessed at (RFC 6376 6.1.1). */
#include "dkim/dkim_int.h"

#include <openssl/x509.h>

#include <string.h>
#include <strings.h>

/* VALCHAR (%x21-3A / %x3C-7E), and octets of UTF-8 (RFC 8616 allows
 * UTF-8 in tag values, e.g. the local part of i=). */
static int is_valchar(char ch)
{
    unsigned char c = (unsigned char)ch;
    return (c >= 0x21 && c <= 0x7e && c != ';') || c >= 0x80;
}

/* Skip FWS ([*WSP CRLF] 1*WSP, repeated) from i. Returns the new position,
 * or (size_t)-1 for a CR or LF that is not a fold (CRLF then WSP). */
static size_t skip_fws(const char *s, size_t n, size_t i)
{
    for (;;) {
        if (i < n && sk_is_wsp(s[i])) {
            i++;
        } else if (i < n && (s[i] == '\r' || s[i] == '\n')) {
            if (s[i] != '\r' || i + 2 >= n || s[i + 1] != '\n' || !sk_is_wsp(s[i + 2]))
                return (size_t)-1;
            i += 3;
        } else {
            return i;
        }
    }
}

sk_err dkim_tags_parse(const char *s, size_t n, dkim_tags *out, char *why, size_t whylen)
{
    out->n = 0;
    size_t i = 0;
    for (;;) {
        i = skip_fws(s, n, i);
        if (i == (size_t)-1) return sk_syntax_why(why, whylen, "a line break that is not folding");
        if (i == n) {
            if (out->n == 0) return sk_syntax_why(why, whylen, "empty tag list");
            return SK_OK; /* after a final ';' */
        }
        if (!sk_is_alpha(s[i]))
            return sk_syntax_why(why, whylen, "a tag name must start with a letter (found 0x%02x)",
                                 (unsigned char)s[i]);
        size_t name = i;
        while (i < n && (sk_is_alnum(s[i]) || s[i] == '_')) i++;
        size_t name_len = i - name;
        i = skip_fws(s, n, i);
        if (i == (size_t)-1) return sk_syntax_why(why, whylen, "a line break that is not folding");
        if (i == n || s[i] != '=')
            return sk_syntax_why(why, whylen, "tag %.*s has no '='",
                                 (int)(name_len > 32 ? 32 : name_len), s + name);
        i++;
        size_t region = i;
        i = skip_fws(s, n, i);
        if (i == (size_t)-1) return sk_syntax_why(why, whylen, "a line break that is not folding");
        size_t vstart = i, vend = i;
        while (i < n && is_valchar(s[i])) {
            while (i < n && is_valchar(s[i])) i++;
            vend = i;
            size_t j = skip_fws(s, n, i);
            if (j == (size_t)-1)
                return sk_syntax_why(why, whylen, "a line break that is not folding");
            i = j;
        }
        if (i < n && s[i] != ';')
            return sk_syntax_why(why, whylen, "tag %.*s: octet 0x%02x is not allowed in a value",
                                 (int)(name_len > 32 ? 32 : name_len), s + name,
                                 (unsigned char)s[i]);
        for (size_t k = 0; k < out->n; k++)
            if (out->tag[k].name_len == name_len && !memcmp(out->tag[k].name, s + name, name_len))
                return sk_syntax_why(why, whylen, "tag %.*s appears twice",
                                     (int)(name_len > 32 ? 32 : name_len), s + name);
        if (out->n == SK_DKIM_TAGS_MAX)
            return sk_syntax_why(why, whylen, "more than %d tags", SK_DKIM_TAGS_MAX);
        out->tag[out->n++] = (dkim_tag){.name = s + name,
                                        .name_len = name_len,
                                        .value = s + vstart,
                                        .value_len = vend - vstart,
                                        .region_start = region,
                                        .region_end = i};
        if (i == n) return SK_OK;
        i++; /* ';' */
    }
}

const dkim_tag *dkim_tags_get(const dkim_tags *t, const char *name)
{
    size_t len = strlen(name);
    for (size_t i = 0; i < t->n; i++)
        if (t->tag[i].name_len == len && !memcmp(t->tag[i].name, name, len)) return &t->tag[i];
    return NULL;
}

static int value_is(const dkim_tag *t, const char *s)
{
    return t->value_len == strlen(s) && !memcmp(t->value, s, t->value_len);
}

/* Each element of a colon-separated list (FWS allowed around the colons),
 * in turn: returns 0 at the end. *pos starts at 0. An empty element is
 * returned as such (the caller refuses it where the grammar does). */
static int next_item(const dkim_tag *t, size_t *pos, const char **item, size_t *len)
{
    const char *v = t->value;
    size_t n = t->value_len, i = *pos;
    if (i > n) return 0;
    while (i < n && (sk_is_wsp(v[i]) || v[i] == '\r' || v[i] == '\n')) i++;
    size_t start = i;
    while (i < n && v[i] != ':') i++;
    size_t end = i;
    while (end > start && (sk_is_wsp(v[end - 1]) || v[end - 1] == '\r' || v[end - 1] == '\n'))
        end--;
    *item = v + start;
    *len = end - start;
    *pos = i + 1; /* past ':' (or past the end) */
    return 1;
}

static int list_has(const dkim_tag *t, const char *word)
{
    size_t pos = 0, len;
    const char *it;
    while (next_item(t, &pos, &it, &len))
        if (len == strlen(word) && !memcmp(it, word, len)) return 1;
    return 0;
}

/* A decimal of at most maxdigits digits. */
static int parse_decimal(const dkim_tag *t, size_t maxdigits, uint64_t *out)
{
    if (t->value_len == 0 || t->value_len > maxdigits) return 0;
    uint64_t v = 0;
    for (size_t i = 0; i < t->value_len; i++) {
        if (!sk_is_digit(t->value[i])) return 0;
        unsigned d = (unsigned)(t->value[i] - '0');
        if (v > (UINT64_MAX - d) / 10) return 0;
        v = v * 10 + d;
    }
    *out = v;
    return 1;
}

int dkim_domain_valid(const char *s, size_t n)
{
    if (n == 0 || n > 253) return 0;
    size_t label = 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c == '.') {
            if (label == 0 || s[i - 1] == '-') return 0;
            label = 0;
            continue;
        }
        /* Letters, digits, hyphens; underscores too, which DNS allows and
         * some selectors use. A-labels only: a U-label is not looked up. */
        if (!sk_is_alnum(c) && c != '-' && c != '_') return 0;
        if (c == '-' && label == 0) return 0;
        if (++label > 63) return 0;
    }
    return label > 0 && s[n - 1] != '-';
}

int sk_dkim_name_valid(const char *name)
{
    return name && dkim_domain_valid(name, strlen(name));
}

int dkim_domain_within(const char *sub, size_t sn, const char *parent, size_t pn)
{
    if (sn == pn) return !strncasecmp(sub, parent, sn);
    if (sn < pn + 1) return 0;
    return sub[sn - pn - 1] == '.' && !strncasecmp(sub + sn - pn, parent, pn);
}

/* ---- DKIM-Signature ---- */

static char *arena_put(dkim_sig *s, const char *p, size_t n)
{
    if (s->mem_used + n + 1 > s->mem_cap) return NULL;
    char *d = s->mem + s->mem_used;
    memcpy(d, p, n);
    d[n] = '\0';
    s->mem_used += n + 1;
    return d;
}

/* The value without any FWS, into the arena. */
static char *arena_put_nows(dkim_sig *s, const char *p, size_t n)
{
    if (s->mem_used + n + 1 > s->mem_cap) return NULL;
    char *d = s->mem + s->mem_used, *o = d;
    for (size_t i = 0; i < n; i++)
        if (!sk_is_wsp(p[i]) && p[i] != '\r' && p[i] != '\n') *o++ = p[i];
    *o = '\0';
    s->mem_used += (size_t)(o - d) + 1;
    return d;
}

const EVP_MD *dkim_algo_md(sk_dkim_algo a)
{
    return a == SK_DKIM_RSA_SHA1 ? EVP_sha1() : EVP_sha256();
}

static sk_err decode_b64(const char *text, unsigned char *out, size_t cap, size_t *len)
{
    sk_buf b = SK_BUF_INIT(cap);
    sk_err e = sk_base64_decode(&b, text, strlen(text));
    if (e == SK_OK) {
        memcpy(out, b.data, b.len);
        *len = b.len;
    }
    sk_buf_free(&b);
    return e;
}

static int parse_canon(const char *p, size_t n, sk_dkim_canon *out)
{
    if (n == 6 && !memcmp(p, "simple", 6)) {
        *out = SK_DKIM_CANON_SIMPLE;
        return 1;
    }
    if (n == 7 && !memcmp(p, "relaxed", 7)) {
        *out = SK_DKIM_CANON_RELAXED;
        return 1;
    }
    return 0;
}

/* ftext (RFC 5322 3.6.8): printable US-ASCII except ':'. */
static int field_name_valid(const char *p, size_t n)
{
    if (n == 0) return 0;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)p[i] < 0x21 || (unsigned char)p[i] > 0x7e || p[i] == ':') return 0;
    return 1;
}

void dkim_sig_clear(dkim_sig *s)
{
    if (!s) return;
    sk_free(s->mem);
    memset(s, 0, sizeof *s);
}

sk_err dkim_sig_parse(const char *value, size_t n, dkim_sig *s, char *why, size_t whylen)
{
    return dkim_sig_parse_kind(DKIM_SIG_DKIM, value, n, s, why, whylen);
}

sk_err dkim_sig_parse_kind(dkim_sig_kind kind, const char *value, size_t n, dkim_sig *s, char *why,
                           size_t whylen)
{
    memset(s, 0, sizeof *s);
    s->hcanon = s->bcanon = SK_DKIM_CANON_SIMPLE; /* RFC 6376 3.5 c= default */
    /* RFC 8617 5.1.1: the seal is always over relaxed header fields. */
    if (kind == DKIM_SIG_AS) s->hcanon = SK_DKIM_CANON_RELAXED;
    if (n > SK_DKIM_SIGNATURE_MAX_OCTETS)
        return sk_syntax_why(why, whylen, "DKIM-Signature longer than %u octets",
                             (unsigned)SK_DKIM_SIGNATURE_MAX_OCTETS);
    s->mem_cap = 3 * n + SK_SMTP_DOMAIN_MAX_OCTETS + 64; /* strings, NULs, decoded b= */
    s->mem = sk_malloc(s->mem_cap);
    if (!s->mem) return SK_ERR_NOMEM;
    dkim_tags *tags = sk_malloc(sizeof *tags);
    if (!tags) return SK_ERR_NOMEM;
    sk_err e = dkim_tags_parse(value, n, tags, why, whylen);
    if (e) goto out;
    e = SK_ERR_SYNTAX;
    const dkim_tag *t;
    /* The properties first, so that a report can name the signature even
     * when it is refused below. */
    if ((t = dkim_tags_get(tags, "d")))
        s->domain = arena_put(s, t->value, t->value_len > 255 ? 255 : t->value_len);
    if ((t = dkim_tags_get(tags, "s")))
        s->selector = arena_put(s, t->value, t->value_len > 255 ? 255 : t->value_len);
    if ((t = dkim_tags_get(tags, "b"))) s->b64 = arena_put_nows(s, t->value, t->value_len);
    /* An i= longer than a mailbox is refused below, never cut: its domain
     * is at the end. */
    if (kind == DKIM_SIG_DKIM && (t = dkim_tags_get(tags, "i")) &&
        t->value_len <= SK_DKIM_IDENTITY_MAX_OCTETS)
        s->identity = arena_put(s, t->value, t->value_len);
    static const char *const required[][8] = {
        [DKIM_SIG_DKIM] = {"v", "a", "b", "bh", "d", "h", "s", NULL},
        [DKIM_SIG_AMS] = {"i", "a", "b", "bh", "d", "h", "s", NULL},
        [DKIM_SIG_AS] = {"i", "a", "b", "cv", "d", "s", NULL},
    };
    for (size_t k = 0; required[kind][k]; k++)
        if (!dkim_tags_get(tags, required[kind][k])) {
            sk_syntax_why(why, whylen, "required tag %s= is missing", required[kind][k]);
            goto out;
        }
    /* RFC 8617 4.1.2: an AMS has no v=, and one seen is ignored. */
    if (kind == DKIM_SIG_DKIM && !value_is(dkim_tags_get(tags, "v"), "1")) {
        sk_syntax_why(why, whylen, "incompatible version (v= is not 1)");
        goto out;
    }
    if (kind != DKIM_SIG_DKIM) {
        /* RFC 8617 4.2.1: i-value = 1*2DIGIT, from 1 to 50. */
        uint64_t inst = 0;
        if (!parse_decimal(dkim_tags_get(tags, "i"), 2, &inst) || inst < 1 ||
            inst > SK_ARC_INSTANCE_MAX) {
            sk_syntax_why(why, whylen, "i= is not an instance from 1 to %d", SK_ARC_INSTANCE_MAX);
            goto out;
        }
        s->instance = (unsigned)inst;
    }
    if (kind == DKIM_SIG_AS) {
        t = dkim_tags_get(tags, "cv");
        if (!value_is(t, "none") && !value_is(t, "pass") && !value_is(t, "fail")) {
            sk_syntax_why(why, whylen, "cv= is not none, pass or fail");
            goto out;
        }
        s->cv = arena_put(s, t->value, t->value_len);
        /* RFC 8617 4.1.3: the seal names no header fields; it covers the
         * ARC sets. */
        if (dkim_tags_get(tags, "h")) {
            sk_syntax_why(why, whylen, "h= is not allowed in an ARC-Seal");
            goto out;
        }
    }
    t = dkim_tags_get(tags, "a");
    if (value_is(t, "rsa-sha256"))
        s->algo = SK_DKIM_RSA_SHA256;
    else if (value_is(t, "ed25519-sha256"))
        s->algo = SK_DKIM_ED25519_SHA256;
    else if (value_is(t, "rsa-sha1"))
        s->algo = SK_DKIM_RSA_SHA1;
    else {
        sk_syntax_why(why, whylen, "unknown algorithm a=%.*s",
                      (int)(t->value_len > 32 ? 32 : t->value_len), t->value);
        goto out;
    }
    if (kind != DKIM_SIG_AS && (t = dkim_tags_get(tags, "c"))) {
        const char *slash = memchr(t->value, '/', t->value_len);
        size_t hl = slash ? (size_t)(slash - t->value) : t->value_len;
        if (!parse_canon(t->value, hl, &s->hcanon) ||
            (slash && !parse_canon(slash + 1, t->value_len - hl - 1, &s->bcanon))) {
            sk_syntax_why(why, whylen, "unknown canonicalization c=%.*s",
                          (int)(t->value_len > 32 ? 32 : t->value_len), t->value);
            goto out;
        }
    }
    if (!s->domain || !dkim_domain_valid(s->domain, strlen(s->domain))) {
        sk_syntax_why(why, whylen, "d= is not a domain name");
        goto out;
    }
    if (!s->selector || !dkim_domain_valid(s->selector, strlen(s->selector))) {
        sk_syntax_why(why, whylen, "s= is not a selector (dot-separated labels)");
        goto out;
    }
    if (kind == DKIM_SIG_DKIM && dkim_tags_get(tags, "i") && !s->identity) {
        sk_syntax_why(why, whylen, "i= is longer than %d octets", SK_DKIM_IDENTITY_MAX_OCTETS);
        goto out;
    }
    if (s->identity) {
        const char *at = strrchr(s->identity, '@');
        if (!at || !dkim_domain_valid(at + 1, strlen(at + 1))) {
            sk_syntax_why(why, whylen, "i= is not [local-part]@domain");
            goto out;
        }
        /* RFC 6376 6.1.1: d= is the same as or a parent of i='s domain. */
        if (!dkim_domain_within(at + 1, strlen(at + 1), s->domain, strlen(s->domain))) {
            sk_syntax_why(why, whylen, "i= domain %s is not %s or below it", at + 1, s->domain);
            goto out;
        }
    } else if (kind == DKIM_SIG_DKIM) {
        size_t dl = strlen(s->domain);
        char tmp[SK_SMTP_DOMAIN_MAX_OCTETS + 2];
        tmp[0] = '@';
        memcpy(tmp + 1, s->domain, dl);
        s->identity = arena_put(s, tmp, dl + 1);
    }
    /* h=: field names, From among them (RFC 6376 6.1.1); for an AMS never
     * ARC-Seal (RFC 8617 4.1.2). */
    t = dkim_tags_get(tags, "h");
    if (kind != DKIM_SIG_AS) {
        size_t pos = 0, len;
        const char *it;
        int from = 0;
        while (next_item(t, &pos, &it, &len)) {
            if (!field_name_valid(it, len)) {
                sk_syntax_why(why, whylen, "h= holds something that is not a field name");
                goto out;
            }
            if (s->nh == SK_DKIM_SIGNED_HEADERS_MAX) {
                sk_syntax_why(why, whylen, "h= names more than %d fields",
                              SK_DKIM_SIGNED_HEADERS_MAX);
                goto out;
            }
            if (len == 4 && !strncasecmp(it, "from", 4)) from = 1;
            if (kind == DKIM_SIG_AMS && len == 8 && !strncasecmp(it, "arc-seal", 8)) {
                sk_syntax_why(why, whylen, "an ARC-Message-Signature must not sign ARC-Seal");
                goto out;
            }
            s->h[s->nh++] = arena_put(s, it, len);
        }
        if (!from) {
            sk_syntax_why(why, whylen, "From field not signed (h= lacks from)");
            goto out;
        }
    }
    t = dkim_tags_get(tags, "bh");
    if (kind != DKIM_SIG_AS) {
        char *text = arena_put_nows(s, t->value, t->value_len);
        size_t want = (size_t)EVP_MD_get_size(dkim_algo_md(s->algo));
        sk_err de = text ? decode_b64(text, s->bh, sizeof s->bh, &s->bh_len) : SK_ERR_NOMEM;
        if (de == SK_ERR_NOMEM) {
            e = de;
            goto out;
        }
        if (de || s->bh_len != want) {
            sk_syntax_why(why, whylen, "bh= is not a base64 %s digest",
                          s->algo == SK_DKIM_RSA_SHA1 ? "SHA-1" : "SHA-256");
            goto out;
        }
    }
    {
        sk_buf b = SK_BUF_INIT(SK_DKIM_SIGNATURE_MAX_OCTETS);
        sk_err de =
            s->b64 && *s->b64 ? sk_base64_decode(&b, s->b64, strlen(s->b64)) : SK_ERR_SYNTAX;
        if (de == SK_ERR_NOMEM) {
            sk_buf_free(&b);
            e = de;
            goto out;
        }
        if (de) {
            sk_buf_free(&b);
            sk_syntax_why(why, whylen, "b= is not base64");
            goto out;
        }
        s->b = (unsigned char *)arena_put(s, b.data, b.len);
        s->b_len = b.len;
        sk_buf_free(&b);
        if (!s->b) {
            e = SK_ERR_NOMEM;
            goto out;
        }
    }
    if (kind != DKIM_SIG_AS && (t = dkim_tags_get(tags, "l"))) {
        /* RFC 6376 3.5: 1*76DIGIT; anything past 2^64 is no real body. */
        if (!parse_decimal(t, 76, &s->l)) {
            sk_syntax_why(why, whylen, "l= is not a body length");
            goto out;
        }
        s->has_l = 1;
    }
    if ((t = dkim_tags_get(tags, "q")) && !list_has(t, "dns/txt")) {
        sk_syntax_why(why, whylen, "q= does not offer dns/txt");
        goto out;
    }
    uint64_t v;
    if ((t = dkim_tags_get(tags, "t"))) {
        if (!parse_decimal(t, 12, &v)) { /* 3.5: 1*12DIGIT */
            sk_syntax_why(why, whylen, "t= is not a time stamp");
            goto out;
        }
        s->t = (int64_t)v;
        s->has_t = 1;
    }
    if ((t = dkim_tags_get(tags, "x"))) {
        if (!parse_decimal(t, 12, &v)) {
            sk_syntax_why(why, whylen, "x= is not a time stamp");
            goto out;
        }
        s->x = (int64_t)v;
        s->has_x = 1;
    }
    /* 3.5: x= MUST be greater than t=. */
    if (s->has_t && s->has_x && s->x <= s->t) {
        sk_syntax_why(why, whylen, "x= is not later than t=");
        goto out;
    }
    e = SK_OK;
out:
    sk_free(tags);
    return e;
}

/* ---- key records ---- */

void dkim_key_record_clear(dkim_key_record *k)
{
    if (!k) return;
    EVP_PKEY_free(k->pkey);
    memset(k, 0, sizeof *k);
}

static EVP_PKEY *rsa_from_der(const unsigned char *der, size_t len)
{
    /* SubjectPublicKeyInfo (what RFC 6376 3.6.1 means and what everyone
     * publishes), or a bare RSAPublicKey (RFC 8017 A.1.1), which some
     * older tools publish. Either must take up the whole of p=. */
    const unsigned char *p = der;
    EVP_PKEY *k = d2i_PUBKEY(NULL, &p, (long)len);
    if (k && (size_t)(p - der) == len && EVP_PKEY_get_base_id(k) == EVP_PKEY_RSA) return k;
    EVP_PKEY_free(k);
    p = der;
    k = d2i_PublicKey(EVP_PKEY_RSA, NULL, &p, (long)len);
    if (k && (size_t)(p - der) == len) return k;
    EVP_PKEY_free(k);
    return NULL;
}

sk_err dkim_key_record_parse(const char *txt, size_t n, dkim_key_record *k, char *why,
                             size_t whylen)
{
    memset(k, 0, sizeof *k);
    dkim_tags *tags = sk_malloc(sizeof *tags);
    if (!tags) return SK_ERR_NOMEM;
    sk_err e = dkim_tags_parse(txt, n, tags, why, whylen);
    if (e) goto out;
    e = SK_ERR_SYNTAX;
    const dkim_tag *t;
    /* 3.6.1 v=: when present, DKIM1 and the first tag. */
    if ((t = dkim_tags_get(tags, "v"))) {
        if (t != &tags->tag[0]) {
            sk_syntax_why(why, whylen, "v= is not the first tag");
            goto out;
        }
        if (!value_is(t, "DKIM1")) {
            sk_syntax_why(why, whylen, "unknown version v=%.*s",
                          (int)(t->value_len > 16 ? 16 : t->value_len), t->value);
            goto out;
        }
    }
    k->sha1_ok = k->sha256_ok = 1;
    if ((t = dkim_tags_get(tags, "h"))) {
        k->sha1_ok = list_has(t, "sha1");
        k->sha256_ok = list_has(t, "sha256");
    }
    k->type = SK_DKIM_KEY_RSA;
    if ((t = dkim_tags_get(tags, "k"))) {
        if (value_is(t, "ed25519"))
            k->type = SK_DKIM_KEY_ED25519;
        else if (!value_is(t, "rsa")) {
            sk_syntax_why(why, whylen, "unknown key type k=%.*s",
                          (int)(t->value_len > 16 ? 16 : t->value_len), t->value);
            goto out;
        }
    }
    if ((t = dkim_tags_get(tags, "s")) && !list_has(t, "*") && !list_has(t, "email")) {
        sk_syntax_why(why, whylen, "service type s= does not include email");
        goto out;
    }
    if ((t = dkim_tags_get(tags, "t"))) {
        k->testing = list_has(t, "y");
        k->strict = list_has(t, "s");
    }
    if (!(t = dkim_tags_get(tags, "p"))) {
        sk_syntax_why(why, whylen, "required tag p= is missing");
        goto out;
    }
    /* base64 with FWS allowed inside (3.6.1). */
    sk_buf text = SK_BUF_INIT(t->value_len);
    sk_buf der = SK_BUF_INIT(t->value_len);
    for (size_t i = 0; i < t->value_len; i++) {
        char c = t->value[i];
        if (!sk_is_wsp(c) && c != '\r' && c != '\n' && sk_buf_putc(&text, c)) {
            e = SK_ERR_NOMEM;
            goto key_out;
        }
    }
    if (text.len == 0) {
        k->revoked = 1; /* 3.6.1: an empty p= means revoked */
        e = SK_OK;
        goto key_out;
    }
    sk_err de = sk_base64_decode(&der, text.data, text.len);
    if (de == SK_ERR_NOMEM) {
        e = de;
        goto key_out;
    }
    if (de) {
        sk_syntax_why(why, whylen, "p= is not base64");
        goto key_out;
    }
    if (k->type == SK_DKIM_KEY_ED25519) {
        /* RFC 8463 4: the raw 32-octet public key, not a DER structure. */
        if (der.len != 32) {
            sk_syntax_why(why, whylen, "an Ed25519 p= must be 32 octets, not %zu", der.len);
            goto key_out;
        }
        k->pkey = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL,
                                              (const unsigned char *)der.data, der.len);
        if (!k->pkey) {
            sk_syntax_why(why, whylen, "p= is not an Ed25519 public key");
            goto key_out;
        }
        k->bits = 256;
    } else {
        k->pkey = rsa_from_der((const unsigned char *)der.data, der.len);
        if (!k->pkey) {
            sk_syntax_why(why, whylen, "p= is not an RSA public key");
            goto key_out;
        }
        k->bits = (unsigned)EVP_PKEY_get_bits(k->pkey);
    }
    e = SK_OK;
key_out:
    sk_buf_free(&text);
    sk_buf_free(&der);
out:
    sk_free(tags);
    if (e) dkim_key_record_clear(k);
    return e;
}
