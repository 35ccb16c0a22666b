/* Helpers shared by the subcommands: errors, exit codes, files, JSON. */
#include "cli.h"

#include <smtpkit/daemon.h>

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int cli_usage_error(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "smtpkit %s: ", cmd);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n(see 'smtpkit %s --help')\n", cmd);
    return EX_USAGE;
}

void cli_warn(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "smtpkit %s: ", cmd);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

const char *cli_nearest(const char *word, const char *const *names)
{
    return sk_nearest(word, names);
}

const sk_option_names cli_option_names = {
    .tls_starttls = "--tls starttls",
    .tls_implicit = "--tls implicit",
    .tls_none = "--tls none",
    .ca_file = "--ca-file",
    .insecure = "--insecure",
    .tls_name = "--tls-name",
    .timeout = "--timeout",
    .server = "--server",
    .credentials = "--user and the password (--password-file or SMTPKIT_PASSWORD)",
};

int cli_parse_words(const char *cmd, int argc, char **argv, const char *const *valued,
                    const char **const *slots, size_t nvalued, int *json, const char **words,
                    size_t max_words, void (*usage)(FILE *))
{
    size_t nwords = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        size_t v = 0;
        while (v < nvalued && strcmp(a, valued[v])) v++;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return EX_OK;
        } else if (v < nvalued) {
            if (i + 1 >= argc) return cli_usage_error(cmd, "%s needs a value", a);
            *slots[v] = argv[++i];
        } else if (!strcmp(a, "--json")) {
            *json = 1;
        } else if (a[0] == '-') {
            const char *names[CLI_WORD_OPTIONS_MAX + 3];
            size_t n = 0;
            for (size_t k = 0; k < nvalued && k < CLI_WORD_OPTIONS_MAX; k++)
                names[n++] = valued[k] + 2;
            names[n++] = "json";
            names[n++] = "help";
            names[n] = NULL;
            return cli_unknown_option(cmd, a, names);
        } else if (nwords < max_words) {
            words[nwords++] = a;
        } else {
            return cli_usage_error(cmd, "unexpected argument '%s'", a);
        }
    }
    return -1;
}

int cli_unknown_option(const char *cmd, const char *arg, const char *const *names)
{
    const char *word = arg;
    while (*word == '-') word++;
    char name[SK_NEAREST_MAX_OCTETS + 1];
    size_t n = strcspn(word, "=");
    if (n > SK_NEAREST_MAX_OCTETS) n = SK_NEAREST_MAX_OCTETS;
    memcpy(name, word, n);
    name[n] = '\0';
    const char *near = cli_nearest(name, names);
    if (near) return cli_usage_error(cmd, "unknown option '%s' (did you mean '--%s'?)", arg, near);
    return cli_usage_error(cmd, "unknown option '%s'", arg);
}

/* Long option tables here are small; more names than this are not suggested. */
#define CLI_OPTIONS_MAX 128

int cli_unknown_long_option(const char *cmd, const char *arg, const struct option *opts)
{
    const char *names[CLI_OPTIONS_MAX + 1];
    size_t n = 0;
    for (; opts && opts[n].name && n < CLI_OPTIONS_MAX; n++) names[n] = opts[n].name;
    names[n] = NULL;
    return cli_unknown_option(cmd, arg, names);
}

int cli_getopt_error(const char *cmd, int opt, char **argv, const struct option *opts)
{
    if (opt == ':') return cli_usage_error(cmd, "option '%s' needs a value", argv[optind - 1]);
    return cli_unknown_long_option(cmd, argv[optind - 1], opts);
}

int cli_help_asked(int argc, char **argv)
{
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) return 1;
    return 0;
}

int cli_dkim_names(const char *cmd, const char *action, const char *domain, const char *selector)
{
    if (!domain || !*domain) return cli_usage_error(cmd, "%s needs --domain", action);
    if (!selector || !*selector) return cli_usage_error(cmd, "%s needs --selector", action);
    if (!sk_dkim_name_valid(domain))
        return cli_usage_error(cmd, "--domain '%s' is not a domain name", domain);
    if (!sk_dkim_name_valid(selector))
        return cli_usage_error(cmd,
                               "--selector '%s': letters, digits, '-' and '_' in labels "
                               "separated by dots",
                               selector);
    return EX_OK;
}

/* The data-dir key of a config file, or NULL when the file has none. */
static int config_data_dir(const char *cmd, const char *path, char **out)
{
    *out = NULL;
    sk_daemon_config *c = sk_daemon_config_new();
    if (!c) {
        cli_warn(cmd, "out of memory");
        return EX_OSERR;
    }
    /* Without the built-in default in the way, a key in the file is what
     * sets it. */
    sk_free(c->data_dir);
    c->data_dir = NULL;
    sk_error err;
    if (sk_daemon_config_load(c, path, &err)) {
        cli_warn(cmd, "--config %s", err.text);
        sk_daemon_config_free(c);
        return EX_CONFIG;
    }
    *out = c->data_dir;
    c->data_dir = NULL;
    sk_daemon_config_free(c);
    return EX_OK;
}

int cli_data_dir_resolve(const char *cmd, const char *flag, const char *config_path,
                         cli_data_dir *out)
{
    *out = (cli_data_dir){0};
    const char *env = getenv(CLI_DATA_DIR_ENV);
    char *from_config = NULL;
    if (!flag && config_path) {
        int rc = config_data_dir(cmd, config_path, &from_config);
        if (rc) return rc;
    }
    const char *path;
    if (flag) {
        path = flag;
        out->source = CLI_DATA_DIR_FLAG;
        snprintf(out->how, sizeof out->how, "from --data-dir");
    } else if (from_config) {
        path = from_config;
        out->source = CLI_DATA_DIR_CONFIG;
        snprintf(out->how, sizeof out->how, "from data-dir in %s", config_path);
    } else if (env) {
        /* Set but empty is a mistake, not a request for the default. */
        if (!*env) {
            cli_warn(cmd, "%s is set but empty; unset it or name a directory", CLI_DATA_DIR_ENV);
            return EX_CONFIG;
        }
        path = env;
        out->source = CLI_DATA_DIR_ENV_VAR;
        snprintf(out->how, sizeof out->how, "from %s%s%s%s", CLI_DATA_DIR_ENV,
                 config_path ? ", as " : "", config_path ? config_path : "",
                 config_path ? " has no data-dir" : "");
    } else {
        path = CLI_DATA_DIR_DEFAULT;
        out->source = CLI_DATA_DIR_BUILT_IN;
        snprintf(out->how, sizeof out->how, "the default%s%s%s; set --data-dir or %s",
                 config_path ? ", as " : "", config_path ? config_path : "",
                 config_path ? " has no data-dir" : "", CLI_DATA_DIR_ENV);
    }
    out->path = from_config ? from_config : sk_strdup(path);
    if (!out->path) {
        cli_warn(cmd, "out of memory");
        return EX_OSERR;
    }
    return EX_OK;
}

void cli_data_dir_clear(cli_data_dir *d)
{
    sk_free(d->path);
    d->path = NULL;
}

int cli_exit_code(const sk_error *e)
{
    switch (e->err) {
    case SK_OK:
        return EX_OK;
    case SK_ERR_INVAL:
    case SK_ERR_SYNTAX:
    case SK_ERR_TOO_LONG:
    case SK_ERR_NOT_FOUND:
        return EX_DATAERR;
    case SK_ERR_PERMFAIL:
        return EX_UNAVAILABLE;
    case SK_ERR_TEMPFAIL:
    case SK_ERR_CONNECT:
    case SK_ERR_TIMEOUT:
    case SK_ERR_CLOSED:
    case SK_ERR_DNS:
        return EX_TEMPFAIL;
    case SK_ERR_PROTOCOL:
    case SK_ERR_TLS:
    case SK_ERR_TLS_VERIFY:
    case SK_ERR_UNSUPPORTED:
        return EX_PROTOCOL;
    case SK_ERR_AUTH:
        return EX_NOPERM;
    case SK_ERR_CONFIG:
        return EX_CONFIG;
    case SK_ERR_IO:
    case SK_ERR_NOSPACE:
        return EX_IOERR;
    default:
        return EX_SOFTWARE;
    }
}

char *cli_read_file(const char *path, size_t *len)
{
    int fd = strcmp(path, "-") == 0 ? STDIN_FILENO : open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return NULL;
    sk_buf b = SK_BUF_INIT((size_t)1 << 31);
    sk_err e = sk_buf_read_fd(&b, fd, SK_BUF_READ_ALL);
    if (fd != STDIN_FILENO) close(fd);
    if (e) {
        sk_buf_free(&b);
        errno = e == SK_ERR_IO ? EIO : EFBIG;
        return NULL;
    }
    return sk_buf_detach(&b, len);
}

int cli_message_read(const char *cmd, const char *path, cli_message *m)
{
    m->raw = cli_read_file(path ? path : "-", &m->len);
    if (!m->raw) {
        cli_warn(cmd, "cannot read %s: %s", path && strcmp(path, "-") ? path : "standard input",
                 strerror(errno));
        return EX_NOINPUT;
    }
    m->lf = memchr(m->raw, '\n', m->len) && !memmem(m->raw, m->len, "\r\n", 2);
    return EX_OK;
}

sk_err cli_message_feed(const cli_message *m, cli_feed_fn fn, void *obj)
{
    char buf[CLI_MESSAGE_CHUNK_OCTETS * 2];
    size_t o = 0;
    for (size_t i = 0; i < m->len; i++) {
        if (m->lf && m->raw[i] == '\n') buf[o++] = '\r';
        buf[o++] = m->raw[i];
        if (o >= CLI_MESSAGE_CHUNK_OCTETS) {
            sk_err e = fn(obj, buf, o);
            if (e) return e;
            o = 0;
        }
    }
    return o ? fn(obj, buf, o) : SK_OK;
}

static sk_err append(void *obj, const void *p, size_t n)
{
    return sk_buf_append(obj, p, n);
}

sk_err cli_message_head(const cli_message *m, sk_buf *out)
{
    /* The empty line: two line ends in a row, in the file's own form. */
    const char *eol = m->lf ? "\n" : "\r\n";
    size_t el = strlen(eol);
    char sep[4];
    memcpy(sep, eol, el);
    memcpy(sep + el, eol, el);
    const char *end = memmem(m->raw, m->len, sep, 2 * el);
    cli_message head = *m;
    head.len = end ? (size_t)(end - m->raw) + el : m->len;
    return cli_message_feed(&head, append, out);
}

void cli_message_put_fields(const cli_message *m, const char *fields, size_t len, FILE *f)
{
    for (size_t i = 0; i < len; i++) {
        if (m->lf && fields[i] == '\r') continue;
        fputc(fields[i], f);
    }
}

char *cli_read_first_line(const char *path)
{
    size_t len;
    char *s = cli_read_file(path, &len);
    if (!s) return NULL;
    s[strcspn(s, "\r\n")] = '\0';
    return s;
}

static void json_out_of_memory(void)
{
    fputs("smtpkit: out of memory\n", stderr);
    exit(EX_OSERR);
}

json_t *cli_jstrn(const char *s, size_t n)
{
    /* jansson escapes (RFC 8259 7); it takes only UTF-8, so text that is
     * not (a peer's bytes) keeps \xHH escapes of the log's escaping. */
    json_t *v = json_stringn(s, n);
    if (!v) {
        sk_buf esc = SK_BUF_INIT(4 * n + 1);
        if (sk_log_escape(&esc, s, n) == SK_OK) v = json_stringn(sk_buf_cstr(&esc), esc.len);
        sk_buf_free(&esc);
    }
    if (!v) json_out_of_memory();
    return v;
}

json_t *cli_jstr(const char *s)
{
    return s ? cli_jstrn(s, strlen(s)) : cli_jnull();
}

json_t *cli_jnull(void)
{
    return json_null();
}

json_t *cli_jint(long long n)
{
    json_t *v = json_integer((json_int_t)n);
    if (!v) json_out_of_memory();
    return v;
}

json_t *cli_jbool(int b)
{
    return json_boolean(b);
}

json_t *cli_jobj(void)
{
    json_t *v = json_object();
    if (!v) json_out_of_memory();
    return v;
}

json_t *cli_jarr(void)
{
    json_t *v = json_array();
    if (!v) json_out_of_memory();
    return v;
}

void cli_jset(json_t *obj, const char *key, json_t *v)
{
    if (json_object_set_new(obj, key, v)) json_out_of_memory();
}

void cli_jpush(json_t *arr, json_t *v)
{
    if (json_array_append_new(arr, v)) json_out_of_memory();
}

void cli_json_print(json_t *v)
{
    if (json_dumpf(v, stdout, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_ENCODE_ANY) != 0)
        json_out_of_memory();
    putchar('\n');
    json_decref(v);
}
