/* The client's side of the control channel's read requests
 * (`smtpkit stats --metrics`): one verb, one block of text back. */
#include "control/control_int.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Read from fd into in until it holds want octets (or, want 0, a line
 * end), each wait bounded by timeout_ms. */
static sk_err read_more(int fd, sk_buf *in, size_t want, unsigned timeout_ms, sk_error *err)
{
    for (;;) {
        if (want ? in->len >= want : (in->len && memchr(in->data, '\n', in->len))) return SK_OK;
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        int r = poll(&pfd, 1, (int)timeout_ms);
        if (r < 0 && errno == EINTR) continue;
        if (r == 0)
            return sk_error_set(err, SK_ERR_TIMEOUT, SK_STEP_NONE,
                                "the running daemon did not answer within %u ms", timeout_ms);
        char chunk[16384];
        ssize_t got = recv(fd, chunk, sizeof chunk, 0);
        if (got < 0 && errno == EINTR) continue;
        if (got <= 0)
            return sk_error_set(err, SK_ERR_CLOSED, SK_STEP_NONE,
                                "the daemon closed the connection before it answered");
        if (sk_buf_append(in, chunk, (size_t)got))
            return sk_error_set(err, SK_ERR_TOO_LONG, SK_STEP_NONE,
                                "the daemon's answer is over %u octets",
                                SK_CONTROL_DATA_MAX_OCTETS);
    }
}

static sk_err converse(int fd, const char *verb, unsigned timeout_ms, sk_buf *out, sk_error *err)
{
    char req[32];
    int n = snprintf(req, sizeof req, "%s\n", verb);
    if (send(fd, req, (size_t)n, MSG_NOSIGNAL) != n)
        return sk_error_set(err, SK_ERR_CLOSED, SK_STEP_NONE, "sending the request: %s",
                            strerror(errno));
    /* The header line and the status line come on top of the text. */
    sk_buf in = SK_BUF_INIT(SK_CONTROL_DATA_MAX_OCTETS + 2 * SK_CONTROL_REPLY_LINE_MAX_OCTETS);
    sk_err e = read_more(fd, &in, 0, timeout_ms, err);
    if (e) goto done;
    char *nl = memchr(in.data, '\n', in.len);
    size_t hl = (size_t)(nl - in.data);
    unsigned long long len = 0;
    int used = 0;
    if (hl > 5 && !memcmp(in.data, "data ", 5) && sscanf(in.data + 5, "%llu%n", &len, &used) == 1 &&
        (size_t)used == hl - 5) {
        if (len > SK_CONTROL_DATA_MAX_OCTETS) {
            e = sk_error_set(err, SK_ERR_TOO_LONG, SK_STEP_NONE,
                             "the daemon's answer is over %u octets", SK_CONTROL_DATA_MAX_OCTETS);
            goto done;
        }
        size_t body = hl + 1;
        if ((e = read_more(fd, &in, body + (size_t)len, timeout_ms, err))) goto done;
        if ((e = sk_buf_append(out, in.data + body, (size_t)len))) {
            sk_error_set(err, e, SK_STEP_NONE, "the answer does not fit");
            goto done;
        }
        sk_buf_consume(&in, body + (size_t)len);
        if ((e = read_more(fd, &in, 0, timeout_ms, err))) goto done;
        nl = memchr(in.data, '\n', in.len);
        hl = (size_t)(nl - in.data);
    }
    /* The status line. */
    sk_control_reply r;
    if (sk_control_reply_parse(in.data, hl, &r) || r.kind == SK_CONTROL_PROGRESS)
        e = sk_error_set(err, SK_ERR_PROTOCOL, SK_STEP_NONE,
                         "the daemon's answer cannot be read: '%.*s'", (int)(hl > 200 ? 200 : hl),
                         in.data);
    else if (r.kind == SK_CONTROL_ERROR)
        e = sk_error_set(err, r.err, SK_STEP_NONE, "%s", r.text[0] ? r.text : sk_strerror(r.err));
done:
    sk_buf_free(&in);
    return e;
}

sk_err sk_control_fetch(const char *data_dir, const char *verb, unsigned timeout_ms, sk_buf *out,
                        sk_error *err)
{
    sk_error_clear(err);
    if (!verb || !*verb || strlen(verb) > 16)
        return sk_error_set(err, SK_ERR_INVAL, SK_STEP_NONE, "no such request");
    sk_error e2;
    sk_spool *ro = sk_spool_open(data_dir, &(sk_spool_opts){.mode = SK_SPOOL_READONLY}, NULL, &e2);
    if (!ro) {
        if (e2.err == SK_ERR_NOT_FOUND)
            return sk_error_set(err, SK_ERR_NOT_FOUND, SK_STEP_NONE, "no spool in %s", data_dir);
        if (err) *err = e2;
        return e2.err;
    }
    int fd = sk_control_connect(sk_spool_dir(ro));
    int why = errno;
    sk_spool_free(ro);
    if (fd < 0)
        return sk_error_set(
            err, why == ENOENT || why == ECONNREFUSED ? SK_ERR_NOT_FOUND : SK_ERR_IO, SK_STEP_NONE,
            "no daemon answers on %s's control socket: %s", data_dir, strerror(why));
    sk_err e = converse(fd, verb, timeout_ms, out, err);
    close(fd);
    return e;
}
