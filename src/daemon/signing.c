/* DKIM signing in `smtpkit serve`: the --dkim keys (DOMAIN:SELECTOR:KEYFILE),
 * loaded at start and on SIGHUP, which of them sign a message, and the
 * signatures of the DSNs the queue sends; the --arc-seal key. */
#include "daemon_int.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>

typedef struct keyring_entry {
    char domain[SK_SMTP_DOMAIN_MAX_OCTETS + 1]; /* lower case */
    char selector[SK_SMTP_DOMAIN_MAX_OCTETS + 1];
    sk_dkim_key *key;
} keyring_entry;

struct sk_dkim_keyring {
    keyring_entry *v;
    size_t n;
};

/* Copy [p, p+n) lower-cased into out (size SK_SMTP_DOMAIN_MAX_OCTETS + 1)
 * without a final dot; 0 when it is no DKIM name (dkim.h). */
static int copy_name(const char *p, size_t n, char *out)
{
    if (n && p[n - 1] == '.') n--;
    if (n == 0 || n > SK_SMTP_DOMAIN_MAX_OCTETS) return 0;
    for (size_t i = 0; i < n; i++) out[i] = (char)tolower((unsigned char)p[i]);
    out[n] = '\0';
    return sk_dkim_name_valid(out);
}

sk_err sk_daemon_dkim_spec_parse(const char *spec, char domain[SK_SMTP_DOMAIN_MAX_OCTETS + 1],
                                 char selector[SK_SMTP_DOMAIN_MAX_OCTETS + 1], const char **file,
                                 const char **why)
{
    /* The key file may hold colons; the domain and selector cannot. */
    const char *c1 = strchr(spec, ':');
    const char *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
    if (!c2) {
        *why = "three parts separated by ':' are needed";
        return SK_ERR_SYNTAX;
    }
    if (!copy_name(spec, (size_t)(c1 - spec), domain)) {
        *why = "the domain is not a domain name";
        return SK_ERR_SYNTAX;
    }
    if (!copy_name(c1 + 1, (size_t)(c2 - c1 - 1), selector)) {
        *why = "the selector is not a DNS name";
        return SK_ERR_SYNTAX;
    }
    if (!c2[1]) {
        *why = "no key file";
        return SK_ERR_SYNTAX;
    }
    *file = c2 + 1;
    return SK_OK;
}

sk_err sk_daemon_arc_key_load(const char *spec, sk_dkim_key **key,
                              char domain[SK_SMTP_DOMAIN_MAX_OCTETS + 1],
                              char selector[SK_SMTP_DOMAIN_MAX_OCTETS + 1], sk_error *err)
{
    const char *file, *why = NULL;
    *key = NULL;
    if (sk_daemon_dkim_spec_parse(spec, domain, selector, &file, &why))
        return sk_error_set(err, SK_ERR_CONFIG, SK_STEP_NONE,
                            "arc-seal: \"%s\" is not DOMAIN:SELECTOR:KEYFILE (%s)", spec, why);
    sk_error kerr;
    if (sk_dkim_key_load(file, key, &kerr))
        return sk_error_set(err, SK_ERR_CONFIG, SK_STEP_NONE, "arc-seal: %s", kerr.text);
    return SK_OK;
}

void sk_dkim_keyring_free(sk_dkim_keyring *r)
{
    if (!r) return;
    for (size_t i = 0; i < r->n; i++) sk_dkim_key_free(r->v[i].key);
    sk_free(r->v);
    sk_free(r);
}

size_t sk_dkim_keyring_count(const sk_dkim_keyring *r)
{
    return r ? r->n : 0;
}

sk_err sk_dkim_keyring_load(const sk_strlist *specs, sk_dkim_keyring **out, sk_error *err)
{
    *out = NULL;
    sk_dkim_keyring *r = sk_calloc(1, sizeof *r);
    if (r && specs->n) r->v = sk_calloc(specs->n, sizeof *r->v);
    if (!r || (specs->n && !r->v)) {
        sk_dkim_keyring_free(r);
        return sk_error_set(err, SK_ERR_NOMEM, SK_STEP_NONE, "out of memory");
    }
    for (size_t i = 0; i < specs->n; i++) {
        keyring_entry *k = &r->v[i];
        const char *file, *why;
        sk_err e = sk_daemon_dkim_spec_parse(specs->v[i], k->domain, k->selector, &file, &why);
        if (e) {
            sk_dkim_keyring_free(r);
            return sk_error_set(err, SK_ERR_CONFIG, SK_STEP_NONE,
                                "dkim: \"%s\" is not DOMAIN:SELECTOR:KEYFILE (%s)", specs->v[i],
                                why);
        }
        /* sk_dkim_key_load names the file, and refuses RSA under 1024 bits. */
        sk_error kerr;
        if (sk_dkim_key_load(file, &k->key, &kerr)) {
            sk_dkim_keyring_free(r);
            return sk_error_set(err, SK_ERR_CONFIG, SK_STEP_NONE, "dkim: %s", kerr.text);
        }
        r->n = i + 1;
        size_t same_domain = 0;
        for (size_t j = 0; j < i; j++) {
            if (strcmp(r->v[j].domain, k->domain)) continue;
            same_domain++;
            if (!strcmp(r->v[j].selector, k->selector)) {
                sk_dkim_keyring_free(r);
                return sk_error_set(err, SK_ERR_CONFIG, SK_STEP_NONE,
                                    "dkim: \"%s\" and \"%s\" name one selector of a domain "
                                    "twice",
                                    specs->v[j], specs->v[i]);
            }
        }
        if (same_domain >= SK_DKIM_SIGN_MAX) {
            /* The message names the domain before the keyring (which holds
             * it) goes. */
            sk_error_set(err, SK_ERR_CONFIG, SK_STEP_NONE, "dkim: more than %d keys for %s",
                         SK_DKIM_SIGN_MAX, k->domain);
            sk_dkim_keyring_free(r);
            return SK_ERR_CONFIG;
        }
    }
    *out = r;
    return SK_OK;
}

/* Is domain d equal to, or below, parent p (both lower case)? */
static bool at_or_below(const char *d, const char *p)
{
    size_t dl = strlen(d), pl = strlen(p);
    if (dl == pl) return !strcmp(d, p);
    return dl > pl && d[dl - pl - 1] == '.' && !strcmp(d + dl - pl, p);
}

size_t sk_dkim_keyring_pick(const sk_dkim_keyring *r, const char *from_domain,
                            sk_dkim_sign_opts *opts, size_t max)
{
    /* The most specific configured domain: a key for news.example.org
     * wins over one for example.org for mail from news.example.org. */
    const char *best = NULL;
    for (size_t i = 0; r && i < r->n; i++)
        if (at_or_below(from_domain, r->v[i].domain) &&
            (!best || strlen(r->v[i].domain) > strlen(best)))
            best = r->v[i].domain;
    size_t n = 0;
    for (size_t i = 0; best && i < r->n && n < max; i++) {
        if (strcmp(r->v[i].domain, best)) continue;
        opts[n++] = (sk_dkim_sign_opts){
            .domain = r->v[i].domain, .selector = r->v[i].selector, .key = r->v[i].key};
    }
    return n;
}

/* Signed here, on the loop, not on the signing threads: the queue builds
 * and spools a DSN in one step, DSNs are few (one per message that failed,
 * was delayed or asked for one) and each costs one signature per key
 * (0.2 ms for RSA-2048). */
sk_err sk_daemon_dsn_sign(void *keys, const char *msg, size_t len, sk_buf *fields, sk_error *err)
{
    const sk_dkim_keyring *r = *(sk_dkim_keyring *const *)keys;
    const char *end = memmem(msg, len, "\r\n\r\n", 4);
    char from[SK_SMTP_DOMAIN_MAX_OCTETS + 1];
    if (sk_dmarc_from_domain(msg, end ? (size_t)(end - msg) + 2 : len, from, NULL) != SK_OK)
        return SK_OK;
    sk_dkim_sign_opts opts[SK_DKIM_SIGN_MAX];
    size_t n = sk_dkim_keyring_pick(r, from, opts, SK_DKIM_SIGN_MAX);
    return n ? sk_dkim_sign(opts, n, msg, len, fields, err) : SK_OK;
}
