/* Send one short message with the SMTPKit client, showing the SMTP
 * conversation on stderr.
 *
 *   send_simple HOST PORT FROM TO [TLS-MODE [CA-FILE]]
 *
 * TLS-MODE is default, starttls, opportunistic, implicit or none. When the
 * environment has SMTP_USER and SMTP_PASSWORD, the client authenticates.
 * SMTP_ADDRESSES="192.0.2.1 2001:db8::1 ..." makes the client try these
 * addresses in turn instead of resolving HOST (the resolve hook); the
 * certificate is still checked against HOST. */
#include <smtpkit/smtpkit.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void show(void *ctx, char dir, const char *line, size_t len)
{
    fprintf(stderr, "%c: %.*s\n", dir, (int)len, line);
}

/* The resolve hook: the numeric addresses of SMTP_ADDRESSES, in order. */
static int fixed_addresses(void *ctx, const char *host, unsigned short port,
                           struct sockaddr_storage *addrs, size_t max)
{
    char list[1024];
    snprintf(list, sizeof list, "%s", (const char *)ctx);
    int n = 0;
    for (char *save = NULL, *a = strtok_r(list, " ,", &save); a && (size_t)n < max;
         a = strtok_r(NULL, " ,", &save)) {
        struct sockaddr_in *v4 = (struct sockaddr_in *)&addrs[n];
        struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&addrs[n];
        memset(&addrs[n], 0, sizeof addrs[n]);
        if (inet_pton(AF_INET, a, &v4->sin_addr) == 1) {
            v4->sin_family = AF_INET;
            v4->sin_port = htons(port);
        } else if (inet_pton(AF_INET6, a, &v6->sin6_addr) == 1) {
            v6->sin6_family = AF_INET6;
            v6->sin6_port = htons(port);
        } else {
            fprintf(stderr, "%s: not a numeric address: %s\n", host, a);
            continue;
        }
        n++;
    }
    return n;
}

int main(int argc, char **argv)
{
    if (argc < 5 || argc > 7) {
        fprintf(stderr, "usage: %s HOST PORT FROM TO [TLS-MODE [CA-FILE]]\n", argv[0]);
        return 64;
    }
    sk_client_opts o = {
        .host = argv[1],
        .port = (unsigned short)atoi(argv[2]),
        .ca_file = argc > 6 ? argv[6] : NULL,
        .user = getenv("SMTP_USER"),
        .password = getenv("SMTP_PASSWORD"),
        .transcript = show,
    };
    const char *addresses = getenv("SMTP_ADDRESSES");
    if (addresses) {
        o.resolve = fixed_addresses;
        o.resolve_ctx = (void *)addresses;
    }
    if (argc > 5 && sk_tls_mode_parse(argv[5], &o.tls) != SK_OK) {
        fprintf(stderr, "unknown TLS mode %s\n", argv[5]);
        return 64;
    }

    sk_error err = {0};
    sk_message *m = sk_message_new();
    if (!m || sk_message_set_from(m, argv[3], &err) || sk_message_add_to(m, argv[4], &err) ||
        sk_message_set_subject(m, "Hello from SMTPKit", &err) ||
        sk_message_set_text(m, "This message was sent by examples/send_simple.\n", &err)) {
        fprintf(stderr, "cannot compose the message: %s\n", m ? err.text : "out of memory");
        sk_message_free(m);
        return 65;
    }

    sk_client *c = sk_client_new(&o);
    sk_send_result res = {0};
    sk_err e = c ? sk_client_connect(c, &err) : SK_ERR_NOMEM;
    if (e == SK_OK) e = sk_client_send_message(c, m, NULL, &res, &err);
    if (e == SK_OK) {
        printf("sent: %d %s %s\n", res.data.code, res.data.enhanced, res.data.text);
        if (sk_client_quit(c, &err) != SK_OK) fprintf(stderr, "QUIT: %s\n", err.text);
    } else {
        fprintf(stderr, "failed at %s: %s: %d %s %s\n%s%s", sk_step_name(err.step), sk_strerror(e),
                err.code, err.enhanced, err.text, err.hint ? err.hint : "", err.hint ? "\n" : "");
    }
    sk_send_result_free(&res);
    sk_client_free(c);
    sk_message_free(m);
    return e == SK_OK ? 0 : e == SK_ERR_TEMPFAIL ? 75 : 69;
}
