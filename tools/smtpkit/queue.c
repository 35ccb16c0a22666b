/* smtpkit queue: list, summarize, show, flush, release or delete queued messages, with
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
    fprintf(
        f,
        "usage: smtpkit queue [--data-dir DIR | --config FILE] list [--json]\n"
        "       smtpkit queue [--data-dir DIR | --config FILE] summary [--json]\n"
        "       smtpkit queue [--data-dir DIR | --config FILE] show ID [--json]\n"
        "       smtpkit queue [--data-dir DIR | --config FILE] flush [ID | FILTER...] [--json]\n"
        "       smtpkit queue [--data-dir DIR | --config FILE] release ID|FILTER... [--json]\n"
        "       smtpkit queue [--data-dir DIR | --config FILE] delete ID|FILTER... [--json]\n"
        "\n"
        "list     every queued message: ID, state (active|deferred|hold), attempts, size\n"
        "summary  messages by state (active, delivering, deferred, hold), and per\n"
        "         recipient domain (most messages first, at most %d) the messages and\n"
        "         recipients to deliver there and the oldest one's age; answered by a\n"
        "         running daemon from memory (under a second for a million messages),\n"
        "         else read from the spool's files\n"
        "show     one message with its recipients and header block\n"
        "flush    retry deferred messages now (every one without ID or FILTER)\n"
        "release  move held (or deferred) messages to delivery now\n"
        "delete   remove messages from the queue\n"
        "\n"
        "A FILTER is one or more of these; a message must match every one given:\n"
        "--all                         every message\n"
        "--destination DOMAIN          a recipient at DOMAIN is still to be delivered\n"
        "--sender ADDR                 the envelope sender ('<>': the null sender)\n"
        "--state active|deferred|hold  the message's state; repeat for several\n"
        "\n"
        "--data-dir DIR  the daemon's data directory (holds spool/)\n"
        "--config FILE   the daemon's config file: its data-dir is used\n"
        "--json          JSON output (docs/queue.md)\n"
        "-h, --help      this text\n"
        "\n"
        "The data directory is --data-dir, else data-dir in --config FILE, else\n"
        "$%s, else %s (where 'smtpkit serve' keeps it by default).\n"
        "\n"
        "flush, release and delete work whether or not 'smtpkit serve' runs on DIR:\n"
        "a running daemon is asked through DIR/spool/%s, else the spool is\n"
        "changed directly. They print how many messages matched and how many\n"
        "changed. A daemon still loading a deep spool after its start makes them\n"
        "wait until every stored message is loaded. Exit: 0 ok, 64 bad arguments, 65 no such "
        "message, 66 no spool in\n"
        "DIR, 74 the spool or its socket cannot be used (permission denied, I/O\n"
        "error), 75 the running daemon did not answer or is busy, 77 the daemon\n"
        "refused this user, 78 bad --config file.\n",
        SK_QUEUE_SUMMARY_DOMAINS_MAX, CLI_DATA_DIR_ENV, CLI_DATA_DIR_DEFAULT,
        SK_CONTROL_SOCKET_NAME);
}

static json_t *rfc3339_or_null(int64_t t)
{
    if (!t) return cli_jnull();
    char buf[32];
    sk_time_rfc3339(t, buf);
    return cli_jstr(buf);
}

static json_t *env_json(const sk_spool_envelope *env, const char *headers)
{
    json_t *o = cli_jobj();
    cli_jset(o, "id", cli_jstr(env->id));
    cli_jset(o, "sender", cli_jstr(env->sender));
    json_t *rcpts = cli_jarr();
    for (size_t i = 0; i < env->nrcpts; i++) cli_jpush(rcpts, cli_jstr(env->rcpts[i].addr));
    cli_jset(o, "recipients", rcpts);
    cli_jset(o, "size", cli_jint((long long)env->body_octets));
    cli_jset(o, "arrival", rfc3339_or_null(env->arrival));
    cli_jset(o, "state", cli_jstr(sk_spool_state_name(env->state)));
    cli_jset(o, "attempts", cli_jint(env->attempts));
    cli_jset(o, "next_attempt", rfc3339_or_null(env->next_attempt));
    cli_jset(o, "last_reply", cli_jstr(env->last_reply));
    if (headers) {
        json_t *st = cli_jarr();
        for (size_t i = 0; i < env->nrcpts; i++) {
            const sk_spool_rcpt *r = &env->rcpts[i];
            json_t *x = cli_jobj();
            cli_jset(x, "address", cli_jstr(r->addr));
            cli_jset(x, "state", cli_jstr(sk_rcpt_state_name(r->state)));
            cli_jset(x, "last_reply", cli_jstr(r->last_reply));
            cli_jpush(st, x);
        }
        cli_jset(o, "recipient_status", st);
        cli_jset(o, "helo", cli_jstr(env->helo));
        cli_jset(o, "peer", cli_jstr(env->peer));
        cli_jset(o, "headers", cli_jstr(headers));
    }
    return o;
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

/* The spool at data_dir, read-only: EX_OK, or the exit code with the reason
 * said. */
static int spool_open_ro(const char *data_dir, sk_spool **s)
{
    sk_error err;
    *s = sk_spool_open(data_dir, &(sk_spool_opts){.mode = SK_SPOOL_READONLY}, NULL, &err);
    if (*s) return EX_OK;
    cli_warn("queue", "%s", err.text);
    return cli_exit_code(&err);
}

/* The spool, read-only, and the IDs of its messages (sk_spool_ids_free). */
static int spool_listed(const char *data_dir, sk_spool **s, char ***ids, size_t *n)
{
    int rc = spool_open_ro(data_dir, s);
    if (rc != EX_OK) return rc;
    sk_error err;
    if (!sk_spool_list(*s, ids, n, &err)) return EX_OK;
    cli_warn("queue", "%s", err.text);
    sk_spool_free(*s);
    *s = NULL;
    return cli_exit_code(&err);
}

/* A listed message, or NULL: one that left the queue while we read is
 * skipped; one we may not read is said and counted, not silently left out. */
static sk_spool_envelope *load_listed(sk_spool *s, const char *data_dir, const char *id,
                                      size_t *unreadable)
{
    sk_spool_envelope *env;
    sk_error err;
    if (!sk_spool_load(s, id, &env, &err)) return env;
    if (err.err == SK_ERR_IO) {
        cli_warn("queue", "%s in %s", err.text, data_dir);
        (*unreadable)++;
    }
    return NULL;
}

static int do_list(const char *data_dir, int json)
{
    sk_spool *s;
    char **ids;
    size_t n;
    int rc = spool_listed(data_dir, &s, &ids, &n);
    if (rc != EX_OK) return rc;
    json_t *all = json ? cli_jarr() : NULL;
    if (!json)
        printf("%-16s  %-8s  %8s  %10s  %-20s  %s\n", "ID", "STATE", "ATTEMPTS", "SIZE", "ARRIVAL",
               "SENDER");
    size_t shown = 0, unreadable = 0;
    for (size_t i = 0; i < n; i++) {
        sk_spool_envelope *env = load_listed(s, data_dir, ids[i], &unreadable);
        if (!env) continue;
        if (json) {
            cli_jpush(all, env_json(env, NULL));
        } else {
            print_row(env);
        }
        shown++;
        sk_spool_envelope_free(env);
    }
    if (json)
        cli_json_print(all);
    else
        printf("%zu message%s\n", shown, shown == 1 ? "" : "s");
    sk_spool_ids_free(ids, n);
    sk_spool_free(s);
    return unreadable ? EX_IOERR : EX_OK;
}

/* An age in seconds, short: "45s", "12m5s", "3h20m", "2d4h". */
static void fmt_age(long long s, char out[32])
{
    if (s < 60)
        snprintf(out, 32, "%llds", s);
    else if (s < 3600)
        snprintf(out, 32, "%lldm%llds", s / 60, s % 60);
    else if (s < 86400)
        snprintf(out, 32, "%lldh%lldm", s / 3600, s % 3600 / 60);
    else
        snprintf(out, 32, "%lldd%lldh", s / 86400, s % 86400 / 3600);
}

static long long jnum(const json_t *o, const char *key)
{
    return (long long)json_integer_value(json_object_get(o, key));
}

/* The summary as text (from its JSON form, whoever made it). */
static int print_summary(const char *text, size_t n, int daemon)
{
    json_error_t jerr;
    json_t *o = json_loadb(text, n, 0, &jerr);
    const json_t *states = json_object_get(o, "states"), *domains = json_object_get(o, "domains");
    if (!json_is_object(o) || !json_is_object(states) || !json_is_array(domains)) {
        cli_warn("queue", "summary: the answer cannot be read (%s)",
                 o ? "not a summary" : jerr.text);
        json_decref(o);
        return EX_PROTOCOL;
    }
    char age[32];
    fmt_age(jnum(o, "oldest_age_s"), age);
    printf("messages: %lld (", jnum(o, "messages"));
    for (unsigned i = 0; i < SK_QUEUE_SUM__COUNT; i++) {
        const char *name = sk_queue_summary_state_name((sk_queue_summary_state)i);
        printf("%s%s %lld", i ? ", " : "", name, jnum(states, name));
    }
    printf("), recipients: %lld, oldest: %s%s\n", jnum(o, "recipients"),
           jnum(o, "messages") ? age : "-", daemon ? "" : " (no daemon runs: read from the spool)");
    if (json_is_true(json_object_get(o, "loading")))
        printf("loading: the daemon is still checking %lld stored messages; they are not "
               "counted yet\n",
               jnum(o, "unchecked"));
    if (json_array_size(domains)) {
        printf("%-40s  %10s  %10s  %s\n", "DOMAIN", "MESSAGES", "RECIPIENTS", "OLDEST");
        size_t i;
        const json_t *d;
        json_array_foreach(domains, i, d)
        {
            fmt_age(jnum(d, "oldest_age_s"), age);
            printf("%-40s  %10lld  %10lld  %s\n", json_string_value(json_object_get(d, "domain")),
                   jnum(d, "messages"), jnum(d, "recipients"), age);
        }
    }
    if (jnum(o, "domains_left_out"))
        printf("(%lld more domains with fewer messages not shown)\n", jnum(o, "domains_left_out"));
    json_decref(o);
    return EX_OK;
}

/* The summary read from the spool's files, when no daemon runs on it. */
static int summary_from_spool(const char *data_dir, sk_buf *out)
{
    sk_spool *s;
    char **ids;
    size_t n;
    int rc = spool_listed(data_dir, &s, &ids, &n);
    if (rc != EX_OK) return rc;
    sk_queue_summary sum = {0};
    sk_err e = SK_OK;
    size_t unreadable = 0;
    for (size_t i = 0; !e && i < n; i++) {
        sk_spool_envelope *env = load_listed(s, data_dir, ids[i], &unreadable);
        if (!env) continue;
        e = sk_queue_summary_add(&sum, env, sk_queue_summary_state_of(env->state));
        sk_spool_envelope_free(env);
    }
    sk_spool_ids_free(ids, n);
    sk_spool_free(s);
    sk_queue_summary_finish(&sum);
    if (!e) e = sk_queue_summary_json(&sum, (int64_t)time(NULL), SK_QUEUE_SUMMARY_DOMAINS_MAX, out);
    sk_queue_summary_free(&sum);
    if (e) {
        cli_warn("queue", "summary: %s", sk_strerror(e));
        return EX_SOFTWARE;
    }
    return unreadable ? EX_IOERR : EX_OK;
}

/* The queue's summary: from the running daemon's table through its
 * control socket, else (no daemon) from the spool's files. */
static int do_summary(const char *data_dir, int json)
{
    sk_buf text = SK_BUF_INIT(SK_CONTROL_DATA_MAX_OCTETS);
    sk_error err;
    int daemon = 1, rc = EX_OK;
    sk_err e =
        sk_control_fetch(data_dir, SK_CONTROL_SUMMARY_VERB, QUEUE_CONTROL_TIMEOUT_MS, &text, &err);
    if (e == SK_ERR_NOT_FOUND) {
        daemon = 0;
        sk_buf_reset(&text);
        rc = summary_from_spool(data_dir, &text);
    } else if (e) {
        cli_warn("queue", "summary: %s", err.text);
        rc = cli_exit_code(&err);
    }
    if (rc == EX_OK || (rc == EX_IOERR && text.len)) {
        if (json) {
            /* The daemon's object, with where it came from. */
            json_error_t jerr;
            json_t *o = json_loadb(text.data ? text.data : "", text.len, 0, &jerr);
            if (!json_is_object(o)) {
                cli_warn("queue", "summary: the answer cannot be read (%s)", jerr.text);
                rc = EX_PROTOCOL;
                json_decref(o);
            } else {
                json_object_set_new(o, "daemon", json_boolean(daemon));
                cli_json_print(o); /* frees o */
            }
        } else {
            int prc = print_summary(text.data ? text.data : "", text.len, daemon);
            if (prc) rc = prc;
        }
    }
    sk_buf_free(&text);
    return rc;
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
    sk_spool *s;
    int rc = spool_open_ro(data_dir, &s);
    if (rc != EX_OK) return rc;
    sk_error err;
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
        cli_json_print(env_json(env, sk_buf_cstr(&headers)));
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

static json_t *filter_json(const sk_queue_filter *f)
{
    json_t *o = cli_jobj();
    cli_jset(o, "all", cli_jbool(f->all));
    cli_jset(o, "destination", f->destination[0] ? cli_jstr(f->destination) : cli_jnull());
    cli_jset(o, "sender", f->has_sender ? cli_jstr(f->sender) : cli_jnull());
    json_t *states = cli_jarr();
    for (unsigned s = 0; s < SK_SPOOL_STATE__COUNT; s++)
        if (f->states & (1u << s))
            cli_jpush(states, cli_jstr(sk_spool_state_name((sk_spool_state)s)));
    cli_jset(o, "state", states);
    return o;
}

static int run_action(const char *data_dir, const char *action, const char *id,
                      const sk_queue_filter *filter, int json)
{
    if (!strcmp(action, "list")) return do_list(data_dir, json);
    if (!strcmp(action, "summary")) return do_summary(data_dir, json);
    if (!strcmp(action, "show")) return do_show(data_dir, id, json);
    sk_control_request req = {.op = !strcmp(action, "flush")     ? SK_QUEUE_OP_FLUSH
                                    : !strcmp(action, "release") ? SK_QUEUE_OP_RELEASE
                                                                 : SK_QUEUE_OP_DELETE,
                              .filter = *filter};
    if (id) snprintf(req.filter.id, sizeof req.filter.id, "%s", id);
    /* flush alone retries every deferred message, as it always did;
     * release and delete must be told what to apply to. */
    if (sk_queue_filter_empty(&req.filter)) req.filter.all = 1;
    sk_control_result res;
    sk_error err;
    if (sk_control_run(data_dir, &req, QUEUE_CONTROL_TIMEOUT_MS, &res, &err)) {
        cli_warn("queue", "%s: %s", action, err.text);
        return cli_exit_code(&err);
    }
    if (json) {
        json_t *o = cli_jobj();
        cli_jset(o, "action", cli_jstr(action));
        cli_jset(o, "id", cli_jstr(id));
        cli_jset(o, "filter", id ? cli_jnull() : filter_json(&req.filter));
        cli_jset(o, "matched", cli_jint((long long)res.matched));
        cli_jset(o, "changed", cli_jint((long long)res.changed));
        cli_jset(o, "daemon", cli_jbool(!res.direct));
        cli_jset(o, "ok", cli_jbool(1));
        cli_json_print(o);
    } else {
        printf("%s%s%s: %zu matched, %zu changed\n", action, id ? " " : "", id ? id : "",
               res.matched, res.changed);
    }
    return EX_OK;
}

/* The value of --destination: a domain as a recipient address has it. */
static int set_destination(sk_queue_filter *f, const char *v)
{
    size_t n = strlen(v);
    if (f->destination[0]) return cli_usage_error("queue", "--destination given twice");
    if (!n || n > SK_SMTP_DOMAIN_MAX_OCTETS || strpbrk(v, "@ <>\t\r\n"))
        return cli_usage_error("queue", "--destination: '%s' is not a domain", v);
    for (const unsigned char *p = (const unsigned char *)v; *p; p++)
        if (*p < 0x20 || *p == 0x7f)
            return cli_usage_error("queue", "--destination: '%s' is not a domain", v);
    memcpy(f->destination, v, n + 1);
    return EX_OK;
}

/* The value of --sender: ADDR or <ADDR>, and '<>' or '' for the null sender. */
static int set_sender(sk_queue_filter *f, const char *v)
{
    if (f->has_sender) return cli_usage_error("queue", "--sender given twice");
    char path[SK_SMTP_PATH_MAX_OCTETS + 3];
    const char *inner = v;
    size_t n = strlen(v);
    if (n >= 2 && v[0] == '<' && v[n - 1] == '>') {
        inner = v + 1;
        n -= 2;
    }
    sk_path p;
    const char *end;
    if (n > SK_SMTP_PATH_MAX_OCTETS ||
        (size_t)snprintf(path, sizeof path, "<%.*s>", (int)n, inner) >= sizeof path ||
        sk_path_parse(path, SK_PATH_NULL_OK | SK_PATH_UTF8_OK, &p, &end) || *end)
        return cli_usage_error("queue",
                               "--sender: '%s' is not an address ('<>' for the null "
                               "sender)",
                               v);
    f->has_sender = 1;
    snprintf(f->sender, sizeof f->sender, "%s", p.mailbox);
    return EX_OK;
}

static int add_state(sk_queue_filter *f, const char *v)
{
    for (unsigned s = 0; s < SK_SPOOL_STATE__COUNT; s++)
        if (!strcmp(v, sk_spool_state_name((sk_spool_state)s))) {
            f->states |= 1u << s;
            return EX_OK;
        }
    return cli_usage_error("queue", "--state: '%s' is not a state (active, deferred or hold)", v);
}

int cmd_queue(int argc, char **argv)
{
    const char *data_dir = NULL, *config = NULL, *action = NULL, *id = NULL;
    const char *filter_opt = NULL; /* the first filter option, for messages */
    sk_queue_filter filter = {0};
    int json = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return EX_OK;
        } else if (!strcmp(a, "--json")) {
            json = 1;
        } else if (!strcmp(a, "--all")) {
            filter.all = 1;
            if (!filter_opt) filter_opt = a;
        } else if (!strcmp(a, "--destination") || !strcmp(a, "--sender") || !strcmp(a, "--state")) {
            if (++i >= argc) return cli_usage_error("queue", "%s needs a value", a);
            int rc = a[2] == 'd'   ? set_destination(&filter, argv[i])
                     : a[3] == 'e' ? set_sender(&filter, argv[i])
                                   : add_state(&filter, argv[i]);
            if (rc) return rc;
            if (!filter_opt) filter_opt = a;
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
            return cli_unknown_option("queue", a,
                                      (const char *const[]){"data-dir", "config", "json", "all",
                                                            "destination", "sender", "state",
                                                            "help", NULL});
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
        return cli_usage_error("queue",
                               "say what to do: list, summary, show, flush, release or delete");
    /* What each action takes: an ID (needed, or one of ID and FILTER). */
    enum { NO_ID, NEEDS_ID, ID_OR_FILTER, ID_FILTER_OR_NONE };
    static const struct {
        const char *name;
        int takes;
    } actions[] = {{"list", NO_ID},           {"summary", NO_ID},
                   {"show", NEEDS_ID},        {"flush", ID_FILTER_OR_NONE},
                   {"release", ID_OR_FILTER}, {"delete", ID_OR_FILTER}};
    size_t k = 0;
    while (k < sizeof actions / sizeof actions[0] && strcmp(actions[k].name, action)) k++;
    if (k == sizeof actions / sizeof actions[0])
        return cli_usage_error("queue", "unknown action '%s'", action);
    int takes = actions[k].takes;
    if (filter_opt && takes <= NEEDS_ID)
        return cli_usage_error("queue", "%s applies to flush, release and delete, not %s",
                               filter_opt, action);
    if (takes == NEEDS_ID && !id) return cli_usage_error("queue", "%s needs a queue ID", action);
    if (takes == ID_OR_FILTER && !id && !filter_opt)
        return cli_usage_error("queue",
                               "%s needs a queue ID or a filter (--all, --destination, --sender, "
                               "--state)",
                               action);
    if (takes == NO_ID && id) return cli_usage_error("queue", "unexpected argument '%s'", id);
    if (id && filter_opt)
        return cli_usage_error("queue", "give %s a queue ID or a filter, not both (%s with %s)",
                               action, id, filter_opt);
    if (id && !sk_spool_id_valid(id))
        return cli_usage_error("queue", "'%s' is not a queue ID (16 characters, like %s)", id,
                               "01HF3Z4Q7M2ABCDE");
    cli_data_dir dd;
    int rc = cli_data_dir_resolve("queue", data_dir, config, &dd);
    if (rc == EX_OK) rc = check_spool(&dd);
    if (rc == EX_OK) rc = run_action(dd.path, action, id, &filter, json);
    cli_data_dir_clear(&dd);
    return rc;
}
