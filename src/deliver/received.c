/* The Received: header both transports put on top of a message (RFC 5321
 * 4.4): one builder, so a Maildir file and a relayed message say the same. */
#include "deliver/deliver_int.h"

sk_err sk_deliver_received(const sk_spool_envelope *env, const char *id, const char *by,
                           const char *rcpt, int64_t now, const char *eol, sk_buf *out)
{
    char date[40];
    sk_time_rfc5322(now, date);
    /* "from": the client's HELO name, then the TCP-info: the address
     * literal, after its DNS name when one is known. */
    sk_err e =
        sk_buf_printf(out, "Received: from %s", env->helo && *env->helo ? env->helo : "unknown");
    if (!e && env->peer) {
        bool named = env->peer_name && *env->peer_name;
        e = sk_buf_printf(out, " (%s%s[%s])", named ? env->peer_name : "", named ? " " : "",
                          env->peer);
    }
    /* "with": the RFC 3848 protocol name; the TLS in use as a comment. */
    if (!e) e = sk_buf_printf(out, "%s\tby %s with %s", eol, by, sk_spool_envelope_protocol(env));
    if (!e && env->tls) e = sk_buf_printf(out, " (%s)", env->tls);
    if (!e) e = sk_buf_printf(out, " id %s", id);
    if (e) return e;
    /* RFC 5321 7.2: naming the recipient is safe only when there is one.
     * Without "for", the "by" line is long enough: the date goes on a line
     * of its own. */
    if (rcpt) return sk_buf_printf(out, "%s\tfor <%s>; %s%s", eol, rcpt, date, eol);
    return sk_buf_printf(out, ";%s\t%s%s", eol, date, eol);
}
