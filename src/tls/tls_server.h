/* Server-side TLS contexts (certificate and key from PEM files) for the
 * SMTP server's STARTTLS and implicit TLS listeners. Private. */
#ifndef SK_TLS_SERVER_H
#define SK_TLS_SERVER_H

/* OpenSSL's pre-1.1 names include a macro "sk_free", which is ours. */
#ifndef OPENSSL_NO_DEPRECATED
#define OPENSSL_API_COMPAT    30000
#define OPENSSL_NO_DEPRECATED 1
#endif

#include <openssl/ssl.h>
#include <smtpkit/util.h>

/* A context with TLS 1.2 minimum, the certificate chain and key from the
 * files (the key must match). NULL on failure, err says which file and why. */
SSL_CTX *sk_tls_server_ctx_new(const char *cert_file, const char *key_file, sk_error *err);

#endif
