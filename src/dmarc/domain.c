/* Domains for DMARC: normalization (A-labels, lower case), the
 * organizational domain from the Public Suffix List (libpsl), alignment
 * (RFC 7489 3.1) and the RFC5322.From domain of a header block (6.6.1). */
#include <smtpkit/dmarc.h>
#include <smtpkit/message.h>

#include <idn2.h>
#include <libpsl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

static int ldh_or_underscore(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
}

/* Lower-case ASCII copy without a final dot, checked label by label. */
static sk_err ascii_domain(const char *in, char out[SK_SMTP_DOMAIN_MAX_OCTETS + 1])
{
    size_t n = strlen(in);
    if (n > 0 && in[n - 1] == '.') n--;
    /* RFC 1035 2.3.4: 255 octets on the wire are 253 in text. */
    if (n == 0 || n > 253) return SK_ERR_SYNTAX;
    size_t label = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)in[i];
        c = (unsigned char)sk_to_lower(c);
        if (c == '.') {
            if (label == 0) return SK_ERR_SYNTAX;
            label = 0;
        } else {
            if (!ldh_or_underscore(c) || ++label > 63) return SK_ERR_SYNTAX;
        }
        out[i] = (char)c;
    }
    if (label == 0) return SK_ERR_SYNTAX;
    out[n] = '\0';
    return SK_OK;
}

sk_err sk_dmarc_domain_normalize(const char *domain, char out[SK_SMTP_DOMAIN_MAX_OCTETS + 1])
{
    if (!domain) return SK_ERR_INVAL;
    int ascii = 1;
    for (const unsigned char *p = (const unsigned char *)domain; *p; p++)
        if (*p >= 0x80) ascii = 0;
    if (ascii) return ascii_domain(domain, out);
    /* U-labels (SMTPUTF8 addresses, RFC 6532): the A-label form, IDNA 2008
     * with the UTS 46 mapping (which also folds case). */
    char *a = NULL;
    if (idn2_to_ascii_8z(domain, &a, IDN2_NFC_INPUT | IDN2_NONTRANSITIONAL) != IDN2_OK)
        return SK_ERR_SYNTAX;
    sk_err e = ascii_domain(a, out);
    idn2_free(a);
    return e;
}

/* One Public Suffix List per process, loaded on first use. */
static pthread_once_t psl_once = PTHREAD_ONCE_INIT;
static psl_ctx_t *psl;
static const char *psl_from;

static void psl_load(void)
{
    /* The system's file (Debian's publicsuffix package keeps it current);
     * libpsl's copy built into the library when the file is missing. */
    const char *file = psl_dist_filename();
    if (file && *file) psl = psl_load_file(file);
    if (psl) {
        psl_from = file;
        return;
    }
    psl = (psl_ctx_t *)psl_builtin();
    if (psl) psl_from = "libpsl built-in list";
}

const char *sk_dmarc_psl_source(void)
{
    pthread_once(&psl_once, psl_load);
    return psl_from;
}

sk_err sk_dmarc_org_domain(const char *domain, char out[SK_SMTP_DOMAIN_MAX_OCTETS + 1])
{
    pthread_once(&psl_once, psl_load);
    if (!psl) return SK_ERR_CONFIG;
    char norm[SK_SMTP_DOMAIN_MAX_OCTETS + 1];
    sk_err e = sk_dmarc_domain_normalize(domain, norm);
    if (e) return e;
    /* RFC 7489 3.2: the public suffix plus one label; a public suffix
     * itself has none and stands for itself. */
    const char *reg = psl_registrable_domain(psl, norm);
    memcpy(out, reg ? reg : norm, strlen(reg ? reg : norm) + 1);
    return SK_OK;
}

int sk_dmarc_aligned(const char *from_domain, const char *auth_domain, sk_dmarc_align mode)
{
    char a[SK_SMTP_DOMAIN_MAX_OCTETS + 1], b[SK_SMTP_DOMAIN_MAX_OCTETS + 1];
    if (!from_domain || !auth_domain) return 0;
    if (mode == SK_DMARC_ALIGN_STRICT) {
        if (sk_dmarc_domain_normalize(from_domain, a) || sk_dmarc_domain_normalize(auth_domain, b))
            return 0;
    } else if (sk_dmarc_org_domain(from_domain, a) || sk_dmarc_org_domain(auth_domain, b)) {
        return 0;
    }
    return strcmp(a, b) == 0;
}

sk_err sk_dmarc_from_domain(const char *headers, size_t len,
                            char out[SK_SMTP_DOMAIN_MAX_OCTETS + 1], const char **why)
{
    const char *dummy;
    if (!why) why = &dummy;
    *why = NULL;
    size_t pos = 0, n_from = 0;
    sk_header_field f, from = {0};
    while (sk_header_next(headers, len, &pos, &f))
        if (sk_header_is(&f, "From")) {
            from = f;
            n_from++;
        }
    if (n_from == 0) {
        *why = "no From field";
        return SK_ERR_NOT_FOUND;
    }
    if (n_from > 1) {
        *why = "several From fields";
        return SK_ERR_SYNTAX;
    }
    sk_buf v = SK_BUF_INIT(SK_MIME_HEADER_FIELD_MAX_OCTETS);
    sk_err e = sk_header_unfold(&from, &v);
    if (e) {
        sk_buf_free(&v);
        *why = "From field too long";
        return e == SK_ERR_NOMEM ? e : SK_ERR_SYNTAX;
    }
    sk_address_list l = {0};
    e = sk_address_list_parse(v.data, v.len, &l, NULL);
    sk_buf_free(&v);
    if (e) {
        *why = "From field does not parse";
        return e == SK_ERR_NOMEM ? e : SK_ERR_SYNTAX;
    }
    e = SK_OK;
    if (l.count == 0) {
        *why = "From field has no address";
        e = SK_ERR_SYNTAX;
    }
    for (size_t i = 0; i < l.count && !e; i++) {
        const char *at = strrchr(l.items[i].addr, '@');
        char d[SK_SMTP_DOMAIN_MAX_OCTETS + 1];
        if (!at || sk_dmarc_domain_normalize(at + 1, d)) {
            *why = "From address has no domain name";
            e = SK_ERR_SYNTAX;
        } else if (i == 0) {
            memcpy(out, d, strlen(d) + 1);
        } else if (strcmp(out, d)) {
            *why = "From field has addresses in different domains";
            e = SK_ERR_SYNTAX;
        }
    }
    sk_address_list_clear(&l);
    return e;
}
