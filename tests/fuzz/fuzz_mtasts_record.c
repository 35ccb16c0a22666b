/* Fuzz target: the _mta-sts TXT record (sk_mtasts_record_parse, RFC 8461
 * 3.1) and the _smtp._tls TXT record (sk_tlsrpt_record_parse, RFC 8460 3),
 * the same input read as both. Properties: a refusal has a reason and
 * leaves nothing; what parses is a record by sk_*_is_record; an id is 1 to
 * 32 letters and digits; every rua URI is non-empty and of the scheme its
 * prefix says; each record written back in its shortest form parses to
 * the same. */
#include "mtasts/mtasts_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_sts(const char *txt, size_t size)
{
    sk_mtasts_record r;
    char why[200] = "";
    sk_err e = sk_mtasts_record_parse(txt, size, &r, why, sizeof why);
    if (e) {
        if (e != SK_ERR_SYNTAX || !why[0] || r.id[0]) abort();
        return;
    }
    if (!sk_mtasts_is_record(txt, size)) abort();
    size_t n = strlen(r.id);
    if (n == 0 || n > SK_MTASTS_ID_MAX_OCTETS) abort();
    for (size_t i = 0; i < n; i++)
        if (!mts_is_alpha((unsigned char)r.id[i]) && !mts_is_digit((unsigned char)r.id[i])) abort();
    char again[64];
    int len = snprintf(again, sizeof again, "v=STSv1; id=%s", r.id);
    sk_mtasts_record r2;
    if (sk_mtasts_record_parse(again, (size_t)len, &r2, why, sizeof why) || strcmp(r.id, r2.id))
        abort();
}

static void check_rpt(const char *txt, size_t size)
{
    sk_tlsrpt_record r;
    char why[200] = "";
    sk_err e = sk_tlsrpt_record_parse(txt, size, &r, why, sizeof why);
    if (e) {
        if ((e != SK_ERR_SYNTAX && e != SK_ERR_NOMEM) || (e == SK_ERR_SYNTAX && !why[0])) abort();
        if (r.n_rua) abort();
        return;
    }
    if (!sk_tlsrpt_is_record(txt, size) || r.n_rua == 0 || r.n_rua > SK_TLSRPT_URIS_MAX) abort();
    sk_buf b = SK_BUF_INIT(size + 32);
    int ok = sk_buf_puts(&b, "v=TLSRPTv1;rua=") == SK_OK;
    for (size_t i = 0; i < r.n_rua; i++) {
        const char *u = r.rua[i].uri;
        if (!u || !u[0]) abort();
        int mailto = !strncasecmp(u, "mailto:", 7), https = !strncasecmp(u, "https:", 6);
        if ((r.rua[i].scheme == SK_TLSRPT_MAILTO) != mailto) abort();
        if ((r.rua[i].scheme == SK_TLSRPT_HTTPS) != https) abort();
        if (strpbrk(u, ",;! \t")) abort();
        ok = ok && sk_buf_printf(&b, "%s%s", i ? "," : "", u) == SK_OK;
    }
    if (ok) {
        sk_tlsrpt_record r2;
        if (sk_tlsrpt_record_parse(b.data, b.len, &r2, why, sizeof why) == SK_OK) {
            if (r2.n_rua != r.n_rua) abort();
            for (size_t i = 0; i < r.n_rua; i++)
                if (strcmp(r2.rua[i].uri, r.rua[i].uri) || r2.rua[i].scheme != r.rua[i].scheme)
                    abort();
            sk_tlsrpt_record_clear(&r2);
        }
    }
    sk_buf_free(&b);
    sk_tlsrpt_record_clear(&r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > SK_DNS_TXT_MAX_OCTETS) return 0;
    check_sts((const char *)data, size);
    check_rpt((const char *)data, size);
    return 0;
}
