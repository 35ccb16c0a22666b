/* DKIM signing keys (PEM files, generation, the key record to publish)
 * and the public-key operations on header digests (RFC 6376 3.3,
 * RFC 8301, RFC 8463), with OpenSSL. */
#include "dkim/dkim_int.h"

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct sk_dkim_key {
    EVP_PKEY *pkey;
    sk_dkim_key_type type;
    unsigned bits;
    int refs; /* atomic */
    /* Set up once when the key is made and only read afterwards (by any
     * number of signing threads): SHA-256 fetched from the provider (an
     * EVP_sha256() would be looked up again at every EVP_DigestInit_ex),
     * and a signing context initialized for the key, copied for each
     * signature (about 0.1 us against 1.3 us for Ed25519's
     * EVP_DigestSignInit and 2.2 us for RSA's init and settings). RSA
     * blinding stays as OpenSSL sets it. */
    EVP_MD *sha256;
    EVP_MD_CTX *ed_tmpl;
    EVP_PKEY_CTX *rsa_tmpl;
};

/* The context every signature with k starts from. */
static int sign_template(sk_dkim_key *k)
{
    k->sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
    if (!k->sha256) return 0;
    if (k->type == SK_DKIM_KEY_ED25519) {
        k->ed_tmpl = EVP_MD_CTX_new();
        return k->ed_tmpl && EVP_DigestSignInit(k->ed_tmpl, NULL, NULL, NULL, k->pkey) == 1;
    }
    k->rsa_tmpl = EVP_PKEY_CTX_new(k->pkey, NULL);
    return k->rsa_tmpl && EVP_PKEY_sign_init(k->rsa_tmpl) == 1 &&
           EVP_PKEY_CTX_set_rsa_padding(k->rsa_tmpl, RSA_PKCS1_PADDING) == 1 &&
           EVP_PKEY_CTX_set_signature_md(k->rsa_tmpl, k->sha256) == 1;
}

static void key_release(sk_dkim_key *k)
{
    EVP_MD_CTX_free(k->ed_tmpl);
    EVP_PKEY_CTX_free(k->rsa_tmpl);
    EVP_MD_free(k->sha256);
    EVP_PKEY_free(k->pkey);
    sk_free(k);
}

const char *sk_dkim_key_type_name(sk_dkim_key_type t)
{
    return t == SK_DKIM_KEY_ED25519 ? "ed25519" : "rsa";
}

sk_err sk_dkim_key_type_parse(const char *name, sk_dkim_key_type *out)
{
    if (name && !strcmp(name, "rsa")) {
        *out = SK_DKIM_KEY_RSA;
        return SK_OK;
    }
    if (name && !strcmp(name, "ed25519")) {
        *out = SK_DKIM_KEY_ED25519;
        return SK_OK;
    }
    return SK_ERR_SYNTAX;
}

const char *sk_dkim_algo_name(sk_dkim_algo a)
{
    switch (a) {
    case SK_DKIM_RSA_SHA256:
        return "rsa-sha256";
    case SK_DKIM_ED25519_SHA256:
        return "ed25519-sha256";
    case SK_DKIM_RSA_SHA1:
        return "rsa-sha1";
    default:
        return "?";
    }
}

const char *sk_dkim_canon_name(sk_dkim_canon c)
{
    return c == SK_DKIM_CANON_SIMPLE ? "simple" : "relaxed";
}

/* Wrap a key after checking it suits DKIM; takes pkey. */
static sk_err wrap(EVP_PKEY *pkey, const char *name, sk_dkim_key **out, sk_error *err)
{
    sk_dkim_key_type type;
    int id = EVP_PKEY_get_base_id(pkey);
    unsigned bits = (unsigned)EVP_PKEY_get_bits(pkey);
    if (id == EVP_PKEY_RSA) {
        type = SK_DKIM_KEY_RSA;
        if (bits < SK_DKIM_RSA_BITS_MIN) {
            EVP_PKEY_free(pkey);
            return sk_error_set(err, SK_ERR_SYNTAX, SK_STEP_NONE,
                                "%s: RSA key of %u bits; DKIM needs %u bits or more (RFC 8301)",
                                name, bits, (unsigned)SK_DKIM_RSA_BITS_MIN);
        }
        if (bits > SK_DKIM_RSA_BITS_MAX) {
            EVP_PKEY_free(pkey);
            return sk_error_set(err, SK_ERR_SYNTAX, SK_STEP_NONE,
                                "%s: RSA key of %u bits; verifiers need not take more than %u",
                                name, bits, (unsigned)SK_DKIM_RSA_BITS_MAX);
        }
    } else if (id == EVP_PKEY_ED25519) {
        type = SK_DKIM_KEY_ED25519;
    } else {
        const char *tn = OBJ_nid2sn(id);
        EVP_PKEY_free(pkey);
        return sk_error_set(err, SK_ERR_SYNTAX, SK_STEP_NONE,
                            "%s: a %s key cannot sign DKIM (RSA or Ed25519 only)", name,
                            tn ? tn : "unknown");
    }
    sk_dkim_key *k = sk_calloc(1, sizeof *k);
    if (!k) {
        EVP_PKEY_free(pkey);
        return sk_error_set(err, SK_ERR_NOMEM, SK_STEP_NONE, "out of memory");
    }
    k->pkey = pkey;
    k->type = type;
    k->bits = bits;
    k->refs = 1;
    if (!sign_template(k)) {
        key_release(k);
        ERR_clear_error();
        return sk_error_set(err, SK_ERR_NOMEM, SK_STEP_NONE,
                            "%s: cannot set up signing with the key", name);
    }
    *out = k;
    return SK_OK;
}

/* No passphrase is ever given: an encrypted key is refused, and said so. */
static int no_password(char *buf, int size, int rwflag, void *u)
{
    *(int *)u = 1;
    return -1;
}

sk_err sk_dkim_key_from_pem(const char *pem, size_t len, const char *name, sk_dkim_key **out,
                            sk_error *err)
{
    *out = NULL;
    if (len > SK_DKIM_KEY_FILE_MAX_OCTETS)
        return sk_error_set(err, SK_ERR_TOO_LONG, SK_STEP_NONE, "%s: larger than %u octets", name,
                            (unsigned)SK_DKIM_KEY_FILE_MAX_OCTETS);
    BIO *bio = BIO_new_mem_buf(pem, (int)len);
    if (!bio) return sk_error_set(err, SK_ERR_NOMEM, SK_STEP_NONE, "out of memory");
    int asked = 0;
    /* Reads PKCS#8 ("PRIVATE KEY") and the traditional "RSA PRIVATE KEY". */
    EVP_PKEY *pkey = PEM_read_bio_PrivateKey(bio, NULL, no_password, &asked);
    BIO_free(bio);
    ERR_clear_error();
    if (!pkey) {
        if (asked)
            return sk_error_set(err, SK_ERR_SYNTAX, SK_STEP_NONE,
                                "%s: the key is encrypted; DKIM keys are read without a passphrase",
                                name);
        return sk_error_set(err, SK_ERR_SYNTAX, SK_STEP_NONE,
                            "%s: no PEM private key (PKCS#8 or RSA) in it", name);
    }
    return wrap(pkey, name, out, err);
}

sk_err sk_dkim_key_load(const char *path, sk_dkim_key **out, sk_error *err)
{
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return sk_error_set(err, sk_err_from_errno(errno, SK_FILE_READ), SK_STEP_NONE,
                            "cannot open DKIM key %s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) || !S_ISREG(st.st_mode)) {
        close(fd);
        return sk_error_set(err, SK_ERR_IO, SK_STEP_NONE, "DKIM key %s is not a regular file",
                            path);
    }
    if (st.st_size > (off_t)SK_DKIM_KEY_FILE_MAX_OCTETS) {
        close(fd);
        return sk_error_set(err, SK_ERR_TOO_LONG, SK_STEP_NONE,
                            "DKIM key %s: larger than %u octets", path,
                            (unsigned)SK_DKIM_KEY_FILE_MAX_OCTETS);
    }
    char *buf = sk_malloc((size_t)st.st_size + 1);
    if (!buf) {
        close(fd);
        return sk_error_set(err, SK_ERR_NOMEM, SK_STEP_NONE, "out of memory");
    }
    size_t got = 0;
    while (got < (size_t)st.st_size) {
        ssize_t r = read(fd, buf + got, (size_t)st.st_size - got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
            int saved = errno;
            close(fd);
            sk_free(buf);
            return sk_error_set(err, SK_ERR_IO, SK_STEP_NONE, "cannot read DKIM key %s: %s", path,
                                r < 0 ? strerror(saved) : "file shrank while reading");
        }
        got += (size_t)r;
    }
    close(fd);
    char name[600];
    snprintf(name, sizeof name, "DKIM key %s", path);
    sk_err e = sk_dkim_key_from_pem(buf, got, name, out, err);
    OPENSSL_cleanse(buf, got);
    sk_free(buf);
    return e;
}

sk_err sk_dkim_key_generate(sk_dkim_key_type type, unsigned bits, sk_dkim_key **out, sk_error *err)
{
    *out = NULL;
    EVP_PKEY *pkey;
    if (type == SK_DKIM_KEY_RSA) {
        if (!bits) bits = SK_DKIM_RSA_BITS_DEFAULT;
        if (bits < SK_DKIM_RSA_BITS_MIN || bits > SK_DKIM_RSA_BITS_MAX)
            return sk_error_set(
                err, SK_ERR_INVAL, SK_STEP_NONE, "RSA keys for DKIM have %u to %u bits, not %u",
                (unsigned)SK_DKIM_RSA_BITS_MIN, (unsigned)SK_DKIM_RSA_BITS_MAX, bits);
        pkey = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)bits);
    } else {
        pkey = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    }
    ERR_clear_error();
    if (!pkey) return sk_error_set(err, SK_ERR_NOMEM, SK_STEP_NONE, "key generation failed");
    return wrap(pkey, "new key", out, err);
}

sk_err sk_dkim_key_pem(const sk_dkim_key *k, sk_buf *out)
{
    BIO *bio = BIO_new(BIO_s_mem());
    if (!bio) return SK_ERR_NOMEM;
    sk_err e = SK_ERR_NOMEM;
    if (PEM_write_bio_PrivateKey(bio, k->pkey, NULL, NULL, 0, NULL, NULL)) {
        char *p;
        long n = BIO_get_mem_data(bio, &p);
        e = sk_buf_append(out, p, (size_t)n);
    }
    ERR_clear_error();
    BIO_free(bio); /* mem BIOs are cleared on free */
    return e;
}

sk_err sk_dkim_key_record(const sk_dkim_key *k, sk_buf *out)
{
    unsigned char *der = NULL, raw[32];
    size_t len = sizeof raw;
    const unsigned char *pub = raw;
    if (k->type == SK_DKIM_KEY_RSA) {
        int n = i2d_PUBKEY(k->pkey, &der);
        if (n <= 0) return SK_ERR_NOMEM;
        pub = der;
        len = (size_t)n;
    } else if (!EVP_PKEY_get_raw_public_key(k->pkey, raw, &len)) {
        return SK_ERR_NOMEM;
    }
    sk_err e = sk_buf_printf(out, "v=DKIM1; k=%s; p=", sk_dkim_key_type_name(k->type));
    if (!e) e = sk_base64_encode(out, pub, len);
    OPENSSL_free(der);
    return e;
}

sk_err sk_dkim_txt_strings(const char *value, sk_buf *out)
{
    size_t n = strlen(value);
    if (n == 0) return sk_buf_puts(out, "\"\"");
    for (size_t i = 0; i < n; i += SK_DKIM_TXT_STRING_MAX_OCTETS) {
        size_t take = n - i < SK_DKIM_TXT_STRING_MAX_OCTETS ? n - i : SK_DKIM_TXT_STRING_MAX_OCTETS;
        sk_err e = sk_buf_puts(out, i ? " \"" : "\"");
        /* Record values here are tag lists: no '"' or '\\' to escape. */
        for (size_t j = 0; !e && j < take; j++) {
            char c = value[i + j];
            if (c == '"' || c == '\\') e = sk_buf_putc(out, '\\');
            if (!e) e = sk_buf_putc(out, c);
        }
        if (!e) e = sk_buf_putc(out, '"');
        if (e) return e;
    }
    return SK_OK;
}

sk_dkim_key_type sk_dkim_key_type_of(const sk_dkim_key *k)
{
    return k->type;
}

unsigned sk_dkim_key_bits(const sk_dkim_key *k)
{
    return k->bits;
}

sk_dkim_key *sk_dkim_key_ref(sk_dkim_key *k)
{
    if (k) __atomic_add_fetch(&k->refs, 1, __ATOMIC_RELAXED);
    return k;
}

void sk_dkim_key_free(sk_dkim_key *k)
{
    if (!k || __atomic_sub_fetch(&k->refs, 1, __ATOMIC_ACQ_REL) != 0) return;
    key_release(k);
}

const EVP_MD *dkim_key_sha256(const sk_dkim_key *k)
{
    return k->sha256;
}

EVP_PKEY *dkim_key_pkey(const sk_dkim_key *k)
{
    return k->pkey;
}

/* ---- public-key operations ---- */

static int key_suits(EVP_PKEY *key, sk_dkim_algo a)
{
    int id = EVP_PKEY_get_base_id(key);
    return a == SK_DKIM_ED25519_SHA256 ? id == EVP_PKEY_ED25519 : id == EVP_PKEY_RSA;
}

sk_err dkim_sign_digest(const sk_dkim_key *k, sk_dkim_algo a, const unsigned char *digest,
                        size_t dlen, sk_buf *sig)
{
    if (!key_suits(k->pkey, a) || a == SK_DKIM_RSA_SHA1) return SK_ERR_INVAL;
    sk_err e = SK_ERR_NOMEM;
    size_t slen = 0;
    if (a == SK_DKIM_ED25519_SHA256) {
        /* RFC 8463 3: PureEd25519 over the SHA-256 digest of the data. */
        EVP_MD_CTX *c = EVP_MD_CTX_new();
        if (c && EVP_MD_CTX_copy_ex(c, k->ed_tmpl) == 1 &&
            EVP_DigestSign(c, NULL, &slen, digest, dlen) == 1 && !sk_buf_reserve(sig, slen) &&
            EVP_DigestSign(c, (unsigned char *)sig->data + sig->len, &slen, digest, dlen) == 1) {
            sig->len += slen;
            e = SK_OK;
        }
        EVP_MD_CTX_free(c);
    } else {
        EVP_PKEY_CTX *c = EVP_PKEY_CTX_dup(k->rsa_tmpl);
        if (c && EVP_PKEY_sign(c, NULL, &slen, digest, dlen) == 1 && !sk_buf_reserve(sig, slen) &&
            EVP_PKEY_sign(c, (unsigned char *)sig->data + sig->len, &slen, digest, dlen) == 1) {
            sig->len += slen;
            e = SK_OK;
        }
        EVP_PKEY_CTX_free(c);
    }
    ERR_clear_error();
    return e;
}

int dkim_verify_digest(EVP_PKEY *key, sk_dkim_algo a, const unsigned char *digest, size_t dlen,
                       const unsigned char *sig, size_t slen)
{
    if (!key_suits(key, a)) return 0;
    int ok = 0;
    if (a == SK_DKIM_ED25519_SHA256) {
        EVP_MD_CTX *c = EVP_MD_CTX_new();
        ok = c && EVP_DigestVerifyInit(c, NULL, NULL, NULL, key) == 1 &&
             EVP_DigestVerify(c, sig, slen, digest, dlen) == 1;
        EVP_MD_CTX_free(c);
    } else {
        EVP_PKEY_CTX *c = EVP_PKEY_CTX_new(key, NULL);
        ok = c && EVP_PKEY_verify_init(c) == 1 &&
             EVP_PKEY_CTX_set_rsa_padding(c, RSA_PKCS1_PADDING) == 1 &&
             EVP_PKEY_CTX_set_signature_md(c, dkim_algo_md(a)) == 1 &&
             EVP_PKEY_verify(c, sig, slen, digest, dlen) == 1;
        EVP_PKEY_CTX_free(c);
    }
    ERR_clear_error();
    return ok;
}
