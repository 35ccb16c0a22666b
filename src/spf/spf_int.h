/* Private to src/spf: the macro-string walker shared by the record parser
 * (syntax) and the expander, and the client address in the forms macros
 * and mechanisms need. */
#ifndef SK_SPF_INT_H
#define SK_SPF_INT_H

#include <smtpkit/spf.h>

/* The client address: family 4 (IPv4, or IPv4-mapped IPv6, RFC 7208 5)
 * or 6; the 4 or 16 octets. */
typedef struct spf_ip {
    int family;
    unsigned char a[16];
} spf_ip;
/* 0 when text is an address. */
int spf_ip_parse(const char *text, spf_ip *out);
/* 1 when the first bits of a and b agree. */
int spf_prefix_match(const unsigned char *a, const unsigned char *b, int bits);

/* Walk a macro-string: check it and, with v and out, expand it. When
 * last_macro_end is given it receives the offset just past the last
 * macro-expand (0 when none): 7.1's domain-end is either a macro-expand
 * or "." toplabel ["."]. */
SK_NODISCARD sk_err spf_macro_walk(const char *s, size_t len, sk_spf_macro_mode mode,
                                   const sk_spf_macro_vars *v, sk_buf *out, size_t *last_macro_end);

/* 7.1 toplabel: letters, digits and hyphens, not at either end, and not
 * all digits. */
int spf_toplabel_ok(const char *s, size_t len);

#endif
