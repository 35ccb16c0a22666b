/* smtpkit stats: what happened to mail in the last hour and day, by outcome
 * and by destination domain, from DATA-DIR/track.db (docs/tracking.md). */
#include "cli.h"

#include <limits.h>
#include <string.h>

static void usage(FILE *f)
{
    fprintf(f,
            "usage: smtpkit stats [--data-dir DIR | --config FILE] [--json | --metrics]\n"
            "\n"
            "Counts the tracked events of the last hour and the last day, by outcome\n"
            "(received, queued, deferred, delivered, bounced, expired, suppressed,\n"
            "complained) and by recipient domain (the %d busiest, then one row for\n"
            "the other domains and one for events without a recipient, such as\n"
            "received: the rows add up to the total); then each webhook endpoint's\n"
            "state: events not sent yet, sent, failed attempts, given up, and since\n"
            "when it fails (docs/webhooks.md).\n"
            "\n"
            "--data-dir DIR  the daemon's data directory (holds track.db)\n"
            "--config FILE   the daemon's config file: its data-dir is used\n"
            "--json          one JSON object (docs/tracking.md)\n"
            "--metrics       instead: the running daemon's metrics in the Prometheus\n"
            "                text format, through its control socket (docs/metrics.md)\n"
            "-h, --help      this text\n"
            "The data directory is --data-dir, else data-dir in --config FILE, else\n"
            "$%s, else %s (where 'smtpkit serve' keeps it by default).\n"
            "\n"
            "Exit: 0 ok, 64 bad arguments, 66 no tracking store in DIR,\n"
            "74 the store cannot be read, 78 the store is from a newer version, or a\n"
            "bad --config file; with --metrics, 69 when no daemon runs on DIR.\n",
            SK_TRACK_STATS_DOMAINS_MAX, CLI_DATA_DIR_ENV, CLI_DATA_DIR_DEFAULT);
}

static json_t *json_counts(const uint64_t *by_kind)
{
    json_t *o = cli_jobj();
    for (int k = 0; k < SK_TRACK__COUNT; k++)
        cli_jset(o, sk_track_kind_name((sk_track_kind)k), cli_jint((long long)by_kind[k]));
    return o;
}

static json_t *json_count(const sk_track_domain_count *c, bool named)
{
    json_t *o = cli_jobj();
    if (named) cli_jset(o, "domain", cli_jstr(c->domain));
    cli_jset(o, "total", cli_jint((long long)c->total));
    cli_jset(o, "by_outcome", json_counts(c->by_kind));
    return o;
}

static json_t *json_window(const sk_track_window *w)
{
    char since[32];
    sk_time_rfc3339(w->since_ms / 1000, since);
    json_t *o = cli_jobj();
    cli_jset(o, "since", cli_jstr(since));
    cli_jset(o, "total", cli_jint((long long)w->total));
    cli_jset(o, "by_outcome", json_counts(w->by_kind));
    json_t *doms = cli_jarr();
    for (size_t i = 0; i < w->ndomains; i++) cli_jpush(doms, json_count(&w->domains[i], true));
    cli_jset(o, "by_domain", doms);
    cli_jset(o, "domains_omitted", cli_jint((long long)w->domains_omitted));
    cli_jset(o, "other_domains", json_count(&w->other_domains, false));
    cli_jset(o, "no_recipient", json_count(&w->no_recipient, false));
    return o;
}

/* A time in ms as JSON: RFC 3339, or null for 0. */
static json_t *json_time_ms(int64_t ms)
{
    char t[32];
    if (!ms) return cli_jnull();
    sk_time_rfc3339(ms / 1000, t);
    return cli_jstr(t);
}

static json_t *json_webhooks(const sk_webhook_state *h, size_t n)
{
    json_t *a = cli_jarr();
    for (size_t i = 0; i < n; i++) {
        json_t *o = cli_jobj();
        cli_jset(o, "url", cli_jstr(h[i].url));
        cli_jset(o, "events", cli_jstr(h[i].events ? h[i].events : "*"));
        cli_jset(o, "source", cli_jstr(h[i].source ? h[i].source : ""));
        cli_jset(o, "backlog", cli_jint((long long)h[i].backlog));
        cli_jset(o, "oldest", json_time_ms(h[i].oldest_ms));
        cli_jset(o, "delivered", cli_jint((long long)h[i].delivered));
        cli_jset(o, "failures", cli_jint((long long)h[i].failures));
        cli_jset(o, "dropped", cli_jint((long long)h[i].dropped));
        cli_jset(o, "last_ok", json_time_ms(h[i].last_ok_ms));
        cli_jset(o, "failing_since", json_time_ms(h[i].failing_since_ms));
        cli_jset(o, "last_error", cli_jstr(h[i].last_error));
        cli_jpush(a, o);
    }
    return a;
}

static void print_webhooks(const sk_webhook_state *h, size_t n)
{
    if (!n) return;
    printf("\nWebhooks:\n");
    for (size_t i = 0; i < n; i++) {
        char since[32] = "";
        if (h[i].failing_since_ms) sk_time_rfc3339(h[i].failing_since_ms / 1000, since);
        printf("%s  backlog=%llu delivered=%llu failures=%llu dropped=%llu %s%s%s%s%s\n", h[i].url,
               (unsigned long long)h[i].backlog, (unsigned long long)h[i].delivered,
               (unsigned long long)h[i].failures, (unsigned long long)h[i].dropped,
               h[i].failing_since_ms ? "failing since " : "ok", since, h[i].last_error ? " (" : "",
               h[i].last_error ? h[i].last_error : "", h[i].last_error ? ")" : "");
    }
}

static void print_json(const sk_track_stats *s, const sk_webhook_state *h, size_t nh)
{
    char now[32];
    sk_time_rfc3339(s->now_ms / 1000, now);
    json_t *o = cli_jobj();
    cli_jset(o, "time", cli_jstr(now));
    cli_jset(o, "last_hour", json_window(&s->hour));
    cli_jset(o, "last_day", json_window(&s->day));
    cli_jset(o, "webhooks", json_webhooks(h, nh));
    cli_json_print(o);
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
    /* The webhooks' endpoints and their outbox (docs/webhooks.md). */
    sk_webhook_state *h = NULL;
    size_t nh = 0;
    if (sk_webhooks_list(path, &h, &nh, &err)) cli_warn("stats", "%s", err.text);
    if (json) {
        print_json(s, h, nh);
    } else {
        print_table(s);
        print_webhooks(h, nh);
    }
    sk_webhook_states_free(h, nh);
    sk_track_stats_free(s);
    sk_track_free(tr);
    return EX_OK;
}

/* The running daemon's exposition, as it sends it. */
static int show_metrics(const cli_data_dir *dd)
{
    sk_buf text = SK_BUF_INIT(SK_CONTROL_DATA_MAX_OCTETS);
    sk_error err;
    sk_err e = sk_control_fetch(dd->path, "metrics", SK_CONTROL_IO_TIMEOUT_MS, &text, &err);
    if (!e) fwrite(text.data ? text.data : "", 1, text.len, stdout);
    sk_buf_free(&text);
    if (e == SK_ERR_NOT_FOUND) {
        cli_warn("stats", "no daemon runs on %s (%s): %s", dd->path, dd->how, err.text);
        return EX_UNAVAILABLE;
    }
    if (e) {
        cli_warn("stats", "%s", err.text);
        return cli_exit_code(&err);
    }
    return EX_OK;
}

int cmd_stats(int argc, char **argv)
{
    const char *data_dir = NULL, *config = NULL;
    int json = 0, metrics = 0;
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
        } else if (!strcmp(a, "--metrics")) {
            metrics = 1;
        } else if (a[0] == '-') {
            return cli_unknown_option(
                "stats", a,
                (const char *const[]){"data-dir", "config", "json", "metrics", "help", NULL});
        } else {
            return cli_usage_error("stats", "unexpected argument '%s'", a);
        }
    }
    if (json && metrics) return cli_usage_error("stats", "--metrics and --json do not go together");
    cli_data_dir dd;
    int rc = cli_data_dir_resolve("stats", data_dir, config, &dd);
    if (rc == EX_OK) rc = metrics ? show_metrics(&dd) : show(&dd, json);
    cli_data_dir_clear(&dd);
    return rc;
}
