/* Local delivery into Maildir folders: trace headers added, CRLF turned into
 * LF, file names deterministic so a retried delivery is never duplicated. */
#include "deliver/deliver_int.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <smtpkit/worker.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MAILDIR_CHUNK_OCTETS (64 * 1024)

typedef struct mjob mjob;

typedef struct maildir_transport {
    sk_transport base;
    char *root; /* DATA-DIR/mailboxes */
    char *hostname;
    sk_logger log;
    /* With a worker (sk_maildir_transport_start): one thread delivers the
     * jobs one at a time in order (fsync and all), and the loop thread
     * reports each as its end is drained. */
    sk_workers *workers;
    struct event *ev;
} maildir_transport;

sk_err sk_maildir_folder_name(const char *local_part, sk_buf *out)
{
    size_t n = strlen(local_part);
    /* No path tricks: '/' would leave the folder, a leading '.' could be
     * "." or ".." or a hidden Maildir++ subfolder. */
    if (n == 0 || n > SK_SMTP_LOCAL_PART_MAX_OCTETS || local_part[0] == '.' ||
        strchr(local_part, '/'))
        return SK_ERR_INVAL;
    /* RFC 5321 2.4 lets local parts be case-sensitive, but users expect
     * Bob and bob to be one mailbox; ASCII is folded, UTF-8 kept as is. */
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)local_part[i];
        if (c < 0x20 || c == 0x7f) return SK_ERR_INVAL;
        sk_err e = sk_buf_putc(out, (char)tolower(c));
        if (e) return e;
    }
    return SK_OK;
}

sk_err sk_maildir_file_name(const sk_spool_envelope *env, size_t index, const char *hostname,
                            sk_buf *out)
{
    /* Maildir convention: "time.unique.host"; the unique part is the queue
     * ID and recipient index, the same on every attempt. '/' and ':' in the
     * host name are written as \057 and \072. */
    sk_err e = sk_buf_printf(out, "%lld.M%sR%zu.", (long long)env->arrival, env->id, index);
    for (const char *h = hostname; !e && *h; h++) {
        if (*h == '/')
            e = sk_buf_puts(out, "\\057");
        else if (*h == ':')
            e = sk_buf_puts(out, "\\072");
        else
            e = sk_buf_putc(out, *h);
    }
    return e;
}

sk_err sk_maildir_trace_headers(const sk_spool_envelope *env, const char *rcpt,
                                const char *hostname, int64_t now, sk_buf *out)
{
    /* RFC 5321 4.4: Return-Path at final delivery, then our Received,
     * then what was added at acceptance (Authentication-Results...). */
    sk_err e = sk_buf_printf(out, "Return-Path: <%s>\n", env->sender ? env->sender : "");
    if (!e) e = sk_deliver_received(env, env->id, hostname, rcpt, now, "\n", out);
    if (!e) e = sk_deliver_added_fields(env, "\n", out);
    return e;
}

static sk_delivery_rcpt_result make_result(sk_delivery_status st, int code, const char *enh,
                                           const char *text)
{
    sk_delivery_rcpt_result r = {.status = st};
    r.reply = sk_reply_make(code, enh, "%s", text);
    return r;
}

static sk_err mkdir_p(sk_buf *path)
{
    /* Create each missing component of path (mode 0700). */
    for (size_t i = 1; i <= path->len; i++) {
        if (i < path->len && path->data[i] != '/') continue;
        char save = path->data[i];
        path->data[i] = '\0';
        int r = mkdir(path->data, 0700);
        int err = errno;
        path->data[i] = save;
        if (r && err != EEXIST) return sk_err_from_errno(err, SK_FILE_WRITE);
    }
    return SK_OK;
}

/* Was name already delivered? In new/ (where we put it) or, if the user
 * has read it since, in cur/ as "name:2,FLAGS". */
static int already_there(const char *folder, const char *name, int check_cur)
{
    char p[PATH_MAX];
    struct stat st;
    snprintf(p, sizeof p, "%s/new/%s", folder, name);
    if (stat(p, &st) == 0) return 1;
    if (!check_cur) return 0;
    snprintf(p, sizeof p, "%s/cur", folder);
    DIR *d = opendir(p);
    if (!d) return 0;
    size_t n = strlen(name);
    struct dirent *de;
    int found = 0;
    while (!found && (de = readdir(d)))
        found = !strncmp(de->d_name, name, n) && (de->d_name[n] == ':' || !de->d_name[n]);
    closedir(d);
    return found;
}

static sk_err write_all(int fd, const char *p, size_t left)
{
    while (left) {
        ssize_t w = write(fd, p, left);
        if (w < 0) {
            if (errno == EINTR) continue;
            return sk_err_from_errno(errno, SK_FILE_WRITE);
        }
        p += w;
        left -= (size_t)w;
    }
    return SK_OK;
}

/* Write head, then copy body_octets octets of in (the spool file goes on
 * with the message's envelope after them) turning CRLF into LF; a CR not
 * followed by LF is kept. */
static sk_err copy_body(int in, uint64_t body_octets, int out, const char *head, size_t head_len)
{
    char ibuf[MAILDIR_CHUNK_OCTETS], obuf[MAILDIR_CHUNK_OCTETS + 1];
    int pending_cr = 0;
    sk_err e = write_all(out, head, head_len);
    while (!e) {
        size_t want = body_octets < sizeof ibuf ? (size_t)body_octets : sizeof ibuf;
        ssize_t r = want ? read(in, ibuf, want) : 0;
        if (r < 0) {
            if (errno == EINTR) continue;
            return SK_ERR_IO;
        }
        if (r == 0 && body_octets) return SK_ERR_IO; /* shorter than recorded */
        body_octets -= (uint64_t)r;
        size_t o = 0;
        for (ssize_t i = 0; i < r; i++) {
            char c = ibuf[i];
            if (pending_cr) {
                if (c != '\n') obuf[o++] = '\r';
                pending_cr = 0;
            }
            if (c == '\r')
                pending_cr = 1;
            else
                obuf[o++] = c;
        }
        /* The end: a CR left waiting was not followed by LF. */
        if (r == 0 && pending_cr) obuf[o++] = '\r';
        e = write_all(out, obuf, o);
        if (r == 0) break;
    }
    return e;
}

/* What to log about a recipient (logging happens on the loop thread: the
 * logger need not be thread-safe). */
typedef enum note { NOTE_NONE, NOTE_DELIVERED, NOTE_EXISTED, NOTE_ALREADY } note;

static void log_rcpt(const maildir_transport *t, const sk_delivery *job, const sk_delivery_rcpt *rc,
                     note n)
{
    if (n == NOTE_NONE) return;
    sk_buf addr = SK_BUF_INIT(1024), name = SK_BUF_INIT(NAME_MAX);
    if (sk_log_escape(&addr, rc->addr, strlen(rc->addr))) sk_buf_reset(&addr);
    if (sk_maildir_file_name(job->env, rc->index, t->hostname, &name)) sk_buf_reset(&name);
    sk_log(&t->log, SK_LOG_INFO, "%s maildir %s rcpt=\"%s\" file=%s%s", job->queue_id,
           n == NOTE_ALREADY ? "already-delivered" : "delivered", sk_buf_cstr(&addr),
           sk_buf_cstr(&name), n == NOTE_EXISTED ? " existed=1" : "");
    sk_buf_free(&addr);
    sk_buf_free(&name);
}

/* Deliver one recipient; returns its result, and in *file the file it
 * went to (NULL when it was not delivered, or on no memory). */
static sk_delivery_rcpt_result deliver_one(maildir_transport *t, const sk_delivery *job,
                                           const sk_delivery_rcpt *rc, note *out_note, char **file)
{
    *out_note = NOTE_NONE;
    *file = NULL;
    const char *at = strrchr(rc->addr, '@');
    if (!at || at == rc->addr)
        return make_result(SK_DELIVERY_PERMANENT, 550, "5.1.3", "bad local recipient address");
    sk_buf local = SK_BUF_INIT(SK_SMTP_LOCAL_PART_MAX_OCTETS * 2);
    sk_buf folder = SK_BUF_INIT(PATH_MAX);
    sk_buf name = SK_BUF_INIT(NAME_MAX);
    sk_buf head = SK_BUF_INIT(SK_SPOOL_ENVELOPE_MAX_OCTETS); /* trace + added fields */
    sk_delivery_rcpt_result res;
    char *lp = sk_strndup(rc->addr, (size_t)(at - rc->addr));
    sk_err e = lp ? SK_OK : SK_ERR_NOMEM;
    /* A quoted local part ("a b"@x) is stored without its quotes. */
    if (!e && lp[0] == '"' && strlen(lp) >= 2 && lp[strlen(lp) - 1] == '"') {
        memmove(lp, lp + 1, strlen(lp) - 2);
        lp[strlen(lp) - 2] = '\0';
    }
    if (!e && (!job->domain[0] || job->domain[0] == '.' || strchr(job->domain, '/'))) {
        res = make_result(SK_DELIVERY_PERMANENT, 550, "5.1.2", "domain not usable as a folder");
        goto out;
    }
    if (!e && sk_maildir_folder_name(lp, &local)) {
        res = make_result(SK_DELIVERY_PERMANENT, 550, "5.1.3",
                          "local part not usable as a mailbox name");
        goto out;
    }
    if (!e) e = sk_buf_printf(&folder, "%s/%s/%s", t->root, job->domain, local.data);
    if (!e) e = sk_maildir_file_name(job->env, rc->index, t->hostname, &name);
    if (!e)
        e = sk_maildir_trace_headers(job->env, rc->addr, t->hostname, (int64_t)time(NULL), &head);
    if (e) {
        res = make_result(SK_DELIVERY_TRANSIENT, 451, "4.3.0", "local delivery: out of memory");
        goto out;
    }
    if (already_there(folder.data, name.data, job->maybe_delivered)) {
        *out_note = NOTE_ALREADY;
        sk_buf where = SK_BUF_INIT(PATH_MAX);
        if (!sk_buf_printf(&where, "%s/new/%s", folder.data, name.data))
            *file = sk_buf_detach(&where, NULL);
        sk_buf_free(&where);
        res = make_result(SK_DELIVERY_OK, 250, "2.0.0", "delivered to Maildir (earlier attempt)");
        goto out;
    }
    char tmp[PATH_MAX], dst[PATH_MAX], sub[PATH_MAX];
    for (size_t i = 0; i < 3 && !e; i++) {
        static const char *const subs[] = {"tmp", "new", "cur"};
        sk_buf d = SK_BUF_INIT(PATH_MAX);
        e = sk_buf_printf(&d, "%s/%s", folder.data, subs[i]);
        if (!e) e = mkdir_p(&d);
        sk_buf_free(&d);
    }
    snprintf(tmp, sizeof tmp, "%s/tmp/%s", folder.data, name.data);
    snprintf(dst, sizeof dst, "%s/new/%s", folder.data, name.data);
    snprintf(sub, sizeof sub, "%s/new", folder.data);
    int in = -1, out = -1;
    if (!e) {
        in = open(job->body_path, O_RDONLY | O_CLOEXEC);
        if (in < 0) e = SK_ERR_IO;
    }
    if (!e) {
        /* O_TRUNC: a file left in tmp/ by a crash is simply rewritten. */
        out = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (out < 0) e = sk_err_from_errno(errno, SK_FILE_WRITE);
    }
    if (!e) e = copy_body(in, job->env->body_octets, out, head.data, head.len);
    if (!e && fsync(out)) e = sk_err_from_errno(errno, SK_FILE_WRITE);
    if (in >= 0) close(in);
    if (out >= 0 && close(out) && !e) e = SK_ERR_IO;
    /* link(), unlike rename(), fails if the name exists: the check above
     * and this one together make delivery happen once. */
    int existed = 0;
    if (!e && link(tmp, dst)) {
        if (errno == EEXIST)
            existed = 1;
        else
            e = sk_err_from_errno(errno, SK_FILE_WRITE);
    }
    unlink(tmp);
    if (!e) {
        int dfd = open(sub, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd < 0 || fsync(dfd)) e = SK_ERR_IO;
        if (dfd >= 0) close(dfd);
    }
    if (e == SK_ERR_NOSPACE) {
        res = make_result(SK_DELIVERY_TRANSIENT, 452, "4.2.2", "mailbox full or disk full");
    } else if (e) {
        res = make_result(SK_DELIVERY_TRANSIENT, 451, "4.3.0", "local delivery failed");
    } else {
        *out_note = existed ? NOTE_EXISTED : NOTE_DELIVERED;
        *file = sk_strdup(dst);
        res = make_result(SK_DELIVERY_OK, 250, "2.0.0", "delivered to Maildir");
    }
out:
    sk_free(lp);
    sk_buf_free(&local);
    sk_buf_free(&folder);
    sk_buf_free(&name);
    sk_buf_free(&head);
    return res;
}

/* A job: its results are filled by whoever delivers it (the caller, or
 * the worker thread), then reported on the loop thread. */
struct mjob {
    sk_job work;
    maildir_transport *t;
    const sk_delivery *job;
    sk_delivery_done_fn done;
    void *ctx;
    sk_delivery_rcpt_result *rs;
    note *notes;
    char **files; /* per recipient, the file delivered to */
    size_t nfiles;
};

static void mjob_free(mjob *j)
{
    for (size_t i = 0; j->files && i < j->nfiles; i++) sk_free(j->files[i]);
    sk_free(j->files);
    sk_free(j->rs);
    sk_free(j->notes);
    sk_free(j);
}

static void run_job(maildir_transport *t, mjob *j)
{
    for (size_t i = 0; i < j->job->nrcpts; i++)
        j->rs[i] = deliver_one(t, j->job, &j->job->rcpts[i], &j->notes[i], &j->files[i]);
}

static void report(maildir_transport *t, mjob *j)
{
    for (size_t i = 0; i < j->job->nrcpts; i++) log_rcpt(t, j->job, &j->job->rcpts[i], j->notes[i]);
    sk_delivery_result res = {.rcpts = j->rs,
                              .nrcpts = j->job->nrcpts,
                              .remote_host = NULL,
                              .files = (const char *const *)j->files};
    j->done(j->ctx, &res);
    mjob_free(j);
}

/* On the worker thread. */
static void work(void *arg)
{
    mjob *j = arg;
    run_job(j->t, j);
}

/* On the loop thread; a cancelled job is dropped without a word to the
 * queue (deliver.h). */
static void worked(void *arg, sk_job_end end)
{
    mjob *j = arg;
    if (end == SK_JOB_DONE)
        report(j->t, j);
    else
        mjob_free(j);
}

static void maildir_deliver(sk_transport *base, const sk_delivery *job, sk_delivery_done_fn done,
                            void *ctx)
{
    maildir_transport *t = (maildir_transport *)base;
    size_t n = job->nrcpts ? job->nrcpts : 1;
    mjob *j = sk_calloc(1, sizeof *j);
    if (j) {
        j->rs = sk_calloc(n, sizeof *j->rs);
        j->notes = sk_calloc(n, sizeof *j->notes);
        j->files = sk_calloc(n, sizeof *j->files);
        j->nfiles = n;
    }
    if (!j || !j->rs || !j->notes || !j->files) {
        if (j) mjob_free(j);
        /* No results at all: the queue counts every recipient as a
         * transient failure (deliver.h). */
        sk_delivery_result none = {.rcpts = NULL, .nrcpts = 0};
        done(ctx, &none);
        return;
    }
    j->t = t;
    j->job = job;
    j->done = done;
    j->ctx = ctx;
    sk_job_init(&j->work, work, worked, j);
    /* Without a worker, or past its stop (the transport is going away),
     * the delivery is made here. */
    if (!t->workers || sk_workers_submit(t->workers, &j->work)) {
        run_job(t, j);
        report(t, j);
    }
}

/* Drop queued and finished jobs and wait for the one being delivered: after
 * this no done callback comes for them (deliver.h). */
static void maildir_cancel(sk_transport *base)
{
    maildir_transport *t = (maildir_transport *)base;
    if (t->workers) sk_workers_cancel(t->workers, true);
}

static void maildir_free(sk_transport *base)
{
    maildir_transport *t = (maildir_transport *)base;
    /* The event before the group: it watches the group's eventfd. */
    if (t->ev) event_free(t->ev);
    if (t->workers) {
        /* Nothing is running or waiting after the cancel: the stop only
         * joins the thread. */
        maildir_cancel(base);
        sk_workers_free(t->workers);
    }
    sk_free(t->root);
    sk_free(t->hostname);
    sk_free(t);
}

sk_transport *sk_maildir_transport_new(const char *mailboxes_dir, const char *hostname,
                                       const sk_logger *log, sk_error *err)
{
    maildir_transport *t = sk_calloc(1, sizeof *t);
    if (!t) {
        sk_error_set(err, SK_ERR_NOMEM, SK_STEP_NONE, "out of memory");
        return NULL;
    }
    t->base.name = "maildir";
    t->base.deliver = maildir_deliver;
    t->base.cancel = maildir_cancel;
    t->base.free = maildir_free;
    t->root = sk_strdup(mailboxes_dir);
    t->hostname = sk_strdup(hostname && *hostname ? hostname : "localhost");
    if (log) t->log = *log;
    if (!t->root || !t->hostname) {
        maildir_free(&t->base);
        sk_error_set(err, SK_ERR_NOMEM, SK_STEP_NONE, "out of memory");
        return NULL;
    }
    return &t->base;
}

sk_err sk_maildir_transport_start(sk_transport *base, struct event_base *evb, sk_error *err)
{
    maildir_transport *t = (maildir_transport *)base;
    if (t->workers) return SK_OK;
    /* One thread: a recipient's messages are written in the order queued. */
    sk_error e;
    sk_workers *w = sk_workers_new(&(sk_workers_opts){.name = "maildir", .threads = 1}, &e);
    if (!w) return sk_error_set(err, e.err, SK_STEP_NONE, "Maildir worker: %s", e.text);
    struct event *ev =
        event_new(evb, sk_workers_fd(w), EV_READ | EV_PERSIST, sk_workers_drain_cb, w);
    if (!ev || event_add(ev, NULL)) {
        if (ev) event_free(ev);
        sk_workers_free(w);
        return sk_error_set(err, SK_ERR_NOMEM, SK_STEP_NONE, "cannot add event");
    }
    t->ev = ev;
    t->workers = w;
    return SK_OK;
}
