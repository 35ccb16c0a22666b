/* The two TXT records: _mta-sts (RFC 8461 3.1) and _smtp._tls (RFC 8460
 * 3). Both are a version followed by name=value fields separated by
 * *WSP ";" *WSP, one of them required, read here by one cursor; each
 * record brings only the reader of its required field's value. */
#include "mtasts_int.h"

#include <string.h>
#include <strings.h>

#define MTASTS_VERSION "v=STSv1"
#define TLSRPT_VERSION "v=TLSRPTv1"
/* How much of an offending field a reason quotes. */
#define QUOTE_OCTETS 40

/* The value of a record's own field is read by one of these from txt[*i];
 * it leaves *i just after the value. */
typedef sk_err (*value_fn)(void *ctx, const char *txt, size_t len, size_t *i, char *why,
                           size_t why_size);

/* What tells the two records apart: the version they begin with, the one
 * field each requires (given once), and the reader of its value. Other
 * fields are extensions, checked and counted. */
typedef struct record_kind {
    const char *version;
    const char *field;
    value_fn read;
} record_kind;

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

/* A field of the record: its own (once), a second v=, or an extension. */
static sk_err field(const record_kind *kind, void *ctx, unsigned *extensions, int *have,
                    const char *name, size_t name_len, const char *txt, size_t len, size_t *i,
                    char *why, size_t why_size)
{
    if (name_is(name, name_len, "v")) return sk_syntax_why(why, why_size, "v= is given twice");
    if (!name_is(name, name_len, kind->field)) {
        (*extensions)++;
        return ext_value(name, name_len, txt, len, i, why, why_size);
    }
    if (*have) return sk_syntax_why(why, why_size, "%s= is given twice", kind->field);
    *have = 1;
    return kind->read(ctx, txt, len, i, why, why_size);
}

/* version 1*(delim field) [delim], delim = *WSP ";" *WSP, with the kind's
 * own field required. */
static sk_err parse_record(const char *txt, size_t len, const record_kind *kind, void *ctx,
                           unsigned *extensions, char *why, size_t why_size)
{
    char q[QUOTE_OCTETS + 4];
    if (why && why_size) why[0] = '\0';
    if (!txt) return sk_syntax_why(why, why_size, "no record");
    const char *version = kind->version;
    size_t vl = strlen(version);
    if (len < vl || memcmp(txt, version, vl))
        return sk_syntax_why(why, why_size, "does not begin with %s", version);
    size_t i = vl, fields = 0;
    int have = 0;
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
        sk_err e = field(kind, ctx, extensions, &have, txt + j, k - j, txt, len, &i, why, why_size);
        if (e) return e;
        fields++;
    }
    if (fields == 0) return sk_syntax_why(why, why_size, "no field after %s", version);
    if (!have) return sk_syntax_why(why, why_size, "the required %s= is missing", kind->field);
    return SK_OK;
}

/* ---- _mta-sts ---- */

/* id = 1*32(ALPHA / DIGIT) */
static sk_err sts_id(void *ctx, const char *txt, size_t len, size_t *i, char *why, size_t why_size)
{
    sk_mtasts_record *rec = ctx;
    char q[QUOTE_OCTETS + 4];
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
    memcpy(rec->id, txt + s, n);
    rec->id[n] = '\0';
    return SK_OK;
}

static const record_kind mtasts_kind = {MTASTS_VERSION, "id", sts_id};

sk_err sk_mtasts_record_parse(const char *txt, size_t len, sk_mtasts_record *out, char *why,
                              size_t why_size)
{
    memset(out, 0, sizeof *out);
    sk_err e = parse_record(txt, len, &mtasts_kind, out, &out->extensions, why, why_size);
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

static sk_err rpt_rua(void *ctx, const char *txt, size_t len, size_t *i, char *why, size_t why_size)
{
    sk_tlsrpt_record *rec = ctx;
    char q[QUOTE_OCTETS + 4];
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
        if (rec->n_rua == SK_TLSRPT_URIS_MAX)
            return sk_syntax_why(why, why_size, "rua: more than %d URIs", SK_TLSRPT_URIS_MAX);
        sk_tlsrpt_uri *u = &rec->rua[rec->n_rua];
        u->uri = sk_strndup(txt + s, *i - s);
        if (!u->uri) return SK_ERR_NOMEM;
        u->scheme = scheme;
        rec->n_rua++;
        size_t j = *i;
        while (j < len && mts_is_wsp((unsigned char)txt[j])) j++;
        if (j == len || txt[j] != ',') return SK_OK; /* *i stays before the white space */
        j++;
        while (j < len && mts_is_wsp((unsigned char)txt[j])) j++;
        *i = j;
    }
}

static const record_kind tlsrpt_kind = {TLSRPT_VERSION, "rua", rpt_rua};

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
    sk_err e = parse_record(txt, len, &tlsrpt_kind, out, &out->extensions, why, why_size);
    if (e) sk_tlsrpt_record_clear(out);
    return e;
}
