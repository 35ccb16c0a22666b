/* Unit tests for src/spool: queue IDs, the envelope text form, commit,
 * group commit, write failures, recovery and the spool lock. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <dirent.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <smtpkit/spool.h>
#include "spool/journal.h"
#include "spool/spool_int.h"

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    return remove(path);
}

static void rm_tree(const char *dir)
{
    nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static char *temp_dir(void)
{
    char tmpl[] = "/tmp/sk-spool-XXXXXX";
    char *d = mkdtemp(tmpl);
    assert_non_null(d);
    return strdup(d);
}

/* Count files in DATA-DIR/spool/msg: with reusable 0, every kind but
 * files kept for reuse (N.free); with 1, only those. */
static int count_files_kind(const char *data_dir, int reusable)
{
    char cmd[512];
    snprintf(cmd, sizeof cmd, "%s/spool/msg", data_dir);
    int n = 0;
    DIR *d = opendir(cmd);
    assert_non_null(d);
    struct dirent *de;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.') continue;
        size_t len = strlen(de->d_name);
        int is_free = len > 5 && strcmp(de->d_name + len - 5, ".free") == 0;
        if (is_free == reusable) n++;
    }
    closedir(d);
    return n;
}

static int count_files(const char *data_dir)
{
    return count_files_kind(data_dir, 0);
}

/* A message file is the body, then the envelope, then a trailer saying
 * where the envelope starts (docs/queue.md "Message file"). */
static void check_msg_file(const char *path, const char *body, size_t len)
{
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    size_t size = (size_t)st.st_size;
    assert_true(size > len + SK_SPOOL_TRAILER_OCTETS);
    char *got = malloc(size + 1);
    assert_non_null(got);
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    assert_int_equal(fread(got, 1, size, f), size);
    fclose(f);
    got[size] = '\0';
    assert_memory_equal(got, body, len);
    const char *env = got + len, *trailer = got + size - SK_SPOOL_TRAILER_OCTETS;
    assert_true(!strncmp(env, "smtpkit-envelope 1\n", 19));
    assert_true(!strncmp(trailer - 4, "end\n", 4));
    char want[64];
    snprintf(want, sizeof want, "smtpkit-envelope-at %015zu\n", len);
    assert_string_equal(trailer, want);
    free(got);
}

/* A small envelope for tests. */
static sk_spool_rcpt test_rcpts[] = {
    {.addr = "bob@example.net", .notify = 6, .orcpt = "rfc822;bob@example.net"},
    {.addr = "carol@localhost"},
};
static sk_spool_envelope test_env(void)
{
    sk_spool_envelope e = {0};
    e.sender = "alice@example.org";
    e.rcpts = test_rcpts;
    e.nrcpts = 2;
    e.helo = "client.example.org";
    e.peer = "127.0.0.1";
    e.esmtp = 1;
    return e;
}

/* ---- IDs ---- */

static void test_id_sorts_by_time(void **state)
{
    static const uint64_t times[] = {
        1, 1000, 1700000000000ull, 1700000000001ull, 1800000000000ull, (1ull << 50) - 1};
    char prev[SK_SPOOL_ID_SIZE] = "";
    for (size_t i = 0; i < sizeof times / sizeof times[0]; i++) {
        char id[SK_SPOOL_ID_SIZE];
        assert_int_equal(sk_spool_id_new(id, times[i]), SK_OK);
        assert_int_equal(strlen(id), SK_SPOOL_ID_LEN);
        assert_true(sk_spool_id_valid(id));
        if (i) assert_true(strcmp(prev, id) < 0);
        memcpy(prev, id, sizeof id);
    }
    /* Same millisecond: different random part. */
    char a[SK_SPOOL_ID_SIZE], b[SK_SPOOL_ID_SIZE];
    assert_int_equal(sk_spool_id_new(a, 5), SK_OK);
    assert_int_equal(sk_spool_id_new(b, 5), SK_OK);
    assert_memory_equal(a, b, 10);
    assert_string_not_equal(a, b);
}

static void test_id_valid(void **state)
{
    static const struct {
        const char *s;
        int ok;
    } cases[] = {
        {"01HF3Z4Q7M2ABCDE", 1},  {"0000000000000000", 1},
        {"01hf3z4q7m2abcde", 0},  {"01HF3Z4Q7M2ABCD", 0},
        {"01HF3Z4Q7M2ABCDEF", 0}, {"01HF3Z4Q7M2ABCDI", 0},
        {"../../etc/passwd", 0},  {"", 0},
        {"01HF3Z4Q7M2AB/DE", 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        assert_int_equal(sk_spool_id_valid(cases[i].s), cases[i].ok);
    assert_false(sk_spool_id_valid(NULL));
}

/* ---- envelope text form ---- */

static void assert_str_eq_null(const char *a, const char *b)
{
    if (!a || !b)
        assert_ptr_equal(a, b);
    else
        assert_string_equal(a, b);
}

static void assert_env_equal(const sk_spool_envelope *a, const sk_spool_envelope *b)
{
    assert_string_equal(a->id, b->id);
    assert_int_equal(a->arrival, b->arrival);
    assert_str_eq_null(a->sender, b->sender);
    assert_int_equal(a->nrcpts, b->nrcpts);
    for (size_t i = 0; i < a->nrcpts; i++) {
        assert_string_equal(a->rcpts[i].addr, b->rcpts[i].addr);
        assert_str_eq_null(a->rcpts[i].orcpt, b->rcpts[i].orcpt);
        assert_str_eq_null(a->rcpts[i].last_reply, b->rcpts[i].last_reply);
        assert_int_equal(a->rcpts[i].notify, b->rcpts[i].notify);
        assert_int_equal(a->rcpts[i].state, b->rcpts[i].state);
    }
    assert_memory_equal(&a->mail, &b->mail, sizeof a->mail);
    assert_str_eq_null(a->helo, b->helo);
    assert_str_eq_null(a->peer, b->peer);
    assert_str_eq_null(a->peer_name, b->peer_name);
    assert_int_equal(a->esmtp, b->esmtp);
    assert_str_eq_null(a->tls, b->tls);
    assert_str_eq_null(a->auth_user, b->auth_user);
    assert_int_equal(a->state, b->state);
    assert_int_equal(a->attempts, b->attempts);
    assert_int_equal(a->next_attempt, b->next_attempt);
    assert_str_eq_null(a->last_reply, b->last_reply);
    assert_int_equal(a->body_octets, b->body_octets);
    assert_int_equal(a->has_body_crc32c, b->has_body_crc32c);
    if (a->has_body_crc32c) assert_int_equal(a->body_crc32c, b->body_crc32c);
    assert_int_equal(a->delay_dsn_sent, b->delay_dsn_sent);
    assert_str_eq_null(a->prepend, b->prepend);
}

static void test_envelope_round_trip(void **state)
{
    sk_spool_rcpt odd[] = {
        {.addr = "\"sp ace\"@example.org", .state = SK_RCPT_DELIVERED, .last_reply = "250 ok"},
        {.addr = "ü@bücher.example",
         .state = SK_RCPT_FAILED,
         .notify = 1,
         .last_reply = "550 5.1.1 no\nsuch user 100%"},
        {.addr = "-", .orcpt = "", .state = SK_RCPT_PENDING},
    };
    sk_spool_envelope cases[4];
    for (size_t i = 0; i < 4; i++) cases[i] = test_env();
    /* 0: plain. 1: null sender, every string odd. 2: all MAIL params. 3:
     * deferred with retry state and NULL session strings. */
    cases[1].sender = "";
    cases[1].rcpts = odd;
    cases[1].nrcpts = 3;
    cases[1].helo = "[192.0.2.1]";
    cases[1].tls = "TLSv1.3 TLS_AES_256_GCM_SHA384";
    cases[1].auth_user = "zoë";
    cases[1].peer_name = "%41 %";
    cases[2].mail = (sk_mail_params){.has_size = 1,
                                     .size = 123456789012ull,
                                     .body = SK_BODY_8BITMIME,
                                     .smtputf8 = 1,
                                     .ret = SK_DSN_RET_HDRS,
                                     .envid = "QQ+2Bxyz",
                                     .has_priority = 1,
                                     .priority = -9,
                                     .auth = "<>"};
    cases[3].state = SK_SPOOL_DEFERRED;
    cases[3].attempts = 7;
    cases[3].next_attempt = 1800000000;
    cases[3].last_reply = "451 4.3.0 try later";
    cases[3].helo = cases[3].peer = NULL;
    cases[3].esmtp = 0;
    cases[3].delay_dsn_sent = 1;
    /* Fields added at acceptance: folded, with spaces, tabs and '%'. */
    cases[2].prepend = "DKIM-Signature: v=1; a=rsa-sha256; d=example.org;\r\n"
                       "\tb=AbC/d+9=\r\nAuthentication-Results: mx.test; spf=pass (100%)\r\n";
    for (size_t i = 0; i < 4; i++) {
        assert_int_equal(sk_spool_id_new(cases[i].id, 0), SK_OK);
        cases[i].arrival = 1700000000 + (int64_t)i;
        cases[i].body_octets = 1000 * i;
        /* Odd cases carry a body checksum (with leading zero digits). */
        cases[i].has_body_crc32c = (int)(i & 1);
        cases[i].body_crc32c = i == 1 ? 0x00c0ffeeu : 0xdeadbeefu;
        sk_buf b = SK_BUF_INIT(1 << 20);
        assert_int_equal(sk_spool_envelope_serialize(&cases[i], &b), SK_OK);
        /* One token per value: no raw control octets except line ends. */
        for (size_t k = 0; k < b.len; k++)
            assert_true((unsigned char)b.data[k] >= 0x20 || b.data[k] == '\n');
        sk_spool_envelope *back = NULL;
        assert_int_equal(sk_spool_envelope_parse(b.data, b.len, &back), SK_OK);
        assert_env_equal(&cases[i], back);
        sk_spool_envelope *copy = sk_spool_envelope_dup(back);
        assert_non_null(copy);
        assert_env_equal(back, copy);
        sk_spool_envelope_free(copy);
        sk_spool_envelope_free(back);
        /* Every cut short of the whole is refused. */
        for (size_t cut = 0; cut < b.len; cut += 7) {
            assert_int_not_equal(sk_spool_envelope_parse(b.data, cut, &back), SK_OK);
            assert_null(back);
        }
        sk_buf_free(&b);
    }
}

/* The numbers of the text form, written without printf, read exactly as
 * printf writes them (the envelopes already on disk). */
static void test_envelope_numbers(void **state)
{
    static const struct {
        int64_t arrival, next_attempt;
        unsigned attempts, notify;
        uint64_t body_octets, size;
        int priority;
    } cases[] = {
        {0, 0, 0, 0, 0, 0, 0},
        {1700000000, -1, 7, 15, 1024, 123456789012ull, -9},
        {INT64_MAX, INT64_MIN, UINT_MAX, 1, UINT64_MAX, UINT64_MAX, 9},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        sk_spool_envelope env = test_env();
        snprintf(env.id, sizeof env.id, "%s", "0000000000000000");
        env.arrival = cases[i].arrival;
        env.next_attempt = cases[i].next_attempt;
        env.attempts = cases[i].attempts;
        env.body_octets = cases[i].body_octets;
        env.mail.has_size = 1;
        env.mail.size = cases[i].size;
        env.mail.has_priority = 1;
        env.mail.priority = cases[i].priority;
        sk_spool_rcpt r = {.addr = "b@example.net", .notify = cases[i].notify};
        env.rcpts = &r;
        env.nrcpts = 1;
        char want[1024];
        snprintf(want, sizeof want,
                 "smtpkit-envelope 1\nid 0000000000000000\narrival %" PRId64
                 "\nstate active\nattempts %u\nnext-attempt %" PRId64 "\nbody-octets %" PRIu64
                 "\nsize 1 %" PRIu64 "\nbody 0\nsmtputf8 0\nret 0\npriority 1 %d\nesmtp 1\n"
                 "envid =\nauth-param =\nsender =alice@example.org\nhelo =client.example.org\n"
                 "peer =127.0.0.1\npeer-name -\ntls -\nauth-user -\nlast-reply -\n"
                 "rcpt pending %u =b@example.net - -\nend\n",
                 cases[i].arrival, cases[i].attempts, cases[i].next_attempt, cases[i].body_octets,
                 cases[i].size, cases[i].priority, cases[i].notify);
        sk_buf b = SK_BUF_INIT(4096);
        assert_int_equal(sk_spool_envelope_serialize(&env, &b), SK_OK);
        assert_string_equal(sk_buf_cstr(&b), want);
        sk_buf_free(&b);
    }
}

static void test_envelope_rejects(void **state)
{
    static const char *const bad[] = {
        "",
        "smtpkit-envelope 2\nid 0000000000000000\nsender =a\nend\n",
        "smtpkit-envelope 1\nid 0000000000000000\nsender =a\n",
        "smtpkit-envelope 1\nid 0000000000000000\nend\n", /* no sender */
        "smtpkit-envelope 1\nid 000000000000000\nsender =a\nend\n",
        "smtpkit-envelope 1\nid 0000000000000000\nsender =a\nstate lost\nend\n",
        "smtpkit-envelope 1\nid 0000000000000000\nsender =a\nrcpt pending 0 =b\nend\n",
        "smtpkit-envelope 1\nid 0000000000000000\nsender =a\nrcpt pending 0 - - -\nend\n",
        "smtpkit-envelope 1\nid 0000000000000000\nsender =a%0\nend\n",
        "smtpkit-envelope 1\nid 0000000000000000\nsender =a%00\nend\n",
        "smtpkit-envelope 1\nid 0000000000000000\nsender a\nend\n",
        "smtpkit-envelope 1\nid 0000000000000000\nsender =a\npriority 1 10\nend\n",
        "smtpkit-envelope 1\nid 0000000000000000\nsender =a\nwhat 1\nend\n",
        "smtpkit-envelope 1\nid 0000000000000000\nsender =a\nend\nextra\n",
        "smtpkit-envelope 1\nid 0000000000000000\nsender =a\nbody-crc32c 1234567\nend\n",
        "smtpkit-envelope 1\nid 0000000000000000\nsender =a\nbody-crc32c 123456789\nend\n",
        "smtpkit-envelope 1\nid 0000000000000000\nsender =a\nbody-crc32c E3069283\nend\n",
        "smtpkit-envelope 1\nid 0000000000000000\nsender =a\nbody-crc32c e306928g\nend\n",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        sk_spool_envelope *env = (sk_spool_envelope *)1;
        assert_int_not_equal(sk_spool_envelope_parse(bad[i], strlen(bad[i]), &env), SK_OK);
        assert_null(env);
    }
    const char *good = "smtpkit-envelope 1\nid 0000000000000000\nsender =\n"
                       "rcpt delivered 2 =b@c - =250%20ok\nend\n";
    sk_spool_envelope *env = NULL;
    assert_int_equal(sk_spool_envelope_parse(good, strlen(good), &env), SK_OK);
    assert_string_equal(env->sender, "");
    assert_int_equal(env->nrcpts, 1);
    assert_string_equal(env->rcpts[0].last_reply, "250 ok");
    assert_int_equal(env->rcpts[0].state, SK_RCPT_DELIVERED);
    sk_spool_envelope_free(env);
}

/* Allocation-failure sweep over parse, copy and serialize: fail the Nth
 * allocation for every N until one run succeeds; each failure must be
 * reported (and, under the sanitizer build, leak nothing). */
static long alloc_budget = -1;
static void *fail_malloc(size_t n)
{
    if (alloc_budget == 0) return NULL;
    if (alloc_budget > 0) alloc_budget--;
    return malloc(n);
}
static void *fail_realloc(void *p, size_t n)
{
    if (alloc_budget == 0) return NULL;
    if (alloc_budget > 0) alloc_budget--;
    return realloc(p, n);
}

static void test_envelope_alloc_failures(void **state)
{
    const char *text = "smtpkit-envelope 1\nid 0000000000000000\nsender =a%20b\nhelo =h\n"
                       "tls =t\nlast-reply =451\nrcpt pending 2 =b@c =rfc822;b@c =250\n"
                       "rcpt failed 0 =d@e - -\nend\n";
    sk_spool_envelope *ref = NULL;
    assert_int_equal(sk_spool_envelope_parse(text, strlen(text), &ref), SK_OK);
    sk_buf want = SK_BUF_INIT(4096);
    assert_int_equal(sk_spool_envelope_serialize(ref, &want), SK_OK);
    sk_spool_envelope_free(ref);
    int succeeded = 0;
    for (long n = 0; n < 200 && !succeeded; n++) {
        sk_set_allocator(&(sk_allocator){fail_malloc, fail_realloc, free});
        alloc_budget = n;
        sk_spool_envelope *env = NULL, *copy = NULL;
        sk_buf b = SK_BUF_INIT(4096);
        sk_err e = sk_spool_envelope_parse(text, strlen(text), &env);
        if (!e) {
            copy = sk_spool_envelope_dup(env);
            if (!copy) e = SK_ERR_NOMEM;
        }
        if (!e) e = sk_spool_envelope_serialize(copy, &b);
        alloc_budget = -1;
        sk_set_allocator(NULL);
        if (e) {
            assert_int_equal(e, SK_ERR_NOMEM);
        } else {
            assert_int_equal(b.len, want.len);
            assert_memory_equal(b.data, want.data, b.len);
            succeeded = n > 0; /* at least one failure was exercised */
        }
        sk_spool_envelope_free(env);
        sk_spool_envelope_free(copy);
        sk_buf_free(&b);
    }
    assert_true(succeeded);
    sk_buf_free(&want);
}

static void test_protocol_names(void **state)
{
    static const struct {
        int esmtp, tls, auth;
        const char *name;
    } cases[] = {
        {0, 0, 0, "SMTP"},   {1, 0, 0, "ESMTP"},   {1, 1, 0, "ESMTPS"},
        {1, 0, 1, "ESMTPA"}, {1, 1, 1, "ESMTPSA"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        sk_spool_envelope e = {.esmtp = cases[i].esmtp,
                               .tls = cases[i].tls ? "TLSv1.3" : NULL,
                               .auth_user = cases[i].auth ? "u" : NULL};
        assert_string_equal(sk_spool_envelope_protocol(&e), cases[i].name);
    }
}

/* ---- body checksum ---- */

static void test_crc32c(void **state)
{
    /* Check values: RFC 3720 B.4 and the common "123456789" vector. */
    static const struct {
        const char *data;
        size_t len;
        uint32_t crc;
    } cases[] = {
        {"", 0, 0},
        {"123456789", 9, 0xE3069283u},
        {"\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0", 32, 0x8A9136AAu},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        assert_int_equal(sk_spool_crc32c(0, cases[i].data, cases[i].len), cases[i].crc);
        assert_int_equal(sk_spool_crc32c_soft(0, cases[i].data, cases[i].len), cases[i].crc);
    }
    /* Any split into pieces gives the same as one call, and the fast path
     * agrees with the table-driven one. */
    unsigned char buf[1000];
    for (size_t i = 0; i < sizeof buf; i++) buf[i] = (unsigned char)(i * 131u + 7u);
    uint32_t whole = sk_spool_crc32c_soft(0, buf, sizeof buf);
    static const size_t splits[] = {0, 1, 7, 8, 9, 500, 999, 1000};
    for (size_t i = 0; i < sizeof splits / sizeof splits[0]; i++) {
        uint32_t c = sk_spool_crc32c(0, buf, splits[i]);
        c = sk_spool_crc32c(c, buf + splits[i], sizeof buf - splits[i]);
        assert_int_equal(c, whole);
    }
}

/* ---- commit, load, save, remove ---- */

typedef struct done_rec {
    int calls;
    sk_err err;
    char id[SK_SPOOL_ID_SIZE];
} done_rec;

static void on_done(void *ctx, sk_err err, const char *id)
{
    done_rec *r = ctx;
    r->calls++;
    r->err = err;
    if (id) snprintf(r->id, sizeof r->id, "%s", id);
}

static const char body[] = "Subject: hi\r\nFrom: a@b\r\n\r\nline 1\r\n\r\n.dot\r\n";

static void commit_sync(sk_spool *s, const void *data, size_t n, done_rec *r)
{
    sk_spool_envelope e = test_env();
    sk_spool_msg *m = sk_spool_begin(s, &e, NULL);
    assert_non_null(m);
    /* Written in small pieces, as a session would. */
    const char *p = data;
    for (size_t off = 0; off < n; off += 5)
        assert_int_equal(sk_spool_write(m, p + off, n - off < 5 ? n - off : 5), SK_OK);
    sk_spool_commit(m, on_done, r);
}

/* A new data directory holding one committed message, its spool closed:
 * the starting point of the recovery tests. */
static char *dir_with_message(done_rec *r)
{
    char *dir = temp_dir();
    sk_error err;
    sk_spool *s = sk_spool_open(dir, NULL, NULL, &err);
    assert_non_null(s);
    commit_sync(s, body, strlen(body), r);
    assert_int_equal(r->err, SK_OK);
    sk_spool_free(s);
    return dir;
}

static void test_commit_load_save_remove(void **state)
{
    char *dir = temp_dir();
    sk_error err;
    sk_spool *s = sk_spool_open(dir, NULL, NULL, &err);
    assert_non_null(s);
    done_rec r = {0};
    commit_sync(s, body, strlen(body), &r);
    assert_int_equal(r.calls, 1);
    assert_int_equal(r.err, SK_OK);
    assert_true(sk_spool_id_valid(r.id));

    /* Body byte for byte. */
    sk_buf path = SK_BUF_INIT(4096);
    assert_int_equal(sk_spool_body_path(s, r.id, &path), SK_OK);
    check_msg_file(path.data, body, strlen(body));
    assert_int_equal(count_files(dir), 1); /* one file per message */

    sk_buf h = SK_BUF_INIT(4096);
    assert_int_equal(sk_spool_read_headers(s, r.id, &h, NULL), SK_OK);
    assert_string_equal(h.data, "Subject: hi\r\nFrom: a@b\r\n");
    sk_buf_free(&h);

    sk_spool_envelope *env;
    assert_int_equal(sk_spool_load(s, r.id, &env, &err), SK_OK);
    assert_string_equal(env->sender, "alice@example.org");
    assert_int_equal(env->body_octets, strlen(body));
    assert_int_equal(env->state, SK_SPOOL_ACTIVE);
    assert_true(env->arrival > 1700000000);
    env->state = SK_SPOOL_DEFERRED;
    env->attempts = 3;
    env->rcpts[0].state = SK_RCPT_DELIVERED;
    assert_int_equal(sk_spool_save(s, env, &err), SK_OK);
    sk_spool_envelope_free(env);
    /* The saved envelope is its own file; the message file is unchanged. */
    assert_int_equal(count_files(dir), 2);
    check_msg_file(path.data, body, strlen(body));
    sk_buf_free(&path);

    /* A read-only view sees the same. */
    sk_spool *ro = sk_spool_open(dir, &(sk_spool_opts){.mode = SK_SPOOL_READONLY}, NULL, &err);
    assert_non_null(ro);
    assert_int_equal(sk_spool_load(ro, r.id, &env, &err), SK_OK);
    assert_int_equal(env->state, SK_SPOOL_DEFERRED);
    assert_int_equal(env->attempts, 3);
    assert_int_equal(env->rcpts[0].state, SK_RCPT_DELIVERED);
    assert_int_equal(sk_spool_save(ro, env, &err), SK_ERR_STATE);
    assert_null(sk_spool_begin(ro, env, &err));
    sk_spool_envelope_free(env);
    sk_spool_free(ro);

    static const char *const unknown[] = {"0000000000000000", "../spool/lock", "", "x"};
    for (size_t i = 0; i < sizeof unknown / sizeof unknown[0]; i++) {
        assert_int_equal(sk_spool_load(s, unknown[i], &env, &err), SK_ERR_NOT_FOUND);
        assert_int_equal(sk_spool_remove(s, unknown[i], &err), SK_ERR_NOT_FOUND);
    }
    assert_int_equal(sk_spool_remove(s, r.id, &err), SK_OK);
    assert_int_equal(sk_spool_load(s, r.id, &env, &err), SK_ERR_NOT_FOUND);
    assert_int_equal(count_files(dir), 0);

    /* Abort leaves nothing: a small body is still in memory, a large one
     * (past the 64 KiB write buffer) already has its file. */
    static char big[200 * 1024];
    for (size_t i = 0; i < sizeof big; i++) big[i] = (char)('a' + i % 26);
    static const struct {
        size_t len;
        int files;
    } aborts[] = {{10, 0}, {sizeof big, 1}};
    for (size_t i = 0; i < sizeof aborts / sizeof aborts[0]; i++) {
        sk_spool_envelope e = test_env();
        sk_spool_msg *m = sk_spool_begin(s, &e, NULL);
        assert_int_equal(sk_spool_write(m, big, aborts[i].len), SK_OK);
        assert_int_equal(count_files(dir), aborts[i].files);
        sk_spool_abort(m);
        assert_int_equal(count_files(dir), 0);
    }
    /* A large body, in pieces that cross the buffer: size and checksum
     * recorded, bytes intact. */
    done_rec rb = {0};
    commit_sync(s, big, sizeof big, &rb);
    assert_int_equal(rb.err, SK_OK);
    assert_int_equal(sk_spool_load(s, rb.id, &env, &err), SK_OK);
    assert_int_equal(env->body_octets, sizeof big);
    assert_true(env->has_body_crc32c);
    assert_int_equal(env->body_crc32c, sk_spool_crc32c_soft(0, big, sizeof big));
    sk_spool_envelope_free(env);
    sk_buf bp = SK_BUF_INIT(4096);
    assert_int_equal(sk_spool_body_path(s, rb.id, &bp), SK_OK);
    check_msg_file(bp.data, big, sizeof big);
    sk_buf_free(&bp);
    assert_int_equal(sk_spool_remove(s, rb.id, &err), SK_OK);
    assert_int_equal(count_files(dir), 0);
    sk_spool_free(s);
    rm_tree(dir);
    free(dir);
}

/* Fields known only at the end of the body (a DKIM signature) go into the
 * envelope with the commit, and come back with the message. */
static void test_prepend(void **state)
{
    char *dir = temp_dir();
    sk_error err;
    sk_spool *s = sk_spool_open(dir, NULL, NULL, &err);
    assert_non_null(s);
    sk_spool_envelope e = test_env();
    sk_spool_msg *m = sk_spool_begin(s, &e, NULL);
    assert_non_null(m);
    assert_int_equal(sk_spool_write(m, body, strlen(body)), SK_OK);
    static const char *const bad[] = {"X-A: 1", "X-A: 1\n", "\r", "X-A: 1\r\nX-B: 2"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(sk_spool_msg_prepend(m, bad[i], strlen(bad[i])), SK_ERR_SYNTAX);
    assert_int_equal(sk_spool_msg_prepend(m, "", 0), SK_ERR_SYNTAX);
    const char *one = "DKIM-Signature: v=1; d=example.org;\r\n\tb=x\r\n";
    const char *two = "Authentication-Results: mx.test; none\r\n";
    assert_int_equal(sk_spool_msg_prepend(m, one, strlen(one)), SK_OK);
    assert_int_equal(sk_spool_msg_prepend(m, two, strlen(two)), SK_OK);
    done_rec r = {0};
    sk_spool_commit(m, on_done, &r);
    assert_int_equal(r.err, SK_OK);
    sk_spool_envelope *env;
    assert_int_equal(sk_spool_load(s, r.id, &env, &err), SK_OK);
    assert_string_equal(env->prepend, "DKIM-Signature: v=1; d=example.org;\r\n\tb=x\r\n"
                                      "Authentication-Results: mx.test; none\r\n");
    /* The body is what was written: the fields are not in it. */
    assert_int_equal(env->body_octets, strlen(body));
    /* A saved envelope keeps them. */
    env->attempts = 2;
    assert_int_equal(sk_spool_save(s, env, &err), SK_OK);
    sk_spool_envelope_free(env);
    assert_int_equal(sk_spool_load(s, r.id, &env, &err), SK_OK);
    assert_int_equal(env->attempts, 2);
    assert_non_null(strstr(env->prepend, "Authentication-Results: mx.test; none\r\n"));
    sk_spool_envelope_free(env);
    sk_spool_free(s);
    rm_tree(dir);
    free(dir);
}

static void test_lock_excludes_second_owner(void **state)
{
    char *dir = temp_dir();
    sk_error err;
    sk_spool *s = sk_spool_open(dir, NULL, NULL, &err);
    assert_non_null(s);
    sk_spool *s2 = sk_spool_open(dir, &(sk_spool_opts){.lock_wait_ms = 50}, NULL, &err);
    assert_null(s2);
    assert_int_equal(err.err, SK_ERR_STATE);
    assert_non_null(strstr(err.text, "in use by process"));
    sk_spool_free(s);
    s2 = sk_spool_open(dir, &(sk_spool_opts){.lock_wait_ms = 50}, NULL, &err);
    assert_non_null(s2);
    sk_spool_free(s2);
    rm_tree(dir);
    free(dir);
}

/* Every mode opens; a value that is no mode is refused before anything is
 * made on disk (no silent fallback to another way of syncing). */
static void test_open_sync_modes(void **state)
{
    static const struct {
        int sync;
        sk_err want;
    } cases[] = {
        {SK_SPOOL_SYNC_LOG, SK_OK},   {SK_SPOOL_SYNC_FS, SK_OK},
        {SK_SPOOL_SYNC_FILES, SK_OK}, {SK_SPOOL_SYNC_FILES + 1, SK_ERR_INVAL},
        {-1, SK_ERR_INVAL},           {99, SK_ERR_INVAL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *dir = temp_dir();
        sk_error err;
        sk_spool_opts o = {.sync = (sk_spool_sync)cases[i].sync};
        sk_spool *s = sk_spool_open(dir, &o, NULL, &err);
        char spool[512];
        snprintf(spool, sizeof spool, "%s/spool", dir);
        struct stat st;
        if (cases[i].want == SK_OK) {
            assert_non_null(s);
            assert_int_equal(stat(spool, &st), 0);
        } else {
            assert_null(s);
            assert_int_equal(err.err, cases[i].want);
            assert_non_null(strstr(err.text, "sync mode"));
            assert_int_equal(stat(spool, &st), -1);
        }
        sk_spool_free(s);
        rm_tree(dir);
        free(dir);
    }
}

/* ---- recovery ---- */

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void test_recovery(void **state)
{
    done_rec r = {0};
    char *dir = dir_with_message(&r);
    sk_error err;
    sk_spool *s;

    /* What a crash can leave: a body still being received, a commit whose
     * envelope is half written, the envelope of a removal cut short, a
     * save cut short. */
    char p[512];
    snprintf(p, sizeof p, "%s/spool/msg/0000000000AAAAAA.new", dir);
    write_file(p, "Subject: half\r\n");
    snprintf(p, sizeof p, "%s/spool/msg/0000000000BBBBBB.new", dir);
    write_file(p, "Subject: other\r\n\r\nsmtpkit-envelope 1\nid 0000000000BBBBBB\n");
    snprintf(p, sizeof p, "%s/spool/msg/0000000000CCCCCC.env", dir);
    write_file(p, "smtpkit-envelope 1\nid 0000000000CCCCCC\nsender =\nend\n");
    snprintf(p, sizeof p, "%s/spool/msg/%s.env.tmp", dir, r.id);
    write_file(p, "smtpkit-envelope 1\n");
    /* Not a queue ID (I is not in the alphabet): not the spool's file. */
    snprintf(p, sizeof p, "%s/spool/msg/IIIIIIIIIIIIIIII.msg", dir);
    write_file(p, "someone else's\n");
    assert_int_equal(count_files(dir), 6);

    /* Read-only opening recovers nothing. */
    sk_spool *ro = sk_spool_open(dir, &(sk_spool_opts){.mode = SK_SPOOL_READONLY}, NULL, &err);
    assert_non_null(ro);
    sk_spool_free(ro);
    assert_int_equal(count_files(dir), 6);

    s = sk_spool_open(dir, NULL, NULL, &err);
    assert_non_null(s);
    assert_int_equal(count_files(dir), 2); /* the message, and the other file */
    char **ids;
    size_t n;
    assert_int_equal(sk_spool_list(s, &ids, &n, &err), SK_OK);
    assert_int_equal(n, 1);
    assert_string_equal(ids[0], r.id);
    sk_spool_ids_free(ids, n);
    sk_spool_envelope *env;
    assert_int_equal(sk_spool_load(s, r.id, &env, &err), SK_OK);
    assert_int_equal(env->body_octets, strlen(body));
    sk_spool_envelope_free(env);
    sk_spool_free(s);
    rm_tree(dir);
    free(dir);
}

/* A journaled message's file (what sk_spool_list sees) is written after
 * its 250 by the materializer thread, and the listener is told once it is:
 * wait for that (at most 10 s), running the loop. */
static int stored_count;
static void count_stored(void *ctx, const sk_spool_envelope *env)
{
    (void)ctx;
    (void)env;
    stored_count++;
}

static void wait_stored_on(struct event_base *base, int n)
{
    for (int i = 0; i < 10000 && stored_count < n; i++) {
        event_base_loop(base, EVLOOP_NONBLOCK);
        usleep(1000);
    }
    assert_int_equal(stored_count, n);
}

/* With an event base, sk_spool_open leaves checking the stored messages
 * to sk_spool_recover_next: each one handed over once, oldest first, in
 * batches, while the spool takes new mail (whose IDs come after theirs
 * and which is never handed over); one removed meanwhile is skipped; a
 * broken one is removed. Without an event base they are all checked at
 * open and nothing is left. */
static void test_recover_batches(void **state)
{
    static const char *const changes[] = {"none", "commit", "remove", "broken"};
    for (size_t c = 0; c < sizeof changes / sizeof changes[0]; c++) {
        done_rec r1 = {0}, r2 = {0};
        char *dir = dir_with_message(&r1);
        sk_error err;
        sk_spool *s = sk_spool_open(dir, NULL, NULL, &err);
        assert_non_null(s);
        commit_sync(s, body, strlen(body), &r2);
        assert_int_equal(r2.err, SK_OK);
        sk_spool_envelope **envs = NULL;
        size_t n = 0;
        bool more = true;
        assert_int_equal(sk_spool_unchecked_count(s), 0); /* no event base */
        assert_int_equal(sk_spool_recover_next(s, 8, &envs, &n, &more, &err), SK_OK);
        assert_int_equal(n, 0);
        assert_false(more);
        sk_free(envs);
        sk_spool_free(s);
        if (!strcmp(changes[c], "broken")) {
            /* r1's envelope no longer matches its file. */
            sk_buf path = SK_BUF_INIT(4096);
            assert_int_equal(sk_buf_printf(&path, "%s/spool/msg/%s.msg", dir, r1.id), SK_OK);
            assert_int_equal(truncate(sk_buf_cstr(&path), 10), 0);
            sk_buf_free(&path);
        }

        struct event_base *base = event_base_new();
        s = sk_spool_open(dir, NULL, base, &err);
        assert_non_null(s);
        assert_int_equal(sk_spool_unchecked_count(s), 2);
        done_rec r3 = {0};
        if (!strcmp(changes[c], "commit")) {
            stored_count = 0;
            sk_spool_set_listener(s, count_stored, NULL);
            commit_sync(s, body, strlen(body), &r3);
            event_base_loop(base, EVLOOP_ONCE);
            assert_int_equal(r3.calls, 1);
            assert_int_equal(r3.err, SK_OK);
            assert_true(strcmp(r3.id, r2.id) > 0);
            /* Journaled: its file, which the listing below counts, may
             * come after the callback. */
            wait_stored_on(base, 1);
        } else if (!strcmp(changes[c], "remove")) {
            assert_int_equal(sk_spool_remove(s, r1.id, &err), SK_OK);
        }
        const char *want[2];
        size_t nwant = 0;
        if (strcmp(changes[c], "remove") && strcmp(changes[c], "broken")) want[nwant++] = r1.id;
        want[nwant++] = r2.id;
        size_t got = 0;
        for (size_t call = 0; call < 2; call++) {
            assert_int_equal(sk_spool_recover_next(s, 1, &envs, &n, &more, &err), SK_OK);
            assert_int_equal(more, call == 0);
            assert_true(n <= 1);
            for (size_t i = 0; i < n; i++) {
                assert_true(got < nwant);
                assert_string_equal(envs[i]->id, want[got]);
                assert_int_equal(envs[i]->body_octets, strlen(body));
                assert_string_equal(envs[i]->sender, "alice@example.org");
                got++;
                sk_spool_envelope_free(envs[i]);
            }
            sk_free(envs);
        }
        assert_int_equal(got, nwant);
        assert_int_equal(sk_spool_unchecked_count(s), 0);
        assert_int_equal(sk_spool_recover_next(s, 1, &envs, &n, &more, &err), SK_OK);
        assert_int_equal(n, 0);
        assert_false(more);
        sk_free(envs);
        /* What is stored: the broken message is gone, the new one kept. */
        char **ids;
        assert_int_equal(sk_spool_list(s, &ids, &n, &err), SK_OK);
        assert_int_equal(n, nwant + (r3.calls ? 1 : 0));
        sk_spool_ids_free(ids, n);
        sk_spool_free(s);
        event_base_free(base);
        rm_tree(dir);
        free(dir);
    }
}

/* Recovery removes what a crash left half done, never a message because
 * of an error of the moment: a complete message whose file cannot be
 * renamed (ENOSPC: the directory may need a block) or whose envelope
 * cannot be read (EISDIR standing in for EIO) may have been acknowledged,
 * so opening fails and the files stay for the next try. This program
 * defines renameat2(2) so a test can make it fail (the library is linked
 * statically, so its calls come here). */
static int rename_fail_errno;

int renameat2(int olddirfd, const char *oldpath, int newdirfd, const char *newpath,
              unsigned int flags)
{
    if (rename_fail_errno) {
        errno = rename_fail_errno;
        return -1;
    }
    return (int)syscall(SYS_renameat2, olddirfd, oldpath, newdirfd, newpath, flags);
}

static void test_recovery_keeps_on_error(void **state)
{
    (void)state;
    enum { ENV_IS_DIR, RENAME_ENOSPC };
    static const struct {
        int how;
        sk_err want;
    } cases[] = {{ENV_IS_DIR, SK_ERR_IO}, {RENAME_ENOSPC, SK_ERR_NOSPACE}};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        print_message("case %zu\n", c);
        done_rec r = {0};
        char *dir = dir_with_message(&r);
        sk_error err;
        sk_spool *s;
        char msgp[512], newp[512], envp[512], kept[512];
        snprintf(msgp, sizeof msgp, "%s/spool/msg/%s.msg", dir, r.id);
        snprintf(newp, sizeof newp, "%s/spool/msg/%s.new", dir, r.id);
        snprintf(envp, sizeof envp, "%s/spool/msg/%s.env", dir, r.id);
        if (cases[c].how == ENV_IS_DIR) {
            assert_int_equal(mkdir(envp, 0700), 0);
            snprintf(kept, sizeof kept, "%s", msgp);
        } else {
            /* Made durable, not yet renamed: the state recovery promotes. */
            assert_int_equal(rename(msgp, newp), 0);
            snprintf(kept, sizeof kept, "%s", newp);
            rename_fail_errno = ENOSPC;
        }
        s = sk_spool_open(dir, NULL, NULL, &err);
        rename_fail_errno = 0;
        assert_null(s);
        assert_int_equal(err.err, cases[c].want);
        struct stat st;
        assert_int_equal(stat(kept, &st), 0);
        /* Once the trouble is gone, the message is there, intact. */
        if (cases[c].how == ENV_IS_DIR) assert_int_equal(rmdir(envp), 0);
        s = sk_spool_open(dir, NULL, NULL, &err);
        assert_non_null(s);
        sk_spool_envelope *env;
        assert_int_equal(sk_spool_load(s, r.id, &env, &err), SK_OK);
        assert_int_equal(env->body_octets, strlen(body));
        sk_spool_envelope_free(env);
        sk_spool_free(s);
        rm_tree(dir);
        free(dir);
    }
}

/* Read a whole file into a malloc'd buffer. */
static char *slurp(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    assert_int_equal(fseek(f, 0, SEEK_END), 0);
    long len = ftell(f);
    assert_true(len >= 0);
    rewind(f);
    char *p = malloc((size_t)len + 1);
    assert_non_null(p);
    assert_int_equal(fread(p, 1, (size_t)len, f), (size_t)len);
    fclose(f);
    *n = (size_t)len;
    return p;
}

static void spit(const char *path, const char *p, size_t n)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(p, 1, n, f), n);
    assert_int_equal(fclose(f), 0);
}

/* What a crash can leave of a commit in flight, in any state: ID.new
 * (written, maybe made durable, not yet renamed), and files of earlier
 * versions, which kept the envelope only in ID.env (ID.env.tmp while
 * committing). Recovery keeps a message in flight only when its envelope
 * is complete and the body matches its recorded size and CRC-32C; a
 * committed one when the sizes agree. */
static void test_recovery_rules(void **state)
{
    (void)state;
    enum { INTACT, TORN_ENV, NO_END, BODY_SHORT, BODY_LONG, BODY_FLIPPED, NO_CRC, CRC_WRONG };
    enum { IN_FLIGHT, COMMITTED, OLD_IN_FLIGHT, OLD_COMMITTED };
    static const struct {
        int layout, damage, kept;
    } cases[] = {
        {IN_FLIGHT, INTACT, 1},       {IN_FLIGHT, TORN_ENV, 0},       {IN_FLIGHT, NO_END, 0},
        {IN_FLIGHT, BODY_SHORT, 0},   {IN_FLIGHT, BODY_LONG, 0},      {IN_FLIGHT, BODY_FLIPPED, 0},
        {IN_FLIGHT, NO_CRC, 0},       {IN_FLIGHT, CRC_WRONG, 0},      {COMMITTED, INTACT, 1},
        {COMMITTED, BODY_SHORT, 0},   {COMMITTED, BODY_LONG, 0},      {COMMITTED, TORN_ENV, 0},
        {OLD_IN_FLIGHT, INTACT, 1},   {OLD_IN_FLIGHT, BODY_SHORT, 0}, {OLD_IN_FLIGHT, CRC_WRONG, 0},
        {OLD_IN_FLIGHT, TORN_ENV, 0}, {OLD_COMMITTED, INTACT, 1},     {OLD_COMMITTED, BODY_LONG, 0},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        print_message("case %zu\n", c);
        done_rec r = {0};
        char *dir = dir_with_message(&r);
        sk_error err;
        sk_spool *s;

        /* Take the committed file apart: body, envelope (the trailer is
         * rebuilt below, pointing at the end of the body as written). */
        char msgp[512], newp[512], envp[512], tmpp[512];
        snprintf(msgp, sizeof msgp, "%s/spool/msg/%s.msg", dir, r.id);
        snprintf(newp, sizeof newp, "%s/spool/msg/%s.new", dir, r.id);
        snprintf(envp, sizeof envp, "%s/spool/msg/%s.env", dir, r.id);
        snprintf(tmpp, sizeof tmpp, "%s/spool/msg/%s.env.tmp", dir, r.id);
        size_t flen, blen = strlen(body);
        char *file = slurp(msgp, &flen);
        size_t elen = flen - blen - SK_SPOOL_TRAILER_OCTETS;
        char bd[512], env[4096];
        memcpy(bd, file, blen);
        memcpy(env, file + blen, elen);
        free(file);
        assert_int_equal(unlink(msgp), 0);
        char *crc = memmem(env, elen, "body-crc32c ", 12);
        assert_non_null(crc);
        switch (cases[c].damage) {
        case TORN_ENV:
            elen /= 2;
            break;
        case NO_END:
            elen -= strlen("end\n");
            break;
        case BODY_SHORT:
            blen--;
            break;
        case BODY_LONG:
            bd[blen++] = 'x';
            break;
        case BODY_FLIPPED:
            bd[3] ^= 0x20;
            break;
        case NO_CRC: {
            char *nl = memchr(crc, '\n', elen - (size_t)(crc - env));
            memmove(crc, nl + 1, elen - (size_t)(nl + 1 - env));
            elen -= (size_t)(nl + 1 - crc);
            break;
        }
        case CRC_WRONG:
            crc[strlen("body-crc32c ")] ^= 1;
            break;
        default:
            break;
        }
        int old = cases[c].layout == OLD_IN_FLIGHT || cases[c].layout == OLD_COMMITTED;
        if (old) {
            spit(msgp, bd, blen);
            spit(cases[c].layout == OLD_IN_FLIGHT ? tmpp : envp, env, elen);
        } else {
            char whole[8192];
            memcpy(whole, bd, blen);
            memcpy(whole + blen, env, elen);
            size_t n = blen + elen;
            /* A torn envelope has no trailer yet. */
            if (cases[c].damage != TORN_ENV)
                n += (size_t)snprintf(whole + n, sizeof whole - n, "smtpkit-envelope-at %015zu\n",
                                      blen);
            spit(cases[c].layout == IN_FLIGHT ? newp : msgp, whole, n);
        }

        s = sk_spool_open(dir, NULL, NULL, &err);
        assert_non_null(s);
        char **ids;
        size_t n;
        assert_int_equal(sk_spool_list(s, &ids, &n, &err), SK_OK);
        assert_int_equal(n, (size_t)cases[c].kept);
        sk_spool_ids_free(ids, n);
        /* Kept: committed and loadable; removed: no file of it left. */
        assert_int_equal(count_files(dir), cases[c].kept ? 1 + old : 0);
        if (cases[c].kept) {
            sk_spool_envelope *e;
            assert_int_equal(sk_spool_load(s, r.id, &e, &err), SK_OK);
            assert_int_equal(e->body_octets, strlen(body));
            assert_true(e->has_body_crc32c);
            assert_int_equal(e->body_crc32c, sk_spool_crc32c(0, body, strlen(body)));
            sk_spool_envelope_free(e);
            sk_buf h = SK_BUF_INIT(4096);
            assert_int_equal(sk_spool_read_headers(s, r.id, &h, NULL), SK_OK);
            assert_string_equal(h.data, "Subject: hi\r\nFrom: a@b\r\n");
            sk_buf_free(&h);
        }
        sk_spool_free(s);
        rm_tree(dir);
        free(dir);
    }
}

/* ---- group commit on an event loop ---- */

#define GROUP_N 64

typedef struct group_ctx {
    struct event_base *base;
    done_rec recs[GROUP_N];
    int done, listened;
} group_ctx;

static void group_done(void *ctx, sk_err err, const char *id)
{
    done_rec *r = ctx;
    on_done(r, err, id);
}

static void group_listener(void *ctx, const sk_spool_envelope *env)
{
    group_ctx *g = ctx;
    assert_true(sk_spool_id_valid(env->id));
    if (++g->listened == GROUP_N) event_base_loopbreak(g->base);
}

/* The first sync waits until every message has been handed over, so the
 * grouping is deterministic: the first batch and then one more at most. */
static int sync_calls, all_handed_over;
static int counting_sync(void *ctx, int fd)
{
    if (__atomic_add_fetch(&sync_calls, 1, __ATOMIC_SEQ_CST) == 1)
        while (!__atomic_load_n(&all_handed_over, __ATOMIC_SEQ_CST)) usleep(1000);
    /* fsync covers a file, or the directory in place of syncfs. */
    return fsync(fd);
}

static void group_commit_mode(sk_spool_sync mode)
{
    char *dir = temp_dir();
    group_ctx g = {.base = event_base_new()};
    sk_error err;
    /* Opening makes the journal (SYNC_LOG), with a sync of its own. */
    all_handed_over = 1;
    sk_spool *s =
        sk_spool_open(dir, &(sk_spool_opts){.sync = mode, .sync_fn = counting_sync}, g.base, &err);
    assert_non_null(s);
    sync_calls = all_handed_over = 0;
    sk_spool_set_listener(s, group_listener, &g);
    sk_spool_msg *m[GROUP_N];
    char bodies[GROUP_N][64];
    for (int i = 0; i < GROUP_N; i++) {
        sk_spool_envelope e = test_env();
        m[i] = sk_spool_begin(s, &e, &err);
        assert_non_null(m[i]);
        snprintf(bodies[i], sizeof bodies[i], "Subject: %d\r\n\r\nbody %d\r\n", i, i);
        assert_int_equal(sk_spool_write(m[i], bodies[i], strlen(bodies[i])), SK_OK);
    }
    /* All end their DATA at once. */
    for (int i = 0; i < GROUP_N; i++) sk_spool_commit(m[i], group_done, &g.recs[i]);
    __atomic_store_n(&all_handed_over, 1, __ATOMIC_SEQ_CST);
    /* No done callback before the loop runs: they come on the loop. */
    for (int i = 0; i < GROUP_N; i++) assert_int_equal(g.recs[i].calls, 0);
    event_base_dispatch(g.base);
    for (int i = 0; i < GROUP_N; i++) {
        assert_int_equal(g.recs[i].calls, 1);
        assert_int_equal(g.recs[i].err, SK_OK);
        for (int k = 0; k < i; k++) assert_string_not_equal(g.recs[i].id, g.recs[k].id);
    }
    assert_int_equal(g.listened, GROUP_N);
    /* At most two batches, so the committer grouped them. SYNC_LOG: one
     * fdatasync of the journal per batch; SYNC_FS: one barrier per batch,
     * whatever its size. SYNC_FILES: one data sync per message (its one
     * file) and one directory sync per batch. */
    int per_msg = mode == SK_SPOOL_SYNC_FILES ? GROUP_N : 0;
    /* SYNC_LOG: the materializer's syncfs every few files written comes
     * on top (MATERIALIZE_SYNC_FILES, 8, in src/spool/materialize.c). */
    int materializer = mode == SK_SPOOL_SYNC_LOG ? GROUP_N / 8 : 0;
    assert_true(sync_calls >= per_msg + 1);
    assert_true(sync_calls <= per_msg + 2 + materializer);
    /* A removal is visible at once; the committer syncs the directory
     * (SYNC_LOG: a checkpoint, a syncfs and the journal's new header),
     * and only then unlinks a saved envelope (ID.env) of the message. */
    sk_spool_envelope *gone;
    assert_int_equal(sk_spool_load(s, g.recs[0].id, &gone, &err), SK_OK);
    gone->attempts = 1;
    assert_int_equal(sk_spool_save(s, gone, &err), SK_OK);
    sk_spool_envelope_free(gone);
    assert_int_equal(count_files(dir), GROUP_N + 1);
    int before = __atomic_load_n(&sync_calls, __ATOMIC_SEQ_CST);
    assert_int_equal(sk_spool_remove(s, g.recs[0].id, &err), SK_OK);
    assert_int_equal(sk_spool_load(s, g.recs[0].id, &gone, &err), SK_ERR_NOT_FOUND);
    sk_spool_free(s); /* finishes what the committer was asked */
    assert_int_equal(sync_calls, before + (mode == SK_SPOOL_SYNC_LOG ? 2 : 1));
    assert_int_equal(count_files(dir), GROUP_N - 1);
    event_base_free(g.base);

    /* All durable and intact after reopening. */
    s = sk_spool_open(dir, NULL, NULL, &err);
    assert_non_null(s);
    char **ids;
    size_t n;
    assert_int_equal(sk_spool_list(s, &ids, &n, &err), SK_OK);
    assert_int_equal(n, GROUP_N - 1);
    for (int i = 1; i < GROUP_N; i++) {
        sk_spool_envelope *env;
        assert_int_equal(sk_spool_load(s, g.recs[i].id, &env, &err), SK_OK);
        assert_int_equal(env->body_octets, strlen(bodies[i]));
        sk_spool_envelope_free(env);
        sk_buf h = SK_BUF_INIT(4096);
        assert_int_equal(sk_spool_read_headers(s, g.recs[i].id, &h, NULL), SK_OK);
        char want[32];
        snprintf(want, sizeof want, "Subject: %d\r\n", i);
        assert_string_equal(h.data, want);
        sk_buf_free(&h);
    }
    sk_spool_ids_free(ids, n);
    sk_spool_free(s);
    rm_tree(dir);
    free(dir);
}

static void test_group_commit(void **state)
{
    group_commit_mode(SK_SPOOL_SYNC_LOG);
    group_commit_mode(SK_SPOOL_SYNC_FS);
    group_commit_mode(SK_SPOOL_SYNC_FILES);
}

/* The barrier of every group fails: each sync of the directory (the syncfs,
 * or the directory fsync of SYNC_FILES), or with group_fail_files each
 * sync of a file (the journal's fdatasync of SYNC_LOG) once the spool is
 * open; the first sync waits until every message is handed over, so the
 * groups are large. */
static int group_fail_errno, group_fail_files, group_fail_armed;
static int failing_group_sync(void *ctx, int fd)
{
    if (!__atomic_load_n(&group_fail_armed, __ATOMIC_SEQ_CST)) return fsync(fd);
    int n = __atomic_add_fetch(&sync_calls, 1, __ATOMIC_SEQ_CST);
    if (n == 1)
        while (!__atomic_load_n(&all_handed_over, __ATOMIC_SEQ_CST)) usleep(1000);
    struct stat st;
    if (fstat(fd, &st) == 0 && (S_ISDIR(st.st_mode) ? 0 : 1) == group_fail_files) {
        errno = group_fail_errno;
        return -1;
    }
    return fsync(fd);
}

static void test_group_barrier_failure(void **state)
{
    static const struct {
        sk_spool_sync mode;
        int err;
        sk_err want;
        int files; /* fail the syncs of files, not of the directory */
    } cases[] = {
        {SK_SPOOL_SYNC_FS, EIO, SK_ERR_IO, 0},         /* the syncfs */
        {SK_SPOOL_SYNC_FS, ENOSPC, SK_ERR_NOSPACE, 0}, /* writeback found no space */
        {SK_SPOOL_SYNC_FILES, EIO, SK_ERR_IO, 0},      /* the directory fsync */
        {SK_SPOOL_SYNC_LOG, EIO, SK_ERR_IO, 1},        /* the journal's fdatasync */
        {SK_SPOOL_SYNC_LOG, ENOSPC, SK_ERR_NOSPACE, 1},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        char *dir = temp_dir();
        group_ctx g = {.base = event_base_new()};
        sk_error err;
        sync_calls = all_handed_over = 0;
        group_fail_errno = cases[c].err;
        group_fail_files = cases[c].files;
        group_fail_armed = 0;
        sk_spool_opts o = {.sync = cases[c].mode, .sync_fn = failing_group_sync};
        sk_spool *s = sk_spool_open(dir, &o, g.base, &err);
        assert_non_null(s);
        __atomic_store_n(&group_fail_armed, 1, __ATOMIC_SEQ_CST);
        sk_spool_set_listener(s, group_listener, &g);
        for (int i = 0; i < GROUP_N; i++) {
            sk_spool_envelope e = test_env();
            sk_spool_msg *m = sk_spool_begin(s, &e, &err);
            assert_non_null(m);
            assert_int_equal(sk_spool_write(m, body, strlen(body)), SK_OK);
            sk_spool_commit(m, group_done, &g.recs[i]);
        }
        __atomic_store_n(&all_handed_over, 1, __ATOMIC_SEQ_CST);
        sk_spool_free(s); /* waits for the committer and runs every done */
        event_base_free(g.base);
        /* Every message of the group is told, none is acknowledged. */
        for (int i = 0; i < GROUP_N; i++) {
            assert_int_equal(g.recs[i].calls, 1);
            assert_int_equal(g.recs[i].err, cases[c].want);
        }
        assert_int_equal(g.listened, 0);
        assert_int_equal(count_files(dir), 0);
        s = sk_spool_open(dir, NULL, NULL, &err);
        assert_non_null(s);
        char **ids;
        size_t n;
        assert_int_equal(sk_spool_list(s, &ids, &n, &err), SK_OK);
        assert_int_equal(n, 0);
        sk_spool_ids_free(ids, n);
        sk_spool_free(s);
        rm_tree(dir);
        free(dir);
    }
}

/* ---- injected failures ---- */

typedef struct fault {
    int fail_write_after; /* -1: never; else the Nth write fails */
    int fail_sync_at;     /* -1: never; else the Nth sync (body, env, dir) fails */
    int err;
    int writes, syncs;
} fault;

static ssize_t fault_write(void *ctx, int fd, const void *p, size_t n)
{
    fault *f = ctx;
    if (f->fail_write_after >= 0 && f->writes++ == f->fail_write_after) {
        errno = f->err;
        return -1;
    }
    return write(fd, p, n);
}

static int fault_sync(void *ctx, int fd)
{
    fault *f = ctx;
    if (f->fail_sync_at >= 0 && f->syncs++ == f->fail_sync_at) {
        errno = f->err;
        return -1;
    }
    return fsync(fd);
}

static void test_write_failures(void **state)
{
    static const struct {
        sk_spool_sync mode;
        int fail_write_after, fail_sync_at, err;
        sk_err want;
        int only; /* 0: with and without an event base; 1: without; 2: with */
    } cases[] = {
        {SK_SPOOL_SYNC_FS, 0, -1, ENOSPC, SK_ERR_NOSPACE, 0}, /* the body */
        {SK_SPOOL_SYNC_FS, 1, -1, ENOSPC, SK_ERR_NOSPACE, 0}, /* the envelope */
        {SK_SPOOL_SYNC_FS, 2, -1, ENOSPC, SK_ERR_NOSPACE, 0}, /* the trailer */
        {SK_SPOOL_SYNC_FS, 0, -1, EDQUOT, SK_ERR_NOSPACE, 0},
        {SK_SPOOL_SYNC_FS, 0, -1, EIO, SK_ERR_IO, 0},
        {SK_SPOOL_SYNC_FS, -1, 0, EIO, SK_ERR_IO, 0},         /* syncfs */
        {SK_SPOOL_SYNC_FS, -1, 0, ENOSPC, SK_ERR_NOSPACE, 0}, /* syncfs */
        {SK_SPOOL_SYNC_FS, -1, -1, 0, SK_OK, 0},              /* control: no fault */
        {SK_SPOOL_SYNC_FILES, 0, -1, ENOSPC, SK_ERR_NOSPACE, 0},
        {SK_SPOOL_SYNC_FILES, 1, -1, ENOSPC, SK_ERR_NOSPACE, 0},
        {SK_SPOOL_SYNC_FILES, -1, 0, EIO, SK_ERR_IO, 0},         /* file fdatasync */
        {SK_SPOOL_SYNC_FILES, -1, 0, ENOSPC, SK_ERR_NOSPACE, 0}, /* file fdatasync */
        {SK_SPOOL_SYNC_FILES, -1, 1, EIO, SK_ERR_IO, 0},         /* directory fsync */
        {SK_SPOOL_SYNC_FILES, -1, -1, 0, SK_OK, 0},
        /* SYNC_LOG: write 0 and sync 0 make the journal at open. Without
         * an event base, then the message file (1 body, 2 envelope, 3
         * trailer), then the record (write 4, sync 1). */
        {SK_SPOOL_SYNC_LOG, 0, -1, ENOSPC, SK_OK, 0}, /* no journal: a syncfs instead */
        {SK_SPOOL_SYNC_LOG, 1, -1, ENOSPC, SK_ERR_NOSPACE, 1},
        {SK_SPOOL_SYNC_LOG, 3, -1, EIO, SK_ERR_IO, 1},
        {SK_SPOOL_SYNC_LOG, 4, -1, ENOSPC, SK_ERR_NOSPACE, 1}, /* the record */
        {SK_SPOOL_SYNC_LOG, 4, -1, EIO, SK_ERR_IO, 1},
        /* With one, the record (write 1, sync 1) and the 250, then the
         * file (writes 2-4) by the materializer, which tries a failed
         * write again a second later: the message stays acknowledged. */
        {SK_SPOOL_SYNC_LOG, 1, -1, ENOSPC, SK_ERR_NOSPACE, 2}, /* the record */
        {SK_SPOOL_SYNC_LOG, 1, -1, EIO, SK_ERR_IO, 2},
        {SK_SPOOL_SYNC_LOG, 2, -1, ENOSPC, SK_OK, 2},  /* the file's body */
        {SK_SPOOL_SYNC_LOG, 4, -1, EIO, SK_OK, 2},     /* the file's trailer */
        {SK_SPOOL_SYNC_LOG, -1, 1, EIO, SK_ERR_IO, 0}, /* the journal's fdatasync */
        {SK_SPOOL_SYNC_LOG, -1, 1, ENOSPC, SK_ERR_NOSPACE, 0},
        {SK_SPOOL_SYNC_LOG, -1, -1, 0, SK_OK, 0},
    };
    for (int threaded = 0; threaded < 2; threaded++) {
        for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
            if (cases[i].only && cases[i].only != threaded + 1) continue;
            char *dir = temp_dir();
            fault f = {cases[i].fail_write_after, cases[i].fail_sync_at, cases[i].err, 0, 0};
            struct event_base *base = threaded ? event_base_new() : NULL;
            sk_spool_opts o = {.sync = cases[i].mode,
                               .write_fn = fault_write,
                               .sync_fn = fault_sync,
                               .hook_ctx = &f};
            sk_error err;
            sk_spool *s = sk_spool_open(dir, &o, base, &err);
            assert_non_null(s);
            sk_spool_envelope e = test_env();
            sk_spool_msg *m = sk_spool_begin(s, &e, &err);
            assert_non_null(m);
            /* The session keeps writing; the error is reported at commit. */
            sk_spool_write(m, body, strlen(body));
            done_rec r = {0};
            sk_spool_commit(m, on_done, &r);
            if (base) event_base_loop(base, EVLOOP_ONCE);
            assert_int_equal(r.calls, 1);
            assert_int_equal(r.err, cases[i].want);
            sk_spool_free(s);
            if (base) event_base_free(base);
            /* Nothing visible after a failure, and recovery agrees. */
            assert_int_equal(count_files(dir), cases[i].want ? 0 : 1);
            s = sk_spool_open(dir, NULL, NULL, &err);
            char **ids;
            size_t n;
            assert_int_equal(sk_spool_list(s, &ids, &n, &err), SK_OK);
            assert_int_equal(n, cases[i].want ? 0 : 1);
            sk_spool_ids_free(ids, n);
            sk_spool_free(s);
            rm_tree(dir);
            free(dir);
        }
    }
}

/* Spare files: unnamed until a message takes one, so an idle spool shows
 * no file for them (and a crash leaves none); a taken spare keeps O_EXCL's
 * rule, failing only its own message when the name exists. */
typedef struct spare_ctx {
    struct event_base *base;
    done_rec rec;
} spare_ctx;

static void spare_done(void *ctx, sk_err err, const char *id)
{
    spare_ctx *c = ctx;
    on_done(&c->rec, err, id);
    event_base_loopbreak(c->base);
}

static void wait_spares_ready(sk_spool *s)
{
    size_t ready = 0, used;
    int off;
    /* Bounded: 10 s at most, then the assertion below reports it. */
    for (int i = 0; i < 10000; i++) {
        sk_spool_spare_stats(s, &ready, &used, &off);
        if (ready >= 2 || off) break;
        usleep(1000);
    }
    assert_int_equal(off, 0);
    assert_true(ready >= 2);
}

static void test_spare_files(void **state)
{
    static const struct {
        const char *taken_ext; /* a file already there under the message's name, or NULL */
        sk_err want;
        size_t want_used; /* spares linked by this message */
    } cases[] = {
        {NULL, SK_OK, 1},
        /* Another message's file in flight, or committed, under the ID. */
        {SK_SPOOL_NEW_EXT, SK_ERR_IO, 0},
        {SK_SPOOL_BODY_EXT, SK_ERR_IO, 1},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        char *dir = temp_dir();
        spare_ctx ctx = {.base = event_base_new()};
        sk_error err;
        /* Files made before the barrier (a journaled message's file is
         * made after its 250: test_journal_materialize). */
        sk_spool *s =
            sk_spool_open(dir, &(sk_spool_opts){.sync = SK_SPOOL_SYNC_FS}, ctx.base, &err);
        assert_non_null(s);
        wait_spares_ready(s);
        assert_int_equal(count_files(dir), 0);
        size_t ready, used0, used1;
        int off;
        sk_spool_spare_stats(s, &ready, &used0, &off);

        sk_spool_envelope e = test_env();
        sk_spool_msg *m = sk_spool_begin(s, &e, &err);
        assert_non_null(m);
        char other[512];
        if (cases[c].taken_ext) {
            snprintf(other, sizeof other, "%s/spool/msg/%s%s", dir, sk_spool_msg_id(m),
                     cases[c].taken_ext);
            write_file(other, "not yours");
        }
        assert_int_equal(sk_spool_write(m, body, strlen(body)), SK_OK);
        sk_spool_commit(m, spare_done, &ctx);
        event_base_dispatch(ctx.base);
        assert_int_equal(ctx.rec.calls, 1);
        assert_int_equal(ctx.rec.err, cases[c].want);
        sk_spool_spare_stats(s, &ready, &used1, &off);
        assert_int_equal(used1 - used0, cases[c].want_used);
        assert_int_equal(off, 0);
        if (cases[c].want == SK_OK) {
            /* The body is the linked spare, complete. */
            char path[512];
            snprintf(path, sizeof path, "%s/spool/msg/%s%s", dir, ctx.rec.id, SK_SPOOL_BODY_EXT);
            check_msg_file(path, body, strlen(body));
            assert_int_equal(count_files(dir), 1); /* ID.msg */
        } else {
            /* Only the other file is left, unchanged. */
            size_t len;
            char *got = slurp(other, &len);
            assert_int_equal(len, strlen("not yours"));
            assert_memory_equal(got, "not yours", len);
            free(got);
            assert_int_equal(count_files(dir), 1);
        }
        sk_spool_free(s);
        event_base_free(ctx.base);
        /* Reopening finds the committed message, and no spare left behind. */
        s = sk_spool_open(dir, NULL, NULL, &err);
        assert_non_null(s);
        char **ids;
        size_t n;
        assert_int_equal(sk_spool_list(s, &ids, &n, &err), SK_OK);
        /* The other file: an ID.new without envelope is removed; a
         * committed ID.msg of someone else's "not yours" is not a message
         * either (no envelope), so it goes too. */
        assert_int_equal(n, cases[c].want == SK_OK ? 1 : 0);
        sk_spool_ids_free(ids, n);
        sk_spool_spare_stats(s, &ready, &used0, &off);
        assert_int_equal(off, -1); /* no event base: no spares */
        sk_spool_free(s);
        rm_tree(dir);
        free(dir);
    }
}

/* ---- header block kept from the write path ---- */

typedef struct hdr_case {
    const char *name;
    const char *body; /* NULL: built by make_hdr_body */
    int build;        /* 1: 9000-octet header block; 2: 10000 octets, no empty line */
    size_t piece;     /* write size */
    size_t want_len;  /* expected header block length */
    /* Served without the file: the whole body is still in memory (up to
     * 64 KiB), or the captured copy holds the header block. */
    int from_memory;
} hdr_case;

typedef struct hdr_rec {
    sk_spool *s;
    const hdr_case *c;
    const char *body;
    int calls;
    sk_err with_file, without_file;
    sk_buf got_with, got_without;
} hdr_rec;

static void hdr_done(void *ctx, sk_err err, const char *id)
{
    hdr_rec *r = ctx;
    r->calls++;
    assert_int_equal(err, SK_OK);
    r->with_file = sk_spool_read_headers(r->s, id, &r->got_with, NULL);
    /* Without the file only the captured copy can answer. */
    sk_buf path = SK_BUF_INIT(4096);
    assert_int_equal(sk_spool_body_path(r->s, id, &path), SK_OK);
    assert_int_equal(unlink(path.data), 0);
    sk_buf_free(&path);
    r->without_file = sk_spool_read_headers(r->s, id, &r->got_without, NULL);
}

static char *make_hdr_body(int build)
{
    char *b = malloc(100001);
    assert_non_null(b);
    size_t n = 0;
    while (n < (build == 2 ? 10000u : 9000u)) {
        memcpy(b + n, "X-Pad: 12345678\r\n", 17);
        n += 17;
    }
    b[n] = '\0';
    if (build == 1) strcat(b, "\r\nthe body\r\n");
    if (build == 3) {
        /* A body past the 64 KiB kept in memory. */
        strcat(b, "\r\n");
        n += 2;
        memset(b + n, 'b', 70000);
        b[n + 70000] = '\0';
    }
    return b;
}

static void test_headers_captured(void **state)
{
    (void)state;
    static const hdr_case cases[] = {
        {"header and body", "Subject: hi\r\n\r\nbody\r\n", 0, 5, 13, 1},
        {"no header fields", "\r\nbody only\r\n", 0, 1, 0, 1},
        {"no empty line, short", "Subject: x\r\nno blank line\r\n", 0, 3, 27, 1},
        {"empty line across writes", "A: b\r\n\r\nrest\r\n", 0, 7, 6, 1},
        {"empty line byte by byte", "A: b\r\nC: d\r\n\r\nrest\r\n", 0, 1, 12, 1},
        {"empty body", "", 0, 1, 0, 1},
        {"header block past the capture", NULL, 1, 4096, 9010, 1},
        {"long body without empty line", NULL, 2, 4096, 10013, 1},
        {"header block past the capture, large body", NULL, 3, 4096, 9010, 0},
    };
    char *dir = temp_dir();
    sk_error err;
    sk_spool *s = sk_spool_open(dir, NULL, NULL, &err);
    assert_non_null(s);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const hdr_case *c = &cases[i];
        char *built = c->body ? NULL : make_hdr_body(c->build);
        const char *b = c->body ? c->body : built;
        size_t n = strlen(b);
        hdr_rec r = {.s = s, .c = c, .body = b};
        sk_buf_init(&r.got_with, 1 << 20);
        sk_buf_init(&r.got_without, 1 << 20);
        sk_spool_envelope e = test_env();
        sk_spool_msg *m = sk_spool_begin(s, &e, NULL);
        assert_non_null(m);
        for (size_t off = 0; off < n; off += c->piece)
            assert_int_equal(sk_spool_write(m, b + off, n - off < c->piece ? n - off : c->piece),
                             SK_OK);
        char id[SK_SPOOL_ID_SIZE];
        snprintf(id, sizeof id, "%s", sk_spool_msg_id(m));
        sk_spool_commit(m, hdr_done, &r);
        print_message("case: %s\n", c->name);
        assert_int_equal(r.calls, 1);
        assert_int_equal(r.with_file, SK_OK);
        assert_int_equal(r.got_with.len, c->want_len);
        if (c->want_len) assert_memory_equal(r.got_with.data, b, c->want_len);
        if (c->from_memory) {
            assert_int_equal(r.without_file, SK_OK);
            assert_int_equal(r.got_without.len, c->want_len);
            if (c->want_len) assert_memory_equal(r.got_without.data, b, c->want_len);
        } else {
            assert_int_equal(r.without_file, SK_ERR_NOT_FOUND);
        }
        /* Once its commit has been reported the copy is gone. */
        sk_buf after = SK_BUF_INIT(4096);
        assert_int_equal(sk_spool_read_headers(s, id, &after, NULL), SK_ERR_NOT_FOUND);
        sk_buf_free(&after);
        sk_buf_free(&r.got_with);
        sk_buf_free(&r.got_without);
        free(built);
    }
    sk_spool_free(s);
    rm_tree(dir);
    free(dir);
}

/* The header block read back from the file after the commit is the one
 * captured while it was written, whatever octets the body holds: a NUL
 * (DATA passes it through), or an ending that looks like a message
 * file's trailer (possible through sk_spool_write; an SMTP body ends with
 * CRLF, which no trailer does). */
typedef struct file_hdr_rec {
    sk_spool *s;
    sk_err err;
    sk_buf got;
} file_hdr_rec;

static void file_hdr_done(void *ctx, sk_err err, const char *id)
{
    file_hdr_rec *r = ctx;
    assert_int_equal(err, SK_OK);
    r->err = sk_spool_read_headers(r->s, id, &r->got, NULL);
}

static void test_read_headers_from_file(void **state)
{
    (void)state;
    static const struct {
        const char *name;
        const char *body;
        size_t len, want_len;
    } cases[] = {
        {"NUL in a header field", "A: b\0c\r\n\r\nrest\r\n", 16, 8},
        {"NUL in the body", "A: b\r\n\r\nx\0y\r\n", 13, 6},
        {"NUL and no empty line", "A: b\0c\r\nD: e\r\n", 14, 14},
        {"body ends like a trailer", "A: b\r\n\r\nsmtpkit-envelope-at 000000000000000\n", 44, 6},
    };
    char *dir = temp_dir();
    sk_error err;
    sk_spool *s = sk_spool_open(dir, NULL, NULL, &err);
    assert_non_null(s);
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        print_message("case: %s\n", cases[c].name);
        file_hdr_rec r = {.s = s};
        sk_buf_init(&r.got, 4096);
        sk_spool_envelope e = test_env();
        sk_spool_msg *m = sk_spool_begin(s, &e, NULL);
        assert_non_null(m);
        assert_int_equal(sk_spool_write(m, cases[c].body, cases[c].len), SK_OK);
        char id[SK_SPOOL_ID_SIZE];
        snprintf(id, sizeof id, "%s", sk_spool_msg_id(m));
        sk_spool_commit(m, file_hdr_done, &r);
        /* From the copy kept while writing... */
        assert_int_equal(r.err, SK_OK);
        assert_int_equal(r.got.len, cases[c].want_len);
        assert_memory_equal(r.got.data, cases[c].body, cases[c].want_len);
        /* ...and from the file, the same. */
        sk_buf h = SK_BUF_INIT(4096);
        assert_int_equal(sk_spool_read_headers(s, id, &h, NULL), SK_OK);
        assert_int_equal(h.len, cases[c].want_len);
        assert_memory_equal(h.data, cases[c].body, cases[c].want_len);
        sk_buf_free(&h);
        sk_spool_envelope *env;
        assert_int_equal(sk_spool_load(s, id, &env, &err), SK_OK);
        assert_int_equal(env->body_octets, cases[c].len);
        sk_spool_envelope_free(env);
        sk_buf_free(&r.got);
    }
    sk_spool_free(s);
    /* Recovery keeps them all. */
    s = sk_spool_open(dir, NULL, NULL, &err);
    assert_non_null(s);
    char **ids;
    size_t n;
    assert_int_equal(sk_spool_list(s, &ids, &n, &err), SK_OK);
    assert_int_equal(n, sizeof cases / sizeof cases[0]);
    sk_spool_ids_free(ids, n);
    sk_spool_free(s);
    rm_tree(dir);
    free(dir);
}

/* sk_spool_read_headers of a message removed, and its file reused by the
 * next message, between opening the file and reading it: what it read is
 * not this message, so it answers "not found" (docs/queue.md "Reused
 * files"). To land the removal exactly there, this program defines
 * pread(2) itself: the library is linked statically, so the spool's calls
 * come here. When armed, the first read at offset 0 (the body's start;
 * the envelope and trailer reads that precede it are at other offsets)
 * first runs the removal, and the commit of another message, then reads. */
static struct {
    int armed, fired;
    int action; /* 0 nothing, 1 remove, 2 remove and commit a message that reuses the file */
    sk_spool *s;
    char id[SK_SPOOL_ID_SIZE];
} race;

ssize_t pread(int fd, void *buf, size_t n, off_t off)
{
    if (race.armed && off == 0) {
        race.armed = 0;
        race.fired = 1;
        if (race.action >= 1) assert_int_equal(sk_spool_remove(race.s, race.id, NULL), SK_OK);
        if (race.action == 2) {
            static const char other[] = "Subject: someone else\r\n\r\nnot yours\r\n";
            done_rec r = {0};
            commit_sync(race.s, other, strlen(other), &r);
            assert_int_equal(r.err, SK_OK);
        }
    }
    return syscall(SYS_pread64, fd, buf, n, off);
}

static void test_read_headers_reused_underneath(void **state)
{
    (void)state;
    static const struct {
        int action;
        sk_err want;
        size_t want_reused;
    } cases[] = {{0, SK_OK, 0}, {1, SK_ERR_NOT_FOUND, 0}, {2, SK_ERR_NOT_FOUND, 1}};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        print_message("case %zu\n", c);
        char *dir = temp_dir();
        sk_error err;
        sk_spool *s = sk_spool_open(dir, NULL, NULL, &err);
        assert_non_null(s);
        done_rec r = {0};
        commit_sync(s, body, strlen(body), &r);
        assert_int_equal(r.err, SK_OK);
        race.s = s;
        race.action = cases[c].action;
        snprintf(race.id, sizeof race.id, "%s", r.id);
        race.fired = 0;
        race.armed = 1;
        sk_buf h = SK_BUF_INIT(4096);
        assert_int_equal(sk_spool_read_headers(s, r.id, &h, NULL), cases[c].want);
        assert_int_equal(race.fired, 1);
        race.armed = 0;
        if (cases[c].want == SK_OK) assert_string_equal(h.data, "Subject: hi\r\nFrom: a@b\r\n");
        sk_buf_free(&h);
        size_t pool, reused;
        sk_spool_reuse_stats(s, &pool, &reused);
        assert_int_equal(reused, cases[c].want_reused);
        sk_spool_free(s);
        rm_tree(dir);
        free(dir);
    }
}

/* Removed messages' files come back as new messages' files: no stale
 * bytes, no stale envelope, and a restart drops what was kept. */
static void test_reused_files(void **state)
{
    (void)state;
    static const struct {
        size_t old_len, new_len; /* body of the removed and of the new message */
    } cases[] = {{5000, 10}, {10, 5000}, {200 * 1024, 3}};
    static char big[200 * 1024];
    for (size_t i = 0; i < sizeof big; i++) big[i] = (char)('A' + i % 26);
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        char *dir = temp_dir();
        sk_error err;
        sk_spool *s = sk_spool_open(dir, NULL, NULL, &err);
        assert_non_null(s);
        done_rec old = {0};
        commit_sync(s, big, cases[c].old_len, &old);
        assert_int_equal(old.err, SK_OK);
        assert_int_equal(sk_spool_remove(s, old.id, &err), SK_OK);
        size_t pool, reused;
        sk_spool_reuse_stats(s, &pool, &reused);
        assert_int_equal(pool, 1);
        assert_int_equal(reused, 0);
        assert_int_equal(count_files(dir), 0);
        assert_int_equal(count_files_kind(dir, 1), 1);
        sk_spool_envelope *env;
        assert_int_equal(sk_spool_load(s, old.id, &env, &err), SK_ERR_NOT_FOUND);
        char **ids;
        size_t n;
        assert_int_equal(sk_spool_list(s, &ids, &n, &err), SK_OK);
        assert_int_equal(n, 0);
        sk_spool_ids_free(ids, n);

        static const char fresh[] = "Subject: new\r\n\r\nnew body, different bytes\r\n";
        char body_new[6000];
        for (size_t i = 0; i < cases[c].new_len; i++) body_new[i] = fresh[i % (sizeof fresh - 1)];
        done_rec nr = {0};
        commit_sync(s, body_new, cases[c].new_len, &nr);
        assert_int_equal(nr.err, SK_OK);
        sk_spool_reuse_stats(s, &pool, &reused);
        assert_int_equal(pool, 0);
        assert_int_equal(reused, 1);
        assert_int_equal(count_files_kind(dir, 1), 0);
        assert_int_equal(sk_spool_load(s, nr.id, &env, &err), SK_OK);
        assert_string_equal(env->id, nr.id);
        assert_int_equal(env->body_octets, cases[c].new_len);
        sk_spool_envelope_free(env);
        sk_buf path = SK_BUF_INIT(4096);
        assert_int_equal(sk_spool_body_path(s, nr.id, &path), SK_OK);
        check_msg_file(path.data, body_new, cases[c].new_len);
        sk_buf_free(&path);

        /* Kept files do not survive a restart; messages do. */
        done_rec other = {0};
        commit_sync(s, big, 100, &other);
        assert_int_equal(sk_spool_remove(s, other.id, &err), SK_OK);
        assert_int_equal(count_files_kind(dir, 1), 1);
        sk_spool_free(s);
        s = sk_spool_open(dir, NULL, NULL, &err);
        assert_non_null(s);
        assert_int_equal(count_files_kind(dir, 1), 0);
        assert_int_equal(count_files(dir), 1);
        assert_int_equal(sk_spool_load(s, nr.id, &env, &err), SK_OK);
        sk_spool_envelope_free(env);
        sk_spool_free(s);
        rm_tree(dir);
        free(dir);
    }
}

/* A removed message's file is written over only once the removal is
 * durable (docs/queue.md "Reused files"): until the barrier that covers
 * the rename ID.msg -> N.free, a crash can bring the name ID.msg back on
 * the same inode, and the old message must not come back with another
 * message's bytes in it. The write hook watches the removed file's inode
 * and the sync hook counts directory barriers (syncfs, or the directory
 * fsync of SYNC_FILES) completed since the removal. */
static struct {
    dev_t dev;
    ino_t ino;
    int watching;
    int barriers;    /* directory barriers completed */
    int at_remove;   /* barriers completed when the removal returned */
    int early;       /* writes to the removed file before such a barrier */
    int overwritten; /* writes to it at all */
} reuse_watch;

static ssize_t reuse_watch_write(void *ctx, int fd, const void *p, size_t n)
{
    (void)ctx;
    struct stat st;
    if (__atomic_load_n(&reuse_watch.watching, __ATOMIC_SEQ_CST) && fstat(fd, &st) == 0 &&
        st.st_ino == reuse_watch.ino && st.st_dev == reuse_watch.dev) {
        __atomic_add_fetch(&reuse_watch.overwritten, 1, __ATOMIC_SEQ_CST);
        if (__atomic_load_n(&reuse_watch.barriers, __ATOMIC_SEQ_CST) ==
            __atomic_load_n(&reuse_watch.at_remove, __ATOMIC_SEQ_CST))
            __atomic_add_fetch(&reuse_watch.early, 1, __ATOMIC_SEQ_CST);
    }
    return write(fd, p, n);
}

static int reuse_watch_sync(void *ctx, int fd)
{
    (void)ctx;
    struct stat st;
    int r = fsync(fd);
    if (r == 0 && fstat(fd, &st) == 0 && S_ISDIR(st.st_mode))
        __atomic_add_fetch(&reuse_watch.barriers, 1, __ATOMIC_SEQ_CST);
    return r;
}

static void wait_stored(spare_ctx *ctx, int n)
{
    wait_stored_on(ctx->base, n);
}

static void commit_on_loop(sk_spool *s, spare_ctx *ctx, const char *data, size_t n)
{
    sk_spool_envelope e = test_env();
    sk_spool_msg *m = sk_spool_begin(s, &e, NULL);
    assert_non_null(m);
    assert_int_equal(sk_spool_write(m, data, n), SK_OK);
    memset(&ctx->rec, 0, sizeof ctx->rec);
    sk_spool_commit(m, spare_done, ctx);
    event_base_dispatch(ctx->base);
    assert_int_equal(ctx->rec.calls, 1);
    assert_int_equal(ctx->rec.err, SK_OK);
}

static void test_reuse_after_removal_durable(void **state)
{
    (void)state;
    static const struct {
        sk_spool_sync sync;
        size_t next_len; /* the next message: small (file made by the committer) or large
                          * (made while DATA arrives, on the loop thread) */
    } cases[] = {
        {SK_SPOOL_SYNC_LOG, 100},   {SK_SPOOL_SYNC_LOG, 100 * 1024},
        {SK_SPOOL_SYNC_FS, 100},    {SK_SPOOL_SYNC_FS, 100 * 1024},
        {SK_SPOOL_SYNC_FILES, 100}, {SK_SPOOL_SYNC_FILES, 100 * 1024},
    };
    static char big[100 * 1024];
    for (size_t i = 0; i < sizeof big; i++) big[i] = (char)('a' + i % 26);
    memcpy(big, "Subject: x\r\n\r\n", 14);
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        print_message("case %zu\n", c);
        char *dir = temp_dir();
        spare_ctx ctx = {.base = event_base_new()};
        sk_error err;
        memset(&reuse_watch, 0, sizeof reuse_watch);
        sk_spool_opts o = {
            .sync = cases[c].sync, .write_fn = reuse_watch_write, .sync_fn = reuse_watch_sync};
        sk_spool *s = sk_spool_open(dir, &o, ctx.base, &err);
        assert_non_null(s);

        stored_count = 0;
        sk_spool_set_listener(s, count_stored, NULL);
        commit_on_loop(s, &ctx, body, strlen(body));
        wait_stored(&ctx, 1);
        char path[512];
        snprintf(path, sizeof path, "%s/spool/msg/%s%s", dir, ctx.rec.id, SK_SPOOL_BODY_EXT);
        struct stat st;
        assert_int_equal(stat(path, &st), 0);
        reuse_watch.dev = st.st_dev;
        reuse_watch.ino = st.st_ino;
        __atomic_store_n(&reuse_watch.watching, 1, __ATOMIC_SEQ_CST);
        assert_int_equal(sk_spool_remove(s, ctx.rec.id, &err), SK_OK);
        __atomic_store_n(&reuse_watch.at_remove,
                         __atomic_load_n(&reuse_watch.barriers, __ATOMIC_SEQ_CST),
                         __ATOMIC_SEQ_CST);

        /* At once, as a busy relay would: never onto the removed file. */
        commit_on_loop(s, &ctx, big, cases[c].next_len);
        wait_stored(&ctx, 2);
        assert_int_equal(reuse_watch.early, 0);
        /* That commit's barrier covered the removal: the file is reused
         * by the message after it. With the journal a group's barrier
         * does not cover the directory: the removal gets a checkpoint of
         * its own within REMOVE_SYNC_DELAY_MS (waited for here, at
         * most 5 s). */
        size_t pool, reused;
        for (int i = 0; cases[c].sync == SK_SPOOL_SYNC_LOG && i < 5000; i++) {
            sk_spool_reuse_stats(s, &pool, &reused);
            if (pool) break;
            usleep(1000);
        }
        commit_on_loop(s, &ctx, big, cases[c].next_len);
        wait_stored(&ctx, 3);
        sk_spool_reuse_stats(s, &pool, &reused);
        assert_int_equal(reused, 1);
        assert_true(reuse_watch.overwritten > 0);
        assert_int_equal(reuse_watch.early, 0);
        snprintf(path, sizeof path, "%s/spool/msg/%s%s", dir, ctx.rec.id, SK_SPOOL_BODY_EXT);
        check_msg_file(path, big, cases[c].next_len);
        sk_spool_free(s);
        event_base_free(ctx.base);
        rm_tree(dir);
        free(dir);
    }
}

/* ---- the journal (SK_SPOOL_SYNC_LOG) ---- */

static void msg_path(char *out, size_t cap, const char *dir, const char *id)
{
    snprintf(out, cap, "%s/spool/msg/%s%s", dir, id, SK_SPOOL_BODY_EXT);
}

typedef struct log_lines {
    char text[4096];
} log_lines;

static void log_collect(void *ctx, sk_log_level level, const char *line)
{
    log_lines *l = ctx;
    size_t used = strlen(l->text);
    snprintf(l->text + used, sizeof l->text - used, "%s\n", line);
}

/* Three messages committed with the journal; what a crash of the machine
 * can leave is made by hand: the journal as it was before the clean stop
 * (its records live), one message file lost, one torn. */
#define JOURNAL_N 3
typedef struct journal_case {
    char *dir;
    done_rec r[JOURNAL_N];
    char *files[JOURNAL_N]; /* each message file's bytes */
    size_t lens[JOURNAL_N];
    char *journal; /* the journal before the stop */
    size_t journal_len;
    char journal_path[512];
} journal_case;

static void journal_case_make(journal_case *c)
{
    memset(c, 0, sizeof *c);
    c->dir = temp_dir();
    sk_error err;
    sk_spool *s = sk_spool_open(c->dir, NULL, NULL, &err);
    assert_non_null(s);
    for (int i = 0; i < JOURNAL_N; i++) {
        char b[128];
        snprintf(b, sizeof b, "Subject: %d\r\n\r\nbody of message %d\r\n", i, i);
        commit_sync(s, b, strlen(b), &c->r[i]);
        assert_int_equal(c->r[i].err, SK_OK);
        char path[512];
        msg_path(path, sizeof path, c->dir, c->r[i].id);
        c->files[i] = slurp(path, &c->lens[i]);
    }
    snprintf(c->journal_path, sizeof c->journal_path, "%s/spool/journal", c->dir);
    c->journal = slurp(c->journal_path, &c->journal_len);
    assert_int_equal(c->journal_len, SK_SPOOL_JOURNAL_OCTETS);
    sk_spool_free(s); /* a checkpoint: the next start has nothing to replay */
}

static void journal_case_free(journal_case *c)
{
    for (int i = 0; i < JOURNAL_N; i++) free(c->files[i]);
    free(c->journal);
    rm_tree(c->dir);
    free(c->dir);
}

/* Open with a logger; returns the spool (or NULL) and the lines logged. */
static sk_spool *open_logged(const char *dir, log_lines *l, sk_error *err)
{
    memset(l, 0, sizeof *l);
    sk_spool_opts o = {.log = {.fn = log_collect, .ctx = l, .max_level = SK_LOG_INFO}};
    return sk_spool_open(dir, &o, NULL, err);
}

/* Whether message i is there with exactly its bytes. */
static int journal_msg_intact(const journal_case *c, int i)
{
    char path[512];
    msg_path(path, sizeof path, c->dir, c->r[i].id);
    if (access(path, F_OK)) return 0;
    size_t n;
    char *p = slurp(path, &n);
    int same = n == c->lens[i] && !memcmp(p, c->files[i], n);
    free(p);
    return same;
}

static void test_journal_replay(void **state)
{
    (void)state;
    journal_case c;
    journal_case_make(&c);
    sk_error err;
    log_lines l;

    /* A clean stop leaves nothing to replay. */
    sk_spool *s = open_logged(c.dir, &l, &err);
    assert_non_null(s);
    assert_null(strstr(l.text, "journal replayed"));
    sk_spool_free(s);

    /* The crash: the journal as before the stop, message 0 lost, message
     * 1 torn (its file cut in the middle), message 2 intact. */
    spit(c.journal_path, c.journal, c.journal_len);
    char path[512];
    msg_path(path, sizeof path, c.dir, c.r[0].id);
    assert_int_equal(unlink(path), 0);
    msg_path(path, sizeof path, c.dir, c.r[1].id);
    assert_int_equal(truncate(path, (off_t)c.lens[1] / 2), 0);
    s = open_logged(c.dir, &l, &err);
    assert_non_null(s);
    assert_non_null(strstr(l.text, "journal replayed records=3 rewritten=2"));
    for (int i = 0; i < JOURNAL_N; i++) {
        assert_true(journal_msg_intact(&c, i));
        sk_spool_envelope *env;
        assert_int_equal(sk_spool_load(s, c.r[i].id, &env, &err), SK_OK);
        sk_spool_envelope_free(env);
    }
    assert_int_equal(count_files(c.dir), JOURNAL_N);
    sk_spool_free(s);

    /* The replay ended with a checkpoint: nothing to replay again. */
    s = open_logged(c.dir, &l, &err);
    assert_non_null(s);
    assert_null(strstr(l.text, "journal replayed"));
    sk_spool_free(s);
    journal_case_free(&c);
}

/* Records are replayed up to the first one that is not whole (an append
 * cut short by the crash): a later record is not trusted. */
static void test_journal_torn_record(void **state)
{
    (void)state;
    journal_case c;
    journal_case_make(&c);
    sk_error err;
    log_lines l;
    /* The second record: after the head and the first record (header and
     * content, which is the message file's bytes). */
    size_t second = SK_JOURNAL_HEAD_OCTETS + SK_JOURNAL_RECORD_OCTETS + c.lens[0];
    c.journal[second + SK_JOURNAL_RECORD_OCTETS + 5] ^= 0x20;
    spit(c.journal_path, c.journal, c.journal_len);
    for (int i = 0; i < JOURNAL_N; i++) {
        char path[512];
        msg_path(path, sizeof path, c.dir, c.r[i].id);
        assert_int_equal(unlink(path), 0);
    }
    sk_spool *s = open_logged(c.dir, &l, &err);
    assert_non_null(s);
    assert_non_null(strstr(l.text, "journal replayed records=1 rewritten=1"));
    assert_true(journal_msg_intact(&c, 0));
    assert_false(journal_msg_intact(&c, 1));
    assert_false(journal_msg_intact(&c, 2));
    assert_int_equal(count_files(c.dir), 1);
    sk_spool_free(s);
    journal_case_free(&c);
}

/* A crash in the middle of an append may leave later records of the group
 * on disk behind a torn first one (pages reach the disk in any order).
 * Those were never acknowledged: after the restart, appends start a new
 * generation, so a record written over the torn one, even of the same
 * length, is never followed by the stale ones. */
static void test_journal_stale_after_torn(void **state)
{
    (void)state;
    journal_case c;
    journal_case_make(&c);
    sk_error err;
    log_lines l;
    /* Records 1 and 2 whole, record 0 torn; the files of 1 and 2 gone (as
     * if never written: their 250s were not sent). */
    c.journal[SK_JOURNAL_HEAD_OCTETS + SK_JOURNAL_RECORD_OCTETS + 3] ^= 0x20;
    spit(c.journal_path, c.journal, c.journal_len);
    for (int i = 1; i < JOURNAL_N; i++) {
        char path[512];
        msg_path(path, sizeof path, c.dir, c.r[i].id);
        assert_int_equal(unlink(path), 0);
    }
    sk_spool *s = open_logged(c.dir, &l, &err);
    assert_non_null(s);
    assert_null(strstr(l.text, "journal replayed"));
    /* A message of exactly record 0's length: its record ends where the
     * stale record 1 begins. */
    done_rec d = {0};
    char b[128];
    snprintf(b, sizeof b, "Subject: %d\r\n\r\nbody of message %d\r\n", 0, 0);
    commit_sync(s, b, strlen(b), &d);
    assert_int_equal(d.err, SK_OK);
    size_t jn;
    char *live = slurp(c.journal_path, &jn);
    sk_spool_free(s);
    spit(c.journal_path, live, jn);
    free(live);
    s = open_logged(c.dir, &l, &err);
    assert_non_null(s);
    assert_non_null(strstr(l.text, "journal replayed records=1 "));
    for (int i = 1; i < JOURNAL_N; i++) assert_false(journal_msg_intact(&c, i));
    sk_spool_free(s);
    journal_case_free(&c);
}

/* The header has two slots written in turn: damage to the one not in use
 * (a crash while a checkpoint wrote it) leaves the other, and the records
 * of its generation are replayed. A record of another generation (the
 * bytes of an older one) ends the replay like a torn one. */
static void test_journal_header_slots(void **state)
{
    (void)state;
    journal_case c;
    journal_case_make(&c);
    sk_error err;
    log_lines l;
    /* Which slot is newest: the one whose sequence number (octets 8..15)
     * is higher; garble the other. */
    uint64_t seq[2] = {0, 0};
    for (int k = 0; k < 2; k++)
        for (int b = 7; b >= 0; b--)
            seq[k] = seq[k] << 8 | (unsigned char)c.journal[k * 512 + 8 + b];
    int older = seq[0] > seq[1] ? 1 : 0;
    memset(c.journal + older * 512, 0x5a, 36);
    spit(c.journal_path, c.journal, c.journal_len);
    char path[512];
    msg_path(path, sizeof path, c.dir, c.r[2].id);
    assert_int_equal(unlink(path), 0);
    sk_spool *s = open_logged(c.dir, &l, &err);
    assert_non_null(s);
    assert_non_null(strstr(l.text, "journal replayed records=3 rewritten=1"));
    for (int i = 0; i < JOURNAL_N; i++) assert_true(journal_msg_intact(&c, i));
    sk_spool_free(s);

    /* Now the third record's generation is changed (and its CRC with it
     * no longer matches): only two are replayed. */
    size_t third = SK_JOURNAL_HEAD_OCTETS + 2 * SK_JOURNAL_RECORD_OCTETS + c.lens[0] + c.lens[1];
    c.journal[third + 8] ^= 1;
    spit(c.journal_path, c.journal, c.journal_len);
    assert_int_equal(unlink(path), 0);
    s = open_logged(c.dir, &l, &err);
    assert_non_null(s);
    assert_non_null(strstr(l.text, "journal replayed records=2 rewritten=0"));
    assert_false(journal_msg_intact(&c, 2));
    sk_spool_free(s);
    journal_case_free(&c);
}

/* A removal is made durable by a checkpoint, which retires the journal's
 * records: a crash after it cannot bring the message back from its
 * record. */
static void test_journal_removal_retires(void **state)
{
    (void)state;
    char *dir = temp_dir();
    sk_error err;
    sk_spool *s = sk_spool_open(dir, NULL, NULL, &err);
    assert_non_null(s);
    done_rec a = {0}, b = {0};
    commit_sync(s, body, strlen(body), &a);
    commit_sync(s, body, strlen(body), &b);
    char jpath[512];
    snprintf(jpath, sizeof jpath, "%s/spool/journal", dir);
    size_t jn;
    char *before = slurp(jpath, &jn); /* both records live */
    assert_int_equal(sk_spool_remove(s, a.id, &err), SK_OK);
    char *j = slurp(jpath, &jn); /* the journal right after the removal */
    sk_spool_free(s);
    spit(jpath, j, jn);
    free(j);
    log_lines l;
    s = open_logged(dir, &l, &err);
    assert_non_null(s);
    assert_null(strstr(l.text, "journal replayed"));
    sk_spool_envelope *env;
    assert_int_equal(sk_spool_load(s, a.id, &env, &err), SK_ERR_NOT_FOUND);
    sk_spool_free(s);

    /* The process killed after the removal's rename, before its
     * checkpoint (the records still live): the renamed file, ID.free,
     * tells recovery that the message was removed, not lost. */
    s = sk_spool_open(dir, NULL, NULL, &err);
    assert_non_null(s);
    done_rec c = {0};
    commit_sync(s, body, strlen(body), &c);
    char *live = slurp(jpath, &jn);
    assert_int_equal(sk_spool_remove(s, c.id, &err), SK_OK);
    assert_int_equal(count_files_kind(dir, 1), 1); /* c's file, kept for reuse */
    sk_spool_free(s);
    spit(jpath, live, jn);
    free(live);
    free(before);
    s = open_logged(dir, &l, &err);
    assert_non_null(s);
    assert_non_null(strstr(l.text, "journal replayed records=1 rewritten=0 removed=1"));
    assert_int_equal(sk_spool_load(s, c.id, &env, &err), SK_ERR_NOT_FOUND);
    assert_int_equal(sk_spool_load(s, a.id, &env, &err), SK_ERR_NOT_FOUND);
    assert_int_equal(sk_spool_load(s, b.id, &env, &err), SK_OK);
    sk_spool_envelope_free(env);
    sk_spool_free(s);
    rm_tree(dir);
    free(dir);
}

/* The journal's size is a setting: when the next group does not fit
 * after the tail, a checkpoint (a syncfs, seen here as a sync of the
 * directory) makes room; a group larger than the whole journal, or with a
 * body over 64 KiB, gets a syncfs of its own instead. */
static int dir_syncs, file_syncs;
static int count_kind_sync(void *ctx, int fd)
{
    (void)ctx;
    struct stat st;
    if (fstat(fd, &st) == 0 && S_ISDIR(st.st_mode))
        dir_syncs++;
    else
        file_syncs++;
    return fsync(fd);
}

static void test_journal_full(void **state)
{
    (void)state;
    char *dir = temp_dir();
    sk_error err;
    /* Room for two records of this message, not three. */
    sk_spool *probe = sk_spool_open(dir, NULL, NULL, &err);
    assert_non_null(probe);
    done_rec r0 = {0};
    commit_sync(probe, body, strlen(body), &r0);
    char path[512];
    msg_path(path, sizeof path, dir, r0.id);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(sk_spool_remove(probe, r0.id, &err), SK_OK);
    sk_spool_free(probe);
    uint64_t rec = SK_JOURNAL_RECORD_OCTETS + (uint64_t)st.st_size;
    sk_spool_opts o = {.journal_octets = SK_JOURNAL_HEAD_OCTETS + 2 * rec + rec / 2,
                       .sync_fn = count_kind_sync};
    dir_syncs = file_syncs = 0;
    sk_spool *s = sk_spool_open(dir, &o, NULL, &err);
    assert_non_null(s);
    int at_open = dir_syncs;
    done_rec r[5];
    for (int i = 0; i < 5; i++) {
        memset(&r[i], 0, sizeof r[i]);
        int before = dir_syncs;
        commit_sync(s, body, strlen(body), &r[i]);
        assert_int_equal(r[i].err, SK_OK);
        /* A checkpoint before the 3rd and the 5th. */
        assert_int_equal(dir_syncs - before, (i == 2 || i == 4) ? 1 : 0);
    }
    assert_int_equal(dir_syncs - at_open, 2);
    /* Larger than the journal: no record, one syncfs for it. */
    static char big[2 * 1024];
    memset(big, 'y', sizeof big);
    int before = dir_syncs, fbefore = file_syncs;
    done_rec rb = {0};
    commit_sync(s, big, sizeof big, &rb);
    assert_int_equal(rb.err, SK_OK);
    assert_int_equal(dir_syncs - before, 1);
    assert_int_equal(file_syncs - fbefore, 0);
    sk_spool_free(s);
    /* All there after reopening. */
    s = sk_spool_open(dir, &o, NULL, &err);
    assert_non_null(s);
    char **ids;
    size_t n;
    assert_int_equal(sk_spool_list(s, &ids, &n, &err), SK_OK);
    assert_int_equal(n, 6);
    sk_spool_ids_free(ids, n);
    sk_spool_free(s);
    rm_tree(dir);
    free(dir);
}

/* With an event base the journal's committer acknowledges a group once
 * its records are durable; the materializer thread writes the files
 * afterwards. Each message's done callback (the 250) comes first; the
 * listener (the queue) only once its file is complete; the header block
 * is answered from memory meanwhile. */
#define MAT_N 20
typedef struct mat_ctx {
    struct event_base *base;
    sk_spool *s;
    const char *dir;
    int done[MAT_N], listened[MAT_N], order_ok[MAT_N];
    char ids[MAT_N][SK_SPOOL_ID_SIZE];
    int nlistened;
} mat_ctx;
typedef struct mat_rec {
    mat_ctx *c;
    int i;
} mat_rec;

static void mat_done(void *ctx, sk_err err, const char *id)
{
    mat_rec *r = ctx;
    assert_int_equal(err, SK_OK);
    r->c->done[r->i]++;
    snprintf(r->c->ids[r->i], SK_SPOOL_ID_SIZE, "%s", id);
    sk_buf h = SK_BUF_INIT(4096);
    assert_int_equal(sk_spool_read_headers(r->c->s, id, &h, NULL), SK_OK);
    char want[32];
    snprintf(want, sizeof want, "Subject: %d\r\n", r->i);
    assert_string_equal(h.data, want);
    sk_buf_free(&h);
}

static void mat_listener(void *ctx, const sk_spool_envelope *env)
{
    mat_ctx *c = ctx;
    for (int i = 0; i < MAT_N; i++) {
        if (strcmp(c->ids[i], env->id)) continue;
        c->listened[i]++;
        c->order_ok[i] = c->done[i] == 1;
        char path[512], b[64];
        msg_path(path, sizeof path, c->dir, env->id);
        snprintf(b, sizeof b, "Subject: %d\r\n\r\nbody %d\r\n", i, i);
        check_msg_file(path, b, strlen(b));
    }
    if (++c->nlistened == MAT_N) event_base_loopbreak(c->base);
}

static void test_journal_materialize(void **state)
{
    (void)state;
    char *dir = temp_dir();
    mat_ctx c = {.base = event_base_new(), .dir = dir};
    mat_rec recs[MAT_N];
    sk_error err;
    c.s = sk_spool_open(dir, NULL, c.base, &err);
    assert_non_null(c.s);
    sk_spool_set_listener(c.s, mat_listener, &c);
    for (int i = 0; i < MAT_N; i++) {
        sk_spool_envelope e = test_env();
        sk_spool_msg *m = sk_spool_begin(c.s, &e, &err);
        assert_non_null(m);
        char b[64];
        snprintf(b, sizeof b, "Subject: %d\r\n\r\nbody %d\r\n", i, i);
        assert_int_equal(sk_spool_write(m, b, strlen(b)), SK_OK);
        recs[i] = (mat_rec){&c, i};
        sk_spool_commit(m, mat_done, &recs[i]);
    }
    event_base_dispatch(c.base);
    for (int i = 0; i < MAT_N; i++) {
        assert_int_equal(c.done[i], 1);
        assert_int_equal(c.listened[i], 1);
        assert_true(c.order_ok[i]);
    }
    assert_int_equal(count_files(dir), MAT_N);
    sk_spool_free(c.s);
    event_base_free(c.base);
    rm_tree(dir);
    free(dir);
}

/* Queue IDs are unique within a spool by construction (a journaled
 * message's file is made after its 250, too late to fail on a taken
 * name): many drawn at once all differ, and after a restart new IDs come
 * after every stored one even when that one is ahead of the clock. */
static void test_unique_ids(void **state)
{
    (void)state;
    char *dir = temp_dir();
    sk_error err;
    sk_spool *s = sk_spool_open(dir, NULL, NULL, &err);
    assert_non_null(s);
    enum { N = 3000 };
    static char ids[N][SK_SPOOL_ID_SIZE];
    for (int i = 0; i < N; i++) {
        sk_spool_envelope e = test_env();
        sk_spool_msg *m = sk_spool_begin(s, &e, &err);
        assert_non_null(m);
        memcpy(ids[i], sk_spool_msg_id(m), SK_SPOOL_ID_SIZE);
        sk_spool_abort(m);
    }
    qsort(ids, N, SK_SPOOL_ID_SIZE, (int (*)(const void *, const void *))strcmp);
    for (int i = 1; i < N; i++) assert_true(strcmp(ids[i - 1], ids[i]) < 0);

    /* A stored message whose ID is an hour ahead of the clock. */
    done_rec r = {0};
    commit_sync(s, body, strlen(body), &r);
    sk_spool_free(s);
    char ahead[SK_SPOOL_ID_SIZE], from[512], to[512];
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t now_ms = (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
    assert_int_equal(sk_spool_id_new(ahead, now_ms + 3600 * 1000), SK_OK);
    msg_path(from, sizeof from, dir, r.id);
    msg_path(to, sizeof to, dir, ahead);
    size_t n;
    char *bytes = slurp(from, &n);
    char *at = memmem(bytes, n, r.id, SK_SPOOL_ID_LEN); /* the envelope's id line */
    assert_non_null(at);
    memcpy(at, ahead, SK_SPOOL_ID_LEN);
    spit(to, bytes, n);
    free(bytes);
    assert_int_equal(unlink(from), 0);
    s = sk_spool_open(dir, NULL, NULL, &err);
    assert_non_null(s);
    sk_spool_envelope *env;
    assert_int_equal(sk_spool_load(s, ahead, &env, &err), SK_OK);
    sk_spool_envelope_free(env);
    sk_spool_envelope e = test_env();
    sk_spool_msg *m = sk_spool_begin(s, &e, &err);
    assert_non_null(m);
    assert_true(strcmp(sk_spool_msg_id(m), ahead) > 0);
    sk_spool_abort(m);
    sk_spool_free(s);
    rm_tree(dir);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_id_sorts_by_time),
        cmocka_unit_test(test_id_valid),
        cmocka_unit_test(test_envelope_round_trip),
        cmocka_unit_test(test_envelope_numbers),
        cmocka_unit_test(test_envelope_rejects),
        cmocka_unit_test(test_envelope_alloc_failures),
        cmocka_unit_test(test_protocol_names),
        cmocka_unit_test(test_commit_load_save_remove),
        cmocka_unit_test(test_prepend),
        cmocka_unit_test(test_headers_captured),
        cmocka_unit_test(test_read_headers_from_file),
        cmocka_unit_test(test_read_headers_reused_underneath),
        cmocka_unit_test(test_reused_files),
        cmocka_unit_test(test_reuse_after_removal_durable),
        cmocka_unit_test(test_lock_excludes_second_owner),
        cmocka_unit_test(test_open_sync_modes),
        cmocka_unit_test(test_recovery),
        cmocka_unit_test(test_recover_batches),
        cmocka_unit_test(test_crc32c),
        cmocka_unit_test(test_recovery_rules),
        cmocka_unit_test(test_recovery_keeps_on_error),
        cmocka_unit_test(test_group_commit),
        cmocka_unit_test(test_group_barrier_failure),
        cmocka_unit_test(test_write_failures),
        cmocka_unit_test(test_journal_replay),
        cmocka_unit_test(test_journal_torn_record),
        cmocka_unit_test(test_journal_stale_after_torn),
        cmocka_unit_test(test_journal_header_slots),
        cmocka_unit_test(test_journal_removal_retires),
        cmocka_unit_test(test_journal_full),
        cmocka_unit_test(test_journal_materialize),
        cmocka_unit_test(test_unique_ids),
        cmocka_unit_test(test_spare_files),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
