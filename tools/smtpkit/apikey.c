/* smtpkit apikey: make, list and revoke the keys of the HTTP API
 * (DATA-DIR/apikeys; docs/http-api.md). */
#include "cli.h"

#include <jansson.h>
#include <string.h>
#include <sys/stat.h>

static void usage(FILE *f)
{
    fprintf(f,
            "usage: smtpkit apikey [--data-dir DIR | --config FILE] create --name NAME\n"
            "                      --scope send|read|admin [--json]\n"
            "       smtpkit apikey [--data-dir DIR | --config FILE] list [--json]\n"
            "       smtpkit apikey [--data-dir DIR | --config FILE] revoke ID|NAME [--json]\n"
            "\n"
            "create  make a key and print it, once: only its hash is kept\n"
            "list    the keys made, their scopes and whether they are revoked\n"
            "revoke  refuse the key from now on (by id, or every key of that name)\n"
            "\n"
            "--name NAME     what the key is for (1 to %d characters)\n"
            "--scope S       send: POST /v1/messages; read: the GET routes;\n"
            "                admin: everything\n"
            "--data-dir DIR  the daemon's data directory (holds apikeys)\n"
            "--config FILE   the daemon's config file: its data-dir is used\n"
            "--json          JSON output\n"
            "-h, --help      this text\n"
            "The data directory is --data-dir, else data-dir in --config FILE, else\n"
            "$%s, else %s (where 'smtpkit serve' keeps it by default).\n"
            "A running 'smtpkit serve --http' sees a new or revoked key at its next request.\n"
            "Exit: 0 ok, 64 bad arguments, 66 no such directory, 69 revoke: no such key,\n"
            "73 the key file cannot be written, 78 a bad --config file.\n",
            SK_APIKEY_NAME_MAX_OCTETS, CLI_DATA_DIR_ENV, CLI_DATA_DIR_DEFAULT);
}

static int fail(const sk_error *err)
{
    cli_warn("apikey", "%s", err->text);
    if (err->err == SK_ERR_NOT_FOUND) return EX_UNAVAILABLE;
    if (err->err == SK_ERR_IO || err->err == SK_ERR_NOSPACE) return EX_CANTCREAT;
    return cli_exit_code(err);
}

static int print_json(json_t *v)
{
    if (!v || json_dumpf(v, stdout, JSON_COMPACT) != 0) {
        json_decref(v);
        cli_warn("apikey", "out of memory");
        return EX_OSERR;
    }
    putchar('\n');
    json_decref(v);
    return EX_OK;
}

static json_t *key_json(const sk_apikey *k)
{
    char created[32], revoked[32];
    sk_time_rfc3339(k->created_s, created);
    sk_time_rfc3339(k->revoked_s, revoked);
    return json_pack("{s:s,s:s,s:s,s:s,s:o}", "id", k->id, "name", k->name, "scope",
                     sk_apikey_scope_name(k->scope), "created", created, "revoked",
                     k->revoked_s ? json_string(revoked) : json_null());
}

static int do_create(const char *dir, const char *name, const char *scope, int json)
{
    int s = sk_apikey_scope_parse(scope);
    char key[SK_APIKEY_KEY_SIZE], id[SK_APIKEY_ID_SIZE];
    sk_error err = {0};
    if (sk_apikey_create(dir, name, (sk_apikey_scope)s, key, id, &err)) {
        if (err.err == SK_ERR_INVAL) return cli_usage_error("apikey", "--name: %s", err.text);
        return fail(&err);
    }
    int rc = EX_OK;
    if (json)
        rc = print_json(
            json_pack("{s:s,s:s,s:s,s:s}", "id", id, "name", name, "scope", scope, "key", key));
    else
        printf("id %s name %s scope %s\nkey %s\n(shown only now: keep it; only its hash is "
               "stored)\n",
               id, name, scope, key);
    memset(key, 0, sizeof key);
    return rc;
}

static int do_list(const char *dir, int json)
{
    sk_apikey *keys = NULL;
    size_t n = 0;
    sk_error err = {0};
    if (sk_apikey_list(dir, &keys, &n, &err)) return fail(&err);
    int rc = EX_OK;
    if (json) {
        json_t *arr = json_array();
        for (size_t i = 0; arr && i < n; i++) json_array_append_new(arr, key_json(&keys[i]));
        rc = print_json(arr);
    } else {
        printf("%-12s  %-5s  %-20s  %-20s  %s\n", "ID", "SCOPE", "CREATED", "REVOKED", "NAME");
        for (size_t i = 0; i < n; i++) {
            char created[32], revoked[32] = "-";
            sk_time_rfc3339(keys[i].created_s, created);
            if (keys[i].revoked_s) sk_time_rfc3339(keys[i].revoked_s, revoked);
            printf("%-12s  %-5s  %-20s  %-20s  %s\n", keys[i].id,
                   sk_apikey_scope_name(keys[i].scope), created, revoked, keys[i].name);
        }
    }
    sk_apikey_list_free(keys, n);
    return rc;
}

static int do_revoke(const char *dir, const char *which, int json)
{
    sk_error err = {0};
    if (sk_apikey_revoke(dir, which, &err)) return fail(&err);
    if (json) return print_json(json_pack("{s:s,s:b}", "key", which, "revoked", 1));
    printf("revoked %s\n", which);
    return EX_OK;
}

int cmd_apikey(int argc, char **argv)
{
    const char *data_dir = NULL, *config = NULL, *name = NULL, *scope = NULL;
    const char *words[2] = {NULL, NULL};
    int json = 0;
    static const char *const valued[] = {"--data-dir", "--config", "--name", "--scope"};
    const char **slots[] = {&data_dir, &config, &name, &scope};
    int parsed = cli_parse_words("apikey", argc, argv, valued, slots, 4, &json, words, 2, usage);
    if (parsed >= 0) return parsed;
    if ((data_dir && !*data_dir) || (config && !*config))
        return cli_usage_error("apikey", "%s needs a value",
                               data_dir && !*data_dir ? "--data-dir" : "--config");
    if (!words[0])
        return cli_usage_error("apikey", "a command is required: create, list or revoke");
    const char *cmd = words[0], *arg = words[1];
    bool create = !strcmp(cmd, "create"), list = !strcmp(cmd, "list"),
         revoke = !strcmp(cmd, "revoke");
    if (!create && !list && !revoke)
        return cli_usage_error("apikey", "unknown command '%s' (create, list or revoke)", cmd);
    if (arg && !revoke) return cli_usage_error("apikey", "unexpected argument '%s'", arg);
    if (revoke && !arg) return cli_usage_error("apikey", "revoke needs a key id or name");
    if (!create && (name || scope))
        return cli_usage_error("apikey", "%s only goes with create", name ? "--name" : "--scope");
    if (create && !name) return cli_usage_error("apikey", "create needs --name");
    if (create && !scope) return cli_usage_error("apikey", "create needs --scope send|read|admin");
    if (create && sk_apikey_scope_parse(scope) < 0)
        return cli_usage_error("apikey", "--scope '%s': expected send, read or admin", scope);
    cli_data_dir dd;
    int rc = cli_data_dir_resolve("apikey", data_dir, config, &dd);
    if (rc != EX_OK) return rc;
    struct stat sb;
    if (stat(dd.path, &sb) || !S_ISDIR(sb.st_mode)) {
        cli_warn("apikey", "no such directory: %s (%s)", dd.path, dd.how);
        rc = EX_NOINPUT;
    } else if (create) {
        rc = do_create(dd.path, name, scope, json);
    } else if (list) {
        rc = do_list(dd.path, json);
    } else {
        rc = do_revoke(dd.path, arg, json);
    }
    cli_data_dir_clear(&dd);
    return rc;
}
