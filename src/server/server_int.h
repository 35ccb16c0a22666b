/* Private structures of the SMTP server: the server, its settings
 * snapshot, listeners and sessions. */
#ifndef SK_SERVER_INT_H
#define SK_SERVER_INT_H

/* OpenSSL's pre-1.1 names include a macro "sk_free", which is ours. */
#ifndef OPENSSL_NO_DEPRECATED
#define OPENSSL_API_COMPAT    30000
#define OPENSSL_NO_DEPRECATED 1
#endif

#include <smtpkit/server.h>

#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <netinet/in.h>
#include <openssl/ssl.h>

/* Settings as a session sees them: a snapshot shared by reference, so that
 * sk_server_reload changes only sessions that start afterwards. */
typedef struct sk_server_cfg {
    unsigned refs;
    char *hostname;
    SSL_CTX *ssl; /* NULL: no certificate */
    uint64_t max_message_size;
    unsigned max_recipients, max_connections, max_connections_per_ip;
    unsigned greeting_timeout_ms, command_timeout_ms, data_timeout_ms, greeting_delay_ms;
    unsigned max_idle_commands, auth_failures_max, auth_throttle_ms;
    int auth_plaintext_loopback;
    sk_logger logger;
} sk_server_cfg;

typedef struct sk_listener {
    struct evconnlistener *l;
    struct event *retry; /* re-enables accepting after an error (EMFILE) */
    sk_server *srv;
    sk_listen_kind kind;
    int port;
} sk_listener;

typedef struct auth_fail {
    char addr[INET6_ADDRSTRLEN];
    unsigned count;
    uint64_t first_ms;
} auth_fail;

struct sk_server {
    struct event_base *base;
    int own_base;
    sk_server_cfg *cfg;
    sk_listener listeners[SK_SERVER_LISTENERS_MAX];
    size_t nlisteners;
    sk_session *sessions; /* doubly linked */
    size_t nsessions;
    int stopping;
    uint64_t counter;
    struct sk_signal_hook {
        struct event *ev;
        sk_server *srv;
        sk_signal_fn fn;
        void *ctx;
    } signals[8];
    size_t nsignals;
    auth_fail *auth_fails; /* auth.c; lazily allocated, SK_SERVER_AUTH_TRACK_MAX */
    size_t nauth_fails;

    sk_on_connect_fn on_connect;
    void *on_connect_ctx;
    sk_on_helo_fn on_helo;
    void *on_helo_ctx;
    sk_on_auth_fn on_auth;
    void *on_auth_ctx;
    sk_on_mail_fn on_mail;
    void *on_mail_ctx;
    sk_on_rcpt_fn on_rcpt;
    void *on_rcpt_ctx;
    sk_on_data_start_fn on_data_start;
    sk_on_data_chunk_fn on_data_chunk;
    sk_on_data_end_fn on_data_end;
    void *on_data_ctx;
    sk_on_disconnect_fn on_disconnect;
    void *on_disconnect_ctx;
    sk_on_stopped_fn on_stopped;
    void *on_stopped_ctx;
    int stopped; /* on_stopped has been called */
};

void sk_server_cfg_release(sk_server_cfg *c);
/* "smtp", "submission" or "smtps", for logs. */
const char *sk_server_kind_name(sk_listen_kind kind);

static inline struct timeval sk_server_timeval(unsigned ms)
{
    return (struct timeval){(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};
}

/* Session life, in session.c. */
void sk_session_start(sk_server *srv, sk_listen_kind kind, evutil_socket_t fd,
                      const struct sockaddr *sa, int salen);
/* Server is stopping: sessions without a transaction in flight end now. */
void sk_session_stop_idle(sk_session *s);
/* Server is being freed: end the session now, whatever its state. */
void sk_session_destroy(sk_session *s);
sk_session *sk_session_next(const sk_session *s);
/* Called by session.c when a session is gone. */
void sk_server_session_gone(sk_server *srv);

#endif
