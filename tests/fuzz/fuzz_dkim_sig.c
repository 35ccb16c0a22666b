/* Fuzz target: DKIM-Signature values (RFC 6376 3.2 tag lists, 3.5 tags),
 * alone and as the field of a message run through the verifier.
 * Properties: tags lie inside the input with their value inside their
 * region, which ends at ';' or the end, and no name twice; what parses as
 * a signature has a valid d=, an i= within it, From in h=, a digest of the
 * algorithm's size and x= after t=; the verifier gives each field one
 * result with a named status. */
#include "dkim/dkim_int.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_tags(const char *s, size_t n)
{
    dkim_tags *t = malloc(sizeof *t);
    if (!t) return;
    char why[200];
    if (dkim_tags_parse(s, n, t, why, sizeof why) == SK_OK) {
        if (t->n == 0 || t->n > SK_DKIM_TAGS_MAX) abort();
        for (size_t i = 0; i < t->n; i++) {
            const dkim_tag *g = &t->tag[i];
            if (g->name < s || g->name + g->name_len > s + n || g->name_len == 0) abort();
            if (g->region_start > g->region_end || g->region_end > n) abort();
            if ((size_t)(g->value - s) < g->region_start ||
                (size_t)(g->value - s) + g->value_len > g->region_end)
                abort();
            if (g->region_end < n && s[g->region_end] != ';') abort();
            for (size_t j = 0; j < i; j++)
                if (t->tag[j].name_len == g->name_len &&
                    !memcmp(t->tag[j].name, g->name, g->name_len))
                    abort();
        }
    }
    free(t);
}

static void check_sig(const char *s, size_t n)
{
    dkim_sig g;
    char why[200];
    sk_err e = dkim_sig_parse(s, n, &g, why, sizeof why);
    if (e == SK_OK) {
        if (!dkim_domain_valid(g.domain, strlen(g.domain))) abort();
        const char *at = strrchr(g.identity, '@');
        if (!at || !dkim_domain_within(at + 1, strlen(at + 1), g.domain, strlen(g.domain))) abort();
        int from = 0;
        for (size_t i = 0; i < g.nh; i++) from |= !strcasecmp(g.h[i], "from");
        if (!from) abort();
        if ((int)g.bh_len != EVP_MD_get_size(dkim_algo_md(g.algo))) abort();
        if (g.has_t && g.has_x && g.x <= g.t) abort();
        if (!g.b || !g.b_len) abort();
    } else if (e != SK_ERR_SYNTAX && e != SK_ERR_NOMEM) {
        abort();
    }
    dkim_sig_clear(&g);
}

static void check_verify(const char *s, size_t n)
{
    sk_dkim_verify_opts o = {.now = 1764583200};
    sk_dkim_verifier *v = sk_dkim_verifier_new(&o, NULL);
    if (!v) return;
    static const char head[] = "DKIM-Signature:";
    static const char rest[] = "\r\nFrom: a@example.org\r\nTo: b@example.net\r\n\r\nbody\r\n";
    if (sk_dkim_verifier_feed(v, head, sizeof head - 1) == SK_OK &&
        sk_dkim_verifier_feed(v, s, n) == SK_OK &&
        sk_dkim_verifier_feed(v, rest, sizeof rest - 1) == SK_OK &&
        sk_dkim_verifier_finish(v, NULL) == SK_OK) {
        const char *q;
        while ((q = sk_dkim_verifier_next_query(v)))
            if (sk_dkim_verifier_answer(v, q, SK_DNS_NXDOMAIN, NULL, 0) != SK_OK) abort();
        for (size_t i = 0; i < sk_dkim_verifier_count(v); i++) {
            const sk_dkim_result *r = sk_dkim_verifier_result(v, i);
            if (r->status == SK_DKIM_NONE || r->status >= SK_DKIM_STATUS__COUNT) abort();
            if (r->status == SK_DKIM_PASS) abort(); /* no key was ever given */
            if (!r->reason[0]) abort();
        }
    }
    sk_dkim_verifier_free(v);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > SK_DKIM_SIGNATURE_MAX_OCTETS + 16) return 0;
    const char *s = (const char *)data;
    check_tags(s, size);
    check_sig(s, size);
    check_verify(s, size);
    return 0;
}
