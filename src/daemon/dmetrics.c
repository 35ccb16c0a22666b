/* The metrics of `smtpkit serve` (docs/metrics.md): counters fed by the
 * tracking store's events, histograms of commit, delivery and session
 * times, and gauges read from the queue, the server and the transport
 * when the exposition is asked for. */
#include "daemon/dmetrics.h"

#include <smtpkit/classify.h>

#include <stdlib.h>
#include <string.h>
#include <time.h>

struct sk_dmetrics {
    sk_metrics *reg;
    sk_metric *received, *bytes, *delivered, *deferred, *bounced, *expired, *complained,
        *suppressed;
    sk_metric *queue_messages, *queue_rcpts, *queue_dest, *conns_in, *conns_out, *in_flight,
        *backlog;
    sk_metric *commit_s, *delivery_s, *session_s;
};

/* Spool commits are a group's fdatasync: well under a millisecond on
 * fast storage, tens of milliseconds on disks. */
static const double commit_buckets[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                        0.05,   0.1,   0.25,   0.5,   1,    2.5};
/* Delivery: from arrival (whole seconds) to the recipient's delivery,
 * seconds to the queue lifetime's days. */
static const double delivery_buckets[] = {1, 5, 15, 60, 300, 900, 3600, 14400, 86400, 432000};
/* SMTP sessions: a pipelined submission to a slow sender's minutes. */
static const double session_buckets[] = {0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300};

typedef struct def {
    sk_metric **f;
    const char *name, *help;
    sk_metric_type type;
    const char *label;
    const double *buckets;
    size_t nbuckets;
} def;

#define NB(a) (sizeof(a) / sizeof((a)[0]))

sk_dmetrics *sk_dmetrics_new(sk_error *err)
{
    sk_dmetrics *m = sk_calloc(1, sizeof *m);
    if (!m || !(m->reg = sk_metrics_new())) {
        sk_free(m);
        sk_error_set(err, SK_ERR_NOMEM, SK_STEP_NONE, "metrics: out of memory");
        return NULL;
    }
    const def defs[] = {
        {&m->received, "smtpkit_messages_received_total", "Messages accepted and spooled.",
         SK_METRIC_COUNTER, NULL, NULL, 0},
        {&m->bytes, "smtpkit_received_bytes_total", "Octets of the messages accepted.",
         SK_METRIC_COUNTER, NULL, NULL, 0},
        {&m->delivered, "smtpkit_delivered_total", "Recipients delivered (next hop or mailbox).",
         SK_METRIC_COUNTER, NULL, NULL, 0},
        {&m->deferred, "smtpkit_deferred_total",
         "Delivery attempts that failed temporarily, per recipient.", SK_METRIC_COUNTER, NULL, NULL,
         0},
        {&m->bounced, "smtpkit_bounced_total", "Recipients that failed permanently, by class.",
         SK_METRIC_COUNTER, "class", NULL, 0},
        {&m->expired, "smtpkit_expired_total",
         "Recipients still failing at the end of the queue lifetime.", SK_METRIC_COUNTER, NULL,
         NULL, 0},
        {&m->complained, "smtpkit_complained_total", "Complaints (ARF reports) received.",
         SK_METRIC_COUNTER, NULL, NULL, 0},
        {&m->suppressed, "smtpkit_suppressed_total",
         "Recipients refused because they are on the suppression list.", SK_METRIC_COUNTER, NULL,
         NULL, 0},
        {&m->queue_messages, "smtpkit_queue_messages", "Messages in the queue.", SK_METRIC_GAUGE,
         NULL, NULL, 0},
        {&m->queue_rcpts, "smtpkit_queue_recipients",
         "Recipients in the queue still to be delivered.", SK_METRIC_GAUGE, NULL, NULL, 0},
        {&m->queue_dest, "smtpkit_queue_destination_recipients",
         "Recipients still to be delivered, for the busiest recipient domains; the rest as other.",
         SK_METRIC_GAUGE, "domain", NULL, 0},
        {&m->conns_in, "smtpkit_connections_in", "SMTP sessions open now (all listeners).",
         SK_METRIC_GAUGE, NULL, NULL, 0},
        {&m->conns_out, "smtpkit_connections_out",
         "Outbound SMTP connections open now, in use or idle.", SK_METRIC_GAUGE, NULL, NULL, 0},
        {&m->in_flight, "smtpkit_deliveries_in_flight", "Delivery jobs running now.",
         SK_METRIC_GAUGE, NULL, NULL, 0},
        {&m->backlog, "smtpkit_webhook_backlog", "Webhook events not delivered yet, by endpoint.",
         SK_METRIC_GAUGE, "endpoint", NULL, 0},
        {&m->commit_s, "smtpkit_spool_commit_seconds",
         "From the end of DATA's commit request to the message being durable.", SK_METRIC_HISTOGRAM,
         NULL, commit_buckets, NB(commit_buckets)},
        {&m->delivery_s, "smtpkit_delivery_seconds",
         "From a message's arrival to a recipient's delivery (arrival in whole seconds).",
         SK_METRIC_HISTOGRAM, NULL, delivery_buckets, NB(delivery_buckets)},
        {&m->session_s, "smtpkit_smtp_session_seconds",
         "Length of inbound SMTP sessions, from accept to close.", SK_METRIC_HISTOGRAM, NULL,
         session_buckets, NB(session_buckets)},
    };
    for (size_t i = 0; i < NB(defs); i++) {
        const def *x = &defs[i];
        *x->f = sk_metrics_add(m->reg, x->name, x->help, x->type, x->label, x->buckets, x->nbuckets,
                               err);
        if (!*x->f) {
            sk_dmetrics_free(m);
            return NULL;
        }
    }
    return m;
}

void sk_dmetrics_free(sk_dmetrics *m)
{
    if (!m) return;
    sk_metrics_free(m->reg);
    sk_free(m);
}

void sk_dmetrics_on_track(void *ctx, const sk_track_ev *ev)
{
    sk_dmetrics *m = ctx;
    switch (ev->kind) {
    case SK_TRACK_RECEIVED:
        sk_metric_inc(m->received, NULL, 1);
        break;
    case SK_TRACK_DELIVERED:
        sk_metric_inc(m->delivered, NULL, 1);
        break;
    case SK_TRACK_DEFERRED:
        sk_metric_inc(m->deferred, NULL, 1);
        break;
    case SK_TRACK_BOUNCED:
        sk_metric_inc(m->bounced, ev->cls ? ev->cls : "other", 1);
        break;
    case SK_TRACK_EXPIRED:
        sk_metric_inc(m->expired, NULL, 1);
        break;
    case SK_TRACK_COMPLAINED:
        sk_metric_inc(m->complained, NULL, 1);
        break;
    case SK_TRACK_SUPPRESSED:
        sk_metric_inc(m->suppressed, NULL, 1);
        break;
    default:
        break;
    }
}

void sk_dmetrics_committed(sk_dmetrics *m, uint64_t octets, uint64_t commit_ms)
{
    sk_metric_inc(m->bytes, NULL, (double)octets);
    sk_metric_observe(m->commit_s, NULL, (double)commit_ms / 1000);
}

void sk_dmetrics_session(sk_dmetrics *m, uint64_t ms)
{
    sk_metric_observe(m->session_s, NULL, (double)ms / 1000);
}

void sk_dmetrics_delivered(sk_dmetrics *m, int64_t arrival_s)
{
    int64_t now = (int64_t)time(NULL);
    sk_metric_observe(m->delivery_s, NULL, now > arrival_s ? (double)(now - arrival_s) : 0);
}

/* The per-domain depth, collected for sk_metric_set_top. */
typedef struct depth_table {
    char **labels;
    double *values;
    size_t n, cap, vcap;
    bool oom;
} depth_table;

static void add_depth(void *ctx, const char *domain, size_t rcpts)
{
    depth_table *t = ctx;
    if (t->oom) return;
    char *d = sk_strdup(domain);
    if (!d || sk_array_grow(&t->labels, &t->cap, t->n + 1, sizeof *t->labels, SK_ARRAY_UNBOUNDED) ||
        sk_array_grow(&t->values, &t->vcap, t->n + 1, sizeof *t->values, SK_ARRAY_UNBOUNDED)) {
        sk_free(d);
        t->oom = true;
        return;
    }
    t->labels[t->n] = d;
    t->values[t->n++] = (double)rcpts;
}

sk_err sk_dmetrics_render(sk_dmetrics *m, const sk_dmetrics_sources *src, sk_buf *out)
{
    if (src->queue) {
        sk_metric_set(m->queue_messages, NULL, (double)sk_queue_count(src->queue));
        sk_metric_set(m->in_flight, NULL, (double)sk_queue_in_flight(src->queue));
        depth_table t = {0};
        size_t total = sk_queue_depth(src->queue, add_depth, &t);
        sk_metric_set(m->queue_rcpts, NULL, (double)total);
        if (!t.oom)
            sk_metric_set_top(m->queue_dest, (const char *const *)t.labels, t.values, t.n,
                              SK_METRICS_DESTINATIONS_TOP);
        for (size_t i = 0; i < t.n; i++) sk_free(t.labels[i]);
        sk_free(t.labels);
        sk_free(t.values);
    }
    if (src->srv) sk_metric_set(m->conns_in, NULL, (double)sk_server_sessions(src->srv));
    size_t out_conns = 0;
    if (src->remote && src->remote->connections) out_conns = src->remote->connections(src->remote);
    sk_metric_set(m->conns_out, NULL, (double)out_conns);
    if (src->webhooks) src->webhooks(src->webhooks_ctx, m->backlog);
    return sk_metrics_render(m->reg, out);
}
