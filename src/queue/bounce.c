/* DSNs: the RFC 3464 report about recipients that failed permanently or
 * expired, were delayed, delivered or relayed, built from the spooled
 * message (RFC 3461 RET, ENVID, ORCPT). */
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include "queue/queue_int.h"

/* The stored message, the first body_octets octets of its file (the
 * envelope follows them), up to max octets; SK_ERR_TOO_LONG when there is
 * more (then out holds nothing useful). */
static sk_err read_body(sk_spool *spool, const char *id, uint64_t body_octets, size_t max,
                        sk_buf *out)
{
    if (body_octets > max) return SK_ERR_TOO_LONG;
    sk_buf path = SK_BUF_INIT(4096);
    sk_err e = sk_spool_body_path(spool, id, &path);
    int fd = e ? -1 : open(sk_buf_cstr(&path), O_RDONLY | O_CLOEXEC);
    sk_buf_free(&path);
    if (fd < 0) return e ? e : SK_ERR_IO;
    char chunk[16384];
    for (;;) {
        size_t left = (size_t)body_octets - out->len;
        ssize_t r = left ? read(fd, chunk, left < sizeof chunk ? left : sizeof chunk) : 0;
        if (r < 0 || (r == 0 && left)) {
            e = SK_ERR_IO;
            break;
        }
        if (r == 0) break;
        e = sk_buf_append(out, chunk, (size_t)r);
        if (e) break;
    }
    close(fd);
    return e;
}

sk_err sk_queue_bounce_build(sk_spool *spool, const sk_queue_opts *o, const sk_spool_envelope *env,
                             const sk_bounce_rcpt *r, size_t n, int64_t now_s, sk_buf *out,
                             sk_error *err)
{
    sk_dsn_rcpt *dr = sk_calloc(n ? n : 1, sizeof *dr);
    if (!dr) return sk_error_set(err, SK_ERR_NOMEM, SK_STEP_COMPOSE, "out of memory");
    int any_failed = 0;
    for (size_t i = 0; i < n; i++) {
        dr[i] = (sk_dsn_rcpt){.address = r[i].rcpt->addr,
                              .orcpt = r[i].rcpt->orcpt,
                              .action = r[i].action,
                              .status = r[i].status,
                              .remote_mta = r[i].remote,
                              .diagnostic = r[i].diagnostic,
                              .diagnostic_type = r[i].diagnostic_type,
                              .last_attempt = now_s,
                              .retry_until = r[i].retry_until};
        any_failed |= r[i].action == SK_DSN_FAILED;
    }
    size_t full_max =
        o->dsn_full_max_octets ? o->dsn_full_max_octets : SK_DSN_FULL_MAX_OCTETS_DEFAULT;
    sk_dsn_opts d = {.reporting_mta = o->hostname ? o->hostname : "localhost",
                     .sender = env->sender,
                     .envid = env->mail.envid[0] ? env->mail.envid : NULL,
                     .arrival = env->arrival,
                     .ret = env->mail.ret,
                     .full_max_octets = full_max,
                     .now = now_s};
    /* RFC 3461 4.3: the whole message only when RET allows and it is small
     * enough; otherwise its header block is all the report carries. RET
     * is about failures: a report of delays or deliveries only returns
     * the headers. */
    if (!any_failed) d.ret = SK_DSN_RET_HDRS;
    sk_buf msg = SK_BUF_INIT(full_max + (1u << 20)); /* room for a header block too */
    sk_err e = SK_ERR_TOO_LONG;
    if (d.ret != SK_DSN_RET_HDRS && env->body_octets <= full_max)
        e = read_body(spool, env->id, env->body_octets, full_max, &msg);
    if (e) {
        sk_buf_reset(&msg);
        d.ret = SK_DSN_RET_HDRS;
        e = sk_spool_read_headers(spool, env->id, &msg, err);
    }
    if (!e) e = sk_dsn_build(&d, dr, n, msg.data ? msg.data : "", msg.len, out, err);
    sk_buf_free(&msg);
    sk_free(dr);
    return e;
}
