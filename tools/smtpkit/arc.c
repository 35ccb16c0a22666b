/* smtpkit arc: verify a message's ARC chain, or seal a message with a new
 * ARC set as a forwarding hop does (docs/authentication.md). */
#include "cli.h"

#include <smtpkit/arc.h>

#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static void usage(FILE *f)
{
    fprintf(f,
            "usage: smtpkit arc verify [--dns-server IP:PORT] [--remote-ip IP] [--json] "
            "[MESSAGE]\n"
            "       smtpkit arc seal --key FILE --domain D --selector S --authserv-id ID\n"
            "                        --ar RESULTS [--cv none|pass|fail]\n"
            "                        [--dns-server IP:PORT] [MESSAGE]\n"
            "\n"
            "verify  check the ARC chain of MESSAGE (a file, or standard input; keys from\n"
            "        DNS) and print the arc= result as Authentication-Results would say it,\n"
            "        then one line per ARC set\n"
            "seal    print MESSAGE with a new ARC set at the top (ARC-Seal,\n"
            "        ARC-Message-Signature, ARC-Authentication-Results), as a host that\n"
            "        forwards it after checking it\n"
            "\n"
            "--key FILE            the private key to seal with (PEM; RSA or Ed25519)\n"
            "--domain D            the sealing domain (d=)\n"
            "--selector S          the selector (s=): the key's name is S._domainkey.D\n"
            "--authserv-id ID      this host's name in ARC-Authentication-Results\n"
            "--ar RESULTS          this hop's results for the message as it arrived, as\n"
            "                      in Authentication-Results after the authserv-id, e.g.\n"
            "                      'dkim=pass header.d=example.org; spf=pass\n"
            "                      smtp.mailfrom=example.org'; an arc= result is added\n"
            "                      from the chain's status when RESULTS has none\n"
            "--cv STATUS           the chain's status as this hop found it; by default\n"
            "                      the chain on MESSAGE is verified first (none without one)\n"
            "--dns-server IP:PORT  the resolver for keys (default: the system's)\n"
            "--remote-ip IP        verify: add smtp.remote-ip=IP to the arc= result\n"
            "--json                verify: one JSON object\n"
            "-h, --help            this text\n"
            "\n"
            "A message with LF line ends is read as if they were CRLF, and sealed output\n"
            "keeps its line ends.\n"
            "Exit: 0 done (verify: the chain passed); 64 bad arguments; 65 verify: the\n"
            "chain failed or there is none, seal: the message cannot be sealed (no From,\n"
            "a chain that ended with cv=fail or has %d sets, a --cv that does not fit it)\n"
            "or the key cannot be used; 66 a file cannot be read; 75 a key could not be\n"
            "looked up for now; 78 a bad --dns-server.\n",
            SK_ARC_INSTANCE_MAX);
}

static sk_err verifier_feed(void *obj, const void *p, size_t n)
{
    return sk_arc_verifier_feed(obj, p, n);
}

static sk_err sealer_feed(void *obj, const void *p, size_t n)
{
    return sk_arc_sealer_feed(obj, p, n);
}

/* Verify m's chain: *out (free with sk_arc_verifier_free) or an exit code. */
static int run_verifier(const cli_message *m, const char *dns_server, sk_arc_verifier **out)
{
    sk_error err;
    sk_arc_verifier *v = sk_arc_verifier_new(NULL, &err);
    if (!v) {
        cli_warn("arc", "%s", err.text);
        return EX_OSERR;
    }
    int rc = EX_OK;
    if (cli_message_feed(m, verifier_feed, v) || sk_arc_verifier_finish(v, &err)) {
        cli_warn("arc", "the header block is longer than %u octets",
                 (unsigned)SK_DKIM_HEADER_BLOCK_MAX_OCTETS);
        rc = EX_DATAERR;
    } else {
        sk_resolver_opts o = {.server = dns_server};
        if (sk_arc_verifier_resolve_sync(v, &o, &err)) {
            cli_warn("arc", "%s", err.text);
            rc = err.err == SK_ERR_CONFIG ? EX_CONFIG : EX_TEMPFAIL;
        }
    }
    if (rc != EX_OK) {
        sk_arc_verifier_free(v);
        return rc;
    }
    *out = v;
    return EX_OK;
}

static json_t *sig_json(const char *domain, const char *selector, sk_dkim_status st,
                        const char *reason)
{
    json_t *o = cli_jobj();
    cli_jset(o, "domain", cli_jstr(domain));
    cli_jset(o, "selector", cli_jstr(selector));
    cli_jset(o, "result", cli_jstr(sk_dkim_status_name(st)));
    cli_jset(o, "reason", cli_jstr(reason));
    return o;
}

static void print_json(const sk_arc_verifier *v, const char *remote_ip)
{
    const sk_arc_result *r = sk_arc_verifier_result(v);
    json_t *j = cli_jobj();
    cli_jset(j, "result", cli_jstr(sk_arc_status_name(r->status)));
    cli_jset(j, "reason", cli_jstr(r->reason));
    cli_jset(j, "instances", cli_jint(r->instances));
    if (r->status == SK_ARC_PASS) cli_jset(j, "oldest_pass", cli_jint(r->oldest_pass));
    if (r->status == SK_ARC_FAIL) {
        cli_jset(j, "failed_instance", cli_jint(r->failed_instance));
        cli_jset(j, "temporary", cli_jbool(r->temporary));
    }
    if (remote_ip) cli_jset(j, "remote_ip", cli_jstr(remote_ip));
    json_t *sets = cli_jarr();
    for (unsigned i = 1; i <= sk_arc_verifier_sets(v); i++) {
        const sk_arc_set_info *s = sk_arc_verifier_set(v, i);
        json_t *o = cli_jobj();
        cli_jset(o, "instance", cli_jint(s->instance));
        cli_jset(o, "cv", cli_jstr(sk_arc_status_name(s->cv)));
        cli_jset(o, "ams", sig_json(s->ams_domain, s->ams_selector, s->ams, s->ams_reason));
        cli_jset(o, "as", sig_json(s->as_domain, s->as_selector, s->as, s->as_reason));
        cli_jpush(sets, o);
    }
    cli_jset(j, "sets", sets);
    cli_json_print(j);
}

static void print_text(const sk_arc_verifier *v, const char *remote_ip)
{
    const sk_arc_result *r = sk_arc_verifier_result(v);
    printf("arc=%s", sk_arc_status_name(r->status));
    if (r->status == SK_ARC_PASS) printf(" header.oldest-pass=%u", r->oldest_pass);
    if (remote_ip) printf(" smtp.remote-ip=%s", remote_ip);
    printf(" (%s)\n", r->reason);
    for (unsigned i = 1; i <= sk_arc_verifier_sets(v); i++) {
        const sk_arc_set_info *s = sk_arc_verifier_set(v, i);
        printf("i=%u cv=%s", s->instance, sk_arc_status_name(s->cv));
        if (*s->ams_domain)
            printf(" ams=%s (d=%s s=%s)", sk_dkim_status_name(s->ams), s->ams_domain,
                   s->ams_selector);
        if (*s->as_domain)
            printf(" as=%s (d=%s s=%s)", sk_dkim_status_name(s->as), s->as_domain, s->as_selector);
        printf("\n");
    }
}

static int do_verify(const char *dns_server, const char *remote_ip, int json, const char *path)
{
    cli_message m = {0};
    int rc = cli_message_read("arc", path, &m);
    sk_arc_verifier *v = NULL;
    if (rc == EX_OK) rc = run_verifier(&m, dns_server, &v);
    if (rc == EX_OK) {
        if (json)
            print_json(v, remote_ip);
        else
            print_text(v, remote_ip);
        const sk_arc_result *r = sk_arc_verifier_result(v);
        rc = r->status == SK_ARC_PASS ? EX_OK : r->temporary ? EX_TEMPFAIL : EX_DATAERR;
    }
    sk_arc_verifier_free(v);
    free(m.raw);
    return rc;
}

/* Whether the resinfo text already has an arc= result. */
static int has_arc_result(const char *text)
{
    for (const char *p = text; *p;) {
        while (*p == ' ' || *p == '\t' || *p == ';') p++;
        if (!strncasecmp(p, "arc", 3) && (p[3] == '=' || p[3] == ' ' || p[3] == '/')) return 1;
        p = strchr(p, ';');
        if (!p) break;
    }
    return 0;
}

static int do_seal(const char *key_path, const char *domain, const char *selector,
                   const char *authserv_id, const char *ar, const char *cv_arg,
                   const char *dns_server, const char *path)
{
    sk_error err;
    sk_dkim_key *key = NULL;
    if (sk_dkim_key_load(key_path, &key, &err)) {
        cli_warn("arc", "%s", err.text);
        return err.err == SK_ERR_NOT_FOUND || err.err == SK_ERR_IO ? EX_NOINPUT : EX_DATAERR;
    }
    cli_message m = {0};
    int rc = cli_message_read("arc", path, &m);
    sk_arc_status cv = SK_ARC_NONE;
    unsigned oldest = 0;
    if (rc == EX_OK && cv_arg) {
        for (int s = 0; s < SK_ARC_STATUS__COUNT; s++)
            if (!strcmp(cv_arg, sk_arc_status_name((sk_arc_status)s))) cv = (sk_arc_status)s;
    } else if (rc == EX_OK) {
        /* The chain as it came: verified here, as the hop that seals must. */
        sk_arc_verifier *v = NULL;
        rc = run_verifier(&m, dns_server, &v);
        if (rc == EX_OK) {
            const sk_arc_result *r = sk_arc_verifier_result(v);
            cv = r->status;
            oldest = r->oldest_pass;
            if (r->status == SK_ARC_FAIL && r->temporary) {
                /* Sealing cv=fail would end the chain for good over a
                 * failure of the moment. */
                cli_warn("arc", "the chain could not be verified for now: %s", r->reason);
                rc = EX_TEMPFAIL;
            }
        }
        sk_arc_verifier_free(v);
    }
    sk_buf text = SK_BUF_INIT(SK_AUTHRES_HEADER_MAX_OCTETS);
    if (rc == EX_OK) {
        sk_err e = sk_buf_puts(&text, ar);
        if (!e && !has_arc_result(ar)) {
            e = sk_buf_printf(&text, "; arc=%s", sk_arc_status_name(cv));
            if (!e && cv == SK_ARC_PASS) e = sk_buf_printf(&text, " header.oldest-pass=%u", oldest);
        }
        if (e) {
            cli_warn("arc", "--ar: too long");
            rc = EX_USAGE;
        }
    }
    sk_arc_sealer *s = NULL;
    sk_buf out = SK_BUF_INIT(4 * SK_AUTHRES_HEADER_MAX_OCTETS);
    if (rc == EX_OK) {
        sk_arc_seal_opts o = {.domain = domain,
                              .selector = selector,
                              .key = key,
                              .authserv_id = authserv_id,
                              .results_text = sk_buf_cstr(&text),
                              .cv = cv};
        if (!(s = sk_arc_sealer_new(&o, &err))) {
            cli_warn("arc", "%s", err.text);
            rc = err.err == SK_ERR_NOMEM ? EX_OSERR : EX_USAGE;
        }
    }
    if (rc == EX_OK) {
        if (cli_message_feed(&m, sealer_feed, s)) {
            cli_warn("arc", "the header block is longer than %u octets",
                     (unsigned)SK_DKIM_HEADER_BLOCK_MAX_OCTETS);
            rc = EX_DATAERR;
        } else if (sk_arc_sealer_finish(s, &out, &err)) {
            cli_warn("arc", "%s", err.text);
            rc = err.err == SK_ERR_INVAL ? EX_USAGE : EX_DATAERR;
        }
    }
    if (rc == EX_OK) {
        cli_message_put_fields(&m, out.data, out.len, stdout);
        fwrite(m.raw, 1, m.len, stdout);
        if (fflush(stdout)) rc = EX_IOERR;
    }
    sk_arc_sealer_free(s);
    sk_buf_free(&out);
    sk_buf_free(&text);
    free(m.raw);
    sk_dkim_key_free(key);
    return rc;
}

int cmd_arc(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"key", required_argument, NULL, 'k'},
        {"domain", required_argument, NULL, 'd'},
        {"selector", required_argument, NULL, 's'},
        {"authserv-id", required_argument, NULL, 'a'},
        {"ar", required_argument, NULL, 'r'},
        {"cv", required_argument, NULL, 'c'},
        {"dns-server", required_argument, NULL, 'D'},
        {"remote-ip", required_argument, NULL, 'i'},
        {"json", no_argument, NULL, 'j'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *key = NULL, *domain = NULL, *selector = NULL, *authserv_id = NULL, *ar = NULL,
               *cv = NULL, *dns_server = NULL, *remote_ip = NULL;
    int json = 0;
    if (cli_help_asked(argc, argv)) {
        usage(stdout);
        return EX_OK;
    }
    int opt, rc = EX_OK;
    opterr = 0;
    optind = 1;
    while (rc == EX_OK && (opt = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
        switch (opt) {
        case 'k':
            key = optarg;
            break;
        case 'd':
            domain = optarg;
            break;
        case 's':
            selector = optarg;
            break;
        case 'a':
            authserv_id = optarg;
            break;
        case 'r':
            ar = optarg;
            break;
        case 'c':
            cv = optarg;
            break;
        case 'D':
            dns_server = optarg;
            break;
        case 'i':
            remote_ip = optarg;
            break;
        case 'j':
            json = 1;
            break;
        default:
            rc = cli_getopt_error("arc", opt, argv, longopts);
        }
    }
    const char *action = rc == EX_OK && optind < argc ? argv[optind++] : NULL;
    const char *path = rc == EX_OK && optind < argc ? argv[optind++] : NULL;
    int is_seal = action && !strcmp(action, "seal");
    int is_verify = action && !strcmp(action, "verify");
    if (rc != EX_OK) {
    } else if (!action) {
        rc = cli_usage_error("arc", "give an action: verify or seal");
    } else if (!is_seal && !is_verify) {
        rc = cli_usage_error("arc", "unknown action '%s' (verify or seal)", action);
    } else if (optind < argc) {
        rc = cli_usage_error("arc", "unexpected argument '%s'", argv[optind]);
    }
    /* Each option belongs to some actions only. */
    struct {
        const char *name;
        int given, seal, verify;
    } belongs[] = {
        {"--key", key != NULL, 1, 0},
        {"--domain", domain != NULL, 1, 0},
        {"--selector", selector != NULL, 1, 0},
        {"--authserv-id", authserv_id != NULL, 1, 0},
        {"--ar", ar != NULL, 1, 0},
        {"--cv", cv != NULL, 1, 0},
        {"--dns-server", dns_server != NULL, 1, 1},
        {"--remote-ip", remote_ip != NULL, 0, 1},
        {"--json", json, 0, 1},
    };
    for (size_t i = 0; rc == EX_OK && i < sizeof belongs / sizeof belongs[0]; i++) {
        int ok = is_seal ? belongs[i].seal : belongs[i].verify;
        if (belongs[i].given && !ok)
            rc = cli_usage_error("arc", "%s does not go with %s", belongs[i].name, action);
    }
    if (rc == EX_OK && is_seal && (!key || !*key))
        rc = cli_usage_error("arc", "seal needs --key FILE");
    if (rc == EX_OK && is_seal) rc = cli_dkim_names("arc", action, domain, selector);
    if (rc == EX_OK && is_seal) {
        if (!authserv_id || !*authserv_id)
            rc = cli_usage_error("arc", "seal needs --authserv-id ID (this host's name)");
        else if (!ar || !*ar)
            rc = cli_usage_error("arc", "seal needs --ar RESULTS (e.g. 'dkim=pass "
                                        "header.d=example.org; spf=pass smtp.mailfrom=...')");
        else if (cv && strcmp(cv, "none") && strcmp(cv, "pass") && strcmp(cv, "fail"))
            rc = cli_usage_error("arc", "--cv '%s': none, pass or fail", cv);
        else
            rc = do_seal(key, domain, selector, authserv_id, ar, cv, dns_server, path);
    } else if (rc == EX_OK && is_verify) {
        rc = do_verify(dns_server, remote_ip, json, path);
    }
    return rc;
}
