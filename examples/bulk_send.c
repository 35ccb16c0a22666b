/* Send N small messages over one SMTP connection with the client library
 * (PIPELINING when offered): the bulk-sending example, also used by the
 * smtp-sink test and the sending benchmark. */
#include <smtpkit/smtpkit.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(void)
{
    fprintf(stderr, "usage: bulk_send HOST PORT COUNT [SIZE] [starttls|implicit|none]\n"
                    "Sends COUNT messages of about SIZE octets (default 200) from\n"
                    "sender@example.org to rcpt@example.net over one connection, without\n"
                    "TLS unless asked; prints \"sent=N elapsed_ms=T\".\n");
}

int main(int argc, char **argv)
{
    if (argc < 4 || argc > 6) {
        usage();
        return 64;
    }
    long port = strtol(argv[2], NULL, 10), count = strtol(argv[3], NULL, 10);
    long size = argc > 4 ? strtol(argv[4], NULL, 10) : 200;
    sk_tls_mode tls = SK_TLS_NONE;
    if (port < 1 || port > 65535 || count < 1 || size < 64 || size > 10 * 1024 * 1024 ||
        (argc > 5 && sk_tls_mode_parse(argv[5], &tls) != SK_OK)) {
        usage();
        return 64;
    }

    /* One message, as the composer would write it: header, blank line, and
     * a body of "x" lines of at most 76 octets up to the size asked for. */
    sk_buf msg = SK_BUF_INIT((size_t)size + 1024);
    sk_err r = sk_buf_puts(&msg, "From: sender@example.org\r\nTo: rcpt@example.net\r\n"
                                 "Subject: bulk test\r\nMessage-ID: <bulk@example.org>\r\n\r\n");
    while (r == SK_OK && msg.len + 2 < (size_t)size) {
        size_t n = (size_t)size - msg.len - 2;
        if (n > 76) n = 76;
        char line[80];
        memset(line, 'x', n);
        memcpy(line + n, "\r\n", 2);
        r = sk_buf_append(&msg, line, n + 2);
    }
    if (r != SK_OK) {
        fprintf(stderr, "bulk_send: %s\n", sk_strerror(r));
        return 70;
    }

    sk_client_opts opts = {.host = argv[1], .port = (unsigned short)port, .tls = tls};
    sk_client *c = sk_client_new(&opts);
    if (!c) return 71;
    sk_error err;
    uint64_t t0 = sk_now_ms();
    long sent = 0;
    const char *rcpt[] = {"rcpt@example.net"};
    if (sk_client_connect(c, &err) == SK_OK) {
        for (; sent < count; sent++) {
            if (sk_client_send(c, "sender@example.org", rcpt, 1, msg.data, msg.len, NULL, NULL,
                               &err) != SK_OK)
                break;
        }
        if (sent == count) (void)sk_client_quit(c, &err);
    }
    uint64_t elapsed = sk_now_ms() - t0;
    int ok = sent == count;
    if (!ok)
        fprintf(stderr, "bulk_send: stopped after %ld: %s at %s: %d %s\n", sent,
                sk_strerror(err.err), sk_step_name(err.step), err.code, err.text);
    printf("sent=%ld elapsed_ms=%llu\n", sent, (unsigned long long)elapsed);
    sk_client_free(c);
    sk_buf_free(&msg);
    return ok ? 0 : 75;
}
