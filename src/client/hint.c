/* What to do about a client's error, for people, naming the caller's
 * settings (sk_option_names): sk_client_hint, and the texts the probe
 * checklist shares with it (one place for each). */
#include <stdio.h>
#include <string.h>

#include "client/client_int.h"

static const sk_option_names plain_words = {
    .tls_starttls = "STARTTLS",
    .tls_implicit = "implicit TLS",
    .tls_none = "no TLS",
    .ca_file = "the CA file setting",
    .insecure = "verification off",
    .tls_name = "the TLS name setting",
    .timeout = "the timeout",
    .server = "the server setting",
    .credentials = "the user name and password",
    .allow_plaintext_auth = "allow plain-text AUTH",
};

static const char *name_or(const char *set, const char *plain)
{
    return set ? set : plain;
}

void cl_names_resolve(const sk_option_names *in, sk_option_names *out)
{
    const sk_option_names *p = &plain_words;
    *out = (sk_option_names){
        .tls_starttls = name_or(in ? in->tls_starttls : NULL, p->tls_starttls),
        .tls_implicit = name_or(in ? in->tls_implicit : NULL, p->tls_implicit),
        .tls_none = name_or(in ? in->tls_none : NULL, p->tls_none),
        .ca_file = name_or(in ? in->ca_file : NULL, p->ca_file),
        .insecure = name_or(in ? in->insecure : NULL, p->insecure),
        .tls_name = name_or(in ? in->tls_name : NULL, p->tls_name),
        .timeout = name_or(in ? in->timeout : NULL, p->timeout),
        .server = name_or(in ? in->server : NULL, p->server),
        .credentials = name_or(in ? in->credentials : NULL, p->credentials),
        .allow_plaintext_auth =
            name_or(in ? in->allow_plaintext_auth : NULL, p->allow_plaintext_auth),
    };
}

void cl_hint_format(cl_hint h, const sk_option_names *n, char *out, size_t size)
{
    switch (h) {
    case CL_HINT_TLS_FIRST:
        snprintf(out, size, "this port speaks TLS first: use %s", n->tls_implicit);
        break;
    case CL_HINT_HTTP:
        snprintf(out, size,
                 "this looks like an HTTP server: check the port in %s (SMTP is on 587, 465 "
                 "or 25)",
                 n->server);
        break;
    case CL_HINT_PLAIN_SMTP:
        snprintf(out, size,
                 "this port speaks plain SMTP: use %s (or %s), or the implicit-TLS port "
                 "(usually 465)",
                 n->tls_starttls, n->tls_none);
        break;
    case CL_HINT_GREETS_OTHERS:
        snprintf(out, size,
                 "the server greets other connections but not this one in time: it is slow "
                 "or overloaded; try again later, or raise %s",
                 n->timeout);
        break;
    case CL_HINT_SILENT:
        snprintf(out, size,
                 "the server accepted the connection but said nothing, not even to a TLS or "
                 "an HTTP hello: check the host and port in %s, or raise %s for a slow server",
                 n->server, n->timeout);
        break;
    case CL_HINT_AUTH_NEEDS_TLS:
        snprintf(out, size, "use TLS (%s or %s), or %s on a trusted network", n->tls_starttls,
                 n->tls_implicit, n->allow_plaintext_auth);
        break;
    case CL_HINT_NO_STARTTLS:
        snprintf(out, size,
                 "the server does not offer STARTTLS: try its implicit-TLS port with %s "
                 "(usually 465), or %s only on a network you trust",
                 n->tls_implicit, n->tls_none);
        break;
    case CL_HINT_TLS_NO_GREETING:
        snprintf(out, size,
                 "TLS works, but no SMTP greeting came inside it: is this an SMTP server? (an "
                 "HTTPS port, too, waits silently for its client) Check the port in %s",
                 n->server);
        break;
    case CL_HINT_NO_GREETING:
        snprintf(out, size,
                 "no greeting: a server expecting implicit TLS (port 465) waits silently; try "
                 "%s, or check the port",
                 n->tls_implicit);
        break;
    case CL_HINT_CONNECT:
        snprintf(out, size,
                 "is the server running and listening on that port? (check the port in %s)",
                 n->server);
        break;
    case CL_HINT_DNS:
        snprintf(out, size, "the server's name did not resolve; check %s", n->server);
        break;
    case CL_HINT_TIMEOUT:
        snprintf(out, size,
                 "the server did not answer in time; check the port and firewalls, or raise %s",
                 n->timeout);
        break;
    case CL_HINT_CLOSED:
        snprintf(out, size, "the server closed the connection; try again later");
        break;
    case CL_HINT_NOT_SMTP:
        snprintf(out, size,
                 "the peer does not speak SMTP there; check the port and the TLS mode: %s on "
                 "465, %s on 587",
                 n->tls_implicit, n->tls_starttls);
        break;
    case CL_HINT_TLS:
        snprintf(out, size, "the TLS handshake failed; check the TLS mode: %s on 465, %s on 587",
                 n->tls_implicit, n->tls_starttls);
        break;
    case CL_HINT_TLS_VERIFY:
        snprintf(out, size,
                 "the certificate is not trusted or names another host: give the CA with %s "
                 "(or %s, for tests only)",
                 n->ca_file, n->insecure);
        break;
    case CL_HINT_UNSUPPORTED:
        snprintf(out, size, "the server does not offer what this needs (e.g. STARTTLS, SMTPUTF8)");
        break;
    case CL_HINT_AUTH:
        snprintf(out, size, "check %s", n->credentials);
        break;
    case CL_HINT_TEMPFAIL:
        snprintf(out, size, "a temporary refusal: trying again later may work");
        break;
    case CL_HINT_PERMFAIL:
        snprintf(out, size, "a permanent refusal: sending again as is will fail the same way");
        break;
    case CL_HINT_CONFIG:
        snprintf(out, size, "check the options");
        break;
    default:
        if (size) out[0] = '\0';
    }
}

/* Before any greeting the client may have found out what listens on the
 * port (opts.identify_after_ms, sk_client_identify): name the setting that
 * fits it. */
static cl_hint peer_hint(const sk_client *c, const sk_error *e)
{
    if (!c || sk_client_greeting(c) || (e->step != SK_STEP_GREETING && e->step != SK_STEP_TLS))
        return CL_HINT_NONE;
    const sk_peer_info *peer = sk_client_peer(c);
    switch (peer ? peer->kind : SK_PEER_UNKNOWN) {
    case SK_PEER_TLS:
        return e->step == SK_STEP_GREETING ? CL_HINT_TLS_FIRST : CL_HINT_NONE;
    case SK_PEER_HTTP:
        return CL_HINT_HTTP;
    case SK_PEER_SMTP:
        if (e->step == SK_STEP_TLS) return CL_HINT_PLAIN_SMTP;
        return e->err == SK_ERR_TIMEOUT ? CL_HINT_GREETS_OTHERS : CL_HINT_NONE;
    case SK_PEER_SILENT:
        return e->err == SK_ERR_TIMEOUT ? CL_HINT_SILENT : CL_HINT_NONE;
    default:
        return CL_HINT_NONE;
    }
}

/* Where the library's own hint (plain words, in err) would point at a
 * setting: the hint that names it. */
static cl_hint situation_hint(const sk_client *c, const sk_error *e)
{
    cl_hint h = peer_hint(c, e);
    if (h != CL_HINT_NONE) return h;
    if (e->step == SK_STEP_AUTH && e->err == SK_ERR_CONFIG) return CL_HINT_AUTH_NEEDS_TLS;
    if (e->step == SK_STEP_TLS && e->err == SK_ERR_UNSUPPORTED) return CL_HINT_NO_STARTTLS;
    if (e->step == SK_STEP_GREETING && e->err == SK_ERR_TIMEOUT) {
        const sk_tls_info *ti = c ? sk_client_tls_info(c) : NULL;
        if (ti && ti->active) return CL_HINT_TLS_NO_GREETING;
        if (!(c && sk_client_peer(c))) return CL_HINT_NO_GREETING;
    }
    return CL_HINT_NONE;
}

/* When nothing more is known than the kind of error. */
static cl_hint kind_hint(sk_err e)
{
    switch (e) {
    case SK_ERR_CONNECT:
        return CL_HINT_CONNECT;
    case SK_ERR_DNS:
        return CL_HINT_DNS;
    case SK_ERR_TIMEOUT:
        return CL_HINT_TIMEOUT;
    case SK_ERR_CLOSED:
        return CL_HINT_CLOSED;
    case SK_ERR_PROTOCOL:
        return CL_HINT_NOT_SMTP;
    case SK_ERR_TLS:
        return CL_HINT_TLS;
    case SK_ERR_TLS_VERIFY:
        return CL_HINT_TLS_VERIFY;
    case SK_ERR_UNSUPPORTED:
        return CL_HINT_UNSUPPORTED;
    case SK_ERR_AUTH:
        return CL_HINT_AUTH;
    case SK_ERR_TEMPFAIL:
        return CL_HINT_TEMPFAIL;
    case SK_ERR_PERMFAIL:
        return CL_HINT_PERMFAIL;
    case SK_ERR_CONFIG:
        return CL_HINT_CONFIG;
    default:
        return CL_HINT_NONE;
    }
}

const char *sk_client_hint(const sk_client *c, const sk_error *err, const sk_option_names *names,
                           char *out, size_t size)
{
    if (!out || !size) return NULL;
    out[0] = '\0';
    if (!err || err->err == SK_OK) return NULL;
    cl_hint h = situation_hint(c, err);
    if (h == CL_HINT_NONE) {
        const char *said = err->hint;
        if (!said && err->code) said = sk_reply_explain(err->code, err->enhanced, err->text);
        if (said) {
            snprintf(out, size, "%s", said);
            return out;
        }
        h = kind_hint(err->err);
        if (h == CL_HINT_NONE) return NULL;
    }
    sk_option_names n;
    cl_names_resolve(names, &n);
    cl_hint_format(h, &n, out, size);
    return out;
}
