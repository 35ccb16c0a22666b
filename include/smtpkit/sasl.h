/* SASL mechanisms for SMTP AUTH (RFC 4954): names, choosing one, and the
 * client's responses as pure functions (no I/O, no base64: the SMTP layer
 * encodes what these produce). */
#ifndef SMTPKIT_SASL_H
#define SMTPKIT_SASL_H

#include "util.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum sk_sasl_mech {
    SK_SASL_NONE = 0,
    SK_SASL_PLAIN,    /* RFC 4616 */
    SK_SASL_LOGIN,    /* draft-murchison-sasl-login */
    SK_SASL_CRAM_MD5, /* RFC 2195 */
    SK_SASL_XOAUTH2,  /* Google/Microsoft OAuth 2.0 bearer token */
    SK_SASL__COUNT
} sk_sasl_mech;

/* "PLAIN", "LOGIN", "CRAM-MD5", "XOAUTH2"; "" for SK_SASL_NONE. */
const char *sk_sasl_mech_name(sk_sasl_mech m);
/* Case-insensitive; SK_SASL_NONE when unknown. */
sk_sasl_mech sk_sasl_mech_parse(const char *name);

/* Pick the mechanism to use from the server's space-separated AUTH list
 * (the EHLO "AUTH" parameters). wanted: a mechanism name the caller
 * insists on, or NULL for the strongest offered that the credentials fit:
 * XOAUTH2 when have_token, else CRAM-MD5 > PLAIN > LOGIN. Returns
 * SK_SASL_NONE when nothing fits (wanted not offered, or unknown). */
sk_sasl_mech sk_sasl_choose(const char *offered, const char *wanted, int have_token);

/* Client responses, appended raw to out (the caller base64-encodes them
 * for the wire). Each fails with SK_ERR_INVAL on a NULL argument or one
 * that the mechanism cannot carry (a NUL-free C string is assumed; PLAIN
 * forbids nothing else, XOAUTH2 forbids ^A in the user). */

/* RFC 4616 2: [authzid] NUL authcid NUL passwd. authzid may be NULL. */
SK_NODISCARD sk_err sk_sasl_plain_response(sk_buf *out, const char *authzid, const char *user,
                                           const char *password);
/* LOGIN: the server prompts "Username:" then "Password:" (base64). step 0
 * answers with the user name, step 1 with the password. */
SK_NODISCARD sk_err sk_sasl_login_response(sk_buf *out, int step, const char *user,
                                           const char *password);
/* RFC 2195 2: user SP lowercase-hex(HMAC-MD5(password, challenge)), where
 * challenge is the decoded server challenge ("<1896.697170952@host>"). */
SK_NODISCARD sk_err sk_sasl_cram_md5_response(sk_buf *out, const char *user, const char *password,
                                              const char *challenge, size_t challenge_len);
/* XOAUTH2: "user=" user ^A "auth=Bearer " token ^A ^A. */
SK_NODISCARD sk_err sk_sasl_xoauth2_response(sk_buf *out, const char *user, const char *token);

#ifdef __cplusplus
}
#endif
#endif
