/* The inside of the bounce reader: the message taken apart once, the
 * helpers every detector uses, and the detectors themselves (one file
 * each, run in the order of detectors[] in read.c). */
#ifndef SMTPKIT_BOUNCE_INT_H
#define SMTPKIT_BOUNCE_INT_H

#include <smtpkit/bounce.h>
#include <smtpkit/dsn.h>

#include <stddef.h>

/* A message as detectors see it. Text is decoded (base64,
 * quoted-printable), with LF line ends; HTML is reduced to its text. */
typedef struct bn_msg {
    sk_buf top;        /* the bounce's own header block */
    sk_buf text;       /* its human-readable parts, one after another */
    sk_buf orig;       /* the returned message's header block, when found */
    sk_buf attached;   /* the first attached message/rfc822, whole */
    sk_report *report; /* the RFC 3464 status part, NULL when none */
    /* The line that starts a copy of the returned message inside the text
     * ("--- Below this line is a copy of the message."), "" when none; the
     * text stops before it (msg.c). */
    char returned_mark[SK_BOUNCE_MARK_MAX_OCTETS + 1];
    /* The mailing lists the bounce or the returned message passed through
     * (bn_list_addresses): their addresses and RFC 2919 list-ids, one a
     * line. Never the failed recipient (bn_not_recipient). */
    sk_buf lists;
    /* Addresses that are never the failed recipient (bn_not_recipient). */
    char not_rcpt[SK_BOUNCE_NOT_RCPT_MAX][SK_SMTP_PATH_MAX_OCTETS + 1];
    size_t n_not_rcpt;
} bn_msg;

/* A detector: SK_OK with b->detector set when it read m, SK_OK with
 * b->detector NULL when m is not its family's; errors only for memory. */
typedef sk_err (*bn_detect_fn)(const bn_msg *m, sk_bounce *b);
typedef struct bn_detector {
    const char *name;
    bn_detect_fn fn;
} bn_detector;

sk_err bn_rfc3464(const bn_msg *m, sk_bounce *b);
sk_err bn_list(const bn_msg *m, sk_bounce *b);
sk_err bn_postfix(const bn_msg *m, sk_bounce *b);
sk_err bn_exim(const bn_msg *m, sk_bounce *b);
sk_err bn_qmail(const bn_msg *m, sk_bounce *b);
sk_err bn_sendmail(const bn_msg *m, sk_bounce *b);
sk_err bn_exchange(const bn_msg *m, sk_bounce *b);
sk_err bn_yahoo(const bn_msg *m, sk_bounce *b);
sk_err bn_groupwise(const bn_msg *m, sk_bounce *b);
sk_err bn_domino(const bn_msg *m, sk_bounce *b);
sk_err bn_courier(const bn_msg *m, sk_bounce *b);
sk_err bn_gateway(const bn_msg *m, sk_bounce *b);
sk_err bn_scan(const bn_msg *m, sk_bounce *b);

/* 1 when m is a mailing list's own mail (a probe, a warning about bounces
 * it received, a digest; d_list.c): nothing in it is read. */
int bn_list_own(const bn_msg *m);

/* Fill m->lists from the header blocks of the bounce and of the returned
 * message (d_list.c). */
sk_err bn_list_addresses(bn_msg *m);
/* 1 when addr is an address of a list in m->lists, or one of its role
 * addresses (LIST-bounces@, LIST-owner@, LIST-request@, LIST-admin@). */
int bn_list_address(const bn_msg *m, const char *addr);

/* Take msg apart into m (bn_msg_clear frees it). */
sk_err bn_msg_read(const char *msg, size_t len, bn_msg *m);
void bn_msg_clear(bn_msg *m);

/* ---- helpers (text.c) ---- */

/* Case-insensitive search of needle in p[0..n); NULL when absent. */
const char *bn_find(const char *p, size_t n, const char *needle);
/* The same in a buffer from offset from. */
const char *bn_find_buf(const sk_buf *b, const char *needle);
/* The unfolded value of header field name in block (first one), into
 * out; 0 when absent. */
int bn_header(const sk_buf *block, const char *name, char *out, size_t outsize);
/* The first address (local@domain) in p[0..n) into out, angle brackets,
 * quotes, "mailto:" and trailing punctuation removed; a pointer past it
 * in p, or NULL when none. */
const char *bn_address(const char *p, size_t n, char *out, size_t outsize);
/* The first enhanced status (RFC 3463 class 2, 4 or 5) in p[0..n), as in
 * "#5.1.1" or "550 5.1.1", into out (16 octets); 0 when none. */
int bn_status(const char *p, size_t n, char out[16]);
/* The first SMTP reply in p[0..n): "550 5.1.1 text" or "550-..." to the
 * end of its line, into out; 0 when none. */
int bn_smtp_reply(const char *p, size_t n, char *out, size_t outsize);
/* The line of text containing p: its start and length without the line end. */
void bn_line_of(const sk_buf *t, const char *p, const char **start, size_t *len);
/* Next line of t from *pos: 1 with line and len set, 0 at the end. */
int bn_next_line(const sk_buf *t, size_t *pos, const char **line, size_t *len);
/* 1 when the line is only white space. */
int bn_blank(const char *line, size_t len);

/* Add a recipient (strings copied; NULL for absent). An address already
 * listed is not added twice: missing fields of the first are filled. */
sk_err bn_add(sk_bounce *b, const char *addr, int action, const char *status, const char *reply,
              const char *remote);
/* Set b->reporting_mta if unset. */
sk_err bn_set_mta(sk_bounce *b, const char *mta);
/* Reason lines after an address: the text from p up to the next blank
 * line (or maxlines lines), lines joined by one space, trimmed. */
void bn_reason(const char *p, size_t n, size_t maxlines, char *out, size_t outsize);

/* 1 when addr is never the failed recipient (the bounce's own sender,
 * postmaster, the returned message's sender, a mailing list's own
 * address). */
int bn_not_recipient(const bn_msg *m, const char *addr);
/* The returned message's To when it names one address that may be the
 * failed recipient (not bn_not_recipient, and the message was not posted
 * to a mailing list: no list in its To or Cc), into out; 0 otherwise. */
int bn_returned_to(const bn_msg *m, char *out, size_t outsize);
/* 1 when the text says the message is still being tried (a delay
 * notice, not a failure). */
int bn_delayed(const bn_msg *m);
/* The blocks of a text bounce from from to the line holding stop (NULL:
 * the end): a line starting with an address starts a recipient, the
 * rest of it and the lines after it (to a blank line) are its reason,
 * from which the reply, status and remote host are taken. */
sk_err bn_blocks(const bn_msg *m, const char *from, const char *stop, sk_bounce *b, int action);
/* The same over at most maxlines lines. */
sk_err bn_blocks_n(const bn_msg *m, const char *from, const char *stop, size_t maxlines,
                   sk_bounce *b, int action);
/* The word after mark in t ("at host X"), into out ("" when absent). */
void bn_word_after(const sk_buf *t, const char *mark, char *out, size_t outsize);

#endif
