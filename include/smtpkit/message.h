/* Composing messages (RFC 5322 + MIME), parsing addresses, and preparing
 * ready-made messages for sending: the envelope a client needs. */
#ifndef SMTPKIT_MESSAGE_H
#define SMTPKIT_MESSAGE_H

#include "util.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- Addresses ------------------------------------------------------ */

/* One mailbox: an optional display name and an addr-spec. */
typedef struct sk_mailbox {
    char *name; /* decoded display name (UTF-8); "" when there is none */
    /* addr-spec as it goes into MAIL FROM:<> / RCPT TO:<> (RFC 5321 4.1.2):
     * local part quoted only when it must be ("\"john doe\"@example.org"),
     * UTF-8 kept as is (RFC 6531). */
    char *addr;
} sk_mailbox;

/* Parse one mailbox: "user@domain", "<user@domain>", "Display Name
 * <user@domain>", "\"Doe, John\" <user@domain>", with UTF-8 allowed in the
 * name and the address, and RFC 2047 encoded words in the name. This is
 * what the CLI's --from/--to take, so an unquoted name may contain
 * specials ("John Q. Public <jqp@example.org>"). CR or LF: SK_ERR_INVAL;
 * anything else malformed: SK_ERR_SYNTAX. On success fill *out (release
 * with sk_mailbox_clear). */
SK_NODISCARD sk_err sk_mailbox_parse(const char *s, sk_mailbox *out, sk_error *err);
void sk_mailbox_clear(sk_mailbox *mb);

/* A parsed address list: groups are flattened into their members. */
typedef struct sk_address_list {
    sk_mailbox *items;
    size_t count;
} sk_address_list;

/* Parse an RFC 5322 3.4 address-list (the value of To, Cc, Bcc, From,
 * Reply-To), folded or not: mailboxes separated by commas, groups
 * ("Team: a@x, b@y;"), comments, quoted strings, encoded words in display
 * names (RFC 2047 5(3)), UTF-8 (RFC 6532). Folding whitespace (CRLF followed
 * by a space or tab) is accepted; any other CR or LF is SK_ERR_SYNTAX, as
 * is an empty list. Release with sk_address_list_clear. */
SK_NODISCARD sk_err sk_address_list_parse(const char *s, size_t len, sk_address_list *out,
                                          sk_error *err);
void sk_address_list_clear(sk_address_list *l);

/* ---- Composing ------------------------------------------------------- */

typedef struct sk_message sk_message;

/* NULL when out of memory (or when the OS gives no random numbers for the
 * Message-ID). */
sk_message *sk_message_new(void);
void sk_message_free(sk_message *m); /* accepts NULL */

/* Every setter copies what it is given and returns SK_OK, SK_ERR_NOMEM,
 * SK_ERR_INVAL (CR or LF anywhere in a header value, name or address --
 * header injection is refused, never stripped -- or text that is not
 * UTF-8) or SK_ERR_SYNTAX (a malformed address). err (may be NULL) gets a
 * description. Addresses are parsed with sk_mailbox_parse. */
SK_NODISCARD sk_err sk_message_set_from(sk_message *m, const char *mailbox, sk_error *err);
/* Sender (RFC 5322 3.6.2); when set, its address is the reverse-path. */
SK_NODISCARD sk_err sk_message_set_sender(sk_message *m, const char *mailbox, sk_error *err);
SK_NODISCARD sk_err sk_message_set_reply_to(sk_message *m, const char *mailbox, sk_error *err);
SK_NODISCARD sk_err sk_message_add_to(sk_message *m, const char *mailbox, sk_error *err);
SK_NODISCARD sk_err sk_message_add_cc(sk_message *m, const char *mailbox, sk_error *err);
/* Bcc recipients are in the envelope only, never in the rendered message. */
SK_NODISCARD sk_err sk_message_add_bcc(sk_message *m, const char *mailbox, sk_error *err);
SK_NODISCARD sk_err sk_message_set_subject(sk_message *m, const char *subject_utf8, sk_error *err);

/* Bodies in UTF-8; line ends may be LF or CRLF (sent as CRLF). Text and
 * HTML together make a multipart/alternative. */
SK_NODISCARD sk_err sk_message_set_text(sk_message *m, const char *text_utf8, sk_error *err);
SK_NODISCARD sk_err sk_message_set_html(sk_message *m, const char *html_utf8, sk_error *err);

/* Attach a file, read now (SK_ERR_NOT_FOUND, SK_ERR_IO; over
 * SK_MIME_ATTACHMENT_MAX_OCTETS: SK_ERR_TOO_LONG). Its file name is the
 * path's last component. content_type NULL: chosen from the extension by
 * sk_mime_type_for_filename. */
SK_NODISCARD sk_err sk_message_attach_file(sk_message *m, const char *path,
                                           const char *content_type, sk_error *err);
/* Attach bytes under a file name (UTF-8 allowed; no '/' or control
 * characters). */
SK_NODISCARD sk_err sk_message_attach_data(sk_message *m, const char *filename, const void *data,
                                           size_t len, const char *content_type, sk_error *err);
/* Inline parts (images) referenced from the HTML as "cid:CID"; they go
 * with the HTML in a multipart/related. cid is the bare id
 * ("logo@example.org", without angle brackets). */
SK_NODISCARD sk_err sk_message_add_inline_file(sk_message *m, const char *cid, const char *path,
                                               const char *content_type, sk_error *err);
SK_NODISCARD sk_err sk_message_add_inline_data(sk_message *m, const char *cid, const char *filename,
                                               const void *data, size_t len,
                                               const char *content_type, sk_error *err);

/* An extra header field. name must be RFC 5322 ftext and not one the
 * composer writes itself (From, To, Cc, Bcc, Subject, Date, Message-ID,
 * Sender, Reply-To, MIME-Version, Content-*): SK_ERR_INVAL. value (UTF-8)
 * is folded at white space; ASCII words are kept as given (so structured
 * fields such as List-Unsubscribe keep their syntax, and encoded words
 * stay encoded words), words that are not ASCII become RFC 2047 encoded
 * words, as fits unstructured fields. A word too long for a line of 998
 * octets: SK_ERR_TOO_LONG. */
SK_NODISCARD sk_err sk_message_add_header(sk_message *m, const char *name, const char *value,
                                          sk_error *err);
/* Message-ID: "left@right", with or without angle brackets. When not set,
 * one is made of 128 random bits and the domain of From, fixed for the
 * life of the message (rendering twice gives the same ID). */
SK_NODISCARD sk_err sk_message_set_message_id(sk_message *m, const char *id, sk_error *err);
/* Date (RFC 5322 3.3); when not set, the time of rendering. */
void sk_message_set_date(sk_message *m, int64_t unix_seconds);

/* The bound on a rendered message when no server's SIZE gives one: twice
 * the size a server of ours accepts by default, so what a server may take
 * is never refused here (sk_client_send_message; bindings' rendering). An
 * enum constant, not a macro, so that Swift imports it. */
enum { SK_MESSAGE_RENDER_MAX_OCTETS = 70 * 1024 * 1024 };

/* Append the whole message (RFC 5322, MIME 1.0) to out, lines ended by
 * CRLF, none over 998 octets. From is required (SK_ERR_INVAL without it).
 * Only 7-bit octets are produced, except raw UTF-8 addr-specs when
 * sk_message_needs_smtputf8. out's maximum bounds the size
 * (SK_ERR_TOO_LONG). */
SK_NODISCARD sk_err sk_message_render(const sk_message *m, sk_buf *out, sk_error *err);

/* The Message-ID the message has or will be rendered with, "<...>",
 * appended to out (SK_ERR_INVAL when neither it nor From is set). */
SK_NODISCARD sk_err sk_message_get_message_id(const sk_message *m, sk_buf *out);

/* ---- Envelope -------------------------------------------------------- */

/* Reverse-path: the addr-spec of Sender, else of From; NULL when unset. */
const char *sk_message_reverse_path(const sk_message *m);
/* All recipients (To, Cc, Bcc) as addr-specs, in order of addition,
 * without duplicates (domains compared without regard to case). */
size_t sk_message_recipient_count(const sk_message *m);
const char *sk_message_recipient(const sk_message *m, size_t i); /* NULL past the end */
/* 1 when an envelope address is not ASCII: the message needs the peer's
 * SMTPUTF8 (RFC 6531) and MAIL FROM must carry the SMTPUTF8 parameter. */
int sk_message_needs_smtputf8(const sk_message *m);

/* An envelope as data (owned strings), for composed and prepared messages. */
typedef struct sk_message_envelope {
    char *reverse_path; /* addr-spec */
    char **recipients;  /* addr-specs, no duplicates */
    size_t recipient_count;
    /* 1 when an address (composed messages) or any header octet (prepared
     * messages, RFC 6532) is not ASCII: needs SMTPUTF8 (RFC 6531). */
    int smtputf8;
    /* 1 when the body has octets over 127: needs 8BITMIME (RFC 6152). The
     * composer's output never does. */
    int eightbit;
} sk_message_envelope;
void sk_message_envelope_clear(sk_message_envelope *env);
/* Copy a composed message's envelope. SK_ERR_INVAL without From. */
SK_NODISCARD sk_err sk_message_get_envelope(const sk_message *m, sk_message_envelope *env,
                                            sk_error *err);

/* ---- Prepared messages (`smtpkit send --message FILE`, like sendmail -t) */

/* Extract the envelope from a raw RFC 5322 message's header: the
 * reverse-path from Sender or else From (its first mailbox), recipients
 * from every To, Cc and Bcc field (unfolded, groups and encoded words
 * understood). Line ends may be LF or CRLF. SK_ERR_SYNTAX when the header
 * is malformed or has no From; a message without recipients gives an
 * envelope with recipient_count 0. */
SK_NODISCARD sk_err sk_message_parse_envelope(const char *raw, size_t len, sk_message_envelope *env,
                                              sk_error *err);
/* Append raw to out with every Bcc field (and its continuation lines)
 * removed and all line ends (LF, CRLF, lone CR) made CRLF; a final line
 * without a line end gets one. SK_ERR_SYNTAX when the header is
 * malformed or has no field but Bcc, or a line is over 998 octets. */
SK_NODISCARD sk_err sk_message_prepare_raw(const char *raw, size_t len, sk_buf *out, sk_error *err);

/* ---- Header fields of a raw message --------------------------------- */

/* One field of a header block as it stands in the raw text: the name, the
 * value from just after the colon to the end of its last continuation line
 * (folding kept, final line end not included), and where the whole field
 * lies in the block (offset and length with its final line end), so a
 * caller can copy or drop it. */
typedef struct sk_header_field {
    const char *name; /* name_len 0: a line that neither starts a field nor continues one */
    size_t name_len;
    const char *value;
    size_t value_len;
    size_t offset, length;
} sk_header_field;

/* The next field of the header block raw[0..len) from *pos (start at 0):
 * 1 with *f filled and *pos moved past it, 0 at the end of the header (the
 * first empty line, or the end of raw). Line ends may be LF, CRLF or a
 * lone CR; a field name is RFC 5322 ftext, with white space before the
 * colon accepted (RFC 5322 4.5). A line that is neither a field nor a
 * continuation (and continuation lines before any field) come back as a
 * field with name_len 0 covering that line, for the caller to judge. */
int sk_header_next(const char *raw, size_t len, size_t *pos, sk_header_field *f);
/* 1 when f's name is name (ASCII case-insensitive). */
int sk_header_is(const sk_header_field *f, const char *name);
/* Append f's value to out unfolded (RFC 5322 2.2.3: each line end that is
 * followed by white space removed) and without leading white space.
 * SK_ERR_TOO_LONG past out's maximum. */
SK_NODISCARD sk_err sk_header_unfold(const sk_header_field *f, sk_buf *out);

/* ---- Helpers --------------------------------------------------------- */

/* A media type from a file name's extension (case-insensitive), e.g.
 * "report.pdf" -> "application/pdf"; "application/octet-stream" when
 * unknown. Static storage. */
const char *sk_mime_type_for_filename(const char *filename);

#ifdef __cplusplus
}
#endif
#endif
