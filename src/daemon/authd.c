/* The AUTH helper process: holds the password hashes of --users and checks
 * passwords for the network process over a socketpair (privilege split). */
#include "authd.h"

#include "daemon_int.h"

#include <smtpkit/auth.h>
#include <smtpkit/limits.h>

#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* Messages on the channel (SOCK_SEQPACKET keeps their boundaries, so one
 * recv is one message):
 *   network -> helper: 'C' ULEN(2, big-endian) USER PASSWORD   check
 *                      'R'                                    reload
 *   helper -> network: 'O' | 'E' TEXT   once, after loading the file
 *                      'Y' | 'N'        one per check, in order */
#define AUTHD_CHECK  'C'
#define AUTHD_RELOAD 'R'

/* How long sk_authd_free waits for the helper to exit before killing it. */
#define SK_AUTHD_EXIT_WAIT_MS 2000

typedef struct authd_pending {
    sk_authd_done_fn fn;
    void *ctx;
} authd_pending;

struct sk_authd {
    int fd;
    pid_t pid;
    sk_logger log;
    struct event *ev;
    /* Checks sent and not answered yet, oldest first (a ring). */
    authd_pending pending[SK_AUTHD_PENDING_MAX];
    size_t head, count;
    bool gone;
};

/* --- the helper process -------------------------------------------------- */

static void helper_send(int fd, const void *p, size_t n)
{
    while (send(fd, p, n, MSG_NOSIGNAL) < 0 && errno == EINTR) {
    }
}

static void helper_check(int fd, const sk_users *users, unsigned char *req, size_t n)
{
    /* Room for the two terminating NULs: the request buffer is one larger
     * than the largest request. */
    static char user[SK_AUTHD_REQUEST_MAX_OCTETS + 1], password[SK_AUTHD_REQUEST_MAX_OCTETS + 1];
    bool ok = false;
    if (n >= 3) {
        size_t ulen = ((size_t)req[1] << 8) | req[2];
        if (3 + ulen <= n) {
            memcpy(user, req + 3, ulen);
            user[ulen] = '\0';
            memcpy(password, req + 3 + ulen, n - 3 - ulen);
            password[n - 3 - ulen] = '\0';
            /* A NUL inside a name or password is not something a users
             * line can hold. */
            const char *hash = strlen(user) == ulen ? sk_users_hash(users, user) : NULL;
            ok = hash && strlen(password) == n - 3 - ulen && sk_sasl_verify_crypt(password, hash);
        }
    }
    /* The password does not outlive its check. */
    memset(password, 0, sizeof password);
    memset(req, 0, n);
    helper_send(fd, ok ? "Y" : "N", 1);
}

static void helper_reload(const char *path, sk_users *users, const sk_logger *log)
{
    sk_users fresh;
    sk_error err;
    if (sk_users_load(path, &fresh, &err) != SK_OK) {
        sk_log(log, SK_LOG_ERR, "- authd reload-failed error=\"%s\"", err.text);
        return;
    }
    sk_users_free(users);
    *users = fresh;
    sk_log(log, SK_LOG_INFO, "- authd reload-done users=%zu", users->n);
}

static void helper_main(int fd, const char *path, const sk_logger *log)
{
    /* Ctrl-C reaches the whole process group; the network process decides
     * when to stop, and the helper follows when the channel closes. */
    signal(SIGINT, SIG_IGN);
    signal(SIGHUP, SIG_IGN);
    signal(SIGPIPE, SIG_IGN);
    sk_users users = {0};
    sk_error err;
    if (sk_users_load(path, &users, &err) != SK_OK) {
        char msg[sizeof err.text + 1];
        msg[0] = 'E';
        size_t n = strlen(err.text);
        memcpy(msg + 1, err.text, n);
        helper_send(fd, msg, n + 1);
        _exit(1);
    }
    helper_send(fd, "O", 1);
    static unsigned char req[SK_AUTHD_REQUEST_MAX_OCTETS + 1];
    for (;;) {
        /* MSG_TRUNC: the real length, so that an oversized request is
         * seen as such rather than read cut short. */
        ssize_t n = recv(fd, req, sizeof req - 1, MSG_TRUNC);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break; /* the network process has gone */
        if ((size_t)n > sizeof req - 1) {
            memset(req, 0, sizeof req);
            helper_send(fd, "N", 1);
        } else if (req[0] == AUTHD_CHECK) {
            helper_check(fd, &users, req, (size_t)n);
        } else if (req[0] == AUTHD_RELOAD && n == 1) {
            helper_reload(path, &users, log);
        } else {
            helper_send(fd, "N", 1);
        }
    }
    sk_users_free(&users);
    _exit(0);
}

/* --- the network process's side ----------------------------------------- */

static void answer_all(sk_authd *a, sk_authd_result r)
{
    while (a->count) {
        authd_pending p = a->pending[a->head];
        a->head = (a->head + 1) % SK_AUTHD_PENDING_MAX;
        a->count--;
        p.fn(p.ctx, r);
    }
}

static void helper_gone(sk_authd *a, const char *why)
{
    if (!a->gone)
        sk_log(&a->log, SK_LOG_ERR, "- authd helper-gone pid=%ld reason=%s", (long)a->pid, why);
    a->gone = true;
    if (a->ev) event_del(a->ev);
    answer_all(a, SK_AUTHD_UNAVAILABLE);
}

static void on_readable(evutil_socket_t fd, short what, void *arg)
{
    sk_authd *a = arg;
    for (;;) {
        char c[16];
        ssize_t n = recv(fd, c, sizeof c, 0);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
        if (n <= 0) {
            helper_gone(a, n == 0 ? "closed" : "error");
            return;
        }
        if (n != 1 || (c[0] != 'Y' && c[0] != 'N') || a->count == 0) {
            /* Answers can no longer be matched to checks. */
            helper_gone(a, "protocol");
            return;
        }
        authd_pending p = a->pending[a->head];
        a->head = (a->head + 1) % SK_AUTHD_PENDING_MAX;
        a->count--;
        p.fn(p.ctx, c[0] == 'Y' ? SK_AUTHD_OK : SK_AUTHD_FAIL);
    }
}

sk_authd *sk_authd_start(const char *users_path, const sk_logger *log, sk_error *err)
{
    sk_authd *a = sk_calloc(1, sizeof *a);
    if (!a) {
        sk_error_set(err, SK_ERR_NOMEM, SK_STEP_NONE, "out of memory");
        return NULL;
    }
    if (log) a->log = *log;
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0) {
        sk_error_set(err, SK_ERR_IO, SK_STEP_NONE, "auth helper: socketpair: %s", strerror(errno));
        sk_free(a);
        return NULL;
    }
    pid_t pid = fork();
    if (pid < 0) {
        sk_error_set(err, SK_ERR_IO, SK_STEP_NONE, "auth helper: fork: %s", strerror(errno));
        close(sv[0]);
        close(sv[1]);
        sk_free(a);
        return NULL;
    }
    if (pid == 0) {
        /* The helper needs none of the network side's state. */
        close(sv[0]);
        sk_free(a);
        helper_main(sv[1], users_path, log);
    }
    close(sv[1]);
    a->fd = sv[0];
    a->pid = pid;
    /* The helper says once whether the file loaded. */
    char msg[sizeof err->text + 2];
    ssize_t n;
    while ((n = recv(a->fd, msg, sizeof msg - 1, 0)) < 0 && errno == EINTR) {
    }
    if (n == 1 && msg[0] == 'O') {
        sk_log(&a->log, SK_LOG_INFO, "- authd started pid=%ld", (long)pid);
        return a;
    }
    if (n > 1 && msg[0] == 'E') {
        msg[n] = '\0';
        sk_error_set(err, SK_ERR_CONFIG, SK_STEP_NONE, "%s", msg + 1);
    } else {
        sk_error_set(err, SK_ERR_IO, SK_STEP_NONE, "auth helper did not start");
    }
    a->gone = true;
    sk_authd_free(a);
    return NULL;
}

sk_err sk_authd_attach(sk_authd *a, struct event_base *base, sk_error *err)
{
    int fl = fcntl(a->fd, F_GETFL);
    if (fl < 0 || fcntl(a->fd, F_SETFL, fl | O_NONBLOCK) != 0)
        return sk_error_set(err, SK_ERR_IO, SK_STEP_NONE, "auth helper: %s", strerror(errno));
    a->ev = event_new(base, a->fd, EV_READ | EV_PERSIST, on_readable, a);
    if (!a->ev || event_add(a->ev, NULL) != 0)
        return sk_error_set(err, SK_ERR_NOMEM, SK_STEP_NONE, "auth helper: cannot watch it");
    return SK_OK;
}

sk_err sk_authd_check(sk_authd *a, const char *user, const char *password, sk_authd_done_fn fn,
                      void *ctx)
{
    static unsigned char req[SK_AUTHD_REQUEST_MAX_OCTETS];
    size_t ulen = strlen(user), plen = strlen(password);
    if (a->gone) return SK_ERR_STATE;
    /* The framework bounds both by SK_SASL_MAX_OCTETS; the channel by this. */
    if (ulen > 0xffff || 3 + ulen + plen > sizeof req) return SK_ERR_TOO_LONG;
    /* Past this many waiting checks, clients wait for a 454 instead. */
    if (a->count == SK_AUTHD_PENDING_MAX) return SK_ERR_TEMPFAIL;
    req[0] = AUTHD_CHECK;
    req[1] = (unsigned char)(ulen >> 8);
    req[2] = (unsigned char)ulen;
    memcpy(req + 3, user, ulen);
    memcpy(req + 3 + ulen, password, plen);
    ssize_t n;
    while ((n = send(a->fd, req, 3 + ulen + plen, MSG_NOSIGNAL | MSG_DONTWAIT)) < 0 &&
           errno == EINTR) {
    }
    memset(req, 0, 3 + ulen + plen);
    if (n < 0) return errno == EAGAIN || errno == EWOULDBLOCK ? SK_ERR_TEMPFAIL : SK_ERR_IO;
    a->pending[(a->head + a->count) % SK_AUTHD_PENDING_MAX] = (authd_pending){fn, ctx};
    a->count++;
    return SK_OK;
}

void sk_authd_reload(sk_authd *a)
{
    if (!a || a->gone) return;
    char c = AUTHD_RELOAD;
    if (send(a->fd, &c, 1, MSG_NOSIGNAL | MSG_DONTWAIT) != 1)
        sk_log(&a->log, SK_LOG_ERR, "- authd reload-failed error=\"%s\"", strerror(errno));
}

pid_t sk_authd_pid(const sk_authd *a)
{
    return a ? a->pid : -1;
}

void sk_authd_free(sk_authd *a)
{
    if (!a) return;
    if (a->ev) event_free(a->ev);
    a->ev = NULL;
    close(a->fd);
    answer_all(a, SK_AUTHD_UNAVAILABLE);
    /* The helper exits when it reads the end of the channel; a check in
     * progress finishes first. */
    struct timespec tick = {0, 10 * 1000 * 1000};
    int waited_ms = 0;
    while (waitpid(a->pid, NULL, WNOHANG) == 0) {
        if (waited_ms >= SK_AUTHD_EXIT_WAIT_MS) {
            kill(a->pid, SIGKILL);
            waitpid(a->pid, NULL, 0);
            break;
        }
        nanosleep(&tick, NULL);
        waited_ms += 10;
    }
    sk_free(a);
}
