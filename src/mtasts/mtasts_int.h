/* What the files of the mtasts module share: the reason text of a refusal
 * and the character classes of the RFC 8461 / RFC 8460 grammars. */
#ifndef SMTPKIT_MTASTS_INT_H
#define SMTPKIT_MTASTS_INT_H

#include <smtpkit/mtasts.h>

/* Up to max octets of s as printable ASCII for a reason ('?' for the
 * rest, "..." when cut), into out (at least max + 4 octets). */
const char *mts_quote(const char *s, size_t n, char *out, size_t max);

int mts_is_alpha(unsigned char c);
int mts_is_digit(unsigned char c);
int mts_is_wsp(unsigned char c);
/* RFC 5321 Domain: sub-domain *("." sub-domain), sub-domain = Let-dig
 * [Ldh-str] (a label may not end in '-'); labels of at most 63 octets, at
 * most 253 in all; no final dot. */
int mts_domain_valid(const char *s, size_t n);
/* An extension field name of both RFCs: (ALPHA / DIGIT) *31(ALPHA / DIGIT
 * / "_" / "-" / "."). */
int mts_ext_name_valid(const char *s, size_t n);

#endif
