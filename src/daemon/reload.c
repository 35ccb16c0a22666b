/* `smtpkit serve` on signals: SIGHUP builds the configuration again and
 * applies what can change while running; SIGTERM and SIGINT stop the
 * listeners and wait for the sessions (a second one stops at once). */
#include "daemon_impl.h"

#include <event2/event.h>
#include <signal.h>
#include <string.h>

/* How often a stopping daemon looks whether its sessions have finished,
 * and how long it waits for them at most. */
#define SK_DAEMON_DRAIN_POLL_MS 50
#define SK_DAEMON_DRAIN_MAX_MS  (60 * 1000)

void sk_daemon_server_opts(const sk_daemon *d, const sk_daemon_config *c, sk_server_opts *o)
{
    memset(o, 0, sizeof *o);
    o->hostname = c->hostname;
    o->tls_cert_file = c->tls_cert;
    o->tls_key_file = c->tls_key;
    o->max_message_size = c->max_message_size;
    o->max_recipients = c->max_recipients;
    o->max_connections = c->max_connections;
    o->max_connections_per_ip = c->max_connections_per_ip;
    o->greeting_timeout_ms = (unsigned)c->greeting_timeout_ms;
    o->command_timeout_ms = (unsigned)c->command_timeout_ms;
    o->data_timeout_ms = (unsigned)c->data_timeout_ms;
    /* AUTH without TLS on loopback only when asked (`make run` asks):
     * behind a local proxy or port forwarder every remote client arrives
     * from loopback, and would be offered clear-text passwords. */
    o->auth_plaintext_loopback = c->auth_plaintext_loopback;
    o->logger = d->log;
}

sk_err sk_daemon_load_tables(const sk_daemon_config *c, sk_users *users, sk_recipients *rcpts,
                             bool *have_rcpts, sk_error *err)
{
    *users = (sk_users){0};
    *rcpts = (sk_recipients){0};
    *have_rcpts = false;
    /* The users file is read by the AUTH helper only (authd.c). */
    if (c->local_recipients) {
        sk_err e = sk_recipients_load(c->local_recipients, rcpts, err);
        if (e) {
            sk_users_free(users);
            return e;
        }
        *have_rcpts = true;
    }
    return SK_OK;
}

static bool same(const char *a, const char *b)
{
    return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

static bool same_list(const sk_strlist *a, const sk_strlist *b)
{
    if (a->n != b->n) return false;
    for (size_t i = 0; i < a->n; i++)
        if (strcmp(a->v[i], b->v[i])) return false;
    return true;
}

/* The options the queue and transports took at start. */
static bool delivery_changed(const sk_daemon_config *a, const sk_daemon_config *b)
{
    return !same(a->dns_server, b->dns_server) || a->mx_port != b->mx_port ||
           !same_list(&a->rate_limit, &b->rate_limit) || !same_list(&a->priority, &b->priority) ||
           a->destination_connections != b->destination_connections ||
           a->messages_per_connection != b->messages_per_connection ||
           !same(a->group_destinations, b->group_destinations) ||
           !same_list(&a->tls_required, &b->tls_required) || !same(a->rules, b->rules) ||
           a->throttle_suspend_ms != b->throttle_suspend_ms || a->verp != b->verp ||
           a->suppress_for_ms != b->suppress_for_ms || !same(a->hostname, b->hostname);
}

/* The end of the webhook endpoints' reload (the sender logs it). */
static void webhooks_reloaded(void *ctx, sk_err e, const sk_error *err)
{
    sk_daemon *d = ctx;
    if (e)
        sk_log(&d->log, SK_LOG_ERR, "- daemon reload-failed what=webhooks error=\"%s\"", err->text);
}

/* The webhook endpoints of c replace the running ones, on the sender's
 * thread; its maximum age applies from now on. */
static void reload_webhooks(sk_daemon *d, const sk_daemon_config *c)
{
    if (!d->webhooks) return;
    sk_webhook_endpoint eps[SK_WEBHOOKS_MAX];
    char *bufs[SK_WEBHOOKS_MAX];
    size_t n;
    sk_error err;
    if (sk_daemon_webhook_specs(c, eps, bufs, &n, &err) ||
        sk_webhooks_configure(d->webhooks, eps, n, webhooks_reloaded, d, &err))
        sk_log(&d->log, SK_LOG_ERR, "- daemon reload-failed what=webhooks error=\"%s\"", err.text);
    sk_daemon_webhooks_free(bufs);
    sk_webhooks_set_max_age(d->webhooks, c->webhook_max_age_ms);
}

/* SIGHUP: build the configuration again and apply what can change while
 * running: certificates and server settings (for new sessions), users,
 * local recipients, relay networks, webhook endpoints. What needs a
 * restart is logged. */
static void reload(sk_daemon *d)
{
    sk_error err;
    sk_daemon_config *c = NULL;
    sk_log(&d->log, SK_LOG_INFO, "- daemon reload-start");
    if (sk_daemon_config_build(d->config_path, d->flags, d->n_flags, &c, &err)) {
        sk_log(&d->log, SK_LOG_ERR, "- daemon reload-failed error=\"%s\"", err.text);
        return;
    }
    sk_users users;
    sk_recipients rcpts;
    bool have_rcpts;
    if (sk_daemon_load_tables(c, &users, &rcpts, &have_rcpts, &err)) {
        sk_log(&d->log, SK_LOG_ERR, "- daemon reload-failed error=\"%s\"", err.text);
        sk_daemon_config_free(c);
        return;
    }
    /* The DKIM keys and the --arc-seal key are read again (a replaced key
     * file takes effect); messages being signed or sealed keep the keys
     * they started with. */
    sk_dkim_keyring *keys = NULL;
    sk_dkim_key *arc_key = NULL;
    char arc_domain[SK_SMTP_DOMAIN_MAX_OCTETS + 1], arc_selector[SK_SMTP_DOMAIN_MAX_OCTETS + 1];
    sk_server_opts o;
    sk_daemon_server_opts(d, c, &o);
    if (sk_dkim_keyring_load(&c->dkim, &keys, &err) ||
        (c->arc_seal &&
         sk_daemon_arc_key_load(c->arc_seal, &arc_key, arc_domain, arc_selector, &err)) ||
        sk_server_reload(d->srv, &o, &err)) {
        sk_log(&d->log, SK_LOG_ERR, "- daemon reload-failed error=\"%s\"", err.text);
        sk_dkim_keyring_free(keys);
        sk_dkim_key_free(arc_key);
        sk_users_free(&users);
        sk_recipients_free(&rcpts);
        sk_daemon_config_free(c);
        return;
    }
    sk_dkim_keyring_free(d->keys);
    d->keys = keys;
    sk_dkim_key_free(d->arc_key);
    d->arc_key = arc_key;
    if (arc_key) {
        memcpy(d->arc_domain, arc_domain, sizeof arc_domain);
        memcpy(d->arc_selector, arc_selector, sizeof arc_selector);
    }
    static const char *const restart_only[] = {"listen/submission/smtps",
                                               "data-dir/spool-sync",
                                               "user",
                                               "log/log-level/log-format",
                                               "local-domain",
                                               "relay-host",
                                               "retry-schedule",
                                               "max-queue-lifetime",
                                               "delay-warning",
                                               "users",
                                               "delivery"};
    const sk_daemon_config *old = d->cfg;
    bool changed[] = {!same_list(&old->listen, &c->listen) ||
                          !same_list(&old->submission, &c->submission) ||
                          !same_list(&old->smtps, &c->smtps),
                      !same(old->data_dir, c->data_dir) || !same(old->spool_sync, c->spool_sync),
                      !same(old->user, c->user),
                      !same(old->log, c->log) || !same(old->log_level, c->log_level) ||
                          !same(old->log_format, c->log_format),
                      !same_list(&old->local_domain, &c->local_domain),
                      !same(old->relay_host, c->relay_host),
                      !same(old->retry_schedule, c->retry_schedule),
                      old->max_queue_lifetime_ms != c->max_queue_lifetime_ms,
                      old->delay_warning_ms != c->delay_warning_ms,
                      !same(old->users, c->users),
                      delivery_changed(old, c)};
    for (size_t i = 0; i < sizeof changed / sizeof changed[0]; i++)
        if (changed[i])
            sk_log(&d->log, SK_LOG_WARN, "- daemon reload-needs-restart option=%s",
                   restart_only[i]);
    /* Keep the values that did not change in place (the queue and the
     * listeners hold pointers into them): swap them into the new config. */
    sk_daemon_config *keep = c;
#define KEEP_STR(f)                                                                                \
    do {                                                                                           \
        char *t = keep->f;                                                                         \
        keep->f = d->cfg->f;                                                                       \
        d->cfg->f = t;                                                                             \
    } while (0)
#define KEEP_LIST(f)                                                                               \
    do {                                                                                           \
        sk_strlist t = keep->f;                                                                    \
        keep->f = d->cfg->f;                                                                       \
        d->cfg->f = t;                                                                             \
    } while (0)
    KEEP_LIST(listen);
    KEEP_LIST(submission);
    KEEP_LIST(smtps);
    KEEP_STR(data_dir);
    KEEP_STR(spool_sync);
    KEEP_STR(user);
    KEEP_STR(log);
    KEEP_STR(log_level);
    KEEP_STR(log_format);
    KEEP_LIST(local_domain);
    KEEP_STR(relay_host);
    KEEP_STR(retry_schedule);
    KEEP_STR(users);
    keep->max_queue_lifetime_ms = d->cfg->max_queue_lifetime_ms;
    keep->delay_warning_ms = d->cfg->delay_warning_ms;
#undef KEEP_STR
#undef KEEP_LIST
    sk_daemon_config_free(d->cfg);
    d->cfg = c;
    sk_users_free(&d->users);
    sk_recipients_free(&d->recipients);
    d->users = users;
    d->recipients = rcpts;
    d->have_recipients = have_rcpts;
    /* The helper reads the users file again and logs how that went. */
    sk_authd_reload(d->authd);
    reload_webhooks(d, c);
    sk_log(&d->log, SK_LOG_INFO,
           "- daemon reload-done hold=%s dkim_keys=%zu arc_seal=%s dmarc_policy=%s",
           c->hold ? "yes" : "no", sk_dkim_keyring_count(d->keys), d->arc_key ? "yes" : "no",
           c->dmarc_policy ? c->dmarc_policy : "report");
}

/* --- signals and stopping ------------------------------------------------ */

void sk_daemon_drain_check(evutil_socket_t fd, short what, void *arg)
{
    sk_daemon *d = arg;
    size_t open = sk_server_sessions(d->srv);
    uint64_t waited = sk_now_ms() - d->stop_started_ms;
    if (open == 0 || waited >= SK_DAEMON_DRAIN_MAX_MS) {
        if (open)
            sk_log(&d->log, SK_LOG_WARN, "- daemon stop-timeout sessions=%zu waited_ms=%llu", open,
                   (unsigned long long)waited);
        event_base_loopbreak(d->base);
        return;
    }
    struct timeval tv = {0, SK_DAEMON_DRAIN_POLL_MS * 1000};
    evtimer_add(d->drain_timer, &tv);
}

void sk_daemon_on_signal(evutil_socket_t sig, short what, void *arg)
{
    sk_daemon *d = arg;
    if (sig == SIGHUP) {
        reload(d);
        return;
    }
    if (d->stopping) {
        /* A second request: stop now. */
        sk_log(&d->log, SK_LOG_WARN, "- daemon stop-now signal=%d sessions=%zu", (int)sig,
               sk_server_sessions(d->srv));
        event_base_loopbreak(d->base);
        return;
    }
    d->stopping = true;
    d->stop_started_ms = sk_now_ms();
    sk_log(&d->log, SK_LOG_INFO, "- daemon stopping signal=%d sessions=%zu", (int)sig,
           sk_server_sessions(d->srv));
    sk_server_stop(d->srv);
    sk_daemon_drain_check(-1, 0, d);
}
