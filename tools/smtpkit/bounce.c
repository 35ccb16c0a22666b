/* smtpkit bounce: read saved bounce messages and print what SMTPKit makes
 * of each: the recipients, their outcome, the class and whether it would
 * suppress, and the detector that read it (docs/delivery.md). */
#include "cli.h"

#include <errno.h>
#include <string.h>

static void usage(FILE *f)
{
    fprintf(f, "usage: smtpkit bounce FILE... [--rules FILE] [--json]\n"
               "\n"
               "Reads each FILE (a whole bounce message as received, '-' for standard\n"
               "input): standard delivery status notifications (RFC 3464, read\n"
               "leniently) and the text bounces of Postfix, Exim, qmail, Sendmail,\n"
               "Exchange and Office 365, Yahoo, GroupWise, Domino, Courier, mail\n"
               "gateways and mailing-list managers' notices (a list's own probes,\n"
               "warnings and digests are no bounce), with a last-resort scan for\n"
               "failure words in several languages. For each recipient it prints the\n"
               "address (the original envelope recipient when the bounce lets it be\n"
               "found), the action, the status, the class by the rules, whether a hard\n"
               "bounce of that class suppresses (and for how long), the remote reply\n"
               "and the detector.\n"
               "\n"
               "--rules FILE  classification rules (docs/delivery.md); default: built in\n"
               "--json        a JSON array, one object per FILE (docs/delivery.md)\n"
               "-h, --help    this text\n"
               "\n"
               "Exit: 0 every FILE read as a bounce, 64 bad arguments, 65 some FILE is\n"
               "not a bounce SMTPKit recognises, 66 a FILE cannot be read, 78 bad\n"
               "--rules file.\n");
}

static const char *action_name(int a)
{
    return a >= 0 && a < SK_DSN_ACTION__COUNT ? sk_dsn_action_name((sk_dsn_action)a) : NULL;
}

static json_t *json_rcpt(const sk_bounce_rcpt *r, const sk_bounce_verdict *v)
{
    json_t *o = cli_jobj();
    cli_jset(o, "recipient", cli_jstr(r->recipient));
    cli_jset(o, "reported", cli_jstr(r->reported));
    cli_jset(o, "action", cli_jstr(action_name(r->action)));
    cli_jset(o, "status", cli_jstr(r->status));
    cli_jset(o, "reply", cli_jstr(r->reply));
    cli_jset(o, "remote_mta", cli_jstr(r->remote_mta));
    cli_jset(o, "class", cli_jstr(sk_class_name(v->cls)));
    cli_jset(o, "permanent", cli_jbool(v->permanent));
    cli_jset(o, "suppress", cli_jbool(v->suppress));
    cli_jset(o, "suppress_for_s", v->suppress ? cli_jint((long long)v->suppress_s) : cli_jnull());
    cli_jset(o, "evidence",
             v->suppress ? cli_jstr(v->evidence_any ? "any" : "strong") : cli_jnull());
    return o;
}

static void text_rcpt(const sk_bounce_rcpt *r, const sk_bounce_verdict *v)
{
    const char *act = action_name(r->action);
    printf("  %s  action=%s status=%s class=%s", r->recipient ? r->recipient : "(unknown)",
           act ? act : "-", r->status ? r->status : "-", sk_class_name(v->cls));
    if (v->suppress)
        printf(" suppress=%llus(%s evidence)", (unsigned long long)v->suppress_s,
               v->evidence_any ? "any" : "strong");
    else
        printf(" suppress=no");
    putchar('\n');
    if (r->reported && r->recipient && strcmp(r->reported, r->recipient))
        printf("    reported as %s\n", r->reported);
    if (r->reply) printf("    reply: %s\n", r->reply);
    if (r->remote_mta) printf("    remote MTA: %s\n", r->remote_mta);
}

/* One file's result: printed as text, or added to out (--json). */
static void print_one(const char *file, const sk_bounce *b, const sk_rules *rules, json_t *out)
{
    json_t *rcpts = NULL;
    if (out) {
        json_t *o = cli_jobj();
        cli_jset(o, "file", cli_jstr(file));
        cli_jset(o, "detector", cli_jstr(b->detector));
        cli_jset(o, "reporting_mta", cli_jstr(b->reporting_mta));
        cli_jset(o, "original_message_id", cli_jstr(b->original_message_id));
        rcpts = cli_jarr();
        cli_jset(o, "recipients", rcpts);
        cli_jpush(out, o);
    } else if (!b->detector) {
        printf("%s: not a bounce SMTPKit recognises\n", file);
        return;
    } else {
        printf("%s: detector=%s reporting-mta=%s\n", file, b->detector,
               b->reporting_mta ? b->reporting_mta : "-");
    }
    for (size_t i = 0; i < b->nrcpts; i++) {
        sk_bounce_verdict v = sk_bounce_classify(&b->rcpts[i], rules);
        if (rcpts)
            cli_jpush(rcpts, json_rcpt(&b->rcpts[i], &v));
        else
            text_rcpt(&b->rcpts[i], &v);
    }
}

int cmd_bounce(int argc, char **argv)
{
    const char *rules_path = NULL;
    int json = 0, nfiles = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return EX_OK;
        }
    }
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--json")) {
            json = 1;
        } else if (!strcmp(a, "--rules")) {
            if (i + 1 >= argc || !argv[i + 1][0])
                return cli_usage_error("bounce", "--rules needs a value");
            rules_path = argv[++i];
        } else if (a[0] == '-' && a[1]) {
            return cli_unknown_option("bounce", a,
                                      (const char *const[]){"rules", "json", "help", NULL});
        } else {
            nfiles++;
        }
    }
    if (!nfiles) return cli_usage_error("bounce", "give at least one FILE (or - for stdin)");
    sk_rules *rules = NULL;
    sk_error err;
    if (rules_path ? sk_rules_load(rules_path, &rules, &err) : sk_rules_default(&rules, &err)) {
        cli_warn("bounce", "%s", err.text);
        return err.err == SK_ERR_NOMEM ? EX_OSERR : EX_CONFIG;
    }
    int rc = EX_OK;
    json_t *out = json ? cli_jarr() : NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--json")) continue;
        if (!strcmp(a, "--rules")) {
            i++;
            continue;
        }
        size_t len;
        char *msg = cli_read_file(a, &len);
        if (!msg) {
            cli_warn("bounce", "cannot read %s: %s", a, strerror(errno));
            rc = EX_NOINPUT;
            continue;
        }
        sk_bounce *b = NULL;
        if (sk_bounce_read(msg, len, &b, &err)) {
            cli_warn("bounce", "%s: %s", a, err.text);
            if (rc == EX_OK) rc = EX_DATAERR;
        } else {
            print_one(a, b, rules, out);
            if (!b->detector && rc == EX_OK) rc = EX_DATAERR;
        }
        sk_bounce_free(b);
        sk_free(msg);
    }
    if (out) cli_json_print(out);
    sk_rules_free(rules);
    return rc;
}
