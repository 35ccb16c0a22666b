/* Fuzz target: the files and values `smtpkit serve` reads: the key = value
 * config file, the users file ("user:HASH"), the local recipients file,
 * and each line as a HOST:PORT and as a CIDR network. The files are given
 * by path, so the input is written to an anonymous memory file. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "daemon/daemon_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_lists(const sk_daemon_config *c)
{
    const sk_strlist *lists[] = {&c->listen, &c->submission, &c->smtps, &c->local_domain,
                                 &c->rate_limit};
    for (size_t i = 0; i < sizeof lists / sizeof lists[0]; i++)
        for (size_t k = 0; k < lists[i]->n; k++)
            if (!lists[i]->v[k]) abort();
    for (size_t i = 0; i < c->n_relay_net; i++) {
        const sk_cidr *n = &c->relay_net[i];
        if ((n->family == AF_INET && n->prefix_bits > 32) ||
            (n->family == AF_INET6 && n->prefix_bits > 128) ||
            (n->family != AF_INET && n->family != AF_INET6))
            abort();
    }
}

static void config_file(const char *path)
{
    sk_daemon_config *c = sk_daemon_config_new();
    if (!c) return;
    sk_error err;
    sk_error_clear(&err);
    sk_err e = sk_daemon_config_load(c, path, &err);
    if (e) {
        /* Errors name the file: "PATH:LINE: reason" or "PATH: ...". */
        if (e != SK_ERR_CONFIG && e != SK_ERR_NOMEM) abort();
        if (e == SK_ERR_CONFIG && strncmp(err.text, path, strlen(path)) != 0) abort();
    } else {
        check_lists(c);
        if (sk_daemon_config_finish(c, &err) == SK_OK) {
            check_lists(c);
            if (!c->listen.n && !c->submission.n && !c->smtps.n) abort();
            if (!c->tls_cert != !c->tls_key) abort();
            if (c->submission.n && !c->users) abort();
        }
    }
    sk_daemon_config_free(c);
}

static void users_file(const char *path)
{
    sk_users u;
    sk_error err;
    if (sk_users_load(path, &u, &err) != SK_OK) return;
    for (size_t i = 0; i < u.n; i++) {
        const char *h = sk_users_hash(&u, u.user[i]);
        if (!h || h[0] != '$' || strchr(u.user[i], ':')) abort();
    }
    sk_users_free(&u);
}

static void recipients_file(const char *path)
{
    sk_recipients r;
    sk_error err;
    if (sk_recipients_load(path, &r, &err) != SK_OK) return;
    /* Every member is found again (the set is sorted for bsearch). */
    for (size_t i = 0; i < r.addrs.n; i++)
        if (!sk_strset_has(&r.addrs, r.addrs.v[i])) abort();
    for (size_t i = 0; i < r.domains.n; i++)
        if (!sk_strset_has(&r.domains, r.domains.v[i])) abort();
    sk_recipients_free(&r);
}

static void values(const char *s)
{
    char host[256];
    unsigned port = 0;
    memset(host, 'x', sizeof host);
    if (sk_daemon_parse_hostport(s, host, sizeof host, &port) == SK_OK) {
        if (!memchr(host, '\0', sizeof host) || port > 65535) abort();
    }
    sk_cidr net;
    if (sk_cidr_parse(s, &net) == SK_OK) {
        unsigned max = net.family == AF_INET ? 32 : 128;
        if ((net.family != AF_INET && net.family != AF_INET6) || net.prefix_bits > max) abort();
        (void)sk_cidr_match_str(&net, 1, "192.0.2.1");
        (void)sk_cidr_match_str(&net, 1, "2001:db8::1");
        (void)sk_cidr_match_str(&net, 1, "::ffff:127.0.0.1");
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 64 * 1024) return 0;
    int fd = memfd_create("fuzz-config", 0);
    if (fd < 0) abort();
    if (write(fd, data, size) != (ssize_t)size) abort();
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    config_file(path);
    users_file(path);
    recipients_file(path);
    close(fd);

    char *text = malloc(size + 1);
    if (!text) return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    for (char *line = text, *next; line; line = next) {
        next = strchr(line, '\n');
        if (next) *next++ = '\0';
        values(line);
    }
    free(text);
    return 0;
}
