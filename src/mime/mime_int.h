/* Private declarations of the mime module: encoders, header writer, and
 * the helpers the composer, the address parser and the tests share. */
#ifndef SK_MIME_INT_H
#define SK_MIME_INT_H

#include <smtpkit/message.h>

#include <stdbool.h>

/* ---- Character classes ------------------------------------------------ */

/* Valid UTF-8 (RFC 3629: no overlongs, no surrogates, at most U+10FFFF). */
bool sk_mime_utf8_valid(const char *s, size_t n);
/* Length of the UTF-8 sequence starting at s[0] (1 for ASCII or an invalid
 * lead octet); never more than n. */
size_t sk_mime_utf8_seq_len(const char *s, size_t n);
bool sk_mime_is_ascii(const char *s, size_t n);
bool sk_mime_has_crlf(const char *s);

/* ---- Body encodings (RFC 2045) ----------------------------------------- */

typedef enum sk_cte { SK_CTE_7BIT, SK_CTE_QP, SK_CTE_BASE64 } sk_cte;
const char *sk_cte_name(sk_cte c);

/* Lines of in made CRLF (LF, CRLF and lone CR are all line ends): the
 * canonical form of text (RFC 2049 4). */
SK_NODISCARD sk_err sk_mime_canon_text(sk_buf *out, const char *in, size_t n);
/* The encoding for canonical text: 7bit when it is ASCII with lines of at
 * most SK_MIME_LINE_SOFT_OCTETS and no "=_" (the prefix of our boundaries);
 * otherwise whichever of quoted-printable and base64 is shorter. */
sk_cte sk_mime_choose_text_cte(const char *text, size_t n);
/* Quoted-printable (RFC 2045 6.7). text: CRLF in the input are hard line
 * breaks; otherwise CR and LF are encoded like any other octet. Lines are
 * at most 76 characters; trailing space/tab, '=', non-ASCII and a '.' or
 * "From " at the start of a line are encoded (RFC 2049 3 (8), so that
 * neither SMTP dot-stuffing nor mbox "From " quoting can change them). */
SK_NODISCARD sk_err sk_mime_qp_encode(sk_buf *out, const void *in, size_t n, bool text);
size_t sk_mime_qp_length(const void *in, size_t n, bool text);
/* Base64 in lines of SK_MIME_BASE64_LINE_OCTETS, each ended by CRLF. */
SK_NODISCARD sk_err sk_mime_base64_lines(sk_buf *out, const void *in, size_t n);

/* ---- Header writing (RFC 5322 2.2.3 folding, RFC 2047 words) --------- */

/* Appends tokens to a header field, folding before a token's leading
 * whitespace when the line would pass SK_MIME_LINE_SOFT_OCTETS. The first
 * error sticks in err, so callers check once at the end. */
typedef struct sk_hdr_writer {
    sk_buf *out;
    size_t col; /* octets on the current line so far */
    sk_err err;
} sk_hdr_writer;

void sk_hdr_begin(sk_hdr_writer *w, sk_buf *out, const char *name);
/* Append tok (n octets) preceded by the whitespace ws (wsn octets; none
 * glues it to the previous token: no fold point). */
void sk_hdr_token(sk_hdr_writer *w, const char *ws, size_t wsn, const char *tok, size_t n);
/* End the field with CRLF; returns the sticky error. */
SK_NODISCARD sk_err sk_hdr_end(sk_hdr_writer *w);

/* Unstructured text (Subject, extra headers; RFC 5322 3.2.5), folded at
 * white space: words that are ASCII stay as they are; runs of words that
 * are not (or, unless as_given, that look like encoded words or are too
 * long to fold) become RFC 2047 encoded words, B or Q whichever is shorter,
 * no word over 75 characters, no UTF-8 sequence split between two words.
 * as_given is for fields the caller wrote (List-Unsubscribe's URLs must
 * stay as they are, and encoded words given stay encoded words). */
void sk_hdr_unstructured(sk_hdr_writer *w, const char *text, bool as_given);
/* A display name (RFC 5322 3.2.5 phrase): atoms as they are, other ASCII
 * as a quoted-string, anything else as encoded words (RFC 2047 5(3)). */
void sk_hdr_phrase(sk_hdr_writer *w, const char *ws, const char *name);
/* A mailbox "phrase <addr>" or "addr"; sep ("," or "") is glued after it. */
void sk_hdr_mailbox(sk_hdr_writer *w, const sk_mailbox *mb, const char *sep);

/* Encode text (n octets, UTF-8) as encoded words into separate tokens on w,
 * the first preceded by ws. */
void sk_hdr_encoded_words(sk_hdr_writer *w, const char *ws, size_t wsn, const char *text, size_t n);

/* Decode RFC 2047 encoded words in s (as found in a phrase or unstructured
 * text): whitespace between two adjacent encoded words is dropped
 * (RFC 2047 6.2). UTF-8, US-ASCII and ISO-8859-1 are understood; a word in
 * another charset, or malformed, is kept as it is. */
SK_NODISCARD sk_err sk_mime_decode_words(sk_buf *out, const char *s, size_t n);

/* ---- Addresses -------------------------------------------------------- */

/* sk_address_list_parse without its error detail: *why (static text) says
 * what is wrong. groups: allow groups, and then an empty result (a list
 * of empty groups, "undisclosed-recipients:;") is not an error. */
SK_NODISCARD sk_err sk_mime_parse_addresses(const char *s, size_t n, sk_address_list *out,
                                            bool groups, const char **why);

/* Compare two addr-specs as envelope recipients: local parts exactly,
 * domains without regard to ASCII case. */
bool sk_mime_addr_equal(const char *a, const char *b);
/* Append mb's copy to the dynamic array. */
SK_NODISCARD sk_err sk_mime_mailbox_copy(sk_mailbox *dst, const sk_mailbox *src);

#endif
