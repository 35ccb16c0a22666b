/* Fuzz target: the ORCPT value (RFC 3461 4.2) and the RFC 6533 3 encoding
 * of the "utf-8" address type. Properties: what is accepted decodes to
 * UTF-8 without control characters; it re-encodes in both forms and reads
 * back the same; what goes on to the next hop is valid there. */
#include <smtpkit/proto.h>

#include <stdlib.h>
#include <string.h>
#include <strings.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_utf8_addr(const char *in, size_t n)
{
    char dec[4 * SK_DSN_ORCPT_MAX_OCTETS + 1];
    if (sk_utf8_addr_decode(in, n, 1, dec, sizeof dec) != SK_OK) return;
    for (const unsigned char *p = (const unsigned char *)dec; *p; p++)
        if (*p < 0x20 || *p == 0x7f) abort();
    for (int form = 0; form < 2; form++) {
        sk_buf b = SK_BUF_INIT(16 * SK_DSN_ORCPT_MAX_OCTETS);
        if (sk_utf8_addr_encode(dec, (sk_utf8_addr_form)form, &b) != SK_OK) abort();
        if (form == SK_UTF8_ADDR_XTEXT)
            for (size_t i = 0; i < b.len; i++)
                if ((unsigned char)b.data[i] >= 0x80) abort();
        char again[4 * SK_DSN_ORCPT_MAX_OCTETS + 1];
        if (sk_utf8_addr_decode(b.data, b.len, form, again, sizeof again) != SK_OK) abort();
        if (strcmp(again, dec)) abort();
        sk_buf_free(&b);
    }
    sk_buf o = SK_BUF_INIT(SK_DSN_ORCPT_MAX_OCTETS);
    for (int utf8 = 0; utf8 < 2; utf8++) {
        sk_buf_reset(&o);
        sk_err e = sk_orcpt_format(dec, utf8, &o);
        if (e == SK_OK && !sk_orcpt_valid(o.data, o.len, utf8)) abort();
        if (e != SK_OK && e != SK_ERR_TOO_LONG) abort();
    }
    sk_buf_free(&o);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 2 * SK_DSN_ORCPT_MAX_OCTETS) return 0;
    char *v = malloc(size + 1);
    if (!v) return 0;
    memcpy(v, data, size);
    v[size] = '\0';
    size_t n = strlen(v);
    check_utf8_addr(v, n);
    const char *semi = strchr(v, ';');
    if (semi) check_utf8_addr(semi + 1, strlen(semi + 1));
    int valid8 = sk_orcpt_valid(v, n, 1), valid7 = sk_orcpt_valid(v, n, 0);
    /* The 7-bit reading accepts a subset of the other. */
    if (valid7 && !valid8) abort();
    sk_buf b = SK_BUF_INIT(SK_DSN_ORCPT_MAX_OCTETS);
    sk_err e = sk_orcpt_pass(v, 0, &b);
    if (e == SK_OK && !sk_orcpt_valid(b.data, b.len, 0)) abort();
    if (e == SK_OK && valid7 && strcmp(b.data, v)) abort(); /* unchanged when it can be */
    if (e != SK_OK && (valid8 ? e != SK_ERR_TOO_LONG : e != SK_ERR_SYNTAX)) abort();
    sk_buf_free(&b);
    free(v);
    return 0;
}
