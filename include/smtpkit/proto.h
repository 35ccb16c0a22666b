/* SMTP grammar, server side: command verbs, paths (RFC 5321 4.1.2 with
 * RFC 6531 SMTPUTF8) and the ESMTP parameters of MAIL and RCPT. */
#ifndef SMTPKIT_PROTO_H
#define SMTPKIT_PROTO_H

#include "reply.h"
#include "util.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Commands the server knows (RFC 5321 4.1.1, RFC 3207, RFC 4954, RFC 3030). */
typedef enum sk_cmd_verb {
    SK_CMD_UNKNOWN = 0,
    SK_CMD_EHLO,
    SK_CMD_HELO,
    SK_CMD_MAIL,
    SK_CMD_RCPT,
    SK_CMD_DATA,
    SK_CMD_BDAT,
    SK_CMD_RSET,
    SK_CMD_NOOP,
    SK_CMD_QUIT,
    SK_CMD_VRFY,
    SK_CMD_EXPN,
    SK_CMD_HELP,
    SK_CMD_STARTTLS,
    SK_CMD_AUTH,
    SK_CMD__COUNT
} sk_cmd_verb;

/* The verb's name ("MAIL"), "" for SK_CMD_UNKNOWN. */
const char *sk_cmd_name(sk_cmd_verb v);

/* Split a command line (without CRLF) into its verb and arguments. Verbs
 * are case-insensitive (RFC 5321 2.4). *args points past the single space
 * after the verb, or at "" when there is none. MAIL and RCPT are recognised
 * by their "FROM:" / "TO:" (so *args starts at the path, after optional
 * spaces that many clients send). An unknown verb gives SK_CMD_UNKNOWN. */
sk_cmd_verb sk_cmd_parse(const char *line, const char **args);

/* A forward or reverse path. Source routes (RFC 5321 4.1.2 A-d-l) are
 * accepted and dropped, as RFC 5321 C allows. */
typedef struct sk_path {
    /* "local@domain" as received (a quoted local part keeps its quotes);
     * "" is the null reverse path <>; "postmaster" (no domain) is only
     * valid as a recipient (RFC 5321 4.5.1). */
    char mailbox[SK_SMTP_PATH_MAX_OCTETS + 1];
    char local[SK_SMTP_LOCAL_PART_MAX_OCTETS + 1];
    char domain[SK_SMTP_DOMAIN_MAX_OCTETS + 1]; /* address literals keep brackets */
    int utf8;                                   /* contains octets >= 0x80 */
} sk_path;

/* Parse "<path>" at the start of s into out; *end points after '>'.
 * flags: SK_PATH_NULL_OK accepts "<>", SK_PATH_POSTMASTER_OK accepts
 * "<postmaster>", SK_PATH_UTF8_OK accepts UTF-8 (RFC 6531 3.3). Returns
 * SK_ERR_SYNTAX for bad syntax, SK_ERR_TOO_LONG past the RFC 5321 4.5.3.1
 * limits, SK_ERR_UNSUPPORTED for UTF-8 without SK_PATH_UTF8_OK. */
#define SK_PATH_NULL_OK       1u
#define SK_PATH_POSTMASTER_OK 2u
#define SK_PATH_UTF8_OK       4u
SK_NODISCARD sk_err sk_path_parse(const char *s, unsigned flags, sk_path *out, const char **end);

typedef enum sk_body_type {
    SK_BODY_UNSPECIFIED = 0,
    SK_BODY_7BIT,
    SK_BODY_8BITMIME /* RFC 6152 */
} sk_body_type;

typedef enum sk_dsn_ret { SK_DSN_RET_UNSPECIFIED = 0, SK_DSN_RET_FULL, SK_DSN_RET_HDRS } sk_dsn_ret;

/* RFC 3461 4.4: ENVID at most 100 characters; RFC 3461 4.2: ORCPT at most
 * 500. Values are kept in their xtext form as received. */
#define SK_DSN_ENVID_MAX_OCTETS 100
#define SK_DSN_ORCPT_MAX_OCTETS 500

/* MAIL FROM parameters (RFC 1870, 6152, 6531, 3461, 6710, 4954). */
typedef struct sk_mail_params {
    int has_size;
    uint64_t size; /* SIZE= the client's estimate, octets */
    sk_body_type body;
    int smtputf8; /* SMTPUTF8 given */
    sk_dsn_ret ret;
    char envid[SK_DSN_ENVID_MAX_OCTETS + 1];
    int has_priority;
    int priority;                           /* MT-PRIORITY -9..9 (RFC 6710 2) */
    char auth[SK_SMTP_PATH_MAX_OCTETS + 3]; /* AUTH= as received (xtext), "" when absent */
} sk_mail_params;

/* RFC 3461 4.1 NOTIFY values, a set; 0 when NOTIFY was not given. */
#define SK_DSN_NOTIFY_NEVER   1u
#define SK_DSN_NOTIFY_SUCCESS 2u
#define SK_DSN_NOTIFY_FAILURE 4u
#define SK_DSN_NOTIFY_DELAY   8u

typedef struct sk_rcpt_params {
    unsigned notify;
    char orcpt[SK_DSN_ORCPT_MAX_OCTETS + 1]; /* as received, sk_orcpt_valid; "" when absent */
} sk_rcpt_params;

/* What the session has announced, so the parsers accept only parameters of
 * offered extensions (RFC 5321 4.1.1.11: 555 otherwise). */
#define SK_EXT_SIZE        0x01u
#define SK_EXT_8BITMIME    0x02u
#define SK_EXT_SMTPUTF8    0x04u
#define SK_EXT_DSN         0x08u
#define SK_EXT_MT_PRIORITY 0x10u
#define SK_EXT_AUTH        0x20u

/* Parse the arguments of MAIL (from sk_cmd_parse: "<path> [params]"). On
 * error returns non-SK_OK and fills *why with the reply to send:
 * 501 5.5.4 bad syntax, 553 5.1.7 bad sender address, 555 5.5.4 unknown
 * parameter, 553 5.6.7 UTF-8 address without SMTPUTF8 (RFC 6531 3.5). */
SK_NODISCARD sk_err sk_proto_parse_mail(const char *args, unsigned ext, sk_path *from,
                                        sk_mail_params *p, sk_reply *why);
/* Parse the arguments of RCPT. smtputf8: the transaction said SMTPUTF8.
 * Errors as for MAIL, with 553 5.1.3 for a bad recipient address. */
SK_NODISCARD sk_err sk_proto_parse_rcpt(const char *args, unsigned ext, int smtputf8, sk_path *to,
                                        sk_rcpt_params *p, sk_reply *why);

/* ---- xtext (RFC 3461 4): printable ASCII but "+" and "=" as themselves,
 * any other octet as "+" and two upper-case hex digits. ---- */
/* Is s[0..n) valid xtext? */
int sk_xtext_valid(const char *s, size_t n);
/* Encode s as xtext ("a+b" -> "a+2Bb"), appended to out. */
SK_NODISCARD sk_err sk_xtext_encode(const char *s, sk_buf *out);
/* Decode xtext ("a+2Bb" -> "a+b"; lower-case hex digits are taken too) into
 * out (NUL-terminated, at most outsize-1 octets). SK_ERR_SYNTAX for a "+"
 * without two hex digits, SK_ERR_TOO_LONG when it does not fit. */
SK_NODISCARD sk_err sk_xtext_decode(const char *in, char *out, size_t outsize);

/* ---- ORCPT (RFC 3461 4.2): "type;value", at most SK_DSN_ORCPT_MAX_OCTETS.
 * The value is xtext, except for the "utf-8" type of RFC 6533 3, whose
 * value is utf-8-enc-addr: printable ASCII but SP, "\", "+" and "=" as
 * themselves, every other character as \x{HEX} (its code point), and in
 * the unitext form non-ASCII characters as UTF-8. ---- */
typedef enum sk_utf8_addr_form {
    SK_UTF8_ADDR_XTEXT = 0, /* utf-8-addr-xtext: 7-bit, "j\x{F6}rg@example.org" */
    SK_UTF8_ADDR_UNITEXT,   /* utf-8-addr-unitext: "jörg@example.org" (SMTPUTF8 only) */
} sk_utf8_addr_form;

/* Encode the UTF-8 address addr in form, appended to out. SK_ERR_SYNTAX
 * when addr is empty, not UTF-8 or holds a control character; out is then
 * unchanged. */
SK_NODISCARD sk_err sk_utf8_addr_encode(const char *addr, sk_utf8_addr_form form, sk_buf *out);
/* Decode in[0..n), a utf-8-addr-xtext (or, when allow_utf8, a
 * utf-8-addr-unitext), to UTF-8 in out (NUL-terminated). SK_ERR_SYNTAX
 * when malformed (bad escape, a HEXPOINT RFC 6533 3 does not allow, raw
 * UTF-8 without allow_utf8, a control character), SK_ERR_TOO_LONG when
 * it does not fit. */
SK_NODISCARD sk_err sk_utf8_addr_decode(const char *in, size_t n, int allow_utf8, char *out,
                                        size_t outsize);
/* Is v[0..n) a valid ORCPT value? utf8: the transaction uses SMTPUTF8, so a
 * "utf-8" value may be in unitext form. Other types need xtext. */
int sk_orcpt_valid(const char *v, size_t n, int utf8);
/* The ORCPT value naming addr (appended to out): "rfc822;" and xtext for
 * an ASCII address, "utf-8;" for the rest, in unitext form when utf8 (the
 * transaction uses SMTPUTF8) and no ASCII character needs an escape, else
 * in xtext form (RFC 6533 3). SK_ERR_TOO_LONG over the ORCPT limit,
 * SK_ERR_SYNTAX for an address that cannot be written; out unchanged then. */
SK_NODISCARD sk_err sk_orcpt_format(const char *addr, int utf8, sk_buf *out);
/* A received ORCPT value v as it goes to the next hop (RFC 3461 5.2.1),
 * appended to out: unchanged, except that a "utf-8" value holding UTF-8
 * goes in xtext form when !utf8. SK_ERR_SYNTAX when v is not valid. */
SK_NODISCARD sk_err sk_orcpt_pass(const char *v, int utf8, sk_buf *out);

/* EHLO/HELO argument: a domain or address literal (RFC 5321 4.1.1.1);
 * UTF-8 U-labels allowed (RFC 6531 3.7.1). 1 when acceptable. */
int sk_proto_helo_valid(const char *s);

/* The message stream of DATA (RFC 5321 4.1.1.4, 4.5.2) and BDAT (RFC
 * 3030), sans I/O: fed the octets as they come, it finds the end marker
 * (only CRLF "." CRLF), removes dot-stuffing, and notes bare CR and LF
 * (RFC 5321 2.3.8), which never end a line here, and NUL octets, which no
 * 7bit or 8bit body may hold (RFC 2045 2.7, 2.8; RFC 6152): a receiver
 * further on that drops NULs would find an end marker in CRLF NUL "."
 * CRLF. BDAT mode checks the same octets but has no end marker or dot
 * handling; BINARYMIME (RFC 3030 3), the only body type that may carry NUL
 * or lone CR/LF, is not offered, so there is no mode without the checks. */
#define SK_DATA_BARE_LF 1u
#define SK_DATA_BARE_CR 2u
#define SK_DATA_NUL     4u
typedef struct sk_data_decoder {
    int state; /* private */
    int bdat;
    unsigned bad; /* SK_DATA_BARE_* and SK_DATA_NUL seen so far */
} sk_data_decoder;
void sk_data_decoder_init(sk_data_decoder *d, int bdat);
/* Decode up to n octets of in into out, which has room for n + 1 octets
 * (a CR held back from the previous call may come out). Returns the octets
 * consumed; *out_len the octets written; *end = 1 when the end marker was
 * consumed (DATA only; what follows it is not consumed). */
size_t sk_data_decode(sk_data_decoder *d, const char *in, size_t n, char *out, size_t *out_len,
                      int *end);
/* BDAT: the last chunk has ended; a CR held back is bare. */
void sk_data_decoder_finish(sk_data_decoder *d, char *out, size_t *out_len);

#ifdef __cplusplus
}
#endif
#endif
