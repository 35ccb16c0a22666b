/* The mail daemon behind `smtpkit serve`: its configuration (command-line
 * flags and a key = value file with the same names) and its life cycle. */
#ifndef SMTPKIT_DAEMON_H
#define SMTPKIT_DAEMON_H

#include <stdbool.h>
#include <sys/socket.h>

#include "util.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A list of strings (repeatable options). */
typedef struct sk_strlist {
    char **v;
    size_t n;
} sk_strlist;

/* A network in CIDR notation ("10.0.0.0/8", "::1"). */
typedef struct sk_cidr {
    int family; /* AF_INET or AF_INET6 */
    unsigned char addr[16];
    unsigned prefix_bits;
} sk_cidr;

/* Everything `smtpkit serve` can be told. Every field is an option of the
 * same name (underscores for dashes); see sk_daemon_options. */
typedef struct sk_daemon_config {
    sk_strlist listen;     /* "ADDR:PORT", plain SMTP (STARTTLS with a cert) */
    sk_strlist submission; /* AUTH required before MAIL (RFC 6409) */
    sk_strlist smtps;      /* implicit TLS submission (RFC 8314) */
    char *hostname;
    char *data_dir;
    char *tls_cert, *tls_key;
    char *users;             /* "user:HASH" file */
    sk_strlist local_domain; /* lower-cased */
    char *local_recipients;  /* file, one address a line */
    char *relay_host;        /* "HOST:PORT" or NULL */
    sk_cidr *relay_net;      /* networks that may relay without AUTH */
    size_t n_relay_net;
    uint64_t max_message_size; /* octets */
    bool hold;
    /* AUTH without TLS for clients on 127.0.0.0/8 and ::1. Off by default:
     * behind a local proxy or port forwarder every client is on loopback. */
    bool auth_plaintext_loopback;
    uint64_t greeting_timeout_ms, command_timeout_ms, data_timeout_ms;
    char *user; /* drop privileges to this user after binding */
    char *log;  /* "stderr" or "syslog" */
    /* Events up to this level are logged: "error", "warning", "info" or
     * "debug" (sk_log_level_parse); lines as "text" or "json". */
    char *log_level, *log_format;
    /* "fs": one syncfs(2) per group commit; "files": fdatasync(2) of each
     * message file and fsync(2) of the directory (docs/queue.md). */
    char *spool_sync;
    unsigned max_connections, max_connections_per_ip, max_recipients;
    bool print_usage;
    /* The queue's retry schedule ("1m,5m,1h") and lifetime. */
    char *retry_schedule;
    uint64_t max_queue_lifetime_ms;
    /* One delay DSN once a message has waited this long; 0 = none. */
    uint64_t delay_warning_ms;
    /* Delivery by MX (when there is no relay_host): the resolver
     * ("IP:PORT", NULL = the system's) and the port of MX hosts. */
    char *dns_server;
    unsigned mx_port;
    /* Scheduling (docs/queue.md): "DEST=N/UNIT" and "default=N/UNIT";
     * "auth:USER=N", "user@dom=N", "dom=N"; limits per destination. */
    sk_strlist rate_limit;
    sk_strlist priority;
    unsigned destination_connections, messages_per_connection; /* 0 = queue default */
    char *group_destinations;                                  /* "provider" or "domain" */
    sk_strlist tls_required;                                   /* domains, ".dom" subdomains */
    char *rules;                  /* classification and traffic rules; NULL = built in */
    uint64_t throttle_suspend_ms; /* 0 = queue default */
    /* Bounces: VERP envelope senders for relayed mail, and how long a hard
     * bounce suppresses its recipient (0 = SK_SUPPRESS_DURATION_S_DEFAULT). */
    bool verp;
    uint64_t suppress_for_ms;
    /* Was --relay-net given ("none" gives an empty list)? Otherwise the
     * default networks apply. */
    bool relay_net_given;
    /* Authenticated mail (docs/authentication.md "In smtpkit serve"):
     * DKIM keys "DOMAIN:SELECTOR:KEYFILE" that sign mail from
     * authenticated users and relay networks; what DMARC failures of mail
     * from outside get ("enforce" or "report"; NULL = report); SPF fail
     * refused on its own. */
    sk_strlist dkim;
    char *dmarc_policy;
    bool spf_reject_fail;
    /* "DOMAIN:SELECTOR:KEYFILE": the key that adds an ARC set (RFC 8617)
     * to mail from outside once it is checked; NULL = no sealing. */
    char *arc_seal;
    /* The HTTP API (docs/http-api.md): "ADDR:PORT" (NULL: off), over TLS
     * with tls_cert/tls_key, and its limits (0: the defaults of limits.h). */
    char *http;
    bool http_tls;
    uint64_t http_max_request_size, http_max_header_size, http_request_timeout_ms;
    unsigned http_max_requests, http_queue_limit, http_max_connections;
    bool http_metrics_public;
    /* Webhooks (docs/webhooks.md): "URL SECRET [EVENTS]" endpoints that
     * tracking events are POSTed to, read at start; how long an event is
     * retried (0 = 3 days). */
    sk_strlist webhook;
    uint64_t webhook_max_age_ms;
} sk_daemon_config;

/* What an option takes. */
typedef enum sk_daemon_opt_kind {
    SK_DOPT_STRING,
    SK_DOPT_LIST, /* repeatable */
    SK_DOPT_BOOL, /* a flag on the command line; yes/no/true/false/1/0 in the file */
    SK_DOPT_SIZE,
    SK_DOPT_DURATION,
    SK_DOPT_COUNT,
    SK_DOPT_NETS /* repeatable CIDR networks */
} sk_daemon_opt_kind;

/* One row per option: the long flag without its dashes is also the
 * config-file key. */
typedef struct sk_daemon_option {
    const char *name;
    sk_daemon_opt_kind kind;
    const char *arg;  /* placeholder for --help, NULL for flags */
    const char *help; /* one line */
    bool flag_only;   /* command line only (config) */
    size_t offset;    /* where the value lives in sk_daemon_config */
} sk_daemon_option;

/* The option table, terminated by a row with name NULL. */
const sk_daemon_option *sk_daemon_options(void);
const sk_daemon_option *sk_daemon_option_find(const char *name);

/* A configuration holding the embedded defaults: 127.0.0.1:2525, data
 * under ./var, local domain localhost, relaying only from loopback. */
sk_daemon_config *sk_daemon_config_new(void);
void sk_daemon_config_free(sk_daemon_config *c);

/* Set option key (its long name) to value: lists append, everything else
 * replaces. value is NULL for a flag given without argument. Errors are
 * SK_ERR_CONFIG with the reason in err->text. */
SK_NODISCARD sk_err sk_daemon_config_set(sk_daemon_config *c, const char *key, const char *value,
                                         sk_error *err);
/* Forget what was set for a list option (so the command line can replace
 * what the file said). */
void sk_daemon_config_clear(sk_daemon_config *c, const char *key);
/* Read a config file: "key = value" lines, '#' or ';' comments, no
 * sections. The first error is reported as "FILE:LINE: reason". */
SK_NODISCARD sk_err sk_daemon_config_load(sk_daemon_config *c, const char *path, sk_error *err);
/* Checks that concern several options (a key needs a certificate, smtps
 * needs a certificate, ...), and fills in defaults for lists left empty. */
SK_NODISCARD sk_err sk_daemon_config_finish(sk_daemon_config *c, sk_error *err);

/* A flag from the command line. */
typedef struct sk_daemon_setting {
    const char *key;
    const char *value;
} sk_daemon_setting;

/* The whole configuration: defaults, then the file (if path is not NULL),
 * then the flags, which override the file (a repeated option given as a
 * flag replaces the file's list). */
SK_NODISCARD sk_err sk_daemon_config_build(const char *path, const sk_daemon_setting *flags,
                                           size_t n_flags, sk_daemon_config **out, sk_error *err);

/* Parse "ADDR:PORT", "[v6]:PORT" or "HOST:PORT" into host (without
 * brackets, at most hostlen-1 octets) and port. */
SK_NODISCARD sk_err sk_daemon_parse_hostport(const char *s, char *host, size_t hostlen,
                                             unsigned *port);
SK_NODISCARD sk_err sk_cidr_parse(const char *s, sk_cidr *out);
/* Is the address sa inside one of the networks? IPv4-mapped IPv6
 * addresses match IPv4 networks. */
bool sk_cidr_match(const sk_cidr *nets, size_t n, const struct sockaddr *sa);

/* The running daemon. */
typedef struct sk_daemon sk_daemon;

/* Build the configuration as sk_daemon_config_build does (it is built the
 * same way again on SIGHUP), open the data directory, spool, and bind the
 * listeners; drop privileges when the config names a user. Logs go to
 * log: the caller decides where they go, up to which level and in which
 * shape from sk_daemon_config.log, log_level and log_format. */
SK_NODISCARD sk_err sk_daemon_new(const char *config_path, const sk_daemon_setting *flags,
                                  size_t n_flags, const sk_logger *log, sk_daemon **out,
                                  sk_error *err);
/* The port the i-th listener is bound to (listen, then submission, then
 * smtps, in the order given); 0 when there is no such listener. */
int sk_daemon_port(const sk_daemon *d, size_t i);
/* The configuration in effect. */
const sk_daemon_config *sk_daemon_get_config(const sk_daemon *d);
/* Run until SIGTERM or SIGINT (then: stop accepting, finish the sessions
 * in flight, return SK_OK). SIGHUP reloads the configuration. From
 * sk_daemon_new to sk_daemon_run the calling thread (and every thread the
 * daemon starts) has SIGTERM, SIGINT and SIGHUP blocked; one sent then is
 * handled once the loop runs. */
SK_NODISCARD sk_err sk_daemon_run(sk_daemon *d, sk_error *err);
/* Stop: the calling thread keeps SIGTERM, SIGINT and SIGHUP blocked from
 * here on, so one sent while stopping does not end the process. */
void sk_daemon_free(sk_daemon *d);

#ifdef __cplusplus
}
#endif
#endif
