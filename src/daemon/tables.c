/* The daemon's tables, read from files: users for AUTH (`--users`) and
 * the addresses of the local domains (`--local-recipients`). */
#include "daemon_int.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

bool sk_strset_has(const sk_strset *s, const char *key)
{
    return s->n && bsearch(&key, s->v, s->n, sizeof *s->v, cmp_str) != NULL;
}

static sk_err strset_add(sk_strset *s, const char *str, size_t len)
{
    sk_err e = sk_strlist_add(s, str, len);
    if (!e) sk_ascii_lower(s->v[s->n - 1], len);
    return e;
}

static void strset_sort(sk_strset *s)
{
    if (s->n) qsort(s->v, s->n, sizeof *s->v, cmp_str);
}

/* Read path line by line; fn gets each line without its end and without
 * surrounding blanks, skipping blank lines and '#' comments. */
typedef sk_err (*line_fn)(void *ctx, char *line, const char **why);

static sk_err each_line(const char *path, line_fn fn, void *ctx, sk_error *err)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return sk_error_set(err, SK_ERR_CONFIG, SK_STEP_NONE, "%s: cannot open: %s", path,
                            strerror(errno));
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    int lineno = 0;
    sk_err e = SK_OK;
    while ((n = getline(&line, &cap, f)) >= 0) {
        lineno++;
        while (n > 0 && isspace((unsigned char)line[n - 1])) line[--n] = '\0';
        char *p = line;
        while (isspace((unsigned char)*p)) p++;
        if (*p == '\0' || *p == '#') continue;
        if (strlen(p) != (size_t)(n - (p - line))) {
            e = sk_error_set(err, SK_ERR_CONFIG, SK_STEP_NONE, "%s:%d: NUL octet in line", path,
                             lineno);
            break;
        }
        const char *why = NULL;
        e = fn(ctx, p, &why);
        if (e) {
            if (e == SK_ERR_NOMEM)
                sk_error_set(err, e, SK_STEP_NONE, "out of memory");
            else
                e = sk_error_set(err, SK_ERR_CONFIG, SK_STEP_NONE, "%s:%d: %s", path, lineno,
                                 why ? why : "invalid line");
            break;
        }
    }
    free(line);
    if (!e && ferror(f)) e = sk_error_set(err, SK_ERR_CONFIG, SK_STEP_NONE, "%s: read error", path);
    fclose(f);
    return e;
}

static sk_err users_line(void *ctx, char *line, const char **why)
{
    sk_users *u = ctx;
    char *colon = strchr(line, ':');
    if (!colon || colon == line) {
        *why = "expected \"user:HASH\"";
        return SK_ERR_SYNTAX;
    }
    *colon = '\0';
    const char *hash = colon + 1;
    /* crypt(3) hashes start with "$id$"; anything else is most likely a
     * clear-text password written by mistake, which we refuse to use. */
    if (hash[0] != '$' || strlen(hash) < 4 || strchr(hash, ':')) {
        *why = "the hash is not a crypt(3) hash (\"$y$...\", \"$6$...\"); make one with "
               "'smtpkit passwd'";
        return SK_ERR_SYNTAX;
    }
    if (sk_users_hash(u, line)) {
        *why = "user listed twice";
        return SK_ERR_SYNTAX;
    }
    char **uv = sk_realloc(u->user, (u->n + 1) * sizeof *uv);
    if (!uv) return SK_ERR_NOMEM;
    u->user = uv;
    char **hv = sk_realloc(u->hash, (u->n + 1) * sizeof *hv);
    if (!hv) return SK_ERR_NOMEM;
    u->hash = hv;
    u->user[u->n] = sk_strdup(line);
    u->hash[u->n] = sk_strdup(hash);
    if (!u->user[u->n] || !u->hash[u->n]) {
        sk_free(u->user[u->n]);
        sk_free(u->hash[u->n]);
        return SK_ERR_NOMEM;
    }
    u->n++;
    return SK_OK;
}

sk_err sk_users_load(const char *path, sk_users *out, sk_error *err)
{
    sk_users u = {0};
    sk_err e = each_line(path, users_line, &u, err);
    if (e) {
        sk_users_free(&u);
        return e;
    }
    *out = u;
    return SK_OK;
}

void sk_users_free(sk_users *u)
{
    for (size_t i = 0; i < u->n; i++) {
        sk_free(u->user[i]);
        sk_free(u->hash[i]);
    }
    sk_free(u->user);
    sk_free(u->hash);
    u->user = u->hash = NULL;
    u->n = 0;
}

const char *sk_users_hash(const sk_users *u, const char *user)
{
    /* Linear: user tables are small, and next to crypt(3) this is free. */
    for (size_t i = 0; i < u->n; i++)
        if (strcmp(u->user[i], user) == 0) return u->hash[i];
    return NULL;
}

static sk_err recipients_line(void *ctx, char *line, const char **why)
{
    sk_recipients *r = ctx;
    const char *at = strrchr(line, '@');
    if (!at || at == line || at[1] == '\0' || strpbrk(line, " \t<>")) {
        *why = "expected one address (local@domain) a line";
        return SK_ERR_SYNTAX;
    }
    size_t len = strlen(line);
    if (len > SK_SMTP_PATH_MAX_OCTETS) {
        *why = "address longer than RFC 5321 allows";
        return SK_ERR_SYNTAX;
    }
    sk_err e = strset_add(&r->addrs, line, len);
    if (!e && !sk_strset_has(&r->domains, at + 1)) {
        e = strset_add(&r->domains, at + 1, strlen(at + 1));
        strset_sort(&r->domains);
    }
    return e;
}

sk_err sk_recipients_load(const char *path, sk_recipients *out, sk_error *err)
{
    sk_recipients r = {0};
    sk_err e = each_line(path, recipients_line, &r, err);
    if (e) {
        sk_recipients_free(&r);
        return e;
    }
    strset_sort(&r.addrs);
    *out = r;
    return SK_OK;
}

void sk_recipients_free(sk_recipients *r)
{
    sk_strlist_clear(&r->addrs);
    sk_strlist_clear(&r->domains);
}
