/* ARC chain verification (RFC 8617 5.2): the chain's shape when the
 * header block is in, the ARC-Message-Signatures' body hashes as the body
 * streams, then every AMS and AS against its key (through the resolver or
 * from the caller), and the chain's status, reason and oldest-pass. */
#include "arc/arc_int.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

enum { SIG_IDLE = 0, SIG_WAITING, SIG_DONE };

/* One signature to check: an instance's AMS or AS. */
typedef struct asig {
    const dkim_sig *sig;
    sk_dkim_result r;
    int state;
    unsigned char hh[EVP_MAX_MD_SIZE];
    size_t hh_len;
    int bh_ok; /* AMS: the body hash matched; AS: 1 */
    uint64_t body_octets;
    char qname[SK_DKIM_KEY_NAME_MAX_OCTETS + 1];
} asig;

struct sk_arc_verifier {
    dkim_msg msg;
    int64_t now;
    arc_chain chain;
    /* [instance][0 = AMS, 1 = AS], instances 1..chain.n */
    asig (*sigs)[2];
    dkim_body_checks bhs;    /* one per body canonicalization, digest and l= */
    dkim_body_check **bh_of; /* [instance]: its AMS's body hash */
    int finished;
    int decided;
    sk_arc_result result;
    sk_arc_set_info *info; /* [instance] */
    dkim_lookups lookups;  /* signature i: sigs[i / 2 + 1][i % 2] */
    sk_arc_done_fn done;
    void *done_ctx;
};

static const char *const status_names[] = {"none", "pass", "fail"};
_Static_assert(sizeof status_names / sizeof status_names[0] == SK_ARC_STATUS__COUNT,
               "a name for each status");

const char *sk_arc_status_name(sk_arc_status s)
{
    return (unsigned)s < SK_ARC_STATUS__COUNT ? status_names[s] : "?";
}

static void decide(sk_arc_verifier *v, sk_arc_status st, unsigned at, const char *fmt, ...)
    SK_PRINTF(4, 5);
static void decide(sk_arc_verifier *v, sk_arc_status st, unsigned at, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(v->result.reason, sizeof v->result.reason, fmt, ap);
    va_end(ap);
    v->result.status = st;
    v->result.failed_instance = st == SK_ARC_FAIL ? at : 0;
    v->decided = 1;
}

/* The header block is in: collect the chain, decide what its shape
 * decides (RFC 8617 5.2 steps 1 to 3), and set up the body hashes the
 * AMSes need before the body streams through. */
static sk_err on_head(void *ctx, dkim_msg *m)
{
    sk_arc_verifier *v = ctx;
    arc_chain *c = &v->chain;
    sk_err e = arc_chain_collect(c, m);
    if (e) return e;
    v->result.instances = c->n;
    if (!c->nfields) {
        decide(v, SK_ARC_NONE, 0, "no ARC sets");
        return SK_OK;
    }
    if (c->n) {
        v->info = sk_calloc(c->n + 1, sizeof *v->info);
        if (!v->info) return SK_ERR_NOMEM;
        for (unsigned i = 1; i <= c->n; i++) {
            sk_arc_set_info *in = &v->info[i];
            const arc_set *s = &c->sets[i];
            in->instance = i;
            in->cv = arc_chain_cv(c, i);
            if (s->ams) {
                dkim_copy_str(in->ams_domain, sizeof in->ams_domain, s->ams->domain);
                dkim_copy_str(in->ams_selector, sizeof in->ams_selector, s->ams->selector);
            }
            if (s->as) {
                dkim_copy_str(in->as_domain, sizeof in->as_domain, s->as->domain);
                dkim_copy_str(in->as_selector, sizeof in->as_selector, s->as->selector);
            }
        }
    }
    /* Step 2: the most recent sealer said the chain it got had failed. */
    if (c->n && c->sets[c->n].as && arc_chain_cv(c, c->n) == SK_ARC_FAIL) {
        decide(v, SK_ARC_FAIL, c->n, "the ARC-Seal of instance %u says cv=fail: the chain ended",
               c->n);
        return SK_OK;
    }
    /* Step 3. */
    if (!c->shape_ok) {
        decide(v, SK_ARC_FAIL, 0, "%s", c->why);
        return SK_OK;
    }
    for (unsigned i = 1; i <= c->n; i++) {
        sk_arc_status cv = arc_chain_cv(c, i);
        sk_arc_status want = i == 1 ? SK_ARC_NONE : SK_ARC_PASS;
        if (cv != want) {
            decide(v, SK_ARC_FAIL, 0, "the ARC-Seal of instance %u says cv=%s where %s belongs", i,
                   sk_arc_status_name(cv), sk_arc_status_name(want));
            return SK_OK;
        }
    }
    v->sigs = sk_calloc(c->n + 1, sizeof *v->sigs);
    v->bh_of = sk_calloc(c->n + 1, sizeof *v->bh_of);
    if (!v->sigs || !v->bh_of || dkim_body_checks_init(&v->bhs, c->n)) return SK_ERR_NOMEM;
    for (unsigned i = 1; i <= c->n; i++) {
        const dkim_sig *g = c->sets[i].ams;
        if (!(v->bh_of[i] = dkim_body_checks_for(&v->bhs, g))) return SK_ERR_NOMEM;
        v->sigs[i][0].sig = g;
        v->sigs[i][1].sig = c->sets[i].as;
    }
    return SK_OK;
}

static const char *waiting_for(void *owner, size_t i);
static void apply_answer(void *owner, const char *name, sk_dns_status st,
                         const char *const *records, size_t n);

sk_arc_verifier *sk_arc_verifier_new(const sk_arc_verify_opts *opts, sk_error *err)
{
    sk_arc_verifier *v = sk_calloc(1, sizeof *v);
    if (!v) {
        sk_error_set(err, SK_ERR_NOMEM, SK_STEP_NONE, "out of memory");
        return NULL;
    }
    dkim_msg_init(&v->msg, on_head, v, dkim_body_checks_feed, &v->bhs);
    dkim_lookups_init(&v->lookups, v, waiting_for, apply_answer);
    v->now = opts && opts->now ? opts->now : (int64_t)time(NULL);
    v->result.status = SK_ARC_FAIL;
    snprintf(v->result.reason, sizeof v->result.reason, "not finished");
    return v;
}

sk_err sk_arc_verifier_feed(sk_arc_verifier *v, const void *bytes, size_t len)
{
    if (v->finished) return SK_ERR_STATE;
    return dkim_msg_feed(&v->msg, bytes, len);
}

/* Every signature's key answered: RFC 8617 5.2 steps 4 to 7. */
static void conclude(sk_arc_verifier *v)
{
    unsigned n = v->chain.n;
    for (unsigned i = 1; i <= n; i++) {
        v->info[i].ams = v->sigs[i][0].r.status;
        v->info[i].as = v->sigs[i][1].r.status;
        dkim_copy_str(v->info[i].ams_reason, sizeof v->info[i].ams_reason, v->sigs[i][0].r.reason);
        dkim_copy_str(v->info[i].as_reason, sizeof v->info[i].as_reason, v->sigs[i][1].r.reason);
    }
    const sk_dkim_result *last = &v->sigs[n][0].r;
    if (last->status != SK_DKIM_PASS) {
        v->result.temporary = last->status == SK_DKIM_TEMPERROR;
        decide(v, SK_ARC_FAIL, n,
               "the ARC-Message-Signature of instance %u (d=%s) did not pass: %s", n,
               v->chain.sets[n].ams->domain, last->reason);
        return;
    }
    /* Step 5: the newest run of AMSes that still verify. */
    v->result.oldest_pass = 0;
    for (unsigned i = n - 1; i >= 1; i--)
        if (v->sigs[i][0].r.status != SK_DKIM_PASS) {
            v->result.oldest_pass = i + 1;
            break;
        }
    /* Step 6: every seal, newest first. */
    for (unsigned i = n; i >= 1; i--) {
        const sk_dkim_result *r = &v->sigs[i][1].r;
        if (r->status != SK_DKIM_PASS) {
            v->result.temporary = r->status == SK_DKIM_TEMPERROR;
            decide(v, SK_ARC_FAIL, i, "the ARC-Seal of instance %u (d=%s) did not pass: %s", i,
                   v->chain.sets[i].as->domain, r->reason);
            return;
        }
    }
    decide(v, SK_ARC_PASS, 0, "%u ARC set%s verified", n, n == 1 ? "" : "s");
}

static int waiting(const sk_arc_verifier *v)
{
    if (!v->sigs) return 0;
    for (unsigned i = 1; i <= v->chain.n; i++)
        for (int k = 0; k < 2; k++)
            if (v->sigs[i][k].state == SIG_WAITING) return 1;
    return 0;
}

/* The seal's hash for instance i: sets 1..i-1, then AAR i, AMS i and AS i
 * with its b= value deleted (RFC 8617 5.1.1). */
static sk_err seal_hash(sk_arc_verifier *v, unsigned i, asig *s)
{
    const dkim_msg *m = &v->msg;
    const arc_set *set = &v->chain.sets[i];
    sk_buf scratch = SK_BUF_INIT(SK_DKIM_HEADER_BLOCK_MAX_OCTETS + 4);
    sk_buf as = SK_BUF_INIT(SK_DKIM_HEADER_BLOCK_MAX_OCTETS + 4);
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    sk_err e = md ? SK_OK : SK_ERR_NOMEM;
    if (!e && !EVP_DigestInit_ex(md, dkim_algo_md(s->sig->algo), NULL)) e = SK_ERR_NOMEM;
    if (!e) e = arc_seal_hash_sets(md, &v->chain, m, i - 1, &scratch);
    for (int k = ARC_AAR; k <= ARC_AMS && !e; k++) {
        const dkim_field *f = &m->fields[set->field[k] - 1];
        e = arc_seal_hash_field(md, m->head.data + f->off, f->len, 0, &scratch);
    }
    const dkim_field *f = &m->fields[set->field[ARC_AS] - 1];
    if (!e) e = dkim_field_strip_b(m->head.data + f->off, f->len, &as);
    if (!e) e = arc_seal_hash_field(md, as.data, as.len, 1, &scratch);
    unsigned hl = 0;
    if (!e && !EVP_DigestFinal_ex(md, s->hh, &hl)) e = SK_ERR_NOMEM;
    s->hh_len = hl;
    EVP_MD_CTX_free(md);
    sk_buf_free(&scratch);
    sk_buf_free(&as);
    return e;
}

/* What needs no key, and the key's name, for one signature. */
static void prepare(sk_arc_verifier *v, asig *s)
{
    if (dkim_sig_precheck(s->sig, v->now, &s->r) != SK_DKIM_NONE) {
        s->state = SIG_DONE;
        return;
    }
    if (dkim_key_name(s->sig, s->qname, sizeof s->qname)) {
        s->r.status = SK_DKIM_PERMERROR;
        snprintf(s->r.reason, sizeof s->r.reason, "key name %s._domainkey.%s is too long",
                 s->sig->selector, s->sig->domain);
        s->state = SIG_DONE;
        return;
    }
    s->state = SIG_WAITING;
}

sk_err sk_arc_verifier_finish(sk_arc_verifier *v, sk_error *err)
{
    if (v->finished) return sk_error_set(err, SK_ERR_STATE, SK_STEP_NONE, "already finished");
    v->finished = 1;
    sk_err e = dkim_msg_finish(&v->msg, err);
    if (e) return e;
    if (v->decided) return SK_OK;
    if (dkim_body_checks_final(&v->bhs))
        return sk_error_set(err, SK_ERR_NOMEM, SK_STEP_NONE, "body hash failed");
    for (unsigned i = 1; i <= v->chain.n; i++) {
        asig *ams = &v->sigs[i][0], *as = &v->sigs[i][1];
        ams->body_octets = v->bh_of[i]->h.total;
        ams->bh_ok = dkim_body_check_matches(v->bh_of[i], ams->sig);
        const dkim_field *f = &v->msg.fields[v->chain.sets[i].field[ARC_AMS] - 1];
        e = dkim_sig_header_hash(&v->msg, ams->sig, v->msg.head.data + f->off, f->len, ams->hh,
                                 &ams->hh_len);
        if (!e) e = seal_hash(v, i, as);
        if (e) return sk_error_set(err, e, SK_STEP_NONE, "header hash: %s", sk_strerror(e));
        as->bh_ok = 1;
        prepare(v, ams);
        prepare(v, as);
    }
    if (!waiting(v)) conclude(v);
    return SK_OK;
}

const char *sk_arc_verifier_next_query(const sk_arc_verifier *v)
{
    if (!v->finished || !v->sigs) return NULL;
    for (unsigned i = 1; i <= v->chain.n; i++)
        for (int k = 0; k < 2; k++)
            if (v->sigs[i][k].state == SIG_WAITING) return v->sigs[i][k].qname;
    return NULL;
}

static int answer_sigs(sk_arc_verifier *v, const char *name, sk_dns_status status,
                       const char *const *records, size_t n)
{
    int any = 0;
    for (unsigned i = 1; v->sigs && i <= v->chain.n; i++)
        for (int k = 0; k < 2; k++) {
            asig *s = &v->sigs[i][k];
            if (s->state != SIG_WAITING || strcasecmp(s->qname, name)) continue;
            dkim_sig_evaluate(s->sig, s->qname, status, records, n, s->hh, s->hh_len, s->bh_ok,
                              s->body_octets, &s->r);
            s->state = SIG_DONE;
            any++;
        }
    if (any && !waiting(v)) conclude(v);
    return any;
}

/* The lookups' view of the signatures. */
static const char *waiting_for(void *owner, size_t i)
{
    const sk_arc_verifier *v = owner;
    const asig *s = &v->sigs[i / 2 + 1][i % 2];
    return s->state == SIG_WAITING ? s->qname : NULL;
}

static void apply_answer(void *owner, const char *name, sk_dns_status st,
                         const char *const *records, size_t n)
{
    (void)answer_sigs(owner, name, st, records, n);
}

sk_err sk_arc_verifier_answer(sk_arc_verifier *v, const char *name, sk_dns_status status,
                              const char *const *records, size_t n)
{
    return answer_sigs(v, name, status, records, n) ? SK_OK : SK_ERR_NOT_FOUND;
}

/* ---- through the resolver ---- */

/* Signatures 0..count-1 of the lookups. */
static size_t sig_count(const sk_arc_verifier *v)
{
    return v->sigs ? 2 * (size_t)v->chain.n : 0;
}

static void resolved(void *ctx)
{
    sk_arc_verifier *v = ctx;
    v->done(v->done_ctx, v);
}

sk_err sk_arc_verifier_resolve(sk_arc_verifier *v, sk_resolver *r, sk_arc_done_fn done, void *ctx)
{
    if (!v->finished || dkim_lookups_busy(&v->lookups)) return SK_ERR_STATE;
    v->done = done;
    v->done_ctx = ctx;
    return dkim_lookups_resolve(&v->lookups, r, sig_count(v), done ? resolved : NULL, v);
}

sk_err sk_arc_verifier_resolve_sync(sk_arc_verifier *v, const sk_resolver_opts *o, sk_error *err)
{
    if (!v->finished) return SK_OK;
    return dkim_lookups_resolve_sync(&v->lookups, sig_count(v), o, err);
}

const sk_arc_result *sk_arc_verifier_result(const sk_arc_verifier *v)
{
    return &v->result;
}

unsigned sk_arc_verifier_sets(const sk_arc_verifier *v)
{
    return v->info ? v->chain.n : 0;
}

const sk_arc_set_info *sk_arc_verifier_set(const sk_arc_verifier *v, unsigned instance)
{
    return v->info && instance >= 1 && instance <= v->chain.n ? &v->info[instance] : NULL;
}

void sk_arc_verifier_free(sk_arc_verifier *v)
{
    if (!v) return;
    dkim_lookups_detach(&v->lookups);
    dkim_body_checks_clear(&v->bhs);
    sk_free(v->bh_of);
    sk_free(v->sigs);
    sk_free(v->info);
    arc_chain_clear(&v->chain);
    dkim_msg_clear(&v->msg);
    sk_free(v);
}

void sk_arc_authres_result(const sk_arc_result *r, const char *remote_ip, sk_arc_authres *out)
{
    memset(out, 0, sizeof *out);
    size_t np = 0;
    if (r->status == SK_ARC_PASS) {
        snprintf(out->oldest_pass, sizeof out->oldest_pass, "%u", r->oldest_pass);
        out->props[np++] = (sk_authres_prop){"header", "oldest-pass", out->oldest_pass};
    }
    if (remote_ip && *remote_ip) {
        dkim_copy_str(out->remote_ip, sizeof out->remote_ip, remote_ip);
        out->props[np++] = (sk_authres_prop){"smtp", "remote-ip", out->remote_ip};
    }
    dkim_copy_str(out->reason, sizeof out->reason, r->reason);
    out->result = (sk_authres_result){.method = "arc",
                                      .result = sk_arc_status_name(r->status),
                                      .reason = out->reason[0] ? out->reason : NULL,
                                      .props = out->props,
                                      .n_props = np};
}
