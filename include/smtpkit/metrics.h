/* Metrics of a running program: counters, gauges and histograms, with at
 * most one label of bounded cardinality, rendered in the Prometheus text
 * exposition format (version 0.0.4) by one call (docs/metrics.md). Not
 * thread-safe: a program updates and renders them on one thread (the
 * daemon's loop). */
#ifndef SMTPKIT_METRICS_H
#define SMTPKIT_METRICS_H

#include <stddef.h>

#include "limits.h"
#include "util.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The content type of the exposition, for an HTTP server that serves it. */
#define SK_METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"
/* The series that stands for every label value past SK_METRICS_SERIES_MAX. */
#define SK_METRICS_OTHER "other"

typedef enum sk_metric_type {
    SK_METRIC_COUNTER = 0, /* only goes up; its name ends in _total */
    SK_METRIC_GAUGE,       /* a value now */
    SK_METRIC_HISTOGRAM,   /* observations counted in buckets, with their sum */
} sk_metric_type;

typedef struct sk_metrics sk_metrics; /* a registry: families in the order added */
typedef struct sk_metric sk_metric;   /* one family, owned by its registry */

sk_metrics *sk_metrics_new(void);
void sk_metrics_free(sk_metrics *m);

/* Add a family. name and label follow the Prometheus data model
 * ([a-zA-Z_:][a-zA-Z0-9_:]* and [a-zA-Z_][a-zA-Z0-9_]*; a label may not
 * start with "__" nor be "le"); a counter's name ends in "_total"; help is
 * one line. label: NULL for a family of one series. A histogram has
 * nbuckets upper bounds, ascending (at most SK_METRICS_BUCKETS_MAX; +Inf is
 * added). NULL (err says why) for a name used twice, a bad name or no
 * memory. */
sk_metric *sk_metrics_add(sk_metrics *m, const char *name, const char *help, sk_metric_type type,
                          const char *label, const double *buckets, size_t nbuckets, sk_error *err);

/* The series of label value lv (NULL in a family without a label): a new
 * value once SK_METRICS_SERIES_MAX - 1 exist counts in SK_METRICS_OTHER.
 * Out of memory, the change is dropped (a metric is not worth failing the
 * work it counts). */
void sk_metric_inc(sk_metric *f, const char *lv, double by);    /* counter, gauge */
void sk_metric_set(sk_metric *f, const char *lv, double v);     /* gauge */
void sk_metric_observe(sk_metric *f, const char *lv, double v); /* histogram */
/* The current value of a counter's or gauge's series (0 when it has none). */
double sk_metric_value(const sk_metric *f, const char *lv);
/* A gauge set from a whole table: the series become the top values of
 * labels[0..n) (largest first, ties by label), the others summed in
 * SK_METRICS_OTHER when there are any. */
void sk_metric_set_top(sk_metric *f, const char *const *labels, const double *values, size_t n,
                       size_t top);

/* Append the exposition of every family to out (SK_ERR_TOO_LONG when it
 * does not fit out's maximum, SK_ERR_NOMEM). */
SK_NODISCARD sk_err sk_metrics_render(const sk_metrics *m, sk_buf *out);

#ifdef __cplusplus
}
#endif
#endif
