/* The header block of a message as it streams in (sans I/O): where it
 * ends, its From fields, and, for mail from outside, the removal of the
 * Authentication-Results fields that claim our authserv-id (RFC 8601 5). */
#include "daemon_int.h"

#include <smtpkit/authres.h>

#include <string.h>
#include <strings.h>

enum {
    SCAN_LINE_START = 0, /* at the start of a line of the header block */
    SCAN_NAME,           /* in a field's name, before its colon */
    SCAN_FIELD,          /* in a field's value (or a line that is no field) */
    SCAN_BLANK,          /* the empty line's CR was seen */
    SCAN_BODY,           /* past the header block */
};

enum { FIELD_OTHER = 0, FIELD_FROM, FIELD_AUTHRES };

void sk_hdrscan_init(sk_hdrscan *h, const char *strip_id)
{
    memset(h, 0, sizeof *h);
    h->strip_id = strip_id;
    sk_buf_init(&h->name, SK_DAEMON_FIELD_NAME_MAX_OCTETS + 1);
    sk_buf_init(&h->held, SK_AUTHRES_HEADER_MAX_OCTETS + 2);
    sk_buf_init(&h->from, SK_DAEMON_FROM_FIELDS_MAX_OCTETS);
}

void sk_hdrscan_free(sk_hdrscan *h)
{
    sk_buf_free(&h->name);
    sk_buf_free(&h->held);
    sk_buf_free(&h->from);
}

bool sk_hdrscan_in_body(const sk_hdrscan *h)
{
    return h->state == SCAN_BODY;
}

/* A field that goes on: to out, and a From field also to the copy. */
static sk_err emit(sk_hdrscan *h, const char *p, size_t n, sk_buf *out)
{
    if (h->kind == FIELD_FROM && !h->from_overflow && sk_buf_append(&h->from, p, n))
        h->from_overflow = true; /* the DMARC check then says so */
    return sk_buf_append(out, p, n);
}

/* Is the Authentication-Results field held ours? It is tested whole, or,
 * past SK_AUTHRES_HEADER_MAX_OCTETS, by its start given a line end: the
 * authserv-id comes first. */
static bool held_is_ours(sk_hdrscan *h)
{
    sk_authres_span *spans = NULL;
    size_t n = 0;
    size_t len = h->held.len;
    bool cut = len < 2 || h->held.data[len - 2] != '\r' || h->held.data[len - 1] != '\n';
    /* held has room for the two octets (its bound is the limit plus 2). */
    if (cut && (sk_buf_append(&h->held, "\r\n", 2))) return true;
    sk_err e = sk_authres_find_ours(h->held.data, h->held.len, h->strip_id, &spans, &n);
    sk_free(spans);
    if (cut) h->held.len = len;
    /* Out of memory: remove it rather than pass on what may be a forgery. */
    return e != SK_OK || n > 0;
}

/* The field before the current line has ended: an Authentication-Results
 * field held until now goes on or is dropped. */
static sk_err field_end(sk_hdrscan *h, sk_buf *out)
{
    sk_err e = SK_OK;
    if (h->kind == FIELD_AUTHRES && !h->dropping) {
        if (held_is_ours(h))
            h->removed++;
        else
            e = sk_buf_append(out, h->held.data, h->held.len);
    }
    sk_buf_reset(&h->held);
    h->dropping = false;
    h->kind = FIELD_OTHER;
    return e;
}

/* The name is complete (at its colon, or at a line end or a bound): what
 * kind of field it starts, and where its octets go. */
static sk_err name_end(sk_hdrscan *h, bool is_field, sk_buf *out)
{
    size_t n = h->name.len - (is_field ? 1 : 0); /* without the colon */
    const char *name = h->name.data;
    while (n && (name[n - 1] == ' ' || name[n - 1] == '\t')) n--;
    h->kind = FIELD_OTHER;
    if (is_field && n == 4 && !strncasecmp(name, "From", 4)) h->kind = FIELD_FROM;
    if (is_field && h->strip_id && n == 22 && !strncasecmp(name, "Authentication-Results", 22))
        h->kind = FIELD_AUTHRES;
    sk_err e = h->kind == FIELD_AUTHRES ? sk_buf_append(&h->held, h->name.data, h->name.len)
                                        : emit(h, h->name.data, h->name.len, out);
    sk_buf_reset(&h->name);
    return e;
}

/* Value octets of the current field, up to and with a line end. */
static sk_err value(sk_hdrscan *h, const char *p, size_t n, sk_buf *out)
{
    if (h->kind != FIELD_AUTHRES) return emit(h, p, n, out);
    if (h->dropping) return SK_OK;
    size_t room = SK_AUTHRES_HEADER_MAX_OCTETS - h->held.len;
    if (n <= room) return sk_buf_append(&h->held, p, n);
    /* Longer than any field we would write: decided by its start, then
     * the rest follows that decision without being held. */
    if (held_is_ours(h)) {
        h->removed++;
        h->dropping = true;
        sk_buf_reset(&h->held);
        return SK_OK;
    }
    sk_err e = sk_buf_append(out, h->held.data, h->held.len);
    sk_buf_reset(&h->held);
    h->kind = FIELD_OTHER;
    return e ? e : emit(h, p, n, out);
}

sk_err sk_hdrscan_feed(sk_hdrscan *h, const char *p, size_t n, sk_buf *out, size_t *used)
{
    size_t i = 0;
    sk_err e = SK_OK;
    while (!e && i < n && h->state != SCAN_BODY) {
        char c = p[i];
        switch (h->state) {
        case SCAN_LINE_START:
            if (c == ' ' || c == '\t') {
                /* RFC 5322 2.2.3: folding continues the field. */
                h->state = SCAN_FIELD;
                break;
            }
            e = field_end(h, out);
            if (e) break;
            if (c == '\r') {
                h->state = SCAN_BLANK;
                i++;
                break;
            }
            h->state = SCAN_NAME;
            break;
        case SCAN_NAME:
            if (c == '\r' || c == '\n') {
                /* A line without a colon: no field (RFC 5322 3.6.8 has
                 * none); it goes on as it is. */
                e = name_end(h, false, out);
                h->state = SCAN_FIELD;
                break;
            }
            e = sk_buf_putc(&h->name, c);
            i++;
            if (!e && (c == ':' || h->name.len > SK_DAEMON_FIELD_NAME_MAX_OCTETS)) {
                e = name_end(h, c == ':', out);
                h->state = SCAN_FIELD;
            }
            break;
        case SCAN_FIELD: {
            const char *nl = memchr(p + i, '\n', n - i);
            size_t k = nl ? (size_t)(nl - (p + i)) + 1 : n - i;
            e = value(h, p + i, k, out);
            i += k;
            if (nl) h->state = SCAN_LINE_START;
            break;
        }
        case SCAN_BLANK:
            /* The server refuses a bare CR: an LF follows. The empty
             * line ends the header block (RFC 5322 2.1). */
            e = sk_buf_append(out, "\r\n", 2);
            if (c == '\n') i++;
            h->state = SCAN_BODY;
            break;
        }
    }
    *used = i;
    return e;
}

sk_err sk_hdrscan_end(sk_hdrscan *h, sk_buf *out)
{
    /* A message that ends in its header block (no body): the last field
     * ends with it. */
    sk_err e = SK_OK;
    if (h->state == SCAN_NAME) e = name_end(h, false, out);
    if (!e && h->state != SCAN_BODY) e = field_end(h, out);
    if (!e && h->state == SCAN_BLANK) e = sk_buf_append(out, "\r", 1);
    h->state = SCAN_BODY;
    return e;
}
