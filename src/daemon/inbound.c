/* The checks of mail from outside, on the daemon's event loop through one
 * resolver (and its cache): SPF of MAIL FROM and HELO from the MAIL
 * command on, DKIM and ARC as the message streams in, DMARC once SPF and
 * DKIM are in. */
#include "daemon_int.h"

#include <event2/event.h>

#include <stdio.h>
#include <string.h>

struct sk_inbound {
    sk_resolver *resolver;
    sk_dmarc_checker *dmarc;
    struct event_base *base;
    char *authserv_id;
    sk_logger log;
};

/* One SPF identity of a session. */
typedef struct spf_slot {
    sk_spf_check *check; /* in flight */
    sk_spf_outcome *out; /* done */
    bool started;
} spf_slot;

struct sk_inbound_sess {
    sk_inbound *in;
    char id[64];
    char peer[64];
    char helo[SK_SMTP_LINE_MAX_OCTETS]; /* the name the HELO slot was checked for */
    spf_slot mailfrom, helo_spf;
    sk_inbound_msg *waiting; /* a message waiting for SPF */
};

struct sk_inbound_msg {
    sk_inbound *in;
    sk_inbound_sess *s; /* NULL once the session is gone */
    sk_dkim_verifier *v;
    bool dkim_done;
    char dkim_error[256];
    sk_arc_verifier *arc; /* the ARC chain (RFC 8617), alongside DKIM */
    bool arc_done;
    char arc_error[256];
    sk_buf from;
    bool from_overflow;
    sk_dmarc_job *job;
    bool dmarc_started, dmarc_done;
    sk_dmarc_result dmarc; /* without its record (not owned) */
    struct event *done_ev; /* the result goes out from the loop */
    sk_inbound_done_fn done;
    void *ctx;
};

sk_inbound *sk_inbound_new(const sk_inbound_opts *o, sk_error *err)
{
    sk_inbound *in = sk_calloc(1, sizeof *in);
    if (!in || !(in->authserv_id = sk_strdup(o->authserv_id))) {
        sk_free(in);
        sk_error_set(err, SK_ERR_NOMEM, SK_STEP_NONE, "out of memory");
        return NULL;
    }
    in->base = o->base;
    in->log = o->log;
    sk_resolver_opts ro = {.server = o->dns_server, .log = &in->log};
    in->resolver = sk_resolver_new_opts(o->base, &ro, err);
    sk_dmarc_opts dmo = {.log = &in->log};
    in->dmarc = in->resolver ? sk_dmarc_checker_new(in->resolver, &dmo) : NULL;
    if (!in->dmarc) {
        if (in->resolver && err) sk_error_set(err, SK_ERR_NOMEM, SK_STEP_NONE, "out of memory");
        sk_inbound_free(in);
        return NULL;
    }
    return in;
}

void sk_inbound_free(sk_inbound *in)
{
    if (!in) return;
    /* dmarc.h: the checker after the resolver. */
    sk_resolver_free(in->resolver);
    sk_dmarc_checker_free(in->dmarc);
    sk_free(in->authserv_id);
    sk_free(in);
}

/* ---- SPF, per session ---------------------------------------------------- */

static void slot_clear(spf_slot *sl)
{
    sk_spf_check_cancel(sl->check);
    sk_spf_outcome_free(sl->out);
    *sl = (spf_slot){0};
}

sk_inbound_sess *sk_inbound_sess_new(sk_inbound *in, const char *session_id, const char *peer)
{
    sk_inbound_sess *s = sk_calloc(1, sizeof *s);
    if (!s) return NULL;
    s->in = in;
    snprintf(s->id, sizeof s->id, "%s", session_id);
    snprintf(s->peer, sizeof s->peer, "%s", peer);
    return s;
}

void sk_inbound_sess_free(sk_inbound_sess *s)
{
    if (!s) return;
    if (s->waiting) s->waiting->s = NULL;
    slot_clear(&s->mailfrom);
    slot_clear(&s->helo_spf);
    sk_free(s);
}

static void msg_step(sk_inbound_msg *m);

static bool slot_pending(const spf_slot *sl)
{
    return sl->started && !sl->out;
}

static void spf_done(sk_inbound_sess *s, spf_slot *sl, sk_spf_outcome *o)
{
    sl->check = NULL;
    sl->out = o;
    sk_log(&s->in->log, SK_LOG_DEBUG, "%s daemon spf identity=%s result=%s lookups=%u", s->id,
           o->identity == SK_SPF_HELO ? "helo" : "mailfrom", sk_spf_result_name(o->result),
           o->lookups);
    if (s->waiting) msg_step(s->waiting);
}

static void on_spf_mailfrom(void *ctx, sk_spf_outcome *o)
{
    sk_inbound_sess *s = ctx;
    spf_done(s, &s->mailfrom, o);
}

static void on_spf_helo(void *ctx, sk_spf_outcome *o)
{
    sk_inbound_sess *s = ctx;
    spf_done(s, &s->helo_spf, o);
}

/* Start one identity's check. One that cannot start is recorded as its
 * outcome: none when the evaluator refuses the request (no address, no
 * HELO name to check), temperror when memory ran short. */
static void slot_start(sk_inbound_sess *s, spf_slot *sl, const sk_spf_request *req, sk_spf_cb cb)
{
    sl->started = true;
    sk_spf_opts o = {.receiver = s->in->authserv_id, .log = &s->in->log};
    sk_err e = sk_spf_check_start(s->in->resolver, req, &o, cb, s, &sl->check);
    if (e == SK_OK) return;
    sl->check = NULL;
    sk_spf_outcome *out = sk_calloc(1, sizeof *out);
    if (out) {
        out->result = e == SK_ERR_INVAL ? SK_SPF_NONE : SK_SPF_TEMPERROR;
        out->identity = req->identity;
        out->reason =
            sk_strdup(e == SK_ERR_INVAL ? "the identity cannot be checked" : "out of memory");
    }
    sl->out = out;
    if (!out) sl->started = false; /* not evaluated at all */
}

void sk_inbound_mail(sk_inbound_sess *s, const char *helo, const char *mail_from)
{
    /* A new transaction: MAIL FROM is checked again (RFC 7208 2.4). */
    slot_clear(&s->mailfrom);
    sk_spf_request req = {
        .identity = SK_SPF_MAILFROM, .ip = s->peer, .mail_from = mail_from, .helo = helo};
    slot_start(s, &s->mailfrom, &req, on_spf_mailfrom);
    /* RFC 7208 2.3: the HELO identity, once per name. */
    if (!s->helo_spf.started || strcmp(s->helo, helo)) {
        slot_clear(&s->helo_spf);
        snprintf(s->helo, sizeof s->helo, "%s", helo);
        req.identity = SK_SPF_HELO;
        slot_start(s, &s->helo_spf, &req, on_spf_helo);
    }
}

/* ---- a message ------------------------------------------------------------ */

static void on_done_ev(evutil_socket_t fd, short what, void *arg)
{
    sk_inbound_msg *m = arg;
    (void)fd;
    (void)what;
    sk_inbound_sess *s = m->s;
    sk_auth_results r = {
        .dkim_error = m->dkim_error[0] ? m->dkim_error : NULL,
        .spf_mailfrom = s ? s->mailfrom.out : NULL,
        .spf_helo = s ? s->helo_spf.out : NULL,
        .dmarc = m->dmarc_done ? &m->dmarc : NULL,
        .arc = m->arc && !m->arc_error[0] ? sk_arc_verifier_result(m->arc) : NULL,
        .arc_error = m->arc_error[0] ? m->arc_error : NULL,
        .peer = s ? s->peer : NULL,
    };
    sk_dkim_result *copy = NULL;
    size_t n = m->v && !r.dkim_error ? sk_dkim_verifier_count(m->v) : 0;
    if (n) {
        /* The verifier hands out one result at a time; verdict.c wants an
         * array. */
        copy = sk_calloc(n, sizeof *copy);
        for (size_t i = 0; copy && i < n; i++) copy[i] = *sk_dkim_verifier_result(m->v, i);
        if (!copy) {
            n = 0;
            r.dkim_error = "out of memory";
        }
    }
    r.dkim = copy;
    r.n_dkim = n;
    m->done(m->ctx, &r);
    sk_free(copy);
}

sk_inbound_msg *sk_inbound_msg_new(sk_inbound_sess *s)
{
    sk_inbound_msg *m = sk_calloc(1, sizeof *m);
    if (!m) return NULL;
    m->in = s->in;
    m->s = s;
    sk_buf_init(&m->from, SK_DAEMON_FROM_FIELDS_MAX_OCTETS);
    sk_error err;
    m->v = sk_dkim_verifier_new(NULL, &err);
    m->arc = sk_arc_verifier_new(NULL, &err);
    m->done_ev = event_new(m->in->base, -1, 0, on_done_ev, m);
    if (!m->v || !m->arc || !m->done_ev) {
        sk_inbound_msg_free(m);
        return NULL;
    }
    return m;
}

void sk_inbound_msg_feed(sk_inbound_msg *m, const char *p, size_t n)
{
    /* SK_ERR_TOO_LONG: each verifier keeps it, and finish says so again. */
    if (m->v && sk_dkim_verifier_feed(m->v, p, n) != SK_OK) {
        /* said again by sk_dkim_verifier_finish */
    }
    if (m->arc && sk_arc_verifier_feed(m->arc, p, n) != SK_OK) {
        /* said again by sk_arc_verifier_finish */
    }
}

void sk_inbound_msg_free(sk_inbound_msg *m)
{
    if (!m) return;
    if (m->s && m->s->waiting == m) m->s->waiting = NULL;
    sk_dmarc_cancel(m->job);
    sk_dkim_verifier_free(m->v);
    sk_arc_verifier_free(m->arc);
    if (m->done_ev) event_free(m->done_ev);
    sk_buf_free(&m->from);
    sk_free(m);
}

static sk_dmarc_auth spf_as_dmarc(sk_spf_result r)
{
    switch (r) {
    case SK_SPF_PASS:
        return SK_DMARC_AUTH_PASS;
    case SK_SPF_NONE:
        return SK_DMARC_AUTH_NONE;
    case SK_SPF_TEMPERROR:
        return SK_DMARC_AUTH_TEMPERROR;
    default:
        return SK_DMARC_AUTH_FAIL;
    }
}

static sk_dmarc_auth dkim_as_dmarc(sk_dkim_status st)
{
    return st == SK_DKIM_PASS        ? SK_DMARC_AUTH_PASS
           : st == SK_DKIM_TEMPERROR ? SK_DMARC_AUTH_TEMPERROR
           : st == SK_DKIM_NONE      ? SK_DMARC_AUTH_NONE
                                     : SK_DMARC_AUTH_FAIL;
}

static void on_dmarc(void *ctx, const sk_dmarc_result *res)
{
    sk_inbound_msg *m = ctx;
    m->job = NULL;
    m->dmarc = *res;
    /* The record stays the checker's: only what verdict.c reads is kept. */
    memset(&m->dmarc.record, 0, sizeof m->dmarc.record);
    m->dmarc_done = true;
    msg_step(m);
}

static void dmarc_permerror(sk_inbound_msg *m, const char *why)
{
    m->dmarc = (sk_dmarc_result){.status = SK_DMARC_PERMERROR, .policy_tag = ""};
    snprintf(m->dmarc.reason, sizeof m->dmarc.reason, "%s", why);
    m->dmarc_done = true;
}

static void dmarc_start(sk_inbound_msg *m)
{
    m->dmarc_started = true;
    if (m->from_overflow) {
        dmarc_permerror(m, "From field too long to evaluate");
        return;
    }
    sk_dmarc_auth_id dkim[SK_DMARC_DKIM_MAX];
    size_t nd = 0;
    size_t nv = m->v && !m->dkim_error[0] ? sk_dkim_verifier_count(m->v) : 0;
    for (size_t i = 0; i < nv && nd < SK_DMARC_DKIM_MAX; i++) {
        const sk_dkim_result *d = sk_dkim_verifier_result(m->v, i);
        dkim[nd++] = (sk_dmarc_auth_id){dkim_as_dmarc(d->status), d->domain};
    }
    const sk_spf_outcome *spf = m->s ? m->s->mailfrom.out : NULL;
    sk_dmarc_input in = {
        .headers = m->from.data ? m->from.data : "",
        .headers_len = m->from.len,
        .spf = {spf ? spf_as_dmarc(spf->result) : SK_DMARC_AUTH_NONE, spf ? spf->domain : NULL},
        .dkim = dkim,
        .n_dkim = nd,
    };
    if (sk_dmarc_check(m->in->dmarc, &in, on_dmarc, m, &m->job) != SK_OK) {
        m->job = NULL;
        dmarc_permerror(m, "the check could not start");
    }
}

/* Go as far as what has come in allows; once everything is in, the
 * result goes out from the loop. */
static void msg_step(sk_inbound_msg *m)
{
    sk_inbound_sess *s = m->s;
    if (!m->dkim_done || !m->arc_done ||
        (s && (slot_pending(&s->mailfrom) || slot_pending(&s->helo_spf))))
        return;
    if (s && s->waiting == m) s->waiting = NULL;
    if (!m->dmarc_started) dmarc_start(m);
    if (!m->dmarc_done) return;
    event_active(m->done_ev, EV_TIMEOUT, 0);
}

static void on_dkim(void *ctx, sk_dkim_verifier *v)
{
    sk_inbound_msg *m = ctx;
    (void)v;
    m->dkim_done = true;
    msg_step(m);
}

static void on_arc(void *ctx, sk_arc_verifier *v)
{
    sk_inbound_msg *m = ctx;
    (void)v;
    m->arc_done = true;
    msg_step(m);
}

/* The ARC chain's keys are looked up alongside DKIM's; a chain that needs
 * no key (none, or a fail of its shape) is done at once. */
static void arc_start(sk_inbound_msg *m)
{
    sk_error err;
    if (sk_arc_verifier_finish(m->arc, &err) != SK_OK) {
        snprintf(m->arc_error, sizeof m->arc_error, "%.200s", err.text);
        m->arc_done = true;
        return;
    }
    if (sk_arc_verifier_resolve(m->arc, m->in->resolver, on_arc, m) != SK_OK) {
        snprintf(m->arc_error, sizeof m->arc_error, "key lookups could not start");
        m->arc_done = true;
    }
}

void sk_inbound_msg_finish(sk_inbound_msg *m, const sk_buf *from, bool from_overflow,
                           sk_inbound_done_fn done, void *ctx)
{
    m->done = done;
    m->ctx = ctx;
    m->from_overflow =
        from_overflow || (from->len && sk_buf_append(&m->from, from->data, from->len));
    if (m->s) m->s->waiting = m;
    /* ARC first: its done may come at once, and msg_step waits for DKIM
     * all the same. */
    arc_start(m);
    sk_error err;
    if (sk_dkim_verifier_finish(m->v, &err) != SK_OK) {
        /* No signature can be evaluated (a header block over the limit). */
        snprintf(m->dkim_error, sizeof m->dkim_error, "%.200s", err.text);
        m->dkim_done = true;
        msg_step(m);
        return;
    }
    /* done may come at once (no signature); msg_step then sends the
     * result through the loop all the same. */
    if (sk_dkim_verifier_resolve(m->v, m->in->resolver, on_dkim, m) != SK_OK) {
        snprintf(m->dkim_error, sizeof m->dkim_error, "key lookups could not start");
        m->dkim_done = true;
        msg_step(m);
    }
}
