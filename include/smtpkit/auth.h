/* Password checks for server-side AUTH: crypt(3) hashes (libxcrypt), the
 * formats of /etc/shadow and Dovecot ("$y$" yescrypt, "$6$" sha512crypt...). */
#ifndef SMTPKIT_AUTH_H
#define SMTPKIT_AUTH_H

#include "util.h"

#ifdef __cplusplus
extern "C" {
#endif

/* 1 when password matches hash (compared in constant time), 0 otherwise,
 * including for a malformed or unsupported hash. */
int sk_sasl_verify_crypt(const char *password, const char *hash);

/* A new hash of password with a random salt: yescrypt ("$y$") when libxcrypt
 * supports it, else sha512crypt ("$6$"). *out is freed with sk_free. */
SK_NODISCARD sk_err sk_sasl_hash_password(const char *password, char **out);

#ifdef __cplusplus
}
#endif
#endif
