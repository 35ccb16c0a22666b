/* Fuzz target: DKIM key records (RFC 6376 3.6.1, RFC 8463 4) as a TXT
 * record gives them. Properties: a record either fails with a reason or
 * gives a key: revoked with no key material, or a key of its k= type
 * (Ed25519: 256 bits; RSA: the size OpenSSL reports); a refusal leaves
 * nothing behind. */
#include "dkim/dkim_int.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int is_fws(uint8_t c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* An "h" tag name, at the start or after ';' (with folding white space
 * around it), followed by '='. */
static int has_h_tag(const uint8_t *data, size_t size)
{
    for (size_t i = 0; i < size; i++) {
        if (data[i] != 'h') continue;
        size_t b = i;
        while (b > 0 && is_fws(data[b - 1])) b--;
        if (b > 0 && data[b - 1] != ';') continue;
        size_t a = i + 1;
        while (a < size && is_fws(data[a])) a++;
        if (a < size && data[a] == '=') return 1;
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 16384) return 0;
    dkim_key_record k;
    char why[200] = "";
    sk_err e = dkim_key_record_parse((const char *)data, size, &k, why, sizeof why);
    if (e == SK_OK) {
        if (k.revoked ? k.pkey != NULL : k.pkey == NULL) abort();
        if (k.pkey) {
            int id = EVP_PKEY_get_base_id(k.pkey);
            if (k.type == SK_DKIM_KEY_ED25519 && (id != EVP_PKEY_ED25519 || k.bits != 256)) abort();
            if (k.type == SK_DKIM_KEY_RSA &&
                (id != EVP_PKEY_RSA || k.bits != (unsigned)EVP_PKEY_get_bits(k.pkey)))
                abort();
        }
        /* No acceptable hash only when an h= tag (RFC 6376 3.2: spaces
         * may stand around its "=") named none. */
        if (!k.sha1_ok && !k.sha256_ok && !has_h_tag(data, size)) abort();
    } else {
        if (e != SK_ERR_SYNTAX && e != SK_ERR_NOMEM) abort();
        if (e == SK_ERR_SYNTAX && !why[0]) abort();
        if (k.pkey) abort();
    }
    dkim_key_record_clear(&k);
    return 0;
}
