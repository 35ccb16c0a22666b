/* spf_batch: evaluates many SPF checks in one process, for the RFC 7208
 * test suite (test_spf_suite.py) and other tests. One resolver on one
 * loop; each line of standard input is a request, each answer one line.
 *
 *   CHECK <tab> mailfrom|helo <tab> IP <tab> MAIL-FROM <tab> HELO
 *     -> RESULT <tab> HAS-EXPLANATION(0|1) <tab> EXPLANATION <tab> LOOKUPS
 *        <tab> VOIDS <tab> REASON        (text fields escaped: \\ \t \n \xHH)
 *   FLUSH -> OK        (forget the resolver's cache: a new zone is served)
 *
 * usage: spf_batch --dns-server IP:PORT [--timeout-ms N] [--tries N]
 *                  [--spf-timeout-ms N] [--receiver NAME] [--now S] */
#include <smtpkit/spf.h>

#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void put_escaped(const char *s)
{
    for (const unsigned char *p = (const unsigned char *)(s ? s : ""); *p; p++) {
        if (*p == '\\')
            fputs("\\\\", stdout);
        else if (*p == '\t')
            fputs("\\t", stdout);
        else if (*p == '\n')
            fputs("\\n", stdout);
        else if (*p < 0x20 || *p >= 0x7f)
            printf("\\x%02x", *p);
        else
            putchar(*p);
    }
}

typedef struct state {
    sk_spf_outcome *out;
} state;

static void done(void *ctx, sk_spf_outcome *o)
{
    ((state *)ctx)->out = o;
}

/* Split line at tabs into at most n fields; returns how many. */
static int split(char *line, char **f, int n)
{
    int k = 0;
    f[k++] = line;
    for (char *p = line; *p && k < n; p++)
        if (*p == '\t') {
            *p = '\0';
            f[k++] = p + 1;
        }
    return k;
}

int main(int argc, char **argv)
{
    sk_resolver_opts ro = {0};
    sk_spf_opts so = {0};
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--dns-server"))
            ro.server = argv[i + 1];
        else if (!strcmp(argv[i], "--timeout-ms"))
            ro.timeout_ms = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--tries"))
            ro.tries = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--spf-timeout-ms"))
            so.timeout_ms = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--receiver"))
            so.receiver = argv[i + 1];
        else if (!strcmp(argv[i], "--now"))
            so.now_s = atoll(argv[i + 1]);
        else {
            fprintf(stderr, "spf_batch: unknown option %s\n", argv[i]);
            return 64;
        }
    }
    struct event_base *base = event_base_new();
    sk_error err;
    sk_resolver *r = base ? sk_resolver_new_opts(base, &ro, &err) : NULL;
    if (!r) {
        fprintf(stderr, "spf_batch: resolver: %s\n", base ? err.text : "no event loop");
        return 78;
    }
    char line[8192];
    while (fgets(line, sizeof line, stdin)) {
        line[strcspn(line, "\n")] = '\0';
        char *f[5];
        int n = split(line, f, 5);
        if (!strcmp(f[0], "FLUSH")) {
            sk_resolver_cache_clear(r);
            puts("OK");
        } else if (!strcmp(f[0], "CHECK") && n == 5) {
            sk_spf_request req = {.identity = strcmp(f[1], "helo") ? SK_SPF_MAILFROM : SK_SPF_HELO,
                                  .ip = f[2],
                                  .mail_from = f[3],
                                  .helo = f[4]};
            state st = {0};
            sk_err e = sk_spf_check_start(r, &req, &so, done, &st, NULL);
            if (e) {
                printf("error\t0\t\t0\t0\t%s\n", sk_strerror(e));
            } else {
                event_base_dispatch(base);
                sk_spf_outcome *o = st.out;
                printf("%s\t%d\t", sk_spf_result_name(o->result), o->explanation != NULL);
                put_escaped(o->explanation);
                printf("\t%u\t%u\t", o->lookups, o->void_lookups);
                put_escaped(o->reason);
                putchar('\n');
                sk_spf_outcome_free(o);
            }
        } else {
            printf("error\t0\t\t0\t0\tbad request line\n");
        }
        fflush(stdout);
    }
    sk_resolver_free(r);
    event_base_free(base);
    return 0;
}
