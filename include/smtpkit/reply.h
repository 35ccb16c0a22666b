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

typedef enum sk_reply_class {
    SK_REPLY_INVALID = 0,
    SK_REPLY_SUCCESS,      /* 2xx */
    SK_REPLY_INTERMEDIATE, /* 3xx */
    SK_REPLY_TRANSIENT,    /* 4xx */
    SK_REPLY_PERMANENT     /* 5xx */
} sk_reply_class;

/* The one place a reply's class is computed. */
sk_reply_class sk_reply_class_of(int code);

/* Build a reply; text is formatted (printf) and truncated to fit. */
sk_reply sk_reply_make(int code, const char *enhanced, const char *fmt, ...) SK_PRINTF(3, 4);

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

#ifdef __cplusplus
}
#endif
#endif
