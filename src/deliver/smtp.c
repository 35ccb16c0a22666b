/* The relay transport: hands non-local mail to one SMTP relay host with the
 * library's blocking client, run in worker threads that keep connections. */
#include "smtp.h"

#include <smtpkit/client.h>

#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define SK_RELAY_WORKERS_DEFAULT 4
#define SK_RELAY_IDLE_MS_DEFAULT (30 * 1000)
/* How long freeing the transport waits for a worker in the middle of a
 * delivery before leaving it behind (the process is exiting then). */
#define SK_RELAY_JOIN_WAIT_MS 5000

typedef struct relay_job {
    struct relay_job *next;
    uint64_t generation; /* results of an older generation were cancelled */
    /* Copies: the queue's sk_delivery may be gone once a job is cancelled. */
    char *queue_id;
    char *sender;
    char **rcpts;
    size_t nrcpts;
    char *body_path;
    char *received; /* our Received: header, built on the loop thread */
    sk_delivery_done_fn done;
    void *ctx;
    sk_delivery_rcpt_result *results;
    char remote_host[320];
} relay_job;

typedef struct relay {
    sk_transport t; /* first: the queue sees only this */
    char *host;
    char *helo_name;
    unsigned short port;
    unsigned idle_ms, connect_timeout_ms, command_timeout_ms;
    sk_logger log;

    struct event_base *base;
    struct event *wake; /* read end of the pipe: finished jobs */
    int pipe_fd[2];

    pthread_mutex_t mu;
    /* Idle workers wait on warm (they hold a connection) or cold; a new
     * job wakes a warm one first so that connections are reused. */
    pthread_cond_t warm, cold;
    size_t warm_waiting, cold_waiting;
    relay_job *pending, *pending_tail;
    relay_job *finished;
    uint64_t generation;
    bool stopping;
    pthread_t *threads;
    size_t nthreads;
    size_t running; /* workers that have not exited */
} relay;

static void job_free(relay_job *j)
{
    if (!j) return;
    sk_free(j->queue_id);
    sk_free(j->sender);
    for (size_t i = 0; j->rcpts && i < j->nrcpts; i++) sk_free(j->rcpts[i]);
    sk_free(j->rcpts);
    sk_free(j->body_path);
    sk_free(j->received);
    sk_free(j->results);
    sk_free(j);
}

/* RFC 5321 4.4: a relay adds its Received: line at the top. */
static char *received_header(const relay *r, const sk_delivery *job)
{
    const sk_spool_envelope *env = job->env;
    char date[40];
    sk_time_rfc5322((int64_t)time(NULL), date);
    const char *peer = env->peer ? env->peer : "unknown";
    sk_buf b = SK_BUF_INIT(4096);
    sk_err e = sk_buf_printf(&b, "Received: from %s ([%s])\r\n\tby %s with %s",
                             env->helo && *env->helo ? env->helo : "unknown", peer, r->helo_name,
                             sk_spool_envelope_protocol(env));
    if (!e && env->tls) e = sk_buf_printf(&b, " (%s)", env->tls);
    if (!e) e = sk_buf_printf(&b, " id %s", job->queue_id);
    /* Naming the recipient is only safe when there is one (RFC 5321 7.2). */
    if (!e && job->nrcpts == 1) e = sk_buf_printf(&b, "\r\n\tfor <%s>", job->rcpts[0].addr);
    if (!e) e = sk_buf_printf(&b, ";\r\n\t%s\r\n", date);
    if (e) {
        sk_buf_free(&b);
        return NULL;
    }
    return sk_buf_detach(&b, NULL);
}

/* The reply a recipient gets when the error came from us (connection,
 * TLS, limits) rather than from a reply of the relay. */
static sk_reply error_reply(const sk_error *err, bool permanent)
{
    if (err->code >= 400 && err->code < 600)
        return sk_reply_make(err->code, err->enhanced[0] ? err->enhanced : "", "%s", err->text);
    if (permanent) return sk_reply_make(554, "5.4.0", "relay: %s", err->text);
    /* RFC 3463: 4.4.1 no answer from host, 4.4.2 bad connection. */
    const char *status = err->err == SK_ERR_CONNECT || err->err == SK_ERR_DNS ? "4.4.1" : "4.4.2";
    return sk_reply_make(451, status, "relay: %s",
                         err->text[0] ? err->text : sk_strerror(err->err));
}

static sk_delivery_status status_of(int code)
{
    if (code >= 200 && code < 300) return SK_DELIVERY_OK;
    return code >= 500 ? SK_DELIVERY_PERMANENT : SK_DELIVERY_TRANSIENT;
}

static sk_err read_message(const relay_job *j, sk_buf *out, sk_error *err)
{
    int fd = open(j->body_path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return sk_error_set(err, SK_ERR_IO, SK_STEP_DATA, "cannot open %s: %s", j->body_path,
                            strerror(errno));
    struct stat st;
    sk_err e = SK_OK;
    if (fstat(fd, &st) != 0) e = SK_ERR_IO;
    size_t hl = strlen(j->received);
    if (!e) {
        sk_buf_init(out, hl + (size_t)st.st_size);
        e = sk_buf_reserve(out, hl + (size_t)st.st_size);
    }
    if (!e) e = sk_buf_append(out, j->received, hl);
    while (!e) {
        ssize_t n = read(fd, out->data + out->len, out->max - out->len);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) e = SK_ERR_IO;
        if (n <= 0) break;
        out->len += (size_t)n;
        if (out->len == out->max) break;
    }
    close(fd);
    if (e) {
        sk_buf_free(out);
        return sk_error_set(err, e, SK_STEP_DATA, "cannot read %s", j->body_path);
    }
    out->data[out->len] = '\0';
    return SK_OK;
}

static void fill_all(relay_job *j, const sk_reply *reply)
{
    for (size_t i = 0; i < j->nrcpts; i++) {
        j->results[i].status = status_of(reply->code);
        j->results[i].reply = *reply;
    }
}

/* Errors after which the connection cannot be used for the next message. */
static bool connection_lost(sk_err e)
{
    return e != SK_OK && e != SK_ERR_TEMPFAIL && e != SK_ERR_PERMFAIL && e != SK_ERR_TOO_LONG &&
           e != SK_ERR_UNSUPPORTED;
}

static sk_client *relay_client(relay *r)
{
    sk_client_opts o = {
        .host = r->host,
        .port = r->port,
        .tls = SK_TLS_STARTTLS_OPPORTUNISTIC,
        .helo_name = r->helo_name,
        .connect_timeout_ms = r->connect_timeout_ms,
        .command_timeout_ms = r->command_timeout_ms,
        .log = r->log,
    };
    return sk_client_new(&o);
}

/* Deliver one job on the worker's connection (*c, connected or not). */
static void run_job(relay *r, sk_client **c, bool *connected, relay_job *j)
{
    sk_error err;
    sk_error_clear(&err);
    sk_buf msg;
    if (read_message(j, &msg, &err)) {
        sk_reply rep = sk_reply_make(451, "4.3.0", "%s", err.text);
        fill_all(j, &rep);
        return;
    }
    snprintf(j->remote_host, sizeof j->remote_host, "%s:%u", r->host, (unsigned)r->port);
    for (int attempt = 0; attempt < 2; attempt++) {
        bool reused = *connected;
        if (!*connected) {
            if (!*c) *c = relay_client(r);
            if (!*c) {
                sk_reply rep = sk_reply_make(451, "4.3.0", "out of memory");
                fill_all(j, &rep);
                break;
            }
            sk_err e = sk_client_connect(*c, &err);
            if (e) {
                sk_log(&r->log, SK_LOG_WARN, "%s smtp connect-failed relay=%s step=%s error=\"%s\"",
                       j->queue_id, j->remote_host, sk_step_name(err.step), err.text);
                /* A 5xx greeting or EHLO is the relay refusing us, which
                 * retrying later may fix as well: keep it transient unless
                 * the relay said so with a reply. */
                sk_reply rep = error_reply(&err, false);
                fill_all(j, &rep);
                break;
            }
            *connected = true;
            sk_log(&r->log, SK_LOG_INFO, "- smtp connected relay=%s addr=%s tls=%s", j->remote_host,
                   sk_client_remote_address(*c), sk_client_is_tls(*c) ? "yes" : "no");
        }
        sk_send_result res;
        memset(&res, 0, sizeof res);
        sk_error_clear(&err);
        sk_err e = sk_client_send(*c, j->sender, (const char *const *)j->rcpts, j->nrcpts, msg.data,
                                  msg.len, NULL, &res, &err);
        snprintf(j->remote_host, sizeof j->remote_host, "%s[%s]:%u", r->host,
                 sk_client_remote_address(*c), (unsigned)sk_client_remote_port(*c));
        if (connection_lost(e)) {
            sk_client_close(*c);
            *connected = false;
            /* A reused connection the relay had closed meanwhile: try once
             * on a new one, unless the relay already took something. */
            if (reused && attempt == 0 && res.mail.code == 0) {
                sk_send_result_free(&res);
                continue;
            }
        }
        if (res.mail.code >= 400 || res.nrcpt == 0) {
            /* Refused at MAIL, or failed before any recipient. */
            sk_reply rep = res.mail.code >= 400
                               ? res.mail
                               : error_reply(&err, e == SK_ERR_TOO_LONG || e == SK_ERR_UNSUPPORTED);
            fill_all(j, &rep);
        } else {
            for (size_t i = 0; i < j->nrcpts; i++) {
                sk_delivery_rcpt_result *out = &j->results[i];
                if (i < res.nrcpt && !res.rcpts[i].accepted && res.rcpts[i].reply.code >= 400) {
                    out->reply = res.rcpts[i].reply;
                } else if (i < res.nrcpt && res.rcpts[i].accepted && res.sent) {
                    out->reply = res.data;
                } else if (i < res.nrcpt && res.rcpts[i].accepted && res.data.code >= 400) {
                    out->reply = res.data;
                } else {
                    out->reply = error_reply(&err, false);
                }
                out->status = status_of(out->reply.code);
            }
        }
        sk_send_result_free(&res);
        break;
    }
    sk_buf_free(&msg);
}

static void notify_loop(relay *r)
{
    char one = 1;
    ssize_t n;
    do n = write(r->pipe_fd[1], &one, 1);
    while (n < 0 && errno == EINTR);
    /* EAGAIN: the pipe is full of wake-ups already, which is enough. */
}

static void *worker(void *arg)
{
    relay *r = arg;
    sk_client *c = NULL;
    bool connected = false;
    pthread_mutex_lock(&r->mu);
    while (!r->stopping) {
        if (!r->pending) {
            if (connected) {
                struct timespec until;
                clock_gettime(CLOCK_REALTIME, &until);
                until.tv_sec += r->idle_ms / 1000;
                until.tv_nsec += (long)(r->idle_ms % 1000) * 1000000L;
                if (until.tv_nsec >= 1000000000L) {
                    until.tv_sec++;
                    until.tv_nsec -= 1000000000L;
                }
                r->warm_waiting++;
                int rc = pthread_cond_timedwait(&r->warm, &r->mu, &until);
                r->warm_waiting--;
                if (rc == ETIMEDOUT && !r->pending && !r->stopping) {
                    /* Idle for long enough: say goodbye properly. */
                    pthread_mutex_unlock(&r->mu);
                    sk_client_quit(c, NULL);
                    connected = false;
                    pthread_mutex_lock(&r->mu);
                }
            } else {
                r->cold_waiting++;
                pthread_cond_wait(&r->cold, &r->mu);
                r->cold_waiting--;
            }
            continue;
        }
        relay_job *j = r->pending;
        r->pending = j->next;
        if (!r->pending) r->pending_tail = NULL;
        j->next = NULL;
        pthread_mutex_unlock(&r->mu);
        run_job(r, &c, &connected, j);
        pthread_mutex_lock(&r->mu);
        j->next = r->finished;
        r->finished = j;
        pthread_mutex_unlock(&r->mu);
        notify_loop(r);
        pthread_mutex_lock(&r->mu);
    }
    r->running--;
    pthread_mutex_unlock(&r->mu);
    /* Stopping: close without QUIT so that exit is not held up by a slow
     * relay. */
    sk_client_free(c);
    return NULL;
}

/* On the loop thread: hand finished jobs back to the queue. */
static void on_wake(evutil_socket_t fd, short what, void *arg)
{
    relay *r = arg;
    char drain[256];
    while (read(fd, drain, sizeof drain) > 0) continue;
    pthread_mutex_lock(&r->mu);
    relay_job *list = r->finished;
    r->finished = NULL;
    uint64_t gen = r->generation;
    pthread_mutex_unlock(&r->mu);
    /* The list is newest first; deliver results oldest first. */
    relay_job *rev = NULL;
    while (list) {
        relay_job *next = list->next;
        list->next = rev;
        rev = list;
        list = next;
    }
    while (rev) {
        relay_job *j = rev;
        rev = j->next;
        if (j->generation == gen) {
            sk_delivery_result res = {
                .rcpts = j->results, .nrcpts = j->nrcpts, .remote_host = j->remote_host};
            j->done(j->ctx, &res);
        }
        job_free(j);
    }
}

static void relay_deliver(sk_transport *t, const sk_delivery *job, sk_delivery_done_fn done,
                          void *ctx)
{
    relay *r = (relay *)t;
    relay_job *j = sk_calloc(1, sizeof *j);
    bool ok = j != NULL;
    if (ok) {
        j->queue_id = sk_strdup(job->queue_id);
        j->sender = sk_strdup(job->sender ? job->sender : job->env->sender ? job->env->sender : "");
        j->body_path = sk_strdup(job->body_path);
        j->received = received_header(r, job);
        j->rcpts = sk_calloc(job->nrcpts ? job->nrcpts : 1, sizeof *j->rcpts);
        j->results = sk_calloc(job->nrcpts ? job->nrcpts : 1, sizeof *j->results);
        j->done = done;
        j->ctx = ctx;
        ok = j->queue_id && j->sender && j->body_path && j->received && j->rcpts && j->results;
        for (size_t i = 0; ok && i < job->nrcpts; i++) {
            j->rcpts[i] = sk_strdup(job->rcpts[i].addr);
            j->nrcpts = i + 1;
            ok = j->rcpts[i] != NULL;
        }
    }
    if (!ok) {
        /* Out of memory: every recipient is deferred, now. */
        sk_delivery_rcpt_result *rr = sk_calloc(job->nrcpts ? job->nrcpts : 1, sizeof *rr);
        sk_reply rep = sk_reply_make(451, "4.3.0", "out of memory");
        for (size_t i = 0; rr && i < job->nrcpts; i++)
            rr[i] = (sk_delivery_rcpt_result){SK_DELIVERY_TRANSIENT, rep};
        sk_delivery_result res = {.rcpts = rr, .nrcpts = rr ? job->nrcpts : 0};
        job_free(j);
        done(ctx, &res);
        sk_free(rr);
        return;
    }
    pthread_mutex_lock(&r->mu);
    j->generation = r->generation;
    if (r->pending_tail)
        r->pending_tail->next = j;
    else
        r->pending = j;
    r->pending_tail = j;
    pthread_cond_signal(r->warm_waiting ? &r->warm : &r->cold);
    pthread_mutex_unlock(&r->mu);
}

static void relay_cancel(sk_transport *t)
{
    relay *r = (relay *)t;
    pthread_mutex_lock(&r->mu);
    /* Jobs not started are dropped; those in a worker finish, and their
     * results are dropped by the generation check. */
    relay_job *p = r->pending;
    r->pending = r->pending_tail = NULL;
    r->generation++;
    pthread_mutex_unlock(&r->mu);
    while (p) {
        relay_job *next = p->next;
        job_free(p);
        p = next;
    }
}

static void relay_free(sk_transport *t)
{
    relay *r = (relay *)t;
    relay_cancel(t);
    pthread_mutex_lock(&r->mu);
    r->stopping = true;
    pthread_cond_broadcast(&r->warm);
    pthread_cond_broadcast(&r->cold);
    pthread_mutex_unlock(&r->mu);
    bool all_joined = true;
    for (size_t i = 0; i < r->nthreads; i++) {
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += SK_RELAY_JOIN_WAIT_MS / 1000;
        if (pthread_timedjoin_np(r->threads[i], NULL, &until) != 0) {
            pthread_detach(r->threads[i]);
            all_joined = false;
        }
    }
    if (!all_joined) {
        /* A worker is still talking to the relay; it uses this structure
         * until it returns, so it is left behind (the process is exiting). */
        sk_log(&r->log, SK_LOG_WARN, "- smtp stop-timeout workers_busy=yes");
        return;
    }
    if (r->wake) event_free(r->wake);
    relay_job *f = r->finished;
    while (f) {
        relay_job *next = f->next;
        job_free(f);
        f = next;
    }
    if (r->pipe_fd[0] >= 0) close(r->pipe_fd[0]);
    if (r->pipe_fd[1] >= 0) close(r->pipe_fd[1]);
    pthread_mutex_destroy(&r->mu);
    pthread_cond_destroy(&r->warm);
    pthread_cond_destroy(&r->cold);
    sk_free(r->threads);
    sk_free(r->host);
    sk_free(r->helo_name);
    sk_free(r);
}

sk_transport *sk_smtp_transport_new(const sk_smtp_transport_opts *o, struct event_base *base,
                                    sk_error *err)
{
    relay *r = sk_calloc(1, sizeof *r);
    if (!r) {
        sk_error_set(err, SK_ERR_NOMEM, SK_STEP_NONE, "out of memory");
        return NULL;
    }
    r->t = (sk_transport){
        .name = "smtp", .deliver = relay_deliver, .cancel = relay_cancel, .free = relay_free};
    r->pipe_fd[0] = r->pipe_fd[1] = -1;
    r->host = sk_strdup(o->host);
    r->helo_name = sk_strdup(o->helo_name ? o->helo_name : "localhost");
    r->port = o->port ? o->port : 25;
    r->idle_ms = o->idle_ms ? o->idle_ms : SK_RELAY_IDLE_MS_DEFAULT;
    r->connect_timeout_ms = o->connect_timeout_ms;
    r->command_timeout_ms = o->command_timeout_ms;
    r->log = o->log;
    r->base = base;
    pthread_mutex_init(&r->mu, NULL);
    pthread_cond_init(&r->warm, NULL);
    pthread_cond_init(&r->cold, NULL);
    size_t n = o->workers ? o->workers : SK_RELAY_WORKERS_DEFAULT;
    r->threads = sk_calloc(n, sizeof *r->threads);
    if (!r->host || !r->helo_name || !r->threads || pipe2(r->pipe_fd, O_NONBLOCK | O_CLOEXEC)) {
        sk_error_set(err, SK_ERR_NOMEM, SK_STEP_NONE, "cannot set up the relay transport");
        relay_free(&r->t);
        return NULL;
    }
    r->wake = event_new(base, r->pipe_fd[0], EV_READ | EV_PERSIST, on_wake, r);
    if (!r->wake || event_add(r->wake, NULL)) {
        sk_error_set(err, SK_ERR_NOMEM, SK_STEP_NONE, "cannot set up the relay transport");
        relay_free(&r->t);
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        if (pthread_create(&r->threads[i], NULL, worker, r) != 0) {
            sk_error_set(err, SK_ERR_IO, SK_STEP_NONE, "cannot start relay workers");
            relay_free(&r->t);
            return NULL;
        }
        r->nthreads++;
        r->running++;
    }
    return &r->t;
}
