/* The daemon's side of the control channel: a UNIX stream socket in the
 * spool directory, served on the event loop. One request per connection;
 * its operation runs through the queue's public API (sk_queue_apply_filter)
 * a batch per loop pass, so SMTP sessions go on meanwhile. */
#include "control/control_int.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* Closing a UNIX socket with unread input resets it, and the peer may
 * lose the reply it has not read yet; what has already arrived is read
 * and dropped first, up to this much (about a socket buffer: a flooding
 * peer cannot keep the loop reading). */
#define CONTROL_DRAIN_MAX_OCTETS (64 * 1024)

typedef struct ctl_client ctl_client;

struct sk_control_server {
    sk_queue *q;
    sk_logger log;
    struct event_base *base;
    struct evconnlistener *lis;
    char *path; /* spool_dir/control.sock, removed at the end */
    dev_t dev;  /* the socket file we made (not one put there since) */
    ino_t ino;
    uid_t uid; /* our effective user: it and root may use the socket */
    ctl_client *clients;
    size_t nclients;
    /* Read requests (sk_control_server_on_data). */
    struct {
        char verb[16];
        sk_control_data_fn fn;
        void *ctx;
    } data[SK_CONTROL_DATA_VERBS_MAX];
    size_t ndata;
};

struct ctl_client {
    sk_control_server *srv;
    struct bufferevent *bev; /* NULL once the peer is gone (the operation goes on) */
    struct event *deadline;  /* the request must be complete by then */
    struct event *step;      /* the next batch of a running operation */
    uid_t uid;
    pid_t pid;
    int running; /* the request was read: its operation runs */
    int closing; /* the status line is queued: close once it is written */
    sk_control_request req;
    sk_queue_bulk bulk;
    uint64_t started_ms, progress_ms;
    int waited; /* the operation waited for the queue's load to end */
    ctl_client *prev, *next;
};

static bool answer_data(ctl_client *c, const char *line, size_t n);

static void client_free(ctl_client *c)
{
    sk_control_server *s = c->srv;
    if (c->prev)
        c->prev->next = c->next;
    else
        s->clients = c->next;
    if (c->next) c->next->prev = c->prev;
    s->nclients--;
    if (c->bev) {
        char sink[4096];
        evutil_socket_t fd = bufferevent_getfd(c->bev);
        for (size_t n = 0; n < CONTROL_DRAIN_MAX_OCTETS;) {
            ssize_t r = recv(fd, sink, sizeof sink, MSG_DONTWAIT);
            if (r <= 0) break;
            n += (size_t)r;
        }
        bufferevent_free(c->bev);
    }
    if (c->deadline) event_free(c->deadline);
    if (c->step) event_free(c->step);
    sk_free(c);
}

/* Queue one reply line; the status line also ends the connection. */
static void reply(ctl_client *c, const sk_control_reply *r)
{
    if (!c->bev) return;
    sk_buf b = SK_BUF_INIT(SK_CONTROL_REPLY_LINE_MAX_OCTETS);
    if (sk_control_reply_format(r, &b) == SK_OK) bufferevent_write(c->bev, b.data, b.len);
    sk_buf_free(&b);
    if (r->kind == SK_CONTROL_PROGRESS) return;
    c->closing = 1;
    bufferevent_disable(c->bev, EV_READ);
    /* on_write frees the client once the line is out. */
    if (!evbuffer_get_length(bufferevent_get_output(c->bev))) client_free(c);
}

static void reply_error(ctl_client *c, sk_err e, const char *text)
{
    sk_control_reply r = {.kind = SK_CONTROL_ERROR, .err = e};
    snprintf(r.text, sizeof r.text, "%s", text);
    reply(c, &r);
}

/* The filter, for the log: key=value for what is set. */
static void log_filter(sk_buf *b, const sk_queue_filter *f)
{
    sk_err e = SK_OK;
    if (f->id[0]) e = sk_buf_printf(b, " id=%s", f->id);
    if (!e && f->all) e = sk_buf_puts(b, " all=yes");
    if (!e && f->destination[0]) {
        e = sk_buf_puts(b, " destination=\"");
        if (!e) e = sk_log_escape(b, f->destination, strlen(f->destination));
        if (!e) e = sk_buf_putc(b, '"');
    }
    if (!e && f->has_sender) {
        e = sk_buf_puts(b, " sender=\"");
        if (!e) e = sk_log_escape(b, f->sender, strlen(f->sender));
        if (!e) e = sk_buf_putc(b, '"');
    }
    for (unsigned st = 0, first = 1; !e && st < SK_SPOOL_STATE__COUNT; st++)
        if (f->states & (1u << st)) {
            e = sk_buf_printf(b, "%s%s", first ? " state=" : ",",
                              sk_spool_state_name((sk_spool_state)st));
            first = 0;
        }
}

/* One batch of the operation; the next one in a later loop pass. */
static void on_step(evutil_socket_t fd, short what, void *arg)
{
    ctl_client *c = arg;
    sk_control_server *s = c->srv;
    (void)fd;
    (void)what;
    if (!c->bulk.started && sk_queue_loading(s->q)) {
        /* The queue is still taking in the spool's stored messages after
         * the start: an operation now would miss those not loaded yet
         * (a filter) or not find its message (an ID). It starts once the
         * load is over; meanwhile the client hears that it waits. */
        uint64_t now = sk_now_ms();
        if (!c->waited)
            sk_log(&s->log, SK_LOG_INFO, "- control %s uid=%u pid=%ld waiting=queue-load",
                   sk_queue_op_name(c->req.op), (unsigned)c->uid, (long)c->pid);
        c->waited = 1;
        struct timeval tv = {0, SK_CONTROL_LOAD_WAIT_MS * 1000};
        evtimer_add(c->step, &tv);
        if (c->bev && now - c->progress_ms >= SK_CONTROL_PROGRESS_MS &&
            !evbuffer_get_length(bufferevent_get_output(c->bev))) {
            c->progress_ms = now;
            reply(c, &(sk_control_reply){.kind = SK_CONTROL_PROGRESS});
        }
        return;
    }
    sk_err e =
        sk_queue_apply_filter(s->q, c->req.op, &c->req.filter, SK_CONTROL_BATCH_MESSAGES, &c->bulk);
    uint64_t now = sk_now_ms();
    if (!e && !c->bulk.done) {
        /* A timer, not event_active: timers run after the loop has looked
         * at the sockets, so sessions are served between batches. */
        static const struct timeval zero = {0, 0};
        evtimer_add(c->step, &zero);
        /* Only when the last line was taken: a peer that does not read
         * costs one line, not one per batch. */
        if (c->bev && now - c->progress_ms >= SK_CONTROL_PROGRESS_MS &&
            !evbuffer_get_length(bufferevent_get_output(c->bev))) {
            c->progress_ms = now;
            reply(c, &(sk_control_reply){.kind = SK_CONTROL_PROGRESS,
                                         .matched = c->bulk.matched,
                                         .changed = c->bulk.changed});
        }
        return;
    }
    int not_found = !e && c->req.filter.id[0] && !c->bulk.matched;
    sk_buf b = SK_BUF_INIT(SK_LOG_LINE_MAX_OCTETS);
    log_filter(&b, &c->req.filter);
    sk_log(&s->log, e || not_found ? SK_LOG_WARN : SK_LOG_INFO,
           "- control %s uid=%u pid=%ld%s matched=%zu changed=%zu ms=%llu%s%s%s",
           sk_queue_op_name(c->req.op), (unsigned)c->uid, (long)c->pid, sk_buf_cstr(&b),
           c->bulk.matched, c->bulk.changed, (unsigned long long)(now - c->started_ms),
           c->waited ? " waited=queue-load" : "",
           e           ? " error="
           : not_found ? " error=not-found"
                       : "",
           e ? sk_strerror(e) : "");
    sk_buf_free(&b);
    c->running = 0;
    if (!c->bev) {
        client_free(c);
        return;
    }
    if (e) {
        reply_error(c, e, sk_strerror(e));
    } else if (not_found) {
        char text[64];
        snprintf(text, sizeof text, "no message %s in the queue", c->req.filter.id);
        reply_error(c, SK_ERR_NOT_FOUND, text);
    } else {
        reply(c, &(sk_control_reply){.kind = SK_CONTROL_OK,
                                     .matched = c->bulk.matched,
                                     .changed = c->bulk.changed});
    }
}

static void on_read(struct bufferevent *bev, void *arg)
{
    ctl_client *c = arg;
    if (c->running || c->closing) return;
    struct evbuffer *in = bufferevent_get_input(bev);
    size_t eol_len = 0;
    struct evbuffer_ptr eol = evbuffer_search_eol(in, NULL, &eol_len, EVBUFFER_EOL_LF);
    if (eol.pos < 0) {
        /* No line end yet: wait, unless the line cannot fit any more. */
        if (evbuffer_get_length(in) > SK_CONTROL_REQUEST_MAX_OCTETS) {
            sk_log(&c->srv->log, SK_LOG_WARN, "- control refused uid=%u pid=%ld reason=too-long",
                   (unsigned)c->uid, (long)c->pid);
            reply_error(c, SK_ERR_TOO_LONG, "request longer than the limit");
        }
        return;
    }
    size_t n = (size_t)eol.pos;
    char *line = (char *)evbuffer_pullup(in, (ev_ssize_t)n);
    if (n && line[n - 1] == '\r') n--;
    if (answer_data(c, line, n)) return;
    sk_error err;
    sk_err e =
        (size_t)eol.pos + 1 > SK_CONTROL_REQUEST_MAX_OCTETS
            ? sk_error_set(&err, SK_ERR_TOO_LONG, SK_STEP_NONE, "request longer than the limit")
            : sk_control_request_parse(line, n, &c->req, &err);
    evbuffer_drain(in, evbuffer_get_length(in));
    event_del(c->deadline);
    if (e) {
        sk_buf b = SK_BUF_INIT(SK_LOG_LINE_MAX_OCTETS);
        if (sk_log_escape(&b, err.text, strlen(err.text))) sk_buf_reset(&b);
        sk_log(&c->srv->log, SK_LOG_WARN, "- control refused uid=%u pid=%ld error=\"%s\"",
               (unsigned)c->uid, (long)c->pid, sk_buf_cstr(&b));
        sk_buf_free(&b);
        reply_error(c, e, err.text);
        return;
    }
    /* One request per connection: nothing more is read. */
    bufferevent_disable(bev, EV_READ);
    c->running = 1;
    c->started_ms = c->progress_ms = sk_now_ms();
    on_step(-1, 0, c);
}

/* A read request: the text, then the status line. */
static bool answer_data(ctl_client *c, const char *line, size_t n)
{
    sk_control_server *s = c->srv;
    size_t i = 0;
    while (i < s->ndata && (strlen(s->data[i].verb) != n || memcmp(s->data[i].verb, line, n))) i++;
    if (i == s->ndata) return false;
    evbuffer_drain(bufferevent_get_input(c->bev),
                   evbuffer_get_length(bufferevent_get_input(c->bev)));
    event_del(c->deadline);
    bufferevent_disable(c->bev, EV_READ);
    sk_buf text = SK_BUF_INIT(SK_CONTROL_DATA_MAX_OCTETS);
    sk_err e = s->data[i].fn(s->data[i].ctx, &text);
    if (e) {
        sk_log(&s->log, SK_LOG_WARN, "- control %s uid=%u pid=%ld error=%s", s->data[i].verb,
               (unsigned)c->uid, (long)c->pid, sk_strerror(e));
        reply_error(c, e, sk_strerror(e));
    } else {
        char head[32];
        int hn = snprintf(head, sizeof head, "data %zu\n", text.len);
        bufferevent_write(c->bev, head, (size_t)hn);
        if (text.len) bufferevent_write(c->bev, text.data, text.len);
        reply(c, &(sk_control_reply){.kind = SK_CONTROL_OK});
    }
    sk_buf_free(&text);
    return true;
}

/* "summary": the queue's summary from its table (`smtpkit queue summary`). */
static sk_err summary_data(void *ctx, sk_buf *out)
{
    sk_control_server *s = ctx;
    sk_queue_summary sum;
    sk_err e = sk_queue_summarize(s->q, &sum);
    if (e) return e;
    /* Ages against the wall clock, as arrivals are kept. */
    e = sk_queue_summary_json(&sum, (int64_t)time(NULL), SK_QUEUE_SUMMARY_DOMAINS_MAX, out);
    sk_queue_summary_free(&sum);
    return e;
}

static void on_write(struct bufferevent *bev, void *arg)
{
    ctl_client *c = arg;
    (void)bev;
    if (c->closing) client_free(c);
}

static void on_bev_event(struct bufferevent *bev, short what, void *arg)
{
    ctl_client *c = arg;
    (void)bev;
    if (what & BEV_EVENT_TIMEOUT)
        sk_log(&c->srv->log, SK_LOG_WARN, "- control dropped uid=%u pid=%ld reason=not-reading",
               (unsigned)c->uid, (long)c->pid);
    if (!c->running) {
        client_free(c);
        return;
    }
    /* The peer is gone; the operation finishes without it. */
    bufferevent_free(c->bev);
    c->bev = NULL;
}

static void on_deadline(evutil_socket_t fd, short what, void *arg)
{
    ctl_client *c = arg;
    (void)fd;
    (void)what;
    sk_log(&c->srv->log, SK_LOG_WARN, "- control dropped uid=%u pid=%ld reason=no-request",
           (unsigned)c->uid, (long)c->pid);
    reply_error(c, SK_ERR_TIMEOUT, "no complete request in time");
}

/* Refuse a connection with one line, without waiting for the peer. */
static void refuse(evutil_socket_t fd, sk_err e, const char *text)
{
    sk_buf b = SK_BUF_INIT(SK_CONTROL_REPLY_LINE_MAX_OCTETS);
    sk_control_reply r = {.kind = SK_CONTROL_ERROR, .err = e};
    snprintf(r.text, sizeof r.text, "%s", text);
    if (sk_control_reply_format(&r, &b) == SK_OK)
        (void)!send(fd, b.data, b.len, MSG_NOSIGNAL | MSG_DONTWAIT);
    sk_buf_free(&b);
    close(fd);
}

static void on_accept(struct evconnlistener *lis, evutil_socket_t fd, struct sockaddr *sa,
                      int salen, void *arg)
{
    sk_control_server *s = arg;
    (void)lis;
    (void)sa;
    (void)salen;
    /* Defense in depth behind the socket's mode and the spool directory's:
     * who is at the other end, as the kernel saw them connect. */
    struct ucred cred;
    socklen_t clen = sizeof cred;
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &clen) != 0) {
        sk_log(&s->log, SK_LOG_ERR, "- control refused reason=no-credentials error=\"%s\"",
               strerror(errno));
        close(fd);
        return;
    }
    if (cred.uid != 0 && cred.uid != s->uid) {
        sk_log(&s->log, SK_LOG_WARN, "- control refused uid=%u pid=%ld reason=user",
               (unsigned)cred.uid, (long)cred.pid);
        char text[128];
        snprintf(text, sizeof text, "user %u may not use this daemon's control socket",
                 (unsigned)cred.uid);
        refuse(fd, SK_ERR_AUTH, text);
        return;
    }
    if (s->nclients >= SK_CONTROL_CLIENTS_MAX) {
        sk_log(&s->log, SK_LOG_WARN, "- control refused uid=%u pid=%ld reason=busy clients=%zu",
               (unsigned)cred.uid, (long)cred.pid, s->nclients);
        refuse(fd, SK_ERR_TEMPFAIL, "too many control clients at once; try again");
        return;
    }
    ctl_client *c = sk_calloc(1, sizeof *c);
    if (c) {
        c->srv = s;
        c->uid = cred.uid;
        c->pid = cred.pid;
        c->bev = bufferevent_socket_new(s->base, fd, BEV_OPT_CLOSE_ON_FREE);
        c->deadline = evtimer_new(s->base, on_deadline, c);
        c->step = evtimer_new(s->base, on_step, c);
    }
    if (!c || !c->bev || !c->deadline || !c->step) {
        if (c && c->bev)
            bufferevent_free(c->bev);
        else
            close(fd);
        if (c && c->deadline) event_free(c->deadline);
        if (c && c->step) event_free(c->step);
        sk_free(c);
        sk_log(&s->log, SK_LOG_ERR, "- control refused reason=nomem");
        return;
    }
    c->next = s->clients;
    if (s->clients) s->clients->prev = c;
    s->clients = c;
    s->nclients++;
    struct timeval tv = {SK_CONTROL_IO_TIMEOUT_MS / 1000, (SK_CONTROL_IO_TIMEOUT_MS % 1000) * 1000};
    /* Reading stops once a request's worth is buffered (on_read refuses it). */
    bufferevent_setwatermark(c->bev, EV_READ, 0, SK_CONTROL_REQUEST_MAX_OCTETS + 1);
    bufferevent_setcb(c->bev, on_read, on_write, on_bev_event, c);
    bufferevent_set_timeouts(c->bev, NULL, &tv);
    bufferevent_enable(c->bev, EV_READ | EV_WRITE);
    evtimer_add(c->deadline, &tv);
}

static void on_accept_error(struct evconnlistener *lis, void *arg)
{
    sk_control_server *s = arg;
    (void)lis;
    /* EMFILE and the like: the listener goes on; say so once per failure. */
    sk_log(&s->log, SK_LOG_ERR, "- control accept-failed error=\"%s\"", strerror(errno));
}

sk_control_server *sk_control_server_new(sk_queue *q, sk_spool *spool, const sk_logger *log,
                                         struct event_base *base, sk_error *err)
{
    sk_error_clear(err);
    sk_control_server *s = sk_calloc(1, sizeof *s);
    sk_buf path = SK_BUF_INIT(4096);
    if (!s || sk_buf_printf(&path, "%s/%s", sk_spool_dir(spool), SK_CONTROL_SOCKET_NAME)) {
        sk_free(s);
        sk_buf_free(&path);
        sk_error_set(err, SK_ERR_NOMEM, SK_STEP_NONE, "out of memory");
        return NULL;
    }
    s->q = q;
    s->base = base;
    if (log) s->log = *log;
    s->uid = geteuid();
    s->path = sk_buf_detach(&path, NULL);
    struct sockaddr_un sa;
    socklen_t salen;
    int dir_fd = -1, fd = -1;
    /* A socket left by a daemon that died: ours to replace, since we
     * hold the spool lock. Anything else there is not ours to remove. */
    struct stat st;
    if (lstat(s->path, &st) == 0) {
        if (!S_ISSOCK(st.st_mode)) {
            sk_error_set(err, SK_ERR_CONFIG, SK_STEP_NONE, "%s is there and is not a socket",
                         s->path);
            goto fail;
        }
        if (unlink(s->path) != 0) {
            sk_error_set(err, SK_ERR_IO, SK_STEP_NONE, "cannot remove the old %s: %s", s->path,
                         strerror(errno));
            goto fail;
        }
        sk_log(&s->log, SK_LOG_INFO, "- control stale-socket-removed path=%s", s->path);
    }
    if (sk_control_sockaddr(sk_spool_dir(spool), &sa, &salen, &dir_fd) ||
        (fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)) < 0 ||
        bind(fd, (struct sockaddr *)&sa, salen) != 0) {
        sk_error_set(err, SK_ERR_IO, SK_STEP_NONE, "cannot make the control socket %s: %s", s->path,
                     strerror(errno));
        goto fail;
    }
    /* Not listening yet, so nobody is connected before the mode is set. */
    if (chmod(s->path, 0600) != 0 || stat(s->path, &st) != 0) {
        sk_error_set(err, SK_ERR_IO, SK_STEP_NONE, "cannot set the mode of %s: %s", s->path,
                     strerror(errno));
        unlink(s->path);
        goto fail;
    }
    s->dev = st.st_dev;
    s->ino = st.st_ino;
    s->lis = evconnlistener_new(base, on_accept, s, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC,
                                SK_CONTROL_CLIENTS_MAX, fd);
    if (!s->lis) {
        sk_error_set(err, SK_ERR_IO, SK_STEP_NONE, "cannot listen on %s: %s", s->path,
                     strerror(errno));
        unlink(s->path);
        goto fail;
    }
    fd = -1;
    evconnlistener_set_error_cb(s->lis, on_accept_error);
    if (dir_fd >= 0) close(dir_fd);
    if (sk_control_server_on_data(s, SK_CONTROL_SUMMARY_VERB, summary_data, s)) {
        sk_error_set(err, SK_ERR_INVAL, SK_STEP_NONE, "cannot register the summary request");
        sk_control_server_free(s);
        return NULL;
    }
    sk_log(&s->log, SK_LOG_INFO, "- control listening path=%s", s->path);
    return s;
fail:
    if (fd >= 0) close(fd);
    if (dir_fd >= 0) close(dir_fd);
    sk_free(s->path);
    sk_free(s);
    return NULL;
}

sk_err sk_control_server_on_data(sk_control_server *s, const char *verb, sk_control_data_fn fn,
                                 void *ctx)
{
    size_t n = verb ? strlen(verb) : 0;
    bool ok = n && n < sizeof s->data[0].verb && fn && s->ndata < SK_CONTROL_DATA_VERBS_MAX;
    for (size_t i = 0; ok && i < n; i++) ok = verb[i] >= 'a' && verb[i] <= 'z';
    for (int op = 0; ok && op <= SK_QUEUE_OP_DELETE; op++)
        ok = strcmp(verb, sk_queue_op_name((sk_queue_op)op)) != 0;
    if (!ok) return SK_ERR_INVAL;
    snprintf(s->data[s->ndata].verb, sizeof s->data[0].verb, "%s", verb);
    s->data[s->ndata].fn = fn;
    s->data[s->ndata++].ctx = ctx;
    return SK_OK;
}

size_t sk_control_server_clients(const sk_control_server *s)
{
    return s->nclients;
}

void sk_control_server_free(sk_control_server *s)
{
    if (!s) return;
    /* Operations still running stop here, between two batches. */
    while (s->clients) client_free(s->clients);
    if (s->lis) evconnlistener_free(s->lis);
    /* Remove the socket only if it is still the one we made. */
    struct stat st;
    if (s->path && lstat(s->path, &st) == 0 && st.st_dev == s->dev && st.st_ino == s->ino)
        unlink(s->path);
    sk_free(s->path);
    sk_free(s);
}
