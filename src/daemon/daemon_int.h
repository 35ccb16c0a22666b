/* Private pieces of the daemon, exposed for unit tests: the users and
 * local-recipients tables (tables.c) and the recipient decision
 * (rcpt_policy.c). */
#ifndef SK_DAEMON_INT_H
#define SK_DAEMON_INT_H

#include <smtpkit/classify.h>
#include <smtpkit/daemon.h>
#include <smtpkit/proto.h>
#include <smtpkit/reply.h>
#include <smtpkit/suppress.h>
#include <smtpkit/track.h>

/* The configuration's string lists (sk_strlist, daemon.h; config.c):
 * append a copy of s[0..n), free every string. */
SK_NODISCARD sk_err sk_strlist_add(sk_strlist *l, const char *s, size_t n);
void sk_strlist_clear(sk_strlist *l);

/* A string list kept sorted (lower-cased when built so), for lookups. */
typedef sk_strlist sk_strset;
bool sk_strset_has(const sk_strset *s, const char *key);

/* "user:HASH" lines; '#' comments and blank lines are skipped. Errors are
 * "FILE:LINE: reason" (SK_ERR_CONFIG). */
typedef struct sk_users {
    char **user, **hash;
    size_t n;
} sk_users;
SK_NODISCARD sk_err sk_users_load(const char *path, sk_users *out, sk_error *err);
void sk_users_free(sk_users *u);
/* The stored hash for user, NULL when unknown. */
const char *sk_users_hash(const sk_users *u, const char *user);

/* One address a line ("local@domain"), '#' comments. The set holds the
 * lower-cased addresses; domains holds the domains that appear. */
typedef struct sk_recipients {
    sk_strset addrs;
    sk_strset domains;
} sk_recipients;
SK_NODISCARD sk_err sk_recipients_load(const char *path, sk_recipients *out, sk_error *err);
void sk_recipients_free(sk_recipients *r);

/* The one recipient decision (rcpt_policy.c): what RCPT TO gets. */
typedef enum sk_rcpt_verdict {
    SK_RCPT_LOCAL,   /* a local domain's address, or <postmaster>: delivered here */
    SK_RCPT_REPORT,  /* one of our VERP addresses: read as a report, from anyone */
    SK_RCPT_RELAY,   /* another domain, for a client that may relay */
    SK_RCPT_REFUSED, /* the reply says why */
} sk_rcpt_verdict;

/* What it is decided by, besides the session: the configuration's tables. */
typedef struct sk_rcpt_tables {
    const sk_daemon_config *cfg;       /* local domains, relay networks */
    const sk_recipients *recipients;   /* --local-recipients; NULL without */
    const char *verp_domain;           /* with --verp our host name, else NULL */
    const sk_suppress_set *suppressed; /* NULL: no suppression (no tracking store) */
} sk_rcpt_tables;

/* The session's facts and the recipient. */
typedef struct sk_rcpt_query {
    const sk_path *rcpt;   /* as parsed; domain "" for the bare <postmaster> */
    const char *peer;      /* the client's numeric address */
    const char *auth_user; /* "" when not authenticated */
    int64_t now_s;         /* suppressions that ended by then do not count */
} sk_rcpt_query;

typedef struct sk_rcpt_decision {
    sk_rcpt_verdict verdict;
    sk_reply reply; /* SK_REPLY_OK unless refused */
    /* The entry (in tables->suppressed) that refused the recipient, for
     * the "suppressed" event; NULL otherwise. */
    const sk_suppression *suppressed;
} sk_rcpt_decision;

/* RFC 5321 4.5.1: postmaster is always accepted, with no domain or at a
 * local one. A local domain takes any local part unless the recipients
 * table lists the domain and not the address (550 5.1.1). VERP addresses
 * take reports from anyone. Any other domain is relayed only for a client
 * in the relay networks or authenticated (554 5.7.1: never an open relay),
 * and not to a suppressed address (550 5.1.1). Pure: no I/O, no clock. */
sk_rcpt_decision sk_rcpt_decide(const sk_rcpt_tables *t, const sk_rcpt_query *q);
/* Is domain one of the local domains (case-insensitive)? */
bool sk_daemon_is_local(const sk_daemon_config *c, const char *domain);
/* Is the numeric address in one of the networks? */
bool sk_cidr_match_str(const sk_cidr *nets, size_t n, const char *addr);

/* A VERP address (SK_QUEUE_VERP_PREFIX "ID=LOCAL=DOMAIN@HOST"): the
 * queue ID and the recipient it stands for. SK_ERR_SYNTAX when addr is
 * not one. */
SK_NODISCARD sk_err sk_daemon_verp_parse(const char *addr, char *id, size_t idsize, char *rcpt,
                                         size_t rcptsize);
/* The Message-ID in a header block, without angle brackets; "" when it
 * has none. */
void sk_daemon_message_id(const char *headers, size_t len, char *out, size_t outsize);

/* What reading a report needs. */
typedef struct sk_verp_ctx {
    sk_track *track;
    const sk_rules *rules;
    int64_t suppress_for_s;
    const sk_logger *log;
} sk_verp_ctx;
/* A message that arrived for the VERP address addr: a DSN about the
 * message and recipient it names is recorded (bounced with its class by
 * the rules, which suppresses a hard bounce; deferred; delivered), a
 * complaint (ARF) is recorded and suppresses the recipient. Returns the
 * outcome for the log: "bounced", "deferred", "delivered", "complained",
 * or why nothing was recorded ("unmatched-queue-id", "not-a-report", ...). */
const char *sk_daemon_verp_report(const sk_verp_ctx *x, const char *addr, const char *msg,
                                  size_t len);

#endif
