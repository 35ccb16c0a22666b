/* TLS on a session: implicit TLS (RFC 8314), STARTTLS (RFC 3207), where TLS
 * is required first, and what is logged of the handshake. */
#include "server/session_int.h"

#include <event2/buffer.h>
#include <event2/bufferevent_ssl.h>
#include <openssl/err.h>
#include <stdio.h>

struct bufferevent *sk_sess_tls_accept(sk_session *s, evutil_socket_t fd)
{
    struct bufferevent *bev = NULL;
    SSL *ssl = SSL_new(s->cfg->ssl);
    if (ssl)
        bev = bufferevent_openssl_socket_new(s->srv->base, fd, ssl, BUFFEREVENT_SSL_ACCEPTING,
                                             BEV_OPT_CLOSE_ON_FREE);
    if (!bev) {
        SSL_free(ssl);
        return NULL;
    }
    /* A client that closes without close_notify is common and harmless:
     * SMTP has its own end (QUIT, the end of DATA). */
    bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
    return bev;
}

void sk_sess_tls_up(sk_session *s)
{
    SSL *ssl = bufferevent_openssl_get_ssl(s->bev);
    s->tls = 1;
    snprintf(s->tls_version, sizeof s->tls_version, "%s", SSL_get_version(ssl));
    snprintf(s->tls_cipher, sizeof s->tls_cipher, "%s", SSL_get_cipher_name(ssl));
    sk_log(logger(s), SK_LOG_INFO, "%s server tls version=%s cipher=%s", s->id, s->tls_version,
           s->tls_cipher);
}

void sk_sess_tls_error(sk_session *s)
{
    unsigned long e = ERR_get_error();
    if (s->state != SS_TLS && !e) return;
    char buf[200] = "";
    if (e) ERR_error_string_n(e, buf, sizeof buf);
    ERR_clear_error();
    sk_log(logger(s), SK_LOG_INFO, "%s server tls-failed peer=%s error=\"%s\"", s->id, s->peer,
           buf);
}

int sk_sess_starttls_offered(const sk_session *s)
{
    return s->cfg->ssl && !s->tls && s->kind != SK_LISTEN_SMTPS;
}

int sk_sess_tls_required(const sk_session *s)
{
    return s->kind == SK_LISTEN_SUBMISSION && s->cfg->ssl && !s->tls &&
           !(s->cfg->auth_plaintext_loopback && s->loopback);
}

void sk_sess_cmd_starttls(sk_session *s, const char *args)
{
    /* Not announced here (no certificate, implicit TLS, or TLS already on:
     * RFC 3207 4.2), so a known command this session does not implement:
     * 502 (RFC 5321 4.2.4). 454 is kept for a temporary failure. */
    if (s->tls) {
        sk_sess_reply(s, 502, "5.5.1", "TLS already active");
        return;
    }
    if (!sk_sess_starttls_offered(s)) {
        sk_sess_reply(s, 502, "5.5.1", "STARTTLS not available");
        return;
    }
    if (!sk_sess_no_args(s, args)) return;
    SSL *ssl = SSL_new(s->cfg->ssl);
    if (!ssl) {
        sk_sess_reply(s, 454, "4.7.0", "TLS not available due to temporary reason");
        return;
    }
    sk_sess_reply(s, 220, "2.0.0", "Ready to start TLS");
    /* RFC 3207 4.2 / CVE-2011-0411: anything the client sent after STARTTLS
     * in clear text is dropped, never read as if it came over TLS. Bytes
     * that arrive later are fed to the handshake, which then fails. */
    struct evbuffer *in = bufferevent_get_input(s->bev);
    size_t junk = evbuffer_get_length(in);
    if (junk) {
        sk_log(logger(s), SK_LOG_WARN, "%s server starttls-injection peer=%s octets=%zu", s->id,
               s->peer, junk);
        evbuffer_drain(in, junk);
    }
    struct bufferevent *f = bufferevent_openssl_filter_new(
        s->srv->base, s->bev, ssl, BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE);
    if (!f) {
        SSL_free(ssl);
        sk_sess_close_after_flush(s);
        return;
    }
    bufferevent_openssl_set_allow_dirty_shutdown(f, 1);
    sk_sess_use_bev(s, f);
    /* RFC 3207 4.2: forget what the client said before TLS, its AUTH
     * (clear-text loopback AUTH) too. */
    sk_sess_tx_reset(s);
    sk_free(s->helo);
    s->helo = NULL;
    sk_free(s->auth_user);
    s->auth_user = NULL;
    s->esmtp = 0;
    sk_sess_set_state(s, SS_TLS);
    bufferevent_enable(f, EV_READ);
}
