/* server_print: a small SMTP server built on sk_server. It accepts mail for
 * the addresses given as arguments and prints each envelope and message. */
#include <smtpkit/smtpkit.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static const char usage_text[] =
    "usage: server_print [options] ADDRESS...\n"
    "  --listen ADDR:PORT     SMTP listener (default 127.0.0.1:0; the port is printed)\n"
    "  --submission ADDR:PORT submission listener (AUTH required)\n"
    "  --smtps ADDR:PORT      implicit TLS submission listener\n"
    "  --tls CERT KEY         certificate and key (STARTTLS)\n"
    "  --reload-tls CERT KEY  on SIGHUP, reload with these and hostname mx2.test\n"
    "  --user USER:PASSWORD   an account for AUTH\n"
    "  --hostname NAME  --max-size N  --max-rcpts N  --max-conn-per-ip N\n"
    "  --timeout MS  --greeting-delay MS  --max-idle N  --auth-failures N\n"
    "  --auth-loopback        allow AUTH without TLS from loopback\n"
    "  --async DELAY_MS       answer messages in batches (group commit) after DELAY_MS\n"
    "  --async-auth DELAY_MS  answer AUTH after DELAY_MS (as if hashing off the loop)\n"
    "  --refuse-data CODE     refuse messages at DATA with CODE\n"
    "  -v                     log debug lines to stderr\n";

typedef struct app {
    char **accept;
    size_t naccept;
    const char *user, *password;
    int async_ms;
    int async_auth_ms;
    int refuse_data;
    int batch_armed;
    sk_session *pending[64];
    size_t npending;
    unsigned batches;
    unsigned long msgs;
    sk_server *srv;
    sk_server_opts opts;
    const char *reload_cert, *reload_key;
} app;

typedef struct msg {
    unsigned long id;
    size_t size;
} msg;

static void log_line(void *ctx, sk_log_level level, const char *line)
{
    fprintf(stderr, "%s\n", line);
}

static sk_reply on_rcpt(sk_session *s, const sk_path *rcpt, const sk_rcpt_params *p, void *ctx)
{
    app *a = ctx;
    for (size_t i = 0; i < a->naccept; i++)
        if (!strcasecmp(rcpt->mailbox, a->accept[i])) return SK_REPLY_OK;
    return sk_reply_make(550, "5.1.1", "No such user here");
}

typedef struct auth_later {
    sk_session *s;
    int ok;
} auth_later;

static void auth_answer(void *arg)
{
    auth_later *l = arg;
    sk_reply r =
        l->ok ? SK_REPLY_OK : sk_reply_make(535, "5.7.8", "Authentication credentials invalid");
    if (sk_session_reply(l->s, &r) != SK_OK) fprintf(stderr, "server_print: auth reply failed\n");
    free(l);
}

static sk_reply on_auth(sk_session *s, const char *mech, const char *authzid, const char *user,
                        const char *password, void *ctx)
{
    app *a = ctx;
    int ok = a->user && !strcmp(user, a->user) && !strcmp(password, a->password);
    if (a->async_auth_ms) {
        auth_later *l = malloc(sizeof *l);
        if (!l) return sk_reply_make(454, "4.7.0", "Out of memory");
        l->s = s;
        l->ok = ok;
        if (sk_server_after(a->srv, (unsigned)a->async_auth_ms, auth_answer, l) != SK_OK) {
            free(l);
            return sk_reply_make(454, "4.7.0", "Cannot schedule the check");
        }
        return SK_REPLY_ASYNC;
    }
    if (ok) return SK_REPLY_OK;
    return sk_reply_make(535, "5.7.8", "Authentication credentials invalid");
}

static sk_reply on_data_start(sk_session *s, const sk_envelope *env, void **m, void *ctx)
{
    app *a = ctx;
    if (a->refuse_data)
        return sk_reply_make(a->refuse_data, a->refuse_data < 500 ? "4.3.1" : "5.3.0",
                             "Refused by configuration");
    msg *mm = calloc(1, sizeof *mm);
    if (!mm) return sk_reply_make(452, "4.3.1", "Out of memory");
    mm->id = ++a->msgs;
    *m = mm;
    printf("ENVELOPE session=%s from=<%s> helo=%s peer=%s proto=%s tls=%d auth=%s", env->session_id,
           env->from.mailbox, env->helo, env->peer_addr, env->protocol, env->tls, env->auth_user);
    if (env->params.has_size) printf(" size=%llu", (unsigned long long)env->params.size);
    if (env->params.body == SK_BODY_8BITMIME) printf(" body=8BITMIME");
    if (env->params.smtputf8) printf(" smtputf8");
    if (env->params.has_priority) printf(" priority=%d", env->params.priority);
    if (env->params.envid[0]) printf(" envid=%s", env->params.envid);
    printf("\n");
    for (size_t i = 0; i < env->nrcpts; i++)
        printf("RCPT <%s> notify=%u orcpt=%s\n", env->rcpts[i].path.mailbox,
               env->rcpts[i].params.notify, env->rcpts[i].params.orcpt);
    printf("BEGIN\n");
    fflush(stdout);
    return SK_REPLY_OK;
}

static sk_err on_data_chunk(sk_session *s, void *m, const char *bytes, size_t len, void *ctx)
{
    msg *mm = m;
    mm->size += len;
    fwrite(bytes, 1, len, stdout);
    return SK_OK;
}

static void batch_cb(void *arg)
{
    app *a = arg;
    a->batch_armed = 0;
    a->batches++;
    /* One "fsync" for all messages that arrived meanwhile: answer them all. */
    size_t n = a->npending;
    a->npending = 0;
    for (size_t i = 0; i < n; i++) {
        sk_reply r = sk_reply_make(250, "2.0.0", "Ok: queued in batch %u of %zu", a->batches, n);
        if (sk_session_reply(a->pending[i], &r) != SK_OK)
            fprintf(stderr, "server_print: async reply failed\n");
    }
}

static sk_reply on_data_end(sk_session *s, void *m, int ok, void *ctx)
{
    app *a = ctx;
    msg *mm = m;
    unsigned long id = mm ? mm->id : 0;
    size_t size = mm ? mm->size : 0;
    free(mm);
    printf("END ok=%d size=%zu\n", ok, size);
    fflush(stdout);
    if (!ok) return SK_REPLY_OK;
    if (a->async_ms && a->npending < sizeof a->pending / sizeof a->pending[0]) {
        a->pending[a->npending++] = s;
        if (!a->batch_armed) {
            if (sk_server_after(a->srv, (unsigned)a->async_ms, batch_cb, a) != SK_OK) {
                a->npending--;
                return sk_reply_make(451, "4.3.0", "Cannot schedule the reply");
            }
            a->batch_armed = 1;
        }
        return SK_REPLY_ASYNC;
    }
    return sk_reply_make(250, "2.0.0", "Ok: queued as %lu", id);
}

static void on_disconnect(sk_session *s, void *ctx)
{
    app *a = ctx;
    for (size_t i = 0; i < a->npending; i++)
        if (a->pending[i] == s) a->pending[i] = a->pending[--a->npending];
}

static void reload_signal(sk_server *srv, int signum, void *ctx)
{
    app *a = ctx;
    sk_server_opts o = a->opts;
    o.hostname = "mx2.test";
    if (a->reload_cert) {
        o.tls_cert_file = a->reload_cert;
        o.tls_key_file = a->reload_key;
    }
    sk_error err;
    if (sk_server_reload(srv, &o, &err) != SK_OK)
        fprintf(stderr, "server_print: reload: %s\n", err.text);
    else
        printf("RELOADED\n");
    fflush(stdout);
}

int main(int argc, char **argv)
{
    app a = {0};
    sk_server_opts o = {.hostname = "mx.test"};
    const char *listens[8][2];
    size_t nlistens = 0;
    int verbose = 0;
    static char *accept_buf[64];
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        const char *next = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(arg, "-v")) {
            verbose = 1;
            continue;
        }
        if (arg[0] != '-') {
            if (a.naccept < 64) accept_buf[a.naccept++] = argv[i];
            continue;
        }
        if (!next) goto usage;
        i++;
        if ((!strcmp(arg, "--listen") || !strcmp(arg, "--submission") || !strcmp(arg, "--smtps")) &&
            nlistens < 8) {
            listens[nlistens][0] = arg;
            listens[nlistens++][1] = next;
        } else if (!strcmp(arg, "--tls") && i + 1 < argc) {
            o.tls_cert_file = next;
            o.tls_key_file = argv[++i];
        } else if (!strcmp(arg, "--reload-tls") && i + 1 < argc) {
            a.reload_cert = next;
            a.reload_key = argv[++i];
        } else if (!strcmp(arg, "--user")) {
            char *colon = strchr(argv[i], ':');
            if (!colon) goto usage;
            *colon = '\0';
            a.user = argv[i];
            a.password = colon + 1;
        } else if (!strcmp(arg, "--hostname")) {
            o.hostname = next;
        } else if (!strcmp(arg, "--max-size")) {
            o.max_message_size = strtoull(next, NULL, 10);
        } else if (!strcmp(arg, "--max-rcpts")) {
            o.max_recipients = (unsigned)atoi(next);
        } else if (!strcmp(arg, "--max-conn-per-ip")) {
            o.max_connections_per_ip = (unsigned)atoi(next);
        } else if (!strcmp(arg, "--timeout")) {
            o.command_timeout_ms = o.greeting_timeout_ms = o.data_timeout_ms = (unsigned)atoi(next);
        } else if (!strcmp(arg, "--greeting-delay")) {
            o.greeting_delay_ms = (unsigned)atoi(next);
        } else if (!strcmp(arg, "--max-idle")) {
            o.max_idle_commands = (unsigned)atoi(next);
        } else if (!strcmp(arg, "--auth-failures")) {
            o.auth_failures_max = (unsigned)atoi(next);
        } else if (!strcmp(arg, "--auth-loopback")) {
            o.auth_plaintext_loopback = 1;
            i--;
        } else if (!strcmp(arg, "--async")) {
            a.async_ms = atoi(next);
        } else if (!strcmp(arg, "--async-auth")) {
            a.async_auth_ms = atoi(next);
        } else if (!strcmp(arg, "--refuse-data")) {
            a.refuse_data = atoi(next);
        } else {
            goto usage;
        }
    }
    if (!a.naccept) goto usage;
    a.accept = accept_buf;
    if (verbose) o.logger = (sk_logger){.fn = log_line, .max_level = SK_LOG_DEBUG};
    signal(SIGPIPE, SIG_IGN);

    a.opts = o;
    sk_error err;
    sk_server *srv = sk_server_new(&o, NULL, &err);
    if (!srv) {
        fprintf(stderr, "server_print: %s\n", err.text);
        return 1;
    }
    a.srv = srv;
    if (!nlistens) {
        listens[0][0] = "--listen";
        listens[0][1] = "127.0.0.1:0";
        nlistens = 1;
    }
    for (size_t i = 0; i < nlistens; i++) {
        sk_listen_kind k = !strcmp(listens[i][0], "--listen")       ? SK_LISTEN_SMTP
                           : !strcmp(listens[i][0], "--submission") ? SK_LISTEN_SUBMISSION
                                                                    : SK_LISTEN_SMTPS;
        if (sk_server_listen(srv, listens[i][1], k, &err) != SK_OK) {
            fprintf(stderr, "server_print: %s\n", err.text);
            sk_server_free(srv);
            return 1;
        }
        printf("LISTEN %s %d\n", listens[i][0] + 2, sk_server_port(srv, i));
    }
    fflush(stdout);
    sk_server_on_rcpt(srv, on_rcpt, &a);
    if (a.user) sk_server_on_auth(srv, on_auth, &a);
    sk_server_on_data(srv, on_data_start, on_data_chunk, on_data_end, &a);
    sk_server_on_disconnect(srv, on_disconnect, &a);
    if (sk_server_stop_on_signal(srv, SIGTERM) != SK_OK ||
        sk_server_stop_on_signal(srv, SIGINT) != SK_OK ||
        sk_server_on_signal(srv, SIGHUP, reload_signal, &a) != SK_OK) {
        fprintf(stderr, "server_print: cannot handle signals\n");
        sk_server_free(srv);
        return 1;
    }
    sk_err e = sk_server_run(srv);
    printf("STOPPED\n");
    fflush(stdout);
    sk_server_free(srv);
    return e == SK_OK ? 0 : 1;
usage:
    fputs(usage_text, stderr);
    return 2;
}
