/* Authentication-Results (RFC 8601): the header a receiver writes with the
 * results of its checks (DKIM, SPF, DMARC, ARC, ...), its ARC form
 * (ARC-Authentication-Results, RFC 8617 4.1.1), and enough parsing of
 * existing ones to find those that claim to come from us (RFC 8601 5). */
#ifndef SMTPKIT_AUTHRES_H
#define SMTPKIT_AUTHRES_H

#include "util.h"

#ifdef __cplusplus
extern "C" {
#endif

/* One property: ptype.property=value, e.g. {"header", "d", "example.org"},
 * {"smtp", "mailfrom", "bounce@example.org"}, {"policy", "dmarc", "reject"}. */
typedef struct sk_authres_prop {
    const char *ptype;    /* Keyword: "smtp", "header", "body", "policy" */
    const char *property; /* Keyword: "mailfrom", "helo", "d", "i", "s", "b", "from", ... */
    const char *value;    /* any text without control characters; quoted when needed */
} sk_authres_prop;

/* One method's result (resinfo). */
typedef struct sk_authres_result {
    const char *method;  /* Keyword: "dkim", "spf", "dmarc", "arc", ... */
    unsigned version;    /* method version written as "/N"; 0: none (1 is implied) */
    const char *result;  /* Keyword: "pass", "fail", "none", "temperror", ... */
    const char *comment; /* NULL, or text written as a comment after the result */
    const char *reason;  /* NULL, or reason="text" */
    const sk_authres_prop *props;
    size_t n_props;
} sk_authres_result;

/* Append the whole header field "Authentication-Results: ID; ...CRLF" to
 * out: each result on a line of its own, folded (CRLF TAB) between words
 * to stay under SK_AUTHRES_LINE_SOFT_OCTETS where it can; values that are
 * neither a token nor an address or domain are written as quoted strings,
 * comments with '(', ')' and '\' escaped. n == 0 writes "ID; none".
 * SK_ERR_INVAL (err says which) for a name that is not a Keyword or text
 * with control characters, SK_ERR_TOO_LONG for a word that cannot fit in
 * a 998-octet line or a field over SK_AUTHRES_HEADER_MAX_OCTETS. */
SK_NODISCARD sk_err sk_authres_build(const char *authserv_id, const sk_authres_result *r, size_t n,
                                     sk_buf *out, sk_error *err);
/* The same body as "ARC-Authentication-Results: i=INSTANCE; ID; ...CRLF"
 * (RFC 8617 4.1.1); instance 1..SK_ARC_INSTANCE_MAX, else SK_ERR_INVAL. */
SK_NODISCARD sk_err sk_authres_build_arc(unsigned instance, const char *authserv_id,
                                         const sk_authres_result *r, size_t n, sk_buf *out,
                                         sk_error *err);
/* The same with the results given as text, the resinfo list as an
 * Authentication-Results field carries it after its authserv-id
 * ("dkim=pass header.d=example.org; spf=pass smtp.mailfrom=..."): written
 * as it is, folded between words (never inside a quoted string or a
 * comment), each resinfo after a ';' on a line of its own. SK_ERR_INVAL
 * for empty text or control characters other than TAB. */
SK_NODISCARD sk_err sk_authres_build_arc_text(unsigned instance, const char *authserv_id,
                                              const char *text, sk_buf *out, sk_error *err);

/* The authserv-id of an Authentication-Results value (what follows the
 * colon, folded or not): [CFWS] authserv-id [CFWS version] then ';'.
 * Comments (nested), quoted strings (unescaped into id) and folding are
 * understood. SK_OK with the id appended to id (and *version set to the
 * version, 1 when absent; version may be NULL); SK_ERR_SYNTAX when the
 * value does not start that way; SK_ERR_TOO_LONG past id's maximum. */
SK_NODISCARD sk_err sk_authres_parse_id(const char *value, size_t len, sk_buf *id,
                                        unsigned *version);

/* A field of a header block: offset and length (with its line end). */
typedef struct sk_authres_span {
    size_t offset, length;
} sk_authres_span;

/* The Authentication-Results fields of the header block headers[0..len)
 * that bear authserv_id (compared without regard to ASCII case), which a
 * receiver removes before adding its own (RFC 8601 5). A field that does
 * not parse but whose first word is authserv_id (quoted or not) is
 * counted too: a reader more lenient than sk_authres_parse_id could take
 * it for ours. ARC-Authentication-Results fields are never counted. *out
 * (release with sk_free; NULL when *n is 0) in the order of the block. */
SK_NODISCARD sk_err sk_authres_find_ours(const char *headers, size_t len, const char *authserv_id,
                                         sk_authres_span **out, size_t *n);
/* Append headers[0..len) to out without the fields sk_authres_find_ours
 * finds; *removed (may be NULL) gets their count. A lone CR ending the
 * line before a removed field becomes CRLF when the line after it starts
 * with LF, so that the two do not join into one line end. */
SK_NODISCARD sk_err sk_authres_strip(const char *headers, size_t len, const char *authserv_id,
                                     sk_buf *out, size_t *removed);

#ifdef __cplusplus
}
#endif
#endif
