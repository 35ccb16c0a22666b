/* Server side of AUTH PLAIN and LOGIN (RFC 4954, RFC 4616), and crypt(3)
 * password checks and hashes for the daemon's users file (libxcrypt). */
/* OpenSSL's pre-1.1 names include a macro "sk_free", which is ours. */
#ifndef OPENSSL_NO_DEPRECATED
#define OPENSSL_API_COMPAT    30000
#define OPENSSL_NO_DEPRECATED 1
#endif
#include "sasl/sasl_server.h"

#include <smtpkit/auth.h>

#include <crypt.h>
#include <openssl/crypto.h>
#include <stdlib.h>
#include <string.h>

sk_err sk_sasl_server_plain(const char *b64, size_t n, sk_buf *out, const char **authzid,
                            const char **user, const char **password)
{
    sk_buf_reset(out);
    sk_err e = sk_base64_decode(out, b64, n);
    if (e) return e;
    /* RFC 4616 2: message = [authzid] UTF8NUL authcid UTF8NUL passwd. */
    const char *d = out->data ? out->data : "";
    const char *nul1 = memchr(d, '\0', out->len);
    if (!nul1) return SK_ERR_SYNTAX;
    const char *nul2 = memchr(nul1 + 1, '\0', out->len - (size_t)(nul1 + 1 - d));
    if (!nul2 || memchr(nul2 + 1, '\0', out->len - (size_t)(nul2 + 1 - d))) return SK_ERR_SYNTAX;
    if (nul2 == nul1 + 1) return SK_ERR_SYNTAX;
    *authzid = d;
    *user = nul1 + 1;
    *password = nul2 + 1;
    return SK_OK;
}

sk_err sk_sasl_server_login(const char *b64, size_t n, sk_buf *out)
{
    sk_buf_reset(out);
    sk_err e = sk_base64_decode(out, b64, n);
    if (!e) e = sk_buf_append(out, "", 0); /* NUL-terminated even when empty */
    if (e) return e;
    if (out->len && memchr(out->data, '\0', out->len)) return SK_ERR_SYNTAX;
    return SK_OK;
}

int sk_sasl_verify_crypt(const char *password, const char *hash)
{
    if (!password || !hash || !*hash || *hash == '*' || *hash == '!') return 0;
    /* struct crypt_data is large (about 32 KiB): keep it off the stack. */
    struct crypt_data *cd = sk_calloc(1, sizeof *cd);
    if (!cd) return 0;
    const char *h = crypt_r(password, hash, cd);
    int ok = 0;
    /* libxcrypt returns a string starting with '*' on failure. */
    if (h && *h != '*') {
        size_t hl = strlen(h), want = strlen(hash);
        ok = hl == want && CRYPTO_memcmp(h, hash, hl) == 0;
    }
    OPENSSL_cleanse(cd, sizeof *cd);
    sk_free(cd);
    return ok;
}

sk_err sk_sasl_hash_password(const char *password, char **out)
{
    *out = NULL;
    if (!password) return SK_ERR_INVAL;
    /* Preferred first: yescrypt is libxcrypt's default for new hashes. */
    static const char *const prefixes[] = {"$y$", "$6$"};
    for (size_t i = 0; i < sizeof prefixes / sizeof prefixes[0]; i++) {
        char *setting = crypt_gensalt_ra(prefixes[i], 0, NULL, 0);
        if (!setting) continue;
        struct crypt_data *cd = sk_calloc(1, sizeof *cd);
        if (!cd) {
            free(setting);
            return SK_ERR_NOMEM;
        }
        const char *h = crypt_r(password, setting, cd);
        free(setting);
        sk_err e = SK_ERR_UNSUPPORTED;
        if (h && *h != '*') {
            *out = sk_strdup(h);
            e = *out ? SK_OK : SK_ERR_NOMEM;
        }
        OPENSSL_cleanse(cd, sizeof *cd);
        sk_free(cd);
        if (e != SK_ERR_UNSUPPORTED) return e;
    }
    return SK_ERR_UNSUPPORTED;
}
