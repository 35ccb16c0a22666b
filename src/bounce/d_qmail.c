/* Detector "qmail": qmail-send's bounce (qmail 1.03, netqmail, notqmail
 * and its descendants; also vpopmail's, and the gateways that reuse its
 * layout with their own greeting, as messagelabs.com or hosting
 * providers do). Marks: "Hi. This is the qmail-send program at HOST." and
 * "I'm afraid I wasn't able to deliver your message to the following
 * addresses."; or, with another greeting, qmail's fixed parts: the
 * subject "failure notice" or the line "--- Below this line is a copy of
 * the message." ("--- Enclosed are the original headers of the
 * message.", Yahoo's "--- Original message follows."), or the Received
 * field qmail-send writes on every bounce it makes ("Received: (qmail
 * 12345 invoked for bounce)", kept by descendants that translate the
 * text: Sina's, EYOU's). Each recipient as "<addr>:" at the start of a
 * line, followed by the reason, which may end in "(#5.1.1)" style status. */
#include "bounce_int.h"

#include <smtpkit/message.h>

#include <stdint.h>
#include <string.h>
#include <strings.h>

/* qmail-send's trace field on a bounce: "Received: (qmail PID invoked
 * for bounce); DATE"; descendants put their own name before the PID. */
#define BOUNCE_RECEIVED " invoked for bounce)"

static int bounce_received(const bn_msg *m)
{
    size_t pos = 0;
    sk_header_field f;
    while (m->top.data && sk_header_next(m->top.data, m->top.len, &pos, &f))
        if (f.name_len && sk_header_is(&f, "Received") &&
            bn_find(f.value, f.value_len, BOUNCE_RECEIVED))
            return 1;
    return 0;
}

/* A line of the text that is "<addr>:" with nothing else: qmail's way of
 * naming a recipient. */
static const char *angle_line(const bn_msg *m)
{
    size_t pos = 0, len;
    const char *line;
    while (bn_next_line(&m->text, &pos, &line, &len)) {
        while (len && (line[len - 1] == ' ' || line[len - 1] == '\t')) len--;
        if (len > 4 && line[0] == '<' && line[len - 1] == ':' && line[len - 2] == '>' &&
            memchr(line, '@', len))
            return line;
    }
    return NULL;
}

/* The lines from p to qmail's separator, a line that starts with three
 * dashes and a space ("--- Below this line is a copy of the message.",
 * in the bounce's own language in translated descendants), which ends
 * the recipients; SIZE_MAX when there is none. */
static size_t separator_lines(const bn_msg *m, const char *p)
{
    size_t pos = (size_t)(p - m->text.data), len, n = 0;
    const char *line;
    while (bn_next_line(&m->text, &pos, &line, &len)) {
        if (len >= 4 && !memcmp(line, "--- ", 4) && line != p) return n;
        n++;
    }
    return SIZE_MAX;
}

sk_err bn_qmail(const bn_msg *m, sk_bounce *b)
{
    const char *p = bn_find_buf(&m->text, "This is the qmail-send program at");
    const char *q = bn_find_buf(&m->text, "wasn't able to deliver your message to the following");
    if (!p && !q) {
        char subject[64];
        bn_header(&m->top, "Subject", subject, sizeof subject);
        /* qmail's separator is three dashes and a space ("--- Below this
         * line is a copy of the message.", Yahoo's "--- Original message
         * follows."); other MTAs draw longer lines. */
        int marked = !strcasecmp(subject, "failure notice") ||
                     !strncmp(m->returned_mark, "--- ", 4) || bounce_received(m);
        /* Without qmail-send's greeting, its "<addr>:" lines must be there. */
        if (!marked || !(p = angle_line(m))) return SK_OK;
    }
    char host[256];
    bn_word_after(&m->text, "qmail-send program at", host, sizeof host);
    sk_err e = bn_set_mta(b, host);
    if (!e) e = bn_blocks_n(m, q ? q : p, NULL, separator_lines(m, q ? q : p), b, SK_DSN_FAILED);
    return e;
}
