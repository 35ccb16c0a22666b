/* Counters, gauges and histograms with one bounded label, and their
 * Prometheus text exposition (format 0.0.4). */
#include <smtpkit/metrics.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct series {
    char *lv; /* NULL in a family without a label */
    double value, sum;
    unsigned long long count;
    unsigned long long buckets[SK_METRICS_BUCKETS_MAX]; /* not cumulative */
} series;

struct sk_metric {
    char *name, *help, *label;
    sk_metric_type type;
    double bounds[SK_METRICS_BUCKETS_MAX];
    size_t nbounds;
    series *s;
    size_t ns, cap;
    struct sk_metric *next;
};

struct sk_metrics {
    sk_metric *first, *last;
};

sk_metrics *sk_metrics_new(void)
{
    return sk_calloc(1, sizeof(sk_metrics));
}

static void clear_series(sk_metric *f)
{
    for (size_t i = 0; i < f->ns; i++) sk_free(f->s[i].lv);
    f->ns = 0;
}

void sk_metrics_free(sk_metrics *m)
{
    if (!m) return;
    for (sk_metric *f = m->first, *next; f; f = next) {
        next = f->next;
        clear_series(f);
        sk_free(f->s);
        sk_free(f->name);
        sk_free(f->help);
        sk_free(f->label);
        sk_free(f);
    }
    sk_free(m);
}

/* The data model's names: metric names may hold ':', label names not. */
static bool valid_name(const char *s, bool colon)
{
    if (!s || !*s) return false;
    for (size_t i = 0; s[i]; i++) {
        char c = s[i];
        bool ok = sk_is_alpha(c) || c == '_' || (colon && c == ':') || (i && sk_is_digit(c));
        if (!ok) return false;
    }
    return true;
}

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && !strcmp(s + n - k, suffix);
}

sk_metric *sk_metrics_add(sk_metrics *m, const char *name, const char *help, sk_metric_type type,
                          const char *label, const double *buckets, size_t nbuckets, sk_error *err)
{
    sk_error_clear(err);
    const char *why = NULL;
    if (!valid_name(name, true))
        why = "not a metric name";
    else if (type == SK_METRIC_COUNTER && !ends_with(name, "_total"))
        why = "a counter's name ends in _total";
    else if (label && (!valid_name(label, false) || !strncmp(label, "__", 2) ||
                       !strcmp(label, "le") || !strcmp(label, "quantile")))
        why = "not a label name";
    else if (!help || strchr(help, '\n'))
        why = "help is one line";
    else if (type == SK_METRIC_HISTOGRAM && (!nbuckets || nbuckets > SK_METRICS_BUCKETS_MAX))
        why = "a histogram has 1 to SK_METRICS_BUCKETS_MAX buckets";
    for (size_t i = 1; !why && type == SK_METRIC_HISTOGRAM && i < nbuckets; i++)
        if (!(buckets[i] > buckets[i - 1])) why = "buckets must ascend";
    for (sk_metric *f = m->first; !why && f; f = f->next)
        if (!strcmp(f->name, name)) why = "name used twice";
    if (why) {
        sk_error_set(err, SK_ERR_INVAL, SK_STEP_NONE, "metric %s: %s", name ? name : "(null)", why);
        return NULL;
    }
    sk_metric *f = sk_calloc(1, sizeof *f);
    if (f) {
        f->type = type;
        f->name = sk_strdup(name);
        f->help = sk_strdup(help);
        f->label = label ? sk_strdup(label) : NULL;
    }
    if (!f || !f->name || !f->help || (label && !f->label)) {
        if (f) {
            sk_free(f->name);
            sk_free(f->help);
            sk_free(f->label);
            sk_free(f);
        }
        sk_error_set(err, SK_ERR_NOMEM, SK_STEP_NONE, "metric %s: out of memory", name);
        return NULL;
    }
    if (type == SK_METRIC_HISTOGRAM) {
        memcpy(f->bounds, buckets, nbuckets * sizeof *buckets);
        f->nbounds = nbuckets;
    }
    if (m->last)
        m->last->next = f;
    else
        m->first = f;
    m->last = f;
    return f;
}

static series *find(const sk_metric *f, const char *lv)
{
    for (size_t i = 0; i < f->ns; i++) {
        const char *x = f->s[i].lv;
        if ((!x && !lv) || (x && lv && !strcmp(x, lv))) return &f->s[i];
    }
    return NULL;
}

/* The series of lv, made when new; NULL on no memory. */
static series *get(sk_metric *f, const char *lv)
{
    if (!f->label) lv = NULL;
    if (f->label && !lv) lv = "";
    series *s = find(f, lv);
    if (s) return s;
    if (f->label && f->ns >= SK_METRICS_SERIES_MAX - 1) {
        lv = SK_METRICS_OTHER;
        if ((s = find(f, lv))) return s;
    }
    if (sk_array_grow(&f->s, &f->cap, f->ns + 1, sizeof *f->s, SK_METRICS_SERIES_MAX)) return NULL;
    s = &f->s[f->ns];
    *s = (series){0};
    if (lv && !(s->lv = sk_strdup(lv))) return NULL;
    f->ns++;
    return s;
}

void sk_metric_inc(sk_metric *f, const char *lv, double by)
{
    series *s = f && f->type != SK_METRIC_HISTOGRAM ? get(f, lv) : NULL;
    if (s) s->value += by;
}

void sk_metric_set(sk_metric *f, const char *lv, double v)
{
    series *s = f && f->type == SK_METRIC_GAUGE ? get(f, lv) : NULL;
    if (s) s->value = v;
}

void sk_metric_observe(sk_metric *f, const char *lv, double v)
{
    series *s = f && f->type == SK_METRIC_HISTOGRAM ? get(f, lv) : NULL;
    if (!s) return;
    size_t i = 0;
    while (i < f->nbounds && v > f->bounds[i]) i++;
    if (i < f->nbounds) s->buckets[i]++;
    s->sum += v;
    s->count++;
}

double sk_metric_value(const sk_metric *f, const char *lv)
{
    if (!f || f->type == SK_METRIC_HISTOGRAM) return 0;
    const series *s = find(f, f->label ? (lv ? lv : "") : NULL);
    return s ? s->value : 0;
}

typedef struct ranked {
    const char *label;
    double value;
} ranked;

static int by_value(const void *a, const void *b)
{
    const ranked *x = a, *y = b;
    if (x->value != y->value) return x->value < y->value ? 1 : -1;
    return strcmp(x->label, y->label);
}

void sk_metric_set_top(sk_metric *f, const char *const *labels, const double *values, size_t n,
                       size_t top)
{
    if (!f || f->type != SK_METRIC_GAUGE || !f->label) return;
    clear_series(f);
    if (top > SK_METRICS_SERIES_MAX - 1) top = SK_METRICS_SERIES_MAX - 1;
    ranked *r = n ? sk_calloc(n, sizeof *r) : NULL;
    if (n && !r) return;
    for (size_t i = 0; i < n; i++) r[i] = (ranked){labels[i], values[i]};
    if (n) qsort(r, n, sizeof *r, by_value);
    double rest = 0;
    bool other = false;
    for (size_t i = 0; i < n; i++) {
        if (i < top && strcmp(r[i].label, SK_METRICS_OTHER)) {
            sk_metric_set(f, r[i].label, r[i].value);
        } else {
            rest += r[i].value;
            other = true;
        }
    }
    if (other) sk_metric_set(f, SK_METRICS_OTHER, rest);
    sk_free(r);
}

/* A number as the exposition writes it: integers without a point. */
static sk_err put_number(sk_buf *b, double v)
{
    if (isinf(v)) return sk_buf_puts(b, v > 0 ? "+Inf" : "-Inf");
    if (isnan(v)) return sk_buf_puts(b, "NaN");
    if (v == floor(v) && fabs(v) < 1e15) return sk_buf_printf(b, "%.0f", v);
    /* The shortest of the usual precisions that reads back the same. */
    char s[40];
    snprintf(s, sizeof s, "%.15g", v);
    if (strtod(s, NULL) != v) snprintf(s, sizeof s, "%.17g", v);
    return sk_buf_puts(b, s);
}

/* A label value: backslash, double quote and line feed escaped. */
static sk_err put_label_value(sk_buf *b, const char *v)
{
    sk_err e = SK_OK;
    for (; !e && *v; v++) {
        if (*v == '\\')
            e = sk_buf_puts(b, "\\\\");
        else if (*v == '"')
            e = sk_buf_puts(b, "\\\"");
        else if (*v == '\n')
            e = sk_buf_puts(b, "\\n");
        else
            e = sk_buf_putc(b, *v);
    }
    return e;
}

/* name{label="lv",le="bound"} value */
static sk_err put_sample(sk_buf *b, const sk_metric *f, const char *suffix, const series *s,
                         const double *le, double value)
{
    sk_err e = sk_buf_printf(b, "%s%s", f->name, suffix);
    bool labels = (f->label && s->lv) || le;
    if (!e && labels) e = sk_buf_putc(b, '{');
    if (!e && f->label && s->lv) {
        e = sk_buf_printf(b, "%s=\"", f->label);
        if (!e) e = put_label_value(b, s->lv);
        if (!e) e = sk_buf_putc(b, '"');
        if (!e && le) e = sk_buf_putc(b, ',');
    }
    if (!e && le) {
        e = sk_buf_puts(b, "le=\"");
        if (!e) e = put_number(b, *le);
        if (!e) e = sk_buf_putc(b, '"');
    }
    if (!e && labels) e = sk_buf_putc(b, '}');
    if (!e) e = sk_buf_putc(b, ' ');
    if (!e) e = put_number(b, value);
    if (!e) e = sk_buf_putc(b, '\n');
    return e;
}

static sk_err render_family(const sk_metric *f, sk_buf *b)
{
    static const char *const types[] = {"counter", "gauge", "histogram"};
    sk_err e = sk_buf_printf(b, "# HELP %s ", f->name);
    /* HELP escapes backslash and line feed (none: one line). */
    for (const char *p = f->help; !e && *p; p++)
        e = *p == '\\' ? sk_buf_puts(b, "\\\\") : sk_buf_putc(b, *p);
    if (!e) e = sk_buf_printf(b, "\n# TYPE %s %s\n", f->name, types[f->type]);
    /* A family without a label has its one series from the start. */
    static const series zero;
    size_t ns = f->label ? f->ns : (f->ns ? f->ns : 1);
    for (size_t i = 0; !e && i < ns; i++) {
        const series *s = f->ns ? &f->s[i] : &zero;
        if (f->type != SK_METRIC_HISTOGRAM) {
            e = put_sample(b, f, "", s, NULL, s->value);
            continue;
        }
        unsigned long long cum = 0;
        for (size_t k = 0; !e && k < f->nbounds; k++) {
            cum += s->buckets[k];
            e = put_sample(b, f, "_bucket", s, &f->bounds[k], (double)cum);
        }
        double inf = INFINITY;
        if (!e) e = put_sample(b, f, "_bucket", s, &inf, (double)s->count);
        if (!e) e = put_sample(b, f, "_sum", s, NULL, s->sum);
        if (!e) e = put_sample(b, f, "_count", s, NULL, (double)s->count);
    }
    return e;
}

sk_err sk_metrics_render(const sk_metrics *m, sk_buf *out)
{
    size_t start = out->len;
    sk_err e = SK_OK;
    for (const sk_metric *f = m->first; !e && f; f = f->next) e = render_family(f, out);
    if (e) sk_buf_truncate(out, start);
    return e;
}
