/* `smtpkit serve`: wires the server framework, the spool, the queue runner
 * and the transports together on one event loop, runs it and takes it
 * apart. The transaction's hooks are in hooks.c, reload and signals in
 * reload.c, the checks before start in prestart.c. */
#include "daemon_impl.h"

#include <errno.h>
#include <event2/event.h>
#include <event2/thread.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Read the --arc-seal key: exit 78 naming the file when it cannot be. */
static sk_err arc_key_load(sk_daemon *d, sk_error *err)
{
    if (!d->cfg->arc_seal || d->arc_key) return SK_OK;
    return sk_daemon_arc_key_load(d->cfg->arc_seal, &d->arc_key, d->arc_domain, d->arc_selector,
                                  err);
}

static sk_err make_dir(const char *path, sk_error *err)
{
    if (mkdir(path, 0750) == 0 || errno == EEXIST) return SK_OK;
    return sk_error_set(err, SK_ERR_CONFIG, SK_STEP_NONE, "cannot create %s: %s", path,
                        strerror(errno));
}

static sk_err parse_retry(const char *list, uint64_t **out, size_t *n)
{
    *out = NULL;
    *n = 0;
    if (!list) return SK_OK;
    size_t count = 1;
    for (const char *p = list; *p; p++) count += *p == ',';
    uint64_t *v = sk_calloc(count, sizeof *v);
    char *copy = sk_strdup(list);
    if (!v || !copy) {
        sk_free(v);
        sk_free(copy);
        return SK_ERR_NOMEM;
    }
    size_t i = 0;
    char *save = NULL;
    for (char *t = strtok_r(copy, ",", &save); t && i < count; t = strtok_r(NULL, ",", &save))
        if (sk_parse_duration_ms(t, &v[i]) == SK_OK) i++;
    sk_free(copy);
    *out = v;
    *n = i;
    return SK_OK;
}

static sk_err listen_all(sk_daemon *d, sk_error *err)
{
    const struct {
        const sk_strlist *list;
        sk_listen_kind kind;
        const char *name;
    } kinds[] = {{&d->cfg->listen, SK_LISTEN_SMTP, "smtp"},
                 {&d->cfg->submission, SK_LISTEN_SUBMISSION, "submission"},
                 {&d->cfg->smtps, SK_LISTEN_SMTPS, "smtps"}};
    size_t index = 0;
    for (size_t k = 0; k < 3; k++)
        for (size_t i = 0; i < kinds[k].list->n; i++, index++) {
            sk_err e = sk_server_listen(d->srv, kinds[k].list->v[i], kinds[k].kind, err);
            if (e) return e;
            sk_log(&d->log, SK_LOG_INFO, "- daemon listening kind=%s addr=%s port=%d",
                   kinds[k].name, kinds[k].list->v[i], sk_server_port(d->srv, index));
        }
    return SK_OK;
}

/* The tracking store: a daemon that cannot open it still delivers, and
 * says so (tracking data is not the mail). */
static void open_track(sk_daemon *d)
{
    sk_buf path = SK_BUF_INIT(4096);
    sk_error err;
    if (sk_buf_printf(&path, "%s/%s", d->cfg->data_dir, SK_TRACK_DB_NAME)) {
        sk_buf_free(&path);
        return;
    }
    d->track = sk_track_open(sk_buf_cstr(&path), 0, &err);
    sk_track_opts to = {.log = d->log, .on_event = sk_dmetrics_on_track, .event_ctx = d->metrics};
    if (d->track && sk_track_set_opts(d->track, &to, d->base, &err)) {
        sk_track_free(d->track);
        d->track = NULL;
    }
    if (!d->track)
        sk_log(&d->log, SK_LOG_ERR,
               "- daemon track-unavailable path=%s error=\"%s\" (no tracking, no suppression)",
               sk_buf_cstr(&path), err.text);
    sk_suppress_mirror_opts mo = {.log = d->log};
    if (d->track && !(d->suppress = sk_suppress_mirror_new(sk_buf_cstr(&path), &mo, d->base, &err)))
        sk_log(&d->log, SK_LOG_ERR,
               "- daemon suppress-unavailable path=%s error=\"%s\" (no suppression at RCPT)",
               sk_buf_cstr(&path), err.text);
    sk_buf_free(&path);
}

static sk_err open_spool(sk_daemon *d, sk_error *err)
{
    const char *sync = d->cfg->spool_sync;
    sk_spool_opts so = {.mode = SK_SPOOL_OWNER,
                        .log = d->log,
                        .sync = !strcmp(sync, "files") ? SK_SPOOL_SYNC_FILES
                                : !strcmp(sync, "fs")  ? SK_SPOOL_SYNC_FS
                                                       : SK_SPOOL_SYNC_LOG};
    d->spool = sk_spool_open(d->cfg->data_dir, &so, d->base, err);
    return d->spool ? SK_OK : err && err->err ? err->err : SK_ERR_IO;
}

/* --rate-limit and --priority values, checked when the config was read. */
static sk_err parse_rules(const sk_daemon_config *c, sk_queue_opts *qo, sk_queue_rate_rule **rates,
                          sk_queue_priority_rule **prios, sk_error *err)
{
    *rates = sk_calloc(c->rate_limit.n + 1, sizeof **rates);
    *prios = sk_calloc(c->priority.n + 1, sizeof **prios);
    if (!*rates || !*prios) return sk_error_set(err, SK_ERR_NOMEM, SK_STEP_NONE, "out of memory");
    size_t nr = 0;
    for (size_t i = 0; i < c->rate_limit.n; i++) {
        sk_queue_rate_rule r;
        if (sk_queue_rate_parse(c->rate_limit.v[i], &r, err)) return SK_ERR_CONFIG;
        if (r.domain[0] == '\0')
            qo->rate_default = r.rate;
        else
            (*rates)[nr++] = r;
    }
    qo->rate_rules = *rates;
    qo->nrate_rules = nr;
    for (size_t i = 0; i < c->priority.n; i++)
        if (sk_queue_priority_parse(c->priority.v[i], &(*prios)[i], err)) return SK_ERR_CONFIG;
    qo->priority_rules = *prios;
    qo->npriority_rules = c->priority.n;
    return SK_OK;
}

static sk_err start_delivery(sk_daemon *d, sk_error *err)
{
    sk_daemon_config *c = d->cfg;
    sk_buf dir = SK_BUF_INIT(4096);
    if (sk_buf_printf(&dir, "%s/mailboxes", c->data_dir))
        return sk_error_set(err, SK_ERR_CONFIG, SK_STEP_NONE, "data-dir: path too long");
    sk_err e = make_dir(sk_buf_cstr(&dir), err);
    /* An absolute root, so that the Maildir files named in the tracking
     * store are found from any directory. */
    char *abs = e ? NULL : realpath(sk_buf_cstr(&dir), NULL);
    if (abs) {
        sk_buf_reset(&dir);
        e = sk_buf_puts(&dir, abs);
        free(abs);
        if (e) e = sk_error_set(err, SK_ERR_CONFIG, SK_STEP_NONE, "data-dir: path too long");
    }
    char host[256] = "";
    if (!c->hostname) gethostname(host, sizeof host - 1);
    d->hostname = sk_strdup(c->hostname ? c->hostname : host);
    if (!d->hostname) e = sk_error_set(err, SK_ERR_NOMEM, SK_STEP_NONE, "out of memory");
    const char *hostname = d->hostname;
    if (!e) {
        d->local = sk_maildir_transport_new(sk_buf_cstr(&dir), hostname, &d->log, err);
        if (!d->local) e = err ? err->err : SK_ERR_IO;
        /* Its writes and fsyncs on a thread of their own, not the loop's. */
        if (!e) e = sk_maildir_transport_start(d->local, d->base, err);
    }
    sk_buf_free(&dir);
    if (e) return e;
    if (c->rules ? sk_rules_load(c->rules, &d->rules, err) : sk_rules_default(&d->rules, err))
        return SK_ERR_CONFIG;
    d->suppress_for_s =
        c->suppress_for_ms ? (int64_t)(c->suppress_for_ms / 1000) : 0; /* 0: the class's (rules) */
    if (c->verp) d->verp_domain = d->hostname;
    if (!d->track_opened) open_track(d);
    if (c->relay_host) {
        char rhost[256];
        unsigned port;
        if (sk_daemon_parse_hostport(c->relay_host, rhost, sizeof rhost, &port))
            return sk_error_set(err, SK_ERR_CONFIG, SK_STEP_NONE, "relay-host: bad HOST:PORT");
        /* The SMTP transport with a fixed route: no MX lookup. */
        sk_smtp_transport_opts so = {
            .relay_host = rhost,
            .port = (unsigned short)port,
            .helo_name = hostname,
            .max_messages_per_connection = c->messages_per_connection,
            .idle_ms = SK_SMTP_RELAY_IDLE_MS_DEFAULT,
            .log = d->log,
        };
        d->remote = sk_smtp_transport_new(&so, d->base, err);
        if (!d->remote) return err && err->err ? err->err : SK_ERR_IO;
    } else {
        /* No relay host: each domain's MX hosts (RFC 5321 5.1). */
        sk_smtp_transport_opts mo = {
            .dns_server = c->dns_server,
            .port = (unsigned short)c->mx_port,
            .helo_name = hostname,
            .max_messages_per_connection = c->messages_per_connection,
            .tls_required = (const char *const *)c->tls_required.v,
            .ntls_required = c->tls_required.n,
            .log = d->log,
        };
        d->remote = sk_smtp_transport_new(&mo, d->base, err);
        if (!d->remote) return err && err->err ? err->err : SK_ERR_CONFIG;
    }
    if (parse_retry(c->retry_schedule, &d->retry_ms, &d->nretry))
        return sk_error_set(err, SK_ERR_NOMEM, SK_STEP_NONE, "out of memory");
    sk_queue_opts qo = {
        .log = d->log,
        .local_domains = (const char *const *)c->local_domain.v,
        .nlocal_domains = c->local_domain.n,
        .local_transport = d->local,
        .remote_transport = d->remote,
        .retry_ms = d->retry_ms,
        .nretry = d->nretry,
        .max_lifetime_ms = c->max_queue_lifetime_ms,
        .delay_warning_ms = c->delay_warning_ms,
        .on_event = sk_daemon_on_queue_event,
        .event_ctx = d,
        .group_by_domain = c->group_destinations && !strcmp(c->group_destinations, "domain"),
        .dest_max_conns = c->destination_connections,
        .msgs_per_conn = c->messages_per_connection,
        .rules = d->rules,
        .throttle_suspend_ms = c->throttle_suspend_ms,
        .hostname = d->hostname,
        .dsn_fields = sk_daemon_dsn_sign,
        .dsn_ctx = &d->keys, /* replaced on SIGHUP */
        .verp_host = d->verp_domain,
    };
    sk_queue_rate_rule *rates = NULL;
    sk_queue_priority_rule *prios = NULL;
    e = parse_rules(c, &qo, &rates, &prios, err);
    if (!e) {
        d->queue = sk_queue_new(d->spool, &qo, d->base, err);
        if (!d->queue) e = err && err->err ? err->err : SK_ERR_IO;
    }
    sk_free(rates);
    sk_free(prios);
    return e;
}

/* The buffering logger's wrapper (any thread). Without the loop's event
 * (before it exists, after it is gone, and in the forked AUTH helper,
 * which has a copy without it) each line is flushed at once. */
static void log_batched(void *ctx, sk_log_level level, const char *line)
{
    sk_daemon *d = ctx;
    d->user_log.fn(d->user_log.ctx, level, line);
    struct event *ev = d->log_flush_ev;
    if (!ev)
        d->user_log.flush(d->user_log.ctx);
    else if (!atomic_exchange(&d->log_flush_pending, 1))
        event_active(ev, EV_TIMEOUT, 0);
}

/* Loop thread: the lines of this pass go out in one write. The flag is
 * cleared first, so a line logged meanwhile schedules another flush. */
static void on_log_flush(evutil_socket_t fd, short what, void *arg)
{
    sk_daemon *d = arg;
    (void)fd;
    (void)what;
    atomic_store(&d->log_flush_pending, 0);
    d->user_log.flush(d->user_log.ctx);
}

/* The webhooks' backlog gauge, per endpoint. */
static void backlog_one(void *ctx, const char *url, uint64_t n)
{
    sk_metric_set(ctx, url, (double)n);
}
static void webhook_backlog(void *ctx, sk_metric *gauge)
{
    sk_webhooks_backlog(ctx, backlog_one, gauge);
}

/* `smtpkit stats --metrics` (the control socket's "metrics"). */
static sk_err render_metrics(void *ctx, sk_buf *out)
{
    sk_daemon *d = ctx;
    sk_dmetrics_sources src = {.queue = d->queue,
                               .srv = d->srv,
                               .remote = d->remote,
                               .webhooks = d->webhooks ? webhook_backlog : NULL,
                               .webhooks_ctx = d->webhooks};
    return sk_dmetrics_render(d->metrics, &src, out);
}

sk_err sk_daemon_webhook_specs(const sk_daemon_config *c, sk_webhook_endpoint eps[SK_WEBHOOKS_MAX],
                               char *bufs[SK_WEBHOOKS_MAX], size_t *n, sk_error *err)
{
    memset(bufs, 0, SK_WEBHOOKS_MAX * sizeof *bufs);
    *n = 0;
    if (c->webhook.n > SK_WEBHOOKS_MAX)
        return sk_error_set(err, SK_ERR_CONFIG, SK_STEP_NONE, "more than %d webhooks",
                            SK_WEBHOOKS_MAX);
    for (size_t i = 0; i < c->webhook.n; i++) {
        if (sk_webhook_spec_parse(c->webhook.v[i], &bufs[i], &eps[i], err)) {
            sk_daemon_webhooks_free(bufs);
            return SK_ERR_CONFIG;
        }
    }
    *n = c->webhook.n;
    return SK_OK;
}

void sk_daemon_webhooks_free(char *bufs[SK_WEBHOOKS_MAX])
{
    for (size_t i = 0; i < SK_WEBHOOKS_MAX; i++) {
        if (bufs[i]) explicit_bzero(bufs[i], strlen(bufs[i])); /* holds a secret */
        sk_free(bufs[i]);
        bufs[i] = NULL;
    }
}

/* The webhooks' sender, on the tracking store, with the configuration's
 * endpoints (and those added at run time before). */
static sk_err start_webhooks(sk_daemon *d, sk_error *err)
{
    if (!d->track) return SK_OK;
    sk_webhook_endpoint eps[SK_WEBHOOKS_MAX];
    char *bufs[SK_WEBHOOKS_MAX];
    size_t n;
    if (sk_daemon_webhook_specs(d->cfg, eps, bufs, &n, err)) return SK_ERR_CONFIG;
    sk_buf path = SK_BUF_INIT(4096);
    if (sk_buf_printf(&path, "%s/%s", d->cfg->data_dir, SK_TRACK_DB_NAME)) {
        sk_daemon_webhooks_free(bufs);
        return sk_error_set(err, SK_ERR_CONFIG, SK_STEP_NONE, "data directory too long");
    }
    sk_webhooks_opts o = {.track_path = sk_buf_cstr(&path),
                          .max_age_ms = d->cfg->webhook_max_age_ms,
                          .endpoints = eps,
                          .nendpoints = n,
                          .log = d->log};
    d->webhooks = sk_webhooks_new(&o, d->base, err);
    sk_buf_free(&path);
    sk_daemon_webhooks_free(bufs);
    if (!d->webhooks) return err && err->err == SK_ERR_IO ? SK_ERR_IO : SK_ERR_CONFIG;
    return SK_OK;
}

/* A suppression added or removed through the HTTP API is in force at once. */
static void poke_suppress(void *ctx)
{
    sk_suppress_mirror_poke(((sk_daemon *)ctx)->suppress);
}

/* Block or unblock, in the calling thread, the signals the loop handles. */
static void stop_signals(int how)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    pthread_sigmask(how, &set, NULL);
}

sk_err sk_daemon_new(const char *config_path, const sk_daemon_setting *flags, size_t n_flags,
                     const sk_logger *log, sk_daemon **out, sk_error *err)
{
    *out = NULL;
    sk_daemon *d = sk_calloc(1, sizeof *d);
    if (!d) return sk_error_set(err, SK_ERR_NOMEM, SK_STEP_NONE, "out of memory");
    if (log) d->log = d->user_log = *log;
    if (d->user_log.fn && d->user_log.flush)
        d->log = (sk_logger){log_batched, d, d->user_log.max_level, NULL};
    sk_err e = SK_OK;
    /* Keep what the configuration is built from, for SIGHUP. */
    if (config_path && !(d->config_path = sk_strdup(config_path))) e = SK_ERR_NOMEM;
    d->flags = sk_calloc(n_flags ? n_flags : 1, sizeof *d->flags);
    if (!d->flags) e = SK_ERR_NOMEM;
    for (size_t i = 0; !e && i < n_flags; i++) {
        d->flags[i].key = sk_strdup(flags[i].key);
        d->flags[i].value = flags[i].value ? sk_strdup(flags[i].value) : NULL;
        d->n_flags = i + 1;
        if (!d->flags[i].key || (flags[i].value && !d->flags[i].value)) e = SK_ERR_NOMEM;
    }
    if (e) {
        sk_daemon_free(d);
        return sk_error_set(err, e, SK_STEP_NONE, "out of memory");
    }
    e = sk_daemon_config_build(d->config_path, d->flags, d->n_flags, &d->cfg, err);
    if (!e) e = sk_daemon_load_tables(d->cfg, &d->users, &d->recipients, &d->have_recipients, err);
    if (e) {
        sk_daemon_free(d);
        return e;
    }
    /* The AUTH helper is forked before any thread starts and before
     * privileges are dropped (docs/SECURITY.md). */
    if (d->cfg->users && !(d->authd = sk_authd_start(d->cfg->users, &d->log, err))) {
        sk_daemon_free(d);
        return err && err->err ? err->err : SK_ERR_CONFIG;
    }
    if (!(d->metrics = sk_dmetrics_new(err))) {
        sk_daemon_free(d);
        return err && err->err ? err->err : SK_ERR_NOMEM;
    }
    /* The SMTP transport completes jobs from worker threads. */
    evthread_use_pthreads();
    d->base = event_base_new();
    if (d->base && d->log.fn == log_batched &&
        !(d->log_flush_ev = event_new(d->base, -1, 0, on_log_flush, d))) {
        event_base_free(d->base);
        d->base = NULL;
    }
    if (!d->base) {
        sk_daemon_free(d);
        return sk_error_set(err, SK_ERR_NOMEM, SK_STEP_NONE, "cannot create the event loop");
    }
    sk_server_opts o;
    sk_daemon_server_opts(d, d->cfg, &o);
    d->srv = sk_server_new(&o, d->base, err);
    if (!d->srv) {
        sk_daemon_free(d);
        return err && err->err ? err->err : SK_ERR_CONFIG;
    }
    if (d->authd && sk_authd_attach(d->authd, d->base, err)) {
        sk_daemon_free(d);
        return err && err->err ? err->err : SK_ERR_IO;
    }
    sk_daemon_hooks_set(d);

    /* Signals are caught before the ports open: a SIGTERM or SIGHUP sent
     * as soon as a port answers (while the spool is still being recovered)
     * is handled by the loop once it runs, instead of killing the process. */
    signal(SIGPIPE, SIG_IGN);
    d->sig_term = evsignal_new(d->base, SIGTERM, sk_daemon_on_signal, d);
    d->sig_int = evsignal_new(d->base, SIGINT, sk_daemon_on_signal, d);
    d->sig_hup = evsignal_new(d->base, SIGHUP, sk_daemon_on_signal, d);
    d->drain_timer = evtimer_new(d->base, sk_daemon_drain_check, d);
    if (!d->sig_term || !d->sig_int || !d->sig_hup || !d->drain_timer ||
        evsignal_add(d->sig_term, NULL) || evsignal_add(d->sig_int, NULL) ||
        evsignal_add(d->sig_hup, NULL)) {
        sk_daemon_free(d);
        return sk_error_set(err, SK_ERR_NOMEM, SK_STEP_NONE, "cannot set up signal handling");
    }
    /* Held back until the loop runs (sk_daemon_run): the threads started
     * below inherit the block, so these signals only ever reach this
     * thread, and none reaches a thread after the handlers are gone. */
    stop_signals(SIG_BLOCK);

    /* The data directory is checked before the ports open, so that a
     * daemon that cannot keep mail never answers (and a tool run as soon
     * as the port answers finds it). Without a user to switch to, the
     * tracking store and the spool (its lock, its recovery) are opened
     * before the ports too: opening SQLite takes a moment, sessions
     * should not wait behind it, and a spool locked by another daemon
     * stops the start before it listens. When starting as root with
     * --user: bind (ports below 1024 need root), drop privileges, then
     * open them as the user we run as. */
    bool drops = d->cfg->user && geteuid() == 0;
    e = sk_daemon_check_data_dir(d, err);
    if (!e && !drops) {
        open_track(d);
        d->track_opened = true;
        e = open_spool(d, err);
        /* The DKIM keys are read as the user that reads them again on
         * SIGHUP: before the ports open here, after the switch below. */
        if (!e) e = sk_dkim_keyring_load(&d->cfg->dkim, &d->keys, err);
        if (!e) e = arc_key_load(d, err);
    }
    if (!e) e = listen_all(d, err);
    if (!e) e = sk_daemon_drop_privileges(d, err);
    if (!e && !d->spool) e = open_spool(d, err);
    if (!e && !d->keys) e = sk_dkim_keyring_load(&d->cfg->dkim, &d->keys, err);
    if (!e) e = arc_key_load(d, err);
    if (!e) e = start_delivery(d, err);
    if (!e && !(d->signpool = sk_sign_pool_new(d->base, err)))
        e = err && err->err ? err->err : SK_ERR_NOMEM;
    if (!e) {
        /* The checks of mail from outside; our host name is the
         * authserv-id of their Authentication-Results (RFC 8601 2.5). */
        sk_inbound_opts io = {.base = d->base,
                              .dns_server = d->cfg->dns_server,
                              .authserv_id = d->hostname,
                              .log = d->log};
        if (!(d->inbound = sk_inbound_new(&io, err))) e = err && err->err ? err->err : SK_ERR_NOMEM;
    }
    /* The control socket last: made by the user we run as, in the spool
     * whose lock we hold (a socket left there is stale, and replaced). */
    if (!e && !(d->control = sk_control_server_new(d->queue, d->spool, &d->log, d->base, err)))
        e = err && err->err ? err->err : SK_ERR_IO;
    if (!e) e = start_webhooks(d, err);
    if (!e && sk_control_server_on_data(d->control, "metrics", render_metrics, d))
        e = sk_error_set(err, SK_ERR_INVAL, SK_STEP_NONE, "control: metrics");
    sk_http_deps hd = {.spool = d->spool,
                       .queue = d->queue,
                       .track = d->track,
                       .suppress_changed = poke_suppress,
                       .ctx = d,
                       .metrics = render_metrics,
                       .webhooks = d->webhooks};
    if (!e && d->cfg->http &&
        !(d->http = sk_daemon_http_start(d->cfg, d->hostname, d->base, &hd, &d->log, err)))
        e = err && err->err ? err->err : SK_ERR_IO;
    if (e) {
        sk_daemon_free(d);
        return e;
    }

    sk_log(&d->log, SK_LOG_INFO,
           "- daemon started data_dir=%s hold=%s relay_host=%s delivery=%s dns_server=%s "
           "mx_port=%u verp=%s tracking=%s dkim_keys=%zu dmarc_policy=%s spf_reject_fail=%s",
           d->cfg->data_dir, d->cfg->hold ? "yes" : "no",
           d->cfg->relay_host ? d->cfg->relay_host : "-", d->cfg->relay_host ? "relay" : "mx",
           d->cfg->dns_server ? d->cfg->dns_server : "system", d->cfg->mx_port,
           d->verp_domain ? "yes" : "no", d->track ? "yes" : "no", sk_dkim_keyring_count(d->keys),
           d->cfg->dmarc_policy ? d->cfg->dmarc_policy : "report",
           d->cfg->spf_reject_fail ? "yes" : "no");
    *out = d;
    return SK_OK;
}

const sk_daemon_config *sk_daemon_get_config(const sk_daemon *d)
{
    return d->cfg;
}

int sk_daemon_port(const sk_daemon *d, size_t i)
{
    return sk_server_port(d->srv, i);
}

sk_err sk_daemon_run(sk_daemon *d, sk_error *err)
{
    stop_signals(SIG_UNBLOCK); /* those sent meanwhile arrive now */
    if (event_base_dispatch(d->base) < 0)
        return sk_error_set(err, SK_ERR_IO, SK_STEP_NONE, "event loop failed");
    sk_log(&d->log, SK_LOG_INFO, "- daemon stopped");
    if (d->user_log.flush) d->user_log.flush(d->user_log.ctx);
    return SK_OK;
}

void sk_daemon_free(sk_daemon *d)
{
    if (!d) return;
    /* One more SIGTERM while stopping waits, blocked, instead of ending the
     * process once the handlers below are gone: the exit status stays the
     * daemon's (docs/serve.md). */
    stop_signals(SIG_BLOCK);
    if (d->sig_term) event_free(d->sig_term);
    if (d->sig_int) event_free(d->sig_int);
    if (d->sig_hup) event_free(d->sig_hup);
    if (d->drain_timer) event_free(d->drain_timer);
    /* The control socket first (its operations use the queue; the socket
     * goes while we still hold the spool lock), then the queue (it
     * cancels transport jobs), then the transports.
     * Messages still being received are dropped; the spool then finishes
     * commits in flight, whose callbacks answer sessions that are still
     * there; the server goes last. */
    sk_http_free(d->http);
    d->http = NULL;
    sk_control_server_free(d->control);
    d->control = NULL;
    sk_queue_free(d->queue);
    sk_transport_free(d->remote);
    sk_transport_free(d->local);
    sk_suppress_mirror_free(d->suppress);
    d->suppress = NULL;
    sk_webhooks_free(d->webhooks); /* before the store it reads */
    d->webhooks = NULL;
    /* Events not written yet are flushed by sk_track_free. */
    sk_track_free(d->track);
    d->track = NULL;
    sk_rules_free(d->rules);
    sk_daemon_receiving_abort(d);
    /* Messages whose checks are still running or whose signatures are
     * being made are dropped (their sessions go with the server below: no
     * reply); the signing threads finish what they are doing first. */
    sk_sign_pool_free(d->signpool);
    d->signpool = NULL;
    sk_daemon_finishing_drop(d);
    sk_spool_free(d->spool);
    d->spool = NULL;
    /* Checks still waiting for the helper are answered before the server
     * and its sessions go. */
    sk_authd_free(d->authd);
    sk_server_free(d->srv);
    sk_dmetrics_free(d->metrics); /* after the sessions: on_disconnect counts */
    /* After the sessions (on_disconnect cancels their SPF checks). */
    sk_inbound_free(d->inbound);
    sk_dkim_keyring_free(d->keys);
    sk_dkim_key_free(d->arc_key);
    /* From here on lines are flushed as they come (log_batched). */
    if (d->log_flush_ev) event_free(d->log_flush_ev);
    d->log_flush_ev = NULL;
    if (d->user_log.flush) d->user_log.flush(d->user_log.ctx);
    if (d->base) event_base_free(d->base);
    sk_users_free(&d->users);
    sk_recipients_free(&d->recipients);
    sk_daemon_config_free(d->cfg);
    sk_free(d->retry_ms);
    sk_free(d->hostname);
    for (size_t i = 0; i < d->n_flags; i++) {
        sk_free((char *)d->flags[i].key);
        sk_free((char *)d->flags[i].value);
    }
    sk_free(d->flags);
    sk_free(d->config_path);
    sk_free(d);
}
