/* SMTP replies as data: code, enhanced status, text; their class; and the
 * explanation table shared by `smtpkit send` hints and `smtpkit probe`. */
#ifndef SMTPKIT_REPLY_H
#define SMTPKIT_REPLY_H

#include "util.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sk_reply {
    int code;          /* 200..599; 0 = no reply (see SK_REPLY_ASYNC) */
    char enhanced[16]; /* RFC 3463 "x.y.z", "" when none */
    /* Text without the code and enhanced status; lines of a multi-line
     * reply are joined with '\n'. */
    char text[SK_REPLY_TEXT_MAX_OCTETS];
} sk_reply;

/* Ordered: a class >= SK_REPLY_TRANSIENT is a failure. */
typedef enum sk_reply_class {
    SK_REPLY_INVALID = 0,
    SK_REPLY_SUCCESS,      /* 2xx */
    SK_REPLY_INTERMEDIATE, /* 3xx */
    SK_REPLY_TRANSIENT,    /* 4xx */
    SK_REPLY_PERMANENT     /* 5xx */
} sk_reply_class;

/* The one place a reply's class is computed: from its code (200..599;
 * anything else is SK_REPLY_INVALID), and from an RFC 3463 enhanced
 * status by its first digit ("5.1.1": permanent; NULL, "" or another
 * digit: SK_REPLY_INVALID). */
sk_reply_class sk_reply_class_of(int code);
sk_reply_class sk_enhanced_class(const char *enhanced);

/* Build a reply; text is formatted (printf) and truncated to fit. */
sk_reply sk_reply_make(int code, const char *enhanced, const char *fmt, ...) SK_PRINTF(3, 4);

/* A reply as one line, "550 5.1.1 text" (the lines of a multi-line reply
 * joined by spaces), appended to out: how logs and events show a reply and
 * how the spool keeps a recipient's last one. */
SK_NODISCARD sk_err sk_reply_to_line(const sk_reply *r, sk_buf *out);
/* Such a line back into a reply: the code when the line starts with three
 * digits and a space (or ends there), else 0; the enhanced status after it
 * when sk_enhanced_valid for that code, else ""; the rest as the text
 * (truncated to fit). A NULL line gives code 0 and no text. */
void sk_reply_from_line(const char *line, sk_reply *out);

/* A hook answering this has not answered yet: it will call the session's
 * reply function later (asynchronous completion). */
#define SK_REPLY_ASYNC ((sk_reply){.code = 0})
#define SK_REPLY_OK    ((sk_reply){.code = 250, .enhanced = "2.0.0", .text = "Ok"})

/* Is s a syntactically valid RFC 3463 status "class.subject.detail" whose
 * class agrees with code's first digit (code 0: any class 2, 4 or 5)? */
int sk_enhanced_valid(const char *s, int code);

/* One line for people explaining what a reply means and what to do, from
 * its code, enhanced status and text (for instance 530: the server
 * requires authentication). Static storage; NULL when nothing useful is
 * known. */
const char *sk_reply_explain(int code, const char *enhanced, const char *text);
/* A short name for the meaning of an enhanced status ("bad destination
 * mailbox"), from RFC 3463 and the IANA registry; NULL when unknown. */
const char *sk_enhanced_describe(const char *enhanced);

/* ---- client-side reply parser (src/proto/reply_parse.c) ----
 * Incremental and sans I/O: feed it the bytes read from a server and it
 * yields complete replies (RFC 5321 4.2: "250-" lines continue, "250 " or
 * "250" ends), with the enhanced status (RFC 2034/3463) split off when
 * the first line carries one. Bytes after a complete reply are left to
 * the caller (pipelined replies, RFC 2920). LF alone is accepted as a line
 * end; a CR before it is removed. */
typedef struct sk_reply_parser {
    sk_buf line;  /* the partial line being read */
    sk_buf lines; /* text of the reply so far, lines joined by '\n' */
    int code;     /* code of the reply being read; 0 before its first line */
    int nlines;
    sk_reply reply; /* the reply being built */
} sk_reply_parser;

void sk_reply_parser_init(sk_reply_parser *p);
/* Forget any partial reply (after an error, or a new connection). */
void sk_reply_parser_reset(sk_reply_parser *p);
void sk_reply_parser_free(sk_reply_parser *p);
/* Consume bytes from data[0..len). On SK_OK: *used says how many were
 * consumed, and *done is 1 when a reply is complete (then *out holds it,
 * its text truncated to fit sk_reply; sk_reply_parser_text has all of it)
 * or 0 when all of data was consumed and more is needed. Errors:
 * SK_ERR_SYNTAX for a malformed line (bad code, codes that differ within a
 * reply, no space or hyphen after the code), SK_ERR_TOO_LONG for a line
 * over SK_SMTP_REPLY_LINE_MAX_OCTETS or a reply over
 * SK_SMTP_REPLY_MAX_LINES lines / SK_SMTP_REPLY_MAX_OCTETS. After an error
 * the parser must be reset. */
SK_NODISCARD sk_err sk_reply_parser_feed(sk_reply_parser *p, const char *data, size_t len,
                                         size_t *used, sk_reply *out, int *done);
/* The complete text of the last reply (all lines, untruncated, enhanced
 * status removed, joined by '\n'); valid until the next feed. */
const char *sk_reply_parser_text(const sk_reply_parser *p);

#ifdef __cplusplus
}
#endif
#endif
