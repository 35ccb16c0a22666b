/* smtpkit track: the delivery events of one message, found by queue ID or
 * Message-ID in DATA-DIR/track.db (docs/tracking.md). */
#include "cli.h"

#include <limits.h>
#include <string.h>
#include <strings.h>

static void usage(FILE *f)
{
    fprintf(f,
            "usage: smtpkit track [--data-dir DIR | --config FILE] ID [--json]\n"
            "\n"
            "ID is a queue ID (as in '250 2.0.0 Ok: queued as ID') or a Message-ID,\n"
            "with or without <>. Prints the message's events in time order: received,\n"
            "queued, deferred, delivered, bounced, expired, suppressed, complained;\n"
            "a local delivery names the Maildir file, a bounce or expiry the queue ID\n"
            "of the DSN sent back to the sender. Recipients suppressed because of\n"
            "this message's bounces are listed after the events, with the bounce\n"
            "and the evidence.\n"
            "\n"
            "--data-dir DIR  the daemon's data directory (holds track.db)\n"
            "--config FILE   the daemon's config file: its data-dir is used\n"
            "--json          one JSON object (docs/tracking.md)\n"
            "-h, --help      this text\n"
            "The data directory is --data-dir, else data-dir in --config FILE, else\n"
            "$%s, else %s (where 'smtpkit serve' keeps it by default).\n"
            "\n"
            "Exit: 0 found, 64 bad arguments, 66 no tracking store in DIR,\n"
            "69 no events for ID, 74 the store cannot be read, 78 the store is from a\n"
            "newer version, or a bad --config file.\n",
            CLI_DATA_DIR_ENV, CLI_DATA_DIR_DEFAULT);
}

static json_t *json_event(const sk_track_ev *ev)
{
    char when[32];
    sk_time_rfc3339(ev->time_ms / 1000, when);
    json_t *o = cli_jobj();
    cli_jset(o, "time", cli_jstr(when));
    cli_jset(o, "event", cli_jstr(sk_track_kind_name(ev->kind)));
    cli_jset(o, "recipient", cli_jstr(ev->recipient));
    cli_jset(o, "attempt", ev->attempt ? cli_jint(ev->attempt) : cli_jnull());
    cli_jset(o, "remote_host", cli_jstr(ev->remote_host));
    cli_jset(o, "reply", cli_jstr(ev->reply));
    cli_jset(o, "tls", cli_jstr(ev->tls));
    cli_jset(o, "class", cli_jstr(ev->cls));
    cli_jset(o, "dsn_id", cli_jstr(ev->dsn_id));
    cli_jset(o, "auth", cli_jstr(ev->auth));
    return o;
}

/* The suppressions this message's bounces caused (still in force): the
 * recipients of its bounced events whose entry names its queue ID. */
typedef struct caused {
    sk_suppression *e;
    size_t n;
} caused;

static void caused_by(sk_track *tr, const sk_track_result *r, caused *out)
{
    out->e = NULL;
    out->n = 0;
    if (!r->id) return;
    for (size_t i = 0; i < r->nevents; i++) {
        const sk_track_ev *ev = &r->events[i];
        if (ev->kind != SK_TRACK_BOUNCED || !ev->recipient) continue;
        int seen = 0;
        for (size_t k = 0; k < out->n && !seen; k++)
            seen = !strcasecmp(out->e[k].address, ev->recipient);
        sk_suppression s;
        sk_error err;
        if (seen || sk_suppress_check(tr, ev->recipient, 0, &s, &err)) continue;
        sk_suppression *grown = sk_realloc(out->e, (out->n + 1) * sizeof *grown);
        if (!s.queue_id || strcmp(s.queue_id, r->id) || !grown) {
            if (grown) out->e = grown;
            sk_suppression_clear(&s);
            continue;
        }
        out->e = grown;
        out->e[out->n++] = s;
    }
}

static json_t *json_caused(const caused *c)
{
    json_t *a = cli_jarr();
    for (size_t i = 0; i < c->n; i++) {
        const sk_suppression *s = &c->e[i];
        char t[32];
        json_t *o = cli_jobj();
        cli_jset(o, "address", cli_jstr(s->address));
        cli_jset(o, "reason", cli_jstr(s->reason));
        if (s->until_s) sk_time_rfc3339(s->until_s, t);
        cli_jset(o, "until", s->until_s ? cli_jstr(t) : cli_jnull());
        cli_jset(o, "bounce", cli_jstr(s->bounce));
        cli_jset(o, "detector", cli_jstr(s->detector));
        cli_jset(o, "evidence", cli_jstr(s->evidence));
        cli_jpush(a, o);
    }
    return a;
}

static void print_caused(const caused *c)
{
    if (c->n) printf("\nSuppressed because of this message's bounces:\n");
    for (size_t i = 0; i < c->n; i++) {
        const sk_suppression *s = &c->e[i];
        char t[32] = "never";
        if (s->until_s) sk_time_rfc3339(s->until_s, t);
        printf("  %s until %s (%s; detector %s, evidence %s)\n", s->address, t, s->reason,
               s->detector ? s->detector : "-", s->evidence ? s->evidence : "-");
    }
}

static void print_json(const sk_track_result *r, const caused *c)
{
    json_t *o = cli_jobj();
    cli_jset(o, "id", cli_jstr(r->id));
    cli_jset(o, "message_id", cli_jstr(r->message_id));
    json_t *evs = cli_jarr();
    for (size_t i = 0; i < r->nevents; i++) cli_jpush(evs, json_event(&r->events[i]));
    cli_jset(o, "events", evs);
    cli_jset(o, "suppressions", json_caused(c));
    cli_json_print(o);
}

static void print_table(const sk_track_result *r, const caused *c)
{
    printf("Queue ID:   %s\n", r->id ? r->id : "-");
    if (r->message_id)
        printf("Message-ID: <%s>\n", r->message_id);
    else
        printf("Message-ID: -\n");
    printf("\n%-20s  %-10s  %7s  %-30s  %s\n", "TIME", "EVENT", "ATTEMPT", "RECIPIENT", "DETAIL");
    for (size_t i = 0; i < r->nevents; i++) {
        const sk_track_ev *ev = &r->events[i];
        char when[32], attempt[16];
        sk_time_rfc3339(ev->time_ms / 1000, when);
        if (ev->attempt)
            snprintf(attempt, sizeof attempt, "%u", ev->attempt);
        else
            strcpy(attempt, "-");
        printf("%-20s  %-10s  %7s  %-30s  ", when, sk_track_kind_name(ev->kind), attempt,
               ev->recipient ? ev->recipient : "-");
        /* remote_host is the Maildir file of a local delivery. */
        const char *parts[] = {ev->remote_host, ev->reply, ev->tls, ev->cls, ev->dsn_id, ev->auth};
        const char *labels[] = {"", "", "", "", "DSN ", ""};
        int shown = 0;
        for (size_t j = 0; j < sizeof parts / sizeof parts[0]; j++) {
            if (!parts[j]) continue;
            /* A multi-line reply stays on one row. */
            printf("%s%s", shown++ ? "; " : "", labels[j]);
            for (const char *p = parts[j]; *p; p++) putchar(*p == '\n' || *p == '\r' ? ' ' : *p);
        }
        putchar('\n');
    }
    print_caused(c);
}

static int show(const cli_data_dir *dd, const char *id, int json)
{
    char path[PATH_MAX];
    if ((size_t)snprintf(path, sizeof path, "%s/%s", dd->path, SK_TRACK_DB_NAME) >= sizeof path)
        return cli_usage_error("track", "data directory '%s' is too long", dd->path);
    sk_error err;
    sk_track *tr = sk_track_open(path, 1, &err);
    if (!tr) {
        if (err.err == SK_ERR_NOT_FOUND) {
            cli_warn("track", "no tracking store in %s (%s): nothing was tracked there (%s)",
                     dd->path, dd->how, err.text);
            return EX_NOINPUT;
        }
        cli_warn("track", "%s", err.text);
        return cli_exit_code(&err);
    }
    sk_track_result *r;
    if (sk_track_query(tr, id, &r, &err)) {
        sk_track_free(tr);
        if (err.err == SK_ERR_NOT_FOUND) {
            cli_warn("track", "no events for '%s' in %s: not a known queue ID or Message-ID", id,
                     dd->path);
            return EX_UNAVAILABLE;
        }
        if (err.err == SK_ERR_INVAL) return cli_usage_error("track", "bad ID '%s'", id);
        cli_warn("track", "%s", err.text);
        return cli_exit_code(&err);
    }
    if (r->other_ids)
        cli_warn("track", "%zu other queue ID%s carry this Message-ID; showing the latest, %s",
                 r->other_ids, r->other_ids == 1 ? "" : "s", r->id);
    caused c;
    caused_by(tr, r, &c);
    if (json)
        print_json(r, &c);
    else
        print_table(r, &c);
    sk_suppress_list_free(c.e, c.n);
    sk_track_result_free(r);
    sk_track_free(tr);
    return EX_OK;
}

int cmd_track(int argc, char **argv)
{
    const char *data_dir = NULL, *config = NULL, *id = NULL;
    int json = 0, opts_done = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!opts_done && (!strcmp(a, "--help") || !strcmp(a, "-h"))) {
            usage(stdout);
            return EX_OK;
        } else if (!opts_done && (!strcmp(a, "--data-dir") || !strcmp(a, "--config"))) {
            if (i + 1 >= argc || !*argv[i + 1])
                return cli_usage_error("track", "%s needs a %s", a,
                                       a[2] == 'd' ? "directory" : "file");
            *(a[2] == 'd' ? &data_dir : &config) = argv[++i];
        } else if (!opts_done && !strcmp(a, "--json")) {
            json = 1;
        } else if (!opts_done && !strcmp(a, "--")) {
            opts_done = 1;
        } else if (!opts_done && a[0] == '-' && a[1]) {
            return cli_unknown_option(
                "track", a, (const char *const[]){"data-dir", "config", "json", "help", NULL});
        } else if (id) {
            return cli_usage_error("track", "unexpected argument '%s' (one ID at a time)", a);
        } else {
            id = a;
        }
    }
    if (!id || !*id) return cli_usage_error("track", "an ID (queue ID or Message-ID) is required");
    cli_data_dir dd;
    int rc = cli_data_dir_resolve("track", data_dir, config, &dd);
    if (rc == EX_OK) rc = show(&dd, id, json);
    cli_data_dir_clear(&dd);
    return rc;
}
