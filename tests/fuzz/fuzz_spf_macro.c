/* Fuzz target: SPF macro expansion (sk_spf_macro_expand, RFC 7208 7). The
 * first octet picks the mode (domain-spec or explanation) and the client
 * (IPv4, IPv6, IPv4-mapped; with or without a validated name). Properties:
 * checking alone agrees with expanding; the output is printable ASCII and
 * within the buffer's bound (exceeding it is SK_ERR_TOO_LONG, never a
 * cut); text without "%" is itself; the validated name matters only when
 * sk_spf_macro_uses_p says so. */
#include <smtpkit/spf.h>

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define OUT_MAX 8192

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > 4096) return 0;
    static const char *const ips[] = {"192.0.2.3", "2001:db8::cb01", "::ffff:198.51.100.7"};
    unsigned sel = data[0];
    sk_spf_macro_mode mode = (sel & 1) ? SK_SPF_MACRO_EXPLAIN : SK_SPF_MACRO_DOMAIN;
    sk_spf_macro_vars v = {.sender = "strong-bad@email.example.com",
                           .local = "strong-bad",
                           .sender_domain = "email.example.com",
                           .domain = "email.example.com",
                           .ip = ips[(sel >> 1) % 3],
                           .ptr_name = (sel & 8) ? "mx.email.example.com" : NULL,
                           .helo = "mx.example.org",
                           .receiver = "mx.example.net",
                           .now_s = 1700000000};
    const char *spec = (const char *)data + 1;
    size_t len = size - 1;
    sk_buf out = SK_BUF_INIT(OUT_MAX);
    sk_err e = sk_spf_macro_expand(spec, len, mode, &v, &out);
    sk_err checked = sk_spf_macro_expand(spec, len, mode, NULL, NULL);
    if (e != SK_OK && e != SK_ERR_SYNTAX && e != SK_ERR_TOO_LONG && e != SK_ERR_NOMEM) abort();
    if ((e == SK_ERR_SYNTAX) != (checked == SK_ERR_SYNTAX)) abort();
    if (checked != SK_OK && checked != SK_ERR_SYNTAX) abort();
    if (out.len > OUT_MAX) abort();
    if (e == SK_OK) {
        for (size_t i = 0; i < out.len; i++) {
            unsigned char ch = (unsigned char)out.data[i];
            if (ch < 0x20 || ch >= 0x7f) abort();
            if (mode == SK_SPF_MACRO_DOMAIN && ch == ' ' && !memchr(spec, '_', len)) abort();
        }
        if (!memchr(spec, '%', len) && (out.len != len || (len && memcmp(out.data, spec, len))))
            abort();
        if (!sk_spf_macro_uses_p(spec, len)) {
            sk_spf_macro_vars w = v;
            w.ptr_name = v.ptr_name ? NULL : "other.example.com";
            sk_buf again = SK_BUF_INIT(OUT_MAX);
            if (sk_spf_macro_expand(spec, len, mode, &w, &again) != SK_OK) abort();
            if (again.len != out.len || (out.len && memcmp(again.data, out.data, out.len))) abort();
            sk_buf_free(&again);
        }
    }
    sk_buf_free(&out);
    return 0;
}
