/* Server TLS context: loads the certificate chain and key; RFC 8996 and
 * RFC 8314 4.1 ask for TLS 1.2 or later. */
#include "tls/tls_server.h"

#include <openssl/err.h>
#include <stdio.h>

static void openssl_errors(char *out, size_t n)
{
    unsigned long e = ERR_get_error();
    if (!e) {
        snprintf(out, n, "unknown error");
        return;
    }
    ERR_error_string_n(e, out, n);
    ERR_clear_error();
}

SSL_CTX *sk_tls_server_ctx_new(const char *cert_file, const char *key_file, sk_error *err)
{
    char why[256];
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx) {
        openssl_errors(why, sizeof why);
        sk_error_set(err, SK_ERR_TLS, SK_STEP_TLS, "TLS context: %s", why);
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
    /* Idle sessions should not keep 2 x 16 KiB record buffers each. */
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    if (SSL_CTX_use_certificate_chain_file(ctx, cert_file) != 1) {
        openssl_errors(why, sizeof why);
        sk_error_set(err, SK_ERR_CONFIG, SK_STEP_TLS, "certificate %s: %s", cert_file, why);
        goto fail;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, key_file, SSL_FILETYPE_PEM) != 1) {
        openssl_errors(why, sizeof why);
        sk_error_set(err, SK_ERR_CONFIG, SK_STEP_TLS, "key %s: %s", key_file, why);
        goto fail;
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
        openssl_errors(why, sizeof why);
        sk_error_set(err, SK_ERR_CONFIG, SK_STEP_TLS, "key %s does not match certificate %s: %s",
                     key_file, cert_file, why);
        goto fail;
    }
    return ctx;
fail:
    SSL_CTX_free(ctx);
    return NULL;
}
