/* Unit tests for the metrics registry (src/metrics/metrics.c): the
 * exposition of each type, label escaping, the bound on series, the
 * busiest-N gauge, and the names refused. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "sktest.h"

#include <stdio.h>
#include <string.h>

#include <smtpkit/metrics.h>

static char *render(sk_metrics *m)
{
    sk_buf b = SK_BUF_INIT(SK_METRICS_TEXT_MAX_OCTETS);
    assert_int_equal(sk_metrics_render(m, &b), SK_OK);
    return sk_buf_detach(&b, NULL);
}

static const double secs[] = {0.01, 0.1, 1};

/* What a sequence of updates renders as. */
static const struct {
    const char *name;
    sk_metric_type type;
    const char *label;
    struct {
        const char *lv;
        double v;
    } ops[6];
    size_t nops;
    const char *want;
} render_cases[] = {
    {"a counter without a label starts at 0",
     SK_METRIC_COUNTER,
     NULL,
     {{0}},
     0,
     "# HELP t_total help text\n# TYPE t_total counter\nt_total 0\n"},
    {"a counter adds",
     SK_METRIC_COUNTER,
     NULL,
     {{NULL, 2}, {NULL, 3}},
     2,
     "# HELP t_total help text\n# TYPE t_total counter\nt_total 5\n"},
    {"labelled series in the order first seen",
     SK_METRIC_COUNTER,
     "class",
     {{"bad-mailbox", 1}, {"spam", 1}, {"bad-mailbox", 1}},
     3,
     "# HELP t_total help text\n# TYPE t_total counter\n"
     "t_total{class=\"bad-mailbox\"} 2\nt_total{class=\"spam\"} 1\n"},
    {"a labelled family with no series has only its comments",
     SK_METRIC_COUNTER,
     "class",
     {{0}},
     0,
     "# HELP t_total help text\n# TYPE t_total counter\n"},
    {"label values escaped",
     SK_METRIC_COUNTER,
     "l",
     {{"a\"b\\c\nd", 1}},
     1,
     "# HELP t_total help text\n# TYPE t_total counter\nt_total{l=\"a\\\"b\\\\c\\nd\"} 1\n"},
    {"a gauge set and changed",
     SK_METRIC_GAUGE,
     NULL,
     {{NULL, 7}, {NULL, 4.5}},
     2,
     "# HELP t help text\n# TYPE t gauge\nt 4.5\n"},
    {"a histogram: cumulative buckets, +Inf, sum and count",
     SK_METRIC_HISTOGRAM,
     NULL,
     {{NULL, 0.005}, {NULL, 0.01}, {NULL, 0.5}, {NULL, 3}},
     4,
     "# HELP t help text\n# TYPE t histogram\n"
     "t_bucket{le=\"0.01\"} 2\nt_bucket{le=\"0.1\"} 2\nt_bucket{le=\"1\"} 3\n"
     "t_bucket{le=\"+Inf\"} 4\nt_sum 3.515\nt_count 4\n"},
    {"a labelled histogram",
     SK_METRIC_HISTOGRAM,
     "listener",
     {{"smtp", 0.2}},
     1,
     "# HELP t help text\n# TYPE t histogram\n"
     "t_bucket{listener=\"smtp\",le=\"0.01\"} 0\n"
     "t_bucket{listener=\"smtp\",le=\"0.1\"} 0\n"
     "t_bucket{listener=\"smtp\",le=\"1\"} 1\nt_bucket{listener=\"smtp\",le=\"+Inf\"} 1\n"
     "t_sum{listener=\"smtp\"} 0.2\nt_count{listener=\"smtp\"} 1\n"},
};

static void test_render(void **state)
{
    (void)state;
    for (size_t c = 0; c < SKT_N(render_cases); c++) {
        sk_metrics *m = sk_metrics_new();
        sk_error err;
        const char *name = render_cases[c].type == SK_METRIC_COUNTER ? "t_total" : "t";
        sk_metric *f = sk_metrics_add(m, name, "help text", render_cases[c].type,
                                      render_cases[c].label, secs, SKT_N(secs), &err);
        if (!f) fail_msg("%s: %s", render_cases[c].name, err.text);
        for (size_t i = 0; i < render_cases[c].nops; i++) {
            const char *lv = render_cases[c].ops[i].lv;
            double v = render_cases[c].ops[i].v;
            if (render_cases[c].type == SK_METRIC_HISTOGRAM)
                sk_metric_observe(f, lv, v);
            else if (render_cases[c].type == SK_METRIC_GAUGE)
                sk_metric_set(f, lv, v);
            else
                sk_metric_inc(f, lv, v);
        }
        char *got = render(m);
        if (strcmp(got, render_cases[c].want))
            fail_msg("%s:\n--- got\n%s--- want\n%s", render_cases[c].name, got,
                     render_cases[c].want);
        sk_free(got);
        sk_metrics_free(m);
    }
}

/* Past SK_METRICS_SERIES_MAX - 1 label values, new ones count in "other". */
static void test_series_bound(void **state)
{
    (void)state;
    sk_metrics *m = sk_metrics_new();
    sk_metric *f = sk_metrics_add(m, "c_total", "h", SK_METRIC_COUNTER, "d", NULL, 0, NULL);
    assert_non_null(f);
    char lv[32];
    for (int i = 0; i < SK_METRICS_SERIES_MAX + 10; i++) {
        snprintf(lv, sizeof lv, "d%d", i);
        sk_metric_inc(f, lv, 1);
    }
    sk_metric_inc(f, "d0", 1);
    assert_true(sk_metric_value(f, "d0") == 2);
    assert_true(sk_metric_value(f, SK_METRICS_OTHER) == 11);
    snprintf(lv, sizeof lv, "d%d", SK_METRICS_SERIES_MAX - 1);
    assert_true(sk_metric_value(f, lv) == 0);
    char *text = render(m);
    size_t lines = 0;
    for (const char *p = text; *p; p++) lines += *p == '\n';
    assert_int_equal(lines, 2 + SK_METRICS_SERIES_MAX);
    sk_free(text);
    sk_metrics_free(m);
}

/* The busiest N of a table, the rest summed in "other". */
static const struct {
    const char *name;
    size_t n, top;
    const char *labels[5];
    double values[5];
    const char *want;
} top_cases[] = {
    {"all fit",
     2,
     3,
     {"a.example", "b.example"},
     {1, 5},
     "g{d=\"b.example\"} 5\ng{d=\"a.example\"} 1\n"},
    {"the rest in other",
     4,
     2,
     {"a", "b", "c", "d"},
     {3, 9, 1, 9},
     "g{d=\"b\"} 9\ng{d=\"d\"} 9\ng{d=\"other\"} 4\n"},
    {"an empty table clears", 0, 2, {0}, {0}, ""},
};

static void test_top(void **state)
{
    (void)state;
    for (size_t c = 0; c < SKT_N(top_cases); c++) {
        sk_metrics *m = sk_metrics_new();
        sk_metric *f = sk_metrics_add(m, "g", "h", SK_METRIC_GAUGE, "d", NULL, 0, NULL);
        sk_metric_set(f, "stale", 1);
        sk_metric_set_top(f, top_cases[c].labels, top_cases[c].values, top_cases[c].n,
                          top_cases[c].top);
        char *got = render(m);
        const char *body = strstr(got, "gauge\n") + 6;
        if (strcmp(body, top_cases[c].want)) fail_msg("%s: got\n%s", top_cases[c].name, body);
        sk_free(got);
        sk_metrics_free(m);
    }
}

static const struct {
    const char *name;
    sk_metric_type type;
    const char *label;
    size_t nbuckets;
} bad_cases[] = {
    {"9lives", SK_METRIC_GAUGE, NULL, 0},
    {"a-b", SK_METRIC_GAUGE, NULL, 0},
    {"no_suffix", SK_METRIC_COUNTER, NULL, 0},
    {"ok", SK_METRIC_GAUGE, "le", 0},
    {"ok", SK_METRIC_GAUGE, "__x", 0},
    {"ok", SK_METRIC_GAUGE, "a:b", 0},
    {"ok", SK_METRIC_HISTOGRAM, NULL, 0},
    {"dup", SK_METRIC_GAUGE, NULL, 0},
    {"", SK_METRIC_GAUGE, NULL, 0},
};

static void test_bad_names(void **state)
{
    (void)state;
    sk_metrics *m = sk_metrics_new();
    assert_non_null(sk_metrics_add(m, "dup", "h", SK_METRIC_GAUGE, NULL, NULL, 0, NULL));
    for (size_t c = 0; c < SKT_N(bad_cases); c++) {
        sk_error err;
        if (sk_metrics_add(m, bad_cases[c].name, "h", bad_cases[c].type, bad_cases[c].label, secs,
                           bad_cases[c].nbuckets, &err))
            fail_msg("case %zu (%s) accepted", c, bad_cases[c].name);
        assert_int_equal(err.err, SK_ERR_INVAL);
    }
    static const double down[] = {1, 0.5};
    assert_null(sk_metrics_add(m, "h", "h", SK_METRIC_HISTOGRAM, NULL, down, 2, NULL));
    assert_null(sk_metrics_add(m, "h2", "two\nlines", SK_METRIC_GAUGE, NULL, NULL, 0, NULL));
    sk_metrics_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_render),
        cmocka_unit_test(test_series_bound),
        cmocka_unit_test(test_top),
        cmocka_unit_test(test_bad_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
