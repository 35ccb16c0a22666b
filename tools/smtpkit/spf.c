/* smtpkit spf: evaluate SPF (RFC 7208) for a client address and a MAIL FROM
 * or HELO identity, and say why. */
#include "cli.h"

#include <smtpkit/spf.h>

#include <arpa/inet.h>
#include <getopt.h>
#include <string.h>

/* Exit codes by result: a script asks "may this address send?". */
#define SPF_EXIT_FAIL    1 /* fail, softfail */
#define SPF_EXIT_NEUTRAL 2 /* neutral, none */

static void usage(FILE *f)
{
    fprintf(f, "usage: smtpkit spf --ip ADDR --mail-from ADDR [--helo NAME] [options]\n"
               "       smtpkit spf --ip ADDR --helo NAME --identity helo [options]\n"
               "\n"
               "Evaluate SPF (RFC 7208): may the client at ADDR send mail as the MAIL FROM\n"
               "domain (or, with --identity helo, as its HELO name)? Prints the result, the\n"
               "reason, the explanation a domain publishes for a fail, and how many of the 10\n"
               "DNS lookups and 2 void lookups the evaluation used.\n"
               "\n"
               "options:\n"
               "  --ip ADDR                 the client's address (IPv4 or IPv6)\n"
               "  --mail-from ADDR          the MAIL FROM address; '' is the null sender, for\n"
               "                            which postmaster@HELO is checked\n"
               "  --helo NAME               the HELO/EHLO name (%%{h} in records); needed for\n"
               "                            --identity helo and the null sender (default: the\n"
               "                            MAIL FROM domain)\n"
               "  --identity mailfrom|helo  the identity to check (default mailfrom, or helo\n"
               "                            without --mail-from)\n"
               "  --dns-server IP:PORT      resolver to ask (default: the system's)\n"
               "  --receiver NAME           this host's name, for %%{r} in explanations\n"
               "  --timeout DURATION        limit for the whole evaluation (default 20s)\n"
               "  --trace                   print each step of the evaluation\n"
               "  --json                    print one JSON object\n"
               "  -h, --help                this text\n"
               "\n"
               "Exit codes: 0 pass; 1 fail or softfail; 2 neutral or none; 65 permerror (the\n"
               "domain's SPF record is broken); 75 temperror (DNS failed: try again later);\n"
               "64 usage; 78 a bad --dns-server.\n");
}

static int exit_for(sk_spf_result r)
{
    switch (r) {
    case SK_SPF_PASS:
        return EX_OK;
    case SK_SPF_FAIL:
    case SK_SPF_SOFTFAIL:
        return SPF_EXIT_FAIL;
    case SK_SPF_PERMERROR:
        return EX_DATAERR;
    case SK_SPF_TEMPERROR:
        return EX_TEMPFAIL;
    default:
        return SPF_EXIT_NEUTRAL;
    }
}

static void print_json(const sk_spf_outcome *o)
{
    json_t *j = cli_jobj();
    cli_jset(j, "result", cli_jstr(sk_spf_result_name(o->result)));
    cli_jset(j, "identity", cli_jstr(o->identity == SK_SPF_HELO ? "helo" : "mailfrom"));
    cli_jset(j, "domain", cli_jstr(o->domain));
    cli_jset(j, "sender", cli_jstr(o->sender));
    cli_jset(j, "reason", cli_jstr(o->reason));
    cli_jset(j, "explanation", cli_jstr(o->explanation));
    cli_jset(j, "mechanism", cli_jstr(o->mechanism));
    cli_jset(j, "mechanism_domain", cli_jstr(o->mechanism_domain));
    cli_jset(j, "lookups", cli_jint(o->lookups));
    cli_jset(j, "lookups_max", cli_jint(SK_SPF_DNS_LOOKUPS_MAX));
    cli_jset(j, "void_lookups", cli_jint(o->void_lookups));
    cli_jset(j, "void_lookups_max", cli_jint(SK_SPF_VOID_LOOKUPS_MAX));
    cli_jset(j, "property", cli_jstr(o->property));
    cli_jset(j, "property_value", cli_jstr(o->property_value));
    json_t *t = cli_jarr();
    for (size_t i = 0; i < o->ntrace; i++) cli_jpush(t, cli_jstr(o->trace[i]));
    cli_jset(j, "trace", t);
    cli_json_print(j);
}

static void print_text(const sk_spf_outcome *o, int with_trace)
{
    printf("spf: %s\n", sk_spf_result_name(o->result));
    printf("identity: %s %s (%s=%s)\n", o->identity == SK_SPF_HELO ? "helo" : "mailfrom", o->domain,
           o->property, o->property_value);
    printf("reason: %s\n", o->reason ? o->reason : "");
    if (o->explanation) printf("explanation: %s\n", o->explanation);
    printf("lookups: %u of %d, void lookups %u of %d\n", o->lookups, SK_SPF_DNS_LOOKUPS_MAX,
           o->void_lookups, SK_SPF_VOID_LOOKUPS_MAX);
    if (with_trace) {
        printf("trace:\n");
        for (size_t i = 0; i < o->ntrace; i++) printf("  %s\n", o->trace[i]);
    }
}

int cmd_spf(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"ip", required_argument, NULL, 'i'},
        {"mail-from", required_argument, NULL, 'f'},
        {"helo", required_argument, NULL, 'H'},
        {"identity", required_argument, NULL, 'I'},
        {"dns-server", required_argument, NULL, 'd'},
        {"receiver", required_argument, NULL, 'r'},
        {"timeout", required_argument, NULL, 'T'},
        {"trace", no_argument, NULL, 't'},
        {"json", no_argument, NULL, 'j'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    sk_spf_request req = {0};
    sk_spf_opts so = {0};
    sk_resolver_opts ro = {0};
    int json = 0, with_trace = 0, identity_set = 0, opt;
    opterr = 0; /* our own messages, naming the argument */
    optind = 1;
    while ((opt = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
        switch (opt) {
        case 'i':
            req.ip = optarg;
            break;
        case 'f':
            req.mail_from = optarg;
            break;
        case 'H':
            req.helo = optarg;
            break;
        case 'I':
            identity_set = 1;
            if (!strcmp(optarg, "mailfrom"))
                req.identity = SK_SPF_MAILFROM;
            else if (!strcmp(optarg, "helo"))
                req.identity = SK_SPF_HELO;
            else
                return cli_usage_error("spf", "--identity must be mailfrom or helo");
            break;
        case 'd':
            ro.server = optarg;
            break;
        case 'r':
            so.receiver = optarg;
            break;
        case 'T': {
            uint64_t ms;
            if (sk_parse_duration_ms(optarg, &ms) != SK_OK || ms == 0 || ms > 3600000)
                return cli_usage_error("spf", "bad --timeout '%s' (e.g. 20s, 500ms)", optarg);
            so.timeout_ms = (int)ms;
            break;
        }
        case 't':
            with_trace = 1;
            break;
        case 'j':
            json = 1;
            break;
        case 'h':
            usage(stdout);
            return EX_OK;
        default:
            return cli_getopt_error("spf", opt, argv, longopts);
        }
    }
    if (optind < argc) return cli_usage_error("spf", "unexpected argument '%s'", argv[optind]);
    if (!req.ip) return cli_usage_error("spf", "give the client's address: --ip ADDR");
    unsigned char a[16];
    if (inet_pton(AF_INET, req.ip, a) != 1 && inet_pton(AF_INET6, req.ip, a) != 1)
        return cli_usage_error("spf", "--ip '%s' is not an IPv4 or IPv6 address", req.ip);
    if (!identity_set && !req.mail_from) req.identity = SK_SPF_HELO;
    if (req.identity == SK_SPF_MAILFROM && !req.mail_from)
        return cli_usage_error("spf", "--identity mailfrom needs --mail-from");
    int null_sender = req.mail_from && !req.mail_from[0];
    if ((req.identity == SK_SPF_HELO || null_sender) && (!req.helo || !req.helo[0]))
        return cli_usage_error("spf", "%s needs --helo NAME",
                               req.identity == SK_SPF_HELO ? "the HELO identity"
                                                           : "the null sender (--mail-from '')");
    if (!req.helo && req.mail_from) {
        /* %{h} without a HELO name: the MAIL FROM domain stands in. */
        const char *at = strrchr(req.mail_from, '@');
        req.helo = at ? at + 1 : req.mail_from;
    }
    sk_spf_outcome *o = NULL;
    sk_error err;
    sk_error_clear(&err);
    if (sk_spf_check_sync(&ro, &req, &so, &o, &err) != SK_OK) {
        cli_warn("spf", "%s", err.text);
        return err.err == SK_ERR_CONFIG ? EX_CONFIG : cli_exit_code(&err);
    }
    if (json)
        print_json(o);
    else
        print_text(o, with_trace);
    int rc = exit_for(o->result);
    sk_spf_outcome_free(o);
    return rc;
}
