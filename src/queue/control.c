/* Queue operations from another process (`smtpkit queue`): directly on the
 * spool when no daemon holds it, else as request files in spool/ctl that
 * the running queue answers (docs/queue.md "Control: `flush`, `release`,
 * `delete`"). */
#include "queue/queue_int.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "spool/spool_int.h"

#define CTL_REQ_EXT    ".req"
#define CTL_RES_EXT    ".res"
#define CTL_MAX_OCTETS 256
/* Answers nobody collected (the asking process died) are removed after this. */
#define CTL_STALE_S 60

static const char *const op_names[] = {"flush", "release", "delete"};

static int has_suffix(const char *s, const char *suf)
{
    size_t n = strlen(s), k = strlen(suf);
    return n > k && !strcmp(s + n - k, suf);
}

static sk_err read_small(int dfd, const char *name, char *out, size_t size)
{
    int fd = openat(dfd, name, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return sk_err_from_errno(errno, SK_FILE_READ);
    ssize_t r = read(fd, out, size - 1);
    close(fd);
    if (r < 0) return SK_ERR_IO;
    out[r] = '\0';
    return SK_OK;
}

/* Parse "OP ID\n" (ID "-" for flush). */
static sk_err parse_request(char *text, sk_queue_op *op, char id[SK_SPOOL_ID_SIZE])
{
    char *nl = strchr(text, '\n');
    if (!nl) return SK_ERR_SYNTAX;
    *nl = '\0';
    char *sp = strchr(text, ' ');
    if (!sp) return SK_ERR_SYNTAX;
    *sp = '\0';
    for (size_t i = 0; i < sizeof op_names / sizeof op_names[0]; i++) {
        if (strcmp(text, op_names[i])) continue;
        *op = (sk_queue_op)i;
        if (*op == SK_QUEUE_OP_FLUSH) {
            id[0] = '\0';
            return SK_OK;
        }
        if (!sk_spool_id_valid(sp + 1)) return SK_ERR_NOT_FOUND;
        memcpy(id, sp + 1, SK_SPOOL_ID_SIZE);
        return SK_OK;
    }
    return SK_ERR_SYNTAX;
}

void sk_queue_control_poll(sk_queue *q, const char *ctl_dir, const sk_logger *log)
{
    int dfd = open(ctl_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0) return;
    DIR *d = fdopendir(dup(dfd));
    if (!d) {
        close(dfd);
        return;
    }
    time_t now = time(NULL);
    struct dirent *de;
    while ((de = readdir(d))) {
        const char *name = de->d_name;
        if (has_suffix(name, CTL_RES_EXT)) {
            struct stat st;
            if (fstatat(dfd, name, &st, 0) == 0 && now - st.st_mtime > CTL_STALE_S)
                unlinkat(dfd, name, 0);
            continue;
        }
        if (!has_suffix(name, CTL_REQ_EXT) || strlen(name) > 64) continue;
        char text[CTL_MAX_OCTETS];
        if (read_small(dfd, name, text, sizeof text)) continue;
        sk_queue_op op = SK_QUEUE_OP_FLUSH;
        char id[SK_SPOOL_ID_SIZE] = "";
        sk_err e = parse_request(text, &op, id);
        if (!e) e = sk_queue_apply(q, op, id);
        sk_log(log, SK_LOG_INFO, "%s queue control op=%s result=\"%s\"", id[0] ? id : "-",
               op_names[op], sk_strerror(e));
        char res[80], resname[80];
        int n = snprintf(res, sizeof res, "%d\n", (int)e);
        snprintf(resname, sizeof resname, "%.*s%s", (int)(strlen(name) - strlen(CTL_REQ_EXT)), name,
                 CTL_RES_EXT);
        /* The answer first, then the request goes: a request seen twice
         * is harmless (every operation is idempotent). */
        if (sk_spool_write_file(dfd, resname, res, (size_t)n, 0))
            sk_log(log, SK_LOG_ERR, "- queue control-answer-failed file=%s", resname);
        unlinkat(dfd, name, 0);
    }
    closedir(d);
    close(dfd);
}

static sk_err direct(sk_spool *s, sk_queue_op op, const char *id, sk_error *err)
{
    if (op == SK_QUEUE_OP_DELETE) return sk_spool_remove(s, id, err);
    char **ids = NULL;
    size_t n = 0;
    if (op == SK_QUEUE_OP_FLUSH) {
        sk_err e = sk_spool_list(s, &ids, &n, err);
        if (e) return e;
    }
    sk_err e = SK_OK;
    for (size_t i = 0; i < (op == SK_QUEUE_OP_FLUSH ? n : 1) && !e; i++) {
        sk_spool_envelope *env;
        e = sk_spool_load(s, op == SK_QUEUE_OP_FLUSH ? ids[i] : id, &env, err);
        if (e && op == SK_QUEUE_OP_FLUSH) {
            e = SK_OK; /* unreadable: leave it for the daemon to report */
            continue;
        }
        if (e) break;
        if (op == SK_QUEUE_OP_RELEASE || env->state == SK_SPOOL_DEFERRED) {
            env->state = SK_SPOOL_ACTIVE;
            env->next_attempt = 0;
            e = sk_spool_save(s, env, err);
        }
        sk_spool_envelope_free(env);
    }
    sk_spool_ids_free(ids, n);
    return e;
}

static sk_err via_daemon(const char *data_dir, sk_queue_op op, const char *id, unsigned timeout_ms,
                         sk_error *err)
{
    char ctl[PATH_MAX];
    snprintf(ctl, sizeof ctl, "%s/%s/%s", data_dir, SK_SPOOL_SUBDIR, SK_SPOOL_CTLDIR);
    int dfd = open(ctl, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0)
        return sk_error_set(err, SK_ERR_IO, SK_STEP_NONE, "cannot open %s: %s", ctl,
                            strerror(errno));
    uint32_t rnd = 0;
    if (sk_random(&rnd, sizeof rnd)) rnd = (uint32_t)time(NULL);
    char base[64], req[80], res[80], text[CTL_MAX_OCTETS];
    snprintf(base, sizeof base, "%ld-%08x", (long)getpid(), rnd);
    snprintf(req, sizeof req, "%s%s", base, CTL_REQ_EXT);
    snprintf(res, sizeof res, "%s%s", base, CTL_RES_EXT);
    int n = snprintf(text, sizeof text, "%s %s\n", op_names[op], id ? id : "-");
    sk_err e = sk_spool_write_file(dfd, req, text, (size_t)n, 0);
    if (e) {
        close(dfd);
        return sk_error_set(err, e, SK_STEP_NONE, "cannot write a request in %s", ctl);
    }
    uint64_t deadline = sk_now_ms() + (timeout_ms ? timeout_ms : 10000);
    for (;;) {
        e = read_small(dfd, res, text, sizeof text);
        if (!e) break;
        if (sk_now_ms() >= deadline) {
            unlinkat(dfd, req, 0);
            close(dfd);
            return sk_error_set(err, SK_ERR_TIMEOUT, SK_STEP_NONE,
                                "the running daemon did not answer within %u ms",
                                timeout_ms ? timeout_ms : 10000);
        }
        struct timespec ts = {0, 20 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    unlinkat(dfd, res, 0);
    close(dfd);
    long code = strtol(text, NULL, 10);
    if (code < 0 || code >= SK_ERR__COUNT) code = SK_ERR_PROTOCOL;
    if (code == SK_OK) return SK_OK;
    if (code == SK_ERR_NOT_FOUND)
        return sk_error_set(err, SK_ERR_NOT_FOUND, SK_STEP_NONE, "no message %s in the queue",
                            id ? id : "");
    return sk_error_set(err, (sk_err)code, SK_STEP_NONE, "the daemon answered: %s",
                        sk_strerror((sk_err)code));
}

sk_err sk_queue_control(const char *data_dir, sk_queue_op op, const char *id, unsigned timeout_ms,
                        sk_error *err)
{
    sk_error_clear(err);
    if ((unsigned)op > SK_QUEUE_OP_DELETE)
        return sk_error_set(err, SK_ERR_INVAL, SK_STEP_NONE, "unknown operation");
    if (op != SK_QUEUE_OP_FLUSH && !sk_spool_id_valid(id))
        return sk_error_set(err, SK_ERR_NOT_FOUND, SK_STEP_NONE, "no message %s in the queue",
                            id ? id : "");
    char msgdir[PATH_MAX];
    struct stat st;
    snprintf(msgdir, sizeof msgdir, "%s/%s/%s", data_dir, SK_SPOOL_SUBDIR, SK_SPOOL_MSGDIR);
    if (stat(msgdir, &st) != 0)
        return sk_error_set(err, SK_ERR_CONFIG, SK_STEP_NONE, "no spool in %s", data_dir);
    sk_error e2;
    sk_spool *s = sk_spool_open(data_dir, &(sk_spool_opts){.lock_wait_ms = 1}, NULL, &e2);
    if (s) {
        sk_err e = direct(s, op, id, err);
        sk_spool_free(s);
        return e;
    }
    if (e2.err != SK_ERR_STATE) {
        if (err) *err = e2;
        return e2.err;
    }
    /* A daemon holds the spool: ask it. */
    return via_daemon(data_dir, op, op == SK_QUEUE_OP_FLUSH ? NULL : id, timeout_ms, err);
}
