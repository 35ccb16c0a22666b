/* The probe's greeting and TLS: the session opened (implicit TLS or
 * plain), the TLS session and certificate verification explained, and a
 * port that does not greet in SMTP identified. */
#include "client/probe_int.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

/* Why a certificate did not verify, and what to do about it. */
static void explain_verify(const run *r, sk_probe_step *s, const sk_tls_info *ti)
{
    const sk_tls_cert *leaf = ti->chain_len ? &ti->chain[0] : NULL;
    const sk_option_names *n = &r->names;
    char when[32] = "";
    switch (ti->verify_code) {
    case X509_V_ERR_CERT_HAS_EXPIRED:
        if (leaf) sk_time_rfc3339(leaf->not_after, when);
        s->explanation = "the server's certificate has expired";
        pr_step_hint(s,
                     "the server's operator must renew the certificate (it expired %s) and "
                     "reload the server",
                     when[0] ? when : "already");
        break;
    case X509_V_ERR_CERT_NOT_YET_VALID:
        if (leaf) sk_time_rfc3339(leaf->not_before, when);
        s->explanation = "the server's certificate is not valid yet";
        pr_step_hint(s, "it becomes valid %s: check the clocks of this machine and the server",
                     when);
        break;
    case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
        s->explanation = "the certificate is self-signed: no authority vouches for it";
        pr_step_hint(s,
                     "use a certificate from a CA (e.g. Let's Encrypt); if you trust this one, "
                     "pass it with %s",
                     n->ca_file);
        break;
    case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
    case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
        s->explanation = "the certificate was issued by an authority this machine does not "
                         "trust (unknown issuer)";
        pr_step_hint(s,
                     "a private CA: pass its certificate with %s; a public CA: the "
                     "server must send its intermediate certificates too (the full chain)",
                     n->ca_file);
        break;
    case X509_V_ERR_HOSTNAME_MISMATCH:
    case X509_V_ERR_IP_ADDRESS_MISMATCH:
        s->explanation = "the certificate is for another name than the one you connected to";
        pr_step_hint(s,
                     "connect with a name the certificate lists (%s; or give it with "
                     "%s), or the operator must add %s to the certificate",
                     leaf && leaf->san[0] ? leaf->san
                     : leaf               ? leaf->subject
                                          : "see above",
                     n->tls_name, r->c->o.tls_name ? r->c->o.tls_name : r->c->o.host);
        break;
    default:
        s->explanation = "the certificate chain did not verify";
        pr_step_hint(s, "see the reason above; %s names the authority to trust", n->ca_file);
    }
}

/* Report the TLS session of the client (after implicit TLS or STARTTLS). */
int pr_report_tls(run *r, sk_probe_step *s, const sk_tls_info *ti, sk_err rc, const sk_error *e)
{
    const sk_client *c = r->c;
    if (!ti || !ti->active) {
        pr_step_detail(s, "TLS handshake failed: %s", e->text[0] ? e->text : sk_strerror(rc));
        s->explanation = e->hint;
        pr_step_hint(s,
                     "the server may not support a TLS version or cipher we accept (TLS 1.2 or "
                     "later); 'openssl s_client -connect %s:%u%s' shows more",
                     c->o.host, c->o.port, c->o.tls == SK_TLS_IMPLICIT ? "" : " -starttls smtp");
        int tlsish = rc == SK_ERR_TLS || rc == SK_ERR_TLS_VERIFY || rc == SK_ERR_PROTOCOL ||
                     rc == SK_ERR_STATE;
        return pr_step_fail(r, s, e, tlsish ? rc : SK_ERR_TLS);
    }
    r->p->tls = *ti;
    s->tls = &r->p->tls;
    if (ti->verified) {
        pr_step_detail(s, "%s %s, certificate verified for %s", ti->version, ti->cipher,
                       ti->sni[0] ? ti->sni : c->o.host);
        pr_step_end(r, s, SK_PROBE_PASS);
        return 0;
    }
    char going_on[96] = "";
    if (c->o.insecure) snprintf(going_on, sizeof going_on, " (%s: going on)", r->names.insecure);
    pr_step_detail(s, "%s %s, certificate NOT verified: %s%s", ti->version, ti->cipher,
                   ti->verify_text, going_on);
    explain_verify(r, s, ti);
    if (c->o.insecure) {
        /* As a client with verification off: encrypted, not authenticated. */
        pr_step_end(r, s, SK_PROBE_WARN);
        return 0;
    }
    return pr_step_fail(r, s, e, SK_ERR_TLS_VERIFY);
}

/* The greeting did not come as SMTP: find out what the peer is. The
 * client may have found out already while it waited (identify_after_ms);
 * else it is asked now (sk_client_identify, as `smtpkit send` does). */
static int diagnose_no_greeting(run *r, sk_probe_step *s, sk_err rc, const sk_error *e)
{
    sk_client *c = r->c;
    const sk_option_names *n = &r->names;
    unsigned timeout = c->o.greeting_timeout_ms;
    sk_peer_info peer;
    memset(&peer, 0, sizeof peer);
    const sk_peer_info *known = sk_client_peer(c);
    /* What an implicit-TLS handshake heard holds only its first octets:
     * ask again for the whole greeting line. */
    if (known && known->kind != SK_PEER_SMTP) {
        peer = *known;
    } else if (rc != SK_ERR_STATE) {
        unsigned wait = timeout < SK_CLIENT_IDENTIFY_WAIT_MS ? timeout : SK_CLIENT_IDENTIFY_WAIT_MS;
        sk_error ie;
        if (sk_client_identify(c, wait, &peer, &ie) != SK_OK && known) peer = *known;
    }
    r->p->peer = peer;
    s->peer = &r->p->peer;
    const char *first = peer.said;
    if (rc == SK_ERR_STATE) {
        pr_step_detail(s, "%s", e->text[0] ? e->text : "aborted (sk_client_abort)");
        return pr_step_fail(r, s, e, SK_ERR_STATE);
    }
    int implicit = c->o.tls == SK_TLS_IMPLICIT;
    switch (peer.kind) {
    case SK_PEER_SMTP:
        if (implicit) {
            pr_step_detail(s,
                           "the server greets in plain text (\"%s\"): it does not speak TLS from "
                           "the first byte",
                           first);
            pr_step_hint_shared(r, s, CL_HINT_PLAIN_SMTP);
            return pr_step_fail(r, s, e, SK_ERR_PROTOCOL);
        }
        if (rc != SK_ERR_TIMEOUT) {
            pr_step_detail(s, "the greeting (\"%s\") cannot be used: %s", first,
                           e->text[0] ? e->text : sk_strerror(rc));
            pr_step_hint(s, "the server breaks the SMTP reply syntax (RFC 5321 4.2); tell its "
                            "operator");
            return pr_step_fail(r, s, e, SK_ERR_PROTOCOL);
        }
        pr_step_detail(s,
                       "the greeting (\"%s\") came on another connection, but not on this one "
                       "within %u ms",
                       first, timeout);
        pr_step_hint_shared(r, s, CL_HINT_GREETS_OTHERS);
        return pr_step_fail(r, s, e, SK_ERR_TIMEOUT);
    case SK_PEER_HTTP:
        pr_step_detail(s, "not an SMTP server: it answered like a web server (\"%s\")", first);
        pr_step_hint_shared(r, s, CL_HINT_HTTP);
        return pr_step_fail(r, s, e, SK_ERR_PROTOCOL);
    case SK_PEER_OTHER:
        pr_step_detail(s, "not an SMTP server: it said \"%s\"", first);
        pr_step_hint(s, "wrong port or host? SMTP is on 25, 587 or 465");
        return pr_step_fail(r, s, e, SK_ERR_PROTOCOL);
    case SK_PEER_TLS:
        if (!implicit) {
            pr_step_detail(s, "the server speaks TLS from the first byte: no plain-text greeting");
            pr_step_hint_shared(r, s, CL_HINT_TLS_FIRST);
            return pr_step_fail(r, s, e, SK_ERR_PROTOCOL);
        }
        break;
    default:
        break;
    }
    if (implicit) {
        pr_step_detail(s, "TLS handshake failed: %s", e->text[0] ? e->text : sk_strerror(rc));
        pr_step_hint(s,
                     "is this port TLS from the first byte? Port 465 usually is; 587 and 25 use "
                     "%s",
                     n->tls_starttls);
        return pr_step_fail(r, s, e, rc == SK_ERR_TIMEOUT ? SK_ERR_TIMEOUT : SK_ERR_TLS);
    }
    if (rc == SK_ERR_TIMEOUT || peer.kind == SK_PEER_SILENT) {
        pr_step_detail(s, "connected, but no greeting within %u ms, and no answer when spoken to",
                       timeout);
        if (peer.kind == SK_PEER_SILENT)
            pr_step_hint_shared(r, s, CL_HINT_SILENT);
        else
            pr_step_hint(s, "the server is stuck or overloaded, or this is not a mail server (a "
                            "proxy or tarpit holding the connection); try again later or check "
                            "the port");
        return pr_step_fail(r, s, e, SK_ERR_TIMEOUT);
    }
    if (rc == SK_ERR_CLOSED || peer.kind == SK_PEER_CLOSED) {
        pr_step_detail(s, "the server closed the connection without a greeting");
        pr_step_hint(s, "it refuses this client (access list, connection limit, or blocklisted "
                        "IP); check the server's log");
        return pr_step_fail(r, s, e, SK_ERR_CLOSED);
    }
    pr_step_detail(s, "no usable greeting: %s", e->text[0] ? e->text : sk_strerror(rc));
    return pr_step_fail(r, s, e, SK_ERR_PROTOCOL);
}

int pr_check_open(run *r)
{
    sk_client *c = r->c;
    /* With implicit TLS the handshake comes first, then the greeting. */
    sk_probe_step *ts = c->o.tls == SK_TLS_IMPLICIT ? pr_step_begin(r, SK_PROBE_TLS) : NULL;
    sk_error e;
    sk_error_clear(&e);
    uint64_t t0 = sk_now_ms();
    sk_err rc = sk_client_open(c, &e);
    long elapsed = (long)(sk_now_ms() - t0);
    const sk_tls_info *ti = sk_client_tls_info(c);

    if (ts) {
        snprintf(ts->address, sizeof ts->address, "%s", r->reach_addr);
        ts->elapsed_ms = elapsed;
        if (ti && ti->active) {
            if (pr_report_tls(r, ts, ti, rc, &e) < 0) return -1;
        } else if (rc != SK_OK) {
            return diagnose_no_greeting(r, ts, rc, &e);
        }
    }

    sk_probe_step *s = pr_step_begin(r, SK_PROBE_GREETING);
    snprintf(s->address, sizeof s->address, "%s", r->reach_addr);
    s->elapsed_ms = elapsed;
    const sk_reply *g = sk_client_greeting(c);
    if (rc == SK_OK && g) {
        pr_step_reply(s, g);
        pr_step_detail(s, "%d %s", g->code, g->text);
        pr_step_end(r, s, SK_PROBE_PASS);
        return 0;
    }
    if (sk_reply_class_of(e.code) >= SK_REPLY_TRANSIENT ||
        (g && sk_reply_class_of(g->code) >= SK_REPLY_TRANSIENT)) {
        /* RFC 5321 3.1: 554 instead of 220 means "no service for you";
         * 421 means "not now". */
        if (sk_reply_class_of(e.code) >= SK_REPLY_TRANSIENT)
            pr_step_error_reply(s, &e);
        else
            pr_step_reply(s, g);
        pr_step_detail(s, "the server refused the session: %d %s%s%s", s->reply.code,
                       s->reply.enhanced, s->reply.enhanced[0] ? " " : "", s->reply.text);
        return pr_step_fail(r, s, &e,
                            sk_reply_class_of(s->reply.code) == SK_REPLY_PERMANENT
                                ? SK_ERR_PERMFAIL
                                : SK_ERR_TEMPFAIL);
    }
    return diagnose_no_greeting(r, s, rc, &e);
}
