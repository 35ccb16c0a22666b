/* `smtpkit serve`: wires the server framework, the spool, the queue runner
 * and the transports together on one event loop; signals and reload. */
#include "daemon_int.h"

#include "authd.h"

#include <smtpkit/auth.h>
#include <smtpkit/control.h>
#include <smtpkit/authres.h>
#include <smtpkit/queue.h>
#include <smtpkit/server.h>
#include <smtpkit/spool.h>

#include "deliver/deliver.h"

#include <errno.h>
#include <event2/event.h>
#include <event2/thread.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

/* How often a stopping daemon looks whether its sessions have finished,
 * and how long it waits for them at most. */
#define SK_DAEMON_DRAIN_POLL_MS 50
#define SK_DAEMON_DRAIN_MAX_MS  (60 * 1000)
/* How much of a message's header block is read for its Message-ID (the
 * field is near the top in practice; RFC 5322 sets no limit). */
#define SK_DAEMON_HEADERS_MAX_OCTETS (256 * 1024)
/* What the header scanner passes on from one piece of DATA: the piece
 * itself (SK_SERVER_CHUNK_OCTETS at most) and a held
 * Authentication-Results field; the bound is generous. */
#define SK_DAEMON_SCAN_OUT_MAX_OCTETS (4u * 1024 * 1024)
/* The fields added to a message we checked: our Authentication-Results
 * and the quarantine mark. */
#define SK_DAEMON_ADDED_MAX_OCTETS (SK_AUTHRES_HEADER_MAX_OCTETS + 256)

struct sk_daemon {
    /* What to build the configuration from again on SIGHUP. */
    char *config_path;
    sk_daemon_setting *flags;
    size_t n_flags;

    sk_daemon_config *cfg;
    sk_users users;
    sk_authd *authd; /* holds the users file (privilege split); NULL without one */
    sk_recipients recipients;
    bool have_recipients;
    /* The logger everything logs through: user_log itself, or, when that
     * one can buffer (flush set), a wrapper that has it flushed once per
     * pass of the event loop (log_flush_ev). */
    sk_logger log, user_log;
    struct event *log_flush_ev;
    atomic_int log_flush_pending;

    struct event_base *base;
    sk_server *srv;
    sk_spool *spool;
    sk_queue *queue;
    sk_control_server *control; /* `smtpkit queue` asks here (spool/control.sock) */
    sk_transport *local, *remote;
    uint64_t *retry_ms;
    size_t nretry;
    /* Fixed at start (a reload does not change them): our name, VERP,
     * the rules, tracking and suppression. */
    char *hostname;
    const char *verp_domain; /* hostname with --verp, else NULL */
    sk_rules *rules;
    sk_track *track; /* DATA-DIR/track.db; NULL when it could not be opened */
    /* The suppression list in memory, for RCPT (docs/tracking.md); NULL
     * without a tracking store. */
    sk_suppress_mirror *suppress;
    bool track_opened; /* tried already (before the ports opened) */
    int64_t suppress_for_s;

    /* Authenticated mail: the keys that sign (--dkim; replaced on SIGHUP,
     * signers hold their own references), the checks of mail from
     * outside. */
    sk_dkim_keyring *keys;
    /* --arc-seal: the key, domain and selector of the ARC sets added to
     * mail from outside (read at start). */
    sk_dkim_key *arc_key;
    char arc_domain[SK_SMTP_DOMAIN_MAX_OCTETS + 1], arc_selector[SK_SMTP_DOMAIN_MAX_OCTETS + 1];
    sk_sign_pool *signpool;
    sk_inbound *inbound;

    struct daemon_msg *receiving; /* between data start and end */
    /* After the end, before the commit: checks running or signatures
     * being made. */
    struct daemon_msg *finishing;
    struct event *sig_term, *sig_int, *sig_hup, *drain_timer;
    uint64_t stop_started_ms;
    bool stopping;
};

/* What is done about authentication to a message. */
typedef enum msg_auth {
    MSG_AUTH_NONE = 0,
    MSG_AUTH_SIGN,  /* from a user or a relay network: DKIM-signed */
    MSG_AUTH_CHECK, /* from outside: checked, forged results removed */
} msg_auth;

/* One message being received: the spool's handle and what the log needs. */
typedef struct daemon_msg {
    struct daemon_msg *prev, *next; /* in d->receiving, then in d->finishing */
    sk_daemon *d;
    sk_session *s;
    sk_spool_msg *m;
    char id[SK_SPOOL_ID_SIZE];
    uint64_t octets;
    size_t nrcpts;
    char from[SK_SMTP_PATH_MAX_OCTETS + 1];
    /* Recipients that are our VERP addresses: the message is read as a
     * report for each, not spooled for them. */
    char **verp;
    size_t nverp;
    sk_buf report;
    bool report_truncated;
    /* Authenticated mail: the header block as it streams in (until the
     * body starts), what of it goes to the spool; signing: the header
     * block kept for the signer, created once the From field is known,
     * then fed the body; checking: the checks, and their one-line
     * summary for tracking. */
    msg_auth auth;
    bool scanning;
    sk_hdrscan scan;
    sk_buf scan_out;
    sk_buf hdr;
    sk_dkim_signer *signer;
    const char *unsigned_why; /* why a message to sign is not (static text) */
    sk_inbound_msg *check;
    sk_arc_sealer *sealer; /* --arc-seal: fed the message as it came */
    char *auth_summary;
} daemon_msg;

static void msg_free(daemon_msg *dm)
{
    for (size_t i = 0; i < dm->nverp; i++) sk_free(dm->verp[i]);
    sk_free(dm->verp);
    sk_buf_free(&dm->report);
    sk_hdrscan_free(&dm->scan);
    sk_buf_free(&dm->scan_out);
    sk_buf_free(&dm->hdr);
    sk_dkim_signer_free(dm->signer);
    sk_inbound_msg_free(dm->check);
    sk_arc_sealer_free(dm->sealer);
    sk_free(dm->auth_summary);
    sk_free(dm);
}

static void track(sk_daemon *d, const sk_track_ev *ev)
{
    sk_error err;
    if (d->track && sk_track_event(d->track, ev, &err))
        sk_log(&d->log, SK_LOG_ERR, "%s daemon track-failed error=\"%s\"",
               ev->queue_id ? ev->queue_id : "-", err.text);
}

/* Is rcpt one of our VERP addresses (bounces+...@HOSTNAME)? */
static bool is_verp(const sk_daemon *d, const sk_path *rcpt)
{
    char id[SK_SPOOL_ID_SIZE], addr[SK_SMTP_PATH_MAX_OCTETS + 1];
    return d->verp_domain && rcpt->domain[0] && strcasecmp(rcpt->domain, d->verp_domain) == 0 &&
           sk_daemon_verp_parse(rcpt->mailbox, id, sizeof id, addr, sizeof addr) == SK_OK;
}

static void log_escaped(sk_buf *b, const char *key, const char *value)
{
    /* Log lines are best effort: a failed append only shortens the line. */
    if (sk_buf_printf(b, " %s=\"", key) || sk_log_escape(b, value, strlen(value)) ||
        sk_buf_putc(b, '"'))
        return;
}

static void msg_link(struct daemon_msg **list, struct daemon_msg *m)
{
    m->prev = NULL;
    m->next = *list;
    if (*list) (*list)->prev = m;
    *list = m;
}

static void msg_unlink(struct daemon_msg **list, struct daemon_msg *m)
{
    if (m->prev)
        m->prev->next = m->next;
    else if (*list == m)
        *list = m->next;
    if (m->next) m->next->prev = m->prev;
    m->prev = m->next = NULL;
}

/* --- hooks --------------------------------------------------------------- */

static void on_auth_checked(void *ctx, sk_authd_result res)
{
    sk_session *s = ctx;
    sk_reply r = res == SK_AUTHD_OK ? sk_reply_make(235, "2.7.0", "authentication successful")
                 : res == SK_AUTHD_FAIL
                     ? sk_reply_make(535, "5.7.8", "authentication credentials invalid")
                     : sk_reply_make(454, "4.7.0", "temporary authentication failure");
    /* It fails only for a session the server is already freeing. */
    if (sk_session_reply(s, &r) != SK_OK) return;
}

/* The password hashes live in the AUTH helper process (authd.c): ask it,
 * and answer when it replies. */
static sk_reply on_auth(sk_session *s, const char *mech, const char *authzid, const char *user,
                        const char *password, void *ctx)
{
    sk_daemon *d = ctx;
    (void)mech;
    /* Acting for someone else (RFC 4616 authzid) is not offered. The
     * server logs the outcome (auth / auth-failed). */
    if (!d->authd || (authzid[0] != '\0' && strcmp(authzid, user) != 0))
        return sk_reply_make(535, "5.7.8", "authentication credentials invalid");
    if (sk_authd_check(d->authd, user, password, on_auth_checked, s) != SK_OK)
        return sk_reply_make(454, "4.7.0", "temporary authentication failure");
    return SK_REPLY_ASYNC;
}

/* --- authenticated mail (docs/authentication.md "In smtpkit serve") ------- */

/* The sealer of a message from outside (--arc-seal): its results and cv
 * are set once the checks are in (arc_seal). */
static sk_arc_sealer *arc_sealer_new(sk_daemon *d)
{
    sk_arc_seal_opts o = {.domain = d->arc_domain,
                          .selector = d->arc_selector,
                          .key = d->arc_key,
                          .authserv_id = d->hostname,
                          .results_text = "none",
                          .cv = SK_ARC_NONE};
    sk_error err;
    return sk_arc_sealer_new(&o, &err);
}

/* Read the --arc-seal key: exit 78 naming the file when it cannot be. */
static sk_err arc_key_load(sk_daemon *d, sk_error *err)
{
    const char *spec = d->cfg->arc_seal, *file, *why = NULL;
    if (!spec || d->arc_key) return SK_OK;
    if (sk_daemon_dkim_spec_parse(spec, d->arc_domain, d->arc_selector, &file, &why))
        return sk_error_set(err, SK_ERR_CONFIG, SK_STEP_NONE,
                            "arc-seal: \"%s\" is not DOMAIN:SELECTOR:KEYFILE (%s)", spec, why);
    sk_error kerr;
    if (sk_dkim_key_load(file, &d->arc_key, &kerr))
        return sk_error_set(err, SK_ERR_CONFIG, SK_STEP_NONE, "arc-seal: %s", kerr.text);
    return SK_OK;
}

/* Mail from outside: on the SMTP listener, not authenticated, not from a
 * relay network. It is checked (DKIM, SPF, DMARC). */
static bool from_outside(const sk_daemon *d, const sk_session *s)
{
    return sk_session_kind(s) == SK_LISTEN_SMTP && !sk_session_auth_user(s)[0] &&
           !sk_cidr_match_str(d->cfg->relay_net, d->cfg->n_relay_net, sk_session_peer(s));
}

/* Mail we send for our users: authenticated, or from a relay network. It
 * is signed when a key applies. */
static bool ours_to_sign(const sk_daemon *d, const sk_session *s)
{
    return sk_session_auth_user(s)[0] ||
           sk_cidr_match_str(d->cfg->relay_net, d->cfg->n_relay_net, sk_session_peer(s));
}

/* MAIL from outside: SPF starts now, so that it runs while the message
 * comes in. The session's checks live until it ends (on_disconnect). */
static sk_reply on_mail(sk_session *s, const sk_path *from, const sk_mail_params *p, void *ctx)
{
    sk_daemon *d = ctx;
    (void)p;
    if (!from_outside(d, s)) return SK_REPLY_OK;
    sk_inbound_sess *st = sk_session_user(s);
    if (!st) {
        st = sk_inbound_sess_new(d->inbound, sk_session_id(s), sk_session_peer(s));
        if (!st) return sk_reply_make(451, "4.3.0", "insufficient system resources");
        sk_session_set_user(s, st);
    }
    sk_inbound_mail(st, sk_session_helo(s), from->mailbox);
    return SK_REPLY_OK;
}

static void on_disconnect(sk_session *s, void *ctx)
{
    (void)ctx;
    sk_inbound_sess_free(sk_session_user(s));
    sk_session_set_user(s, NULL);
}

/* The header block is known: the signer for its From domain, fed the
 * header block kept so far (the body follows as it comes). */
static const char *const no_key = "no key for the From domain";

static void sign_start(sk_daemon *d, daemon_msg *dm)
{
    char from[SK_SMTP_DOMAIN_MAX_OCTETS + 1];
    const char *why = NULL;
    sk_dkim_sign_opts opts[SK_DKIM_SIGN_MAX];
    size_t n = 0;
    sk_error err;
    if (dm->unsigned_why)
        why = dm->unsigned_why;
    else if (dm->scan.from_overflow)
        why = "From field too long";
    else if (sk_dmarc_from_domain(dm->scan.from.data ? dm->scan.from.data : "", dm->scan.from.len,
                                  from, &why) != SK_OK)
        why = why ? why : "no single From domain";
    else if ((n = sk_dkim_keyring_pick(d->keys, from, opts, SK_DKIM_SIGN_MAX)) == 0)
        why = no_key;
    else if (!(dm->signer = sk_dkim_signer_new(opts, n, &err)) ||
             sk_dkim_signer_feed(dm->signer, dm->hdr.data, dm->hdr.len))
        why = "out of memory";
    dm->unsigned_why = why;
    sk_buf_free(&dm->hdr);
    if (why) {
        sk_dkim_signer_free(dm->signer);
        dm->signer = NULL;
    }
}

/* Header octets that go on to the spool (and, to sign, to the signer). */
static void scan_flush(daemon_msg *dm)
{
    if (!dm->scan_out.len) return;
    /* As in on_data_chunk: a write error is reported by the commit. */
    (void)sk_spool_write(dm->m, dm->scan_out.data, dm->scan_out.len);
    if (dm->auth == MSG_AUTH_SIGN && !dm->unsigned_why &&
        sk_buf_append(&dm->hdr, dm->scan_out.data, dm->scan_out.len))
        dm->unsigned_why = "header block too long";
    sk_buf_reset(&dm->scan_out);
}

/* The message's header block has ended (or the message did). */
static void scan_done(sk_daemon *d, daemon_msg *dm)
{
    dm->scanning = false;
    if (dm->scan.removed)
        sk_log(&d->log, SK_LOG_INFO, "%s daemon authres-removed session=%s count=%zu", dm->id,
               sk_session_id(dm->s), dm->scan.removed);
    if (dm->auth == MSG_AUTH_SIGN) sign_start(d, dm);
}

static void msg_refuse(daemon_msg *dm, const sk_reply *r);
static void on_committed(void *ctx, sk_err e, const char *queue_id);

static void log_unsigned(const sk_daemon *d, const daemon_msg *dm, const char *why)
{
    /* Mail from domains we hold no key for is common (a relay for many):
     * said at debug level only. */
    sk_log(&d->log, why == no_key ? SK_LOG_DEBUG : SK_LOG_INFO,
           "%s daemon dkim-unsigned session=%s reason=\"%s\"", dm->id, sk_session_id(dm->s), why);
}

/* The recipient decision is rcpt_policy.c's; here only its side effect:
 * a suppressed recipient is tracked. The server logs every RCPT with its
 * reply. */
static sk_reply on_rcpt(sk_session *s, const sk_path *rcpt, const sk_rcpt_params *p, void *ctx)
{
    sk_daemon *d = ctx;
    (void)p;
    sk_rcpt_tables t = {
        .cfg = d->cfg,
        .recipients = d->have_recipients ? &d->recipients : NULL,
        .verp_domain = d->verp_domain,
        .suppressed = sk_suppress_mirror_set(d->suppress),
    };
    sk_rcpt_query q = {
        .rcpt = rcpt,
        .peer = sk_session_peer(s),
        .auth_user = sk_session_auth_user(s),
        .now_s = (int64_t)time(NULL),
    };
    sk_rcpt_decision dec = sk_rcpt_decide(&t, &q);
    if (dec.suppressed) {
        /* No queue ID exists yet: the session's ID stands for it. */
        sk_track_ev ev = {.kind = SK_TRACK_SUPPRESSED,
                          .queue_id = sk_session_id(s),
                          .recipient = rcpt->mailbox,
                          .reply = dec.suppressed->reason};
        track(d, &ev);
    }
    return dec.reply;
}

static sk_reply on_data_start(sk_session *s, const sk_envelope *env, void **msg, void *ctx)
{
    sk_daemon *d = ctx;
    sk_spool_envelope se = {0};
    sk_spool_rcpt *rcpts = sk_calloc(env->nrcpts ? env->nrcpts : 1, sizeof *rcpts);
    char postmaster[SK_SMTP_PATH_MAX_OCTETS + 1];
    char tls[256] = "";
    daemon_msg *dm = sk_calloc(1, sizeof *dm);
    if (!rcpts || !dm) {
        sk_free(rcpts);
        sk_free(dm);
        return sk_reply_make(452, "4.3.1", "insufficient system resources");
    }
    size_t nspool = 0;
    sk_buf_init(&dm->report, d->cfg->max_message_size + 4096);
    for (size_t i = 0; i < env->nrcpts; i++) {
        const sk_envelope_rcpt *r = &env->rcpts[i];
        if (is_verp(d, &r->path)) {
            char **v = sk_realloc(dm->verp, (dm->nverp + 1) * sizeof *v);
            char *a = v ? sk_strdup(r->path.mailbox) : NULL;
            if (v) dm->verp = v;
            if (!a) {
                sk_free(rcpts);
                msg_free(dm);
                return sk_reply_make(452, "4.3.1", "insufficient system resources");
            }
            dm->verp[dm->nverp++] = a;
            continue;
        }
        size_t k = nspool++;
        rcpts[k].addr = (char *)r->path.mailbox;
        /* The bare <postmaster> is delivered to postmaster of the first
         * local domain. */
        if (r->path.domain[0] == '\0') {
            snprintf(postmaster, sizeof postmaster, "postmaster@%s", d->cfg->local_domain.v[0]);
            rcpts[k].addr = postmaster;
        }
        rcpts[k].orcpt = r->params.orcpt[0] ? (char *)r->params.orcpt : NULL;
        rcpts[k].notify = r->params.notify;
    }
    dm->d = d;
    dm->s = s;
    snprintf(dm->from, sizeof dm->from, "%s", env->from.mailbox);
    if (nspool == 0) {
        /* Only reports for us: read in memory at the end of DATA. */
        sk_free(rcpts);
        msg_link(&d->receiving, dm);
        *msg = dm;
        return SK_REPLY_OK;
    }
    se.sender = (char *)env->from.mailbox;
    se.rcpts = rcpts;
    se.nrcpts = nspool;
    se.mail = env->params;
    se.helo = (char *)env->helo;
    char peer[64];
    /* RFC 5321 4.1.3: IPv6 address literals carry the "IPv6:" tag. */
    snprintf(peer, sizeof peer, "%s%s", strchr(env->peer_addr, ':') ? "IPv6:" : "", env->peer_addr);
    se.peer = peer;
    se.esmtp = strcmp(env->protocol, "SMTP") != 0;
    if (env->tls) {
        snprintf(tls, sizeof tls, "%s %s", env->tls_version, env->tls_cipher);
        se.tls = tls;
    }
    se.auth_user = env->auth_user[0] ? (char *)env->auth_user : NULL;
    se.state = d->cfg->hold ? SK_SPOOL_HOLD : SK_SPOOL_ACTIVE;

    sk_error err;
    sk_spool_msg *m = sk_spool_begin(d->spool, &se, &err);
    sk_free(rcpts);
    if (!m) {
        msg_free(dm);
        sk_log(&d->log, SK_LOG_ERR, "%s daemon spool-error step=begin error=\"%s\"",
               sk_session_id(s), err.text);
        return sk_reply_make(452, "4.3.1", "insufficient system storage");
    }
    dm->m = m;
    dm->nrcpts = nspool;
    snprintf(dm->id, sizeof dm->id, "%s", sk_spool_msg_id(m));
    if (from_outside(d, s)) {
        /* The session's checks began at MAIL (on_mail), unless the client
         * was not from outside then (a SIGHUP changed --relay-net). */
        sk_inbound_sess *st = sk_session_user(s);
        if (!st && (st = sk_inbound_sess_new(d->inbound, sk_session_id(s), env->peer_addr))) {
            sk_session_set_user(s, st);
            sk_inbound_mail(st, env->helo, env->from.mailbox);
        }
        dm->check = st ? sk_inbound_msg_new(st) : NULL;
        if (!dm->check) {
            sk_spool_abort(dm->m);
            msg_free(dm);
            return sk_reply_make(452, "4.3.1", "insufficient system resources");
        }
        dm->auth = MSG_AUTH_CHECK;
        if (d->arc_key && !(dm->sealer = arc_sealer_new(d))) {
            sk_spool_abort(dm->m);
            msg_free(dm);
            return sk_reply_make(452, "4.3.1", "insufficient system resources");
        }
        /* RFC 8601 5: results claiming to be ours are removed on the way in. */
        sk_hdrscan_init(&dm->scan, d->hostname);
    } else if (sk_dkim_keyring_count(d->keys) && ours_to_sign(d, s)) {
        dm->auth = MSG_AUTH_SIGN;
        sk_hdrscan_init(&dm->scan, NULL);
        sk_buf_init(&dm->hdr, SK_DKIM_HEADER_BLOCK_MAX_OCTETS);
    }
    if (dm->auth != MSG_AUTH_NONE) {
        dm->scanning = true;
        sk_buf_init(&dm->scan_out, SK_DAEMON_SCAN_OUT_MAX_OCTETS);
    }
    msg_link(&d->receiving, dm);
    *msg = dm;
    return SK_REPLY_OK;
}

static sk_err on_data_chunk(sk_session *s, void *msg, const char *bytes, size_t len, void *ctx)
{
    daemon_msg *dm = msg;
    if (!dm->m && !dm->nverp) return SK_ERR_STATE; /* the daemon is shutting down */
    dm->octets += len;
    /* A report larger than we accept as a message is not one we read. */
    if (dm->nverp && sk_buf_append(&dm->report, bytes, len)) dm->report_truncated = true;
    if (!dm->m) return SK_OK;
    /* DKIM verification sees the message as it came (ours removed or not). */
    if (dm->check) sk_inbound_msg_feed(dm->check, bytes, len);
    /* Too long: sk_arc_sealer_finish says so again, and it goes unsealed. */
    if (dm->sealer && sk_arc_sealer_feed(dm->sealer, bytes, len) != SK_OK) {
        sk_arc_sealer_free(dm->sealer);
        dm->sealer = NULL;
        sk_log(&dm->d->log, SK_LOG_INFO, "%s daemon arc-unsealed why=\"header block too long\"",
               dm->id);
    }
    if (dm->scanning) {
        size_t used = 0;
        if (sk_hdrscan_feed(&dm->scan, bytes, len, &dm->scan_out, &used)) return SK_ERR_NOMEM;
        scan_flush(dm);
        if (sk_hdrscan_in_body(&dm->scan)) scan_done(dm->d, dm);
        bytes += used;
        len -= used;
        if (!len) return SK_OK;
    }
    /* A write error (disk full) is remembered by the spool and reported by
     * the commit, which answers 452 4.3.1; failing here would make the
     * server answer 451 instead. */
    (void)sk_spool_write(dm->m, bytes, len);
    /* The body is hashed as it passes: signing needs no second pass. */
    if (dm->signer && sk_dkim_signer_feed(dm->signer, bytes, len)) {
        sk_dkim_signer_free(dm->signer);
        dm->signer = NULL;
        dm->unsigned_why = "out of memory";
    }
    return SK_OK;
}

/* The message, sent to VERP addresses: a report about mail we relayed.
 * Unmatched ones are logged and dropped (docs/serve.md). */
static void read_reports(sk_daemon *d, daemon_msg *dm)
{
    sk_verp_ctx x = {
        .track = d->track, .rules = d->rules, .suppress_for_s = d->suppress_for_s, .log = &d->log};
    for (size_t i = 0; i < dm->nverp; i++) {
        const char *outcome =
            !dm->report_truncated
                ? sk_daemon_verp_report(&x, dm->verp[i], dm->report.data ? dm->report.data : "",
                                        dm->report.len)
                : "too-large";
        sk_buf b = SK_BUF_INIT(1024);
        log_escaped(&b, "to", dm->verp[i]);
        log_escaped(&b, "from", dm->from);
        sk_log(&d->log, SK_LOG_INFO, "%s daemon report session=%s%s outcome=%s",
               dm->m || dm->id[0] ? dm->id : "-", sk_session_id(dm->s), sk_buf_cstr(&b), outcome);
        sk_buf_free(&b);
    }
    /* A report may have suppressed its recipient. */
    sk_suppress_mirror_poke(d->suppress);
}

static void on_committed(void *ctx, sk_err e, const char *queue_id)
{
    daemon_msg *dm = ctx;
    sk_daemon *d = dm->d;
    sk_reply r;
    if (e == SK_OK) {
        sk_buf b = SK_BUF_INIT(1024);
        log_escaped(&b, "from", dm->from);
        sk_log(&d->log, SK_LOG_INFO, "%s daemon queued session=%s%s nrcpt=%zu size=%llu%s",
               queue_id, sk_session_id(dm->s), sk_buf_cstr(&b), dm->nrcpts,
               (unsigned long long)dm->octets, d->cfg->hold ? " state=hold" : "");
        sk_buf_free(&b);
        r = sk_reply_make(250, "2.0.0", "Ok: queued as %s", queue_id);
        if (d->track) {
            /* The Message-ID lets `smtpkit track` find the message by it. */
            char mid[SK_TRACK_FIELD_MAX_OCTETS + 1] = "";
            sk_buf h = SK_BUF_INIT(SK_DAEMON_HEADERS_MAX_OCTETS);
            sk_error herr;
            if (sk_spool_read_headers(d->spool, queue_id, &h, &herr) == SK_OK)
                sk_daemon_message_id(h.data ? h.data : "", h.len, mid, sizeof mid);
            sk_buf_free(&h);
            sk_track_ev ev = {.kind = SK_TRACK_RECEIVED,
                              .queue_id = queue_id,
                              .message_id = mid[0] ? mid : NULL,
                              .auth = dm->auth_summary};
            track(d, &ev);
        }
    } else {
        sk_log(&d->log, SK_LOG_ERR, "%s daemon spool-error step=commit session=%s error=\"%s\"",
               dm->id, sk_session_id(dm->s), sk_strerror(e));
        r = sk_reply_make(452, "4.3.1", "insufficient system storage");
    }
    read_reports(d, dm);
    if (sk_session_reply(dm->s, &r) != SK_OK)
        sk_log(&d->log, SK_LOG_WARN, "%s daemon reply-failed session=%s", dm->id,
               sk_session_id(dm->s));
    msg_free(dm);
}

/* A message to sign: its DKIM-Signature fields, in the order of the keys,
 * are in (made on a signing thread). They go on top of it, then it is
 * stored. (ARC sets go on mail from outside once checked: arc_seal.) */
static void on_signed(void *ctx, sk_err e, sk_buf *fields, const sk_error *err)
{
    daemon_msg *dm = ctx;
    sk_daemon *d = dm->d;
    msg_unlink(&d->finishing, dm);
    if (e == SK_OK) {
        e = sk_spool_msg_prepend(dm->m, fields->data, fields->len);
    } else if (e != SK_ERR_NOMEM) {
        /* Not signable (RFC 6376 5.4: no From to sign): stored as it is. */
        log_unsigned(d, dm, err->text);
        e = SK_OK;
    }
    if (e) {
        sk_reply r = sk_reply_make(452, "4.3.1", "insufficient system resources");
        msg_refuse(dm, &r);
        return;
    }
    sk_spool_commit(dm->m, on_committed, dm);
}

/* A message that will not be stored: the session gets r. */
static void msg_refuse(daemon_msg *dm, const sk_reply *r)
{
    sk_spool_abort(dm->m);
    dm->m = NULL;
    if (sk_session_reply(dm->s, r) != SK_OK)
        sk_log(&dm->d->log, SK_LOG_WARN, "%s daemon reply-failed session=%s", dm->id,
               sk_session_id(dm->s));
    msg_free(dm);
}

/* --arc-seal (RFC 8617 5.1): the new set on top of the message, with our
 * results as its AAR and the chain's status as cv. A message the module
 * will not seal (a chain ending in cv=fail, no From...) is stored as it is
 * and the log says why; only memory running out stops it. */
static sk_err arc_seal(sk_daemon *d, daemon_msg *dm, const sk_auth_results *res,
                       const sk_auth_verdict *v)
{
    sk_arc_status cv = res->arc_error ? SK_ARC_FAIL : res->arc ? res->arc->status : SK_ARC_NONE;
    sk_buf text = SK_BUF_INIT(SK_AUTHRES_HEADER_MAX_OCTETS);
    sk_buf set = SK_BUF_INIT(SK_DAEMON_ADDED_MAX_OCTETS);
    sk_error err = {0};
    sk_err e = sk_auth_resinfo(res, v, &text);
    if (!e) e = sk_arc_sealer_set_results(dm->sealer, sk_buf_cstr(&text), cv, &err);
    if (!e) e = sk_arc_sealer_finish(dm->sealer, &set, &err);
    if (!e) {
        e = sk_spool_msg_prepend(dm->m, set.data, set.len);
        sk_log(&d->log, SK_LOG_INFO, "%s daemon arc-sealed instance=%u cv=%s", dm->id,
               sk_arc_sealer_instance(dm->sealer), sk_arc_status_name(cv));
    } else if (e != SK_ERR_NOMEM) {
        sk_buf b = SK_BUF_INIT(SK_TRACK_FIELD_MAX_OCTETS + 64);
        log_escaped(&b, "why", err.text[0] ? err.text : sk_strerror(e));
        sk_log(&d->log, SK_LOG_INFO, "%s daemon arc-unsealed%s", dm->id, sk_buf_cstr(&b));
        sk_buf_free(&b);
        e = SK_OK;
    }
    sk_buf_free(&text);
    sk_buf_free(&set);
    return e;
}

/* The checks of a message from outside are in: refuse it, or record them
 * on top of it and store it. */
static void on_checked(void *ctx, const sk_auth_results *res)
{
    daemon_msg *dm = ctx;
    sk_daemon *d = dm->d;
    msg_unlink(&d->finishing, dm);
    const char *pol = d->cfg->dmarc_policy;
    sk_auth_policy policy = {.enforce = pol && !strcmp(pol, "enforce"),
                             .spf_reject_fail = d->cfg->spf_reject_fail};
    sk_auth_verdict v = sk_auth_decide(&policy, res);
    sk_buf fields = SK_BUF_INIT(SK_DAEMON_ADDED_MAX_OCTETS);
    sk_buf summary = SK_BUF_INIT(SK_TRACK_FIELD_MAX_OCTETS);
    sk_error err;
    sk_err e = sk_auth_record(d->hostname, res, &v, &fields, &summary, &err);
    bool recorded = !e;
    if (!e && v.action != SK_AUTH_REFUSE && v.action != SK_AUTH_DEFER) {
        e = sk_spool_msg_prepend(dm->m, fields.data, fields.len);
        if (!e && dm->sealer) e = arc_seal(d, dm, res, &v);
    }
    /* res is the checks': they go once used, and before the session can
     * (sk_session_reply may end it). */
    sk_inbound_msg_free(dm->check);
    dm->check = NULL;
    res = NULL;
    sk_buf b = SK_BUF_INIT(SK_TRACK_FIELD_MAX_OCTETS + 64);
    log_escaped(&b, "results", recorded ? sk_buf_cstr(&summary) : "");
    sk_log(&d->log, SK_LOG_INFO, "%s daemon auth session=%s action=%s%s", dm->id,
           sk_session_id(dm->s), sk_auth_action_name(v.action), sk_buf_cstr(&b));
    sk_buf_free(&b);
    if (!e && !(dm->auth_summary = sk_buf_detach(&summary, NULL))) e = SK_ERR_NOMEM;
    sk_buf_free(&fields);
    sk_buf_free(&summary);
    if (e) {
        sk_log(&d->log, SK_LOG_ERR, "%s daemon auth-record-failed session=%s error=\"%s\"", dm->id,
               sk_session_id(dm->s), e == SK_ERR_NOMEM ? "out of memory" : err.text);
        v.action = SK_AUTH_DEFER;
        v.reply = sk_reply_make(451, "4.3.0", "local error in processing");
    }
    if (v.action == SK_AUTH_REFUSE || v.action == SK_AUTH_DEFER) {
        msg_refuse(dm, &v.reply);
        return;
    }
    sk_spool_commit(dm->m, on_committed, dm);
}

static sk_reply on_data_end(sk_session *s, void *msg, int ok, void *ctx)
{
    daemon_msg *dm = msg;
    if (!dm) return sk_reply_make(451, "4.3.0", "message not stored");
    sk_daemon *d = dm->d;
    msg_unlink(&d->receiving, dm);
    if (ok && !dm->m && dm->nverp) {
        /* Only reports: nothing to store. */
        read_reports(d, dm);
        msg_free(dm);
        return sk_reply_make(250, "2.0.0", "Ok: report received");
    }
    if (!ok || !dm->m) {
        if (dm->m) sk_spool_abort(dm->m);
        msg_free(dm);
        return sk_reply_make(451, "4.3.0", "message not stored");
    }
    if (dm->scanning) {
        /* No body, or none after the header block. */
        if (sk_hdrscan_end(&dm->scan, &dm->scan_out)) {
            sk_spool_abort(dm->m);
            msg_free(dm);
            return sk_reply_make(451, "4.3.0", "insufficient system resources");
        }
        scan_flush(dm);
        scan_done(d, dm);
    }
    if (dm->auth == MSG_AUTH_CHECK) {
        /* on_checked answers once the checks are in. */
        msg_link(&d->finishing, dm);
        sk_inbound_msg_finish(dm->check, &dm->scan.from, dm->scan.from_overflow, on_checked, dm);
        return SK_REPLY_ASYNC;
    }
    if (dm->signer) {
        /* on_signed stores it once the signatures are made. */
        if (sk_sign_pool_submit(d->signpool, dm->signer, on_signed, dm)) {
            sk_spool_abort(dm->m);
            msg_free(dm);
            return sk_reply_make(452, "4.3.1", "insufficient system resources");
        }
        msg_link(&d->finishing, dm);
        return SK_REPLY_ASYNC;
    }
    if (dm->unsigned_why) log_unsigned(d, dm, dm->unsigned_why);
    /* RFC 5321 4.1.1.4 / DESIGN.md: 250 only once the message is on disk
     * (the fields added above with it); the spool's commit callback
     * answers. */
    sk_spool_commit(dm->m, on_committed, dm);
    return SK_REPLY_ASYNC;
}

/* What the queue reports, into the tracking store (docs/tracking.md). */
static void on_queue_event(void *ctx, const sk_queue_event *qe)
{
    sk_daemon *d = ctx;
    if (!d->track) return;
    sk_track_ev ev = {.queue_id = qe->env->id,
                      .recipient = qe->recipient,
                      .attempt = qe->attempt,
                      .remote_host = qe->remote_host,
                      .reply = qe->reply};
    switch (qe->type) {
    case SK_QUEUE_EV_QUEUED:
        /* One queued event per recipient still to be delivered. */
        ev.kind = SK_TRACK_QUEUED;
        ev.attempt = 0;
        for (size_t i = 0; i < qe->env->nrcpts; i++) {
            if (qe->env->rcpts[i].state != SK_RCPT_PENDING) continue;
            ev.recipient = qe->env->rcpts[i].addr;
            track(d, &ev);
        }
        return;
    case SK_QUEUE_EV_DELIVERED:
        ev.kind = SK_TRACK_DELIVERED;
        ev.tls = qe->tls;
        /* docs/tracking.md: a local delivery names its Maildir file. */
        if (qe->mailbox_file) ev.remote_host = qe->mailbox_file;
        break;
    case SK_QUEUE_EV_DEFERRED:
        ev.kind = SK_TRACK_DEFERRED;
        ev.cls = sk_class_name(qe->cls);
        break;
    case SK_QUEUE_EV_BOUNCED:
        ev.kind = SK_TRACK_BOUNCED;
        ev.cls = sk_class_name(qe->cls);
        break;
    case SK_QUEUE_EV_EXPIRED:
        ev.kind = SK_TRACK_EXPIRED;
        ev.cls = sk_class_name(qe->cls);
        break;
    case SK_QUEUE_EV_DSN:
        /* The DSN is on disk: each outcome it reports names it. */
        for (size_t i = 0; i < qe->ndsn_rcpts; i++) {
            sk_error err;
            if (sk_track_dsn_sent(d->track, qe->env->id, qe->dsn_rcpts[i], qe->dsn_id, &err))
                sk_log(&d->log, SK_LOG_WARN, "%s daemon track-failed dsn=%s error=\"%s\"",
                       qe->env->id, qe->dsn_id, err.text);
        }
        return;
    default:
        return;
    }
    track(d, &ev);
    if (ev.kind == SK_TRACK_BOUNCED) {
        /* A hard bounce (bad mailbox, domain not found) suppresses. */
        sk_error err;
        int added = 0;
        if (sk_suppress_after_bounce(d->track, &ev, d->suppress_for_s, &added, &err))
            sk_log(&d->log, SK_LOG_ERR, "%s daemon suppress-failed error=\"%s\"", ev.queue_id,
                   err.text);
        else if (added) {
            sk_suppress_mirror_poke(d->suppress);
            sk_buf b = SK_BUF_INIT(1024);
            log_escaped(&b, "rcpt", ev.recipient ? ev.recipient : "");
            sk_log(&d->log, SK_LOG_INFO, "%s daemon suppressed%s class=%s", ev.queue_id,
                   sk_buf_cstr(&b), ev.cls);
            sk_buf_free(&b);
        }
    }
}

/* --- configuration ------------------------------------------------------- */

static void server_opts_from(const sk_daemon *d, const sk_daemon_config *c, sk_server_opts *o)
{
    memset(o, 0, sizeof *o);
    o->hostname = c->hostname;
    o->tls_cert_file = c->tls_cert;
    o->tls_key_file = c->tls_key;
    o->max_message_size = c->max_message_size;
    o->max_recipients = c->max_recipients;
    o->max_connections = c->max_connections;
    o->max_connections_per_ip = c->max_connections_per_ip;
    o->greeting_timeout_ms = (unsigned)c->greeting_timeout_ms;
    o->command_timeout_ms = (unsigned)c->command_timeout_ms;
    o->data_timeout_ms = (unsigned)c->data_timeout_ms;
    /* AUTH without TLS on loopback only when asked (`make run` asks):
     * behind a local proxy or port forwarder every remote client arrives
     * from loopback, and would be offered clear-text passwords. */
    o->auth_plaintext_loopback = c->auth_plaintext_loopback;
    o->logger = d->log;
}

/* Load the tables a configuration names (users, local recipients). */
static sk_err load_tables(const sk_daemon_config *c, sk_users *users, sk_recipients *rcpts,
                          bool *have_rcpts, sk_error *err)
{
    *users = (sk_users){0};
    *rcpts = (sk_recipients){0};
    *have_rcpts = false;
    /* The users file is read by the AUTH helper only (authd.c). */
    if (c->local_recipients) {
        sk_err e = sk_recipients_load(c->local_recipients, rcpts, err);
        if (e) {
            sk_users_free(users);
            return e;
        }
        *have_rcpts = true;
    }
    return SK_OK;
}

static sk_err parse_retry(const char *list, uint64_t **out, size_t *n)
{
    *out = NULL;
    *n = 0;
    if (!list) return SK_OK;
    size_t count = 1;
    for (const char *p = list; *p; p++) count += *p == ',';
    uint64_t *v = sk_calloc(count, sizeof *v);
    char *copy = sk_strdup(list);
    if (!v || !copy) {
        sk_free(v);
        sk_free(copy);
        return SK_ERR_NOMEM;
    }
    size_t i = 0;
    char *save = NULL;
    for (char *t = strtok_r(copy, ",", &save); t && i < count; t = strtok_r(NULL, ",", &save))
        if (sk_parse_duration_ms(t, &v[i]) == SK_OK) i++;
    sk_free(copy);
    *out = v;
    *n = i;
    return SK_OK;
}

static bool same(const char *a, const char *b)
{
    return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

static bool same_list(const sk_strlist *a, const sk_strlist *b)
{
    if (a->n != b->n) return false;
    for (size_t i = 0; i < a->n; i++)
        if (strcmp(a->v[i], b->v[i])) return false;
    return true;
}

/* The options the queue and transports took at start. */
static bool delivery_changed(const sk_daemon_config *a, const sk_daemon_config *b)
{
    return !same(a->dns_server, b->dns_server) || a->mx_port != b->mx_port ||
           !same_list(&a->rate_limit, &b->rate_limit) || !same_list(&a->priority, &b->priority) ||
           a->destination_connections != b->destination_connections ||
           a->messages_per_connection != b->messages_per_connection ||
           !same(a->group_destinations, b->group_destinations) ||
           !same_list(&a->tls_required, &b->tls_required) || !same(a->rules, b->rules) ||
           a->throttle_suspend_ms != b->throttle_suspend_ms || a->verp != b->verp ||
           a->suppress_for_ms != b->suppress_for_ms || !same(a->hostname, b->hostname);
}

/* SIGHUP: build the configuration again and apply what can change while
 * running: certificates and server settings (for new sessions), users,
 * local recipients, relay networks. What needs a restart is logged. */
static void reload(sk_daemon *d)
{
    sk_error err;
    sk_daemon_config *c = NULL;
    sk_log(&d->log, SK_LOG_INFO, "- daemon reload-start");
    if (sk_daemon_config_build(d->config_path, d->flags, d->n_flags, &c, &err)) {
        sk_log(&d->log, SK_LOG_ERR, "- daemon reload-failed error=\"%s\"", err.text);
        return;
    }
    sk_users users;
    sk_recipients rcpts;
    bool have_rcpts;
    if (load_tables(c, &users, &rcpts, &have_rcpts, &err)) {
        sk_log(&d->log, SK_LOG_ERR, "- daemon reload-failed error=\"%s\"", err.text);
        sk_daemon_config_free(c);
        return;
    }
    /* The DKIM keys are read again (a replaced key file takes effect);
     * messages being signed keep the keys they started with. */
    sk_dkim_keyring *keys = NULL;
    sk_server_opts o;
    server_opts_from(d, c, &o);
    if (sk_dkim_keyring_load(&c->dkim, &keys, &err) || sk_server_reload(d->srv, &o, &err)) {
        sk_log(&d->log, SK_LOG_ERR, "- daemon reload-failed error=\"%s\"", err.text);
        sk_dkim_keyring_free(keys);
        sk_users_free(&users);
        sk_recipients_free(&rcpts);
        sk_daemon_config_free(c);
        return;
    }
    sk_dkim_keyring_free(d->keys);
    d->keys = keys;
    static const char *const restart_only[] = {"listen/submission/smtps",
                                               "data-dir/spool-sync",
                                               "user",
                                               "log/log-level/log-format",
                                               "local-domain",
                                               "relay-host",
                                               "retry-schedule",
                                               "max-queue-lifetime",
                                               "delay-warning",
                                               "users",
                                               "delivery",
                                               "arc-seal"};
    const sk_daemon_config *old = d->cfg;
    bool changed[] = {!same_list(&old->listen, &c->listen) ||
                          !same_list(&old->submission, &c->submission) ||
                          !same_list(&old->smtps, &c->smtps),
                      !same(old->data_dir, c->data_dir) || !same(old->spool_sync, c->spool_sync),
                      !same(old->user, c->user),
                      !same(old->log, c->log) || !same(old->log_level, c->log_level) ||
                          !same(old->log_format, c->log_format),
                      !same_list(&old->local_domain, &c->local_domain),
                      !same(old->relay_host, c->relay_host),
                      !same(old->retry_schedule, c->retry_schedule),
                      old->max_queue_lifetime_ms != c->max_queue_lifetime_ms,
                      old->delay_warning_ms != c->delay_warning_ms,
                      !same(old->users, c->users),
                      delivery_changed(old, c),
                      !same(old->arc_seal, c->arc_seal)};
    for (size_t i = 0; i < sizeof changed / sizeof changed[0]; i++)
        if (changed[i])
            sk_log(&d->log, SK_LOG_WARN, "- daemon reload-needs-restart option=%s",
                   restart_only[i]);
    /* Keep the values that did not change in place (the queue and the
     * listeners hold pointers into them): swap them into the new config. */
    sk_daemon_config *keep = c;
#define KEEP_STR(f)                                                                                \
    do {                                                                                           \
        char *t = keep->f;                                                                         \
        keep->f = d->cfg->f;                                                                       \
        d->cfg->f = t;                                                                             \
    } while (0)
#define KEEP_LIST(f)                                                                               \
    do {                                                                                           \
        sk_strlist t = keep->f;                                                                    \
        keep->f = d->cfg->f;                                                                       \
        d->cfg->f = t;                                                                             \
    } while (0)
    KEEP_LIST(listen);
    KEEP_LIST(submission);
    KEEP_LIST(smtps);
    KEEP_STR(data_dir);
    KEEP_STR(spool_sync);
    KEEP_STR(user);
    KEEP_STR(log);
    KEEP_STR(log_level);
    KEEP_STR(log_format);
    KEEP_LIST(local_domain);
    KEEP_STR(relay_host);
    KEEP_STR(retry_schedule);
    KEEP_STR(users);
    keep->max_queue_lifetime_ms = d->cfg->max_queue_lifetime_ms;
    keep->delay_warning_ms = d->cfg->delay_warning_ms;
#undef KEEP_STR
#undef KEEP_LIST
    sk_daemon_config_free(d->cfg);
    d->cfg = c;
    sk_users_free(&d->users);
    sk_recipients_free(&d->recipients);
    d->users = users;
    d->recipients = rcpts;
    d->have_recipients = have_rcpts;
    /* The helper reads the users file again and logs how that went. */
    sk_authd_reload(d->authd);
    sk_log(&d->log, SK_LOG_INFO, "- daemon reload-done hold=%s dkim_keys=%zu dmarc_policy=%s",
           c->hold ? "yes" : "no", sk_dkim_keyring_count(d->keys),
           c->dmarc_policy ? c->dmarc_policy : "report");
}

/* --- signals and stopping ------------------------------------------------ */

static void drain_check(evutil_socket_t fd, short what, void *arg)
{
    sk_daemon *d = arg;
    size_t open = sk_server_sessions(d->srv);
    uint64_t waited = sk_now_ms() - d->stop_started_ms;
    if (open == 0 || waited >= SK_DAEMON_DRAIN_MAX_MS) {
        if (open)
            sk_log(&d->log, SK_LOG_WARN, "- daemon stop-timeout sessions=%zu waited_ms=%llu", open,
                   (unsigned long long)waited);
        event_base_loopbreak(d->base);
        return;
    }
    struct timeval tv = {0, SK_DAEMON_DRAIN_POLL_MS * 1000};
    evtimer_add(d->drain_timer, &tv);
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
    sk_daemon *d = arg;
    if (sig == SIGHUP) {
        reload(d);
        return;
    }
    if (d->stopping) {
        /* A second request: stop now. */
        sk_log(&d->log, SK_LOG_WARN, "- daemon stop-now signal=%d sessions=%zu", (int)sig,
               sk_server_sessions(d->srv));
        event_base_loopbreak(d->base);
        return;
    }
    d->stopping = true;
    d->stop_started_ms = sk_now_ms();
    sk_log(&d->log, SK_LOG_INFO, "- daemon stopping signal=%d sessions=%zu", (int)sig,
           sk_server_sessions(d->srv));
    sk_server_stop(d->srv);
    drain_check(-1, 0, d);
}

/* --- life cycle ---------------------------------------------------------- */

static sk_err make_dir(const char *path, sk_error *err)
{
    if (mkdir(path, 0750) == 0 || errno == EEXIST) return SK_OK;
    return sk_error_set(err, SK_ERR_CONFIG, SK_STEP_NONE, "cannot create %s: %s", path,
                        strerror(errno));
}

/* Can files be made in dir? An unnamed file (O_TMPFILE) leaves nothing
 * behind; where the file system has no such files, a named one is made
 * and removed. Returns 0 or an errno value. */
static int probe_writable(const char *dir)
{
    int fd = open(dir, O_TMPFILE | O_WRONLY | O_CLOEXEC, 0600);
    if (fd >= 0) {
        close(fd);
        return 0;
    }
    if (errno != EOPNOTSUPP && errno != EISDIR && errno != EINVAL) return errno;
    char name[PATH_MAX];
    if ((size_t)snprintf(name, sizeof name, "%s/.smtpkit-write-test.%ld", dir, (long)getpid()) >=
        sizeof name)
        return ENAMETOOLONG;
    fd = open(name, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0600);
    if (fd < 0) return errno;
    close(fd);
    unlink(name);
    return 0;
}

/* The directories the daemon writes in, below the data directory; those
 * that do not exist yet are made later, in one that was found writable. */
static const char *const data_subdirs[] = {"", "/spool", "/spool/msg", "/mailboxes"};

static sk_err check_writable(const char *data_dir, const char *as_user, sk_error *err)
{
    for (size_t i = 0; i < sizeof data_subdirs / sizeof data_subdirs[0]; i++) {
        char path[PATH_MAX];
        if ((size_t)snprintf(path, sizeof path, "%s%s", data_dir, data_subdirs[i]) >= sizeof path)
            return sk_error_set(err, SK_ERR_CONFIG, SK_STEP_NONE, "data-dir %s: path too long",
                                data_dir);
        struct stat st;
        if (stat(path, &st) != 0) {
            if (errno == ENOENT && i > 0) continue;
            return sk_error_set(err, SK_ERR_CONFIG, SK_STEP_NONE, "data-dir %s: %s: %s", data_dir,
                                path, strerror(errno));
        }
        if (!S_ISDIR(st.st_mode))
            return sk_error_set(err, SK_ERR_CONFIG, SK_STEP_NONE,
                                "data-dir %s: %s is not a directory", data_dir,
                                i ? data_subdirs[i] + 1 : "it");
        int why = probe_writable(path);
        if (why)
            return sk_error_set(err, SK_ERR_CONFIG, SK_STEP_NONE,
                                "data-dir %s: cannot write in %s%s%s: %s", data_dir,
                                i ? data_subdirs[i] + 1 : "it", as_user ? " as user " : "",
                                as_user ? as_user : "", strerror(why));
    }
    return SK_OK;
}

/* Run check_writable with the effective user and groups of pw, then be
 * root again (nothing runs in other threads yet). */
static sk_err check_writable_as(const char *data_dir, const struct passwd *pw, sk_error *err)
{
    int nsaved = getgroups(0, NULL);
    gid_t *saved = nsaved >= 0 ? sk_calloc((size_t)nsaved + 1, sizeof *saved) : NULL;
    if (!saved) return sk_error_set(err, SK_ERR_NOMEM, SK_STEP_NONE, "out of memory");
    nsaved = getgroups(nsaved, saved);
    gid_t egid = getegid();
    if (nsaved < 0 || initgroups(pw->pw_name, pw->pw_gid) != 0 || setegid(pw->pw_gid) != 0 ||
        seteuid(pw->pw_uid) != 0) {
        sk_free(saved);
        return sk_error_set(err, SK_ERR_CONFIG, SK_STEP_NONE,
                            "user: cannot take the identity of %s to check %s: %s", pw->pw_name,
                            data_dir, strerror(errno));
    }
    sk_err e = check_writable(data_dir, pw->pw_name, err);
    int back = seteuid(0) == 0 && setegid(egid) == 0 && setgroups((size_t)nsaved, saved) == 0;
    sk_free(saved);
    if (!back)
        return sk_error_set(err, SK_ERR_CONFIG, SK_STEP_NONE,
                            "cannot become root again after checking %s: %s", data_dir,
                            strerror(errno));
    return e;
}

/* The data directory, before any port opens: created when missing (given
 * to --user when we start as root and switch to it), a directory, and
 * writable by the user the daemon will run as, with the spool and mailbox
 * directories already in it. What is wrong with it is configuration
 * (exit 78), said with the directory and the reason (docs/serve.md). */
static sk_err check_data_dir(sk_daemon *d, sk_error *err)
{
    const char *dir = d->cfg->data_dir;
    if (mkdir(dir, 0750) != 0 && errno != EEXIST)
        return sk_error_set(err, SK_ERR_CONFIG, SK_STEP_NONE, "data-dir %s: cannot create it: %s%s",
                            dir, strerror(errno),
                            errno == ENOENT ? " (its parent directory does not exist)" : "");
    struct stat st;
    if (stat(dir, &st) != 0)
        return sk_error_set(err, SK_ERR_CONFIG, SK_STEP_NONE, "data-dir %s: %s", dir,
                            strerror(errno));
    if (!S_ISDIR(st.st_mode))
        return sk_error_set(err, SK_ERR_CONFIG, SK_STEP_NONE, "data-dir %s: not a directory", dir);
    const char *name = d->cfg->user;
    if (!name || geteuid() != 0) return check_writable(dir, NULL, err);
    struct passwd *pw = getpwnam(name);
    if (!pw) return sk_error_set(err, SK_ERR_CONFIG, SK_STEP_NONE, "user: no user %s", name);
    /* The data directory belongs to the user we run as. */
    if (chown(dir, pw->pw_uid, pw->pw_gid) != 0)
        return sk_error_set(err, SK_ERR_CONFIG, SK_STEP_NONE, "data-dir %s: cannot chown it: %s",
                            dir, strerror(errno));
    return check_writable_as(dir, pw, err);
}

/* Drop root for the named user once the listeners are bound (the data
 * directory was given to it by check_data_dir). */
static sk_err drop_privileges(sk_daemon *d, sk_error *err)
{
    const char *name = d->cfg->user;
    if (!name) return SK_OK;
    struct passwd *pw = getpwnam(name);
    if (!pw) return sk_error_set(err, SK_ERR_CONFIG, SK_STEP_NONE, "user: no user %s", name);
    if (geteuid() != 0) {
        if (geteuid() == pw->pw_uid) return SK_OK;
        return sk_error_set(err, SK_ERR_CONFIG, SK_STEP_NONE,
                            "user: switching to %s needs to be started as root", name);
    }
    if (initgroups(pw->pw_name, pw->pw_gid) != 0 || setgid(pw->pw_gid) != 0 ||
        setuid(pw->pw_uid) != 0)
        return sk_error_set(err, SK_ERR_CONFIG, SK_STEP_NONE, "cannot switch to user %s: %s", name,
                            strerror(errno));
    /* Make sure there is no way back. */
    if (setuid(0) == 0)
        return sk_error_set(err, SK_ERR_CONFIG, SK_STEP_NONE, "privileges could not be dropped");
    sk_log(&d->log, SK_LOG_INFO, "- daemon privileges-dropped user=%s uid=%u", name,
           (unsigned)pw->pw_uid);
    return SK_OK;
}

static sk_err listen_all(sk_daemon *d, sk_error *err)
{
    const struct {
        const sk_strlist *list;
        sk_listen_kind kind;
        const char *name;
    } kinds[] = {{&d->cfg->listen, SK_LISTEN_SMTP, "smtp"},
                 {&d->cfg->submission, SK_LISTEN_SUBMISSION, "submission"},
                 {&d->cfg->smtps, SK_LISTEN_SMTPS, "smtps"}};
    size_t index = 0;
    for (size_t k = 0; k < 3; k++)
        for (size_t i = 0; i < kinds[k].list->n; i++, index++) {
            sk_err e = sk_server_listen(d->srv, kinds[k].list->v[i], kinds[k].kind, err);
            if (e) return e;
            sk_log(&d->log, SK_LOG_INFO, "- daemon listening kind=%s addr=%s port=%d",
                   kinds[k].name, kinds[k].list->v[i], sk_server_port(d->srv, index));
        }
    return SK_OK;
}

/* The tracking store: a daemon that cannot open it still delivers, and
 * says so (tracking data is not the mail). */
static void open_track(sk_daemon *d)
{
    sk_buf path = SK_BUF_INIT(4096);
    sk_error err;
    if (sk_buf_printf(&path, "%s/%s", d->cfg->data_dir, SK_TRACK_DB_NAME)) {
        sk_buf_free(&path);
        return;
    }
    d->track = sk_track_open(sk_buf_cstr(&path), 0, &err);
    sk_track_opts to = {.log = d->log};
    if (d->track && sk_track_set_opts(d->track, &to, d->base, &err)) {
        sk_track_free(d->track);
        d->track = NULL;
    }
    if (!d->track)
        sk_log(&d->log, SK_LOG_ERR,
               "- daemon track-unavailable path=%s error=\"%s\" (no tracking, no suppression)",
               sk_buf_cstr(&path), err.text);
    sk_suppress_mirror_opts mo = {.log = d->log};
    if (d->track && !(d->suppress = sk_suppress_mirror_new(sk_buf_cstr(&path), &mo, d->base, &err)))
        sk_log(&d->log, SK_LOG_ERR,
               "- daemon suppress-unavailable path=%s error=\"%s\" (no suppression at RCPT)",
               sk_buf_cstr(&path), err.text);
    sk_buf_free(&path);
}

static sk_err open_spool(sk_daemon *d, sk_error *err)
{
    const char *sync = d->cfg->spool_sync;
    sk_spool_opts so = {.mode = SK_SPOOL_OWNER,
                        .log = d->log,
                        .sync = !strcmp(sync, "files") ? SK_SPOOL_SYNC_FILES
                                : !strcmp(sync, "fs")  ? SK_SPOOL_SYNC_FS
                                                       : SK_SPOOL_SYNC_LOG};
    d->spool = sk_spool_open(d->cfg->data_dir, &so, d->base, err);
    return d->spool ? SK_OK : err && err->err ? err->err : SK_ERR_IO;
}

/* --rate-limit and --priority values, checked when the config was read. */
static sk_err parse_rules(const sk_daemon_config *c, sk_queue_opts *qo, sk_queue_rate_rule **rates,
                          sk_queue_priority_rule **prios, sk_error *err)
{
    *rates = sk_calloc(c->rate_limit.n + 1, sizeof **rates);
    *prios = sk_calloc(c->priority.n + 1, sizeof **prios);
    if (!*rates || !*prios) return sk_error_set(err, SK_ERR_NOMEM, SK_STEP_NONE, "out of memory");
    size_t nr = 0;
    for (size_t i = 0; i < c->rate_limit.n; i++) {
        sk_queue_rate_rule r;
        if (sk_queue_rate_parse(c->rate_limit.v[i], &r, err)) return SK_ERR_CONFIG;
        if (r.domain[0] == '\0')
            qo->rate_default = r.rate;
        else
            (*rates)[nr++] = r;
    }
    qo->rate_rules = *rates;
    qo->nrate_rules = nr;
    for (size_t i = 0; i < c->priority.n; i++)
        if (sk_queue_priority_parse(c->priority.v[i], &(*prios)[i], err)) return SK_ERR_CONFIG;
    qo->priority_rules = *prios;
    qo->npriority_rules = c->priority.n;
    return SK_OK;
}

static sk_err start_delivery(sk_daemon *d, sk_error *err)
{
    sk_daemon_config *c = d->cfg;
    sk_buf dir = SK_BUF_INIT(4096);
    if (sk_buf_printf(&dir, "%s/mailboxes", c->data_dir))
        return sk_error_set(err, SK_ERR_CONFIG, SK_STEP_NONE, "data-dir: path too long");
    sk_err e = make_dir(sk_buf_cstr(&dir), err);
    /* An absolute root, so that the Maildir files named in the tracking
     * store are found from any directory. */
    char *abs = e ? NULL : realpath(sk_buf_cstr(&dir), NULL);
    if (abs) {
        sk_buf_reset(&dir);
        e = sk_buf_puts(&dir, abs);
        free(abs);
        if (e) e = sk_error_set(err, SK_ERR_CONFIG, SK_STEP_NONE, "data-dir: path too long");
    }
    char host[256] = "";
    if (!c->hostname) gethostname(host, sizeof host - 1);
    d->hostname = sk_strdup(c->hostname ? c->hostname : host);
    if (!d->hostname) e = sk_error_set(err, SK_ERR_NOMEM, SK_STEP_NONE, "out of memory");
    const char *hostname = d->hostname;
    if (!e) {
        d->local = sk_maildir_transport_new(sk_buf_cstr(&dir), hostname, &d->log, err);
        if (!d->local) e = err ? err->err : SK_ERR_IO;
        /* Its writes and fsyncs on a thread of their own, not the loop's. */
        if (!e) e = sk_maildir_transport_start(d->local, d->base, err);
    }
    sk_buf_free(&dir);
    if (e) return e;
    if (c->rules ? sk_rules_load(c->rules, &d->rules, err) : sk_rules_default(&d->rules, err))
        return SK_ERR_CONFIG;
    d->suppress_for_s =
        c->suppress_for_ms ? (int64_t)(c->suppress_for_ms / 1000) : SK_SUPPRESS_DURATION_S_DEFAULT;
    if (c->verp) d->verp_domain = d->hostname;
    if (!d->track_opened) open_track(d);
    if (c->relay_host) {
        char rhost[256];
        unsigned port;
        if (sk_daemon_parse_hostport(c->relay_host, rhost, sizeof rhost, &port))
            return sk_error_set(err, SK_ERR_CONFIG, SK_STEP_NONE, "relay-host: bad HOST:PORT");
        /* The SMTP transport with a fixed route: no MX lookup. */
        sk_smtp_transport_opts so = {
            .relay_host = rhost,
            .port = (unsigned short)port,
            .helo_name = hostname,
            .max_messages_per_connection = c->messages_per_connection,
            .idle_ms = SK_SMTP_RELAY_IDLE_MS_DEFAULT,
            .log = d->log,
        };
        d->remote = sk_smtp_transport_new(&so, d->base, err);
        if (!d->remote) return err && err->err ? err->err : SK_ERR_IO;
    } else {
        /* No relay host: each domain's MX hosts (RFC 5321 5.1). */
        sk_smtp_transport_opts mo = {
            .dns_server = c->dns_server,
            .port = (unsigned short)c->mx_port,
            .helo_name = hostname,
            .max_messages_per_connection = c->messages_per_connection,
            .tls_required = (const char *const *)c->tls_required.v,
            .ntls_required = c->tls_required.n,
            .log = d->log,
        };
        d->remote = sk_smtp_transport_new(&mo, d->base, err);
        if (!d->remote) return err && err->err ? err->err : SK_ERR_CONFIG;
    }
    if (parse_retry(c->retry_schedule, &d->retry_ms, &d->nretry))
        return sk_error_set(err, SK_ERR_NOMEM, SK_STEP_NONE, "out of memory");
    sk_queue_opts qo = {
        .log = d->log,
        .local_domains = (const char *const *)c->local_domain.v,
        .nlocal_domains = c->local_domain.n,
        .local_transport = d->local,
        .remote_transport = d->remote,
        .retry_ms = d->retry_ms,
        .nretry = d->nretry,
        .max_lifetime_ms = c->max_queue_lifetime_ms,
        .delay_warning_ms = c->delay_warning_ms,
        .on_event = on_queue_event,
        .event_ctx = d,
        .group_by_domain = c->group_destinations && !strcmp(c->group_destinations, "domain"),
        .dest_max_conns = c->destination_connections,
        .msgs_per_conn = c->messages_per_connection,
        .rules = d->rules,
        .throttle_suspend_ms = c->throttle_suspend_ms,
        .hostname = d->hostname,
        .verp_host = d->verp_domain,
    };
    sk_queue_rate_rule *rates = NULL;
    sk_queue_priority_rule *prios = NULL;
    e = parse_rules(c, &qo, &rates, &prios, err);
    if (!e) {
        d->queue = sk_queue_new(d->spool, &qo, d->base, err);
        if (!d->queue) e = err && err->err ? err->err : SK_ERR_IO;
    }
    sk_free(rates);
    sk_free(prios);
    return e;
}

/* The buffering logger's wrapper (any thread). Without the loop's event
 * (before it exists, after it is gone, and in the forked AUTH helper,
 * which has a copy without it) each line is flushed at once. */
static void log_batched(void *ctx, sk_log_level level, const char *line)
{
    sk_daemon *d = ctx;
    d->user_log.fn(d->user_log.ctx, level, line);
    struct event *ev = d->log_flush_ev;
    if (!ev)
        d->user_log.flush(d->user_log.ctx);
    else if (!atomic_exchange(&d->log_flush_pending, 1))
        event_active(ev, EV_TIMEOUT, 0);
}

/* Block or unblock, in the calling thread, the signals the loop handles. */
static void stop_signals(int how)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    pthread_sigmask(how, &set, NULL);
}

/* Loop thread: the lines of this pass go out in one write. The flag is
 * cleared first, so a line logged meanwhile schedules another flush. */
static void on_log_flush(evutil_socket_t fd, short what, void *arg)
{
    sk_daemon *d = arg;
    (void)fd;
    (void)what;
    atomic_store(&d->log_flush_pending, 0);
    d->user_log.flush(d->user_log.ctx);
}

sk_err sk_daemon_new(const char *config_path, const sk_daemon_setting *flags, size_t n_flags,
                     const sk_logger *log, sk_daemon **out, sk_error *err)
{
    *out = NULL;
    sk_daemon *d = sk_calloc(1, sizeof *d);
    if (!d) return sk_error_set(err, SK_ERR_NOMEM, SK_STEP_NONE, "out of memory");
    if (log) d->log = d->user_log = *log;
    if (d->user_log.fn && d->user_log.flush)
        d->log = (sk_logger){log_batched, d, d->user_log.max_level, NULL};
    sk_err e = SK_OK;
    /* Keep what the configuration is built from, for SIGHUP. */
    if (config_path && !(d->config_path = sk_strdup(config_path))) e = SK_ERR_NOMEM;
    d->flags = sk_calloc(n_flags ? n_flags : 1, sizeof *d->flags);
    if (!d->flags) e = SK_ERR_NOMEM;
    for (size_t i = 0; !e && i < n_flags; i++) {
        d->flags[i].key = sk_strdup(flags[i].key);
        d->flags[i].value = flags[i].value ? sk_strdup(flags[i].value) : NULL;
        d->n_flags = i + 1;
        if (!d->flags[i].key || (flags[i].value && !d->flags[i].value)) e = SK_ERR_NOMEM;
    }
    if (e) {
        sk_daemon_free(d);
        return sk_error_set(err, e, SK_STEP_NONE, "out of memory");
    }
    e = sk_daemon_config_build(d->config_path, d->flags, d->n_flags, &d->cfg, err);
    if (!e) e = load_tables(d->cfg, &d->users, &d->recipients, &d->have_recipients, err);
    if (e) {
        sk_daemon_free(d);
        return e;
    }
    /* The AUTH helper is forked before any thread starts and before
     * privileges are dropped (docs/SECURITY.md). */
    if (d->cfg->users && !(d->authd = sk_authd_start(d->cfg->users, &d->log, err))) {
        sk_daemon_free(d);
        return err && err->err ? err->err : SK_ERR_CONFIG;
    }
    /* The SMTP transport completes jobs from worker threads. */
    evthread_use_pthreads();
    d->base = event_base_new();
    if (d->base && d->log.fn == log_batched &&
        !(d->log_flush_ev = event_new(d->base, -1, 0, on_log_flush, d))) {
        event_base_free(d->base);
        d->base = NULL;
    }
    if (!d->base) {
        sk_daemon_free(d);
        return sk_error_set(err, SK_ERR_NOMEM, SK_STEP_NONE, "cannot create the event loop");
    }
    sk_server_opts o;
    server_opts_from(d, d->cfg, &o);
    d->srv = sk_server_new(&o, d->base, err);
    if (!d->srv) {
        sk_daemon_free(d);
        return err && err->err ? err->err : SK_ERR_CONFIG;
    }
    /* Without accounts there is nothing to authenticate against: no hook,
     * so AUTH is not announced and answers 502 (docs/serve.md). */
    if (d->authd) sk_server_on_auth(d->srv, on_auth, d);
    if (d->authd && sk_authd_attach(d->authd, d->base, err)) {
        sk_daemon_free(d);
        return err && err->err ? err->err : SK_ERR_IO;
    }
    sk_server_on_mail(d->srv, on_mail, d);
    sk_server_on_rcpt(d->srv, on_rcpt, d);
    sk_server_on_disconnect(d->srv, on_disconnect, d);
    sk_server_on_data(d->srv, on_data_start, on_data_chunk, on_data_end, d);

    /* Signals are caught before the ports open: a SIGTERM or SIGHUP sent
     * as soon as a port answers (while the spool is still being recovered)
     * is handled by the loop once it runs, instead of killing the process. */
    signal(SIGPIPE, SIG_IGN);
    d->sig_term = evsignal_new(d->base, SIGTERM, on_signal, d);
    d->sig_int = evsignal_new(d->base, SIGINT, on_signal, d);
    d->sig_hup = evsignal_new(d->base, SIGHUP, on_signal, d);
    d->drain_timer = evtimer_new(d->base, drain_check, d);
    if (!d->sig_term || !d->sig_int || !d->sig_hup || !d->drain_timer ||
        evsignal_add(d->sig_term, NULL) || evsignal_add(d->sig_int, NULL) ||
        evsignal_add(d->sig_hup, NULL)) {
        sk_daemon_free(d);
        return sk_error_set(err, SK_ERR_NOMEM, SK_STEP_NONE, "cannot set up signal handling");
    }
    /* Held back until the loop runs (sk_daemon_run): the threads started
     * below inherit the block, so these signals only ever reach this
     * thread, and none reaches a thread after the handlers are gone. */
    stop_signals(SIG_BLOCK);

    /* The data directory is checked before the ports open, so that a
     * daemon that cannot keep mail never answers (and a tool run as soon
     * as the port answers finds it). Without a user to switch to, the
     * tracking store and the spool (its lock, its recovery) are opened
     * before the ports too: opening SQLite takes a moment, sessions
     * should not wait behind it, and a spool locked by another daemon
     * stops the start before it listens. When starting as root with
     * --user: bind (ports below 1024 need root), drop privileges, then
     * open them as the user we run as. */
    bool drops = d->cfg->user && geteuid() == 0;
    e = check_data_dir(d, err);
    if (!e && !drops) {
        open_track(d);
        d->track_opened = true;
        e = open_spool(d, err);
        /* The DKIM keys are read as the user that reads them again on
         * SIGHUP: before the ports open here, after the switch below. */
        if (!e) e = sk_dkim_keyring_load(&d->cfg->dkim, &d->keys, err);
        if (!e) e = arc_key_load(d, err);
    }
    if (!e) e = listen_all(d, err);
    if (!e) e = drop_privileges(d, err);
    if (!e && !d->spool) e = open_spool(d, err);
    if (!e && !d->keys) e = sk_dkim_keyring_load(&d->cfg->dkim, &d->keys, err);
    if (!e) e = arc_key_load(d, err);
    if (!e) e = start_delivery(d, err);
    if (!e && !(d->signpool = sk_sign_pool_new(d->base, err)))
        e = err && err->err ? err->err : SK_ERR_NOMEM;
    if (!e) {
        /* The checks of mail from outside; our host name is the
         * authserv-id of their Authentication-Results (RFC 8601 2.5). */
        sk_inbound_opts io = {.base = d->base,
                              .dns_server = d->cfg->dns_server,
                              .authserv_id = d->hostname,
                              .log = d->log};
        if (!(d->inbound = sk_inbound_new(&io, err))) e = err && err->err ? err->err : SK_ERR_NOMEM;
    }
    /* The control socket last: made by the user we run as, in the spool
     * whose lock we hold (a socket left there is stale, and replaced). */
    if (!e && !(d->control = sk_control_server_new(d->queue, d->spool, &d->log, d->base, err)))
        e = err && err->err ? err->err : SK_ERR_IO;
    if (e) {
        sk_daemon_free(d);
        return e;
    }

    sk_log(&d->log, SK_LOG_INFO,
           "- daemon started data_dir=%s hold=%s relay_host=%s delivery=%s dns_server=%s "
           "mx_port=%u verp=%s tracking=%s dkim_keys=%zu dmarc_policy=%s spf_reject_fail=%s",
           d->cfg->data_dir, d->cfg->hold ? "yes" : "no",
           d->cfg->relay_host ? d->cfg->relay_host : "-", d->cfg->relay_host ? "relay" : "mx",
           d->cfg->dns_server ? d->cfg->dns_server : "system", d->cfg->mx_port,
           d->verp_domain ? "yes" : "no", d->track ? "yes" : "no", sk_dkim_keyring_count(d->keys),
           d->cfg->dmarc_policy ? d->cfg->dmarc_policy : "report",
           d->cfg->spf_reject_fail ? "yes" : "no");
    *out = d;
    return SK_OK;
}

const sk_daemon_config *sk_daemon_get_config(const sk_daemon *d)
{
    return d->cfg;
}

int sk_daemon_port(const sk_daemon *d, size_t i)
{
    return sk_server_port(d->srv, i);
}

sk_err sk_daemon_run(sk_daemon *d, sk_error *err)
{
    stop_signals(SIG_UNBLOCK); /* those sent meanwhile arrive now */
    if (event_base_dispatch(d->base) < 0)
        return sk_error_set(err, SK_ERR_IO, SK_STEP_NONE, "event loop failed");
    sk_log(&d->log, SK_LOG_INFO, "- daemon stopped");
    if (d->user_log.flush) d->user_log.flush(d->user_log.ctx);
    return SK_OK;
}

void sk_daemon_free(sk_daemon *d)
{
    if (!d) return;
    /* One more SIGTERM while stopping waits, blocked, instead of ending the
     * process once the handlers below are gone: the exit status stays the
     * daemon's (docs/serve.md). */
    stop_signals(SIG_BLOCK);
    if (d->sig_term) event_free(d->sig_term);
    if (d->sig_int) event_free(d->sig_int);
    if (d->sig_hup) event_free(d->sig_hup);
    if (d->drain_timer) event_free(d->drain_timer);
    /* The control socket first (its operations use the queue; the socket
     * goes while we still hold the spool lock), then the queue (it
     * cancels transport jobs), then the transports.
     * Messages still being received are dropped; the spool then finishes
     * commits in flight, whose callbacks answer sessions that are still
     * there; the server goes last. */
    sk_control_server_free(d->control);
    d->control = NULL;
    sk_queue_free(d->queue);
    sk_transport_free(d->remote);
    sk_transport_free(d->local);
    sk_suppress_mirror_free(d->suppress);
    d->suppress = NULL;
    /* Events not written yet are flushed by sk_track_free. */
    sk_track_free(d->track);
    d->track = NULL;
    sk_rules_free(d->rules);
    for (daemon_msg *m = d->receiving; m; m = m->next) {
        if (m->m) sk_spool_abort(m->m);
        m->m = NULL;
    }
    /* Messages whose checks are still running or whose signatures are
     * being made are dropped (their sessions go with the server below: no
     * reply); the signing threads finish what they are doing first. */
    sk_sign_pool_free(d->signpool);
    d->signpool = NULL;
    while (d->finishing) {
        daemon_msg *m = d->finishing;
        msg_unlink(&d->finishing, m);
        sk_spool_abort(m->m);
        msg_free(m);
    }
    sk_spool_free(d->spool);
    d->spool = NULL;
    /* Checks still waiting for the helper are answered before the server
     * and its sessions go. */
    sk_authd_free(d->authd);
    sk_server_free(d->srv);
    /* After the sessions (on_disconnect cancels their SPF checks). */
    sk_inbound_free(d->inbound);
    sk_dkim_keyring_free(d->keys);
    sk_dkim_key_free(d->arc_key);
    /* From here on lines are flushed as they come (log_batched). */
    if (d->log_flush_ev) event_free(d->log_flush_ev);
    d->log_flush_ev = NULL;
    if (d->user_log.flush) d->user_log.flush(d->user_log.ctx);
    if (d->base) event_base_free(d->base);
    sk_users_free(&d->users);
    sk_recipients_free(&d->recipients);
    sk_daemon_config_free(d->cfg);
    sk_free(d->retry_ms);
    sk_free(d->hostname);
    for (size_t i = 0; i < d->n_flags; i++) {
        sk_free((char *)d->flags[i].key);
        sk_free((char *)d->flags[i].value);
    }
    sk_free(d->flags);
    sk_free(d->config_path);
    sk_free(d);
}
