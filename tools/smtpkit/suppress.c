/* smtpkit suppress: list, add or remove recipients on the suppression list
 * in DATA-DIR/track.db (docs/tracking.md). */
#include "cli.h"

#include <limits.h>
#include <string.h>
#include <sys/stat.h>

static void usage(FILE *f)
{
    fprintf(f,
            "usage: smtpkit suppress [--data-dir DIR | --config FILE] list [--json]\n"
            "       smtpkit suppress [--data-dir DIR | --config FILE] add ADDR [--reason R]\n"
            "                        [--for DURATION] [--json]\n"
            "       smtpkit suppress [--data-dir DIR | --config FILE] remove ADDR [--json]\n"
            "\n"
            "list    the recipients mail is not sent to now, and why (for a bounce: the\n"
            "        queue ID of the message that bounced, the detector that read\n"
            "        the bounce and the evidence)\n"
            "add     suppress ADDR; for ever unless --for (e.g. 30d, 12h)\n"
            "remove  send to ADDR again\n"
            "\n"
            "--data-dir DIR  the daemon's data directory (holds track.db)\n"
            "--config FILE   the daemon's config file: its data-dir is used\n"
            "--json          JSON output (docs/tracking.md)\n"
            "-h, --help      this text\n"
            "The data directory is --data-dir, else data-dir in --config FILE, else\n"
            "$%s, else %s (where 'smtpkit serve' keeps it by default).\n"
            "\n"
            "Addresses match with the domain in any case and the local part exactly.\n"
            "Exit: 0 ok, 64 bad arguments, 65 ADDR is not an address, 66 no such\n"
            "directory, 69 remove: ADDR was not suppressed, 74 store error, 78 a bad\n"
            "--config file.\n",
            CLI_DATA_DIR_ENV, CLI_DATA_DIR_DEFAULT);
}

static json_t *json_entry(const sk_suppression *s)
{
    char t[32];
    json_t *o = cli_jobj();
    cli_jset(o, "address", cli_jstr(s->address));
    cli_jset(o, "reason", cli_jstr(s->reason));
    sk_time_rfc3339(s->created_s, t);
    cli_jset(o, "created", cli_jstr(t));
    if (s->until_s) sk_time_rfc3339(s->until_s, t);
    cli_jset(o, "until", s->until_s ? cli_jstr(t) : cli_jnull());
    /* The bounce that caused it (null for manual entries, complaints). */
    cli_jset(o, "queue_id", cli_jstr(s->queue_id));
    cli_jset(o, "bounce", cli_jstr(s->bounce));
    cli_jset(o, "detector", cli_jstr(s->detector));
    cli_jset(o, "evidence", cli_jstr(s->evidence));
    return o;
}

static void print_entry(const sk_suppression *s)
{
    char created[32], until[32];
    sk_time_rfc3339(s->created_s, created);
    if (s->until_s)
        sk_time_rfc3339(s->until_s, until);
    else
        strcpy(until, "never");
    printf("%-40s  %-20s  %-20s  %s\n", s->address, created, until, s->reason);
    if (s->queue_id)
        printf("%-40s  caused by %s (detector %s, evidence %s)\n", "", s->queue_id,
               s->detector ? s->detector : "-", s->evidence ? s->evidence : "-");
}

static int fail(const sk_error *err)
{
    cli_warn("suppress", "%s", err->text);
    return cli_exit_code(err);
}

static int do_list(const char *path, int json)
{
    sk_error err;
    sk_suppression *list = NULL;
    size_t n = 0;
    sk_track *tr = sk_track_open(path, 1, &err);
    if (!tr && err.err != SK_ERR_NOT_FOUND) return fail(&err);
    /* No store yet: nothing is suppressed. */
    if (tr && sk_suppress_list(tr, 0, &list, &n, &err)) {
        sk_track_free(tr);
        return fail(&err);
    }
    if (json) {
        json_t *a = cli_jarr();
        for (size_t i = 0; i < n; i++) cli_jpush(a, json_entry(&list[i]));
        cli_json_print(a);
    } else {
        printf("%-40s  %-20s  %-20s  %s\n", "ADDRESS", "SINCE", "UNTIL", "REASON");
        for (size_t i = 0; i < n; i++) print_entry(&list[i]);
        printf("%zu address%s suppressed\n", n, n == 1 ? "" : "es");
    }
    sk_suppress_list_free(list, n);
    sk_track_free(tr);
    return EX_OK;
}

static int do_add(const char *path, const char *addr, const char *reason, uint64_t for_ms, int json)
{
    sk_error err;
    sk_track *tr = sk_track_open(path, 0, &err);
    if (!tr) return fail(&err);
    int64_t now = sk_track_now_ms(tr) / 1000;
    int64_t until = for_ms ? now + (int64_t)((for_ms + 999) / 1000) : 0;
    sk_suppression s = {0};
    int rc = EX_OK;
    if (sk_suppress_add(tr, addr, reason, now, until, &err) ||
        sk_suppress_check(tr, addr, now, &s, &err)) {
        rc = fail(&err);
    } else if (json) {
        cli_json_print(json_entry(&s));
    } else {
        char t[32];
        if (until) sk_time_rfc3339(until, t);
        printf("suppressed %s %s%s (%s)\n", s.address, until ? "until " : "for ever",
               until ? t : "", s.reason);
    }
    sk_suppression_clear(&s);
    sk_track_free(tr);
    return rc;
}

static int do_remove(const char *path, const char *data_dir, const char *addr, int json)
{
    sk_error err;
    sk_buf norm = SK_BUF_INIT(SK_SMTP_PATH_MAX_OCTETS);
    if (sk_suppress_normalize(addr, &norm)) {
        sk_buf_free(&norm);
        cli_warn("suppress", "not an address (user@domain): '%s'", addr);
        return EX_DATAERR;
    }
    sk_track *tr = sk_track_open(path, 0, &err);
    int rc = EX_OK;
    if (!tr) {
        rc = fail(&err);
    } else if (sk_suppress_remove(tr, addr, &err)) {
        if (err.err == SK_ERR_NOT_FOUND) {
            cli_warn("suppress", "%s is not on the suppression list in %s", sk_buf_cstr(&norm),
                     data_dir);
            rc = EX_UNAVAILABLE;
        } else {
            rc = fail(&err);
        }
    } else if (json) {
        json_t *o = cli_jobj();
        cli_jset(o, "address", cli_jstr(sk_buf_cstr(&norm)));
        cli_jset(o, "removed", cli_jbool(1));
        cli_json_print(o);
    } else {
        printf("removed %s\n", sk_buf_cstr(&norm));
    }
    sk_buf_free(&norm);
    sk_track_free(tr);
    return rc;
}

static int run(const cli_data_dir *dd, const char *cmd, const char *addr, const char *reason,
               uint64_t for_ms, int json)
{
    struct stat sb;
    if (stat(dd->path, &sb) || !S_ISDIR(sb.st_mode)) {
        cli_warn("suppress", "no such directory: %s (%s)", dd->path, dd->how);
        return EX_NOINPUT;
    }
    char path[PATH_MAX];
    if ((size_t)snprintf(path, sizeof path, "%s/%s", dd->path, SK_TRACK_DB_NAME) >= sizeof path)
        return cli_usage_error("suppress", "data directory '%s' is too long", dd->path);
    if (!strcmp(cmd, "list")) return do_list(path, json);
    if (!strcmp(cmd, "add")) {
        sk_buf norm = SK_BUF_INIT(SK_SMTP_PATH_MAX_OCTETS);
        sk_err e = sk_suppress_normalize(addr, &norm);
        sk_buf_free(&norm);
        if (e) {
            cli_warn("suppress", "not an address (user@domain): '%s'", addr);
            return EX_DATAERR;
        }
        return do_add(path, addr, reason, for_ms, json);
    }
    return do_remove(path, dd->path, addr, json);
}

int cmd_suppress(int argc, char **argv)
{
    const char *data_dir = NULL, *config = NULL, *reason = NULL, *for_arg = NULL;
    const char *words[2] = {NULL, NULL};
    int json = 0;
    /* The options that take a value, and where each goes. */
    static const char *const valued[] = {"--data-dir", "--config", "--reason", "--for"};
    const char **slots[] = {&data_dir, &config, &reason, &for_arg};
    int parsed = cli_parse_words("suppress", argc, argv, valued, slots, 4, &json, words, 2, usage);
    if (parsed >= 0) return parsed;
    if ((data_dir && !*data_dir) || (config && !*config))
        return cli_usage_error("suppress", "%s needs a value",
                               data_dir && !*data_dir ? "--data-dir" : "--config");
    if (!words[0]) return cli_usage_error("suppress", "a command is required: list, add or remove");
    const char *cmd = words[0], *addr = words[1];
    int is_list = !strcmp(cmd, "list"), is_add = !strcmp(cmd, "add");
    if (!is_list && !is_add && strcmp(cmd, "remove"))
        return cli_usage_error("suppress", "unknown command '%s' (list, add or remove)", cmd);
    if (is_list && addr) return cli_usage_error("suppress", "unexpected argument '%s'", addr);
    if (!is_list && !addr) return cli_usage_error("suppress", "%s needs an address", cmd);
    if (!is_add && (reason || for_arg))
        return cli_usage_error("suppress", "%s only goes with add", reason ? "--reason" : "--for");
    uint64_t for_ms = 0;
    if (for_arg && (sk_parse_duration_ms(for_arg, &for_ms) || for_ms == 0))
        return cli_usage_error("suppress", "--for '%s' is not a duration (e.g. 30d, 12h, 90m)",
                               for_arg);
    cli_data_dir dd;
    int rc = cli_data_dir_resolve("suppress", data_dir, config, &dd);
    if (rc == EX_OK) rc = run(&dd, cmd, addr, reason, for_ms, json);
    cli_data_dir_clear(&dd);
    return rc;
}
