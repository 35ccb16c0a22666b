/* Private TLS helpers for the client session (src/client): OpenSSL
 * contexts with verification, a socket BIO, and filling sk_tls_info. */
#ifndef SK_TLS_INT_H
#define SK_TLS_INT_H

/* OpenSSL's pre-1.1 names include a macro "sk_free", which is ours:
 * hide the deprecated names (we use none). */
#ifndef OPENSSL_NO_DEPRECATED
#define OPENSSL_API_COMPAT    30000
#define OPENSSL_NO_DEPRECATED 1
#endif

#include <openssl/ssl.h>
#include <smtpkit/tls.h>

/* The socket a client's TLS runs over. The BIO sends with MSG_NOSIGNAL (a
 * closed peer is an error, not SIGPIPE in the caller's process) and keeps
 * the first octets received so a failed handshake can say what the server
 * sent instead (plain SMTP, HTTP). */
typedef struct sk_tls_sock {
    int fd;
    unsigned char first[16];
    size_t nfirst;
    BIO_METHOD *meth; /* owned; freed by sk_tls_sock_release */
} sk_tls_sock;

/* A client context: TLS 1.2 minimum, trust from ca_file or the system
 * store. Verification outcome is read after the handshake (see
 * sk_tls_client_ssl_new), so the chain can be reported when it fails. */
SSL_CTX *sk_tls_client_ctx_new(const char *ca_file, sk_error *err);
/* An SSL for the socket, with SNI (unless name is an IP address) and the
 * name or address to verify against. */
SSL *sk_tls_client_ssl_new(SSL_CTX *ctx, sk_tls_sock *sock, const char *name, sk_error *err);
void sk_tls_sock_release(sk_tls_sock *sock);
/* Fill info from a session whose handshake completed. */
void sk_tls_info_fill(SSL *ssl, const char *name, int insecure, sk_tls_info *info);
/* OpenSSL's queued errors as one line (consumes them). */
void sk_tls_error_string(char *out, size_t n);

#endif
