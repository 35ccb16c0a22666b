/* DKIM signing (RFC 6376 5): one or more signatures over a message in one
 * pass, the body hashed as it streams in. */
#include "dkim/dkim_int.h"

#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

/* RFC 6376 5.4.1's list, and what mail carries today that a replayer
 * would like to change: MIME structure, list and unsubscribe fields
 * (RFC 2369, RFC 8058), threading, Feedback-ID. */
static const char *const default_headers[] = {"From",
                                              "Reply-To",
                                              "Subject",
                                              "Date",
                                              "To",
                                              "Cc",
                                              "Sender",
                                              "Message-ID",
                                              "In-Reply-To",
                                              "References",
                                              "MIME-Version",
                                              "Content-Type",
                                              "Content-Transfer-Encoding",
                                              "Content-ID",
                                              "Content-Description",
                                              "Content-Language",
                                              "Resent-Date",
                                              "Resent-From",
                                              "Resent-Sender",
                                              "Resent-To",
                                              "Resent-Cc",
                                              "Resent-Message-ID",
                                              "List-Id",
                                              "List-Help",
                                              "List-Unsubscribe",
                                              "List-Unsubscribe-Post",
                                              "List-Subscribe",
                                              "List-Post",
                                              "List-Owner",
                                              "List-Archive",
                                              "Feedback-ID",
                                              "Autocrypt",
                                              NULL};
const char *const dkim_default_oversign[] = {"From", NULL};

const char *const *sk_dkim_default_headers(void)
{
    return default_headers;
}

typedef struct sign_item {
    sk_dkim_key *key;
    char *domain, *selector, *identity;
    sk_dkim_canon hcanon, bcanon;
    /* NULL-terminated: the caller's lists copied, or the defaults (static,
     * not copied: the common case, once per message). */
    const char *const *headers, *const *oversign;
    char **headers_own, **oversign_own;
    int64_t timestamp;
    uint64_t expire_s;
} sign_item;

struct sk_dkim_signer {
    dkim_msg msg;
    size_t n;
    sign_item items[SK_DKIM_SIGN_MAX];
    int bh_used[SK_DKIM_CANON__COUNT];
    /* Last: not zeroed when the signer is made (their stages are 8 KiB);
     * dkim_body_hash_init sets up the ones used. */
    dkim_body_hash bh[SK_DKIM_CANON__COUNT];
};

static void on_body(void *ctx, const char *p, size_t n)
{
    sk_dkim_signer *s = ctx;
    for (int c = 0; c < SK_DKIM_CANON__COUNT; c++)
        if (s->bh_used[c]) dkim_body_hash_feed(&s->bh[c], p, n);
}

static void free_list(char **l)
{
    for (size_t i = 0; l && l[i]; i++) sk_free(l[i]);
    sk_free(l);
}

int dkim_header_name_valid(const char *s)
{
    if (!*s) return 0;
    for (; *s; s++)
        if ((unsigned char)*s < 0x21 || (unsigned char)*s > 0x7e || *s == ':') return 0;
    return 1;
}

static sk_err copy_list(const char *const *src, size_t idx, const char *what, char ***out,
                        sk_error *err)
{
    size_t n = 0;
    *out = NULL;
    while (src[n]) {
        if (!dkim_header_name_valid(src[n]))
            return sk_error_set(err, SK_ERR_INVAL, SK_STEP_NONE,
                                "signature %zu: '%.100s' in %s is not a header field name", idx + 1,
                                src[n], what);
        n++;
    }
    char **l = sk_calloc(n + 1, sizeof *l);
    for (size_t i = 0; l && i < n; i++)
        if (!(l[i] = sk_strdup(src[i]))) {
            free_list(l);
            l = NULL;
        }
    if (!l) return sk_error_set(err, SK_ERR_NOMEM, SK_STEP_NONE, "out of memory");
    *out = l;
    return SK_OK;
}

/* A caller's list is checked and copied; a default one only taken. */
static sk_err take_list(const char *const *src, const char *const *dflt, size_t idx,
                        const char *what, const char *const **use, char ***own, sk_error *err)
{
    *own = NULL;
    if (!src) {
        *use = dflt;
        return SK_OK;
    }
    sk_err e = copy_list(src, idx, what, own, err);
    *use = (const char *const *)*own;
    return e;
}

/* The i= value: [local-part] "@" domain, with no octet the tag list or a
 * header cannot carry as it is. */
static int identity_valid(const char *id, const char *domain)
{
    const char *at = strrchr(id, '@');
    if (!at) return 0;
    for (const char *p = id; *p; p++)
        if ((unsigned char)*p <= 0x20 || *p == ';' || *p == 0x7f) return 0;
    return dkim_domain_valid(at + 1, strlen(at + 1)) &&
           dkim_domain_within(at + 1, strlen(at + 1), domain, strlen(domain));
}

static sk_err item_init(sign_item *it, const sk_dkim_sign_opts *o, size_t idx, sk_error *err)
{
    if (!o->key)
        return sk_error_set(err, SK_ERR_INVAL, SK_STEP_NONE, "signature %zu: no key", idx + 1);
    if (!o->domain || !dkim_domain_valid(o->domain, strlen(o->domain)))
        return sk_error_set(err, SK_ERR_INVAL, SK_STEP_NONE,
                            "signature %zu: '%.100s' is not a domain name", idx + 1,
                            o->domain ? o->domain : "");
    if (!o->selector || !dkim_domain_valid(o->selector, strlen(o->selector)))
        return sk_error_set(err, SK_ERR_INVAL, SK_STEP_NONE,
                            "signature %zu: '%.100s' is not a selector (letters, digits, '-', "
                            "'_' in dot-separated labels)",
                            idx + 1, o->selector ? o->selector : "");
    if (o->identity && !identity_valid(o->identity, o->domain))
        return sk_error_set(err, SK_ERR_INVAL, SK_STEP_NONE,
                            "signature %zu: identity '%.100s' must be an address at %s or below",
                            idx + 1, o->identity, o->domain);
    if ((unsigned)o->header_canon >= SK_DKIM_CANON__COUNT ||
        (unsigned)o->body_canon >= SK_DKIM_CANON__COUNT)
        return sk_error_set(err, SK_ERR_INVAL, SK_STEP_NONE,
                            "signature %zu: unknown canonicalization", idx + 1);
    const char *const *hl = o->headers ? o->headers : default_headers;
    int from = !o->headers; /* the default list has From */
    for (size_t i = 0; !from && hl[i]; i++)
        if (!strcasecmp(hl[i], "from")) from = 1;
    if (!from)
        return sk_error_set(err, SK_ERR_INVAL, SK_STEP_NONE,
                            "signature %zu: the header list must include From (RFC 6376 5.4)",
                            idx + 1);
    it->hcanon = o->header_canon;
    it->bcanon = o->body_canon;
    it->timestamp = o->timestamp;
    it->expire_s = o->expire_s;
    it->domain = sk_strdup(o->domain);
    it->selector = sk_strdup(o->selector);
    it->identity = o->identity ? sk_strdup(o->identity) : NULL;
    if (!it->domain || !it->selector || (o->identity && !it->identity))
        return sk_error_set(err, SK_ERR_NOMEM, SK_STEP_NONE, "out of memory");
    sk_err e = take_list(o->headers, default_headers, idx, "the header list", &it->headers,
                         &it->headers_own, err);
    if (!e)
        e = take_list(o->oversign, dkim_default_oversign, idx, "the over-signed list",
                      &it->oversign, &it->oversign_own, err);
    if (e) return e;
    it->key = sk_dkim_key_ref(o->key);
    return SK_OK;
}

void sk_dkim_signer_free(sk_dkim_signer *s)
{
    if (!s) return;
    for (size_t i = 0; i < s->n; i++) {
        sign_item *it = &s->items[i];
        sk_dkim_key_free(it->key);
        sk_free(it->domain);
        sk_free(it->selector);
        sk_free(it->identity);
        free_list(it->headers_own);
        free_list(it->oversign_own);
    }
    for (int c = 0; c < SK_DKIM_CANON__COUNT; c++) dkim_body_hash_clear(&s->bh[c]);
    dkim_msg_clear(&s->msg);
    sk_free(s);
}

sk_dkim_signer *sk_dkim_signer_new(const sk_dkim_sign_opts *opts, size_t n, sk_error *err)
{
    if (!opts || n == 0 || n > SK_DKIM_SIGN_MAX) {
        sk_error_set(err, SK_ERR_INVAL, SK_STEP_NONE, "between 1 and %d signatures per message",
                     SK_DKIM_SIGN_MAX);
        return NULL;
    }
    sk_dkim_signer *s = sk_malloc(sizeof *s);
    if (!s) {
        sk_error_set(err, SK_ERR_NOMEM, SK_STEP_NONE, "out of memory");
        return NULL;
    }
    memset(s, 0, offsetof(sk_dkim_signer, bh));
    for (int c = 0; c < SK_DKIM_CANON__COUNT; c++) s->bh[c].ctx = NULL; /* for the free */
    dkim_msg_init(&s->msg, NULL, NULL, on_body, s);
    for (size_t i = 0; i < n; i++) {
        s->n = i + 1;
        if (item_init(&s->items[i], &opts[i], i, err)) {
            sk_dkim_signer_free(s);
            return NULL;
        }
        sk_dkim_canon c = opts[i].body_canon;
        if (!s->bh_used[c]) {
            if (dkim_body_hash_init(&s->bh[c], c, dkim_key_sha256(opts[i].key), UINT64_MAX)) {
                sk_error_set(err, SK_ERR_NOMEM, SK_STEP_NONE, "out of memory");
                sk_dkim_signer_free(s);
                return NULL;
            }
            s->bh_used[c] = 1;
        }
    }
    return s;
}

sk_err sk_dkim_signer_feed(sk_dkim_signer *s, const void *bytes, size_t len)
{
    return dkim_msg_feed(&s->msg, bytes, len);
}

sk_err dkim_fold_start(dkim_folder *f, sk_buf *b, const char *name)
{
    f->b = b;
    sk_err e = sk_buf_printf(b, "%s:", name);
    f->col = b->len;
    return e;
}

sk_err dkim_fold_put(dkim_folder *f, const char *sep, const char *piece, size_t n)
{
    sk_err e = SK_OK;
    size_t sl = strlen(sep);
    if (f->col > 1 && f->col + sl + n > SK_MIME_LINE_SOFT_OCTETS) {
        f->col = 1;
        e = sk_buf_puts(f->b, "\r\n\t");
        sl = 0;
    }
    if (!e && sl) e = sk_buf_append(f->b, sep, sl);
    if (!e) e = sk_buf_append(f->b, piece, n);
    f->col += sl + n;
    return e;
}

sk_err dkim_fold_tag(dkim_folder *f, const char *name, const char *value)
{
    /* name=value; as one piece (no line break inside a tag), built on the
     * stack when it fits: a tag is short, and this runs for every tag of
     * every signature. */
    char small[256];
    size_t nl = strlen(name), vl = strlen(value), n = nl + vl + 2;
    char *t = n <= sizeof small ? small : sk_malloc(n);
    if (!t) return SK_ERR_NOMEM;
    memcpy(t, name, nl);
    t[nl] = '=';
    memcpy(t + nl + 1, value, vl);
    t[n - 1] = ';';
    sk_err e = dkim_fold_put(f, " ", t, n);
    if (t != small) sk_free(t);
    return e;
}

sk_err dkim_fold_num(dkim_folder *f, const char *name, long long value)
{
    char num[32];
    snprintf(num, sizeof num, "%lld", value);
    return dkim_fold_tag(f, name, num);
}

sk_err dkim_fold_b(dkim_folder *f, const unsigned char *sig, size_t len)
{
    sk_buf b64 = SK_BUF_INIT(SK_DKIM_SIGNATURE_MAX_OCTETS);
    sk_err e = sk_base64_encode(&b64, sig, len);
    for (size_t i = 0; !e && i < b64.len;) {
        if (f->col >= SK_MIME_LINE_SOFT_OCTETS) {
            f->col = 1;
            e = sk_buf_puts(f->b, "\r\n\t");
        }
        size_t room = SK_MIME_LINE_SOFT_OCTETS - f->col, take = b64.len - i;
        if (take > room) take = room;
        if (!e) e = sk_buf_append(f->b, b64.data + i, take);
        f->col += take;
        i += take;
    }
    if (!e) e = sk_buf_puts(f->b, "\r\n");
    sk_buf_free(&b64);
    return e;
}

sk_err dkim_fold_sign(dkim_folder *f, sk_dkim_key *key, dkim_sign_hash_fn hash, void *ctx)
{
    sk_dkim_algo algo = dkim_key_algo(key);
    sk_buf sig = SK_BUF_INIT(SK_DKIM_RSA_BITS_MAX / 8 + 64);
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    sk_err e = md ? dkim_fold_put(f, " ", "b=", 2) : SK_ERR_NOMEM;
    /* The hash covers the field as it is now, with an empty b=. */
    /* Both algorithms we sign with hash with SHA-256 (RFC 8301, 8463). */
    if (!e && !EVP_DigestInit_ex(md, dkim_key_sha256(key), NULL)) e = SK_ERR_NOMEM;
    if (!e) e = hash(ctx, md, f->b->data, f->b->len);
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned dlen = 0;
    if (!e && !EVP_DigestFinal_ex(md, digest, &dlen)) e = SK_ERR_NOMEM;
    if (!e) e = dkim_sign_digest(key, algo, digest, dlen, &sig);
    if (!e) e = dkim_fold_b(f, (const unsigned char *)sig.data, sig.len);
    EVP_MD_CTX_free(md);
    sk_buf_free(&sig);
    return e;
}

static size_t count_fields(const dkim_msg *m, const char *name, size_t nl)
{
    size_t c = 0;
    for (size_t i = 0; i < m->nfields; i++) c += (size_t)dkim_field_is(m, &m->fields[i], name, nl);
    return c;
}

static int in_list(const char *const *l, const char *name, size_t nl)
{
    for (size_t i = 0; l[i]; i++)
        if (strlen(l[i]) == nl && !strncasecmp(l[i], name, nl)) return 1;
    return 0;
}

sk_dkim_algo dkim_key_algo(const sk_dkim_key *k)
{
    return sk_dkim_key_type_of(k) == SK_DKIM_KEY_ED25519 ? SK_DKIM_ED25519_SHA256
                                                         : SK_DKIM_RSA_SHA256;
}

/* What a DKIM-Signature or an ARC-Message-Signature covers: the fields
 * it names, then its own. */
typedef struct field_hash {
    dkim_msg *m;
    const char **names;
    size_t n;
    sk_dkim_canon c;
} field_hash;

static sk_err hash_fields(void *ctx, EVP_MD_CTX *md, const char *field, size_t len)
{
    field_hash *h = ctx;
    return dkim_hash_headers(md, h->m, h->names, h->n, h->c, field, len);
}

sk_err dkim_sign_field(dkim_msg *m, const dkim_sign_spec *it, const char *bh64, sk_buf *out,
                       sk_error *err)
{
    sk_dkim_algo algo = dkim_key_algo(it->key);
    /* h=: every listed field as often as it occurs, the over-signed ones
     * once more; each name once from the list (the first spelling). */
    const char **names = sk_malloc(SK_DKIM_SIGNED_HEADERS_MAX * sizeof *names); /* nn set */
    sk_buf field = SK_BUF_INIT(SK_DKIM_SIGNATURE_MAX_OCTETS);
    sk_buf tmp = SK_BUF_INIT(SK_DKIM_SIGNATURE_MAX_OCTETS);
    size_t nn = 0;
    sk_err e = names ? SK_OK : SK_ERR_NOMEM;
    for (size_t i = 0; !e && it->headers[i]; i++) {
        /* Names are compared by length first: a list of 32 names would
         * otherwise take 500 strcasecmp calls for its duplicates. */
        const char *name = it->headers[i];
        size_t nl = strlen(name);
        int dup = 0;
        for (size_t j = 0; j < i && !dup; j++)
            dup = strlen(it->headers[j]) == nl && !strncasecmp(it->headers[j], name, nl);
        if (dup) continue;
        size_t times = count_fields(m, name, nl) + (size_t)in_list(it->oversign, name, nl);
        if (nn + times > SK_DKIM_SIGNED_HEADERS_MAX) {
            e = sk_error_set(err, SK_ERR_TOO_LONG, SK_STEP_NONE,
                             "more than %d header fields to sign", SK_DKIM_SIGNED_HEADERS_MAX);
            break;
        }
        while (times--) names[nn++] = it->headers[i];
    }
    int64_t now = (int64_t)time(NULL);
    int64_t t = it->timestamp == 0 ? now : it->timestamp;
    dkim_folder f;
    if (!e) e = dkim_fold_start(&f, &field, it->field);
    /* RFC 8617 4.1.2: ARC has the instance where DKIM has v=, and no AUID. */
    if (!e) e = it->instance ? dkim_fold_num(&f, "i", it->instance) : dkim_fold_tag(&f, "v", "1");
    if (!e) e = dkim_fold_tag(&f, "a", sk_dkim_algo_name(algo));
    if (!e) {
        char c[32];
        snprintf(c, sizeof c, "%s/%s", sk_dkim_canon_name(it->hcanon),
                 sk_dkim_canon_name(it->bcanon));
        e = dkim_fold_tag(&f, "c", c);
    }
    if (!e) e = dkim_fold_tag(&f, "d", it->domain);
    if (!e) e = dkim_fold_tag(&f, "s", it->selector);
    if (!e && it->identity && !it->instance) e = dkim_fold_tag(&f, "i", it->identity);
    if (!e && it->timestamp >= 0) e = dkim_fold_num(&f, "t", t);
    if (!e && it->expire_s) e = dkim_fold_num(&f, "x", t + (int64_t)it->expire_s);
    /* h= folds between names (FWS is allowed around the colons). */
    for (size_t i = 0; !e && i < nn; i++) {
        sk_buf_reset(&tmp);
        size_t nl = strlen(names[i]);
        e = sk_buf_reserve(&tmp, nl + 4);
        if (e) break;
        e = sk_buf_append(&tmp, i ? ":" : "h=", i ? 1 : 2);
        for (size_t k = 0; !e && k < nl; k++) tmp.data[tmp.len++] = (char)sk_to_lower(names[i][k]);
        if (!e && i + 1 == nn) e = sk_buf_putc(&tmp, ';');
        if (!e) e = dkim_fold_put(&f, i ? "" : " ", tmp.data, tmp.len);
    }
    if (!e) e = dkim_fold_tag(&f, "bh", bh64);
    field_hash h = {m, names, nn, it->hcanon};
    if (!e) e = dkim_fold_sign(&f, it->key, hash_fields, &h);
    if (!e) e = sk_buf_append(out, field.data, field.len);
    if (e && err && err->err == SK_OK)
        sk_error_set(err, e, SK_STEP_NONE, "cannot sign for %s: %s", it->domain, sk_strerror(e));
    sk_buf_free(&field);
    sk_buf_free(&tmp);
    sk_free(names);
    return e;
}

static sk_err sign_one(sk_dkim_signer *s, sign_item *it, const char *bh64, sk_buf *out,
                       sk_error *err)
{
    dkim_sign_spec spec = {.field = "DKIM-Signature",
                           .key = it->key,
                           .domain = it->domain,
                           .selector = it->selector,
                           .identity = it->identity,
                           .hcanon = it->hcanon,
                           .bcanon = it->bcanon,
                           .headers = (const char *const *)it->headers,
                           .oversign = (const char *const *)it->oversign,
                           .timestamp = it->timestamp,
                           .expire_s = it->expire_s};
    return dkim_sign_field(&s->msg, &spec, bh64, out, err);
}

sk_err sk_dkim_signer_finish(sk_dkim_signer *s, sk_buf *out, sk_error *err)
{
    sk_error_clear(err);
    sk_err e = dkim_msg_finish(&s->msg, err);
    if (e) return e;
    if (!count_fields(&s->msg, "From", 4))
        return sk_error_set(err, SK_ERR_SYNTAX, SK_STEP_NONE,
                            "the message has no From field, which DKIM must sign (RFC 6376 5.4)");
    char bh64[SK_DKIM_CANON__COUNT][EVP_MAX_MD_SIZE * 2];
    for (int c = 0; c < SK_DKIM_CANON__COUNT; c++) {
        if (!s->bh_used[c]) continue;
        unsigned char d[EVP_MAX_MD_SIZE];
        size_t dl;
        sk_buf b = SK_BUF_INIT(sizeof bh64[c] - 1);
        e = dkim_body_hash_final(&s->bh[c], d, &dl);
        if (!e) e = sk_base64_encode(&b, d, dl);
        if (!e) memcpy(bh64[c], b.data, b.len + 1);
        sk_buf_free(&b);
        s->bh_used[c] = 0; /* finished: no more feeding */
        if (e) return sk_error_set(err, e, SK_STEP_NONE, "body hash: %s", sk_strerror(e));
    }
    size_t start = out->len;
    for (size_t i = 0; i < s->n; i++) {
        e = sign_one(s, &s->items[i], bh64[s->items[i].bcanon], out, err);
        if (e) {
            sk_buf_truncate(out, start);
            return e;
        }
    }
    return SK_OK;
}

sk_err sk_dkim_sign(const sk_dkim_sign_opts *opts, size_t n, const void *msg, size_t len,
                    sk_buf *out, sk_error *err)
{
    sk_dkim_signer *s = sk_dkim_signer_new(opts, n, err);
    if (!s) return err ? err->err : SK_ERR_INVAL;
    sk_err e = sk_dkim_signer_feed(s, msg, len);
    if (e)
        dkim_msg_error(e, err);
    else
        e = sk_dkim_signer_finish(s, out, err);
    sk_dkim_signer_free(s);
    return e;
}
