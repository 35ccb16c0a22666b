/* Fuzz target: SPF records (sk_spf_record_parse, RFC 7208 4.5, 4.6.1, 5,
 * 6). Properties: an error leaves no record and a printable reason; a
 * parsed record is an SPF record, every term is in range and its
 * domain-spec a valid macro-string, and the record written back from its
 * terms and modifiers parses again to the same. */
#include <smtpkit/spf.h>

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_term(const sk_spf_term *t)
{
    if ((unsigned)t->mech >= SK_SPF_MECH__COUNT || !t->text || !t->text[0]) abort();
    if (t->qualifier != SK_SPF_PASS && t->qualifier != SK_SPF_FAIL &&
        t->qualifier != SK_SPF_SOFTFAIL && t->qualifier != SK_SPF_NEUTRAL)
        abort();
    if (t->cidr4 < 0 || t->cidr4 > 32 || t->cidr6 < 0 || t->cidr6 > 128) abort();
    int wants_domain = t->mech == SK_SPF_INCLUDE || t->mech == SK_SPF_EXISTS;
    int may_domain =
        wants_domain || t->mech == SK_SPF_A || t->mech == SK_SPF_MX || t->mech == SK_SPF_PTR;
    if ((wants_domain && !t->domain_spec) || (!may_domain && t->domain_spec)) abort();
    if (t->domain_spec &&
        (!t->domain_spec[0] || sk_spf_macro_expand(t->domain_spec, strlen(t->domain_spec),
                                                   SK_SPF_MACRO_DOMAIN, NULL, NULL) != SK_OK))
        abort();
    for (const char *p = t->text; *p; p++)
        if (*p <= 0x20 || *p >= 0x7f) abort();
}

static void same(const sk_spf_record *a, const sk_spf_record *b)
{
    if (a->nterms != b->nterms || a->lookup_terms != b->lookup_terms || a->has_all != b->has_all ||
        !a->redirect != !b->redirect || !a->exp != !b->exp)
        abort();
    if ((a->redirect && strcmp(a->redirect, b->redirect)) || (a->exp && strcmp(a->exp, b->exp)))
        abort();
    for (size_t i = 0; i < a->nterms; i++) {
        const sk_spf_term *x = &a->terms[i], *y = &b->terms[i];
        if (x->mech != y->mech || x->qualifier != y->qualifier || x->cidr4 != y->cidr4 ||
            x->cidr6 != y->cidr6 || memcmp(x->addr, y->addr, sizeof x->addr) ||
            !x->domain_spec != !y->domain_spec ||
            (x->domain_spec && strcmp(x->domain_spec, y->domain_spec)))
            abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > SK_DNS_TXT_MAX_OCTETS) return 0;
    const char *txt = (const char *)data;
    sk_spf_record *rec = (sk_spf_record *)1;
    char why[256];
    sk_err e = sk_spf_record_parse(txt, size, &rec, why, sizeof why);
    if (e != SK_OK) {
        if (rec || (e != SK_ERR_SYNTAX && e != SK_ERR_NOMEM)) abort();
        if (e == SK_ERR_SYNTAX)
            for (const char *p = why; *p; p++)
                if (*p < 0x20 || *p >= 0x7f) abort();
        return 0;
    }
    if (!sk_spf_is_record(txt, size)) abort();
    if (rec->lookup_terms > rec->nterms + 1) abort();
    for (size_t i = 0; i < rec->nterms; i++) check_term(&rec->terms[i]);
    /* Written back: the terms as they were, then the modifiers. */
    sk_buf b = SK_BUF_INIT(4 * SK_DNS_TXT_MAX_OCTETS);
    sk_err w = sk_buf_puts(&b, "v=spf1");
    for (size_t i = 0; i < rec->nterms && !w; i++) w = sk_buf_printf(&b, " %s", rec->terms[i].text);
    if (!w && rec->redirect) w = sk_buf_printf(&b, " redirect=%s", rec->redirect);
    if (!w && rec->exp) w = sk_buf_printf(&b, " exp=%s", rec->exp);
    if (w) abort();
    sk_spf_record *again;
    if (sk_spf_record_parse(b.data, b.len, &again, NULL, 0) != SK_OK) abort();
    same(rec, again);
    sk_spf_record_free(again);
    sk_buf_free(&b);
    sk_spf_record_free(rec);
    return 0;
}
