/* smtpkit dmarc: evaluate DMARC (RFC 7489) for a From domain, or a saved
 * message's From field, given the SPF and DKIM results: which record
 * applies, whether an identifier aligns, and what the domain asks a
 * receiver to do with the message. */
#include "cli.h"

#include <smtpkit/dmarc.h>

#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

/* Exit codes of this command beyond sysexits.h's (docs/authentication.md). */
enum { DMARC_EXIT_FAIL = 1, DMARC_EXIT_NONE = 2 };

static void usage(FILE *f)
{
    fprintf(f, "usage: smtpkit dmarc --from-domain DOMAIN [options]\n"
               "       smtpkit dmarc --message FILE [options]\n"
               "\n"
               "Evaluate DMARC (RFC 7489) as a receiver would: find the policy record\n"
               "(_dmarc.DOMAIN, then the organizational domain's, from the Public Suffix\n"
               "List), check whether SPF or a DKIM signature passed for an aligned domain,\n"
               "and print the result with the policy that applies (p=, sp= or np=) and the\n"
               "disposition after pct=. The SPF and DKIM results are given, not computed.\n"
               "\n"
               "options:\n"
               "  --from-domain DOMAIN     the RFC5322.From domain\n"
               "  --message FILE           take the From domain from FILE's header (- for\n"
               "                           standard input)\n"
               "  --spf RESULT:DOMAIN      SPF's result for the MAIL FROM domain (the HELO\n"
               "                           name for a null sender), e.g. pass:example.org\n"
               "  --dkim RESULT:DOMAIN     a DKIM signature's result and d= (repeatable)\n"
               "  --dns-server IP:PORT     resolver to ask (default: the system's)\n"
               "  --json                   print one JSON object\n"
               "  -h, --help               this text\n"
               "\n"
               "RESULT is pass, fail, softfail, neutral, none, policy, temperror or\n"
               "permerror; only pass counts for DMARC, temperror can make it temperror.\n"
               "\n"
               "Exit codes: 0 pass; 1 fail; 2 none (no policy, several records); 64 usage;\n"
               "65 permerror (an unusable record, or a From field that cannot be evaluated);\n"
               "66 the message cannot be read; 75 temperror (DNS failure); 78 configuration\n"
               "error (bad --dns-server).\n");
}

/* "RESULT:DOMAIN" into an identifier (DOMAIN points into arg). */
static int parse_id(const char *opt, char *arg, sk_dmarc_auth_id *out)
{
    char *colon = strchr(arg, ':');
    if (!colon || colon == arg || !colon[1])
        return cli_usage_error("dmarc", "%s '%s': expected RESULT:DOMAIN (e.g. pass:example.org)",
                               opt, arg);
    *colon = '\0';
    static const char *const fails[] = {"fail", "softfail", "neutral", "policy", "permerror", NULL};
    if (!strcmp(arg, "pass")) {
        out->result = SK_DMARC_AUTH_PASS;
    } else if (!strcmp(arg, "temperror")) {
        out->result = SK_DMARC_AUTH_TEMPERROR;
    } else if (!strcmp(arg, "none")) {
        out->result = SK_DMARC_AUTH_NONE;
    } else {
        size_t i = 0;
        while (fails[i] && strcmp(arg, fails[i])) i++;
        *colon = ':';
        if (!fails[i])
            return cli_usage_error("dmarc",
                                   "%s '%s': unknown result (pass, fail, softfail, neutral, none, "
                                   "policy, temperror, permerror)",
                                   opt, arg);
        *colon = '\0';
        out->result = SK_DMARC_AUTH_FAIL;
    }
    char norm[SK_SMTP_DOMAIN_MAX_OCTETS + 1];
    if (sk_dmarc_domain_normalize(colon + 1, norm) != SK_OK)
        return cli_usage_error("dmarc", "%s: '%s' is not a domain name", opt, colon + 1);
    out->domain = colon + 1;
    return EX_OK;
}

static const char *auth_name(sk_dmarc_auth a)
{
    switch (a) {
    case SK_DMARC_AUTH_PASS:
        return "pass";
    case SK_DMARC_AUTH_FAIL:
        return "fail";
    case SK_DMARC_AUTH_TEMPERROR:
        return "temperror";
    case SK_DMARC_AUTH_NONE:
        break;
    }
    return "none";
}

static void print_uris(FILE *f, const sk_dmarc_uri *u, size_t n)
{
    for (size_t i = 0; i < n; i++) fprintf(f, "%s%s", i ? ", " : "", u[i].uri);
}

static json_t *uris_json(const sk_dmarc_uri *u, size_t n)
{
    json_t *a = cli_jarr();
    for (size_t i = 0; i < n; i++) cli_jpush(a, cli_jstr(u[i].uri));
    return a;
}

static void print_text(const sk_dmarc_result *r, const sk_dmarc_input *in)
{
    printf("dmarc=%s", sk_dmarc_status_name(r->status));
    if (r->has_record && (r->status == SK_DMARC_PASS || r->status == SK_DMARC_FAIL))
        printf(" (%s=%s, disposition %s%s)", r->policy_tag, sk_dmarc_policy_name(r->policy),
               sk_dmarc_policy_name(r->disposition), r->sampled_out ? ", not sampled by pct" : "");
    printf("\n");
    if (r->from_domain[0])
        printf("  from domain:  %s (organizational domain %s)\n", r->from_domain, r->org_domain);
    if (r->has_record) {
        const sk_dmarc_record *d = &r->record;
        printf("  record:       _dmarc.%s: p=%s sp=%s np=%s adkim=%s aspf=%s pct=%u\n",
               r->record_domain, sk_dmarc_policy_name(d->p), sk_dmarc_policy_name(d->sp),
               sk_dmarc_policy_name(d->np), d->adkim == SK_DMARC_ALIGN_STRICT ? "s" : "r",
               d->aspf == SK_DMARC_ALIGN_STRICT ? "s" : "r", d->pct);
        if (d->n_rua) {
            printf("  reports to:   ");
            print_uris(stdout, d->rua, d->n_rua);
            printf("\n");
        }
    }
    if (in->spf.domain)
        printf("  spf:          %s %s%s\n", auth_name(in->spf.result), in->spf.domain,
               r->spf_aligned ? " (aligned)" : "");
    for (size_t i = 0; i < in->n_dkim; i++)
        printf("  dkim:         %s d=%s%s\n", auth_name(in->dkim[i].result), in->dkim[i].domain,
               r->dkim_aligned &&
                       sk_dmarc_aligned(r->dkim_domain, in->dkim[i].domain, SK_DMARC_ALIGN_STRICT)
                   ? " (aligned)"
                   : "");
    printf("  reason:       %s\n", r->reason);
}

static void print_json(const sk_dmarc_result *r)
{
    json_t *j = cli_jobj();
    cli_jset(j, "result", cli_jstr(sk_dmarc_status_name(r->status)));
    cli_jset(j, "from_domain", cli_jstr(r->from_domain));
    cli_jset(j, "org_domain", cli_jstr(r->org_domain));
    cli_jset(j, "policy_tag", cli_jstr(r->policy_tag));
    cli_jset(j, "policy", cli_jstr(sk_dmarc_policy_name(r->policy)));
    cli_jset(j, "disposition", cli_jstr(sk_dmarc_policy_name(r->disposition)));
    cli_jset(j, "sampled_out", cli_jbool(r->sampled_out));
    cli_jset(j, "spf_aligned", cli_jbool(r->spf_aligned));
    cli_jset(j, "dkim_aligned", cli_jbool(r->dkim_aligned));
    cli_jset(j, "dkim_domain", cli_jstr(r->dkim_domain));
    cli_jset(j, "reason", cli_jstr(r->reason));
    json_t *rec = cli_jnull();
    if (r->has_record) {
        const sk_dmarc_record *d = &r->record;
        rec = cli_jobj();
        cli_jset(rec, "domain", cli_jstr(r->record_domain));
        cli_jset(rec, "p", cli_jstr(sk_dmarc_policy_name(d->p)));
        cli_jset(rec, "sp", cli_jstr(sk_dmarc_policy_name(d->sp)));
        cli_jset(rec, "np", cli_jstr(sk_dmarc_policy_name(d->np)));
        cli_jset(rec, "adkim", cli_jstr(d->adkim == SK_DMARC_ALIGN_STRICT ? "s" : "r"));
        cli_jset(rec, "aspf", cli_jstr(d->aspf == SK_DMARC_ALIGN_STRICT ? "s" : "r"));
        cli_jset(rec, "pct", cli_jint(d->pct));
        cli_jset(rec, "rua", uris_json(d->rua, d->n_rua));
        cli_jset(rec, "ruf", uris_json(d->ruf, d->n_ruf));
        cli_jset(rec, "problems", cli_jint(d->problems));
    }
    cli_jset(j, "record", rec);
    cli_json_print(j);
}

int cmd_dmarc(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"from-domain", required_argument, NULL, 'f'},
        {"message", required_argument, NULL, 'm'},
        {"spf", required_argument, NULL, 's'},
        {"dkim", required_argument, NULL, 'd'},
        {"dns-server", required_argument, NULL, 'D'},
        {"json", no_argument, NULL, 'j'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    sk_dmarc_input in = {0};
    sk_dmarc_auth_id dkim[SK_DMARC_DKIM_MAX];
    const char *message = NULL, *dns_server = NULL;
    int json = 0, opt, rc;
    opterr = 0;
    optind = 1;
    while ((opt = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
        switch (opt) {
        case 'f': {
            char norm[SK_SMTP_DOMAIN_MAX_OCTETS + 1];
            if (sk_dmarc_domain_normalize(optarg, norm) != SK_OK)
                return cli_usage_error("dmarc", "--from-domain: '%s' is not a domain name", optarg);
            in.from_domain = optarg;
            break;
        }
        case 'm':
            message = optarg;
            break;
        case 's':
            if ((rc = parse_id("--spf", optarg, &in.spf)) != EX_OK) return rc;
            break;
        case 'd':
            if (in.n_dkim == SK_DMARC_DKIM_MAX)
                return cli_usage_error("dmarc", "at most %d --dkim", SK_DMARC_DKIM_MAX);
            if ((rc = parse_id("--dkim", optarg, &dkim[in.n_dkim])) != EX_OK) return rc;
            in.n_dkim++;
            break;
        case 'D':
            dns_server = optarg;
            break;
        case 'j':
            json = 1;
            break;
        case 'h':
            usage(stdout);
            return EX_OK;
        default:
            return cli_getopt_error("dmarc", opt, argv, longopts);
        }
    }
    if (optind < argc) return cli_usage_error("dmarc", "unexpected argument '%s'", argv[optind]);
    if (!in.from_domain == !message)
        return cli_usage_error("dmarc", "give one of --from-domain DOMAIN and --message FILE");
    in.dkim = dkim;
    char *raw = NULL;
    if (message) {
        size_t len;
        raw = cli_read_file(message, &len);
        if (!raw) {
            cli_warn("dmarc", "cannot read %s: %s", message, strerror(errno));
            return EX_NOINPUT;
        }
        in.headers = raw;
        in.headers_len = len;
    }
    sk_resolver_opts ro = {.server = dns_server};
    sk_dmarc_result r;
    sk_error err;
    sk_error_clear(&err);
    sk_err e = sk_dmarc_check_sync(&ro, NULL, &in, &r, &err);
    if (e) {
        sk_free(raw);
        cli_warn("dmarc", "%s", err.text[0] ? err.text : sk_strerror(e));
        return e == SK_ERR_CONFIG ? EX_CONFIG : cli_exit_code(&err);
    }
    if (json)
        print_json(&r);
    else
        print_text(&r, &in);
    switch (r.status) {
    case SK_DMARC_PASS:
        rc = EX_OK;
        break;
    case SK_DMARC_FAIL:
        rc = DMARC_EXIT_FAIL;
        break;
    case SK_DMARC_NONE:
        rc = DMARC_EXIT_NONE;
        break;
    case SK_DMARC_TEMPERROR:
        rc = EX_TEMPFAIL;
        break;
    default:
        rc = EX_DATAERR;
        break;
    }
    sk_dmarc_result_clear(&r);
    sk_free(raw);
    return rc;
}
