/* Fuzz target: DKIM key records (RFC 6376 3.6.1, RFC 8463 4) as a TXT
 * record gives them. Properties: a record either fails with a reason or
 * gives a key: revoked with no key material, or a key of its k= type
 * (Ed25519: 256 bits; RSA: the size OpenSSL reports); a refusal leaves
 * nothing behind. */
#include "dkim/dkim_int.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

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
        if (!k.sha1_ok && !k.sha256_ok && !memmem(data, size, "h=", 2)) abort();
    } else {
        if (e != SK_ERR_SYNTAX && e != SK_ERR_NOMEM) abort();
        if (e == SK_ERR_SYNTAX && !why[0]) abort();
        if (k.pkey) abort();
    }
    dkim_key_record_clear(&k);
    return 0;
}
