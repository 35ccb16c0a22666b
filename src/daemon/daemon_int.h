/* Private pieces of the daemon, exposed for unit tests: the users and
 * local-recipients tables (tables.c), the recipient decision
 * (rcpt_policy.c), and authenticated mail: the header scanner
 * (hdrscan.c), the DKIM signing keys (signing.c) and threads (signpool.c),
 * the checks of mail from outside (inbound.c) and what they lead to
 * (verdict.c). */
#ifndef SK_DAEMON_INT_H
#define SK_DAEMON_INT_H

#include <smtpkit/classify.h>
#include <smtpkit/daemon.h>
#include <smtpkit/dkim.h>
#include <smtpkit/arc.h>
#include <smtpkit/dmarc.h>
#include <smtpkit/spf.h>
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
    int64_t suppress_for_s; /* --suppress-for; 0: each class's duration (rules) */
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

/* ---- authenticated mail (docs/authentication.md "In smtpkit serve") ---- */

/* The longest header field name the scanner reads as a name (RFC 5322
 * sets none; a longer "name" is passed on as it is, being no field we
 * look for), and the most octets of From fields kept for DMARC and the
 * choice of signing keys (a From longer than that is a permerror). */
#define SK_DAEMON_FIELD_NAME_MAX_OCTETS  256
#define SK_DAEMON_FROM_FIELDS_MAX_OCTETS (64u * 1024)

/* The header block of a message as it streams in: fed the message in any
 * pieces, it passes the header block on to out (less the
 * Authentication-Results fields bearing strip_id, when it is not NULL:
 * RFC 8601 5), keeps a copy of the From fields (from), and stops at the
 * empty line that ends the header block (RFC 5322 2.1): what follows is
 * the body, which the caller passes on itself. Only an
 * Authentication-Results field is held, until its end (at most
 * SK_AUTHRES_HEADER_MAX_OCTETS; a longer one is judged by its start). */
typedef struct sk_hdrscan {
    const char *strip_id;
    int state, kind;
    sk_buf name, held, from;
    bool dropping;      /* the rest of an over-long field of ours */
    bool from_overflow; /* From fields past SK_DAEMON_FROM_FIELDS_MAX_OCTETS */
    size_t removed;     /* Authentication-Results fields removed */
} sk_hdrscan;
void sk_hdrscan_init(sk_hdrscan *h, const char *strip_id);
void sk_hdrscan_free(sk_hdrscan *h);
/* Read up to n octets; *used is how many belong to the header block (all
 * of them until the body starts). Header octets that go on are appended
 * to out. SK_ERR_NOMEM, or SK_ERR_TOO_LONG when out is full. */
SK_NODISCARD sk_err sk_hdrscan_feed(sk_hdrscan *h, const char *p, size_t n, sk_buf *out,
                                    size_t *used);
/* The message ended: a field still held goes on (or not). */
SK_NODISCARD sk_err sk_hdrscan_end(sk_hdrscan *h, sk_buf *out);
bool sk_hdrscan_in_body(const sk_hdrscan *h);

/* --dkim DOMAIN:SELECTOR:KEYFILE: the domain and selector as DNS names
 * (lower case, no final dot) and the file; SK_ERR_SYNTAX and why. */
SK_NODISCARD sk_err sk_daemon_dkim_spec_parse(const char *spec,
                                              char domain[SK_SMTP_DOMAIN_MAX_OCTETS + 1],
                                              char selector[SK_SMTP_DOMAIN_MAX_OCTETS + 1],
                                              const char **file, const char **why);
/* The --arc-seal key, DOMAIN:SELECTOR:KEYFILE as --dkim: read at start
 * and on SIGHUP. SK_ERR_CONFIG naming the file or the mistake. */
SK_NODISCARD sk_err sk_daemon_arc_key_load(const char *spec, sk_dkim_key **key,
                                           char domain[SK_SMTP_DOMAIN_MAX_OCTETS + 1],
                                           char selector[SK_SMTP_DOMAIN_MAX_OCTETS + 1],
                                           sk_error *err);
/* The signing keys: every --dkim entry with its key loaded. A file that
 * cannot be read or holds no usable key (RSA under 1024 bits included),
 * a selector given twice for a domain or more than SK_DKIM_SIGN_MAX keys
 * for one are SK_ERR_CONFIG, the text naming the file or entry. */
typedef struct sk_dkim_keyring sk_dkim_keyring;
SK_NODISCARD sk_err sk_dkim_keyring_load(const sk_strlist *specs, sk_dkim_keyring **out,
                                         sk_error *err);
void sk_dkim_keyring_free(sk_dkim_keyring *r);
size_t sk_dkim_keyring_count(const sk_dkim_keyring *r);
/* The signatures for mail whose From domain (normalized) is from_domain:
 * one per key of the most specific configured domain that is from_domain
 * or a parent of it (a key for example.org signs news.example.org; one
 * for news.example.org wins there). opts[0..n) point into the keyring
 * (the signer copies what it keeps); 0 when no key applies. */
size_t sk_dkim_keyring_pick(const sk_dkim_keyring *r, const char *from_domain,
                            sk_dkim_sign_opts *opts, size_t max);

/* The queue's dsn_fields hook (keys: the daemon's sk_dkim_keyring *, read
 * at each call: SIGHUP replaces it): a DSN whose From domain (MAILER-DAEMON
 * at our hostname) has keys (sk_dkim_keyring_pick) gets their DKIM
 * signatures, so that bounces from us pass DMARC at the receiver; other
 * DSNs get none. */
sk_err sk_daemon_dsn_sign(void *keys, const char *msg, size_t len, sk_buf *fields, sk_error *err);

/* The end of a signer or an ARC sealer (header hashes, private-key
 * operations) on a group of background workers named "sign" (signpool.c,
 * sk_workers), at most this many threads: one per processor. */
#define SK_DAEMON_SIGN_THREADS_MAX 4
typedef struct sk_sign_pool sk_sign_pool;
sk_sign_pool *sk_sign_pool_new(struct event_base *base, sk_error *err);
/* Called on the loop with what sk_dkim_signer_finish (or
 * sk_arc_sealer_finish) gave: e, the fields (the callee may take their
 * storage with sk_buf_detach) and err. */
typedef void (*sk_sign_done_fn)(void *ctx, sk_err e, sk_buf *fields, const sk_error *err);
/* Finish s on a worker thread; the caller leaves s alone until done is
 * called (on the loop, when it drains the group). SK_ERR_NOMEM, or
 * SK_ERR_STATE when the group is stopping. */
SK_NODISCARD sk_err sk_sign_pool_submit(sk_sign_pool *p, sk_dkim_signer *s, sk_sign_done_fn done,
                                        void *ctx);
/* The same for an ARC sealer whose results are set: the set is made by
 * sk_arc_sealer_finish on a worker thread. */
SK_NODISCARD sk_err sk_sign_pool_submit_seal(sk_sign_pool *p, sk_arc_sealer *s,
                                             sk_sign_done_fn done, void *ctx);
/* Waits for the signatures being made; those not delivered yet are
 * dropped without their callback (their callers free their signers and
 * sealers). */
void sk_sign_pool_free(sk_sign_pool *p);

/* What the checks of a message from outside found (inbound.c), as
 * verdict.c weighs and records it. NULL pointers: not evaluated. */
typedef struct sk_auth_results {
    const sk_dkim_result *dkim; /* one per DKIM-Signature, from the top */
    size_t n_dkim;
    const char *dkim_error;             /* no result could be had (why), or NULL */
    const sk_spf_outcome *spf_mailfrom; /* MAIL FROM identity (HELO's for <>) */
    const sk_spf_outcome *spf_helo;
    const sk_dmarc_result *dmarc;
    const sk_arc_result *arc; /* the ARC chain (RFC 8617) */
    const char *arc_error;    /* the chain could not be evaluated (why), or NULL */
    const char *peer;         /* the client's address */
} sk_auth_results;

/* What the daemon does about them: --dmarc-policy enforce, --spf-reject-fail. */
typedef struct sk_auth_policy {
    bool enforce;
    bool spf_reject_fail;
} sk_auth_policy;

typedef enum sk_auth_action {
    SK_AUTH_ACCEPT = 0,
    SK_AUTH_QUARANTINE, /* accepted, marked for the mailbox's filters */
    SK_AUTH_REFUSE,     /* 550 */
    SK_AUTH_DEFER,      /* 451: a DNS failure, when enforcing */
} sk_auth_action;
const char *sk_auth_action_name(sk_auth_action a);

typedef struct sk_auth_verdict {
    sk_auth_action action;
    sk_reply reply; /* for REFUSE and DEFER */
} sk_auth_verdict;

/* The one decision (docs/authentication.md "In smtpkit serve"): enforcing,
 * a DMARC fail whose disposition (after pct) is reject gets 550 5.7.1, one
 * whose disposition is quarantine is accepted and marked, a DMARC
 * temperror gets 451 4.7.0; with spf_reject_fail an SPF fail gets 550
 * 5.7.23 and an SPF temperror 451 4.7.24 (RFC 7372), unless DMARC passed.
 * Anything else, and everything in report mode, is accepted. Pure. */
sk_auth_verdict sk_auth_decide(const sk_auth_policy *p, const sk_auth_results *r);

/* The field a quarantined message gets, for the mailbox's filters. */
#define SK_DAEMON_QUARANTINE_FIELD "X-SMTPKit-Quarantine: dmarc\r\n"

/* The results sk_auth_record writes, as one resinfo list ("dkim=pass ...; spf=..."),
 * without reasons and header.b: the ARC-Authentication-Results text of an
 * ARC set we add (RFC 8617 4.1.1). */
SK_NODISCARD sk_err sk_auth_resinfo(const sk_auth_results *res, const sk_auth_verdict *v,
                                    sk_buf *out);

/* Append the fields to put on top of the accepted message: our
 * Authentication-Results (authserv_id; dkim, spf, dmarc with their
 * properties), then SK_DAEMON_QUARANTINE_FIELD when quarantined; and to
 * summary the results on one line for the tracking store and the log
 * ("dkim=pass header.d=example.org header.s=s1; spf=pass ...").
 * SK_ERR_NOMEM, or SK_ERR_TOO_LONG when fields is too small. */
SK_NODISCARD sk_err sk_auth_record(const char *authserv_id, const sk_auth_results *r,
                                   const sk_auth_verdict *v, sk_buf *fields, sk_buf *summary,
                                   sk_error *err);

/* The checks of mail from outside, on the daemon's loop (inbound.c): SPF
 * of the MAIL FROM and HELO identities started at MAIL, so that they run
 * while the message comes in; DKIM (every signature) fed as it streams in;
 * DMARC once those are in. */
typedef struct sk_inbound sk_inbound;
typedef struct sk_inbound_sess sk_inbound_sess;
typedef struct sk_inbound_msg sk_inbound_msg;
typedef struct sk_inbound_opts {
    struct event_base *base;
    const char *dns_server; /* NULL: the system's resolver */
    const char *authserv_id;
    sk_logger log;
} sk_inbound_opts;
sk_inbound *sk_inbound_new(const sk_inbound_opts *o, sk_error *err);
/* After every session and message of it is freed. */
void sk_inbound_free(sk_inbound *in);

/* One per session from outside. */
sk_inbound_sess *sk_inbound_sess_new(sk_inbound *in, const char *session_id, const char *peer);
/* MAIL FROM (mail_from "" for the null sender) after HELO/EHLO helo:
 * starts SPF for both identities (HELO's once per name and session). */
void sk_inbound_mail(sk_inbound_sess *s, const char *helo, const char *mail_from);
/* Cancels what is in flight. A message of the session must be freed first. */
void sk_inbound_sess_free(sk_inbound_sess *s);

/* One per message of a session, fed as sk_dkim_verifier_feed is. */
sk_inbound_msg *sk_inbound_msg_new(sk_inbound_sess *s);
void sk_inbound_msg_feed(sk_inbound_msg *m, const char *p, size_t n);
/* The message is complete; from: its From fields (sk_hdrscan's copy;
 * from_overflow when they were too long). done is called once, from the
 * loop (never inside this call), with everything evaluated; res is valid
 * during the call. Then free the message. */
typedef void (*sk_inbound_done_fn)(void *ctx, const sk_auth_results *res);
void sk_inbound_msg_finish(sk_inbound_msg *m, const sk_buf *from, bool from_overflow,
                           sk_inbound_done_fn done, void *ctx);
/* Cancels what is in flight (done is then not called). Accepts NULL. */
void sk_inbound_msg_free(sk_inbound_msg *m);

/* The HTTP API of the configuration c on base (http_api.c); NULL with err
 * set when it cannot start. */
struct event_base;
typedef struct sk_http sk_http;
typedef struct sk_http_deps sk_http_deps;
sk_http *sk_daemon_http_start(const sk_daemon_config *c, const char *hostname,
                              struct event_base *base, const sk_http_deps *deps,
                              const sk_logger *log, sk_error *err);

#endif
