/* smtpkit send: the report of what happened, for people (stderr) or
 * scripts (--json), the --verbose transcript and the progress line. */
#include "send_int.h"

#include <stdarg.h>
#include <string.h>
#include <time.h>

/* ---- Reporting -------------------------------------------------------- */

/* The hint for e, from what the session learned, in our options' words;
 * NULL when there is none. The text stays valid until the next call: the
 * command reports one error, from one thread. */
static const char *hint_for(const outcome *o, const sk_error *e)
{
    static char hint[SK_CLIENT_HINT_MAX_OCTETS];
    sk_option_names names = cli_option_names;
    names.allow_plaintext_auth = "--allow-plaintext-auth";
    return sk_client_hint(o->client, e, &names, hint, sizeof hint);
}

/* Multi-line replies are joined by '\n'; for one-line output use ' / '. */
void sn_print_flat(FILE *f, const char *s)
{
    for (; *s; s++) {
        if (*s == '\n')
            fputs(" / ", f);
        else
            fputc(*s, f);
    }
}

void sn_print_error_block(const outcome *o, const char *what, const sk_error *e)
{
    fprintf(stderr, "smtpkit send: %s\n", what);
    fprintf(stderr, "  step:   %s\n", sk_step_name(e->step));
    if (o->server[0]) fprintf(stderr, "  server: %s\n", o->server);
    if (e->code) {
        fprintf(stderr, "  reply:  %d%s%s ", e->code, e->enhanced[0] ? " " : "", e->enhanced);
        sn_print_flat(stderr, e->text);
        fputc('\n', stderr);
    } else {
        fprintf(stderr, "  error:  %s: ", sk_strerror(e->err));
        sn_print_flat(stderr, e->text);
        fputc('\n', stderr);
    }
    const char *hint = hint_for(o, e);
    if (hint) fprintf(stderr, "  hint:   %s\n", hint);
}

static json_t *json_reply(const sk_reply *r)
{
    if (!r || r->code == 0) return cli_jnull();
    json_t *o = cli_jobj();
    cli_jset(o, "code", cli_jint(r->code));
    cli_jset(o, "enhanced", cli_jstr(r->enhanced[0] ? r->enhanced : NULL));
    cli_jset(o, "text", cli_jstr(r->text));
    return o;
}

/* A string member that is null when empty. */
static json_t *jstr_or_null(const char *s)
{
    return cli_jstr(s && s[0] ? s : NULL);
}

void sn_json_report(const outcome *o)
{
    json_t *j = cli_jobj();
    cli_jset(j, "ok", cli_jbool(o->exit_code == 0));
    cli_jset(j, "exit_code", cli_jint(o->exit_code));
    cli_jset(j, "sent", cli_jbool(o->have_res && o->res.sent));
    cli_jset(j, "server", jstr_or_null(o->server));
    cli_jset(j, "remote_address",
             jstr_or_null(o->client ? sk_client_remote_address(o->client) : ""));
    const sk_tls_info *ti = o->client ? sk_client_tls_info(o->client) : NULL;
    json_t *tls = cli_jnull();
    if (ti && ti->active) {
        tls = cli_jobj();
        cli_jset(tls, "version", cli_jstr(ti->version));
        cli_jset(tls, "cipher", cli_jstr(ti->cipher));
        cli_jset(tls, "verified", cli_jbool(ti->verified));
    }
    cli_jset(j, "tls", tls);
    sk_sasl_mech mech = o->client ? sk_client_auth_mech(o->client) : SK_SASL_NONE;
    cli_jset(j, "auth", cli_jstr(mech != SK_SASL_NONE ? sk_sasl_mech_name(mech) : NULL));
    cli_jset(j, "message_id", jstr_or_null(o->message_id));
    cli_jset(j, "reply", json_reply(o->have_res ? &o->res.data : NULL));
    cli_jset(j, "queue_id", o->have_res ? jstr_or_null(o->res.queue_id) : cli_jnull());
    json_t *rcpts = cli_jarr();
    for (size_t i = 0; i < o->nrcpt; i++) {
        const sk_rcpt_result *rr = o->have_res && i < o->res.nrcpt ? &o->res.rcpts[i] : NULL;
        const sk_reply *r = rr && rr->reply.code ? &rr->reply : NULL;
        json_t *x = cli_jobj();
        cli_jset(x, "address", cli_jstr(o->rcpts[i]));
        cli_jset(x, "accepted", cli_jbool(rr && rr->accepted));
        cli_jset(x, "code", r ? cli_jint(r->code) : cli_jnull());
        cli_jset(x, "enhanced", r ? jstr_or_null(r->enhanced) : cli_jnull());
        cli_jset(x, "text", cli_jstr(r ? r->text : NULL));
        cli_jpush(rcpts, x);
    }
    cli_jset(j, "recipients", rcpts);
    json_t *err = cli_jnull();
    if (o->err.err != SK_OK) {
        err = cli_jobj();
        cli_jset(err, "step",
                 cli_jstr(o->exit_code == EX_USAGE ? "usage" : sk_step_name(o->err.step)));
        cli_jset(err, "reason", cli_jstr(sk_strerror(o->err.err)));
        cli_jset(err, "argument", cli_jstr(o->bad_arg));
        cli_jset(err, "code", o->err.code ? cli_jint(o->err.code) : cli_jnull());
        cli_jset(err, "enhanced", jstr_or_null(o->err.enhanced));
        cli_jset(err, "text", cli_jstr(o->err.text));
        cli_jset(err, "hint", cli_jstr(hint_for(o, &o->err)));
    }
    cli_jset(j, "error", err);
    cli_json_print(j);
    fflush(stdout);
}

/* A usage (64), data (65) or configuration (78) error found before
 * connecting: one line naming the argument, and the JSON object if asked. */
int sn_fail_early(outcome *o, const send_args *a, int code, const char *arg, sk_step step,
                  const char *fmt, ...)
{
    char msg[SK_REPLY_TEXT_MAX_OCTETS];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (code == EX_USAGE)
        cli_usage_error(CMD, "%s", msg);
    else
        cli_warn(CMD, "%s", msg);
    o->exit_code = code;
    o->bad_arg = arg;
    sk_error_set(&o->err, code == EX_CONFIG ? SK_ERR_CONFIG : SK_ERR_INVAL, step, "%s", msg);
    if (a->json) sn_json_report(o);
    return code;
}

void sn_transcript(void *ctx, char dir, const char *line, size_t len)
{
    (void)ctx;
    fprintf(stderr, "%c: %.*s\n", dir, (int)len, line);
}

/* A size for people, in decimal units as disks and mail providers state
 * them: "850 B", "12.4 MB", "10 MB". */
void sn_human_size(uint64_t n, char *out, size_t size)
{
    static const char *const units[] = {"B", "kB", "MB", "GB", "TB"};
    size_t u = 0;
    double v = (double)n;
    /* 999.96 kB would print as "1000 kB": that is 1 MB. */
    while (v >= 999.95 && u + 1 < sizeof units / sizeof units[0]) v /= 1000, u++;
    if (u == 0) {
        snprintf(out, size, "%llu B", (unsigned long long)n);
        return;
    }
    snprintf(out, size, "%.1f", v);
    size_t l = strlen(out);
    if (l > 2 && !strcmp(out + l - 2, ".0")) out[l - 2] = '\0';
    l = strlen(out);
    snprintf(out + l, size - l, " %s", units[u]);
}

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* The progress line on stderr (a terminal), like curl's: octets sent of
 * the total, the share, the rate; redrawn in place. */
void sn_show_progress(void *ctx, uint64_t sent, uint64_t total)
{
    progress *p = ctx;
    uint64_t now = mono_ms();
    if (sent == 0 || !p->start_ms) p->start_ms = now;
    if (sent != 0 && sent < total && now - p->last_ms < SEND_PROGRESS_INTERVAL_MS) return;
    p->last_ms = now;
    char done[32], all[32], rate[32] = "";
    sn_human_size(sent, done, sizeof done);
    sn_human_size(total, all, sizeof all);
    uint64_t ms = now > p->start_ms ? now - p->start_ms : 1;
    if (sent > 0) {
        sn_human_size(sent * 1000 / ms, rate, sizeof rate);
        size_t l = strlen(rate);
        snprintf(rate + l, sizeof rate - l, "/s");
    }
    /* \033[K clears what a longer earlier line left. */
    fprintf(stderr, "\rsending: %s of %s (%u%%)%s%s\033[K", done, all,
            total ? (unsigned)(sent * 100 / total) : 100u, rate[0] ? ", " : "", rate);
    p->open = 1;
    if (sent >= total) {
        fputc('\n', stderr);
        p->open = 0;
    }
    fflush(stderr);
}

/* End a progress line cut short (an error follows on its own line). */
void sn_progress_end(outcome *o)
{
    if (!o->prog.open) return;
    fputc('\n', stderr);
    o->prog.open = 0;
}
