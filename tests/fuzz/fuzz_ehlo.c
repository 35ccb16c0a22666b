/* Fuzz target: what the client reads out of server replies: the EHLO
 * extension list (RFC 5321 4.1.1.1) and the queue ID in a final reply. */
#include "client/client_int.h"
#include <smtpkit/sasl.h>

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_queue_id(const char *text, size_t size)
{
    char id[64];
    memset(id, 'x', sizeof id);
    if (size > sizeof id) size = sizeof id;
    cl_queue_id(text, id, size);
    size_t n = strnlen(id, size);
    if (n >= size) abort(); /* not terminated within the buffer */
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)id[i];
        if (!isalnum(c) && !strchr("-_.@", c)) abort();
    }
    if (n && id[n - 1] == '.') abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1);
    if (!text) return 0;
    memcpy(text, data, size);
    text[size] = '\0';

    sk_ehlo_info info;
    memset(&info, 0x55, sizeof info);
    cl_parse_ehlo(text, &info);
    if (info.esmtp != 1 || info.ext >= SK_CLIENT_EXT_BINARYMIME << 1) abort();
    if (!memchr(info.domain, '\0', sizeof info.domain) ||
        !memchr(info.auth, '\0', sizeof info.auth))
        abort();
    if (strpbrk(info.domain, " \n")) abort();
    if (strchr(info.auth, '\n')) abort();
    if (info.size_max && !(info.ext & SK_CLIENT_EXT_SIZE)) abort();
    if (info.auth[0] && !(info.ext & SK_CLIENT_EXT_AUTH)) abort();

    /* The mechanism chosen from what the server offered is one it offered. */
    static const char *const wanted[] = {NULL, "PLAIN", "login", "XOAUTH2", "CRAM-MD5", "BOGUS"};
    for (size_t i = 0; i < sizeof wanted / sizeof wanted[0]; i++) {
        for (int token = 0; token < 2; token++) {
            sk_sasl_mech m = sk_sasl_choose(info.auth, wanted[i], token);
            if ((unsigned)m >= SK_SASL__COUNT) abort();
            if (m == SK_SASL_NONE) continue;
            if ((m == SK_SASL_XOAUTH2) != token || !strcasestr(info.auth, sk_sasl_mech_name(m)))
                abort();
        }
    }

    check_queue_id(text, 64);
    check_queue_id(text, 9);
    check_queue_id(text, 1);
    free(text);
    return 0;
}
