/* AUTH on the server (RFC 4954): PLAIN and LOGIN decoded by the sasl module,
 * checked by the on_auth hook, and throttling of addresses that keep failing. */
#include "server/session_int.h"
#include "sasl/sasl_server.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

/* AUTH failures per client address, within a window (a fixed-size table:
 * the oldest entry makes room for a new address). */
static auth_fail *auth_find(sk_server *srv, const char *addr, int create)
{
    uint64_t now = sk_now_ms();
    size_t oldest = 0;
    for (size_t i = 0; i < srv->nauth_fails; i++) {
        auth_fail *f = &srv->auth_fails[i];
        if (now - f->first_ms >= srv->cfg->auth_throttle_ms) f->count = 0;
        if (!strcmp(f->addr, addr)) return f;
        if (f->first_ms < srv->auth_fails[oldest].first_ms) oldest = i;
    }
    if (!create) return NULL;
    if (!srv->auth_fails) {
        srv->auth_fails = sk_calloc(SK_SERVER_AUTH_TRACK_MAX, sizeof *srv->auth_fails);
        if (!srv->auth_fails) return NULL;
    }
    auth_fail *f = srv->nauth_fails < SK_SERVER_AUTH_TRACK_MAX
                       ? &srv->auth_fails[srv->nauth_fails++]
                       : &srv->auth_fails[oldest];
    snprintf(f->addr, sizeof f->addr, "%s", addr);
    f->count = 0;
    f->first_ms = now;
    return f;
}

static int auth_blocked(sk_server *srv, const char *addr)
{
    auth_fail *f = auth_find(srv, addr, 0);
    return f && f->count >= srv->cfg->auth_failures_max;
}

static void auth_failed(sk_server *srv, const char *addr)
{
    auth_fail *f = auth_find(srv, addr, 1);
    if (!f) return;
    if (!f->count) f->first_ms = sk_now_ms();
    f->count++;
}

int sk_sess_auth_offered(const sk_session *s)
{
    return s->srv->on_auth && (s->tls || (s->cfg->auth_plaintext_loopback && s->loopback));
}

/* The answer to an AUTH, now or from sk_session_reply. */
static void auth_result(sk_session *s, const char *mech, const char *user, sk_reply r)
{
    sk_server *srv = s->srv;
    if (sk_reply_class_of(r.code) == SK_REPLY_INVALID)
        r = sk_reply_make(454, "4.7.0", "Temporary authentication failure");
    sk_buf esc = SK_BUF_INIT(4 * SK_SMTP_LINE_MAX_OCTETS);
    if (sk_log_escape(&esc, user, strlen(user)) != SK_OK) sk_buf_reset(&esc);
    if (sk_reply_class_of(r.code) == SK_REPLY_SUCCESS) {
        s->auth_user = sk_strdup(user);
        if (!s->auth_user) {
            sk_sess_reply(s, 454, "4.7.0", "Temporary authentication failure");
        } else {
            s->idle = 0;
            sk_log(logger(s), SK_LOG_INFO, "%s server auth mech=%s user=\"%s\" result=ok", s->id,
                   mech, sk_buf_cstr(&esc));
            sk_sess_reply(s, 235, "2.7.0", "Authentication successful");
        }
        sk_buf_free(&esc);
        return;
    }
    sk_log(logger(s), SK_LOG_WARN, "%s server auth-failed peer=%s mech=%s user=\"%s\" reply=%d",
           s->id, s->peer, mech, sk_buf_cstr(&esc), r.code);
    sk_buf_free(&esc);
    if (sk_reply_class_of(r.code) == SK_REPLY_PERMANENT) auth_failed(srv, s->peer);
    if (auth_blocked(srv, s->peer)) {
        sk_log(logger(s), SK_LOG_WARN, "%s server auth-throttle peer=%s failures=%u", s->id,
               s->peer, s->cfg->auth_failures_max);
        sk_sess_end(s, 421, "4.7.0", "%s Too many authentication failures, closing",
                    s->cfg->hostname);
        return;
    }
    sk_sess_reply_r(s, &r);
}

void sk_sess_auth_answer(sk_session *s, sk_reply r)
{
    char *user = s->pending_user;
    s->pending_user = NULL;
    sk_sess_set_state(s, SS_READY);
    auth_result(s, s->mech == MECH_PLAIN ? "PLAIN" : "LOGIN", user, r);
    sk_free(user);
}

static void auth_check(sk_session *s, const char *mech, const char *authzid, const char *user,
                       const char *password)
{
    sk_server *srv = s->srv;
    sk_sess_set_state(s, SS_READY);
    sk_reply r = srv->on_auth(s, mech, authzid, user, password, srv->on_auth_ctx);
    if (r.code == 0) {
        /* The program checks elsewhere (a slow hash off the loop) and
         * answers with sk_session_reply. */
        s->pending_user = sk_strdup(user);
        if (s->pending_user) {
            s->mech = !strcmp(mech, "PLAIN") ? MECH_PLAIN : MECH_LOGIN;
            sk_sess_wait(s);
            return;
        }
    }
    auth_result(s, mech, user, r);
}

/* The exchange ends without a verdict on the password (RFC 4954 4: 501). */
static void sasl_failed(sk_session *s, const char *enh, const char *text)
{
    sk_sess_set_state(s, SS_READY);
    sk_sess_reply(s, 501, enh, "%s", text);
}

static void sasl_plain(sk_session *s, const char *b64)
{
    const char *authzid, *user, *password;
    sk_buf dec = SK_BUF_INIT(SK_SMTP_LINE_MAX_OCTETS);
    if (sk_sasl_server_plain(b64, strlen(b64), &dec, &authzid, &user, &password) != SK_OK) {
        sasl_failed(s, "5.5.2", "Cannot decode AUTH PLAIN response");
    } else {
        auth_check(s, "PLAIN", authzid, user, password);
    }
    buf_wipe(&dec);
}

void sk_sess_auth_line(sk_session *s, const char *line)
{
    /* RFC 4954 4: "*" cancels. */
    if (!strcmp(line, "*")) {
        sasl_failed(s, "5.0.0", "Authentication cancelled");
        return;
    }
    if (s->mech == MECH_PLAIN) {
        sasl_plain(s, line);
        return;
    }
    sk_buf dec = SK_BUF_INIT(SK_SMTP_LINE_MAX_OCTETS);
    if (sk_sasl_server_login(line, strlen(line), &dec) != SK_OK) {
        sasl_failed(s, "5.5.2", "Cannot decode AUTH LOGIN response");
    } else if (!s->sasl.len && !s->sasl.data) {
        if (sk_buf_append(&s->sasl, dec.data ? dec.data : "", dec.len) != SK_OK) {
            sasl_failed(s, "5.5.2", "User name too long");
        } else {
            sk_sess_reply(s, 334, NULL, "UGFzc3dvcmQ6"); /* "Password:" */
        }
    } else {
        auth_check(s, "LOGIN", "", sk_buf_cstr(&s->sasl), sk_buf_cstr(&dec));
    }
    buf_wipe(&dec);
    if (s->state != SS_AUTH) buf_wipe(&s->sasl);
}

void sk_sess_cmd_auth(sk_session *s, const char *args)
{
    /* No mechanisms at all: never announced, so 502 (RFC 5321 4.2.4).
     * Mechanisms that wait for TLS get 538 instead (RFC 4954 6), and a
     * second AUTH 503 (RFC 4954 4). */
    if (!s->srv->on_auth) {
        sk_sess_reply(s, 502, "5.5.1", "AUTH not available");
        return;
    }
    if (!sk_sess_auth_offered(s)) {
        /* RFC 4954 6: never over an unprotected network connection. */
        sk_sess_reply(s, 538, "5.7.11",
                      "Encryption required for requested authentication mechanism");
        return;
    }
    if (s->auth_user) {
        sk_sess_reply(s, 503, "5.5.1", "Already authenticated");
        return;
    }
    if (auth_blocked(s->srv, s->peer)) {
        sk_log(logger(s), SK_LOG_WARN, "%s server auth-throttle peer=%s", s->id, s->peer);
        sk_sess_reply(s, 454, "4.7.0", "Too many authentication failures, try again later");
        return;
    }
    char mech[32];
    const char *sp = strchr(args, ' ');
    size_t ml = sp ? (size_t)(sp - args) : strlen(args);
    if (!ml || ml >= sizeof mech) {
        sk_sess_reply(s, 501, "5.5.4", "Syntax: AUTH mechanism [initial-response]");
        return;
    }
    memcpy(mech, args, ml);
    mech[ml] = '\0';
    const char *initial = sp ? sp + 1 : NULL;
    sk_buf_free(&s->sasl);
    sk_buf_init(&s->sasl, SK_SMTP_LINE_MAX_OCTETS);
    if (!strcasecmp(mech, "PLAIN")) {
        s->mech = MECH_PLAIN;
        sk_sess_set_state(s, SS_AUTH);
        if (!initial) {
            sk_sess_reply(s, 334, NULL, " ");
            return;
        }
        /* RFC 4954 4: "=" is an empty initial response. */
        sk_sess_auth_line(s, strcmp(initial, "=") ? initial : "");
        return;
    }
    if (!strcasecmp(mech, "LOGIN")) {
        s->mech = MECH_LOGIN;
        sk_sess_set_state(s, SS_AUTH);
        if (!initial) {
            sk_sess_reply(s, 334, NULL, "VXNlcm5hbWU6"); /* "Username:" */
            return;
        }
        sk_sess_auth_line(s, initial);
        return;
    }
    sk_sess_reply(s, 504, "5.5.4", "Unrecognized authentication mechanism");
}
