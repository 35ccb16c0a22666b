/* DKIM throughput of libsmtpkit per core: signatures made and verified per
 * CPU second for one message, the key answered from memory (no DNS), the
 * message fed in 16 KiB chunks as a server would feed it. Built and run by
 * bench/dkim_bench.sh against dkimpy on the same messages.
 * Usage: dkim_bench KEY.pem RECORD MESSAGE SECONDS */
#include <smtpkit/dkim.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define CHUNK_OCTETS (16 * 1024)

static double cpu_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    sk_buf b = SK_BUF_INIT((size_t)1 << 30);
    char chunk[65536];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
        if (sk_buf_append(&b, chunk, n)) break;
    fclose(f);
    return sk_buf_detach(&b, len);
}

static int sign_once(sk_dkim_sign_opts *o, const char *msg, size_t len, sk_buf *out)
{
    sk_error err;
    sk_dkim_signer *s = sk_dkim_signer_new(o, 1, &err);
    if (!s) return -1;
    for (size_t off = 0; off < len; off += CHUNK_OCTETS)
        if (sk_dkim_signer_feed(s, msg + off, len - off < CHUNK_OCTETS ? len - off : CHUNK_OCTETS))
            return -1;
    int rc = sk_dkim_signer_finish(s, out, &err) ? -1 : 0;
    sk_dkim_signer_free(s);
    return rc;
}

static int verify_once(const char *msg, size_t len, const char *record)
{
    sk_error err;
    sk_dkim_verifier *v = sk_dkim_verifier_new(NULL, &err);
    if (!v) return -1;
    for (size_t off = 0; off < len; off += CHUNK_OCTETS)
        if (sk_dkim_verifier_feed(v, msg + off,
                                  len - off < CHUNK_OCTETS ? len - off : CHUNK_OCTETS))
            return -1;
    if (sk_dkim_verifier_finish(v, &err)) return -1;
    const char *q;
    while ((q = sk_dkim_verifier_next_query(v)))
        if (sk_dkim_verifier_answer(v, q, SK_DNS_OK, &record, 1)) return -1;
    int ok =
        sk_dkim_verifier_count(v) == 1 && sk_dkim_verifier_result(v, 0)->status == SK_DKIM_PASS;
    sk_dkim_verifier_free(v);
    return ok ? 0 : -1;
}

int main(int argc, char **argv)
{
    if (argc != 5) {
        fprintf(stderr, "usage: dkim_bench KEY.pem RECORD MESSAGE SECONDS\n");
        return 64;
    }
    sk_error err;
    sk_dkim_key *key;
    if (sk_dkim_key_load(argv[1], &key, &err)) {
        fprintf(stderr, "%s\n", err.text);
        return 66;
    }
    size_t rlen, len;
    char *record = slurp(argv[2], &rlen), *msg = slurp(argv[3], &len);
    double seconds = atof(argv[4]);
    if (!record || !msg || seconds <= 0) return 66;
    record[strcspn(record, "\n")] = '\0';
    sk_dkim_sign_opts o = {.domain = "example.org", .selector = "bench", .key = key};
    sk_buf sig = SK_BUF_INIT((size_t)1 << 20);
    long n = 0;
    double start = cpu_s(), t;
    do {
        sk_buf_reset(&sig);
        if (sign_once(&o, msg, len, &sig)) return 70;
        n++;
    } while ((t = cpu_s() - start) < seconds);
    printf("sign %.1f\n", (double)n / t);
    sk_buf signed_msg = SK_BUF_INIT((size_t)1 << 30);
    if (sk_buf_append(&signed_msg, sig.data, sig.len) || sk_buf_append(&signed_msg, msg, len))
        return 70;
    n = 0;
    start = cpu_s();
    do {
        if (verify_once(signed_msg.data, signed_msg.len, record)) return 70;
        n++;
    } while ((t = cpu_s() - start) < seconds);
    printf("verify %.1f\n", (double)n / t);
    sk_buf_free(&sig);
    sk_buf_free(&signed_msg);
    free(record);
    free(msg);
    sk_dkim_key_free(key);
    return 0;
}
