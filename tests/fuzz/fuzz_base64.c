/* Fuzz target: base64 decoding, and encode/decode round trip. */
#include <smtpkit/util.h>

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    sk_buf out = SK_BUF_INIT(1 << 20);
    if (sk_base64_decode(&out, (const char *)data, size) == SK_OK && out.len > size) abort();
    sk_buf_free(&out);

    sk_buf enc = SK_BUF_INIT(1 << 22), dec = SK_BUF_INIT(1 << 20);
    if (sk_base64_encode(&enc, data, size) == SK_OK &&
        sk_base64_decode(&dec, enc.data ? enc.data : "", enc.len) == SK_OK) {
        if (dec.len != size || (size && memcmp(dec.data, data, size) != 0)) abort();
    }
    sk_buf_free(&enc);
    sk_buf_free(&dec);
    return 0;
}
