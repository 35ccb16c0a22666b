/* `smtpkit serve`, one SMTP transaction: the server's hooks (AUTH, MAIL,
 * RCPT, the message as it streams in, its end), the signing or the checks
 * of the message and the ARC set, the commit and its 250, and reports to
 * VERP addresses. The queue's events are in queue_events.c. */
#include "daemon_impl.h"

#include <smtpkit/auth.h>
#include <smtpkit/authres.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

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
    uint64_t commit_ms; /* when the commit was asked for (metrics) */
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
    sk_arc_status seal_cv; /* the cv= it seals with, for the log */
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

/* Is rcpt one of our VERP addresses (bounces+...@HOSTNAME)? */
static bool is_verp(const sk_daemon *d, const sk_path *rcpt)
{
    char id[SK_SPOOL_ID_SIZE], addr[SK_SMTP_PATH_MAX_OCTETS + 1];
    return d->verp_domain && rcpt->domain[0] && strcasecmp(rcpt->domain, d->verp_domain) == 0 &&
           sk_daemon_verp_parse(rcpt->mailbox, id, sizeof id, addr, sizeof addr) == SK_OK;
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
    sk_daemon *d = ctx;
    sk_dmetrics_session(d->metrics, sk_session_age_ms(s));
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
        sk_daemon_track(d, &ev);
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
        sk_daemon_log_escaped(&b, "to", dm->verp[i]);
        sk_daemon_log_escaped(&b, "from", dm->from);
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
        sk_daemon_log_escaped(&b, "from", dm->from);
        sk_log(&d->log, SK_LOG_INFO, "%s daemon queued session=%s%s nrcpt=%zu size=%llu%s",
               queue_id, sk_session_id(dm->s), sk_buf_cstr(&b), dm->nrcpts,
               (unsigned long long)dm->octets, d->cfg->hold ? " state=hold" : "");
        sk_buf_free(&b);
        r = sk_reply_make(250, "2.0.0", "Ok: queued as %s", queue_id);
        sk_dmetrics_committed(d->metrics, dm->octets, sk_now_ms() - dm->commit_ms);
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
            sk_daemon_track(d, &ev);
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

static void log_unsealed(const sk_daemon *d, const daemon_msg *dm, const char *why)
{
    sk_buf b = SK_BUF_INIT(SK_TRACK_FIELD_MAX_OCTETS + 64);
    sk_daemon_log_escaped(&b, "why", why);
    sk_log(&d->log, SK_LOG_INFO, "%s daemon arc-unsealed%s", dm->id, sk_buf_cstr(&b));
    sk_buf_free(&b);
}

/* Fields made on a signing thread are in: the DKIM-Signature fields of a
 * message to sign (in the order of the keys), or the ARC set of a message
 * from outside (--arc-seal). They go on top of it, then it is stored. A
 * message they could not be made for (RFC 6376 5.4: no From to sign; a
 * chain the arc module will not seal) is stored as it is and the log says
 * why; only memory running out refuses it. */
static void on_signed(void *ctx, sk_err e, sk_buf *fields, const sk_error *err)
{
    daemon_msg *dm = ctx;
    sk_daemon *d = dm->d;
    bool sealed = dm->auth == MSG_AUTH_CHECK;
    msg_unlink(&d->finishing, dm);
    if (e == SK_OK) {
        e = sk_spool_msg_prepend(dm->m, fields->data, fields->len);
        if (sealed)
            sk_log(&d->log, SK_LOG_INFO, "%s daemon arc-sealed instance=%u cv=%s", dm->id,
                   sk_arc_sealer_instance(dm->sealer), sk_arc_status_name(dm->seal_cv));
    } else if (e != SK_ERR_NOMEM) {
        if (sealed)
            log_unsealed(d, dm, err->text[0] ? err->text : sk_strerror(e));
        else
            log_unsigned(d, dm, err->text);
        e = SK_OK;
    }
    if (e) {
        sk_reply r = sk_reply_make(452, "4.3.1", "insufficient system resources");
        msg_refuse(dm, &r);
        return;
    }
    dm->commit_ms = sk_now_ms();
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
 * results as its AAR and the chain's status as cv, made on a signing
 * thread like DKIM signatures (two private-key operations: the AMS and
 * the seal); on_signed stores the message then, and *sealing says it
 * will. A message the module will not seal (a chain ending in cv=fail,
 * no From...) is stored as it is and the log says why; only memory
 * running out (or a stopping pool) stops it. */
static sk_err arc_seal(sk_daemon *d, daemon_msg *dm, const sk_auth_results *res,
                       const sk_auth_verdict *v, bool *sealing)
{
    sk_arc_status cv = res->arc_error ? SK_ARC_FAIL : res->arc ? res->arc->status : SK_ARC_NONE;
    sk_buf text = SK_BUF_INIT(SK_AUTHRES_HEADER_MAX_OCTETS);
    sk_error err = {0};
    sk_err e = sk_auth_resinfo(res, v, &text);
    if (!e) e = sk_arc_sealer_set_results(dm->sealer, sk_buf_cstr(&text), cv, &err);
    sk_buf_free(&text);
    if (e == SK_ERR_NOMEM) return e;
    if (e) {
        log_unsealed(d, dm, err.text[0] ? err.text : sk_strerror(e));
        return SK_OK;
    }
    dm->seal_cv = cv;
    e = sk_sign_pool_submit_seal(d->signpool, dm->sealer, on_signed, dm);
    *sealing = !e;
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
    bool recorded = !e, sealing = false;
    sk_buf b = SK_BUF_INIT(SK_TRACK_FIELD_MAX_OCTETS + 64);
    sk_daemon_log_escaped(&b, "results", recorded ? sk_buf_cstr(&summary) : "");
    sk_log(&d->log, SK_LOG_INFO, "%s daemon auth session=%s action=%s%s", dm->id,
           sk_session_id(dm->s), sk_auth_action_name(v.action), sk_buf_cstr(&b));
    sk_buf_free(&b);
    if (!e && !(dm->auth_summary = sk_buf_detach(&summary, NULL))) e = SK_ERR_NOMEM;
    /* The seal starts last: once it is on a thread, nothing here may fail. */
    if (!e && v.action != SK_AUTH_REFUSE && v.action != SK_AUTH_DEFER) {
        e = sk_spool_msg_prepend(dm->m, fields.data, fields.len);
        if (!e && dm->sealer) e = arc_seal(d, dm, res, &v, &sealing);
    }
    /* res is the checks': they go once used, and before the session can
     * (sk_session_reply may end it). */
    sk_inbound_msg_free(dm->check);
    dm->check = NULL;
    res = NULL;
    sk_buf_free(&fields);
    sk_buf_free(&summary);
    if (e) {
        sk_log(&d->log, SK_LOG_ERR, "%s daemon auth-record-failed session=%s error=\"%s\"", dm->id,
               sk_session_id(dm->s), e == SK_ERR_NOMEM ? "out of memory" : err.text);
        v.action = SK_AUTH_DEFER;
        v.reply = sk_reply_make(451, "4.3.0", "local error in processing");
    }
    if (sealing) {
        /* on_signed stores it once the set is made. */
        msg_link(&d->finishing, dm);
        return;
    }
    if (v.action == SK_AUTH_REFUSE || v.action == SK_AUTH_DEFER) {
        msg_refuse(dm, &v.reply);
        return;
    }
    dm->commit_ms = sk_now_ms();
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
    dm->commit_ms = sk_now_ms();
    sk_spool_commit(dm->m, on_committed, dm);
    return SK_REPLY_ASYNC;
}

void sk_daemon_hooks_set(sk_daemon *d)
{
    /* Without accounts there is nothing to authenticate against: no hook,
     * so AUTH is not announced and answers 502 (docs/serve.md). */
    if (d->authd) sk_server_on_auth(d->srv, on_auth, d);
    sk_server_on_mail(d->srv, on_mail, d);
    sk_server_on_rcpt(d->srv, on_rcpt, d);
    sk_server_on_disconnect(d->srv, on_disconnect, d);
    sk_server_on_data(d->srv, on_data_start, on_data_chunk, on_data_end, d);
}

void sk_daemon_receiving_abort(sk_daemon *d)
{
    for (daemon_msg *m = d->receiving; m; m = m->next) {
        if (m->m) sk_spool_abort(m->m);
        m->m = NULL;
    }
}

void sk_daemon_finishing_drop(sk_daemon *d)
{
    while (d->finishing) {
        daemon_msg *m = d->finishing;
        msg_unlink(&d->finishing, m);
        sk_spool_abort(m->m);
        msg_free(m);
    }
}
