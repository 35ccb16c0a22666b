/* Put a message read from stdin into a spool with the public API, the way
 * the server does after DATA; prints its queue ID. Used by the queue tests.
 *
 *   spool_inject DATA-DIR --from ADDR --to ADDR [--to ADDR]... [--hold]
 *                [--deferred ATTEMPTS] [--count N] < message
 *
 * --count N puts the message in N times (one ID a line).
 */
#include <smtpkit/smtpkit.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void on_done(void *ctx, sk_err err, const char *id)
{
    *(sk_err *)ctx = err;
    if (!err) printf("%s\n", id);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: spool_inject DATA-DIR --from A --to B [--hold] "
                        "[--deferred N] [--count N] < message\n");
        return 64;
    }
    sk_spool_rcpt rcpts[32] = {0};
    sk_spool_envelope env = {.sender = "", .esmtp = 1, .helo = "inject", .peer = "127.0.0.1"};
    long deferred = -1, count = 1;
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "--from") && i + 1 < argc) {
            env.sender = argv[++i];
        } else if (!strcmp(argv[i], "--to") && i + 1 < argc && env.nrcpts < 32) {
            rcpts[env.nrcpts++].addr = argv[++i];
        } else if (!strcmp(argv[i], "--hold")) {
            env.state = SK_SPOOL_HOLD;
        } else if (!strcmp(argv[i], "--deferred") && i + 1 < argc) {
            deferred = strtol(argv[++i], NULL, 10);
        } else if (!strcmp(argv[i], "--count") && i + 1 < argc) {
            count = strtol(argv[++i], NULL, 10);
            if (count < 1) {
                fprintf(stderr, "spool_inject: --count needs a number over 0\n");
                return 64;
            }
        } else {
            fprintf(stderr, "spool_inject: bad argument '%s'\n", argv[i]);
            return 64;
        }
    }
    env.rcpts = rcpts;
    sk_error err;
    /* No event base: commits are synchronous. */
    sk_spool *s = sk_spool_open(argv[1], NULL, NULL, &err);
    if (!s) {
        fprintf(stderr, "spool_inject: %s\n", err.text);
        return 74;
    }
    /* The message, read once for all copies. */
    sk_buf body = SK_BUF_INIT(64 * 1024 * 1024);
    char buf[65536];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, stdin)) > 0) {
        if (sk_buf_append(&body, buf, n)) {
            fprintf(stderr, "spool_inject: the message is too large\n");
            sk_buf_free(&body);
            sk_spool_free(s);
            return 65;
        }
    }
    sk_err result = SK_OK;
    for (long k = 0; k < count && !result; k++) {
        sk_spool_msg *m = sk_spool_begin(s, &env, &err);
        if (!m) {
            fprintf(stderr, "spool_inject: %s\n", err.text);
            result = SK_ERR_IO;
            break;
        }
        if (body.len) (void)sk_spool_write(m, body.data, body.len);
        char id[SK_SPOOL_ID_SIZE];
        snprintf(id, sizeof id, "%s", sk_spool_msg_id(m));
        result = SK_ERR_STATE;
        sk_spool_commit(m, on_done, &result);
        if (result) {
            fprintf(stderr, "spool_inject: commit failed: %s\n", sk_strerror(result));
            break;
        }
        if (deferred >= 0) {
            /* As if earlier attempts had failed: a deferred message not due yet. */
            sk_spool_envelope *e;
            if (sk_spool_load(s, id, &e, &err) == SK_OK) {
                e->state = SK_SPOOL_DEFERRED;
                e->attempts = (unsigned)deferred;
                e->next_attempt = (int64_t)time(NULL) + 3600;
                sk_free(e->last_reply);
                e->last_reply = sk_strdup("451 4.4.1 test deferral");
                result = sk_spool_save(s, e, &err);
                sk_spool_envelope_free(e);
            }
        }
    }
    sk_buf_free(&body);
    sk_spool_free(s);
    return result ? 74 : 0;
}
