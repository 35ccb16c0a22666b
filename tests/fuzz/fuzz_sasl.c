/* Fuzz target: the server's decoding of AUTH PLAIN and LOGIN responses
 * (RFC 4616 2, RFC 4954 4), which arrive before authentication. */
#include "sasl/sasl_server.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *in = (const char *)data;
    sk_buf out = SK_BUF_INIT(SK_SMTP_LINE_MAX_OCTETS);
    const char *authzid = NULL, *user = NULL, *password = NULL;
    if (sk_sasl_server_plain(in, size, &out, &authzid, &user, &password) == SK_OK) {
        const char *end = out.data + out.len;
        /* Three strings laid end to end in out: authzid, authcid, password. */
        if (authzid != out.data || user <= authzid || password <= user || password > end) abort();
        if (!*user || user != authzid + strlen(authzid) + 1 ||
            password != user + strlen(user) + 1 || password + strlen(password) != end)
            abort();
    }
    if (sk_sasl_server_login(in, size, &out) == SK_OK) {
        const char *s = sk_buf_cstr(&out);
        if (strlen(s) != out.len) abort();
    }
    sk_buf_free(&out);
    return 0;
}
