/* The SMTP transport: routes a remote domain through DNS on the loop (or
 * takes the fixed relay route), then delivers in worker threads to its
 * hosts in order (RFC 5321 section 5), reusing connections per destination. */
#include "mx.h"

#include "deliver/deliver_int.h"

#include <smtpkit/client.h>
#include <smtpkit/dsn.h>

#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ---- pure parts ---- */

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

sk_err sk_mx_destination_key(const sk_route *route, sk_buf *out)
{
    sk_buf_reset(out);
    if (!route) return SK_ERR_INVAL;
    if (route->status != SK_ROUTE_OK || route->nhosts == 0 || route->implicit_mx) {
        sk_err e = sk_buf_puts(out, route->domain ? route->domain : "");
        for (size_t i = 0; !e && i < out->len; i++)
            if (out->data[i] >= 'A' && out->data[i] <= 'Z') out->data[i] += 'a' - 'A';
        return e;
    }
    char **names = sk_calloc(route->nhosts, sizeof *names);
    if (!names) return SK_ERR_NOMEM;
    sk_err e = SK_OK;
    size_t n = 0;
    for (size_t i = 0; !e && i < route->nhosts; i++) {
        const char *h = route->hosts[i].name;
        size_t len = strlen(h);
        while (len && h[len - 1] == '.') len--; /* "mx.example." is "mx.example" */
        names[n] = sk_strndup(h, len);
        if (!names[n]) {
            e = SK_ERR_NOMEM;
            break;
        }
        for (char *p = names[n]; *p; p++)
            if (*p >= 'A' && *p <= 'Z') *p += 'a' - 'A';
        n++;
    }
    if (!e) qsort(names, n, sizeof *names, cmp_str);
    for (size_t i = 0; !e && i < n; i++) {
        /* A host listed twice (at two preferences) counts once. */
        if (i > 0 && strcmp(names[i], names[i - 1]) == 0) continue;
        if (out->len) e = sk_buf_putc(out, ',');
        if (!e) e = sk_buf_puts(out, names[i]);
    }
    for (size_t i = 0; i < n; i++) sk_free(names[i]);
    sk_free(names);
    return e;
}

int sk_mx_tls_required(const char *const *list, size_t n, const char *domain)
{
    if (!domain) return 0;
    size_t dl = strlen(domain);
    while (dl && domain[dl - 1] == '.') dl--;
    for (size_t i = 0; i < n; i++) {
        const char *entry = list[i];
        if (!entry || !*entry) continue;
        size_t el = strlen(entry);
        if (entry[0] == '.') {
            /* ".example.com": any subdomain, not example.com itself. */
            if (dl > el && strncasecmp(domain + dl - el, entry, el) == 0) return 1;
        } else if (dl == el && strncasecmp(domain, entry, el) == 0) {
            return 1;
        }
    }
    return 0;
}

int sk_mx_route_failure(const sk_route *route, sk_reply *out)
{
    const char *d = route->domain ? route->domain : "";
    /* The resolver's own status wins (e.g. 5.1.2 for a domain with
     * neither MX nor address); these are the defaults. */
    const char *def = "4.4.3";
    int code = 550;
    switch (route->status) {
    case SK_ROUTE_OK:
        return 0;
    case SK_ROUTE_NULL_MX:
        def = "5.1.10";
        break;
    case SK_ROUTE_NXDOMAIN:
        def = "5.1.2";
        break;
    case SK_ROUTE_NO_ADDRESS:
        def = "5.4.4";
        break;
    case SK_ROUTE_TEMPFAIL:
    default:
        code = 451;
        break;
    }
    const char *enh = route->enhanced[0] && route->enhanced[0] == def[0] ? route->enhanced : def;
    if (route->status == SK_ROUTE_NULL_MX)
        /* RFC 7505 3: the domain declares that it accepts no mail. */
        *out = sk_reply_make(code, enh, "%s does not accept mail (null MX)", d);
    else if (route->status == SK_ROUTE_NXDOMAIN)
        *out = sk_reply_make(code, enh, "domain not found: %s", d);
    else if (route->status == SK_ROUTE_NO_ADDRESS)
        *out = sk_reply_make(code, enh, "no address for the mail hosts of %s%s%s", d,
                             route->text[0] ? ": " : "", route->text);
    else if (route->text[0])
        /* The resolver's text names the lookup, its servers and why. */
        *out = sk_reply_make(code, enh, "%s", route->text);
    else
        *out = sk_reply_make(code, enh, "DNS lookup for %s failed", d);
    return 1;
}

sk_reply sk_mx_tally_reply(const sk_mx_tally *t, const char *domain)
{
    if (t->hosts > 0 && t->hosts_5xx == t->hosts)
        return sk_reply_make(t->last_5xx.code,
                             t->last_5xx.enhanced[0] ? t->last_5xx.enhanced : "5.0.0", "%s",
                             t->last_error);
    if (t->hosts > 0 && t->hosts_tls == t->hosts) /* RFC 5248 registry: X.7.10 encryption needed. */
        return sk_reply_make(451, "4.7.10", "TLS required for %s: %s", domain, t->last_error);
    /* RFC 3463: X.4.1 no answer from host. */
    return sk_reply_make(451, "4.4.1", "no mail host of %s took the message: %s", domain,
                         t->last_error[0] ? t->last_error : "no host tried");
}

/* ---- the transport ---- */

typedef struct mx mx;

typedef struct mx_job {
    struct mx_job *next;
    uint64_t generation; /* results of an older generation were cancelled */
    mx *owner;           /* NULL: orphaned lookup (the transport is gone) */
    /* Copies: the queue's sk_delivery may be gone once a job is cancelled. */
    char *queue_id;
    char *domain;
    char *sender;
    char **rcpts;
    size_t nrcpts;
    char *body_path;
    uint64_t body_octets; /* the body is this much of the file (docs/queue.md) */
    char *received;       /* our Received: header, built on the loop thread */
    unsigned max_per_conn;
    bool tls_required;
    sk_send_opts send_opts; /* RFC 6710 MT-PRIORITY, RFC 3461 RET and ENVID passed on */
    /* RFC 3461 5.2.1: per recipient the NOTIFY and ORCPT passed on. */
    sk_rcpt_spec *specs;
    char (*notify)[SK_DSN_NOTIFY_TEXT_SIZE];
    char **orcpt;
    char envid[SK_DSN_ENVID_MAX_OCTETS + 1];
    int next_hop_dsn; /* the host announced DSN and got the parameters */
    sk_route *route;
    char *key;
    sk_delivery_done_fn done;
    void *ctx;
    sk_delivery_rcpt_result *results;
    char remote_host[320];
    char tls[96]; /* "" = plain */
    int tls_verified;
} mx_job;

/* An open session to one host of a destination, idle in the pool or in
 * use by one worker. */
typedef struct mx_conn {
    struct mx_conn *next;
    char *key;
    sk_client *c;
    unsigned messages;
    uint64_t idle_until_ms;
    char remote_host[320];
    char tls[96];
    int tls_verified;
} mx_conn;

/* A route_key request waiting for DNS. */
typedef struct mx_keyreq {
    struct mx_keyreq *next;
    mx *owner; /* NULL: orphaned */
    uint64_t generation;
    sk_route_key_fn cb;
    void *ctx;
    char *domain;
} mx_keyreq;

struct mx {
    sk_transport t; /* first: the queue sees only this */
    sk_resolver *resolver;
    bool own_resolver;
    char *helo_name;
    char *ca_file;
    char *relay_host; /* NULL: MX routing */
    char **tls_required;
    size_t ntls_required;
    unsigned short port;
    unsigned idle_ms, max_per_conn, connect_timeout_ms, greeting_timeout_ms, command_timeout_ms;
    sk_logger log;

    struct event_base *base;
    struct event *wake;
    int pipe_fd[2];
    /* Loop thread only: lookups in flight (for cancel and free). */
    mx_job *lookups;
    mx_keyreq *keyreqs;

    pthread_mutex_t mu;
    pthread_cond_t cond;
    mx_job *pending, *pending_tail;
    mx_job *finished;
    mx_conn *idle; /* newest first */
    size_t nidle, max_idle;
    uint64_t generation;
    bool stopping;
    pthread_t *threads;
    size_t nthreads;
};

static void conn_free(mx_conn *k, bool quit)
{
    if (!k) return;
    if (quit) (void)sk_client_quit(k->c, NULL);
    sk_client_free(k->c);
    sk_free(k->key);
    sk_free(k);
}

static void job_free(mx_job *j)
{
    if (!j) return;
    sk_free(j->queue_id);
    sk_free(j->domain);
    sk_free(j->sender);
    for (size_t i = 0; j->rcpts && i < j->nrcpts; i++) sk_free(j->rcpts[i]);
    sk_free(j->rcpts);
    for (size_t i = 0; j->orcpt && i < j->nrcpts; i++) sk_free(j->orcpt[i]);
    sk_free(j->orcpt);
    sk_free(j->notify);
    sk_free(j->specs);
    sk_free(j->body_path);
    sk_free(j->received);
    sk_route_free(j->route);
    sk_free(j->key);
    sk_free(j->results);
    sk_free(j);
}

/* A recipient's outcome from the class of its reply (reply.h computes
 * classes). Anything short of a final 2xx or 5xx, such as no reply at all,
 * is worth another try. */
static sk_delivery_status status_of(int code)
{
    switch (sk_reply_class_of(code)) {
    case SK_REPLY_SUCCESS:
        return SK_DELIVERY_OK;
    case SK_REPLY_PERMANENT:
        return SK_DELIVERY_PERMANENT;
    default:
        return SK_DELIVERY_TRANSIENT;
    }
}

/* A 4xx or 5xx: the host said no (0, no reply, is not a refusal). */
static bool refused(int code)
{
    sk_reply_class c = sk_reply_class_of(code);
    return c == SK_REPLY_TRANSIENT || c == SK_REPLY_PERMANENT;
}

static void fill_all(mx_job *j, const sk_reply *reply)
{
    for (size_t i = 0; i < j->nrcpts; i++) {
        j->results[i].status = status_of(reply->code);
        j->results[i].reply = *reply;
    }
}

/* Hand a job's results to the queue (loop thread). */
static void job_finish(mx_job *j)
{
    sk_delivery_result res = {
        .rcpts = j->results,
        .nrcpts = j->nrcpts,
        .remote_host = j->remote_host[0] ? j->remote_host : NULL,
        .tls = j->tls[0] ? j->tls : NULL,
        .tls_verified = j->tls_verified,
        .destination = j->key,
        .next_hop_dsn = j->next_hop_dsn,
    };
    j->done(j->ctx, &res);
}

/* RFC 5321 4.4: a relay adds its Received: line at the top. */
static char *received_header(const mx *m, const sk_delivery *job)
{
    sk_buf b = SK_BUF_INIT(4096);
    if (sk_deliver_received(job->env, job->queue_id, m->helo_name,
                            job->nrcpts == 1 ? job->rcpts[0].addr : NULL, (int64_t)time(NULL),
                            "\r\n", &b)) {
        sk_buf_free(&b);
        return NULL;
    }
    return sk_buf_detach(&b, NULL);
}

static sk_err read_message(const mx_job *j, sk_buf *out, sk_error *err)
{
    int fd = open(j->body_path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return sk_error_set(err, SK_ERR_IO, SK_STEP_DATA, "cannot open %s: %s", j->body_path,
                            strerror(errno));
    sk_err e = j->body_octets < SIZE_MAX / 2 ? SK_OK : SK_ERR_TOO_LONG;
    size_t hl = strlen(j->received);
    size_t total = hl + (size_t)(e ? 0 : j->body_octets);
    if (!e) {
        sk_buf_init(out, total);
        e = sk_buf_reserve(out, total);
    }
    if (!e) e = sk_buf_append(out, j->received, hl);
    while (!e && out->len < total) {
        ssize_t n = read(fd, out->data + out->len, total - out->len);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) e = SK_ERR_IO; /* an error, or shorter than recorded */
        if (n <= 0) break;
        out->len += (size_t)n;
    }
    close(fd);
    if (e) {
        sk_buf_free(out);
        return sk_error_set(err, e, SK_STEP_DATA, "cannot read %s", j->body_path);
    }
    out->data[out->len] = '\0';
    return SK_OK;
}

/* "mx.example.net[192.0.2.1]:25"; "[192.0.2.1]:25" for an address literal. */
static void host_label(char *out, size_t n, const char *name, const char *ip, unsigned port)
{
    if (name[0] == '[')
        snprintf(out, n, "[%s]:%u", ip, port);
    else
        snprintf(out, n, "%s[%s]:%u", name, ip, port);
}

static void record_tls(const sk_client *c, char *tls, size_t n, int *verified)
{
    const sk_tls_info *ti = sk_client_tls_info(c);
    if (ti && ti->active) {
        snprintf(tls, n, "%s %s", ti->version, ti->cipher);
        *verified = ti->verified;
    } else {
        tls[0] = '\0';
        *verified = 0;
    }
}

/* Open a session with the first host of the route that takes one (RFC
 * 5321 5.1): hosts in the resolver's order, each host's addresses in
 * turn. NULL when none did; tally says why. */
static mx_conn *connect_route(mx *m, const mx_job *j, sk_mx_tally *tally)
{
    const sk_route *r = j->route;
    for (size_t h = 0; h < r->nhosts; h++) {
        const sk_mx_host *host = &r->hosts[h];
        bool refused_5xx = false, tls_failed = false;
        tally->hosts++;
        if (host->naddrs == 0 && !m->relay_host) {
            snprintf(tally->last_host, sizeof tally->last_host, "%.255s", host->name);
            snprintf(tally->last_error, sizeof tally->last_error, "%s: no address (%s)", host->name,
                     sk_dns_status_name(host->status));
        }
        /* The relay host of a fixed route has no addresses: the client
         * resolves its name (one attempt, on whichever address answers). */
        size_t naddrs = host->naddrs ? host->naddrs : m->relay_host ? 1 : 0;
        for (size_t a = 0; a < naddrs; a++) {
            const char *ip = host->naddrs ? host->addrs[a].ip : NULL;
            char label[320];
            if (ip)
                host_label(label, sizeof label, host->name, ip, m->port);
            else
                snprintf(label, sizeof label, strchr(host->name, ':') ? "[%.255s]:%u" : "%.255s:%u",
                         host->name, (unsigned)m->port);
            snprintf(tally->last_host, sizeof tally->last_host, "%s", label);
            sk_tls_mode mode = j->tls_required ? SK_TLS_STARTTLS : SK_TLS_STARTTLS_OPPORTUNISTIC;
            for (int pass = 0; pass < 2; pass++) {
                sk_client_opts o = {
                    .host = host->name,
                    .port = m->port,
                    .tls = mode,
                    .ca_file = m->ca_file,
                    .connect_address = ip,
                    .helo_name = m->helo_name,
                    .connect_timeout_ms = m->connect_timeout_ms,
                    .greeting_timeout_ms = m->greeting_timeout_ms,
                    .command_timeout_ms = m->command_timeout_ms,
                    .log = m->log,
                };
                sk_client *c = sk_client_new(&o);
                if (!c) {
                    snprintf(tally->last_error, sizeof tally->last_error, "out of memory");
                    return NULL;
                }
                sk_error err;
                sk_error_clear(&err);
                if (sk_client_connect(c, &err) == SK_OK) {
                    mx_conn *k = sk_calloc(1, sizeof *k);
                    if (k) k->key = sk_strdup(j->key);
                    if (!k || !k->key) {
                        sk_free(k);
                        sk_client_free(c);
                        snprintf(tally->last_error, sizeof tally->last_error, "out of memory");
                        return NULL;
                    }
                    k->c = c;
                    if (!ip)
                        host_label(label, sizeof label, host->name, sk_client_remote_address(c),
                                   m->port);
                    snprintf(k->remote_host, sizeof k->remote_host, "%s", label);
                    record_tls(c, k->tls, sizeof k->tls, &k->tls_verified);
                    sk_log(&m->log, SK_LOG_INFO, "%s %s connected host=%s tls=\"%s\" verified=%s",
                           j->queue_id, m->t.name, label, k->tls[0] ? k->tls : "none",
                           k->tls_verified ? "yes" : "no");
                    return k;
                }
                sk_client_free(c);
                if (err.code)
                    snprintf(tally->last_error, sizeof tally->last_error, "%s: %s: %d %s%s%.600s",
                             label, sk_step_name(err.step), err.code, err.enhanced,
                             err.enhanced[0] ? " " : "", err.text);
                else
                    snprintf(tally->last_error, sizeof tally->last_error, "%s: %s: %.600s", label,
                             sk_step_name(err.step), err.text[0] ? err.text : sk_strerror(err.err));
                sk_log(&m->log, SK_LOG_WARN, "%s %s connect-failed host=%s step=%s error=\"%s\"",
                       j->queue_id, m->t.name, label, sk_step_name(err.step), err.text);
                /* RFC 7435: opportunistic TLS that fails in the handshake
                 * falls back to a plain session with the same host. */
                if (mode == SK_TLS_STARTTLS_OPPORTUNISTIC && err.step == SK_STEP_TLS &&
                    (err.err == SK_ERR_TLS || err.err == SK_ERR_TIMEOUT ||
                     err.err == SK_ERR_CLOSED)) {
                    mode = SK_TLS_NONE;
                    continue;
                }
                if (j->tls_required && err.step == SK_STEP_TLS) tls_failed = true;
                if (sk_reply_class_of(err.code) == SK_REPLY_PERMANENT &&
                    (err.step == SK_STEP_GREETING || err.step == SK_STEP_EHLO)) {
                    refused_5xx = true;
                    tally->last_5xx =
                        sk_reply_make(err.code, err.enhanced, "%s", tally->last_error);
                }
                break;
            }
            /* A host that refused us or cannot give the TLS we need will
             * not do better on its other addresses: the next MX. */
            if (refused_5xx || tls_failed) break;
        }
        if (refused_5xx) tally->hosts_5xx++;
        if (tls_failed) tally->hosts_tls++;
    }
    return NULL;
}

/* Errors after which the connection cannot be used for the next message. */
static bool connection_lost(sk_err e)
{
    return e != SK_OK && e != SK_ERR_TEMPFAIL && e != SK_ERR_PERMFAIL && e != SK_ERR_TOO_LONG &&
           e != SK_ERR_UNSUPPORTED;
}

/* The reply a recipient gets when the error came from us (connection,
 * limits) rather than from a reply of the host. */
static sk_reply error_reply(const sk_error *err, const char *label, bool permanent)
{
    if (refused(err->code))
        return sk_reply_make(err->code, err->enhanced[0] ? err->enhanced : "", "%s", err->text);
    if (permanent) return sk_reply_make(554, "5.4.0", "%s: %s", label, err->text);
    /* RFC 3463: 4.4.2 bad connection. */
    return sk_reply_make(451, "4.4.2", "%s: %s", label,
                         err->text[0] ? err->text : sk_strerror(err->err));
}

/* The transaction on an open session; false when the session is gone. */
static bool transact(mx *m, mx_conn *k, mx_job *j, const sk_buf *msg, bool *retry)
{
    sk_send_result res;
    memset(&res, 0, sizeof res);
    sk_error err;
    sk_error_clear(&err);
    sk_err e = sk_client_send_rcpts(k->c, j->sender, j->specs, j->nrcpts, msg->data, msg->len,
                                    &j->send_opts, &res, &err);
    bool alive = !connection_lost(e);
    /* The client sends DSN parameters only to a host that announced DSN. */
    const sk_ehlo_info *ext = sk_client_extensions(k->c);
    j->next_hop_dsn = ext && (ext->ext & SK_CLIENT_EXT_DSN);
    *retry = false;
    if (!alive && k->messages > 0 && res.mail.code == 0) {
        /* A reused session the host closed meanwhile, before it took
         * anything: worth a new connection. */
        *retry = true;
        sk_send_result_free(&res);
        return false;
    }
    snprintf(j->remote_host, sizeof j->remote_host, "%s", k->remote_host);
    snprintf(j->tls, sizeof j->tls, "%s", k->tls);
    j->tls_verified = k->tls_verified;
    if (refused(res.mail.code) || res.nrcpt == 0) {
        sk_reply rep = refused(res.mail.code)
                           ? res.mail
                           : error_reply(&err, k->remote_host,
                                         e == SK_ERR_TOO_LONG || e == SK_ERR_UNSUPPORTED);
        fill_all(j, &rep);
    } else {
        /* Per recipient from RCPT; the DATA reply for those accepted. */
        for (size_t i = 0; i < j->nrcpts; i++) {
            sk_delivery_rcpt_result *out = &j->results[i];
            if (i < res.nrcpt && !res.rcpts[i].accepted && refused(res.rcpts[i].reply.code))
                out->reply = res.rcpts[i].reply;
            else if (i < res.nrcpt && res.rcpts[i].accepted &&
                     sk_reply_class_of(res.data.code) != SK_REPLY_INVALID)
                out->reply = res.data;
            else
                out->reply = error_reply(&err, k->remote_host, false);
            out->status = status_of(out->reply.code);
        }
    }
    sk_log(&m->log, SK_LOG_INFO, "%s %s sent host=%s mail=%d accepted=%zu/%zu data=%d", j->queue_id,
           m->t.name, k->remote_host, res.mail.code, res.naccepted, j->nrcpts, res.data.code);
    sk_send_result_free(&res);
    return alive;
}

/* Take an idle session to key from the pool (newest first); NULL when
 * none fits. Called with the lock held. */
static mx_conn *pool_take(mx *m, const mx_job *j)
{
    for (mx_conn **pp = &m->idle; *pp; pp = &(*pp)->next) {
        mx_conn *k = *pp;
        if (strcmp(k->key, j->key) != 0) continue;
        /* A session opened without the TLS this domain requires. */
        if (j->tls_required && !(k->tls[0] && k->tls_verified)) continue;
        *pp = k->next;
        k->next = NULL;
        m->nidle--;
        return k;
    }
    return NULL;
}

/* Put a session back; returns one to close (the oldest) when the pool is
 * full. Called with the lock held. */
static mx_conn *pool_put(mx *m, mx_conn *k)
{
    k->idle_until_ms = sk_now_ms() + m->idle_ms;
    k->next = m->idle;
    m->idle = k;
    m->nidle++;
    if (m->nidle <= m->max_idle) return NULL;
    mx_conn **pp = &m->idle;
    while ((*pp)->next) pp = &(*pp)->next;
    mx_conn *old = *pp;
    *pp = NULL;
    m->nidle--;
    return old;
}

static void run_job(mx *m, mx_job *j)
{
    sk_error err;
    sk_error_clear(&err);
    sk_buf msg;
    if (read_message(j, &msg, &err)) {
        sk_reply rep = sk_reply_make(451, "4.3.0", "%s", err.text);
        fill_all(j, &rep);
        return;
    }
    unsigned max_per_conn = j->max_per_conn ? j->max_per_conn : m->max_per_conn;
    for (int attempt = 0; attempt < 2; attempt++) {
        pthread_mutex_lock(&m->mu);
        mx_conn *k = attempt == 0 ? pool_take(m, j) : NULL;
        pthread_mutex_unlock(&m->mu);
        /* RFC 5321 4.1.1.5: RSET checks a kept session is still there. */
        if (k && sk_client_rset(k->c, NULL) != SK_OK) {
            conn_free(k, false);
            k = NULL;
        }
        if (!k) {
            sk_mx_tally tally;
            memset(&tally, 0, sizeof tally);
            k = connect_route(m, j, &tally);
            if (!k) {
                sk_reply rep = sk_mx_tally_reply(&tally, j->domain);
                fill_all(j, &rep);
                snprintf(j->remote_host, sizeof j->remote_host, "%s", tally.last_host);
                break;
            }
        }
        bool retry = false;
        bool alive = transact(m, k, j, &msg, &retry);
        if (!alive) {
            conn_free(k, false);
            if (retry) continue;
            break;
        }
        k->messages++;
        if (k->messages >= max_per_conn) {
            conn_free(k, true);
            break;
        }
        pthread_mutex_lock(&m->mu);
        bool was_empty = m->idle == NULL;
        mx_conn *old = pool_put(m, k);
        /* Only a first idle session brings the earliest idle deadline
         * forward (later ones expire after the sessions already there):
         * one waiting worker is enough to watch it. */
        if (was_empty) pthread_cond_signal(&m->cond);
        pthread_mutex_unlock(&m->mu);
        conn_free(old, true);
        break;
    }
    sk_buf_free(&msg);
}

static void notify_loop(mx *m)
{
    char one = 1;
    ssize_t n;
    do n = write(m->pipe_fd[1], &one, 1);
    while (n < 0 && errno == EINTR);
    /* EAGAIN: the pipe is full of wake-ups already, which is enough. */
}

/* Idle sessions past their time, taken out of the pool (lock held). */
static mx_conn *pool_expired(mx *m, uint64_t now, uint64_t *next_ms)
{
    mx_conn *out = NULL;
    *next_ms = 0;
    for (mx_conn **pp = &m->idle; *pp;) {
        mx_conn *k = *pp;
        if (k->idle_until_ms <= now) {
            *pp = k->next;
            m->nidle--;
            k->next = out;
            out = k;
            continue;
        }
        if (!*next_ms || k->idle_until_ms < *next_ms) *next_ms = k->idle_until_ms;
        pp = &k->next;
    }
    return out;
}

static void *worker(void *arg)
{
    mx *m = arg;
    pthread_mutex_lock(&m->mu);
    while (!m->stopping) {
        if (!m->pending) {
            uint64_t next_ms;
            mx_conn *expired = pool_expired(m, sk_now_ms(), &next_ms);
            if (expired) {
                /* Idle for long enough: say goodbye properly (RFC 5321
                 * 4.1.1.10), outside the lock. */
                pthread_mutex_unlock(&m->mu);
                while (expired) {
                    mx_conn *next = expired->next;
                    conn_free(expired, true);
                    expired = next;
                }
                pthread_mutex_lock(&m->mu);
                continue;
            }
            if (next_ms) {
                uint64_t wait_ms = next_ms - sk_now_ms() + 1;
                struct timespec until;
                clock_gettime(CLOCK_REALTIME, &until);
                until.tv_sec += (time_t)(wait_ms / 1000);
                until.tv_nsec += (long)(wait_ms % 1000) * 1000000L;
                if (until.tv_nsec >= 1000000000L) {
                    until.tv_sec++;
                    until.tv_nsec -= 1000000000L;
                }
                pthread_cond_timedwait(&m->cond, &m->mu, &until);
            } else {
                pthread_cond_wait(&m->cond, &m->mu);
            }
            continue;
        }
        mx_job *j = m->pending;
        m->pending = j->next;
        if (!m->pending) m->pending_tail = NULL;
        j->next = NULL;
        pthread_mutex_unlock(&m->mu);
        run_job(m, j);
        pthread_mutex_lock(&m->mu);
        j->next = m->finished;
        m->finished = j;
        pthread_mutex_unlock(&m->mu);
        notify_loop(m);
        pthread_mutex_lock(&m->mu);
    }
    pthread_mutex_unlock(&m->mu);
    return NULL;
}

/* On the loop thread: hand finished jobs back to the queue. */
static void on_wake(evutil_socket_t fd, short what, void *arg)
{
    mx *m = arg;
    char drain[256];
    while (read(fd, drain, sizeof drain) > 0) continue;
    pthread_mutex_lock(&m->mu);
    mx_job *list = m->finished;
    m->finished = NULL;
    uint64_t gen = m->generation;
    pthread_mutex_unlock(&m->mu);
    mx_job *rev = NULL; /* the list is newest first */
    while (list) {
        mx_job *next = list->next;
        list->next = rev;
        rev = list;
        list = next;
    }
    while (rev) {
        mx_job *j = rev;
        rev = j->next;
        if (j->generation == gen) job_finish(j);
        job_free(j);
    }
}

static void unlink_lookup(mx *m, mx_job *j)
{
    for (mx_job **pp = &m->lookups; *pp; pp = &(*pp)->next)
        if (*pp == j) {
            *pp = j->next;
            j->next = NULL;
            return;
        }
}

/* The route is in (loop thread): fail at once, or queue for a worker. */
static void on_route(void *ctx, sk_route *route)
{
    mx_job *j = ctx;
    mx *m = j->owner;
    j->route = route;
    if (!m) { /* the transport was freed meanwhile */
        job_free(j);
        return;
    }
    unlink_lookup(m, j);
    if (j->generation != m->generation) {
        job_free(j);
        return;
    }
    sk_buf key = SK_BUF_INIT(SK_DNS_MX_HOSTS_MAX * 256);
    sk_err e = route ? sk_mx_destination_key(route, &key) : SK_ERR_NOMEM;
    j->key = e ? NULL : sk_buf_detach(&key, NULL);
    sk_buf_free(&key);
    sk_reply rep;
    if (!j->key) {
        rep = sk_reply_make(451, "4.3.0", "out of memory");
        fill_all(j, &rep);
        job_finish(j);
        job_free(j);
        return;
    }
    if (sk_mx_route_failure(route, &rep)) {
        /* RFC 7505 3: no connection at all for a null MX. */
        sk_log(&m->log, SK_LOG_INFO, "%s %s route-failed domain=%s status=%s reply=\"%d %s\"",
               j->queue_id, m->t.name, j->domain, sk_route_status_name(route->status), rep.code,
               rep.enhanced);
        fill_all(j, &rep);
        job_finish(j);
        job_free(j);
        return;
    }
    pthread_mutex_lock(&m->mu);
    if (m->pending_tail)
        m->pending_tail->next = j;
    else
        m->pending = j;
    m->pending_tail = j;
    pthread_cond_signal(&m->cond); /* one job, one worker */
    pthread_mutex_unlock(&m->mu);
}

static void fail_now(const sk_delivery *job, sk_delivery_done_fn done, void *ctx, sk_reply rep)
{
    sk_delivery_rcpt_result *rr = sk_calloc(job->nrcpts ? job->nrcpts : 1, sizeof *rr);
    for (size_t i = 0; rr && i < job->nrcpts; i++)
        rr[i] = (sk_delivery_rcpt_result){status_of(rep.code), rep};
    sk_delivery_result res = {.rcpts = rr, .nrcpts = rr ? job->nrcpts : 0};
    done(ctx, &res);
    sk_free(rr);
}

/* The relay's route: one host, its name to be resolved when connecting,
 * implicit (so the destination key is the host name). NULL: no memory. */
static sk_route *relay_route(const mx *m)
{
    sk_route *r = sk_calloc(1, sizeof *r);
    if (!r) return NULL;
    r->implicit_mx = 1;
    r->domain = sk_strdup(m->relay_host);
    r->hosts = sk_calloc(1, sizeof *r->hosts);
    if (r->hosts) r->nhosts = 1;
    if (r->hosts) r->hosts[0].name = sk_strdup(m->relay_host);
    if (!r->domain || !r->hosts || !r->hosts[0].name) {
        sk_route_free(r);
        return NULL;
    }
    return r;
}

/* RFC 3461 5.2.1: RET and ENVID go on as received (ENVID in its xtext
 * form, unchanged). */
static void dsn_opts(mx_job *j, const sk_spool_envelope *env)
{
    const sk_mail_params *mp = &env->mail;
    j->send_opts.dsn_ret = mp->ret == SK_DSN_RET_FULL   ? "FULL"
                           : mp->ret == SK_DSN_RET_HDRS ? "HDRS"
                                                        : NULL;
    snprintf(j->envid, sizeof j->envid, "%s", mp->envid);
    j->send_opts.dsn_envid = j->envid[0] ? j->envid : NULL;
    j->send_opts.dsn_envid_xtext = 1;
    /* ORCPT for each recipient that came without one (rcpt_dsn). */
    j->send_opts.dsn_orcpt = 1;
}

/* Recipient i's NOTIFY and ORCPT for the next hop. NOTIFY only when it was
 * given (RFC 3461 5.2.1: the next hop then chooses as we would). ORCPT as
 * received; without one, RFC 3461 4.2 lets a relay add the address it
 * received: send_opts.dsn_orcpt has the client write it once it knows
 * whether the next hop takes SMTPUTF8 ("rfc822" for ASCII, the RFC 6533
 * "utf-8" type for the rest). 0 when out of memory. */
static int rcpt_dsn(mx_job *j, size_t i, const sk_delivery_rcpt *r)
{
    j->specs[i].address = j->rcpts[i];
    j->specs[i].notify = sk_dsn_notify_format(r->notify, j->notify[i]);
    if (r->orcpt && r->orcpt[0]) {
        j->orcpt[i] = sk_strdup(r->orcpt);
        if (!j->orcpt[i]) return 0;
    }
    j->specs[i].orcpt = j->orcpt[i];
    return 1;
}

static void mx_deliver(sk_transport *t, const sk_delivery *job, sk_delivery_done_fn done, void *ctx)
{
    mx *m = (mx *)t;
    mx_job *j = sk_calloc(1, sizeof *j);
    bool ok = j != NULL;
    if (ok) {
        j->owner = m;
        j->generation = m->generation;
        j->queue_id = sk_strdup(job->queue_id);
        j->domain = sk_strdup(job->domain);
        j->sender = sk_strdup(job->sender ? job->sender : job->env->sender ? job->env->sender : "");
        j->body_path = sk_strdup(job->body_path);
        j->body_octets = job->env->body_octets;
        j->received = received_header(m, job);
        j->rcpts = sk_calloc(job->nrcpts ? job->nrcpts : 1, sizeof *j->rcpts);
        j->results = sk_calloc(job->nrcpts ? job->nrcpts : 1, sizeof *j->results);
        j->max_per_conn = job->max_per_conn;
        j->send_opts.has_priority = job->env->mail.has_priority;
        j->send_opts.priority = job->env->mail.priority;
        dsn_opts(j, job->env);
        j->specs = sk_calloc(job->nrcpts ? job->nrcpts : 1, sizeof *j->specs);
        j->notify = sk_calloc(job->nrcpts ? job->nrcpts : 1, sizeof *j->notify);
        j->orcpt = sk_calloc(job->nrcpts ? job->nrcpts : 1, sizeof *j->orcpt);
        j->tls_required =
            sk_mx_tls_required((const char *const *)m->tls_required, m->ntls_required, job->domain);
        j->done = done;
        j->ctx = ctx;
        ok = j->queue_id && j->domain && j->sender && j->body_path && j->received && j->rcpts &&
             j->results && j->specs && j->notify && j->orcpt;
        for (size_t i = 0; ok && i < job->nrcpts; i++) {
            j->rcpts[i] = sk_strdup(job->rcpts[i].addr);
            j->nrcpts = i + 1;
            ok = j->rcpts[i] != NULL && rcpt_dsn(j, i, &job->rcpts[i]);
        }
    }
    if (!ok) {
        job_free(j);
        fail_now(job, done, ctx, sk_reply_make(451, "4.3.0", "out of memory"));
        return;
    }
    if (m->relay_host) {
        /* on_route answers out of memory for a NULL route. */
        on_route(j, relay_route(m));
        return;
    }
    /* RFC 5321 4.1.3: an address literal names the host, no DNS. */
    sk_route *lit = NULL;
    sk_err e = sk_route_from_literal(job->domain, &lit);
    if (e == SK_OK) {
        on_route(j, lit);
        return;
    }
    if (e == SK_ERR_SYNTAX) {
        job_free(j);
        fail_now(job, done, ctx,
                 sk_reply_make(550, "5.1.2", "malformed address literal %s", job->domain));
        return;
    }
    j->next = m->lookups;
    m->lookups = j;
    e = sk_resolver_mx(m->resolver, job->domain, on_route, j);
    if (e) {
        /* Not started, so the callback will not come. */
        unlink_lookup(m, j);
        job_free(j);
        fail_now(job, done, ctx,
                 sk_reply_make(451, "4.4.3", "cannot look up %s: %s", job->domain, sk_strerror(e)));
    }
}

static void keyreq_free(mx_keyreq *q)
{
    if (!q) return;
    sk_free(q->domain);
    sk_free(q);
}

static void on_key_route(void *ctx, sk_route *route)
{
    mx_keyreq *q = ctx;
    mx *m = q->owner;
    if (m) {
        for (mx_keyreq **pp = &m->keyreqs; *pp; pp = &(*pp)->next)
            if (*pp == q) {
                *pp = q->next;
                break;
            }
    }
    if (m && q->generation == m->generation) {
        sk_buf key = SK_BUF_INIT(SK_DNS_MX_HOSTS_MAX * 256);
        /* A failed route gives no key: the queue then uses the domain. */
        bool have = route && route->status == SK_ROUTE_OK && !sk_mx_destination_key(route, &key);
        q->cb(q->ctx, q->domain, have ? sk_buf_cstr(&key) : NULL);
        sk_buf_free(&key);
    }
    sk_route_free(route);
    keyreq_free(q);
}

static void mx_route_key(sk_transport *t, const char *domain, sk_route_key_fn cb, void *ctx)
{
    mx *m = (mx *)t;
    sk_route *lit = NULL;
    if (sk_route_from_literal(domain, &lit) == SK_OK) {
        sk_buf key = SK_BUF_INIT(512);
        bool have = !sk_mx_destination_key(lit, &key);
        cb(ctx, domain, have ? sk_buf_cstr(&key) : NULL);
        sk_buf_free(&key);
        sk_route_free(lit);
        return;
    }
    mx_keyreq *q = sk_calloc(1, sizeof *q);
    if (q) q->domain = sk_strdup(domain);
    if (!q || !q->domain) {
        keyreq_free(q);
        cb(ctx, domain, NULL);
        return;
    }
    q->owner = m;
    q->generation = m->generation;
    q->cb = cb;
    q->ctx = ctx;
    q->next = m->keyreqs;
    m->keyreqs = q;
    if (sk_resolver_mx(m->resolver, domain, on_key_route, q) != SK_OK) {
        m->keyreqs = q->next;
        keyreq_free(q);
        cb(ctx, domain, NULL);
    }
}

static void mx_cancel(sk_transport *t)
{
    mx *m = (mx *)t;
    pthread_mutex_lock(&m->mu);
    /* Jobs not started are dropped; those in a worker finish, and their
     * results (like lookups in flight) are dropped by the generation. */
    mx_job *p = m->pending;
    m->pending = m->pending_tail = NULL;
    m->generation++;
    pthread_mutex_unlock(&m->mu);
    while (p) {
        mx_job *next = p->next;
        job_free(p);
        p = next;
    }
}

static void mx_free(sk_transport *t)
{
    mx *m = (mx *)t;
    mx_cancel(t);
    /* Lookups in flight: with our own resolver, freeing it drops their
     * callbacks; with a shared one, they find no owner and clean up. */
    if (m->own_resolver) {
        sk_resolver_free(m->resolver);
        while (m->lookups) {
            mx_job *next = m->lookups->next;
            job_free(m->lookups);
            m->lookups = next;
        }
        while (m->keyreqs) {
            mx_keyreq *next = m->keyreqs->next;
            keyreq_free(m->keyreqs);
            m->keyreqs = next;
        }
    } else {
        for (mx_job *j = m->lookups; j; j = j->next) j->owner = NULL;
        for (mx_keyreq *q = m->keyreqs; q; q = q->next) q->owner = NULL;
    }
    pthread_mutex_lock(&m->mu);
    m->stopping = true;
    pthread_cond_broadcast(&m->cond);
    pthread_mutex_unlock(&m->mu);
    bool all_joined = true;
    for (size_t i = 0; i < m->nthreads; i++) {
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += SK_MX_JOIN_WAIT_MS / 1000;
        if (pthread_timedjoin_np(m->threads[i], NULL, &until) != 0) {
            pthread_detach(m->threads[i]);
            all_joined = false;
        }
    }
    if (!all_joined) {
        /* A worker is still talking to a host and uses this structure
         * until it returns, so it is left behind (the process is exiting). */
        sk_log(&m->log, SK_LOG_WARN, "- mx stop-timeout workers_busy=yes");
        return;
    }
    if (m->wake) event_free(m->wake);
    while (m->finished) {
        mx_job *next = m->finished->next;
        job_free(m->finished);
        m->finished = next;
    }
    /* Stopping: close without QUIT so that exit is not held up. */
    while (m->idle) {
        mx_conn *next = m->idle->next;
        conn_free(m->idle, false);
        m->idle = next;
    }
    if (m->pipe_fd[0] >= 0) close(m->pipe_fd[0]);
    if (m->pipe_fd[1] >= 0) close(m->pipe_fd[1]);
    pthread_mutex_destroy(&m->mu);
    pthread_cond_destroy(&m->cond);
    for (size_t i = 0; i < m->ntls_required; i++) sk_free(m->tls_required[i]);
    sk_free(m->tls_required);
    sk_free(m->threads);
    sk_free(m->helo_name);
    sk_free(m->ca_file);
    sk_free(m->relay_host);
    sk_free(m);
}

sk_transport *sk_mx_transport_new(const sk_mx_transport_opts *o, struct event_base *base,
                                  sk_error *err)
{
    mx *m = sk_calloc(1, sizeof *m);
    if (!m) {
        sk_error_set(err, SK_ERR_NOMEM, SK_STEP_NONE, "out of memory");
        return NULL;
    }
    m->t = (sk_transport){.name = "mx",
                          .deliver = mx_deliver,
                          .cancel = mx_cancel,
                          .free = mx_free,
                          .route_key = mx_route_key};
    m->pipe_fd[0] = m->pipe_fd[1] = -1;
    m->base = base;
    m->port = o->port ? o->port : SK_MX_PORT_DEFAULT;
    m->idle_ms = o->idle_ms ? o->idle_ms : SK_MX_IDLE_MS_DEFAULT;
    m->max_per_conn = o->max_messages_per_connection ? o->max_messages_per_connection
                                                     : SK_MX_MSGS_PER_CONN_DEFAULT;
    m->connect_timeout_ms = o->connect_timeout_ms;
    m->greeting_timeout_ms = o->greeting_timeout_ms;
    m->command_timeout_ms = o->command_timeout_ms;
    m->log = o->log;
    pthread_mutex_init(&m->mu, NULL);
    pthread_cond_init(&m->cond, NULL);
    size_t n = o->workers ? o->workers : SK_MX_WORKERS_DEFAULT;
    m->max_idle = n;
    m->helo_name = sk_strdup(o->helo_name ? o->helo_name : "localhost");
    m->ca_file = o->ca_file ? sk_strdup(o->ca_file) : NULL;
    if (o->relay_host) {
        m->relay_host = sk_strdup(o->relay_host);
        for (char *p = m->relay_host; p && *p; p++)
            if (*p >= 'A' && *p <= 'Z') *p += 'a' - 'A';
        m->t.name = "smtp";
        m->t.route_key = NULL;
    }
    m->threads = sk_calloc(n, sizeof *m->threads);
    m->tls_required = sk_calloc(o->ntls_required ? o->ntls_required : 1, sizeof *m->tls_required);
    bool ok = m->helo_name && (!o->ca_file || m->ca_file) && (!o->relay_host || m->relay_host) &&
              m->threads && m->tls_required;
    for (size_t i = 0; ok && i < o->ntls_required; i++) {
        m->tls_required[i] = sk_strdup(o->tls_required[i]);
        m->ntls_required = i + 1;
        ok = m->tls_required[i] != NULL;
    }
    if (!ok || pipe2(m->pipe_fd, O_NONBLOCK | O_CLOEXEC)) {
        sk_error_set(err, SK_ERR_NOMEM, SK_STEP_NONE, "cannot set up the MX transport");
        mx_free(&m->t);
        return NULL;
    }
    if (o->resolver || m->relay_host) {
        m->resolver = o->resolver; /* a fixed route needs no MX lookup */
    } else {
        m->resolver = sk_resolver_new(base, o->dns_server, err);
        if (!m->resolver) {
            mx_free(&m->t);
            return NULL;
        }
        m->own_resolver = true;
    }
    m->wake = event_new(base, m->pipe_fd[0], EV_READ | EV_PERSIST, on_wake, m);
    if (!m->wake || event_add(m->wake, NULL)) {
        sk_error_set(err, SK_ERR_NOMEM, SK_STEP_NONE, "cannot set up the MX transport");
        mx_free(&m->t);
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        if (pthread_create(&m->threads[i], NULL, worker, m) != 0) {
            sk_error_set(err, SK_ERR_IO, SK_STEP_NONE, "cannot start MX workers");
            mx_free(&m->t);
            return NULL;
        }
        m->nthreads++;
    }
    return &m->t;
}
