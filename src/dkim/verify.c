/* DKIM verification (RFC 6376 6, RFC 8301, RFC 8463): every signature of
 * a streamed message up to a limit, keys from DNS through the resolver
 * (or from the caller), a result and a reason for each. */
#include "dkim/dkim_int.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

enum { SIG_DONE = 0, SIG_WAITING };

typedef struct vsig {
    sk_dkim_result r;
    dkim_sig sig;
    int state;
    dkim_body_check *bh; /* shared by signatures hashing the body alike */
    unsigned char hh[EVP_MAX_MD_SIZE];
    size_t hh_len;
    int bh_ok;
    char qname[SK_DKIM_KEY_NAME_MAX_OCTETS + 1];
} vsig;

struct sk_dkim_verifier {
    dkim_msg msg;
    int64_t now;
    size_t max;
    vsig *sigs;
    size_t nsigs, skipped;
    dkim_body_checks bhs;
    int finished;
    dkim_lookups lookups;
    sk_dkim_done_fn done;
    void *done_ctx;
};

static const char *const status_names[] = {"none",   "pass",      "fail",     "neutral",
                                           "policy", "temperror", "permerror"};
_Static_assert(sizeof status_names / sizeof status_names[0] == SK_DKIM_STATUS__COUNT,
               "a name for each status");

const char *sk_dkim_status_name(sk_dkim_status s)
{
    return (unsigned)s < SK_DKIM_STATUS__COUNT ? status_names[s] : "?";
}

static void set_status(vsig *s, sk_dkim_status st, const char *fmt, ...) SK_PRINTF(3, 4);
static void set_status(vsig *s, sk_dkim_status st, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->r.reason, sizeof s->r.reason, fmt, ap);
    va_end(ap);
    s->r.status = st;
    s->state = SIG_DONE;
}

/* The header block is complete: find the signatures, parse them, and set
 * up the body hashes they need before the body streams through. */
static sk_err on_head(void *ctx, dkim_msg *m)
{
    sk_dkim_verifier *v = ctx;
    size_t count = 0;
    for (size_t i = 0; i < m->nfields; i++)
        count += (size_t)dkim_field_is(m, &m->fields[i], "DKIM-Signature", 14);
    size_t take = count < v->max ? count : v->max;
    v->skipped = count - take;
    if (!take) return SK_OK;
    v->sigs = sk_calloc(take, sizeof *v->sigs);
    if (!v->sigs || dkim_body_checks_init(&v->bhs, take)) return SK_ERR_NOMEM;
    for (size_t i = 0; i < m->nfields && v->nsigs < take; i++) {
        dkim_field *f = &m->fields[i];
        if (!dkim_field_is(m, f, "DKIM-Signature", 14)) continue;
        vsig *s = &v->sigs[v->nsigs++];
        const char *raw = m->head.data + f->off;
        const char *colon = memchr(raw, ':', f->len);
        size_t vlen = f->len - (size_t)(colon + 1 - raw);
        /* The value without the field's final CRLF. */
        const char *val = colon + 1;
        if (vlen >= 2 && val[vlen - 2] == '\r' && val[vlen - 1] == '\n') vlen -= 2;
        char why[200] = "";
        sk_err e = dkim_sig_parse(val, vlen, &s->sig, why, sizeof why);
        if (e == SK_ERR_NOMEM) return e;
        dkim_sig *g = &s->sig;
        dkim_copy_str(s->r.domain, sizeof s->r.domain, g->domain);
        dkim_copy_str(s->r.selector, sizeof s->r.selector, g->selector);
        dkim_copy_str(s->r.identity, sizeof s->r.identity, g->identity);
        dkim_copy_str(s->r.b, sizeof s->r.b, g->b64);
        s->r.header_canon = g->hcanon;
        s->r.body_canon = g->bcanon;
        if (e) {
            set_status(s, SK_DKIM_NEUTRAL, "signature syntax error: %s", why);
            continue;
        }
        dkim_copy_str(s->r.algorithm, sizeof s->r.algorithm, sk_dkim_algo_name(g->algo));
        s->r.t = g->has_t ? g->t : 0;
        s->r.x = g->has_x ? g->x : 0;
        s->r.has_l = g->has_l;
        s->r.l = g->l;
        s->bh = dkim_body_checks_for(&v->bhs, g);
        if (!s->bh) return SK_ERR_NOMEM;
        s->state = SIG_WAITING;
    }
    return SK_OK;
}

static const char *waiting_for(void *owner, size_t i);
static void apply_answer(void *owner, const char *name, sk_dns_status st,
                         const char *const *records, size_t n);

sk_dkim_verifier *sk_dkim_verifier_new(const sk_dkim_verify_opts *opts, sk_error *err)
{
    sk_dkim_verifier *v = sk_calloc(1, sizeof *v);
    if (!v) {
        sk_error_set(err, SK_ERR_NOMEM, SK_STEP_NONE, "out of memory");
        return NULL;
    }
    dkim_msg_init(&v->msg, on_head, v, dkim_body_checks_feed, &v->bhs);
    v->now = opts && opts->now ? opts->now : (int64_t)time(NULL);
    dkim_lookups_init(&v->lookups, v, waiting_for, apply_answer);
    v->max = opts && opts->max_signatures && opts->max_signatures < SK_DKIM_VERIFY_SIGNATURES_MAX
                 ? opts->max_signatures
                 : SK_DKIM_VERIFY_SIGNATURES_MAX;
    return v;
}

sk_err sk_dkim_verifier_feed(sk_dkim_verifier *v, const void *bytes, size_t len)
{
    if (v->finished) return SK_ERR_STATE;
    return dkim_msg_feed(&v->msg, bytes, len);
}

sk_err dkim_field_strip_b(const char *raw, size_t len, sk_buf *out)
{
    const char *colon = memchr(raw, ':', len);
    if (!colon) return SK_ERR_SYNTAX;
    size_t voff = (size_t)(colon + 1 - raw);
    size_t vlen = len - voff;
    if (vlen >= 2 && raw[len - 2] == '\r' && raw[len - 1] == '\n') vlen -= 2;
    dkim_tags *tags = sk_malloc(sizeof *tags);
    if (!tags) return SK_ERR_NOMEM;
    sk_err e = dkim_tags_parse(raw + voff, vlen, tags, NULL, 0);
    const dkim_tag *b = e ? NULL : dkim_tags_get(tags, "b");
    if (!e && !b) e = SK_ERR_SYNTAX;
    if (!e) e = sk_buf_append(out, raw, voff + b->region_start);
    if (!e) e = sk_buf_append(out, raw + voff + b->region_end, len - voff - b->region_end);
    sk_free(tags);
    return e;
}

sk_err dkim_sig_header_hash(dkim_msg *m, const dkim_sig *sig, const char *raw, size_t len,
                            unsigned char *out, size_t *out_len)
{
    sk_buf field = SK_BUF_INIT(len);
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    sk_err e = md ? dkim_field_strip_b(raw, len, &field) : SK_ERR_NOMEM;
    if (!e && !EVP_DigestInit_ex(md, dkim_algo_md(sig->algo), NULL)) e = SK_ERR_NOMEM;
    if (!e) e = dkim_hash_headers(md, m, sig->h, sig->nh, sig->hcanon, field.data, field.len);
    unsigned hl = 0;
    if (!e && !EVP_DigestFinal_ex(md, out, &hl)) e = SK_ERR_NOMEM;
    *out_len = hl;
    EVP_MD_CTX_free(md);
    sk_buf_free(&field);
    return e;
}

/* The header hash of one signature: the fields it names and its own field
 * with the b= value deleted (RFC 6376 3.7). */
static sk_err header_hash(sk_dkim_verifier *v, vsig *s, const dkim_field *f)
{
    return dkim_sig_header_hash(&v->msg, &s->sig, v->msg.head.data + f->off, f->len, s->hh,
                                &s->hh_len);
}

/* header.b: at least SK_DKIM_B_PREFIX_MIN_OCTETS characters, more while
 * another signature of the message starts the same (RFC 6008 4). */
static void b_prefixes(sk_dkim_verifier *v)
{
    for (size_t i = 0; i < v->nsigs; i++) {
        const char *bi = v->sigs[i].sig.b64;
        if (!bi) continue;
        size_t len = SK_DKIM_B_PREFIX_MIN_OCTETS;
        for (size_t j = 0; j < v->nsigs; j++) {
            const char *bj = v->sigs[j].sig.b64;
            if (j == i || !bj || !strcmp(bi, bj)) continue;
            size_t k = 0;
            while (bi[k] && bi[k] == bj[k]) k++;
            if (k + 1 > len) len = k + 1;
        }
        if (len > SK_DKIM_B_PREFIX_MAX_OCTETS) len = SK_DKIM_B_PREFIX_MAX_OCTETS;
        if (len > strlen(bi)) len = strlen(bi);
        memcpy(v->sigs[i].r.b, bi, len);
        v->sigs[i].r.b[len] = '\0';
    }
}

sk_err sk_dkim_verifier_finish(sk_dkim_verifier *v, sk_error *err)
{
    if (v->finished) return sk_error_set(err, SK_ERR_STATE, SK_STEP_NONE, "already finished");
    v->finished = 1;
    sk_err e = dkim_msg_finish(&v->msg, err);
    if (e) return e;
    /* Each body hash once, then each signature's checks that need no key. */
    if (dkim_body_checks_final(&v->bhs))
        return sk_error_set(err, SK_ERR_NOMEM, SK_STEP_NONE, "body hash failed");
    size_t k = 0;
    for (size_t i = 0; i < v->msg.nfields && k < v->nsigs; i++) {
        const dkim_field *f = &v->msg.fields[i];
        if (!dkim_field_is(&v->msg, f, "DKIM-Signature", 14)) continue;
        vsig *s = &v->sigs[k++];
        if (s->state != SIG_WAITING) continue;
        dkim_sig *g = &s->sig;
        s->r.body_octets = s->bh->h.total;
        s->bh_ok = dkim_body_check_matches(s->bh, g);
        if (dkim_sig_precheck(g, v->now, &s->r) != SK_DKIM_NONE) {
            s->state = SIG_DONE;
            continue;
        }
        if (dkim_key_name(g, s->qname, sizeof s->qname)) {
            set_status(s, SK_DKIM_PERMERROR, "key name %s._domainkey.%s is too long", g->selector,
                       g->domain);
            continue;
        }
        e = header_hash(v, s, f);
        if (e) return sk_error_set(err, e, SK_STEP_NONE, "header hash: %s", sk_strerror(e));
    }
    b_prefixes(v);
    return SK_OK;
}

const char *sk_dkim_verifier_next_query(const sk_dkim_verifier *v)
{
    for (size_t i = 0; i < v->nsigs; i++)
        if (v->sigs[i].state == SIG_WAITING && v->finished) return v->sigs[i].qname;
    return NULL;
}

int dkim_key_name(const dkim_sig *g, char *out, size_t cap)
{
    int n = snprintf(out, cap, "%s._domainkey.%s", g->selector, g->domain);
    if (n < 0 || (size_t)n >= cap) return -1;
    sk_ascii_lower(out, (size_t)n);
    return 0;
}

static void result_set(sk_dkim_result *r, sk_dkim_status st, const char *fmt, ...) SK_PRINTF(3, 4);
static void result_set(sk_dkim_result *r, sk_dkim_status st, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->reason, sizeof r->reason, fmt, ap);
    va_end(ap);
    r->status = st;
}

sk_dkim_status dkim_sig_precheck(const dkim_sig *g, int64_t now, sk_dkim_result *r)
{
    if (g->algo == SK_DKIM_RSA_SHA1)
        result_set(r, SK_DKIM_FAIL, "rsa-sha1 is not accepted (RFC 8301 3.1)");
    else if (g->has_x && g->x < now)
        result_set(r, SK_DKIM_FAIL, "signature expired (x=%lld)", (long long)g->x);
    else if (g->has_t && g->t > now + SK_DKIM_CLOCK_SKEW_S)
        result_set(r, SK_DKIM_POLICY, "time stamp t=%lld is in the future", (long long)g->t);
    else
        return SK_DKIM_NONE;
    return r->status;
}

void dkim_sig_evaluate(const dkim_sig *g, const char *qname, sk_dns_status st,
                       const char *const *records, size_t n, const unsigned char *hh, size_t hh_len,
                       int bh_ok, uint64_t body_octets, sk_dkim_result *r)
{
    if (st == SK_DNS_TEMPFAIL) {
        result_set(r, SK_DKIM_TEMPERROR, "key lookup of %s failed for now (DNS)", qname);
        return;
    }
    if (st != SK_DNS_OK || n == 0) {
        result_set(r, SK_DKIM_PERMERROR, "no key for signature at %s", qname);
        return;
    }
    if (n > 1) {
        /* 3.6.2.2: several records for one selector give undefined results. */
        result_set(r, SK_DKIM_PERMERROR, "%zu TXT records at %s where one key record belongs", n,
                   qname);
        return;
    }
    dkim_key_record k;
    char why[200] = "";
    sk_err ke = dkim_key_record_parse(records[0], strlen(records[0]), &k, why, sizeof why);
    if (ke == SK_ERR_NOMEM) {
        result_set(r, SK_DKIM_TEMPERROR, "out of memory reading the key at %s", qname);
        return;
    }
    if (ke) {
        result_set(r, SK_DKIM_PERMERROR, "key syntax error at %s: %s", qname, why);
        return;
    }
    r->key_type = k.type;
    r->key_bits = k.bits;
    r->testing = k.testing;
    /* ARC's signatures have no AUID: t=s (which is about i=) cannot apply. */
    const char *at = g->identity ? strrchr(g->identity, '@') : NULL;
    int want_ed = g->algo == SK_DKIM_ED25519_SHA256;
    if (k.revoked)
        result_set(r, SK_DKIM_PERMERROR, "key revoked (empty p= at %s)", qname);
    else if (want_ed != (k.type == SK_DKIM_KEY_ED25519))
        result_set(r, SK_DKIM_PERMERROR, "inappropriate key algorithm: a %s key for %s",
                   sk_dkim_key_type_name(k.type), sk_dkim_algo_name(g->algo));
    else if (!k.sha256_ok)
        result_set(r, SK_DKIM_PERMERROR, "the key's h= does not allow sha256");
    else if (k.strict && at && strcasecmp(at + 1, g->domain))
        result_set(r, SK_DKIM_PERMERROR, "the key says t=s but i= is in a subdomain of %s",
                   g->domain);
    else if (k.type == SK_DKIM_KEY_RSA && k.bits < SK_DKIM_RSA_BITS_MIN)
        result_set(r, SK_DKIM_FAIL, "RSA key of %u bits is under %u (RFC 8301 3.2)", k.bits,
                   (unsigned)SK_DKIM_RSA_BITS_MIN);
    else if (k.type == SK_DKIM_KEY_RSA && k.bits > SK_DKIM_RSA_BITS_MAX)
        result_set(r, SK_DKIM_PERMERROR, "RSA key of %u bits is over %u", k.bits,
                   (unsigned)SK_DKIM_RSA_BITS_MAX);
    else if (g->has_l && g->l > body_octets)
        result_set(r, SK_DKIM_FAIL, "l=%llu is longer than the body (%llu octets)",
                   (unsigned long long)g->l, (unsigned long long)body_octets);
    else if (!bh_ok)
        result_set(r, SK_DKIM_FAIL, "body hash did not verify");
    else if (!dkim_verify_digest(k.pkey, g->algo, hh, hh_len, g->b, g->b_len))
        result_set(r, SK_DKIM_FAIL, "signature did not verify");
    else if (g->has_l && g->l < body_octets)
        /* RFC 6376 8.2: what follows the signed part could be anything. */
        result_set(r, SK_DKIM_POLICY,
                   "verified, but l=%llu signs only part of the body (%llu octets)",
                   (unsigned long long)g->l, (unsigned long long)body_octets);
    else
        result_set(r, SK_DKIM_PASS, "%s",
                   k.testing ? "verified (key in testing mode, t=y)" : "verified");
    dkim_key_record_clear(&k);
}

/* One signature, once its key record is in. */
static void evaluate(vsig *s, sk_dns_status st, const char *const *records, size_t n)
{
    dkim_sig_evaluate(&s->sig, s->qname, st, records, n, s->hh, s->hh_len, s->bh_ok,
                      s->r.body_octets, &s->r);
    s->state = SIG_DONE;
}

/* The number of signatures the answer was for. */
static int answer_sigs(sk_dkim_verifier *v, const char *name, sk_dns_status status,
                       const char *const *records, size_t n)
{
    int any = 0;
    for (size_t i = 0; i < v->nsigs; i++) {
        vsig *s = &v->sigs[i];
        if (s->state != SIG_WAITING || strcasecmp(s->qname, name)) continue;
        evaluate(s, status, records, n);
        any++;
    }
    return any;
}

/* The lookups' view of the signatures. */
static const char *waiting_for(void *owner, size_t i)
{
    const sk_dkim_verifier *v = owner;
    return v->sigs[i].state == SIG_WAITING ? v->sigs[i].qname : NULL;
}

static void apply_answer(void *owner, const char *name, sk_dns_status st,
                         const char *const *records, size_t n)
{
    (void)answer_sigs(owner, name, st, records, n);
}

sk_err sk_dkim_verifier_answer(sk_dkim_verifier *v, const char *name, sk_dns_status status,
                               const char *const *records, size_t n)
{
    return answer_sigs(v, name, status, records, n) ? SK_OK : SK_ERR_NOT_FOUND;
}

/* ---- through the resolver ---- */

static void resolved(void *ctx)
{
    sk_dkim_verifier *v = ctx;
    v->done(v->done_ctx, v);
}

sk_err sk_dkim_verifier_resolve(sk_dkim_verifier *v, sk_resolver *r, sk_dkim_done_fn done,
                                void *ctx)
{
    if (!v->finished || dkim_lookups_busy(&v->lookups)) return SK_ERR_STATE;
    v->done = done;
    v->done_ctx = ctx;
    return dkim_lookups_resolve(&v->lookups, r, v->nsigs, done ? resolved : NULL, v);
}

sk_err sk_dkim_verifier_resolve_sync(sk_dkim_verifier *v, const sk_resolver_opts *o, sk_error *err)
{
    if (!v->finished) return SK_OK;
    return dkim_lookups_resolve_sync(&v->lookups, v->nsigs, o, err);
}

size_t sk_dkim_verifier_count(const sk_dkim_verifier *v)
{
    return v->nsigs;
}

const sk_dkim_result *sk_dkim_verifier_result(const sk_dkim_verifier *v, size_t i)
{
    return i < v->nsigs ? &v->sigs[i].r : NULL;
}

size_t sk_dkim_verifier_skipped(const sk_dkim_verifier *v)
{
    return v->skipped;
}

sk_dkim_status sk_dkim_verifier_summary(const sk_dkim_verifier *v)
{
    static const sk_dkim_status order[] = {SK_DKIM_PASS,   SK_DKIM_TEMPERROR, SK_DKIM_FAIL,
                                           SK_DKIM_POLICY, SK_DKIM_PERMERROR, SK_DKIM_NEUTRAL};
    for (size_t o = 0; o < sizeof order / sizeof order[0]; o++)
        for (size_t i = 0; i < v->nsigs; i++)
            if (v->sigs[i].state == SIG_DONE && v->sigs[i].r.status == order[o]) return order[o];
    return SK_DKIM_NONE;
}

void sk_dkim_verifier_free(sk_dkim_verifier *v)
{
    if (!v) return;
    dkim_lookups_detach(&v->lookups);
    for (size_t i = 0; i < v->nsigs; i++) dkim_sig_clear(&v->sigs[i].sig);
    dkim_body_checks_clear(&v->bhs);
    sk_free(v->sigs);
    dkim_msg_clear(&v->msg);
    sk_free(v);
}
