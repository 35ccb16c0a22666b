/* The recipient policy of `smtpkit serve`: one pure function decides what
 * RCPT TO gets (local domains, local recipients, VERP reports, relaying
 * only for trusted networks or after AUTH, suppression). */
#include "daemon_int.h"

#include <smtpkit/queue.h>

#include <arpa/inet.h>
#include <ctype.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

bool sk_daemon_is_local(const sk_daemon_config *c, const char *domain)
{
    for (size_t i = 0; i < c->local_domain.n; i++)
        if (strcasecmp(c->local_domain.v[i], domain) == 0) return true;
    return false;
}

bool sk_cidr_match_str(const sk_cidr *nets, size_t n, const char *addr)
{
    struct sockaddr_storage ss = {0};
    if (strncasecmp(addr, "IPv6:", 5) == 0) addr += 5;
    struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
    if (inet_pton(AF_INET, addr, &s4->sin_addr) == 1)
        s4->sin_family = AF_INET;
    else if (inet_pton(AF_INET6, addr, &s6->sin6_addr) == 1)
        s6->sin6_family = AF_INET6;
    else
        return false;
    return sk_cidr_match(nets, n, (struct sockaddr *)&ss);
}

static sk_rcpt_decision accept_as(sk_rcpt_verdict v)
{
    return (sk_rcpt_decision){.verdict = v, .reply = SK_REPLY_OK};
}

/* Is local@domain missing from the local-recipients table? Only for the
 * domains the table lists: the other local domains take any local part.
 * The table is lower-cased, and so is what is looked up in it. */
static bool unknown_user(const sk_recipients *r, const sk_path *rcpt)
{
    if (!r) return false;
    char addr[SK_SMTP_PATH_MAX_OCTETS * 2 + 2];
    snprintf(addr, sizeof addr, "%s@%s", rcpt->local, rcpt->domain);
    sk_ascii_lower(addr, strlen(addr));
    const char *domain = addr + strlen(rcpt->local) + 1;
    return sk_strset_has(&r->domains, domain) && !sk_strset_has(&r->addrs, addr);
}

sk_rcpt_decision sk_rcpt_decide(const sk_rcpt_tables *t, const sk_rcpt_query *q)
{
    const sk_daemon_config *c = t->cfg;
    const sk_path *r = q->rcpt;
    /* RFC 5321 4.5.1: <postmaster> without a domain, and postmaster at
     * every local domain, must be accepted. */
    if (r->domain[0] == '\0') {
        if (strcasecmp(r->mailbox, "postmaster") == 0) return accept_as(SK_RCPT_LOCAL);
        return (sk_rcpt_decision){SK_RCPT_REFUSED,
                                  sk_reply_make(550, "5.1.3", "recipient needs a domain"), NULL};
    }
    /* Bounces to our VERP addresses come from any MTA (usually with the
     * null sender); they are read, not relayed (docs/serve.md). */
    if (t->verp_domain && strcasecmp(r->domain, t->verp_domain) == 0 &&
        strncasecmp(r->local, SK_QUEUE_VERP_PREFIX, strlen(SK_QUEUE_VERP_PREFIX)) == 0)
        return accept_as(SK_RCPT_REPORT);
    /* The two "no such mailbox" answers (RFC 3463 5.1.1): a local address
     * the table does not list, and below, a suppressed one. */
    if (sk_daemon_is_local(c, r->domain)) {
        if (strcasecmp(r->local, "postmaster") != 0 && unknown_user(t->recipients, r))
            return (sk_rcpt_decision){SK_RCPT_REFUSED,
                                      sk_reply_make(550, "5.1.1", "no such user here"), NULL};
        return accept_as(SK_RCPT_LOCAL);
    }
    /* Not ours: relaying. Only for the trusted networks or after AUTH, so
     * that the server is never an open relay. */
    bool trusted =
        q->auth_user[0] != '\0' || sk_cidr_match_str(c->relay_net, c->n_relay_net, q->peer);
    if (!trusted)
        return (sk_rcpt_decision){SK_RCPT_REFUSED,
                                  sk_reply_make(554, "5.7.1", "relay access denied"), NULL};
    /* Suppression (docs/tracking.md): relayed mail from our own users to
     * an address that bounced hard or complained is refused here, with
     * what to do about it. Local domains are ours to know: not checked. */
    const sk_suppression *s =
        t->suppressed ? sk_suppress_set_find(t->suppressed, r->mailbox, q->now_s) : NULL;
    if (s) {
        char date[32] = "?";
        time_t when = (time_t)s->created_s;
        struct tm tm;
        if (gmtime_r(&when, &tm)) strftime(date, sizeof date, "%Y-%m-%d", &tm);
        return (sk_rcpt_decision){
            SK_RCPT_REFUSED,
            sk_reply_make(550, "5.1.1",
                          "recipient suppressed after a hard bounce on %s: %s; smtpkit suppress "
                          "remove %s",
                          date, s->reason[0] ? s->reason : "bounced", s->address),
            s};
    }
    /* Without a relay host, mail goes to the domain's MX hosts. */
    return accept_as(SK_RCPT_RELAY);
}
