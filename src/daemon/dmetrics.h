/* The daemon's metrics (dmetrics.c; docs/metrics.md): what it counts as
 * it runs, and the exposition with the gauges read at that moment. */
#ifndef SK_DAEMON_DMETRICS_H
#define SK_DAEMON_DMETRICS_H

#include <smtpkit/metrics.h>
#include <smtpkit/queue.h>
#include <smtpkit/server.h>
#include <smtpkit/track.h>

#include "deliver/deliver.h"

typedef struct sk_dmetrics sk_dmetrics;
sk_dmetrics *sk_dmetrics_new(sk_error *err);
void sk_dmetrics_free(sk_dmetrics *m);

/* sk_track_opts.on_event: every event the tracking store records counts
 * (so the counters agree with track.db). ctx is the sk_dmetrics. */
void sk_dmetrics_on_track(void *ctx, const sk_track_ev *ev);
/* A message committed to the spool: its size and how long the commit took. */
void sk_dmetrics_committed(sk_dmetrics *m, uint64_t octets, uint64_t commit_ms);
/* An SMTP session ended after ms. */
void sk_dmetrics_session(sk_dmetrics *m, uint64_t ms);
/* A recipient delivered, of a message that arrived at arrival_s (Unix s). */
void sk_dmetrics_delivered(sk_dmetrics *m, int64_t arrival_s);

/* What the gauges are read from at a scrape; NULL members are left out. */
typedef struct sk_dmetrics_sources {
    const sk_queue *queue;
    const sk_server *srv;
    sk_transport *remote;
    /* The webhook backlog: fn calls set(gauge, endpoint, events) for
     * each endpoint. */
    void (*webhooks)(void *ctx, sk_metric *gauge);
    void *webhooks_ctx;
} sk_dmetrics_sources;
/* Append the exposition to out. */
SK_NODISCARD sk_err sk_dmetrics_render(sk_dmetrics *m, const sk_dmetrics_sources *src, sk_buf *out);

#endif
