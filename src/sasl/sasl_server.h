/* Server side of SASL PLAIN and LOGIN (RFC 4954, RFC 4616): decoding the
 * client's base64 responses. Private to the library. */
#ifndef SK_SASL_SERVER_H
#define SK_SASL_SERVER_H

#include <smtpkit/util.h>

/* Decode a PLAIN response (base64 of authzid NUL authcid NUL passwd) into
 * out; the three pointers point into out's storage. SK_ERR_SYNTAX for bad
 * base64 or a message without exactly two NULs or with an empty authcid. */
SK_NODISCARD sk_err sk_sasl_server_plain(const char *b64, size_t n, sk_buf *out,
                                         const char **authzid, const char **user,
                                         const char **password);
/* Decode one LOGIN response (base64 of a user name or password); NUL
 * octets in it are an error. */
SK_NODISCARD sk_err sk_sasl_server_login(const char *b64, size_t n, sk_buf *out);

#endif
