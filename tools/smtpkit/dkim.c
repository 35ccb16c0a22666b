/* smtpkit dkim: make a DKIM key and the DNS record to publish, sign a
 * message, verify a message's signatures (docs/authentication.md). */
#include "cli.h"

#include <smtpkit/dkim.h>

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <libgen.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void usage(FILE *f)
{
    fprintf(f,
            "usage: smtpkit dkim keygen --domain D --selector S [--type rsa|ed25519]\n"
            "                           [--bits N] --out FILE [--force]\n"
            "       smtpkit dkim sign --key FILE --domain D --selector S [--type T]\n"
            "                         [--sign D:S:FILE]... [--identity I] [--canon H/B]\n"
            "                         [--expire DURATION] [--no-timestamp] [MESSAGE]\n"
            "       smtpkit dkim verify [--dns-server IP:PORT] [--json] [MESSAGE]\n"
            "\n"
            "keygen  write a new private key to FILE (mode 0600) and print the DNS TXT\n"
            "        record to publish at S._domainkey.D, in strings of at most 255 octets\n"
            "sign    print MESSAGE (a file, or standard input) with DKIM-Signature fields\n"
            "        added at the top\n"
            "verify  check every DKIM-Signature of MESSAGE (keys from DNS) and print one\n"
            "        result per signature, as Authentication-Results would say it\n"
            "\n"
            "--domain D            the signing domain (d=)\n"
            "--selector S          the selector (s=): the key's name is S._domainkey.D\n"
            "--type T              rsa (default) or ed25519; sign: the key's type\n"
            "--bits N              RSA key size, %u to %u (default %u)\n"
            "--out FILE            where keygen writes the private key (PKCS#8 PEM)\n"
            "--force               keygen replaces an existing FILE\n"
            "--key FILE            the private key to sign with (PEM: PKCS#8 or RSA)\n"
            "--sign D:S:FILE       one more signature (domain, selector, key); repeatable\n"
            "--identity I          the i= tag, an address at D or below (default none)\n"
            "--canon H/B           relaxed/relaxed (default), simple/simple, ...\n"
            "--expire DURATION     add x= this long after signing (e.g. 7d)\n"
            "--no-timestamp        leave out t=\n"
            "--dns-server IP:PORT  the resolver for keys (default: the system's)\n"
            "--json                verify: one JSON object\n"
            "-h, --help            this text\n"
            "\n"
            "A message with LF line ends is read as if they were CRLF, and signed\n"
            "output keeps its line ends.\n"
            "Exit: 0 done (verify: every signature passed); 64 bad arguments;\n"
            "65 verify: a signature did not pass or there is none, sign: the message\n"
            "or a key cannot be used; 66 a file cannot be read; 73 keygen: FILE exists\n"
            "or cannot be written; 75 verify: a key could not be looked up for now;\n"
            "78 a bad --dns-server.\n",
            (unsigned)SK_DKIM_RSA_BITS_MIN, (unsigned)SK_DKIM_RSA_BITS_MAX,
            (unsigned)SK_DKIM_RSA_BITS_DEFAULT);
}

/* ---- keygen ---- */

/* Write data to path with mode 0600: a new file, or with force one that
 * replaces path; never a partly written key under path's name. */
static int write_key_file(const char *path, const char *data, size_t len, int force)
{
    char tmp[PATH_MAX], copy[PATH_MAX];
    snprintf(copy, sizeof copy, "%s", path);
    const char *dir = dirname(copy);
    if ((size_t)snprintf(tmp, sizeof tmp, "%s/.dkim-key-XXXXXX", dir) >= sizeof tmp) {
        cli_warn("dkim", "--out %s: path too long", path);
        return EX_CANTCREAT;
    }
    if (!force && access(path, F_OK) == 0) {
        cli_warn("dkim", "%s exists; give --force to replace it", path);
        return EX_CANTCREAT;
    }
    int fd = mkstemp(tmp); /* mode 0600 */
    if (fd < 0) {
        cli_warn("dkim", "cannot write a key in %s: %s", dir, strerror(errno));
        return EX_CANTCREAT;
    }
    int ok = fchmod(fd, 0600) == 0;
    for (size_t off = 0; ok && off < len;) {
        ssize_t w = write(fd, data + off, len - off);
        if (w < 0 && errno == EINTR) continue;
        ok = w > 0;
        if (ok) off += (size_t)w;
    }
    ok = ok && fsync(fd) == 0;
    int saved = errno;
    ok = close(fd) == 0 && ok;
    /* link refuses an existing name: without --force nothing is replaced,
     * even a file that appeared meanwhile. */
    if (ok) ok = force ? rename(tmp, path) == 0 : link(tmp, path) == 0;
    if (!ok) saved = errno;
    if (!ok || !force) unlink(tmp);
    if (!ok) {
        if (saved == EEXIST)
            cli_warn("dkim", "%s exists; give --force to replace it", path);
        else
            cli_warn("dkim", "cannot write %s: %s", path, strerror(saved));
        return EX_CANTCREAT;
    }
    return EX_OK;
}

static int do_keygen(const char *domain, const char *selector, sk_dkim_key_type type, unsigned bits,
                     const char *out, int force)
{
    sk_error err;
    sk_dkim_key *k = NULL;
    if (sk_dkim_key_generate(type, bits, &k, &err)) {
        cli_warn("dkim", "%s", err.text);
        return EX_SOFTWARE;
    }
    sk_buf pem = SK_BUF_INIT(SK_DKIM_KEY_FILE_MAX_OCTETS);
    sk_buf rec = SK_BUF_INIT(8192), txt = SK_BUF_INIT(16384);
    int rc = EX_OK;
    if (sk_dkim_key_pem(k, &pem) || sk_dkim_key_record(k, &rec) ||
        sk_dkim_txt_strings(sk_buf_cstr(&rec), &txt)) {
        cli_warn("dkim", "out of memory");
        rc = EX_OSERR;
    }
    if (rc == EX_OK) rc = write_key_file(out, pem.data, pem.len, force);
    if (pem.data) explicit_bzero(pem.data, pem.cap);
    if (rc == EX_OK) {
        if (type == SK_DKIM_KEY_RSA)
            printf("wrote %s: RSA private key, %u bits, mode 0600\n", out, sk_dkim_key_bits(k));
        else
            printf("wrote %s: Ed25519 private key, mode 0600\n", out);
        printf("\nPublish this DNS TXT record:\n"
               "name:  %s._domainkey.%s\n"
               "value: %s\n"
               "\nIn a zone file:\n%s._domainkey.%s. IN TXT ( %s )\n",
               selector, domain, sk_buf_cstr(&txt), selector, domain, sk_buf_cstr(&txt));
    }
    sk_buf_free(&pem);
    sk_buf_free(&rec);
    sk_buf_free(&txt);
    sk_dkim_key_free(k);
    return rc;
}

static sk_err signer_feed(void *obj, const void *p, size_t n)
{
    return sk_dkim_signer_feed(obj, p, n);
}

static sk_err verifier_feed(void *obj, const void *p, size_t n)
{
    return sk_dkim_verifier_feed(obj, p, n);
}

/* ---- sign ---- */

#define DKIM_CLI_SIGNATURES_MAX SK_DKIM_SIGN_MAX

typedef struct sign_spec {
    const char *domain, *selector, *key_path;
} sign_spec;

static int parse_canon(const char *s, sk_dkim_canon *h, sk_dkim_canon *b)
{
    char word[2][16];
    const char *slash = strchr(s, '/');
    size_t hl = slash ? (size_t)(slash - s) : strlen(s);
    if (hl >= sizeof word[0] || (slash && strlen(slash + 1) >= sizeof word[1])) return -1;
    memcpy(word[0], s, hl);
    word[0][hl] = '\0';
    /* RFC 6376 3.5: "c=simple" alone is simple for the body too. */
    snprintf(word[1], sizeof word[1], "%s", slash ? slash + 1 : "simple");
    sk_dkim_canon *out[2] = {h, b};
    for (int i = 0; i < 2; i++) {
        if (!strcmp(word[i], "relaxed"))
            *out[i] = SK_DKIM_CANON_RELAXED;
        else if (!strcmp(word[i], "simple"))
            *out[i] = SK_DKIM_CANON_SIMPLE;
        else
            return -1;
    }
    return 0;
}

static int do_sign(const sign_spec *specs, size_t n, const int *type, const char *identity,
                   const char *canon, uint64_t expire_s, int no_timestamp, const char *path)
{
    sk_dkim_sign_opts opts[DKIM_CLI_SIGNATURES_MAX];
    sk_dkim_key *keys[DKIM_CLI_SIGNATURES_MAX] = {0};
    memset(opts, 0, sizeof opts);
    sk_dkim_canon hc = SK_DKIM_CANON_RELAXED, bc = SK_DKIM_CANON_RELAXED;
    if (canon && parse_canon(canon, &hc, &bc))
        return cli_usage_error("dkim", "--canon '%s': relaxed or simple, as H/B or one word",
                               canon);
    int rc = EX_OK;
    sk_error err;
    for (size_t i = 0; i < n && rc == EX_OK; i++) {
        if (sk_dkim_key_load(specs[i].key_path, &keys[i], &err)) {
            cli_warn("dkim", "%s", err.text);
            rc = err.err == SK_ERR_NOT_FOUND || err.err == SK_ERR_IO ? EX_NOINPUT : EX_DATAERR;
            break;
        }
        if (i == 0 && type && sk_dkim_key_type_of(keys[i]) != (sk_dkim_key_type)*type) {
            cli_warn("dkim", "%s holds an %s key, not %s (--type)", specs[i].key_path,
                     sk_dkim_key_type_name(sk_dkim_key_type_of(keys[i])),
                     sk_dkim_key_type_name((sk_dkim_key_type)*type));
            rc = EX_USAGE;
            break;
        }
        opts[i] = (sk_dkim_sign_opts){.domain = specs[i].domain,
                                      .selector = specs[i].selector,
                                      .key = keys[i],
                                      .identity = i == 0 ? identity : NULL,
                                      .header_canon = hc,
                                      .body_canon = bc,
                                      .timestamp = no_timestamp ? -1 : 0,
                                      .expire_s = expire_s};
    }
    sk_dkim_signer *s = NULL;
    cli_message m = {0};
    sk_buf out = SK_BUF_INIT(SK_DKIM_SIGN_MAX * SK_DKIM_SIGNATURE_MAX_OCTETS);
    if (rc == EX_OK && !(s = sk_dkim_signer_new(opts, n, &err))) {
        cli_warn("dkim", "%s", err.text);
        rc = err.err == SK_ERR_NOMEM ? EX_OSERR : EX_USAGE;
    }
    if (rc == EX_OK) rc = cli_message_read("dkim", path, &m);
    if (rc == EX_OK) {
        sk_err e = cli_message_feed(&m, signer_feed, s);
        if (e) {
            cli_warn("dkim", "the header block is longer than %u octets",
                     (unsigned)SK_DKIM_HEADER_BLOCK_MAX_OCTETS);
            rc = EX_DATAERR;
        } else if (sk_dkim_signer_finish(s, &out, &err)) {
            cli_warn("dkim", "%s", err.text);
            rc = EX_DATAERR;
        }
    }
    if (rc == EX_OK) {
        /* The fields in the message's own line ends, then the message. */
        cli_message_put_fields(&m, out.data, out.len, stdout);
        fwrite(m.raw, 1, m.len, stdout);
        if (fflush(stdout)) rc = EX_IOERR;
    }
    sk_buf_free(&out);
    free(m.raw);
    sk_dkim_signer_free(s);
    for (size_t i = 0; i < n; i++) sk_dkim_key_free(keys[i]);
    return rc;
}

/* ---- verify ---- */

static void print_json(const sk_dkim_verifier *v)
{
    json_t *j = cli_jobj();
    cli_jset(j, "result", cli_jstr(sk_dkim_status_name(sk_dkim_verifier_summary(v))));
    json_t *sigs = cli_jarr();
    for (size_t i = 0; i < sk_dkim_verifier_count(v); i++) {
        const sk_dkim_result *r = sk_dkim_verifier_result(v, i);
        json_t *o = cli_jobj();
        cli_jset(o, "result", cli_jstr(sk_dkim_status_name(r->status)));
        cli_jset(o, "reason", cli_jstr(r->reason));
        cli_jset(o, "domain", cli_jstr(r->domain));
        cli_jset(o, "identity", cli_jstr(r->identity));
        cli_jset(o, "selector", cli_jstr(r->selector));
        cli_jset(o, "algorithm", cli_jstr(r->algorithm));
        cli_jset(o, "b", cli_jstr(r->b));
        cli_jset(o, "key_bits", cli_jint(r->key_bits));
        cli_jset(o, "testing", cli_jbool(r->testing));
        cli_jpush(sigs, o);
    }
    cli_jset(j, "signatures", sigs);
    cli_jset(j, "skipped", cli_jint((long long)sk_dkim_verifier_skipped(v)));
    cli_json_print(j);
}

static void print_text(const sk_dkim_verifier *v)
{
    size_t n = sk_dkim_verifier_count(v);
    if (n == 0) printf("dkim=none (no DKIM-Signature)\n");
    for (size_t i = 0; i < n; i++) {
        const sk_dkim_result *r = sk_dkim_verifier_result(v, i);
        printf("dkim=%s", sk_dkim_status_name(r->status));
        if (*r->domain) printf(" header.d=%s", r->domain);
        if (*r->identity) printf(" header.i=%s", r->identity);
        if (*r->selector) printf(" header.s=%s", r->selector);
        if (*r->algorithm) printf(" header.a=%s", r->algorithm);
        if (*r->b) printf(" header.b=%s", r->b);
        printf(" (%s)\n", r->reason);
    }
    if (sk_dkim_verifier_skipped(v))
        printf("(%zu more DKIM-Signature fields not checked: at most %d are)\n",
               sk_dkim_verifier_skipped(v), SK_DKIM_VERIFY_SIGNATURES_MAX);
}

static int do_verify(const char *dns_server, int json, const char *path)
{
    sk_error err;
    cli_message m = {0};
    int rc = cli_message_read("dkim", path, &m);
    if (rc) return rc;
    sk_dkim_verifier *v = sk_dkim_verifier_new(NULL, &err);
    if (!v) {
        free(m.raw);
        cli_warn("dkim", "%s", err.text);
        return EX_OSERR;
    }
    if (cli_message_feed(&m, verifier_feed, v) || sk_dkim_verifier_finish(v, &err)) {
        cli_warn("dkim", "the header block is longer than %u octets",
                 (unsigned)SK_DKIM_HEADER_BLOCK_MAX_OCTETS);
        rc = EX_DATAERR;
    } else {
        sk_resolver_opts o = {.server = dns_server};
        if (sk_dkim_verifier_resolve_sync(v, &o, &err)) {
            cli_warn("dkim", "%s", err.text);
            rc = err.err == SK_ERR_CONFIG ? EX_CONFIG : EX_TEMPFAIL;
        }
    }
    if (rc == EX_OK) {
        if (json)
            print_json(v);
        else
            print_text(v);
        size_t n = sk_dkim_verifier_count(v), pass = 0, temp = 0;
        for (size_t i = 0; i < n; i++) {
            sk_dkim_status st = sk_dkim_verifier_result(v, i)->status;
            pass += st == SK_DKIM_PASS;
            temp += st == SK_DKIM_TEMPERROR;
        }
        if (n == 0 || pass + temp < n)
            rc = EX_DATAERR;
        else if (temp)
            rc = EX_TEMPFAIL;
    }
    sk_dkim_verifier_free(v);
    free(m.raw);
    return rc;
}

/* ---- arguments ---- */

int cmd_dkim(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"domain", required_argument, NULL, 'd'},
        {"selector", required_argument, NULL, 's'},
        {"type", required_argument, NULL, 't'},
        {"bits", required_argument, NULL, 'b'},
        {"out", required_argument, NULL, 'o'},
        {"force", no_argument, NULL, 'f'},
        {"key", required_argument, NULL, 'k'},
        {"sign", required_argument, NULL, 'S'},
        {"identity", required_argument, NULL, 'i'},
        {"canon", required_argument, NULL, 'c'},
        {"expire", required_argument, NULL, 'x'},
        {"no-timestamp", no_argument, NULL, 'T'},
        {"dns-server", required_argument, NULL, 'D'},
        {"json", no_argument, NULL, 'j'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *domain = NULL, *selector = NULL, *type_arg = NULL, *bits_arg = NULL, *out = NULL,
               *key = NULL, *identity = NULL, *canon = NULL, *expire_arg = NULL, *dns_server = NULL;
    int force = 0, no_timestamp = 0, json = 0;
    sign_spec more[DKIM_CLI_SIGNATURES_MAX];
    char *more_store[DKIM_CLI_SIGNATURES_MAX] = {0};
    size_t nmore = 0;
    if (cli_help_asked(argc, argv)) {
        usage(stdout);
        return EX_OK;
    }
    int opt, rc = EX_OK;
    opterr = 0;
    optind = 1;
    while (rc == EX_OK && (opt = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
        switch (opt) {
        case 'd':
            domain = optarg;
            break;
        case 's':
            selector = optarg;
            break;
        case 't':
            type_arg = optarg;
            break;
        case 'b':
            bits_arg = optarg;
            break;
        case 'o':
            out = optarg;
            break;
        case 'f':
            force = 1;
            break;
        case 'k':
            key = optarg;
            break;
        case 'i':
            identity = optarg;
            break;
        case 'c':
            canon = optarg;
            break;
        case 'x':
            expire_arg = optarg;
            break;
        case 'T':
            no_timestamp = 1;
            break;
        case 'D':
            dns_server = optarg;
            break;
        case 'j':
            json = 1;
            break;
        case 'S': {
            /* DOMAIN:SELECTOR:FILE, the file being the rest (it may hold ':'). */
            char *c = nmore + 1 < DKIM_CLI_SIGNATURES_MAX ? strdup(optarg) : NULL;
            char *s1 = c ? strchr(c, ':') : NULL, *s2 = s1 ? strchr(s1 + 1, ':') : NULL;
            if (!s2 || s1 == c || s2 == s1 + 1 || !s2[1]) {
                free(c);
                rc = nmore + 1 >= DKIM_CLI_SIGNATURES_MAX
                         ? cli_usage_error("dkim", "at most %d signatures", DKIM_CLI_SIGNATURES_MAX)
                         : cli_usage_error("dkim", "--sign '%s' is not DOMAIN:SELECTOR:FILE",
                                           optarg);
                break;
            }
            *s1 = *s2 = '\0';
            more_store[nmore] = c;
            more[nmore++] = (sign_spec){c, s1 + 1, s2 + 1};
            break;
        }
        default:
            rc = cli_getopt_error("dkim", opt, argv, longopts);
        }
    }
    const char *action = rc == EX_OK && optind < argc ? argv[optind++] : NULL;
    const char *path = rc == EX_OK && optind < argc ? argv[optind++] : NULL;
    int is_keygen = action && !strcmp(action, "keygen");
    int is_sign = action && !strcmp(action, "sign");
    int is_verify = action && !strcmp(action, "verify");
    if (rc != EX_OK) {
    } else if (!action) {
        rc = cli_usage_error("dkim", "give an action: keygen, sign or verify");
    } else if (!is_keygen && !is_sign && !is_verify) {
        rc = cli_usage_error("dkim", "unknown action '%s' (keygen, sign or verify)", action);
    } else if (optind < argc || (path && is_keygen)) {
        rc = cli_usage_error("dkim", "unexpected argument '%s'",
                             optind < argc ? argv[optind] : path);
    }
    /* Each option belongs to some actions only. */
    struct {
        const char *name;
        int given, keygen, sign, verify;
    } belongs[] = {
        {"--domain", domain != NULL, 1, 1, 0},
        {"--selector", selector != NULL, 1, 1, 0},
        {"--type", type_arg != NULL, 1, 1, 0},
        {"--bits", bits_arg != NULL, 1, 0, 0},
        {"--out", out != NULL, 1, 0, 0},
        {"--force", force, 1, 0, 0},
        {"--key", key != NULL, 0, 1, 0},
        {"--sign", nmore > 0, 0, 1, 0},
        {"--identity", identity != NULL, 0, 1, 0},
        {"--canon", canon != NULL, 0, 1, 0},
        {"--expire", expire_arg != NULL, 0, 1, 0},
        {"--no-timestamp", no_timestamp, 0, 1, 0},
        {"--dns-server", dns_server != NULL, 0, 0, 1},
        {"--json", json, 0, 0, 1},
    };
    for (size_t i = 0; rc == EX_OK && i < sizeof belongs / sizeof belongs[0]; i++) {
        int ok = is_keygen ? belongs[i].keygen : is_sign ? belongs[i].sign : belongs[i].verify;
        if (belongs[i].given && !ok)
            rc = cli_usage_error("dkim", "%s does not go with %s", belongs[i].name, action);
    }
    sk_dkim_key_type type = SK_DKIM_KEY_RSA;
    if (rc == EX_OK && type_arg && sk_dkim_key_type_parse(type_arg, &type))
        rc = cli_usage_error("dkim", "--type '%s': rsa or ed25519", type_arg);
    if (rc == EX_OK && (is_keygen || (is_sign && (key || domain || selector))))
        rc = cli_dkim_names("dkim", action, domain, selector);
    if (rc == EX_OK && is_keygen) {
        unsigned long bits = 0;
        char *end = NULL;
        if (!out || !*out) {
            rc = cli_usage_error("dkim", "keygen needs --out FILE");
        } else if (bits_arg && type == SK_DKIM_KEY_ED25519) {
            rc = cli_usage_error("dkim", "--bits is for RSA keys; Ed25519 keys have one size");
        } else if (bits_arg && (errno = 0, bits = strtoul(bits_arg, &end, 10),
                                errno || !*bits_arg || *end || bits < SK_DKIM_RSA_BITS_MIN ||
                                    bits > SK_DKIM_RSA_BITS_MAX)) {
            rc = cli_usage_error(
                "dkim", "--bits '%s': a number from %u to %u (RFC 8301: 1024 or more)", bits_arg,
                (unsigned)SK_DKIM_RSA_BITS_MIN, (unsigned)SK_DKIM_RSA_BITS_MAX);
        } else {
            rc = do_keygen(domain, selector, type, (unsigned)bits, out, force);
        }
    } else if (rc == EX_OK && is_sign) {
        uint64_t expire_ms = 0;
        sign_spec specs[DKIM_CLI_SIGNATURES_MAX];
        size_t n = 0;
        if (key || domain || selector) {
            if (!key || !*key)
                rc = cli_usage_error("dkim", "sign needs --key FILE");
            else
                specs[n++] = (sign_spec){domain, selector, key};
        } else if (!nmore) {
            rc = cli_usage_error("dkim", "sign needs --key FILE --domain D --selector S");
        }
        for (size_t i = 0; rc == EX_OK && i < nmore; i++) {
            if (!sk_dkim_name_valid(more[i].domain) || !sk_dkim_name_valid(more[i].selector))
                rc = cli_usage_error("dkim", "--sign %s:%s:...: not a domain and a selector",
                                     more[i].domain, more[i].selector);
            else if (n == DKIM_CLI_SIGNATURES_MAX)
                rc = cli_usage_error("dkim", "at most %d signatures", DKIM_CLI_SIGNATURES_MAX);
            else
                specs[n++] = more[i];
        }
        if (rc == EX_OK && expire_arg &&
            (sk_parse_duration_ms(expire_arg, &expire_ms) || expire_ms < 1000))
            rc = cli_usage_error("dkim",
                                 "--expire '%s' is not a duration of a second or more "
                                 "(e.g. 7d, 12h)",
                                 expire_arg);
        int t = (int)type;
        if (rc == EX_OK)
            rc = do_sign(specs, n, type_arg ? &t : NULL, identity, canon, expire_ms / 1000,
                         no_timestamp, path);
    } else if (rc == EX_OK && is_verify) {
        rc = do_verify(dns_server, json, path);
    }
    for (size_t i = 0; i < nmore; i++) free(more_store[i]);
    return rc;
}
