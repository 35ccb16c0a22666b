/* ARC sealing (RFC 8617 5.1): a new ARC set for a message we forward, on
 * top of the chain it carries: ARC-Authentication-Results with our
 * results, ARC-Message-Signature over the message as it leaves (its body
 * hashed as it streams in), ARC-Seal over the chain. */
#include "arc/arc_int.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

/* RFC 8617 4.1.2 recommends that the AMS sign the DKIM-Signature fields
 * the message carries, besides what DKIM signs. */
#define ARC_EXTRA_HEADERS 1

struct sk_arc_sealer {
    dkim_msg msg;
    dkim_body_hash bh;
    sk_dkim_key *key;
    char *domain, *selector, *authserv_id, *results_text;
    sk_authres_result *results; /* shallow copy: the caller's strings live until finish */
    size_t n_results;
    sk_arc_status cv;
    const char **headers; /* NULL-terminated; strings are the caller's or static */
    char **header_copies;
    sk_dkim_canon hcanon, bcanon;
    int64_t timestamp;
    unsigned instance;
};

void sk_arc_sealer_free(sk_arc_sealer *s)
{
    if (!s) return;
    dkim_body_hash_clear(&s->bh);
    dkim_msg_clear(&s->msg);
    sk_dkim_key_free(s->key);
    sk_free(s->domain);
    sk_free(s->selector);
    sk_free(s->authserv_id);
    sk_free(s->results_text);
    sk_free(s->results);
    for (size_t i = 0; s->header_copies && s->header_copies[i]; i++) sk_free(s->header_copies[i]);
    sk_free(s->header_copies);
    sk_free(s->headers);
    sk_free(s);
}

static void on_body(void *ctx, const char *p, size_t n)
{
    sk_arc_sealer *s = ctx;
    dkim_body_hash_feed(&s->bh, p, n);
}

/* The AMS's header list: the caller's (checked) or the default, copied. */
static sk_err take_headers(sk_arc_sealer *s, const char *const *hl, sk_error *err)
{
    const char *const *src = hl ? hl : sk_dkim_default_headers();
    size_t n = 0;
    int from = 0;
    for (; src[n]; n++) {
        if (!dkim_header_name_valid(src[n]))
            return sk_error_set(err, SK_ERR_INVAL, SK_STEP_NONE,
                                "ARC: '%.100s' is not a header field name", src[n]);
        if (!strcasecmp(src[n], "ARC-Seal") || !strcasecmp(src[n], "Authentication-Results"))
            return sk_error_set(err, SK_ERR_INVAL, SK_STEP_NONE,
                                "ARC: the ARC-Message-Signature may not sign %s (RFC 8617 4.1.2)",
                                src[n]);
        if (!strcasecmp(src[n], "From")) from = 1;
    }
    if (!from)
        return sk_error_set(err, SK_ERR_INVAL, SK_STEP_NONE,
                            "ARC: the header list must include From (RFC 6376 5.4)");
    s->headers = sk_calloc(n + ARC_EXTRA_HEADERS + 1, sizeof *s->headers);
    s->header_copies = sk_calloc(n + 1, sizeof *s->header_copies);
    if (!s->headers || !s->header_copies)
        return sk_error_set(err, SK_ERR_NOMEM, SK_STEP_NONE, "out of memory");
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (!(s->header_copies[i] = sk_strdup(src[i])))
            return sk_error_set(err, SK_ERR_NOMEM, SK_STEP_NONE, "out of memory");
        s->headers[k++] = s->header_copies[i];
    }
    if (!hl) s->headers[k++] = "DKIM-Signature";
    return SK_OK;
}

sk_arc_sealer *sk_arc_sealer_new(const sk_arc_seal_opts *o, sk_error *err)
{
    if (!o) {
        sk_error_set(err, SK_ERR_INVAL, SK_STEP_NONE, "ARC: no options");
        return NULL;
    }
    const char *bad = !o->key ? "no key"
                      : !o->domain || !dkim_domain_valid(o->domain, strlen(o->domain))
                          ? "the domain is not a domain name"
                      : !o->selector || !dkim_domain_valid(o->selector, strlen(o->selector))
                          ? "the selector is not dot-separated labels"
                      : !o->authserv_id || !*o->authserv_id     ? "no authserv-id"
                      : !o->results && !o->results_text         ? "no results for the AAR"
                      : (unsigned)o->cv >= SK_ARC_STATUS__COUNT ? "an unknown cv"
                      : (unsigned)o->header_canon >= SK_DKIM_CANON__COUNT ||
                              (unsigned)o->body_canon >= SK_DKIM_CANON__COUNT
                          ? "an unknown canonicalization"
                          : NULL;
    if (bad) {
        sk_error_set(err, SK_ERR_INVAL, SK_STEP_NONE, "ARC: %s", bad);
        return NULL;
    }
    sk_arc_sealer *s = sk_calloc(1, sizeof *s);
    if (!s) {
        sk_error_set(err, SK_ERR_NOMEM, SK_STEP_NONE, "out of memory");
        return NULL;
    }
    dkim_msg_init(&s->msg, NULL, NULL, on_body, s);
    s->key = sk_dkim_key_ref(o->key);
    s->cv = o->cv;
    s->hcanon = o->header_canon;
    s->bcanon = o->body_canon;
    s->timestamp = o->timestamp;
    s->domain = sk_strdup(o->domain);
    s->selector = sk_strdup(o->selector);
    s->authserv_id = sk_strdup(o->authserv_id);
    int nomem = !s->domain || !s->selector || !s->authserv_id;
    if (!o->results && !(s->results_text = sk_strdup(o->results_text))) nomem = 1;
    if (o->results && o->n_results) {
        s->results = sk_calloc(o->n_results, sizeof *s->results);
        if (s->results) memcpy(s->results, o->results, o->n_results * sizeof *s->results);
        s->n_results = o->n_results;
        nomem |= !s->results;
    }
    if (!nomem && dkim_body_hash_init(&s->bh, s->bcanon, dkim_key_sha256(s->key), UINT64_MAX))
        nomem = 1;
    if (nomem) {
        sk_error_set(err, SK_ERR_NOMEM, SK_STEP_NONE, "out of memory");
        sk_arc_sealer_free(s);
        return NULL;
    }
    if (take_headers(s, o->headers, err)) {
        sk_arc_sealer_free(s);
        return NULL;
    }
    return s;
}

sk_err sk_arc_sealer_feed(sk_arc_sealer *s, const void *bytes, size_t len)
{
    return dkim_msg_feed(&s->msg, bytes, len);
}

sk_err sk_arc_sealer_set_results(sk_arc_sealer *s, const char *results_text, sk_arc_status cv,
                                 sk_error *err)
{
    if (!results_text || (unsigned)cv >= SK_ARC_STATUS__COUNT)
        return sk_error_set(err, SK_ERR_INVAL, SK_STEP_NONE, "ARC: %s",
                            results_text ? "an unknown cv" : "no results for the AAR");
    char *t = sk_strdup(results_text);
    if (!t) return sk_error_set(err, SK_ERR_NOMEM, SK_STEP_NONE, "out of memory");
    sk_free(s->results_text);
    s->results_text = t;
    sk_free(s->results);
    s->results = NULL;
    s->n_results = 0;
    s->cv = cv;
    return SK_OK;
}

unsigned sk_arc_sealer_instance(const sk_arc_sealer *s)
{
    return s->instance;
}

/* RFC 8617 5.1 steps 1 and 2: may we seal, and as which instance. */
static sk_err check_chain(sk_arc_sealer *s, const arc_chain *c, sk_error *err)
{
    if (!c->nfields) {
        if (s->cv != SK_ARC_NONE)
            return sk_error_set(err, SK_ERR_STATE, SK_STEP_NONE,
                                "ARC: the message has no ARC set, so cv must be none, not %s",
                                sk_arc_status_name(s->cv));
        s->instance = 1;
        return SK_OK;
    }
    if (c->n && c->sets[c->n].as && arc_chain_cv(c, c->n) == SK_ARC_FAIL)
        return sk_error_set(err, SK_ERR_STATE, SK_STEP_NONE,
                            "ARC: the chain ends with cv=fail at instance %u; nobody seals after "
                            "that (RFC 8617 5.1)",
                            c->n);
    if (s->cv == SK_ARC_NONE)
        return sk_error_set(err, SK_ERR_STATE, SK_STEP_NONE,
                            "ARC: the message carries ARC fields, so cv cannot be none");
    if (c->n >= SK_ARC_INSTANCE_MAX)
        return sk_error_set(err, SK_ERR_STATE, SK_STEP_NONE,
                            "ARC: the chain already has %d sets (RFC 8617 4.2.1)",
                            SK_ARC_INSTANCE_MAX);
    if (s->cv == SK_ARC_PASS && !c->shape_ok)
        return sk_error_set(err, SK_ERR_STATE, SK_STEP_NONE,
                            "ARC: cv=pass, but the chain cannot have verified: %s", c->why);
    s->instance = c->n + 1;
    return SK_OK;
}

/* What the ARC-Seal covers (RFC 8617 5.1.1): the sets before ours (none
 * on a failed chain, 5.1.2), our AAR and AMS, then the seal itself. */
typedef struct seal_hash {
    const sk_arc_sealer *s;
    const arc_chain *c;
    const char *aar, *ams;
    size_t aar_len, ams_len;
    sk_buf *scratch;
} seal_hash;

static sk_err hash_seal(void *ctx, EVP_MD_CTX *md, const char *field, size_t len)
{
    seal_hash *h = ctx;
    sk_err e = SK_OK;
    if (h->s->cv != SK_ARC_FAIL) e = arc_seal_hash_sets(md, h->c, &h->s->msg, h->c->n, h->scratch);
    if (!e) e = arc_seal_hash_field(md, h->aar, h->aar_len, 0, h->scratch);
    if (!e) e = arc_seal_hash_field(md, h->ams, h->ams_len, 0, h->scratch);
    if (!e) e = arc_seal_hash_field(md, field, len, 1, h->scratch);
    return e;
}

/* The ARC-Seal: its tags (RFC 8617 4.1.3), then its b=. */
static sk_err make_seal(sk_arc_sealer *s, const arc_chain *c, const char *aar, size_t aar_len,
                        const char *ams, size_t ams_len, sk_buf *out)
{
    sk_buf field = SK_BUF_INIT(SK_DKIM_SIGNATURE_MAX_OCTETS);
    sk_buf scratch = SK_BUF_INIT(SK_DKIM_HEADER_BLOCK_MAX_OCTETS + 4);
    dkim_folder f;
    sk_err e = dkim_fold_start(&f, &field, "ARC-Seal");
    if (!e) e = dkim_fold_num(&f, "i", s->instance);
    if (!e) e = dkim_fold_tag(&f, "a", sk_dkim_algo_name(dkim_key_algo(s->key)));
    if (!e) e = dkim_fold_tag(&f, "cv", sk_arc_status_name(s->cv));
    if (!e) e = dkim_fold_tag(&f, "d", s->domain);
    if (!e) e = dkim_fold_tag(&f, "s", s->selector);
    if (!e && s->timestamp >= 0) e = dkim_fold_num(&f, "t", s->timestamp);
    seal_hash h = {s, c, aar, ams, aar_len, ams_len, &scratch};
    if (!e) e = dkim_fold_sign(&f, s->key, hash_seal, &h);
    if (!e) e = sk_buf_append(out, field.data, field.len);
    sk_buf_free(&field);
    sk_buf_free(&scratch);
    return e;
}

sk_err sk_arc_sealer_finish(sk_arc_sealer *s, sk_buf *out, sk_error *err)
{
    sk_error_clear(err);
    sk_err e = dkim_msg_finish(&s->msg, err);
    if (e) return e;
    /* Our fields go on top: a first line that continues a field (starts
     * with white space) would join the last of them and break the seal. */
    if (s->msg.head.len && (s->msg.head.data[0] == ' ' || s->msg.head.data[0] == '\t'))
        return sk_error_set(err, SK_ERR_SYNTAX, SK_STEP_NONE,
                            "the header block starts with a continuation line");
    int from = 0;
    for (size_t i = 0; i < s->msg.nfields && !from; i++)
        from = dkim_field_is(&s->msg, &s->msg.fields[i], "From", 4);
    if (!from)
        return sk_error_set(err, SK_ERR_SYNTAX, SK_STEP_NONE,
                            "the message has no From field, which the ARC-Message-Signature "
                            "must sign (RFC 6376 5.4)");
    /* One time stamp for the AMS and the AS. */
    if (s->timestamp == 0) s->timestamp = (int64_t)time(NULL);
    arc_chain c;
    e = arc_chain_collect(&c, &s->msg);
    if (e) {
        arc_chain_clear(&c);
        return sk_error_set(err, e, SK_STEP_NONE, "out of memory");
    }
    e = check_chain(s, &c, err);
    sk_buf aar = SK_BUF_INIT(SK_AUTHRES_HEADER_MAX_OCTETS);
    sk_buf ams = SK_BUF_INIT(SK_DKIM_SIGNATURE_MAX_OCTETS);
    sk_buf seal = SK_BUF_INIT(SK_DKIM_SIGNATURE_MAX_OCTETS);
    if (!e)
        e = s->results_text
                ? sk_authres_build_arc_text(s->instance, s->authserv_id, s->results_text, &aar, err)
                : sk_authres_build_arc(s->instance, s->authserv_id, s->results, s->n_results, &aar,
                                       err);
    if (!e) {
        unsigned char d[EVP_MAX_MD_SIZE];
        size_t dl;
        sk_buf bh64 = SK_BUF_INIT(EVP_MAX_MD_SIZE * 2);
        e = dkim_body_hash_final(&s->bh, d, &dl);
        if (!e) e = sk_base64_encode(&bh64, d, dl);
        dkim_sign_spec spec = {.field = "ARC-Message-Signature",
                               .instance = s->instance,
                               .key = s->key,
                               .domain = s->domain,
                               .selector = s->selector,
                               .hcanon = s->hcanon,
                               .bcanon = s->bcanon,
                               .headers = s->headers,
                               .oversign = dkim_default_oversign,
                               .timestamp = s->timestamp};
        if (!e) e = dkim_sign_field(&s->msg, &spec, bh64.data, &ams, err);
        sk_buf_free(&bh64);
    }
    if (!e) e = make_seal(s, &c, aar.data, aar.len, ams.data, ams.len, &seal);
    size_t start = out->len;
    if (!e) e = sk_buf_append(out, seal.data, seal.len);
    if (!e) e = sk_buf_append(out, ams.data, ams.len);
    if (!e) e = sk_buf_append(out, aar.data, aar.len);
    if (e && out->len > start) {
        out->len = start;
        out->data[start] = '\0';
    }
    if (e && err && err->err == SK_OK)
        sk_error_set(err, e, SK_STEP_NONE, "cannot seal for %s: %s", s->domain, sk_strerror(e));
    sk_buf_free(&aar);
    sk_buf_free(&ams);
    sk_buf_free(&seal);
    arc_chain_clear(&c);
    return e;
}

sk_err sk_arc_seal(const sk_arc_seal_opts *opts, const void *msg, size_t len, sk_buf *out,
                   sk_error *err)
{
    sk_arc_sealer *s = sk_arc_sealer_new(opts, err);
    if (!s) return err ? err->err : SK_ERR_INVAL;
    sk_err e = sk_arc_sealer_feed(s, msg, len);
    if (e)
        dkim_msg_error(e, err);
    else
        e = sk_arc_sealer_finish(s, out, err);
    sk_arc_sealer_free(s);
    return e;
}
