/* Fuzz target: ARC header sets (RFC 8617). The input is a message: its
 * ARC fields are collected into a chain (arc_chain_collect), the whole
 * message goes through the verifier with every key answered "no such
 * name", each line is read as an ARC-Authentication-Results value
 * (arc_aar_instance), and the message is sealed with a key of the
 * target's own and verified again.
 * Properties: a chain whose shape is fine has, for each instance 1..N,
 * one field of each kind carrying that instance; the verifier never
 * passes without keys, names its status with a reason, and reports
 * instances within 1..50; an AAR instance is 0 or 1..50; a message that
 * carries no ARC field and has a From field seals (cv=none) into a chain
 * that verifies with the sealing key. */
#include "arc/arc_int.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const int64_t fuzz_time = 1764583200;

static void check_chain(const char *s, size_t n)
{
    dkim_msg m;
    dkim_msg_init(&m, NULL, NULL, NULL, NULL);
    if (dkim_msg_feed(&m, s, n) == SK_OK && dkim_msg_end(&m) == SK_OK) {
        arc_chain c;
        if (arc_chain_collect(&c, &m) == SK_OK) {
            if (c.n > SK_ARC_INSTANCE_MAX) abort();
            if (c.nfields && c.shape_ok) {
                if (c.n == 0) abort();
                for (unsigned i = 1; i <= c.n; i++)
                    for (int k = 0; k < ARC_KINDS; k++) {
                        size_t f = c.sets[i].field[k];
                        if (!f || f > m.nfields) abort();
                        const dkim_field *fl = &m.fields[f - 1];
                        if (!dkim_field_is(&m, fl, arc_field_names[k], strlen(arc_field_names[k])))
                            abort();
                    }
                for (unsigned i = 1; i <= c.n; i++)
                    if (c.sets[i].ams->instance != i || c.sets[i].as->instance != i) abort();
            }
            if (!c.nfields && c.n) abort();
        }
        arc_chain_clear(&c);
    }
    dkim_msg_clear(&m);
}

static void check_verify(const char *s, size_t n, size_t chunk)
{
    sk_arc_verify_opts o = {.now = fuzz_time};
    sk_arc_verifier *v = sk_arc_verifier_new(&o, NULL);
    if (!v) return;
    sk_err e = SK_OK;
    for (size_t off = 0; off < n && !e; off += chunk)
        e = sk_arc_verifier_feed(v, s + off, n - off < chunk ? n - off : chunk);
    if (!e && sk_arc_verifier_finish(v, NULL) == SK_OK) {
        const char *q;
        while ((q = sk_arc_verifier_next_query(v)))
            if (sk_arc_verifier_answer(v, q, SK_DNS_NXDOMAIN, NULL, 0) != SK_OK) abort();
        const sk_arc_result *r = sk_arc_verifier_result(v);
        if (r->status >= SK_ARC_STATUS__COUNT || r->status == SK_ARC_PASS) abort();
        if (!r->reason[0] || r->instances > SK_ARC_INSTANCE_MAX) abort();
        if (r->failed_instance > r->instances) abort();
        for (unsigned i = 1; i <= sk_arc_verifier_sets(v); i++)
            if (sk_arc_verifier_set(v, i)->instance != i) abort();
    }
    sk_arc_verifier_free(v);
}

static void check_aar(const char *s, size_t n)
{
    size_t start = 0;
    for (size_t i = 0; i <= n; i++)
        if (i == n || s[i] == '\n') {
            unsigned inst = arc_aar_instance(s + start, i - start);
            if (inst > SK_ARC_INSTANCE_MAX) abort();
            start = i + 1;
        }
}

static sk_dkim_key *fuzz_key(char **record)
{
    static sk_dkim_key *key;
    static char *rec;
    if (!key) {
        sk_buf b = SK_BUF_INIT(4096);
        if (sk_dkim_key_generate(SK_DKIM_KEY_ED25519, 0, &key, NULL) || sk_dkim_key_record(key, &b))
            abort();
        rec = b.data;
    }
    *record = rec;
    return key;
}

static void check_seal(const char *s, size_t n)
{
    char *rec;
    sk_dkim_key *key = fuzz_key(&rec);
    dkim_msg m;
    dkim_msg_init(&m, NULL, NULL, NULL, NULL);
    int plain = 0;
    if (dkim_msg_feed(&m, s, n) == SK_OK && dkim_msg_end(&m) == SK_OK) {
        int from = 0, arc = 0;
        for (size_t i = 0; i < m.nfields; i++) {
            from |= dkim_field_is(&m, &m.fields[i], "From", 4);
            for (int k = 0; k < ARC_KINDS; k++)
                arc |=
                    dkim_field_is(&m, &m.fields[i], arc_field_names[k], strlen(arc_field_names[k]));
        }
        plain = from && !arc;
    }
    dkim_msg_clear(&m);
    sk_arc_seal_opts o = {.domain = "example.org",
                          .selector = "fuzz",
                          .key = key,
                          .authserv_id = "mx.example.org",
                          .results_text = "spf=pass smtp.mailfrom=example.org",
                          .cv = plain ? SK_ARC_NONE : SK_ARC_FAIL,
                          .timestamp = fuzz_time};
    sk_buf out = SK_BUF_INIT(4u * 1024 * 1024);
    sk_error err;
    sk_err e = sk_arc_seal(&o, s, n, &out, &err);
    /* A header block that starts with a continuation line would join our
     * first field: refused. */
    int cont = n && (s[0] == ' ' || s[0] == '\t');
    if (plain && !cont && e != SK_OK && e != SK_ERR_TOO_LONG) abort();
    if (plain && cont && e != SK_ERR_SYNTAX) abort();
    if (!e && plain && sk_buf_append(&out, s, n) == SK_OK) {
        sk_arc_verify_opts vo = {.now = fuzz_time};
        sk_arc_verifier *v = sk_arc_verifier_new(&vo, NULL);
        if (v && sk_arc_verifier_feed(v, out.data, out.len) == SK_OK &&
            sk_arc_verifier_finish(v, NULL) == SK_OK) {
            const char *q;
            while ((q = sk_arc_verifier_next_query(v)))
                if (sk_arc_verifier_answer(v, q, SK_DNS_OK, (const char *const *)&rec, 1)) abort();
            if (sk_arc_verifier_result(v)->status != SK_ARC_PASS) abort();
        }
        sk_arc_verifier_free(v);
    }
    sk_buf_free(&out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 64 * 1024) return 0;
    const char *s = (const char *)data;
    size_t chunk = size ? (size_t)(data[0] % 16) + 1 : 1;
    check_chain(s, size);
    check_verify(s, size, size);
    check_verify(s, size, chunk);
    check_aar(s, size);
    check_seal(s, size);
    return 0;
}
