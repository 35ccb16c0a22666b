/* The AUTH helper of `smtpkit serve`: a separate process that holds the
 * --users password hashes and answers "user + password -> yes/no", so that
 * the process parsing network input never reads them (docs/SECURITY.md). */
#ifndef SK_DAEMON_AUTHD_H
#define SK_DAEMON_AUTHD_H

#include <smtpkit/util.h>

#include <sys/types.h>

struct event_base;

typedef struct sk_authd sk_authd;

/* The outcome of one check. */
typedef enum sk_authd_result {
    SK_AUTHD_FAIL = 0,       /* unknown user or wrong password */
    SK_AUTHD_OK = 1,         /* the password matches the user's hash */
    SK_AUTHD_UNAVAILABLE = 2 /* the helper is gone or busy: answer 454 4.7.0 */
} sk_authd_result;

typedef void (*sk_authd_done_fn)(void *ctx, sk_authd_result r);

/* Fork the helper, which loads users_path and answers checks. Call it
 * before any thread is started and before dropping privileges: the helper
 * keeps the privileges it was started with, to read the file again on
 * reload. A bad file is SK_ERR_CONFIG with "FILE:LINE: reason" in err,
 * and no helper is left. */
sk_authd *sk_authd_start(const char *users_path, const sk_logger *log, sk_error *err);
/* Receive the helper's answers on base's loop. */
SK_NODISCARD sk_err sk_authd_attach(sk_authd *a, struct event_base *base, sk_error *err);
/* Ask whether password is user's. fn is called once, on the loop, also
 * when the helper has gone (SK_AUTHD_UNAVAILABLE), but never from inside
 * this call: a refused request returns an error instead. */
SK_NODISCARD sk_err sk_authd_check(sk_authd *a, const char *user, const char *password,
                                   sk_authd_done_fn fn, void *ctx);
/* Make the helper read its users file again (SIGHUP); it keeps the old
 * table when the new file is bad, and logs the outcome. */
void sk_authd_reload(sk_authd *a);
pid_t sk_authd_pid(const sk_authd *a);
/* Close the channel (the helper exits on it), wait for the helper and
 * answer the checks still pending with SK_AUTHD_UNAVAILABLE. */
void sk_authd_free(sk_authd *a);

#endif
