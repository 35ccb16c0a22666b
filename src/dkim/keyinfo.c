/* A published key record read for people rather than for a signature: the
 * facts `smtpkit check` judges (type, size, testing, revoked), from the
 * verifier's parser so that both read a record alike. */
#include "dkim_int.h"

#include <stdio.h>
#include <string.h>

sk_err sk_dkim_key_record_inspect(const char *txt, size_t len, sk_dkim_key_info *out, char *why,
                                  size_t why_size)
{
    memset(out, 0, sizeof *out);
    if (why && why_size) why[0] = '\0';
    dkim_key_record k;
    char reason[200] = "";
    sk_err e = dkim_key_record_parse(txt, len, &k, reason, sizeof reason);
    if (e) {
        if (why && why_size) snprintf(why, why_size, "%s", reason[0] ? reason : sk_strerror(e));
        return e;
    }
    out->type = k.type;
    out->bits = k.revoked ? 0 : k.bits;
    out->revoked = k.revoked;
    out->testing = k.testing;
    out->strict = k.strict;
    out->sha256_ok = k.sha256_ok;
    dkim_key_record_clear(&k);
    return SK_OK;
}
