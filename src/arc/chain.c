/* The ARC chain of a header block (RFC 8617 4.2, 5.2): its fields grouped
 * into sets by instance, its shape checked, and the seal's hash over the
 * sets (5.1.1), shared by the verifier and the sealer. */
#include "arc/arc_int.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

const char *const arc_field_names[ARC_KINDS] = {"ARC-Authentication-Results",
                                                "ARC-Message-Signature", "ARC-Seal"};

static int is_wsp(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* Skip white space, folding and comments (nested, with quoted pairs). */
static size_t skip_cfws(const char *s, size_t n, size_t i)
{
    for (;;) {
        while (i < n && is_wsp(s[i])) i++;
        if (i == n || s[i] != '(') return i;
        int depth = 0;
        for (; i < n; i++) {
            if (s[i] == '\\' && i + 1 < n) {
                i++;
            } else if (s[i] == '(') {
                depth++;
            } else if (s[i] == ')' && --depth == 0) {
                i++;
                break;
            }
        }
        if (depth) return n; /* an open comment runs to the end */
    }
}

unsigned arc_aar_instance(const char *v, size_t n)
{
    size_t i = skip_cfws(v, n, 0);
    if (i == n || (v[i] != 'i' && v[i] != 'I')) return 0;
    i = skip_cfws(v, n, i + 1);
    if (i == n || v[i] != '=') return 0;
    i = skip_cfws(v, n, i + 1);
    unsigned inst = 0;
    size_t digits = 0;
    while (i < n && v[i] >= '0' && v[i] <= '9' && digits < 3) {
        inst = inst * 10 + (unsigned)(v[i] - '0');
        i++;
        digits++;
    }
    if (digits == 0 || digits > 2 || inst < 1 || inst > SK_ARC_INSTANCE_MAX) return 0;
    i = skip_cfws(v, n, i);
    return i < n && v[i] == ';' ? inst : 0;
}

/* The value of a field (after the colon, without the final CRLF). */
static void field_value(const dkim_msg *m, const dkim_field *f, const char **val, size_t *len)
{
    const char *raw = m->head.data + f->off;
    const char *colon = memchr(raw, ':', f->len);
    *val = colon + 1;
    *len = f->len - (size_t)(*val - raw);
    if (*len >= 2 && (*val)[*len - 2] == '\r' && (*val)[*len - 1] == '\n') *len -= 2;
}

static void shape_fail(arc_chain *c, const char *fmt, ...) SK_PRINTF(2, 3);
static void shape_fail(arc_chain *c, const char *fmt, ...)
{
    if (!c->shape_ok) return; /* the first problem is the one reported */
    c->shape_ok = 0;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->why, sizeof c->why, fmt, ap);
    va_end(ap);
}

sk_err arc_chain_collect(arc_chain *c, const dkim_msg *m)
{
    memset(c, 0, sizeof *c);
    c->shape_ok = 1;
    for (size_t i = 0; i < m->nfields; i++) {
        const dkim_field *f = &m->fields[i];
        int kind = -1;
        for (int k = 0; k < ARC_KINDS && kind < 0; k++)
            if (dkim_field_is(m, f, arc_field_names[k], strlen(arc_field_names[k]))) kind = k;
        if (kind < 0) continue;
        c->nfields++;
        if (!c->sets && !(c->sets = sk_calloc(SK_ARC_INSTANCE_MAX + 1, sizeof *c->sets)))
            return SK_ERR_NOMEM;
        const char *val;
        size_t len;
        field_value(m, f, &val, &len);
        unsigned inst = 0;
        dkim_sig *sig = NULL;
        char why[200] = "";
        if (kind == ARC_AAR) {
            inst = arc_aar_instance(val, len);
            if (!inst) {
                shape_fail(c, "an %s without an instance from 1 to %d", arc_field_names[kind],
                           SK_ARC_INSTANCE_MAX);
                continue;
            }
        } else {
            sig = sk_calloc(1, sizeof *sig);
            if (!sig) return SK_ERR_NOMEM;
            sk_err e = dkim_sig_parse_kind(kind == ARC_AMS ? DKIM_SIG_AMS : DKIM_SIG_AS, val, len,
                                           sig, why, sizeof why);
            if (e == SK_ERR_NOMEM) {
                dkim_sig_clear(sig);
                sk_free(sig);
                return e;
            }
            inst = sig->instance;
            if (e) {
                /* The instance, when the tags got that far, still counts
                 * for finding the most recent set. */
                char at[16] = "";
                if (inst) snprintf(at, sizeof at, " i=%u", inst);
                shape_fail(c, "%s%s cannot be used: %s", arc_field_names[kind], at, why);
                if (inst && inst > c->n) c->n = inst;
                dkim_sig_clear(sig);
                sk_free(sig);
                continue;
            }
        }
        if (inst > c->n) c->n = inst;
        arc_set *s = &c->sets[inst];
        if (s->field[kind]) {
            shape_fail(c, "two %s fields for instance %u", arc_field_names[kind], inst);
            dkim_sig_clear(sig);
            sk_free(sig);
            continue;
        }
        s->field[kind] = i + 1;
        if (kind == ARC_AMS) s->ams = sig;
        if (kind == ARC_AS) s->as = sig;
    }
    if (!c->nfields) return SK_OK;
    if (c->n == 0) shape_fail(c, "ARC fields without a usable instance");
    /* RFC 8617 5.2 step 3: sets 1..N, each complete, with no gap. */
    for (unsigned i = 1; i <= c->n; i++)
        for (int k = 0; k < ARC_KINDS; k++)
            if (!c->sets[i].field[k])
                shape_fail(c, "instance %u has no %s (of %u)", i, arc_field_names[k], c->n);
    return SK_OK;
}

void arc_chain_clear(arc_chain *c)
{
    if (!c || !c->sets) return;
    for (unsigned i = 0; i <= SK_ARC_INSTANCE_MAX; i++) {
        dkim_sig_clear(c->sets[i].ams);
        dkim_sig_clear(c->sets[i].as);
        sk_free(c->sets[i].ams);
        sk_free(c->sets[i].as);
    }
    sk_free(c->sets);
    memset(c, 0, sizeof *c);
}

sk_arc_status arc_chain_cv(const arc_chain *c, unsigned instance)
{
    const dkim_sig *as = c->sets && instance <= SK_ARC_INSTANCE_MAX ? c->sets[instance].as : NULL;
    if (!as || !as->cv) return SK_ARC_FAIL;
    if (!strcmp(as->cv, "none")) return SK_ARC_NONE;
    if (!strcmp(as->cv, "pass")) return SK_ARC_PASS;
    return SK_ARC_FAIL;
}

sk_err arc_seal_hash_field(EVP_MD_CTX *md, const char *raw, size_t len, int last, sk_buf *scratch)
{
    sk_buf_reset(scratch);
    sk_err e = dkim_canon_header(SK_DKIM_CANON_RELAXED, raw, len, scratch);
    if (e) return e;
    size_t n = scratch->len;
    /* RFC 6376 3.7 as RFC 8617 5.1.1 applies it: the seal's own field
     * goes in without its final CRLF. */
    if (last && n >= 2) n -= 2;
    return EVP_DigestUpdate(md, scratch->data, n) ? SK_OK : SK_ERR_NOMEM;
}

sk_err arc_seal_hash_sets(EVP_MD_CTX *md, const arc_chain *c, const dkim_msg *m, unsigned upto,
                          sk_buf *scratch)
{
    /* RFC 8617 5.1.1: the sets in increasing instance order, each as AAR,
     * AMS, AS. */
    sk_err e = SK_OK;
    for (unsigned i = 1; i <= upto && !e; i++)
        for (int k = 0; k < ARC_KINDS && !e; k++) {
            const dkim_field *f = &m->fields[c->sets[i].field[k] - 1];
            e = arc_seal_hash_field(md, m->head.data + f->off, f->len, 0, scratch);
        }
    return e;
}
