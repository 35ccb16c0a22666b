/* smtpkit check: is a domain set up to send and receive mail? One
 * checklist (MX, SPF, DKIM keys, DMARC, MTA-STS, TLS-RPT, and for a sending
 * address its reverse DNS and block lists), each line a verdict with the
 * fix in plain words. With --message, the checks a receiver makes on a
 * saved message (DKIM, SPF, DMARC) and the Authentication-Results field it
 * would add. */
#include "check_int.h"

#include <smtpkit/authres.h>
#include <smtpkit/dkim.h>
#include <smtpkit/dmarc.h>

#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Options given more than once: far more than anyone signs with or asks. */
#define CHECK_SELECTORS_MAX 16
#define CHECK_DNSBL_MAX     16

/* The block lists asked about --ip when no --dnsbl is given (docs/
 * authentication.md): Spamhaus ZEN and SpamCop, which the large receivers
 * consult. Spamhaus refuses queries that come through public resolvers
 * (127.255.255.254), which is reported as a refusal, not a listing. */
static const char *const dnsbl_default[] = {"zen.spamhaus.org", "bl.spamcop.net", NULL};

static const char *const verdict_marks[] = {"[ OK ]", "[INFO]", "[WARN]", "[FAIL]"};
static const char *const verdict_names[] = {"ok", "info", "warn", "fail"};

/* ====================================================================== */
/* output and exit codes                                                   */
/* ====================================================================== */

/* Exit codes (docs/authentication.md "Checking a domain"): 0 nothing wrong
 * (warnings and notes allowed), 65 a problem found, 75 no problem found but
 * a check could not finish (DNS failed for now). */
static int exit_code(const run *r, size_t *problems, size_t *warnings, size_t *temporary)
{
    *problems = *warnings = *temporary = 0;
    for (size_t i = 0; i < r->n; i++) {
        const item *it = &r->items[i];
        if (it->v == V_FAIL && it->temporary)
            (*temporary)++;
        else if (it->v == V_FAIL)
            (*problems)++;
        else if (it->v == V_WARN)
            (*warnings)++;
    }
    return *problems ? EX_DATAERR : *temporary ? EX_TEMPFAIL : EX_OK;
}

static void print_items(const run *r)
{
    for (size_t i = 0; i < r->n; i++) {
        const item *it = &r->items[i];
        printf("  %s %-9s %s\n", verdict_marks[it->v], it->check, it->detail);
        const char *l = sk_buf_cstr(&it->more);
        while (*l) {
            size_t n = strcspn(l, "\n");
            printf("                   %.*s\n", (int)n, l);
            l += n + (l[n] == '\n');
        }
        if (it->fix)
            printf("         %-7s %s\n",
                   it->temporary     ? "retry"
                   : it->v == V_INFO ? "hint"
                                     : "fix",
                   it->fix);
    }
}

static void print_result(size_t problems, size_t warnings, size_t temporary, int rc)
{
    if (problems)
        printf("result: %zu problem%s, %zu warning%s (exit %d)\n", problems,
               problems == 1 ? "" : "s", warnings, warnings == 1 ? "" : "s", rc);
    else if (temporary)
        printf("result: %zu check%s could not finish: DNS failed for now (exit %d)\n", temporary,
               temporary == 1 ? "" : "s", rc);
    else if (warnings)
        printf("result: OK with %zu warning%s\n", warnings, warnings == 1 ? "" : "s");
    else
        printf("result: OK\n");
}

static json_t *items_json(const run *r)
{
    json_t *a = json_array();
    if (!a) ck_out_of_memory();
    for (size_t i = 0; i < r->n; i++) {
        const item *it = &r->items[i];
        json_t *o = json_object();
        if (!o || json_array_append_new(a, o)) ck_out_of_memory();
        json_object_set_new(o, "check", ck_json_stringn_z(it->check));
        json_object_set_new(o, "status", ck_json_stringn_z(verdict_names[it->v]));
        json_object_set_new(o, "detail", ck_jstr(it->detail));
        json_object_set_new(o, "fix", ck_jstr(it->fix));
        json_object_set_new(o, "temporary", json_boolean(it->temporary));
        json_t *lines = json_array();
        const char *l = sk_buf_cstr(&it->more);
        while (*l) {
            size_t n = strcspn(l, "\n");
            char *line = ck_printable(l, n);
            json_array_append_new(lines, ck_json_stringn_z(line));
            sk_free(line);
            l += n + (l[n] == '\n');
        }
        json_object_set_new(o, "lines", lines);
        json_object_update(o, it->data);
    }
    return a;
}

/* The run's verdict in the --json output: status, exit code, counts, and
 * every check. */
static void json_verdict(json_t *root, const run *r, int rc, size_t problems, size_t warnings,
                         size_t temporary)
{
    json_object_set_new(root, "status",
                        ck_json_stringn_z(problems || temporary ? "fail"
                                          : warnings            ? "warn"
                                                                : "ok"));
    json_object_set_new(root, "exit_code", json_integer(rc));
    json_object_set_new(root, "problems", json_integer((json_int_t)problems));
    json_object_set_new(root, "warnings", json_integer((json_int_t)warnings));
    json_object_set_new(root, "checks", items_json(r));
}

static void emit_json(json_t *root)
{
    if (json_dumpf(root, stdout, JSON_COMPACT | JSON_PRESERVE_ORDER)) ck_out_of_memory();
    putchar('\n');
    json_decref(root);
}

static void run_free(run *r)
{
    for (size_t i = 0; i < r->n; i++) {
        sk_free(r->items[i].detail);
        sk_free(r->items[i].fix);
        sk_buf_free(&r->items[i].more);
        json_decref(r->items[i].data);
    }
    sk_free(r->items);
}

/* ====================================================================== */
/* arguments                                                               */
/* ====================================================================== */

static void usage(FILE *f)
{
    fprintf(
        f, "usage: smtpkit check DOMAIN [--selector S]... [--ip ADDR [--dnsbl ZONE]...] [options]\n"
           "       smtpkit check --message FILE --ip ADDR --helo NAME --mail-from ADDR [options]\n"
           "\n"
           "Is DOMAIN set up to send and receive mail? Checks, each with a verdict (OK,\n"
           "INFO, WARN, FAIL) and the fix in plain words:\n"
           "  mx       MX records (null MX, implicit MX), each host's A/AAAA addresses\n"
           "  spf      one record, its syntax, DNS lookups (of 10) and void lookups (of 2),\n"
           "           what it says about other addresses (-all, ~all, ?all, +all), and\n"
           "           with --ip whether ADDR may send\n"
           "  dkim     the key at SELECTOR._domainkey.DOMAIN for each --selector: present,\n"
           "           parsable, RSA size (under 1024 bits FAIL, under 2048 WARN) or\n"
           "           Ed25519, t=y testing, revoked\n"
           "  dmarc    the policy (own or the organizational domain's), p/sp/np, pct,\n"
           "           rua/ruf and whether a report domain takes the reports\n"
           "  mta-sts  the _mta-sts record, the policy fetched over HTTPS (certificate\n"
           "           verified, no redirects), its mode, and its mx patterns against the MX\n"
           "           hosts (RFC 8461)\n"
           "  tls-rpt  the _smtp._tls record (RFC 8460)\n"
           "  ptr      with --ip: reverse DNS, and whether that name resolves back to ADDR\n"
           "  dnsbl    with --ip: each block list; 127.255.255.x answers are refusals\n"
           "\n"
           "With --message, the checks a receiver makes on a saved message instead:\n"
           "DKIM (every signature), SPF for MAIL FROM and HELO, DMARC, and the\n"
           "Authentication-Results field it would add: \"why did my message fail DMARC?\".\n"
           "\n"
           "options:\n"
           "  --selector S            a DKIM selector to check (repeatable)\n"
           "  --ip ADDR               the address mail is sent from (IPv4 or IPv6)\n"
           "  --dnsbl ZONE            a DNS block list to ask about --ip (repeatable; replaces\n"
           "                          the default zen.spamhaus.org and bl.spamcop.net;\n"
           "                          'none' for none)\n"
           "  --dns-server IP:PORT    resolver to ask (default: the system's)\n"
           "  --ca-file FILE          trust these CA certificates (PEM) for the MTA-STS policy\n"
           "                          host instead of the system's\n"
           "  --mta-sts-connect HOST:PORT\n"
           "                          fetch the MTA-STS policy from HOST:PORT, still verifying\n"
           "                          the certificate for mta-sts.DOMAIN (testing and\n"
           "                          troubleshooting, as curl's --connect-to)\n"
           "  --timeout DURATION      bound on each DNS try and on the policy fetch (default:\n"
           "                          5s a DNS try, 60s the fetch as RFC 8461 3.3 suggests)\n"
           "  --message FILE          check a saved message (- for standard input)\n"
           "  --helo NAME             with --message: the client's HELO/EHLO name\n"
           "  --mail-from ADDR        with --message: the MAIL FROM address ('' for <>)\n"
           "  --authserv-id NAME      with --message: the receiver's name in\n"
           "                          Authentication-Results (default: this host's name)\n"
           "  --json                  print one JSON object\n"
           "  -h, --help              this text\n"
           "\n"
           "Exit codes: 0 nothing wrong (warnings and notes allowed); 65 a problem was\n"
           "found (FAIL); 75 no problem found, but a check could not finish because DNS\n"
           "failed for now (try again); 64 usage; 66 the message cannot be read; 78 a bad\n"
           "--dns-server or an unusable --ca-file.\n");
}

/* "HOST:PORT", an IPv6 HOST in brackets. */
static int host_port_valid(const char *s)
{
    const char *colon = strrchr(s, ':');
    if (!colon || colon == s || !colon[1] || strlen(colon + 1) > 5) return 0;
    for (const char *p = colon + 1; *p; p++)
        if (*p < '0' || *p > '9') return 0;
    if (s[0] == '[') return colon[-1] == ']' && colon - s > 2;
    return memchr(s, ':', (size_t)(colon - s)) == NULL;
}

static int ip_valid(const char *s)
{
    unsigned char a[16];
    return inet_pton(AF_INET, s, a) == 1 || inet_pton(AF_INET6, s, a) == 1;
}

int cmd_check(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"selector", required_argument, NULL, 's'},
        {"ip", required_argument, NULL, 'i'},
        {"dnsbl", required_argument, NULL, 'b'},
        {"dns-server", required_argument, NULL, 'd'},
        {"ca-file", required_argument, NULL, 'c'},
        {"mta-sts-connect", required_argument, NULL, 'C'},
        {"timeout", required_argument, NULL, 'T'},
        {"message", required_argument, NULL, 'm'},
        {"helo", required_argument, NULL, 'H'},
        {"mail-from", required_argument, NULL, 'f'},
        {"authserv-id", required_argument, NULL, 'a'},
        {"json", no_argument, NULL, 'j'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *cmd = "check";
    const char *selectors[CHECK_SELECTORS_MAX];
    char *zones[CHECK_DNSBL_MAX];
    size_t n_sel = 0, n_zones = 0;
    int dnsbl_none = 0, json = 0, opt;
    const char *ip = NULL, *dns_server = NULL, *ca_file = NULL, *connect_to = NULL;
    const char *message = NULL, *helo = NULL, *mail_from = NULL, *authserv_id = NULL;
    const char *domain_only = NULL, *message_only = NULL;
    int timeout_ms = 0, rc = EX_OK;
    opterr = 0;
    optind = 1;
    /* -h and --help win wherever they stand (before any work or error). */
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--")) break;
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            usage(stdout);
            return EX_OK;
        }
    }
    while ((opt = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
        switch (opt) {
        case 's':
            if (n_sel == CHECK_SELECTORS_MAX)
                rc = cli_usage_error(cmd, "at most %d --selector", CHECK_SELECTORS_MAX);
            else if (!sk_dkim_name_valid(optarg))
                rc = cli_usage_error(cmd, "--selector '%s' is not a DKIM selector", optarg);
            else
                selectors[n_sel++] = optarg;
            domain_only = "--selector";
            break;
        case 'i':
            if (!ip_valid(optarg))
                rc = cli_usage_error(cmd, "--ip '%s' is not an IPv4 or IPv6 address", optarg);
            ip = optarg;
            break;
        case 'b':
            domain_only = "--dnsbl";
            if (!strcmp(optarg, "none")) {
                dnsbl_none = 1;
                break;
            }
            if (n_zones == CHECK_DNSBL_MAX) {
                rc = cli_usage_error(cmd, "at most %d --dnsbl", CHECK_DNSBL_MAX);
                break;
            }
            zones[n_zones] = ck_xcalloc(SK_SMTP_DOMAIN_MAX_OCTETS + 1, 1);
            if (sk_dmarc_domain_normalize(optarg, zones[n_zones]) != SK_OK) {
                sk_free(zones[n_zones]);
                rc = cli_usage_error(cmd, "--dnsbl '%s' is not a DNS zone", optarg);
                break;
            }
            n_zones++;
            break;
        case 'd':
            dns_server = optarg;
            break;
        case 'c':
            ca_file = optarg;
            domain_only = "--ca-file";
            break;
        case 'C':
            if (!host_port_valid(optarg))
                rc = cli_usage_error(cmd, "--mta-sts-connect '%s' is not HOST:PORT", optarg);
            connect_to = optarg;
            domain_only = "--mta-sts-connect";
            break;
        case 'T': {
            uint64_t ms;
            if (sk_parse_duration_ms(optarg, &ms) != SK_OK || ms == 0 || ms > 3600000)
                rc = cli_usage_error(cmd, "bad --timeout '%s' (e.g. 10s, 500ms)", optarg);
            else
                timeout_ms = (int)ms;
            break;
        }
        case 'm':
            message = optarg;
            break;
        case 'H':
            helo = optarg;
            message_only = "--helo";
            break;
        case 'f':
            mail_from = optarg;
            message_only = "--mail-from";
            break;
        case 'a':
            authserv_id = optarg;
            message_only = "--authserv-id";
            break;
        case 'j':
            json = 1;
            break;
        default:
            rc = cli_getopt_error(cmd, opt, argv, longopts);
            break;
        }
        if (rc) goto out;
    }
    const char *domain_arg = optind < argc ? argv[optind] : NULL;
    if (optind + 1 < argc) {
        rc = cli_usage_error(cmd, "unexpected argument '%s'", argv[optind + 1]);
        goto out;
    }
    if (!message && !domain_arg) {
        rc = cli_usage_error(cmd, "give a DOMAIN to check, or --message FILE");
        goto out;
    }
    if (message && domain_arg) {
        rc = cli_usage_error(cmd, "give a DOMAIN or --message FILE, not both ('%s')", domain_arg);
        goto out;
    }
    if (message && domain_only) {
        rc = cli_usage_error(cmd, "%s is for checking a domain, not a --message", domain_only);
        goto out;
    }
    if (!message && message_only) {
        rc = cli_usage_error(cmd, "%s goes with --message", message_only);
        goto out;
    }
    if (message && (!ip || !helo || !mail_from)) {
        rc = cli_usage_error(cmd, "--message needs %s",
                             !ip     ? "--ip ADDR (the client's address)"
                             : !helo ? "--helo NAME"
                                     : "--mail-from ADDR");
        goto out;
    }
    if (message && !helo[0]) {
        rc = cli_usage_error(cmd, "--helo must not be empty");
        goto out;
    }
    if (ca_file) {
        FILE *f = fopen(ca_file, "r");
        if (!f) {
            cli_warn(cmd, "cannot read --ca-file %s: %s", ca_file, strerror(errno));
            rc = EX_CONFIG;
            goto out;
        }
        fclose(f);
    }

    run r = {.cmd = cmd, .json = json};
    r.ro.server = dns_server;
    r.ro.timeout_ms = timeout_ms;
    if (message) {
        char host[SK_SMTP_DOMAIN_MAX_OCTETS + 1] = "localhost";
        if (!authserv_id) {
            if (gethostname(host, sizeof host) != 0 || !host[0])
                snprintf(host, sizeof host, "localhost");
            host[sizeof host - 1] = '\0';
            authserv_id = host;
        }
        message_run m = {.r = &r,
                         .path = message,
                         .ip = ip,
                         .helo = helo,
                         .mail_from = mail_from,
                         .authserv_id = authserv_id,
                         .head = SK_BUF_INIT(SK_DKIM_HEADER_BLOCK_MAX_OCTETS + 4)};
        rc = cli_message_read(cmd, message, &m.msg);
        if (rc != EX_OK) goto out;
        sk_buf header = SK_BUF_INIT(SK_AUTHRES_HEADER_MAX_OCTETS);
        if (!json)
            printf("smtpkit check --message %s: client %s, HELO %s, MAIL FROM <%s>\n", message, ip,
                   helo, mail_from);
        ck_run_message(&m, &header);
        size_t problems, warnings, temporary;
        rc = exit_code(&r, &problems, &warnings, &temporary);
        if (json) {
            json_t *root = json_object();
            if (!root) ck_out_of_memory();
            json_object_set_new(root, "message", ck_jstr(message));
            json_object_set_new(root, "ip", ck_jstr(ip));
            json_object_set_new(root, "helo", ck_jstr(helo));
            json_object_set_new(root, "mail_from", ck_jstr(mail_from));
            json_object_set_new(root, "authserv_id", ck_jstr(authserv_id));
            json_verdict(root, &r, rc, problems, warnings, temporary);
            json_object_set_new(root, "authentication_results",
                                header.len ? ck_jtext(header.data) : json_null());
            emit_json(root);
        } else {
            print_items(&r);
            if (header.len) {
                /* The field as a receiver would write it (CRLF shown as line ends). */
                const char *l = header.data;
                while (*l) {
                    size_t n = strcspn(l, "\r\n");
                    printf("%.*s\n", (int)n, l);
                    l += n;
                    while (*l == '\r' || *l == '\n') l++;
                }
            }
            print_result(problems, warnings, temporary, rc);
        }
        sk_buf_free(&header);
        sk_buf_free(&m.head);
        free(m.msg.raw);
        run_free(&r);
        goto out;
    }

    char domain[SK_SMTP_DOMAIN_MAX_OCTETS + 1];
    if (sk_dmarc_domain_normalize(domain_arg, domain) != SK_OK) {
        rc = cli_usage_error(cmd, "'%s' is not a domain name", domain_arg);
        goto out;
    }
    const char *const *bl = dnsbl_default;
    size_t n_bl = 0;
    if (dnsbl_none)
        n_bl = 0;
    else if (n_zones)
        bl = (const char *const *)zones, n_bl = n_zones;
    else
        while (dnsbl_default[n_bl]) n_bl++;
    domain_run d = {.r = &r,
                    .domain = domain,
                    .ip = ip,
                    .selectors = selectors,
                    .n_selectors = n_sel,
                    .dnsbl = bl,
                    .n_dnsbl = dnsbl_none ? 0 : n_bl,
                    .ca_file = ca_file,
                    .connect_to = connect_to,
                    .timeout_ms = timeout_ms};
    if (!json)
        printf("smtpkit check %s%s%s\n", domain, ip ? ", sending address " : "", ip ? ip : "");
    check_mx(&d);
    check_spf(&d);
    check_dkim(&d);
    check_dmarc(&d);
    size_t before = r.n;
    check_mtasts(&d);
    int have_mtasts = 0;
    for (size_t i = before; i < r.n; i++) have_mtasts |= r.items[i].v != V_INFO;
    check_tlsrpt(&d, have_mtasts);
    if (ip) {
        check_ptr(&d);
        check_dnsbl(&d);
    }
    size_t problems, warnings, temporary;
    rc = exit_code(&r, &problems, &warnings, &temporary);
    if (json) {
        json_t *root = json_object();
        if (!root) ck_out_of_memory();
        json_object_set_new(root, "domain", ck_jstr(domain));
        json_object_set_new(root, "ip", ip ? ck_jstr(ip) : json_null());
        json_object_set_new(root, "selectors", ck_json_strings((char *const *)selectors, n_sel));
        json_object_set_new(root, "dnsbl", ck_json_strings((char *const *)d.dnsbl, d.n_dnsbl));
        json_verdict(root, &r, rc, problems, warnings, temporary);
        emit_json(root);
    } else {
        print_items(&r);
        print_result(problems, warnings, temporary, rc);
    }
    for (size_t i = 0; i < d.n_mx; i++) sk_free(d.mx[i]);
    sk_free(d.mx);
    run_free(&r);
out:
    for (size_t i = 0; i < n_zones; i++) sk_free(zones[i]);
    return rc;
}
