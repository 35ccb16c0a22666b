/* Fuzz target: DMARC records (sk_dmarc_record_parse, sk_dmarc_is_record),
 * and the same input as a header block (sk_dmarc_from_domain) and as a
 * domain (sk_dmarc_domain_normalize, sk_dmarc_org_domain). Properties: a
 * parsed record keeps its defaults and bounds; what is not a DMARC record
 * never parses; domains come out normalized and their organizational
 * domain is a suffix of them. */
#include <smtpkit/dmarc.h>

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_domain(const char *d)
{
    char norm[SK_SMTP_DOMAIN_MAX_OCTETS + 1], again[SK_SMTP_DOMAIN_MAX_OCTETS + 1];
    if (sk_dmarc_domain_normalize(d, norm) != SK_OK) return;
    /* Normalized: idempotent, lower-case ASCII. */
    if (sk_dmarc_domain_normalize(norm, again) != SK_OK || strcmp(norm, again)) abort();
    for (const char *p = norm; *p; p++)
        if ((unsigned char)*p >= 0x80 || (*p >= 'A' && *p <= 'Z')) abort();
    char org[SK_SMTP_DOMAIN_MAX_OCTETS + 1];
    if (sk_dmarc_org_domain(norm, org) != SK_OK) abort();
    size_t n = strlen(norm), o = strlen(org);
    if (o > n || strcmp(norm + n - o, org) || (o < n && norm[n - o - 1] != '.')) abort();
    if (!sk_dmarc_aligned(norm, org, SK_DMARC_ALIGN_RELAXED)) abort();
    if (!sk_dmarc_aligned(d, norm, SK_DMARC_ALIGN_STRICT)) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 2 * SK_DMARC_RECORD_MAX_OCTETS) return 0;
    char *s = malloc(size + 1);
    if (!s) return 0;
    memcpy(s, data, size);
    s[size] = '\0';

    sk_dmarc_record r;
    const char *why = NULL;
    sk_err e = sk_dmarc_record_parse(s, size, &r, &why);
    if (e == SK_OK) {
        if (!sk_dmarc_is_record(s, size)) abort();
        if (r.pct > 100 || r.n_rua > SK_DMARC_URIS_MAX || r.n_ruf > SK_DMARC_URIS_MAX) abort();
        if (!r.has_sp && r.sp != r.p) abort();
        if (!r.has_np && r.np != r.sp) abort();
        /* Read as p=none only with a reporting URI (RFC 7489 6.6.3). */
        if ((r.problems & (SK_DMARC_REC_P_INVALID | SK_DMARC_REC_SP_INVALID)) &&
            (r.p != SK_DMARC_POLICY_NONE || r.n_rua == 0))
            abort();
        for (size_t i = 0; i < r.n_rua; i++)
            if (!r.rua[i].uri || !*r.rua[i].uri || strpbrk(r.rua[i].uri, "!, ;")) abort();
        sk_dmarc_record_clear(&r);
    } else {
        if (e != SK_ERR_SYNTAX && e != SK_ERR_TOO_LONG && e != SK_ERR_NOMEM) abort();
        if (e == SK_ERR_SYNTAX && !why) abort();
        if (r.n_rua || r.n_ruf) abort();
    }

    char from[SK_SMTP_DOMAIN_MAX_OCTETS + 1];
    e = sk_dmarc_from_domain(s, size, from, &why);
    if (e == SK_OK)
        check_domain(from);
    else if (!why)
        abort();
    if (strlen(s) <= 300) check_domain(s);
    free(s);
    return 0;
}
