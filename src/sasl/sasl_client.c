/* SASL client side: mechanism names, choosing one from the server's list,
 * and each mechanism's responses as pure functions (RFC 4954, 4616, 2195). */
/* OpenSSL's pre-1.1 names include a macro "sk_free", which is ours:
 * hide the deprecated names (we use none). */
#ifndef OPENSSL_NO_DEPRECATED
#define OPENSSL_API_COMPAT    30000
#define OPENSSL_NO_DEPRECATED 1
#endif
#include <smtpkit/sasl.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <string.h>
#include <strings.h>

static const char *const mech_names[] = {
    [SK_SASL_NONE] = "",           [SK_SASL_PLAIN] = "PLAIN",
    [SK_SASL_LOGIN] = "LOGIN",     [SK_SASL_CRAM_MD5] = "CRAM-MD5",
    [SK_SASL_XOAUTH2] = "XOAUTH2",
};
_Static_assert(sizeof mech_names / sizeof mech_names[0] == SK_SASL__COUNT, "mech_names");

const char *sk_sasl_mech_name(sk_sasl_mech m)
{
    if ((unsigned)m >= SK_SASL__COUNT) return "";
    return mech_names[m];
}

sk_sasl_mech sk_sasl_mech_parse(const char *name)
{
    if (!name || !*name) return SK_SASL_NONE;
    for (int m = SK_SASL_NONE + 1; m < SK_SASL__COUNT; m++)
        if (!strcasecmp(name, mech_names[m])) return (sk_sasl_mech)m;
    return SK_SASL_NONE;
}

/* Is the mechanism name in the space-separated list (case-insensitive,
 * RFC 4954 3: mechanism names are upper case but servers vary)? */
static int offered_has(const char *offered, const char *name)
{
    size_t n = strlen(name);
    const char *p = offered;
    while (p && *p) {
        while (*p == ' ') p++;
        size_t w = strcspn(p, " ");
        if (w == n && !strncasecmp(p, name, n)) return 1;
        p += w;
    }
    return 0;
}

sk_sasl_mech sk_sasl_choose(const char *offered, const char *wanted, int have_token)
{
    if (!offered) offered = "";
    if (wanted && *wanted) {
        sk_sasl_mech m = sk_sasl_mech_parse(wanted);
        if (m == SK_SASL_NONE || !offered_has(offered, mech_names[m])) return SK_SASL_NONE;
        /* A token only fits XOAUTH2, a password only the others. */
        if ((m == SK_SASL_XOAUTH2) != (have_token != 0)) return SK_SASL_NONE;
        return m;
    }
    if (have_token) return offered_has(offered, "XOAUTH2") ? SK_SASL_XOAUTH2 : SK_SASL_NONE;
    /* CRAM-MD5 keeps the password off the wire even if TLS were broken;
     * PLAIN is preferred to LOGIN as the standard one (RFC 4616). */
    static const sk_sasl_mech order[] = {SK_SASL_CRAM_MD5, SK_SASL_PLAIN, SK_SASL_LOGIN};
    for (size_t i = 0; i < sizeof order / sizeof order[0]; i++)
        if (offered_has(offered, mech_names[order[i]])) return order[i];
    return SK_SASL_NONE;
}

sk_err sk_sasl_plain_response(sk_buf *out, const char *authzid, const char *user,
                              const char *password)
{
    if (!out || !user || !password || !*user) return SK_ERR_INVAL;
    sk_err e = SK_OK;
    if (authzid) e = sk_buf_puts(out, authzid);
    if (!e) e = sk_buf_putc(out, '\0');
    if (!e) e = sk_buf_puts(out, user);
    if (!e) e = sk_buf_putc(out, '\0');
    if (!e) e = sk_buf_puts(out, password);
    return e;
}

sk_err sk_sasl_login_response(sk_buf *out, int step, const char *user, const char *password)
{
    if (!out || !user || !password || (step != 0 && step != 1)) return SK_ERR_INVAL;
    return sk_buf_puts(out, step == 0 ? user : password);
}

sk_err sk_sasl_cram_md5_response(sk_buf *out, const char *user, const char *password,
                                 const char *challenge, size_t challenge_len)
{
    if (!out || !user || !password || !challenge || !*user) return SK_ERR_INVAL;
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int maclen = 0;
    /* RFC 2195 2: the digest is HMAC-MD5 (RFC 2104) keyed by the password. */
    if (!HMAC(EVP_md5(), password, (int)strlen(password), (const unsigned char *)challenge,
              challenge_len, mac, &maclen))
        return SK_ERR_UNSUPPORTED;
    char digest[2 * EVP_MAX_MD_SIZE + 1];
    sk_hex_encode(digest, mac, maclen, false);
    sk_err e = sk_buf_puts(out, user);
    if (!e) e = sk_buf_putc(out, ' ');
    if (!e) e = sk_buf_puts(out, digest);
    return e;
}

sk_err sk_sasl_xoauth2_response(sk_buf *out, const char *user, const char *token)
{
    if (!out || !user || !token || !*user || !*token || strchr(user, '\001') ||
        strchr(token, '\001'))
        return SK_ERR_INVAL;
    return sk_buf_printf(out, "user=%s\001auth=Bearer %s\001\001", user, token);
}
