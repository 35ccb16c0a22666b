/* The probe's first checks: the server's addresses (DNS) and a TCP
 * connection to each in turn until one answers. */
#include "client/probe_int.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* ---- addresses and sockets ---- */

static void addr_string(const struct sockaddr *sa, char *out, size_t n)
{
    const void *a = sa->sa_family == AF_INET6
                        ? (const void *)&((const struct sockaddr_in6 *)sa)->sin6_addr
                        : (const void *)&((const struct sockaddr_in *)sa)->sin_addr;
    if (!inet_ntop(sa->sa_family, a, out, (socklen_t)n)) snprintf(out, n, "?");
}

static socklen_t sockaddr_len(const struct sockaddr_storage *ss)
{
    return ss->ss_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
}

/* Connect with the client's connect timeout, and its abort. Returns 0, or
 * -1 with *error set (ETIMEDOUT when the timeout passed, ECANCELED when
 * aborted). */
static int tcp_try(const sk_client *c, const struct sockaddr *sa, socklen_t len, int *error)
{
    int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) {
        *error = errno;
        return -1;
    }
    if (connect(fd, sa, len) < 0 && errno != EINPROGRESS) {
        *error = errno;
        close(fd);
        return -1;
    }
    sk_err w = cl_wait_fd(c, fd, POLLOUT, sk_now_ms() + c->o.connect_timeout_ms);
    int soerr = 0;
    socklen_t sl = sizeof soerr;
    if (w == SK_OK && getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0) soerr = errno;
    close(fd);
    if (w != SK_OK) {
        *error = w == SK_ERR_TIMEOUT ? ETIMEDOUT : w == SK_ERR_STATE ? ECANCELED : EIO;
        return -1;
    }
    if (soerr) {
        *error = soerr;
        return -1;
    }
    return 0;
}

/* ---- the checks ---- */

int pr_check_dns(run *r)
{
    sk_client *c = r->c;
    sk_probe_step *s = pr_step_begin(r, SK_PROBE_DNS);
    /* The caller's address, when given, is what the client connects to. */
    const char *target = c->o.connect_address ? c->o.connect_address : c->o.host;
    uint64_t t0 = sk_now_ms();
    if (c->o.resolve && !c->o.connect_address) {
        struct sockaddr_storage ss[SK_PROBE_ADDRS_MAX];
        memset(ss, 0, sizeof ss);
        int n = c->o.resolve(c->o.resolve_ctx, c->o.host, c->o.port, ss, SK_PROBE_ADDRS_MAX);
        s->elapsed_ms = (long)(sk_now_ms() - t0);
        if (n <= 0) {
            pr_step_detail(s, "%s does not resolve: %s", c->o.host,
                           n ? "temporary resolver failure" : "no address");
            pr_step_hint(
                s, "check the name for typos; 'dig %s A' and 'dig %s AAAA' show what DNS says",
                c->o.host, c->o.host);
            return pr_step_fail(r, s, NULL, SK_ERR_DNS);
        }
        for (int i = 0; i < n && i < SK_PROBE_ADDRS_MAX; i++) {
            if (ss[i].ss_family != AF_INET && ss[i].ss_family != AF_INET6) continue;
            r->addrs[r->naddrs] = ss[i];
            r->addrlens[r->naddrs++] = sockaddr_len(&ss[i]);
        }
    } else {
        struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res = NULL;
        if (c->o.connect_address) hints.ai_flags = AI_NUMERICHOST;
        char port[8];
        snprintf(port, sizeof port, "%u", c->o.port);
        int rc = getaddrinfo(target, port, &hints, &res);
        s->elapsed_ms = (long)(sk_now_ms() - t0);
        if (rc != 0) {
            pr_step_detail(s, "%s does not resolve: %s", target, gai_strerror(rc));
            if (rc == EAI_NONAME)
                pr_step_hint(s,
                             "check the name for typos; 'dig %s A' and 'dig %s AAAA' show what DNS "
                             "says",
                             target, target);
            else
                pr_step_hint(s, "the resolver failed (%s): check /etc/resolv.conf and the network",
                             gai_strerror(rc));
            sk_error e;
            sk_error_set(&e, SK_ERR_DNS, SK_STEP_DNS, "cannot resolve %s: %s", target,
                         gai_strerror(rc));
            e.transient = rc != EAI_NONAME;
            return pr_step_fail(r, s, &e, c->o.connect_address ? SK_ERR_CONFIG : SK_ERR_DNS);
        }
        for (struct addrinfo *ai = res; ai && r->naddrs < SK_PROBE_ADDRS_MAX; ai = ai->ai_next) {
            int dup = 0;
            for (size_t i = 0; i < r->naddrs; i++)
                dup |= r->addrlens[i] == ai->ai_addrlen &&
                       memcmp(&r->addrs[i], ai->ai_addr, ai->ai_addrlen) == 0;
            if (dup) continue;
            memcpy(&r->addrs[r->naddrs], ai->ai_addr, ai->ai_addrlen);
            r->addrlens[r->naddrs++] = ai->ai_addrlen;
        }
        freeaddrinfo(res);
    }
    char list[SK_PROBE_ADDRS_MAX * (INET6_ADDRSTRLEN + 2)] = "";
    size_t used = 0;
    for (size_t i = 0; i < r->naddrs; i++) {
        addr_string((const struct sockaddr *)&r->addrs[i], r->p->addr_store[i],
                    sizeof r->p->addr_store[i]);
        r->p->addrs[i] = r->p->addr_store[i];
        int w =
            snprintf(list + used, sizeof list - used, "%s%s", i ? ", " : "", r->p->addr_store[i]);
        if (w > 0 && (size_t)w < sizeof list - used) used += (size_t)w;
    }
    s->addresses = r->p->addrs;
    s->naddresses = r->naddrs;
    struct in6_addr tmp6;
    struct in_addr tmp4;
    if (inet_pton(AF_INET, target, &tmp4) == 1 || inet_pton(AF_INET6, target, &tmp6) == 1)
        pr_step_detail(s, "%s is an address; nothing to resolve", target);
    else
        pr_step_detail(s, "%s resolves to %s", target, list);
    pr_step_end(r, s, SK_PROBE_PASS);
    return 0;
}

int pr_check_tcp(run *r)
{
    const sk_client *c = r->c;
    unsigned short port = c->o.port;
    int refused = 0, timedout = 0, other = 0;
    r->reachable = -1;
    for (size_t i = 0; i < r->naddrs; i++) {
        sk_probe_step *s = pr_step_begin(r, SK_PROBE_TCP);
        const struct sockaddr *sa = (const struct sockaddr *)&r->addrs[i];
        addr_string(sa, s->address, sizeof s->address);
        char where[INET6_ADDRSTRLEN + 10];
        int v6 = sa->sa_family == AF_INET6;
        snprintf(where, sizeof where, "%s%s%s:%u", v6 ? "[" : "", s->address, v6 ? "]" : "", port);
        int error = 0;
        uint64_t t0 = sk_now_ms();
        int rc = tcp_try(c, sa, r->addrlens[i], &error);
        s->elapsed_ms = (long)(sk_now_ms() - t0);
        if (rc == 0) {
            pr_step_detail(s, "%s connected", where);
            if (r->reachable < 0) r->reachable = (int)i;
            pr_step_end(r, s, SK_PROBE_PASS);
            continue;
        }
        sk_err kind = SK_ERR_CONNECT;
        if (error == ECANCELED) {
            pr_step_detail(s, "%s: aborted (sk_client_abort)", where);
            return pr_step_fail(r, s, NULL, SK_ERR_STATE);
        } else if (error == ECONNREFUSED) {
            refused++;
            pr_step_detail(s, "%s refused: nothing is listening on port %u there", where, port);
            pr_step_hint(s, "wrong port? (SMTP: 25 relay, 587 submission, 465 submission over "
                            "TLS) or the server is not running");
        } else if (error == ETIMEDOUT) {
            timedout++;
            kind = SK_ERR_TIMEOUT;
            pr_step_detail(s, "%s timed out after %u ms: no answer at all", where,
                           c->o.connect_timeout_ms);
            pr_step_hint(s,
                         "packets are dropped on the way: a firewall, or an ISP blocking port "
                         "%u; check from another network",
                         port);
        } else {
            other++;
            pr_step_detail(s, "%s failed: %s", where, strerror(error));
            pr_step_hint(s, "check the route to %s (ip route get %s)", s->address, s->address);
        }
        /* An unreachable address is only a warning while another works. */
        if (r->naddrs > 1) {
            pr_step_end(r, s, SK_PROBE_WARN);
        } else {
            sk_error e;
            sk_error_set(&e, kind, SK_STEP_CONNECT, "cannot connect to %s port %u (%s: %s)",
                         c->o.host, port, s->address, strerror(error));
            e.transient = 1;
            return pr_step_fail(r, s, &e, kind);
        }
    }
    if (r->reachable >= 0) {
        addr_string((const struct sockaddr *)&r->addrs[r->reachable], r->reach_addr,
                    sizeof r->reach_addr);
        return 0;
    }
    sk_probe_step *s = pr_step_begin(r, SK_PROBE_TCP);
    pr_step_detail(s,
                   "no address of %s accepted a connection on port %u (%d refused, %d timed "
                   "out, %d other)",
                   c->o.host, port, refused, timedout, other);
    pr_step_hint(s, "%s",
                 refused ? "check the port, and that the server runs"
                         : "check firewalls between here and the server");
    sk_error e;
    sk_error_set(&e, SK_ERR_CONNECT, SK_STEP_CONNECT, "%s", s->detail);
    e.transient = 1;
    return pr_step_fail(r, s, &e, refused || other ? SK_ERR_CONNECT : SK_ERR_TIMEOUT);
}
