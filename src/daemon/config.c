/* Configuration of `smtpkit serve`: one option table shared by the command
 * line and the key = value file (read with libinih), checks and defaults. */
#include "daemon_int.h"

#include <smtpkit/daemon.h>
#include <smtpkit/classify.h>
#include <smtpkit/queue.h>
#include <smtpkit/webhook.h>

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <ini.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define OFF(field) offsetof(sk_daemon_config, field)

static const sk_daemon_option options[] = {
    {"config", SK_DOPT_STRING, "FILE", "read options from FILE (key = value, same names)", true, 0},
    {"listen", SK_DOPT_LIST, "ADDR:PORT", "SMTP; STARTTLS offered when a certificate is set", false,
     OFF(listen)},
    {"submission", SK_DOPT_LIST, "ADDR:PORT", "submission; AUTH required before MAIL", false,
     OFF(submission)},
    {"smtps", SK_DOPT_LIST, "ADDR:PORT", "submission over implicit TLS", false, OFF(smtps)},
    {"hostname", SK_DOPT_STRING, "NAME", "greeting / EHLO name (default: the host's name)", false,
     OFF(hostname)},
    {"data-dir", SK_DOPT_STRING, "DIR", "spool and mailboxes (default ./var)", false,
     OFF(data_dir)},
    {"tls-cert", SK_DOPT_STRING, "FILE", "certificate chain (PEM)", false, OFF(tls_cert)},
    {"tls-key", SK_DOPT_STRING, "FILE", "private key (PEM)", false, OFF(tls_key)},
    {"users", SK_DOPT_STRING, "FILE", "\"user:HASH\" lines, crypt(3) hashes (AUTH)", false,
     OFF(users)},
    {"auth-plaintext-loopback", SK_DOPT_BOOL, NULL,
     "offer AUTH without TLS to loopback clients (unsafe behind a local proxy)", false,
     OFF(auth_plaintext_loopback)},
    {"local-domain", SK_DOPT_LIST, "DOMAIN",
     "deliver to DATA-DIR/mailboxes/DOMAIN/LOCALPART/ (default localhost)", false,
     OFF(local_domain)},
    {"local-recipients", SK_DOPT_STRING, "FILE",
     "addresses that exist in the local domains, one a line", false, OFF(local_recipients)},
    {"relay-host", SK_DOPT_STRING, "HOST:PORT", "deliver all non-local mail there", false,
     OFF(relay_host)},
    {"relay-net", SK_DOPT_NETS, "CIDR",
     "may relay without AUTH (default 127.0.0.0/8, ::1; \"none\")", false, OFF(relay_net)},
    {"max-message-size", SK_DOPT_SIZE, "N", "largest message accepted (e.g. 35M)", false,
     OFF(max_message_size)},
    {"spool-sync", SK_DOPT_STRING, "log|fs|files",
     "make a group of messages durable through the spool's journal (log, default), one syncfs "
     "(fs) or per file (files)",
     false, OFF(spool_sync)},
    {"hold", SK_DOPT_BOOL, NULL, "accept and keep in the hold queue; deliver nothing", false,
     OFF(hold)},
    {"greeting-timeout", SK_DOPT_DURATION, "D", "wait for the client's EHLO (default 5m)", false,
     OFF(greeting_timeout_ms)},
    {"command-timeout", SK_DOPT_DURATION, "D", "wait for a command (default 5m)", false,
     OFF(command_timeout_ms)},
    {"data-timeout", SK_DOPT_DURATION, "D", "wait for message data (default 3m)", false,
     OFF(data_timeout_ms)},
    {"user", SK_DOPT_STRING, "NAME", "drop privileges to NAME after binding (when root)", false,
     OFF(user)},
    {"log", SK_DOPT_STRING, "stderr|syslog", "where log lines go (default stderr)", false,
     OFF(log)},
    {"log-level", SK_DOPT_STRING, "LEVEL",
     "log LEVEL and more severe events: error, warning, info (default), debug", false,
     OFF(log_level)},
    {"log-format", SK_DOPT_STRING, "text|json",
     "one line per event as text (default) or as a JSON object", false, OFF(log_format)},
    {"max-connections", SK_DOPT_COUNT, "N", "simultaneous sessions (default 10000)", false,
     OFF(max_connections)},
    {"max-connections-per-ip", SK_DOPT_COUNT, "N", "sessions per client address (default 50)",
     false, OFF(max_connections_per_ip)},
    {"max-recipients", SK_DOPT_COUNT, "N", "recipients per message (default 100)", false,
     OFF(max_recipients)},
    {"print-usage", SK_DOPT_BOOL, NULL, "print how to send a test message at start", false,
     OFF(print_usage)},
    {"dns-server", SK_DOPT_STRING, "IP:PORT",
     "resolver for MX lookups and mail checks (default: the system's)", false, OFF(dns_server)},
    {"mx-port", SK_DOPT_COUNT, "PORT", "port for MX delivery (default 25)", false, OFF(mx_port)},
    {"retry-schedule", SK_DOPT_STRING, "LIST", "e.g. 1m,5m,15m,1h,4h (the last repeats)", false,
     OFF(retry_schedule)},
    {"max-queue-lifetime", SK_DOPT_DURATION, "D", "give up after (default 5d)", false,
     OFF(max_queue_lifetime_ms)},
    {"delay-warning", SK_DOPT_DURATION, "D",
     "one delay DSN after (NOTIFY=DELAY; default 4h, 0 = none)", false, OFF(delay_warning_ms)},
    {"rate-limit", SK_DOPT_LIST, "DEST=N/UNIT",
     "per destination, UNIT s, m or h (\"default=N/UNIT\" for all others)", false, OFF(rate_limit)},
    {"priority", SK_DOPT_LIST, "RULE", "\"auth:USER=N\", \"user@dom=N\" or \"dom=N\" (-9..9)",
     false, OFF(priority)},
    {"destination-connections", SK_DOPT_COUNT, "N", "connections per destination (default 8)",
     false, OFF(destination_connections)},
    {"messages-per-connection", SK_DOPT_COUNT, "N", "before a new connection (default 100)", false,
     OFF(messages_per_connection)},
    {"group-destinations", SK_DOPT_STRING, "provider|domain",
     "one queue per MX host set (default) or per domain", false, OFF(group_destinations)},
    {"tls-required", SK_DOPT_LIST, "DOMAIN",
     "MX delivery there needs verified TLS (.dom: subdomains)", false, OFF(tls_required)},
    {"rules", SK_DOPT_STRING, "FILE", "bounce classification and traffic rules (default built in)",
     false, OFF(rules)},
    {"throttle-suspend", SK_DOPT_DURATION, "D", "pause a destination after 421/4.7.x (default 1m)",
     false, OFF(throttle_suspend_ms)},
    {"verp", SK_DOPT_BOOL, NULL, "relayed mail from bounces+ID=RCPT@HOSTNAME; read what comes back",
     false, OFF(verp)},
    {"suppress-for", SK_DOPT_DURATION, "D",
     "how long a hard bounce or complaint suppresses (default: the class's, rules; complaints 30d)",
     false, OFF(suppress_for_ms)},
    {"webhook", SK_DOPT_LIST, "'URL SECRET [EVENTS]'",
     "POST tracking events to URL, signed with SECRET (whsec_...); docs/webhooks.md", false,
     OFF(webhook)},
    {"webhook-max-age", SK_DOPT_DURATION, "D", "retry a webhook event this long (default 3d)",
     false, OFF(webhook_max_age_ms)},
    {"dkim", SK_DOPT_LIST, "DOMAIN:SELECTOR:KEYFILE",
     "sign users' and relay networks' mail From DOMAIN or below it", false, OFF(dkim)},
    {"dmarc-policy", SK_DOPT_STRING, "enforce|report",
     "mail from outside failing DMARC: apply its policy, or only record (default)", false,
     OFF(dmarc_policy)},
    {"spf-reject-fail", SK_DOPT_BOOL, NULL,
     "refuse mail from outside failing SPF (550 5.7.23) unless DMARC passes", false,
     OFF(spf_reject_fail)},
    {"arc-seal", SK_DOPT_STRING, "DOMAIN:SELECTOR:KEYFILE",
     "add an ARC set to mail from outside once checked (RFC 8617)", false, OFF(arc_seal)},
    {"http", SK_DOPT_STRING, "ADDR:PORT",
     "serve the HTTP API there (docs/http-api.md; default off)", false, OFF(http)},
    {"http-tls", SK_DOPT_BOOL, NULL, "the HTTP API over TLS with --tls-cert and --tls-key", false,
     OFF(http_tls)},
    {"http-max-request-size", SK_DOPT_SIZE, "N",
     "largest HTTP request, headers and body (default 10M)", false, OFF(http_max_request_size)},
    {"http-max-header-size", SK_DOPT_SIZE, "N", "largest HTTP request header (default 16K)", false,
     OFF(http_max_header_size)},
    {"http-request-timeout", SK_DOPT_DURATION, "D",
     "cut off an HTTP request not whole this long after its first octet, and a connection "
     "silent for this long (default 30s)",
     false, OFF(http_request_timeout_ms)},
    {"http-max-requests", SK_DOPT_COUNT, "N", "HTTP requests in progress at once (default 256)",
     false, OFF(http_max_requests)},
    {"http-max-connections", SK_DOPT_COUNT, "N",
     "HTTP connections open at once; more are answered 503 and closed (default 1024)", false,
     OFF(http_max_connections)},
    {"http-metrics-public", SK_DOPT_BOOL, NULL,
     "GET /metrics without an API key (for scrapers on a private network)", false,
     OFF(http_metrics_public)},
    {"http-queue-limit", SK_DOPT_COUNT, "N",
     "messages queued past which the API answers 429 (default: no limit)", false,
     OFF(http_queue_limit)},
    {NULL, 0, NULL, NULL, false, 0},
};

const sk_daemon_option *sk_daemon_options(void)
{
    return options;
}

const sk_daemon_option *sk_daemon_option_find(const char *name)
{
    for (const sk_daemon_option *o = options; o->name; o++)
        if (strcmp(o->name, name) == 0) return o;
    return NULL;
}

void sk_strlist_clear(sk_strlist *l)
{
    for (size_t i = 0; i < l->n; i++) sk_free(l->v[i]);
    sk_free(l->v);
    l->v = NULL;
    l->n = 0;
}

sk_err sk_strlist_add(sk_strlist *l, const char *s, size_t n)
{
    char *copy = sk_strndup(s, n);
    if (!copy) return SK_ERR_NOMEM;
    char **v = sk_realloc(l->v, (l->n + 1) * sizeof *v);
    if (!v) {
        sk_free(copy);
        return SK_ERR_NOMEM;
    }
    v[l->n++] = copy;
    l->v = v;
    return SK_OK;
}

static sk_err strlist_add(sk_strlist *l, const char *s)
{
    return sk_strlist_add(l, s, strlen(s));
}

static sk_err set_string(char **field, const char *s)
{
    char *copy = sk_strdup(s);
    if (!copy) return SK_ERR_NOMEM;
    sk_free(*field);
    *field = copy;
    return SK_OK;
}

sk_daemon_config *sk_daemon_config_new(void)
{
    sk_daemon_config *c = sk_calloc(1, sizeof *c);
    if (!c) return NULL;
    c->data_dir = sk_strdup("./var");
    c->log = sk_strdup("stderr");
    c->log_level = sk_strdup("info");
    c->log_format = sk_strdup("text");
    c->spool_sync = sk_strdup("log");
    if (!c->data_dir || !c->log || !c->log_level || !c->log_format || !c->spool_sync) {
        sk_daemon_config_free(c);
        return NULL;
    }
    c->max_message_size = SK_SERVER_MAX_MESSAGE_OCTETS_DEFAULT;
    c->greeting_timeout_ms = SK_TIMEOUT_GREETING_MS;
    c->command_timeout_ms = SK_TIMEOUT_SERVER_COMMAND_MS;
    c->data_timeout_ms = SK_TIMEOUT_DATA_BLOCK_MS;
    c->max_connections = SK_SERVER_MAX_CONNECTIONS_DEFAULT;
    c->max_connections_per_ip = SK_SERVER_MAX_CONNECTIONS_PER_IP_DEFAULT;
    c->max_recipients = SK_SMTP_RECIPIENTS_DEFAULT;
    c->mx_port = 25;
    c->max_queue_lifetime_ms = 5ull * 86400000;
    c->delay_warning_ms = SK_QUEUE_DELAY_WARNING_DEFAULT_MS;
    return c;
}

void sk_daemon_config_free(sk_daemon_config *c)
{
    if (!c) return;
    for (const sk_daemon_option *o = options; o->name; o++) {
        if (o->flag_only) continue;
        void *field = (char *)c + o->offset;
        if (o->kind == SK_DOPT_STRING) sk_free(*(char **)field);
        if (o->kind == SK_DOPT_LIST) sk_strlist_clear(field);
    }
    sk_free(c->relay_net);
    sk_free(c);
}

void sk_daemon_config_clear(sk_daemon_config *c, const char *key)
{
    const sk_daemon_option *o = sk_daemon_option_find(key);
    if (!o || o->flag_only) return;
    if (o->kind == SK_DOPT_LIST) sk_strlist_clear((sk_strlist *)((char *)c + o->offset));
    if (o->kind == SK_DOPT_NETS) {
        sk_free(c->relay_net);
        c->relay_net = NULL;
        c->n_relay_net = 0;
        c->relay_net_given = false;
    }
}

sk_err sk_daemon_parse_hostport(const char *s, char *host, size_t hostlen, unsigned *port)
{
    const char *colon;
    const char *h = s;
    size_t hl;
    if (*s == '[') {
        const char *close = strchr(s, ']');
        if (!close || close[1] != ':') return SK_ERR_SYNTAX;
        h = s + 1;
        hl = (size_t)(close - h);
        colon = close + 1;
    } else {
        colon = strrchr(s, ':');
        if (!colon) return SK_ERR_SYNTAX;
        hl = (size_t)(colon - s);
        /* An IPv6 literal needs brackets, or its last group reads as a port. */
        if (memchr(s, ':', hl)) return SK_ERR_SYNTAX;
    }
    if (hl == 0 || hl >= hostlen) return SK_ERR_SYNTAX;
    for (size_t i = 0; i < hl; i++)
        if (isspace((unsigned char)h[i]) || h[i] == '/' || h[i] == '[' || h[i] == ']')
            return SK_ERR_SYNTAX;
    const char *p = colon + 1;
    if (!isdigit((unsigned char)*p)) return SK_ERR_SYNTAX;
    char *end;
    errno = 0;
    unsigned long v = strtoul(p, &end, 10);
    if (errno || *end || v == 0 || v > 65535) return SK_ERR_SYNTAX;
    memcpy(host, h, hl);
    host[hl] = '\0';
    *port = (unsigned)v;
    return SK_OK;
}

sk_err sk_cidr_parse(const char *s, sk_cidr *out)
{
    char addr[INET6_ADDRSTRLEN];
    const char *slash = strchr(s, '/');
    size_t al = slash ? (size_t)(slash - s) : strlen(s);
    if (al == 0 || al >= sizeof addr) return SK_ERR_SYNTAX;
    memcpy(addr, s, al);
    addr[al] = '\0';
    sk_cidr c = {0};
    unsigned max;
    if (inet_pton(AF_INET, addr, c.addr) == 1) {
        c.family = AF_INET;
        max = 32;
    } else if (inet_pton(AF_INET6, addr, c.addr) == 1) {
        c.family = AF_INET6;
        max = 128;
    } else {
        return SK_ERR_SYNTAX;
    }
    c.prefix_bits = max;
    if (slash) {
        const char *p = slash + 1;
        if (!isdigit((unsigned char)*p)) return SK_ERR_SYNTAX;
        char *end;
        unsigned long v = strtoul(p, &end, 10);
        if (*end || v > max) return SK_ERR_SYNTAX;
        c.prefix_bits = (unsigned)v;
    }
    /* Host bits must be zero: "10.0.0.1/8" is more likely a typo than a
     * network. */
    for (unsigned bit = c.prefix_bits; bit < max; bit++)
        if (c.addr[bit / 8] & (0x80 >> (bit % 8))) return SK_ERR_SYNTAX;
    *out = c;
    return SK_OK;
}

static bool prefix_equal(const unsigned char *a, const unsigned char *b, unsigned bits)
{
    unsigned bytes = bits / 8;
    if (memcmp(a, b, bytes) != 0) return false;
    if (bits % 8 == 0) return true;
    unsigned char mask = (unsigned char)(0xff << (8 - bits % 8));
    return (a[bytes] & mask) == (b[bytes] & mask);
}

bool sk_cidr_match(const sk_cidr *nets, size_t n, const struct sockaddr *sa)
{
    unsigned char v4[4], v6[16];
    bool has4 = false, has6 = false;
    if (sa->sa_family == AF_INET) {
        memcpy(v4, &((const struct sockaddr_in *)sa)->sin_addr, 4);
        has4 = true;
    } else if (sa->sa_family == AF_INET6) {
        const struct in6_addr *a6 = &((const struct sockaddr_in6 *)sa)->sin6_addr;
        memcpy(v6, a6, 16);
        has6 = true;
        if (IN6_IS_ADDR_V4MAPPED(a6)) {
            memcpy(v4, v6 + 12, 4);
            has4 = true;
        }
    }
    for (size_t i = 0; i < n; i++) {
        if (nets[i].family == AF_INET && has4 &&
            prefix_equal(nets[i].addr, v4, nets[i].prefix_bits))
            return true;
        if (nets[i].family == AF_INET6 && has6 &&
            prefix_equal(nets[i].addr, v6, nets[i].prefix_bits))
            return true;
    }
    return false;
}

static sk_err bad(sk_error *err, const char *key, const char *fmt, ...) SK_PRINTF(3, 4);
static sk_err bad(sk_error *err, const char *key, const char *fmt, ...)
{
    char why[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    return sk_error_set(err, SK_ERR_CONFIG, SK_STEP_NONE, "%s: %s", key, why);
}

static sk_err parse_bool(const char *v, bool *out)
{
    static const char *const yes[] = {"yes", "true", "on", "1"};
    static const char *const no[] = {"no", "false", "off", "0"};
    for (size_t i = 0; i < 4; i++) {
        if (strcasecmp(v, yes[i]) == 0) {
            *out = true;
            return SK_OK;
        }
        if (strcasecmp(v, no[i]) == 0) {
            *out = false;
            return SK_OK;
        }
    }
    return SK_ERR_SYNTAX;
}

/* The queue's parsers start their messages with "rate limit: " and the
 * like; the option's own name says that already. */
static const char *after_prefix(const char *text)
{
    const char *colon = strstr(text, ": ");
    return colon ? colon + 2 : text;
}

/* Checks beyond the value's kind, by option. */
static sk_err check_value(const char *key, const char *v, sk_error *err)
{
    char host[256];
    unsigned port;
    if (!strcmp(key, "listen") || !strcmp(key, "submission") || !strcmp(key, "smtps") ||
        !strcmp(key, "relay-host") || !strcmp(key, "dns-server")) {
        if (sk_daemon_parse_hostport(v, host, sizeof host, &port))
            return bad(err, key, "\"%s\" is not HOST:PORT (IPv6 as [ADDR]:PORT)", v);
    } else if (!strcmp(key, "log")) {
        if (strcmp(v, "stderr") && strcmp(v, "syslog"))
            return bad(err, key, "\"%s\" is neither stderr nor syslog", v);
    } else if (!strcmp(key, "log-level")) {
        sk_log_level level;
        if (sk_log_level_parse(v, &level))
            return bad(err, key, "\"%s\" is not error, warning, info or debug", v);
    } else if (!strcmp(key, "log-format")) {
        if (strcmp(v, "text") && strcmp(v, "json"))
            return bad(err, key, "\"%s\" is neither text nor json", v);
    } else if (!strcmp(key, "spool-sync")) {
        if (strcmp(v, "log") && strcmp(v, "fs") && strcmp(v, "files"))
            return bad(err, key, "\"%s\" is not log, fs or files", v);
    } else if (!strcmp(key, "local-domain") || !strcmp(key, "hostname")) {
        size_t n = strlen(v);
        if (n == 0 || n > SK_SMTP_DOMAIN_MAX_OCTETS)
            return bad(err, key, "\"%s\" is not a domain name", v);
        for (size_t i = 0; i < n; i++) {
            unsigned char ch = (unsigned char)v[i];
            if (!(isalnum(ch) || ch == '-' || ch == '.' || ch >= 0x80))
                return bad(err, key, "\"%s\" is not a domain name", v);
        }
    } else if (!strcmp(key, "retry-schedule")) {
        char *copy = sk_strdup(v);
        if (!copy) return SK_ERR_NOMEM;
        sk_err e = SK_OK;
        char *save = NULL;
        int count = 0;
        for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
            uint64_t ms;
            if (sk_parse_duration_ms(t, &ms) || ms == 0) e = SK_ERR_SYNTAX;
            count++;
        }
        sk_free(copy);
        if (e || count == 0)
            return bad(err, key, "\"%s\" is not a list of durations like 1m,5m,1h", v);
    } else if (!strcmp(key, "rate-limit")) {
        sk_queue_rate_rule rule;
        sk_error why;
        if (sk_queue_rate_parse(v, &rule, &why)) return bad(err, key, "%s", after_prefix(why.text));
    } else if (!strcmp(key, "priority")) {
        sk_queue_priority_rule rule;
        sk_error why;
        if (sk_queue_priority_parse(v, &rule, &why))
            return bad(err, key, "%s", after_prefix(why.text));
    } else if (!strcmp(key, "group-destinations")) {
        if (strcmp(v, "provider") && strcmp(v, "domain"))
            return bad(err, key, "\"%s\" is neither provider nor domain", v);
    } else if (!strcmp(key, "tls-required")) {
        const char *dom = v[0] == '.' ? v + 1 : v;
        size_t n = strlen(dom);
        bool ok = n > 0 && n <= SK_SMTP_DOMAIN_MAX_OCTETS;
        for (size_t i = 0; ok && i < n; i++) {
            unsigned char ch = (unsigned char)dom[i];
            ok = isalnum(ch) || ch == '-' || ch == '.' || ch >= 0x80;
        }
        if (!ok) return bad(err, key, "\"%s\" is not a domain name", v);
    } else if (!strcmp(key, "webhook")) {
        char *buf;
        sk_webhook_endpoint ep;
        sk_error we;
        sk_err e = sk_webhook_spec_parse(v, &buf, &ep, &we);
        sk_free(buf);
        if (e) return bad(err, key, "%s", we.text);
    } else if (!strcmp(key, "dkim")) {
        /* The key file is read when the daemon starts (and on SIGHUP): an
         * unreadable or unusable one is a configuration error naming it. */
        char domain[SK_SMTP_DOMAIN_MAX_OCTETS + 1], selector[SK_SMTP_DOMAIN_MAX_OCTETS + 1];
        const char *file, *why = NULL;
        if (sk_daemon_dkim_spec_parse(v, domain, selector, &file, &why))
            return bad(err, key, "\"%s\" is not DOMAIN:SELECTOR:KEYFILE (%s)", v, why);
    } else if (!strcmp(key, "arc-seal")) {
        /* The key file is read when the daemon starts (exit 78 naming it)
         * and on SIGHUP. */
        char domain[SK_SMTP_DOMAIN_MAX_OCTETS + 1], selector[SK_SMTP_DOMAIN_MAX_OCTETS + 1];
        const char *file, *why = NULL;
        if (sk_daemon_dkim_spec_parse(v, domain, selector, &file, &why))
            return bad(err, key, "\"%s\" is not DOMAIN:SELECTOR:KEYFILE (%s)", v, why);
    } else if (!strcmp(key, "dmarc-policy")) {
        if (strcmp(v, "enforce") && strcmp(v, "report"))
            return bad(err, key, "\"%s\" is neither enforce nor report", v);
    } else if (!strcmp(key, "rules")) {
        /* Read the file now, so that a mistake in it stops the start with
         * its line number rather than surfacing at the first bounce. */
        sk_rules *r = NULL;
        sk_error why;
        if (sk_rules_load(v, &r, &why)) return bad(err, key, "%s", why.text);
        sk_rules_free(r);
    }
    return SK_OK;
}

sk_err sk_daemon_config_set(sk_daemon_config *c, const char *key, const char *value, sk_error *err)
{
    const sk_daemon_option *o = sk_daemon_option_find(key);
    if (!o) return bad(err, key, "unknown option");
    if (o->flag_only) return bad(err, key, "only valid on the command line");
    if (!value && o->kind != SK_DOPT_BOOL) return bad(err, key, "needs a value");
    void *field = (char *)c + o->offset;
    sk_err e = SK_OK;
    if (value && o->kind != SK_DOPT_BOOL && *value == '\0') return bad(err, key, "empty value");
    if (value) {
        e = check_value(key, value, err);
        if (e) return e;
    }
    switch (o->kind) {
    case SK_DOPT_STRING:
        e = set_string(field, value);
        break;
    case SK_DOPT_LIST:
        if (!strcmp(key, "local-domain")) {
            /* Lower-cased; a trailing dot names the same domain. */
            sk_strlist *list = field;
            size_t n = strlen(value);
            if (n > 1 && value[n - 1] == '.') n--;
            e = sk_strlist_add(list, value, n);
            if (!e) sk_ascii_lower(list->v[list->n - 1], n);
        } else {
            e = strlist_add(field, value);
        }
        break;
    case SK_DOPT_BOOL: {
        bool b = true;
        if (value && parse_bool(value, &b)) return bad(err, key, "\"%s\" is not yes or no", value);
        *(bool *)field = b;
        break;
    }
    case SK_DOPT_SIZE: {
        uint64_t n;
        if (sk_parse_size(value, &n) || n == 0)
            return bad(err, key, "\"%s\" is not a size (e.g. 10M, 512K)", value);
        *(uint64_t *)field = n;
        break;
    }
    case SK_DOPT_DURATION: {
        uint64_t ms;
        /* Only for delay-warning does 0 mean something: no delay DSN. */
        if (sk_parse_duration_ms(value, &ms) || (ms == 0 && strcmp(key, "delay-warning")))
            return bad(err, key, "\"%s\" is not a duration (e.g. 30s, 5m, 1h)", value);
        *(uint64_t *)field = ms;
        break;
    }
    case SK_DOPT_COUNT: {
        char *end;
        errno = 0;
        unsigned long n = isdigit((unsigned char)*value) ? strtoul(value, &end, 10) : 0;
        unsigned long max = strcmp(key, "mx-port") ? 1000000ul : 65535ul;
        if (!isdigit((unsigned char)*value) || errno || *end || n == 0 || n > max) {
            return bad(err, key, "\"%s\" is not a number from 1 to %lu", value, max);
        }
        *(unsigned *)field = (unsigned)n;
        break;
    }
    case SK_DOPT_NETS: {
        if (!c->relay_net_given) {
            c->n_relay_net = 0;
            c->relay_net_given = true;
        }
        if (!strcmp(value, "none")) break;
        sk_cidr net;
        if (sk_cidr_parse(value, &net))
            return bad(err, key, "\"%s\" is not a network like 10.0.0.0/8 or ::1", value);
        sk_cidr *v = sk_realloc(c->relay_net, (c->n_relay_net + 1) * sizeof *v);
        if (!v) return SK_ERR_NOMEM;
        v[c->n_relay_net++] = net;
        c->relay_net = v;
        break;
    }
    }
    if (e == SK_ERR_NOMEM) return sk_error_set(err, e, SK_STEP_NONE, "out of memory");
    return e;
}

/* inih hands us lines through this reader so that we know the line number
 * of every key (the Debian build has no INI_HANDLER_LINENO). Leading
 * blanks are removed so that no line is taken as the continuation of the
 * previous value. Lines inih would take but we do not use are refused here,
 * with their own line number: a section header (inih reports nothing for
 * one without keys after it) and "key: value" (inih's other separator). */
typedef struct load_ctx {
    FILE *f;
    sk_daemon_config *c;
    const char *path;
    int line;
    int err_line;
    sk_err err;
    sk_error detail;
} load_ctx;

static void load_fail(load_ctx *x, sk_err e, const sk_error *detail, const char *why)
{
    if (x->err) return; /* the first error is the one reported */
    x->err = e;
    x->err_line = x->line;
    if (detail)
        x->detail = *detail;
    else
        sk_error_set(&x->detail, e, SK_STEP_NONE, "%s", why);
}

static char *load_reader(char *str, int num, void *stream)
{
    load_ctx *x = stream;
    char *line = NULL;
    size_t cap = 0;
    ssize_t n = getline(&line, &cap, x->f);
    if (n < 0) {
        free(line);
        return NULL;
    }
    x->line++;
    char *p = line;
    while (*p == ' ' || *p == '\t') p++;
    size_t len = strlen(p);
    if (len != (size_t)(n - (p - line))) load_fail(x, SK_ERR_CONFIG, NULL, "NUL octet in line");
    if (len + 1 >= (size_t)num) {
        load_fail(x, SK_ERR_CONFIG, NULL, "line too long");
        p = "\n";
        len = 1;
    }
    char why[128];
    if (*p == '[') {
        int hl = (int)strcspn(p, "\r\n");
        snprintf(why, sizeof why, "sections are not used (%.*s); keys go at the top level",
                 hl > 64 ? 64 : hl, p);
        load_fail(x, SK_ERR_CONFIG, NULL, why);
        p = "\n";
        len = 1;
    } else if (*p != '#' && *p != ';' && p[strspn(p, " \t\r\n")] != '\0' &&
               p[strcspn(p, "=:")] != '=') {
        load_fail(x, SK_ERR_CONFIG, NULL, "expected \"key = value\" or a comment");
        p = "\n";
        len = 1;
    }
    memcpy(str, p, len + 1);
    free(line);
    return str;
}

/* "unknown key 'lisen' (did you mean 'listen'?)": the nearest key that the
 * file may set. */
static void unknown_key(load_ctx *x, const char *name, const char *key)
{
    const char *names[sizeof options / sizeof options[0]];
    size_t n = 0;
    for (const sk_daemon_option *o = options; o->name; o++)
        if (!o->flag_only) names[n++] = o->name;
    names[n] = NULL;
    const char *near = sk_nearest(key, names);
    char why[256];
    if (near)
        snprintf(why, sizeof why, "unknown key '%.64s' (did you mean '%s'?)", name, near);
    else
        snprintf(why, sizeof why, "unknown key '%.64s'", name);
    load_fail(x, SK_ERR_CONFIG, NULL, why);
}

static int load_handler(void *user, const char *section, const char *name, const char *value)
{
    load_ctx *x = user;
    (void)section; /* always "": the reader refuses section headers */
    /* Also accept "--key" and "key_name" spellings. */
    char key[64];
    const char *k = name;
    while (*k == '-') k++;
    size_t kl = strlen(k);
    if (kl >= sizeof key) kl = sizeof key - 1;
    for (size_t i = 0; i < kl; i++) key[i] = k[i] == '_' ? '-' : (char)tolower((unsigned char)k[i]);
    key[kl] = '\0';
    if (!sk_daemon_option_find(key)) {
        unknown_key(x, name, key);
        return 0;
    }
    sk_error detail;
    sk_err e = sk_daemon_config_set(x->c, key, value, &detail);
    if (e) {
        load_fail(x, e, &detail, NULL);
        return 0;
    }
    return 1;
}

sk_err sk_daemon_config_load(sk_daemon_config *c, const char *path, sk_error *err)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return sk_error_set(err, SK_ERR_CONFIG, SK_STEP_NONE, "%s: cannot open: %s", path,
                            strerror(errno));
    load_ctx x = {.f = f, .c = c, .path = path};
    int r = ini_parse_stream(load_reader, &x, load_handler, &x);
    int read_error = ferror(f);
    fclose(f);
    if (read_error) return sk_error_set(err, SK_ERR_CONFIG, SK_STEP_NONE, "%s: read error", path);
    if (x.err)
        return sk_error_set(err, SK_ERR_CONFIG, SK_STEP_NONE, "%s:%d: %s", path, x.err_line,
                            x.detail.text);
    if (r > 0)
        return sk_error_set(err, SK_ERR_CONFIG, SK_STEP_NONE,
                            "%s:%d: expected \"key = value\" or a comment", path, r);
    if (r < 0) return sk_error_set(err, SK_ERR_CONFIG, SK_STEP_NONE, "%s: cannot read", path);
    return SK_OK;
}

sk_err sk_daemon_config_finish(sk_daemon_config *c, sk_error *err)
{
    sk_err e = SK_OK;
    if (c->listen.n == 0 && c->submission.n == 0 && c->smtps.n == 0)
        e = strlist_add(&c->listen, "127.0.0.1:2525");
    if (!e && c->local_domain.n == 0) e = strlist_add(&c->local_domain, "localhost");
    if (!e && !c->relay_net_given) {
        static const char *const defaults[] = {"127.0.0.0/8", "::1"};
        sk_free(c->relay_net);
        c->relay_net = sk_calloc(2, sizeof *c->relay_net);
        if (!c->relay_net) {
            e = SK_ERR_NOMEM;
        } else {
            for (size_t i = 0; i < 2; i++)
                if (sk_cidr_parse(defaults[i], &c->relay_net[i])) return SK_ERR_INVAL;
            c->n_relay_net = 2;
        }
    }
    if (e) return sk_error_set(err, e, SK_STEP_NONE, "out of memory");
    if (!c->tls_cert != !c->tls_key)
        return sk_error_set(err, SK_ERR_CONFIG, SK_STEP_NONE,
                            "tls-cert and tls-key go together: set both or neither");
    if (c->smtps.n && !c->tls_cert)
        return sk_error_set(err, SK_ERR_CONFIG, SK_STEP_NONE,
                            "smtps needs a certificate: set tls-cert and tls-key");
    if (c->http_tls && (!c->http || !c->tls_cert))
        return sk_error_set(err, SK_ERR_CONFIG, SK_STEP_NONE,
                            "http-tls needs http and a certificate: set tls-cert and tls-key");
    if (c->submission.n && !c->users)
        return sk_error_set(err, SK_ERR_CONFIG, SK_STEP_NONE,
                            "submission requires AUTH: set users (a \"user:HASH\" file)");
    return SK_OK;
}

sk_err sk_daemon_config_build(const char *path, const sk_daemon_setting *flags, size_t n_flags,
                              sk_daemon_config **out, sk_error *err)
{
    sk_daemon_config *c = sk_daemon_config_new();
    if (!c) return sk_error_set(err, SK_ERR_NOMEM, SK_STEP_NONE, "out of memory");
    sk_err e = path ? sk_daemon_config_load(c, path, err) : SK_OK;
    /* A list option given as a flag replaces the file's values: clear each
     * such list once, before its first flag. */
    for (size_t i = 0; !e && i < n_flags; i++) {
        bool first = true;
        for (size_t j = 0; j < i; j++)
            if (!strcmp(flags[j].key, flags[i].key)) first = false;
        if (first) sk_daemon_config_clear(c, flags[i].key);
        e = sk_daemon_config_set(c, flags[i].key, flags[i].value, err);
        if (e && err && e == SK_ERR_CONFIG) {
            /* Name the flag as it was typed. */
            size_t n = strnlen(err->text, sizeof err->text - 3);
            memmove(err->text + 2, err->text, n);
            memcpy(err->text, "--", 2);
            err->text[n + 2] = '\0';
        }
    }
    if (!e) e = sk_daemon_config_finish(c, err);
    if (e) {
        sk_daemon_config_free(c);
        return e;
    }
    *out = c;
    return SK_OK;
}
