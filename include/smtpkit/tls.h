/* TLS as SMTPKit uses it: the client's TLS policy and what a TLS session
 * tells a diagnosing caller (protocol, cipher, verification, peer chain). */
#ifndef SMTPKIT_TLS_H
#define SMTPKIT_TLS_H

#include <stdint.h>

#include "util.h"

#ifdef __cplusplus
extern "C" {
#endif

/* How a client uses TLS. The zero value is the safe default. */
typedef enum sk_tls_mode {
    /* Implicit TLS on port 465 (RFC 8314 3.3), STARTTLS required elsewhere. */
    SK_TLS_DEFAULT = 0,
    /* STARTTLS (RFC 3207) required: fail when the server does not offer it
     * or when the certificate does not verify. */
    SK_TLS_STARTTLS,
    /* STARTTLS when offered, plain text otherwise; a certificate that does
     * not verify is logged, not fatal (RFC 7435 opportunistic security, as
     * MTAs deliver to MX hosts). */
    SK_TLS_STARTTLS_OPPORTUNISTIC,
    /* TLS from the first byte (RFC 8314 3.3, port 465). */
    SK_TLS_IMPLICIT,
    /* No TLS at all; only when asked for. */
    SK_TLS_NONE,
    SK_TLS__COUNT
} sk_tls_mode;

/* "default", "starttls", "opportunistic", "implicit", "none". */
const char *sk_tls_mode_name(sk_tls_mode m);
/* Parse one of the names above; SK_ERR_INVAL when unknown. */
SK_NODISCARD sk_err sk_tls_mode_parse(const char *name, sk_tls_mode *out);

/* One certificate of the peer's chain, as the peer sent it (index 0 is the
 * peer's own certificate). Strings are RFC 2253 / OpenSSL one-line forms,
 * truncated to fit. */
typedef struct sk_tls_cert {
    char subject[256];
    char issuer[256];
    int64_t not_before; /* Unix seconds */
    int64_t not_after;  /* Unix seconds */
    /* subjectAltNames, "DNS:a.example, DNS:b.example, IP:192.0.2.1" */
    char san[512];
    int self_signed; /* subject == issuer */
} sk_tls_cert;

/* What a TLS session looked like. Filled after the handshake even when
 * verification failed, so a caller can say why (expired, self-signed,
 * wrong name, unknown issuer). */
typedef struct sk_tls_info {
    int active;            /* 1 once the handshake completed */
    char version[16];      /* "TLSv1.3" */
    char cipher[64];       /* "TLS_AES_256_GCM_SHA384" */
    char sni[256];         /* name sent as SNI and verified against */
    int verified;          /* 1: chain and name verified */
    int insecure;          /* 1: verification was skipped on request */
    long verify_code;      /* OpenSSL X509_V_* code, 0 = X509_V_OK */
    char verify_text[160]; /* X509_verify_cert_error_string(), plus depth */
    size_t chain_len;      /* certificates in chain[] */
    size_t chain_sent;     /* certificates the peer sent (may exceed chain_len) */
    sk_tls_cert chain[SK_TLS_CHAIN_MAX_CERTS];
} sk_tls_info;

#ifdef __cplusplus
}
#endif
#endif
