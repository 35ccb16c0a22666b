/* The Received: header both transports put on top of a message (RFC 5321
 * 4.4): one builder, so a Maildir file and a relayed message say the same;
 * and the fields added at acceptance, which go right below it. */
#include "deliver/deliver_int.h"

#include <string.h>

/* Append the strings of a NULL-terminated list. The header is made for
 * every message, from pieces rather than printf formats: formatting it
 * took about 8,000 more instructions a message (callgrind, relay run). */
static sk_err put(sk_buf *out, const char *const *pieces)
{
    sk_err e = SK_OK;
    for (; !e && *pieces; pieces++) e = sk_buf_puts(out, *pieces);
    return e;
}

sk_err sk_deliver_received(const sk_spool_envelope *env, const char *id, const char *by,
                           const char *rcpt, int64_t now, const char *eol, sk_buf *out)
{
    char date[40];
    sk_time_rfc5322(now, date);
    /* "from": the client's HELO name, then the TCP-info: the address
     * literal, after its DNS name when one is known. */
    const char *helo = env->helo && *env->helo ? env->helo : "unknown";
    const char *name = env->peer_name && *env->peer_name ? env->peer_name : NULL;
    sk_err e = put(out, (const char *[]){"Received: from ", helo, NULL});
    if (!e && env->peer)
        e = put(out,
                (const char *[]){" (", name ? name : "", name ? " [" : "[", env->peer, "])", NULL});
    /* "with": the RFC 3848 protocol name; the TLS in use as a comment. */
    if (!e)
        e = put(out, (const char *[]){eol, "\tby ", by, " with ", sk_spool_envelope_protocol(env),
                                      NULL});
    if (!e && env->tls) e = put(out, (const char *[]){" (", env->tls, ")", NULL});
    if (!e) e = put(out, (const char *[]){" id ", id, NULL});
    if (e) return e;
    /* RFC 5321 7.2: naming the recipient is safe only when there is one.
     * Without "for", the "by" line is long enough: the date goes on a line
     * of its own. */
    if (rcpt) return put(out, (const char *[]){eol, "\tfor <", rcpt, ">; ", date, eol, NULL});
    return put(out, (const char *[]){";", eol, "\t", date, eol, NULL});
}

sk_err sk_deliver_added_fields(const sk_spool_envelope *env, const char *eol, sk_buf *out)
{
    /* Stored with CRLF line ends (sk_spool_msg_prepend checks them). */
    const char *p = env->prepend;
    sk_err e = SK_OK;
    while (!e && p && *p) {
        const char *crlf = strstr(p, "\r\n");
        size_t n = crlf ? (size_t)(crlf - p) : strlen(p);
        e = sk_buf_append(out, p, n);
        if (!e) e = sk_buf_puts(out, eol);
        p = crlf ? crlf + 2 : p + n;
    }
    return e;
}
