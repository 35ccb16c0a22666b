/* smtpkit stats: what happened to mail in the last hour and day, by outcome
 * and by destination domain, from DATA-DIR/track.db (docs/tracking.md). */
#include "cli.h"

#include <limits.h>
#include <string.h>

static void usage(FILE *f)
{
    fprintf(f,
            "usage: smtpkit stats [--data-dir DIR | --config FILE] [--json]\n"
            "\n"
            "Counts the tracked events of the last hour and the last day, by outcome\n"
            "(received, queued, deferred, delivered, bounced, expired, suppressed,\n"
            "complained) and by recipient domain (the %d busiest, then one row for\n"
            "the other domains and one for events without a recipient, such as\n"
            "received: the rows add up to the total).\n"
            "\n"
            "--data-dir DIR  the daemon's data directory (holds track.db)\n"
            "--config FILE   the daemon's config file: its data-dir is used\n"
            "--json          one JSON object (docs/tracking.md)\n"
            "-h, --help      this text\n"
            "The data directory is --data-dir, else data-dir in --config FILE, else\n"
            "$%s, else %s (where 'smtpkit serve' keeps it by default).\n"
            "\n"
            "Exit: 0 ok, 64 bad arguments, 66 no tracking store in DIR,\n"
            "74 the store cannot be read, 78 the store is from a newer version, or a\n"
            "bad --config file.\n",
            SK_TRACK_STATS_DOMAINS_MAX, CLI_DATA_DIR_ENV, CLI_DATA_DIR_DEFAULT);
}

static void json_counts(const uint64_t *by_kind)
{
    putchar('{');
    for (int k = 0; k < SK_TRACK__COUNT; k++) {
        if (k) putchar(',');
        cli_json_string(stdout, sk_track_kind_name((sk_track_kind)k));
        printf(":%llu", (unsigned long long)by_kind[k]);
    }
    putchar('}');
}

static void json_window(const sk_track_window *w)
{
    char since[32];
    sk_time_rfc3339(w->since_ms / 1000, since);
    printf("{\"since\":");
    cli_json_string(stdout, since);
    printf(",\"total\":%llu,\"by_outcome\":", (unsigned long long)w->total);
    json_counts(w->by_kind);
    printf(",\"by_domain\":[");
    for (size_t i = 0; i < w->ndomains; i++) {
        const sk_track_domain_count *d = &w->domains[i];
        printf("%s{\"domain\":", i ? "," : "");
        cli_json_string(stdout, d->domain);
        printf(",\"total\":%llu,\"by_outcome\":", (unsigned long long)d->total);
        json_counts(d->by_kind);
        putchar('}');
    }
    printf("],\"domains_omitted\":%zu", w->domains_omitted);
    const struct {
        const char *key;
        const sk_track_domain_count *c;
    } rest[] = {{"other_domains", &w->other_domains}, {"no_recipient", &w->no_recipient}};
    for (size_t i = 0; i < sizeof rest / sizeof rest[0]; i++) {
        printf(",\"%s\":{\"total\":%llu,\"by_outcome\":", rest[i].key,
               (unsigned long long)rest[i].c->total);
        json_counts(rest[i].c->by_kind);
        putchar('}');
    }
    putchar('}');
}

static void print_json(const sk_track_stats *s)
{
    char now[32];
    sk_time_rfc3339(s->now_ms / 1000, now);
    printf("{\"time\":");
    cli_json_string(stdout, now);
    printf(",\"last_hour\":");
    json_window(&s->hour);
    printf(",\"last_day\":");
    json_window(&s->day);
    printf("}\n");
}

/* Every outcome is a column, so that each row's columns add up to its
 * total and the rows to the window's. */
static void print_row(const char *name, uint64_t total, const uint64_t *by_kind)
{
    printf("%-28s %8llu", name, (unsigned long long)total);
    for (int k = 0; k < SK_TRACK__COUNT; k++) printf(" %10llu", (unsigned long long)by_kind[k]);
    putchar('\n');
}

static void print_domains(const char *title, const sk_track_window *w)
{
    printf("\n%s\n%-28s %8s", title, "DOMAIN", "TOTAL");
    for (int k = 0; k < SK_TRACK__COUNT; k++) printf(" %10s", sk_track_kind_name((sk_track_kind)k));
    putchar('\n');
    for (size_t i = 0; i < w->ndomains; i++)
        print_row(w->domains[i].domain, w->domains[i].total, w->domains[i].by_kind);
    if (w->domains_omitted) {
        char name[64];
        snprintf(name, sizeof name, "(%zu other domains)", w->domains_omitted);
        print_row(name, w->other_domains.total, w->other_domains.by_kind);
    }
    /* received, and complaints without a recipient, have no domain. */
    if (w->no_recipient.total)
        print_row("(no recipient)", w->no_recipient.total, w->no_recipient.by_kind);
    print_row("total", w->total, w->by_kind);
}

static void print_table(const sk_track_stats *s)
{
    char now[32];
    sk_time_rfc3339(s->now_ms / 1000, now);
    printf("Events up to %s\n\n%-12s %10s %10s\n", now, "OUTCOME", "LAST HOUR", "LAST DAY");
    for (int k = 0; k < SK_TRACK__COUNT; k++)
        printf("%-12s %10llu %10llu\n", sk_track_kind_name((sk_track_kind)k),
               (unsigned long long)s->hour.by_kind[k], (unsigned long long)s->day.by_kind[k]);
    printf("%-12s %10llu %10llu\n", "total", (unsigned long long)s->hour.total,
           (unsigned long long)s->day.total);
    print_domains("By destination, last hour:", &s->hour);
    print_domains("By destination, last day:", &s->day);
}

static int show(const cli_data_dir *dd, int json)
{
    char path[PATH_MAX];
    if ((size_t)snprintf(path, sizeof path, "%s/%s", dd->path, SK_TRACK_DB_NAME) >= sizeof path)
        return cli_usage_error("stats", "data directory '%s' is too long", dd->path);
    sk_error err;
    sk_track *tr = sk_track_open(path, 1, &err);
    if (!tr) {
        if (err.err == SK_ERR_NOT_FOUND) {
            cli_warn("stats", "no tracking store in %s (%s): nothing was tracked there (%s)",
                     dd->path, dd->how, err.text);
            return EX_NOINPUT;
        }
        cli_warn("stats", "%s", err.text);
        return cli_exit_code(&err);
    }
    sk_track_stats *s;
    if (sk_track_stats_query(tr, 0, &s, &err)) {
        cli_warn("stats", "%s", err.text);
        sk_track_free(tr);
        return cli_exit_code(&err);
    }
    if (json)
        print_json(s);
    else
        print_table(s);
    sk_track_stats_free(s);
    sk_track_free(tr);
    return EX_OK;
}

int cmd_stats(int argc, char **argv)
{
    const char *data_dir = NULL, *config = NULL;
    int json = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return EX_OK;
        } else if (!strcmp(a, "--data-dir") || !strcmp(a, "--config")) {
            if (i + 1 >= argc || !*argv[i + 1])
                return cli_usage_error("stats", "%s needs a %s", a,
                                       a[2] == 'd' ? "directory" : "file");
            *(a[2] == 'd' ? &data_dir : &config) = argv[++i];
        } else if (!strcmp(a, "--json")) {
            json = 1;
        } else if (a[0] == '-') {
            return cli_unknown_option(
                "stats", a, (const char *const[]){"data-dir", "config", "json", "help", NULL});
        } else {
            return cli_usage_error("stats", "unexpected argument '%s'", a);
        }
    }
    cli_data_dir dd;
    int rc = cli_data_dir_resolve("stats", data_dir, config, &dd);
    if (rc == EX_OK) rc = show(&dd, json);
    cli_data_dir_clear(&dd);
    return rc;
}
