/* The client's side of the control channel (`smtpkit queue`): the request
 * goes to the running daemon's socket, or is done directly on the spool
 * when no daemon holds it. Blocking, with a timeout on every wait. */
#include "control/control_int.h"

#include <errno.h>
#include <poll.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* While a daemon holds the spool lock without answering on the socket yet
 * (it makes the socket once the spool is recovered and the queue loaded),
 * look again this often. */
#define CONTROL_RETRY_MS 50

static int remaining_ms(uint64_t deadline)
{
    uint64_t now = sk_now_ms();
    return now >= deadline ? 0 : (int)(deadline - now);
}

int sk_control_connect(const char *spool_dir)
{
    struct sockaddr_un sa;
    socklen_t len;
    int dir_fd;
    if (sk_control_sockaddr(spool_dir, &sa, &len, &dir_fd)) return -1;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, len) != 0) {
        int why = errno;
        close(fd);
        fd = -1;
        errno = why;
    }
    if (dir_fd >= 0) {
        int why = errno;
        close(dir_fd);
        errno = why;
    }
    return fd;
}

static sk_err send_all(int fd, const char *p, size_t n, unsigned timeout_ms, sk_error *err)
{
    uint64_t deadline = sk_now_ms() + timeout_ms;
    while (n) {
        struct pollfd pfd = {.fd = fd, .events = POLLOUT};
        int r = poll(&pfd, 1, remaining_ms(deadline));
        if (r < 0 && errno == EINTR) continue;
        if (r == 0)
            return sk_error_set(err, SK_ERR_TIMEOUT, SK_STEP_NONE,
                                "the daemon did not take the request within %u ms", timeout_ms);
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w < 0 && (errno == EINTR || errno == EAGAIN)) continue;
        if (w < 0)
            return sk_error_set(err, SK_ERR_CLOSED, SK_STEP_NONE, "sending the request: %s",
                                strerror(errno));
        p += w;
        n -= (size_t)w;
    }
    return SK_OK;
}

/* Send the request line and read reply lines up to the status line; each
 * line may take timeout_ms. */
static sk_err converse(int fd, const sk_buf *req, unsigned timeout_ms, sk_control_result *res,
                       sk_error *err)
{
    sk_err e = send_all(fd, req->data, req->len, timeout_ms, err);
    /* A daemon that refuses us (busy, not our user) answers and closes
     * without reading: its answer is still there to read. */
    if (e && e != SK_ERR_CLOSED) return e;
    char line[SK_CONTROL_REPLY_LINE_MAX_OCTETS];
    size_t have = 0;
    uint64_t deadline = sk_now_ms() + timeout_ms;
    for (;;) {
        char *nl = memchr(line, '\n', have);
        if (nl) {
            sk_control_reply r;
            size_t n = (size_t)(nl - line);
            if (sk_control_reply_parse(line, n, &r))
                return sk_error_set(err, SK_ERR_PROTOCOL, SK_STEP_NONE,
                                    "the daemon's answer cannot be read: '%.*s'", (int)n, line);
            memmove(line, nl + 1, have - n - 1);
            have -= n + 1;
            res->matched = r.matched;
            res->changed = r.changed;
            if (r.kind == SK_CONTROL_OK) return SK_OK;
            if (r.kind == SK_CONTROL_ERROR)
                return sk_error_set(err, r.err, SK_STEP_NONE, "%s",
                                    r.text[0] ? r.text : sk_strerror(r.err));
            deadline = sk_now_ms() + timeout_ms; /* progress: it is working */
            continue;
        }
        if (have == sizeof line)
            return sk_error_set(err, SK_ERR_PROTOCOL, SK_STEP_NONE,
                                "the daemon's answer has a line over %zu octets", sizeof line);
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        int r = poll(&pfd, 1, remaining_ms(deadline));
        if (r < 0 && errno == EINTR) continue;
        if (r == 0)
            return sk_error_set(err, SK_ERR_TIMEOUT, SK_STEP_NONE,
                                "the running daemon did not answer within %u ms", timeout_ms);
        ssize_t got = recv(fd, line + have, sizeof line - have, MSG_DONTWAIT);
        if (got < 0 && (errno == EINTR || errno == EAGAIN)) continue;
        if (got <= 0 && e) return e; /* the send failed, and there is no answer */
        if (got <= 0)
            return sk_error_set(err, SK_ERR_CLOSED, SK_STEP_NONE,
                                "the daemon closed the connection before it answered%s%s",
                                got < 0 ? ": " : "", got < 0 ? strerror(errno) : "");
        have += (size_t)got;
    }
}

sk_err sk_control_run(const char *data_dir, const sk_control_request *r, unsigned timeout_ms,
                      sk_control_result *res, sk_error *err)
{
    sk_error_clear(err);
    memset(res, 0, sizeof *res);
    sk_buf req = SK_BUF_INIT(SK_CONTROL_REQUEST_MAX_OCTETS + 1);
    if (sk_control_request_format(r, &req)) {
        sk_buf_free(&req);
        return sk_error_set(err, SK_ERR_INVAL, SK_STEP_NONE,
                            "an operation needs a queue ID or a filter");
    }
    /* The spool must be there; its directory holds the socket. */
    sk_error e2;
    sk_spool *ro = sk_spool_open(data_dir, &(sk_spool_opts){.mode = SK_SPOOL_READONLY}, NULL, &e2);
    if (!ro) {
        sk_buf_free(&req);
        if (e2.err == SK_ERR_NOT_FOUND)
            return sk_error_set(err, SK_ERR_CONFIG, SK_STEP_NONE, "no spool in %s", data_dir);
        if (err) *err = e2;
        return e2.err;
    }
    char *spool_dir = sk_strdup(sk_spool_dir(ro));
    sk_spool_free(ro);
    if (!spool_dir) {
        sk_buf_free(&req);
        return sk_error_set(err, SK_ERR_NOMEM, SK_STEP_NONE, "out of memory");
    }
    sk_err e;
    uint64_t deadline = sk_now_ms() + timeout_ms;
    for (;;) {
        int fd = sk_control_connect(spool_dir);
        if (fd >= 0) {
            e = converse(fd, &req, timeout_ms, res, err);
            close(fd);
            break;
        }
        int why = errno;
        if (why == ENOENT || why == ECONNREFUSED) {
            /* Nobody listens: unless a daemon holds the spool, do it here. */
            sk_spool *s = sk_spool_open(data_dir, &(sk_spool_opts){.lock_wait_ms = 1}, NULL, &e2);
            if (s) {
                e = sk_control_direct(s, r, res, err);
                sk_spool_free(s);
                break;
            }
            if (e2.err != SK_ERR_STATE) {
                if (err) *err = e2;
                e = e2.err;
                break;
            }
        } else if (why != EAGAIN) {
            /* EACCES: the socket (or spool directory) is not ours to use. */
            e = sk_error_set(err, SK_ERR_IO, SK_STEP_NONE, "cannot connect to %s/%s: %s", spool_dir,
                             SK_CONTROL_SOCKET_NAME, strerror(why));
            break;
        }
        if (!remaining_ms(deadline)) {
            e = sk_error_set(err, SK_ERR_TIMEOUT, SK_STEP_NONE,
                             "a daemon holds the spool in %s but did not answer on %s within %u "
                             "ms",
                             data_dir, SK_CONTROL_SOCKET_NAME, timeout_ms);
            break;
        }
        struct timespec ts = {0, CONTROL_RETRY_MS * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    sk_free(spool_dir);
    sk_buf_free(&req);
    return e;
}
