/* The two TXT records: _mta-sts (RFC 8461 3.1) and _smtp._tls (RFC 8460
 * 3). Both are a version followed by name=value fields separated by
 * *WSP ";" *WSP, read here by one cursor with a value reader per field. */
#include "mtasts_int.h"

#include <string.h>
#include <strings.h>

#define MTASTS_VERSION "v=STSv1"
#define TLSRPT_VERSION "v=TLSRPTv1"
/* How much of an offending field a reason quotes. */
#define QUOTE_OCTETS 40

/* A field's value is read by one of these from txt[*i]; it leaves *i just
 * after the value. */
typedef sk_err (*value_fn)(void *ctx, const char *name, size_t name_len, const char *txt,
                           size_t len, size_t *i, char *why, size_t why_size);

static int begins_with_version(const char *txt, size_t len, const char *version)
{
    size_t vl = strlen(version);
    if (len < vl || memcmp(txt, version, vl)) return 0; /* %s"...": case-sensitive */
    size_t i = vl;
    while (i < len && mts_is_wsp((unsigned char)txt[i])) i++;
    return i < len && txt[i] == ';';
}

int sk_mtasts_is_record(const char *txt, size_t len)
{
    return txt && begins_with_version(txt, len, MTASTS_VERSION);
}

int sk_tlsrpt_is_record(const char *txt, size_t len)
{
    return txt && begins_with_version(txt, len, TLSRPT_VERSION);
}

static int name_char(unsigned char c)
{
    return mts_is_alpha(c) || mts_is_digit(c) || c == '_' || c == '-' || c == '.';
}

/* version 1*(delim field) [delim], delim = *WSP ";" *WSP. */
static sk_err parse_fields(const char *txt, size_t len, const char *version, value_fn fn, void *ctx,
                           char *why, size_t why_size)
{
    char q[QUOTE_OCTETS + 4];
    size_t vl = strlen(version);
    if (len < vl || memcmp(txt, version, vl))
        return sk_syntax_why(why, why_size, "does not begin with %s", version);
    size_t i = vl, fields = 0;
    for (;;) {
        if (i == len) break;
        size_t j = i;
        while (j < len && mts_is_wsp((unsigned char)txt[j])) j++;
        if (j == len || txt[j] != ';')
            return sk_syntax_why(why, why_size, "expected ';' before \"%s\"",
                                 mts_quote(txt + j, len - j, q, QUOTE_OCTETS));
        j++;
        while (j < len && mts_is_wsp((unsigned char)txt[j])) j++;
        if (j == len) break; /* a final delimiter */
        size_t k = j;
        while (k < len && name_char((unsigned char)txt[k])) k++;
        if (k == len || txt[k] != '=' || !mts_ext_name_valid(txt + j, k - j))
            return sk_syntax_why(why, why_size, "\"%s\" is not a field (name=value)",
                                 mts_quote(txt + j, len - j, q, QUOTE_OCTETS));
        i = k + 1;
        sk_err e = fn(ctx, txt + j, k - j, txt, len, &i, why, why_size);
        if (e) return e;
        fields++;
    }
    if (fields == 0) return sk_syntax_why(why, why_size, "no field after %s", version);
    return SK_OK;
}

static int name_is(const char *name, size_t n, const char *want)
{
    return n == strlen(want) && !memcmp(name, want, n);
}

/* An extension value: 1*(%x21-3A / %x3C / %x3E-7E), i.e. visible ASCII
 * but '=' and ';'. It ends at white space, ';' or the end. */
static sk_err ext_value(const char *name, size_t name_len, const char *txt, size_t len, size_t *i,
                        char *why, size_t why_size)
{
    char q[QUOTE_OCTETS + 4];
    size_t s = *i;
    while (*i < len) {
        unsigned char c = (unsigned char)txt[*i];
        if (mts_is_wsp(c) || c == ';') break;
        if (c < 0x21 || c > 0x7e || c == '=') {
            char qv[QUOTE_OCTETS + 4];
            return sk_syntax_why(why, why_size,
                                 "field %s: \"%s\" holds a character not allowed there",
                                 mts_quote(name, name_len, q, QUOTE_OCTETS),
                                 mts_quote(txt + s, len - s, qv, QUOTE_OCTETS));
        }
        (*i)++;
    }
    if (*i == s)
        return sk_syntax_why(why, why_size, "field %s has an empty value",
                             mts_quote(name, name_len, q, QUOTE_OCTETS));
    return SK_OK;
}

/* ---- _mta-sts ---- */

typedef struct sts_ctx {
    sk_mtasts_record *rec;
    int have_id;
} sts_ctx;

static sk_err sts_field(void *ctx, const char *name, size_t name_len, const char *txt, size_t len,
                        size_t *i, char *why, size_t why_size)
{
    sts_ctx *c = ctx;
    char q[QUOTE_OCTETS + 4];
    if (name_is(name, name_len, "v")) return sk_syntax_why(why, why_size, "v= is given twice");
    if (!name_is(name, name_len, "id")) {
        c->rec->extensions++;
        return ext_value(name, name_len, txt, len, i, why, why_size);
    }
    if (c->have_id) return sk_syntax_why(why, why_size, "id= is given twice");
    size_t s = *i;
    while (*i < len &&
           (mts_is_alpha((unsigned char)txt[*i]) || mts_is_digit((unsigned char)txt[*i])))
        (*i)++;
    size_t n = *i - s;
    if (*i < len && !mts_is_wsp((unsigned char)txt[*i]) && txt[*i] != ';')
        return sk_syntax_why(why, why_size, "id=%s: only letters and digits are allowed",
                             mts_quote(txt + s, len - s, q, QUOTE_OCTETS));
    if (n == 0) return sk_syntax_why(why, why_size, "id= is empty");
    if (n > SK_MTASTS_ID_MAX_OCTETS)
        return sk_syntax_why(why, why_size, "id= is %zu characters long; at most %d are allowed", n,
                             SK_MTASTS_ID_MAX_OCTETS);
    memcpy(c->rec->id, txt + s, n);
    c->rec->id[n] = '\0';
    c->have_id = 1;
    return SK_OK;
}

sk_err sk_mtasts_record_parse(const char *txt, size_t len, sk_mtasts_record *out, char *why,
                              size_t why_size)
{
    memset(out, 0, sizeof *out);
    if (why && why_size) why[0] = '\0';
    if (!txt) return sk_syntax_why(why, why_size, "no record");
    sts_ctx c = {.rec = out};
    sk_err e = parse_fields(txt, len, MTASTS_VERSION, sts_field, &c, why, why_size);
    if (!e && !c.have_id) e = sk_syntax_why(why, why_size, "the required id= is missing");
    if (e) memset(out, 0, sizeof *out);
    return e;
}

/* ---- _smtp._tls ---- */

static int uri_char(unsigned char c)
{
    /* RFC 3986 unreserved, gen-delims and sub-delims, less what RFC 8460 3
     * says must be encoded ("," and "!") and ";" (the field delimiter). */
    return mts_is_alpha(c) || mts_is_digit(c) || (c && strchr("-._~%$&'()*+=:/?#[]@", c));
}

static int hex_digit(unsigned char c)
{
    return mts_is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/* An absolute URI as RFC 8460 wants it; its scheme into *scheme. */
static sk_err check_uri(const char *u, size_t n, sk_tlsrpt_scheme *scheme, char *why,
                        size_t why_size)
{
    char q[QUOTE_OCTETS + 4];
    const char *shown = mts_quote(u, n, q, QUOTE_OCTETS);
    size_t i = 0;
    if (n == 0 || !mts_is_alpha((unsigned char)u[0]))
        return sk_syntax_why(why, why_size, "rua: \"%s\" is not a URI", shown);
    while (i < n && (mts_is_alpha((unsigned char)u[i]) || mts_is_digit((unsigned char)u[i]) ||
                     u[i] == '+' || u[i] == '-' || u[i] == '.'))
        i++;
    if (i == n || u[i] != ':')
        return sk_syntax_why(why, why_size, "rua: \"%s\" has no scheme (mailto: or https:)", shown);
    for (size_t k = 0; k < n; k++)
        if (u[k] == '%' && (k + 2 >= n || !hex_digit((unsigned char)u[k + 1]) ||
                            !hex_digit((unsigned char)u[k + 2])))
            return sk_syntax_why(why, why_size, "rua: \"%s\" has a '%%' that is not %%HH", shown);
    const char *rest = u + i + 1;
    size_t rn = n - i - 1;
    if (i == 6 && !strncasecmp(u, "mailto", 6)) {
        const char *at = memchr(rest, '@', rn);
        if (!at || at == rest || at == rest + rn - 1)
            return sk_syntax_why(why, why_size, "rua: \"%s\" is not a mailto: address", shown);
        *scheme = SK_TLSRPT_MAILTO;
    } else if (i == 5 && !strncasecmp(u, "https", 5)) {
        if (rn < 3 || rest[0] != '/' || rest[1] != '/' || strchr("/?#:", rest[2]))
            return sk_syntax_why(why, why_size, "rua: \"%s\" is not an https:// URL", shown);
        *scheme = SK_TLSRPT_HTTPS;
    } else {
        *scheme = SK_TLSRPT_OTHER;
    }
    return SK_OK;
}

typedef struct rpt_ctx {
    sk_tlsrpt_record *rec;
    int have_rua;
} rpt_ctx;

static sk_err rpt_field(void *ctx, const char *name, size_t name_len, const char *txt, size_t len,
                        size_t *i, char *why, size_t why_size)
{
    rpt_ctx *c = ctx;
    char q[QUOTE_OCTETS + 4];
    if (name_is(name, name_len, "v")) return sk_syntax_why(why, why_size, "v= is given twice");
    if (!name_is(name, name_len, "rua")) {
        c->rec->extensions++;
        return ext_value(name, name_len, txt, len, i, why, why_size);
    }
    if (c->have_rua) return sk_syntax_why(why, why_size, "rua= is given twice");
    c->have_rua = 1;
    /* tlsrpt-uri *(*WSP "," *WSP tlsrpt-uri) */
    for (;;) {
        size_t s = *i;
        while (*i < len && uri_char((unsigned char)txt[*i])) (*i)++;
        if (*i < len && !mts_is_wsp((unsigned char)txt[*i]) && txt[*i] != ';' && txt[*i] != ',')
            return sk_syntax_why(why, why_size,
                                 "rua: \"%s\" holds a character a URI cannot hold "
                                 "(',' and '!' must be written %%2C and %%21)",
                                 mts_quote(txt + s, len - s, q, QUOTE_OCTETS));
        sk_tlsrpt_scheme scheme = SK_TLSRPT_OTHER;
        sk_err e = check_uri(txt + s, *i - s, &scheme, why, why_size);
        if (e) return e;
        if (c->rec->n_rua == SK_TLSRPT_URIS_MAX)
            return sk_syntax_why(why, why_size, "rua: more than %d URIs", SK_TLSRPT_URIS_MAX);
        sk_tlsrpt_uri *u = &c->rec->rua[c->rec->n_rua];
        u->uri = sk_strndup(txt + s, *i - s);
        if (!u->uri) return SK_ERR_NOMEM;
        u->scheme = scheme;
        c->rec->n_rua++;
        size_t j = *i;
        while (j < len && mts_is_wsp((unsigned char)txt[j])) j++;
        if (j == len || txt[j] != ',') return SK_OK; /* *i stays before the white space */
        j++;
        while (j < len && mts_is_wsp((unsigned char)txt[j])) j++;
        *i = j;
    }
}

void sk_tlsrpt_record_clear(sk_tlsrpt_record *r)
{
    if (!r) return;
    for (size_t i = 0; i < r->n_rua; i++) sk_free(r->rua[i].uri);
    memset(r, 0, sizeof *r);
}

sk_err sk_tlsrpt_record_parse(const char *txt, size_t len, sk_tlsrpt_record *out, char *why,
                              size_t why_size)
{
    memset(out, 0, sizeof *out);
    if (why && why_size) why[0] = '\0';
    if (!txt) return sk_syntax_why(why, why_size, "no record");
    rpt_ctx c = {.rec = out};
    sk_err e = parse_fields(txt, len, TLSRPT_VERSION, rpt_field, &c, why, why_size);
    if (!e && !c.have_rua) e = sk_syntax_why(why, why_size, "the required rua= is missing");
    if (e) sk_tlsrpt_record_clear(out);
    return e;
}
