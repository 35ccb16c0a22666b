/* smtpkit queue: list, show, flush, release or delete queued messages, with
 * or without a daemon running on the spool (docs/queue.md). */
#include "cli.h"

#include <errno.h>
#include <limits.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define QUEUE_CONTROL_TIMEOUT_MS 10000

static void usage(FILE *f)
{
    fprintf(f,
            "usage: smtpkit queue [--data-dir DIR | --config FILE] list [--json]\n"
            "       smtpkit queue [--data-dir DIR | --config FILE] show ID [--json]\n"
            "       smtpkit queue [--data-dir DIR | --config FILE] flush\n"
            "       smtpkit queue [--data-dir DIR | --config FILE] release ID\n"
            "       smtpkit queue [--data-dir DIR | --config FILE] delete ID\n"
            "\n"
            "list     every queued message: ID, state (active|deferred|hold), attempts, size\n"
            "show     one message with its recipients and header block\n"
            "flush    retry deferred messages now\n"
            "release  move a message from the hold queue to delivery\n"
            "delete   remove a message from the queue\n"
            "\n"
            "--data-dir DIR  the daemon's data directory (holds spool/)\n"
            "--config FILE   the daemon's config file: its data-dir is used\n"
            "--json          JSON output (docs/queue.md)\n"
            "-h, --help      this text\n"
            "The data directory is --data-dir, else data-dir in --config FILE, else\n"
            "$%s, else %s (where 'smtpkit serve' keeps it by default).\n"
            "\n"
            "Works whether or not 'smtpkit serve' runs on DIR: a running daemon is asked\n"
            "to do the change. Exit: 0 ok, 64 bad arguments, 65 no such message,\n"
            "66 no spool in DIR, 74 the spool cannot be read (permission denied, I/O\n"
            "error), 75 the running daemon did not answer, 78 bad --config file.\n",
            CLI_DATA_DIR_ENV, CLI_DATA_DIR_DEFAULT);
}

static void rfc3339_or_null(FILE *f, int64_t t)
{
    if (!t) {
        fputs("null", f);
        return;
    }
    char buf[32];
    sk_time_rfc3339(t, buf);
    json_string(f, buf);
}

static void print_json(const sk_spool_envelope *env, const char *headers)
{
    printf("{\"id\":");
    json_string(stdout, env->id);
    printf(",\"sender\":");
    json_string(stdout, env->sender);
    printf(",\"recipients\":[");
    for (size_t i = 0; i < env->nrcpts; i++) {
        if (i) putchar(',');
        json_string(stdout, env->rcpts[i].addr);
    }
    printf("],\"size\":%llu,\"arrival\":", (unsigned long long)env->body_octets);
    rfc3339_or_null(stdout, env->arrival);
    printf(",\"state\":");
    json_string(stdout, sk_spool_state_name(env->state));
    printf(",\"attempts\":%u,\"next_attempt\":", env->attempts);
    rfc3339_or_null(stdout, env->next_attempt);
    printf(",\"last_reply\":");
    json_string(stdout, env->last_reply);
    if (headers) {
        printf(",\"recipient_status\":[");
        for (size_t i = 0; i < env->nrcpts; i++) {
            const sk_spool_rcpt *r = &env->rcpts[i];
            printf("%s{\"address\":", i ? "," : "");
            json_string(stdout, r->addr);
            printf(",\"state\":");
            json_string(stdout, sk_rcpt_state_name(r->state));
            printf(",\"last_reply\":");
            json_string(stdout, r->last_reply);
            putchar('}');
        }
        printf("],\"helo\":");
        json_string(stdout, env->helo);
        printf(",\"peer\":");
        json_string(stdout, env->peer);
        printf(",\"headers\":");
        json_string(stdout, headers);
    }
    putchar('}');
}

static void print_row(const sk_spool_envelope *env)
{
    char arrival[32];
    sk_time_rfc3339(env->arrival, arrival);
    printf("%-16s  %-8s  %8u  %10llu  %s  <%s>\n", env->id, sk_spool_state_name(env->state),
           env->attempts, (unsigned long long)env->body_octets, arrival, env->sender);
    for (size_t i = 0; i < env->nrcpts; i++)
        printf("%18s-> <%s> %s\n", "", env->rcpts[i].addr, sk_rcpt_state_name(env->rcpts[i].state));
    if (env->next_attempt) {
        char next[32];
        sk_time_rfc3339(env->next_attempt, next);
        printf("%18s   next attempt: %s\n", "", next);
    }
    if (env->last_reply) printf("%18s   last reply: %s\n", "", env->last_reply);
}

static int do_list(const char *data_dir, int json)
{
    sk_error err;
    sk_spool *s = sk_spool_open(data_dir, &(sk_spool_opts){.mode = SK_SPOOL_READONLY}, NULL, &err);
    if (!s) {
        cli_warn("queue", "%s", err.text);
        return cli_exit_code(&err);
    }
    char **ids;
    size_t n;
    if (sk_spool_list(s, &ids, &n, &err)) {
        cli_warn("queue", "%s", err.text);
        sk_spool_free(s);
        return cli_exit_code(&err);
    }
    if (json)
        putchar('[');
    else
        printf("%-16s  %-8s  %8s  %10s  %-20s  %s\n", "ID", "STATE", "ATTEMPTS", "SIZE", "ARRIVAL",
               "SENDER");
    size_t shown = 0, unreadable = 0;
    for (size_t i = 0; i < n; i++) {
        sk_spool_envelope *env;
        if (sk_spool_load(s, ids[i], &env, &err)) {
            /* A message may leave the queue while we read it: skip it. One
             * we may not read is not silently left out. */
            if (err.err == SK_ERR_IO) {
                cli_warn("queue", "%s in %s", err.text, data_dir);
                unreadable++;
            }
            continue;
        }
        if (json) {
            if (shown) putchar(',');
            print_json(env, NULL);
        } else {
            print_row(env);
        }
        shown++;
        sk_spool_envelope_free(env);
    }
    if (json)
        printf("]\n");
    else
        printf("%zu message%s\n", shown, shown == 1 ? "" : "s");
    sk_spool_ids_free(ids, n);
    sk_spool_free(s);
    return unreadable ? EX_IOERR : EX_OK;
}

/* The spool's message directory under dd is there and readable: EX_OK, or
 * an exit code after a message naming the directory, how it was chosen
 * and what is wrong. */
static int check_spool(const cli_data_dir *dd)
{
    char msgdir[PATH_MAX];
    if ((size_t)snprintf(msgdir, sizeof msgdir, "%s/spool/msg", dd->path) >= sizeof msgdir)
        return cli_usage_error("queue", "data directory '%s' is too long", dd->path);
    struct stat st;
    int rc = stat(msgdir, &st);
    if (rc == 0 && !S_ISDIR(st.st_mode)) {
        rc = -1;
        errno = ENOTDIR;
    }
    if (rc == 0 && access(msgdir, R_OK | X_OK) == 0) return EX_OK;
    int why = errno;
    if (why == ENOENT || why == ENOTDIR) {
        struct stat dst;
        int no_dir = stat(dd->path, &dst) != 0 && errno == ENOENT;
        cli_warn("queue", "no spool in %s (%s)%s", dd->path, dd->how,
                 no_dir ? ": the directory does not exist" : "");
        return EX_NOINPUT;
    }
    cli_warn("queue", "cannot read the spool in %s (%s): %s", dd->path, dd->how, strerror(why));
    return EX_IOERR;
}

static int do_show(const char *data_dir, const char *id, int json)
{
    sk_error err;
    sk_spool *s = sk_spool_open(data_dir, &(sk_spool_opts){.mode = SK_SPOOL_READONLY}, NULL, &err);
    if (!s) {
        cli_warn("queue", "%s", err.text);
        return cli_exit_code(&err);
    }
    sk_spool_envelope *env;
    if (sk_spool_load(s, id, &env, &err)) {
        cli_warn("queue", "%s", err.text);
        sk_spool_free(s);
        return cli_exit_code(&err);
    }
    sk_buf headers = SK_BUF_INIT(1024 * 1024);
    if (sk_spool_read_headers(s, id, &headers, &err)) {
        cli_warn("queue", "%s", err.text);
        sk_spool_envelope_free(env);
        sk_spool_free(s);
        return cli_exit_code(&err);
    }
    if (json) {
        print_json(env, sk_buf_cstr(&headers));
        putchar('\n');
    } else {
        char t[32];
        sk_time_rfc3339(env->arrival, t);
        printf("id:           %s\nstate:        %s\narrival:      %s\n", env->id,
               sk_spool_state_name(env->state), t);
        if (env->next_attempt) sk_time_rfc3339(env->next_attempt, t);
        printf("attempts:     %u\nnext attempt: %s\nsize:         %llu\nsender:       <%s>\n",
               env->attempts, env->next_attempt ? t : "-", (unsigned long long)env->body_octets,
               env->sender);
        for (size_t i = 0; i < env->nrcpts; i++)
            printf("recipient:    <%s> %s%s%s\n", env->rcpts[i].addr,
                   sk_rcpt_state_name(env->rcpts[i].state), env->rcpts[i].last_reply ? ": " : "",
                   env->rcpts[i].last_reply ? env->rcpts[i].last_reply : "");
        printf("from:         %s [%s] with %s\n", env->helo ? env->helo : "-",
               env->peer ? env->peer : "-", sk_spool_envelope_protocol(env));
        if (env->last_reply) printf("last reply:   %s\n", env->last_reply);
        printf("\n");
        /* The header block as stored, with CRLF shown as line ends. */
        const char *h = sk_buf_cstr(&headers);
        for (size_t i = 0; i < headers.len; i++)
            if (h[i] != '\r') putchar(h[i]);
    }
    sk_buf_free(&headers);
    sk_spool_envelope_free(env);
    sk_spool_free(s);
    return EX_OK;
}

static int run_action(const char *data_dir, const char *action, const char *id, int json)
{
    if (!strcmp(action, "list")) return do_list(data_dir, json);
    if (!strcmp(action, "show")) return do_show(data_dir, id, json);
    sk_queue_op op = !strcmp(action, "flush")     ? SK_QUEUE_OP_FLUSH
                     : !strcmp(action, "release") ? SK_QUEUE_OP_RELEASE
                                                  : SK_QUEUE_OP_DELETE;
    sk_error err;
    if (sk_queue_control(data_dir, op, id, QUEUE_CONTROL_TIMEOUT_MS, &err)) {
        cli_warn("queue", "%s: %s", action, err.text);
        return cli_exit_code(&err);
    }
    if (json) {
        printf("{\"action\":");
        json_string(stdout, action);
        printf(",\"id\":");
        json_string(stdout, id);
        printf(",\"ok\":true}\n");
    } else {
        printf("%s%s%s: done\n", action, id ? " " : "", id ? id : "");
    }
    return EX_OK;
}

int cmd_queue(int argc, char **argv)
{
    const char *data_dir = NULL, *config = NULL, *action = NULL, *id = NULL;
    int json = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return EX_OK;
        } else if (!strcmp(a, "--json")) {
            json = 1;
        } else if (!strcmp(a, "--data-dir") || !strcmp(a, "--config")) {
            if (++i >= argc)
                return cli_usage_error("queue", "%s needs a %s", a,
                                       a[2] == 'd' ? "directory" : "file");
            *(a[2] == 'd' ? &data_dir : &config) = argv[i];
        } else if (!strncmp(a, "--data-dir=", 11)) {
            data_dir = a + 11;
        } else if (!strncmp(a, "--config=", 9)) {
            config = a + 9;
        } else if (a[0] == '-' && a[1]) {
            return cli_unknown_option(
                "queue", a, (const char *const[]){"data-dir", "config", "json", "help", NULL});
        } else if (!action) {
            action = a;
        } else if (!id) {
            id = a;
        } else {
            return cli_usage_error("queue", "unexpected argument '%s'", a);
        }
    }
    if ((data_dir && !*data_dir) || (config && !*config))
        return cli_usage_error("queue", "%s needs a value",
                               data_dir && !*data_dir ? "--data-dir" : "--config");
    if (!action)
        return cli_usage_error("queue", "say what to do: list, show, flush, release or delete");
    static const struct {
        const char *name;
        int needs_id;
    } actions[] = {{"list", 0}, {"show", 1}, {"flush", 0}, {"release", 1}, {"delete", 1}};
    size_t k = 0;
    while (k < sizeof actions / sizeof actions[0] && strcmp(actions[k].name, action)) k++;
    if (k == sizeof actions / sizeof actions[0])
        return cli_usage_error("queue", "unknown action '%s'", action);
    if (actions[k].needs_id && !id) return cli_usage_error("queue", "%s needs a queue ID", action);
    if (!actions[k].needs_id && id) return cli_usage_error("queue", "unexpected argument '%s'", id);
    if (id && !sk_spool_id_valid(id))
        return cli_usage_error("queue", "'%s' is not a queue ID (16 characters, like %s)", id,
                               "01HF3Z4Q7M2ABCDE");
    cli_data_dir dd;
    int rc = cli_data_dir_resolve("queue", data_dir, config, &dd);
    if (rc == EX_OK) rc = check_spool(&dd);
    if (rc == EX_OK) rc = run_action(dd.path, action, id, json);
    cli_data_dir_clear(&dd);
    return rc;
}
