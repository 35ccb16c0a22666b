/* Unit tests for src/util: buffer, base64, parsing helpers, errors. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "sktest.h"

#include <smtpkit/smtpkit.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void test_buf_bounded(void **state)
{
    sk_buf b = SK_BUF_INIT(8);
    assert_int_equal(sk_buf_puts(&b, "12345678"), SK_OK);
    assert_int_equal(b.len, 8);
    assert_string_equal(sk_buf_cstr(&b), "12345678");
    /* One octet over the maximum is an error, and nothing is appended. */
    assert_int_equal(sk_buf_putc(&b, '9'), SK_ERR_TOO_LONG);
    assert_int_equal(b.len, 8);
    sk_buf_consume(&b, 3);
    assert_string_equal(sk_buf_cstr(&b), "45678");
    assert_int_equal(sk_buf_printf(&b, "%d", 123), SK_OK);
    assert_string_equal(sk_buf_cstr(&b), "45678123");
    assert_int_equal(sk_buf_printf(&b, "%d", 4), SK_ERR_TOO_LONG);
    sk_buf_free(&b);
    assert_string_equal(sk_buf_cstr(&b), "");
    /* Formatted text of every size around the stack buffer's (512). */
    static const size_t widths[] = {0, 1, 510, 511, 512, 513, 4000};
    for (size_t i = 0; i < SKT_N(widths); i++) {
        sk_buf w = SK_BUF_INIT(8192);
        assert_int_equal(sk_buf_puts(&w, "<"), SK_OK);
        assert_int_equal(sk_buf_printf(&w, "%*s|%d", (int)widths[i], "x", 7), SK_OK);
        assert_int_equal(w.len, 1 + (widths[i] ? widths[i] : 1) + 2);
        assert_int_equal(w.data[w.len - 3], 'x');
        assert_string_equal(w.data + w.len - 2, "|7");
        /* Over the maximum: an error, and nothing appended. */
        sk_buf small = SK_BUF_INIT(widths[i] + 1);
        assert_int_equal(sk_buf_printf(&small, "%*s|%d", (int)widths[i], "x", 7), SK_ERR_TOO_LONG);
        assert_int_equal(small.len, 0);
        sk_buf_free(&small);
        sk_buf_free(&w);
    }
    /* A reserve on an empty buffer leaves a valid empty string. */
    assert_int_equal(sk_buf_reserve(&b, 4), SK_OK);
    assert_string_equal(sk_buf_cstr(&b), "");
    sk_buf_free(&b);
}

/* Taking back what was appended: to a shorter length, to the same one, to
 * nothing, a length past the end, and an empty buffer never allocated. */
static void test_buf_truncate(void **state)
{
    static const struct {
        const char *in;
        size_t len;
        const char *want;
    } cases[] = {
        {"hello", 2, "he"},    {"hello", 5, "hello"}, {"hello", 0, ""},
        {"hello", 9, "hello"}, {"", 0, ""},           {NULL, 0, ""},
    };
    for (size_t i = 0; i < SKT_N(cases); i++) {
        sk_buf b = SK_BUF_INIT(16);
        if (cases[i].in) assert_int_equal(sk_buf_puts(&b, cases[i].in), SK_OK);
        sk_buf_truncate(&b, cases[i].len);
        assert_string_equal(sk_buf_cstr(&b), cases[i].want);
        assert_int_equal(b.len, strlen(cases[i].want));
        /* What comes next is appended at the cut. */
        assert_int_equal(sk_buf_putc(&b, '!'), SK_OK);
        assert_int_equal(b.len, strlen(cases[i].want) + 1);
        assert_int_equal(b.data[b.len - 1], '!');
        sk_buf_free(&b);
    }
}

/* Reading a file into a buffer: to its end or an exact length, appended
 * to what is there, within the maximum or not (the buffer is then as it
 * was), and a file shorter than asked for. */
static void test_buf_read_fd(void **state)
{
    static const struct {
        const char *file, *before;
        uint64_t octets;
        size_t max;
        sk_err want;
        const char *after;
    } cases[] = {
        {"hello", "", SK_BUF_READ_ALL, 16, SK_OK, "hello"},
        {"hello", ">", SK_BUF_READ_ALL, 16, SK_OK, ">hello"},
        {"", "", SK_BUF_READ_ALL, 16, SK_OK, ""},
        {"hello", "", SK_BUF_READ_ALL, 5, SK_OK, "hello"}, /* exactly full */
        {"hello", "", SK_BUF_READ_ALL, 4, SK_ERR_TOO_LONG, ""},
        {"hello", ">", SK_BUF_READ_ALL, 5, SK_ERR_TOO_LONG, ">"},
        {"hello", "", 3, 16, SK_OK, "hel"},
        {"hello", ">", 5, 6, SK_OK, ">hello"},
        {"hello", "", 0, 16, SK_OK, ""},
        {"hello", "", 6, 16, SK_ERR_IO, ""}, /* shorter than said */
        {"hello", ">", 5, 5, SK_ERR_TOO_LONG, ">"},
    };
    for (size_t i = 0; i < SKT_N(cases); i++) {
        char *path = skt_tmpfile("readfd", cases[i].file, strlen(cases[i].file));
        int fd = open(path, O_RDONLY);
        assert_true(fd >= 0);
        sk_buf b = SK_BUF_INIT(cases[i].max);
        assert_int_equal(sk_buf_puts(&b, cases[i].before), SK_OK);
        sk_err e = sk_buf_read_fd(&b, fd, cases[i].octets);
        if (e != cases[i].want) fail_msg("case %zu: %s", i, sk_strerror(e));
        assert_string_equal(sk_buf_cstr(&b), cases[i].after);
        assert_int_equal(b.len, strlen(cases[i].after));
        sk_buf_free(&b);
        close(fd);
        unlink(path);
        free(path);
    }
    /* A file larger than one read asks for, to its end. */
    size_t big = 200 * 1024 + 7;
    char *data = malloc(big);
    assert_non_null(data);
    for (size_t i = 0; i < big; i++) data[i] = (char)('a' + i % 26);
    char *path = skt_tmpfile("readfd", data, big);
    int fd = open(path, O_RDONLY);
    sk_buf b = SK_BUF_INIT(big);
    assert_int_equal(sk_buf_read_fd(&b, fd, SK_BUF_READ_ALL), SK_OK);
    assert_int_equal(b.len, big);
    assert_memory_equal(b.data, data, big);
    close(fd);
    /* A read error: a descriptor that is not open. */
    assert_int_equal(sk_buf_read_fd(&b, fd, SK_BUF_READ_ALL), SK_ERR_IO);
    assert_int_equal(errno, EBADF);
    assert_int_equal(b.len, big);
    sk_buf_free(&b);
    unlink(path);
    free(path);
    free(data);
}

/* RFC 4648 section 10 test vectors. */
static const struct {
    const char *plain, *encoded;
} b64_cases[] = {
    {"", ""},
    {"f", "Zg=="},
    {"fo", "Zm8="},
    {"foo", "Zm9v"},
    {"foob", "Zm9vYg=="},
    {"fooba", "Zm9vYmE="},
    {"foobar", "Zm9vYmFy"},
};

static void test_base64_vectors(void **state)
{
    for (size_t i = 0; i < SKT_N(b64_cases); i++) {
        sk_buf b = SK_BUF_INIT(64);
        assert_int_equal(sk_base64_encode(&b, b64_cases[i].plain, strlen(b64_cases[i].plain)),
                         SK_OK);
        assert_string_equal(sk_buf_cstr(&b), b64_cases[i].encoded);
        sk_buf_reset(&b);
        assert_int_equal(sk_base64_decode(&b, b64_cases[i].encoded, strlen(b64_cases[i].encoded)),
                         SK_OK);
        assert_int_equal(b.len, strlen(b64_cases[i].plain));
        assert_memory_equal(sk_buf_cstr(&b), b64_cases[i].plain, b.len);
        sk_buf_free(&b);
    }
}

static void test_base64_rejects(void **state)
{
    static const char *const bad[] = {"Zg=", "Z===", "Zm9v!A==", "Zh==", "Zg==Zg==", "=Zg="};
    for (size_t i = 0; i < SKT_N(bad); i++) {
        sk_buf b = SK_BUF_INIT(64);
        assert_int_equal(sk_base64_decode(&b, bad[i], strlen(bad[i])), SK_ERR_SYNTAX);
        sk_buf_free(&b);
    }
}

static void test_parse_units(void **state)
{
    static const struct {
        const char *in;
        sk_err err;
        uint64_t ms;
    } d[] = {{"5d", SK_OK, 5 * 86400000ull}, {"1m", SK_OK, 60000},     {"30", SK_OK, 30000},
             {"250ms", SK_OK, 250},          {"4h", SK_OK, 14400000},  {"x", SK_ERR_SYNTAX, 0},
             {"5y", SK_ERR_SYNTAX, 0},       {"-1s", SK_ERR_SYNTAX, 0}};
    for (size_t i = 0; i < SKT_N(d); i++) {
        uint64_t v = 0;
        assert_int_equal(sk_parse_duration_ms(d[i].in, &v), d[i].err);
        if (d[i].err == SK_OK) assert_int_equal(v, d[i].ms);
    }
    uint64_t v;
    assert_int_equal(sk_parse_size("10M", &v), SK_OK);
    assert_int_equal(v, 10u * 1024 * 1024);
    assert_int_equal(sk_parse_size("10Q", &v), SK_ERR_SYNTAX);
}

static void test_enhanced_valid(void **state)
{
    static const struct {
        const char *s;
        int code, ok;
    } c[] = {{"5.1.1", 550, 1}, {"4.7.0", 421, 1},  {"2.0.0", 250, 1}, {"5.1.10", 550, 1},
             {"4.1.1", 550, 0}, {"3.1.1", 0, 0},    {"5.1", 0, 0},     {"5.1.1.1", 0, 0},
             {"5.01.1", 0, 0},  {"5.1000.1", 0, 0}, {"", 0, 0}};
    for (size_t i = 0; i < SKT_N(c); i++)
        assert_int_equal(sk_enhanced_valid(c[i].s, c[i].code), c[i].ok);
}

/* A reply's class, from its code and from its enhanced status. */
static void test_reply_class(void **state)
{
    static const struct {
        int code;
        sk_reply_class cls;
    } codes[] = {{0, SK_REPLY_INVALID},     {199, SK_REPLY_INVALID},      {200, SK_REPLY_SUCCESS},
                 {299, SK_REPLY_SUCCESS},   {354, SK_REPLY_INTERMEDIATE}, {421, SK_REPLY_TRANSIENT},
                 {499, SK_REPLY_TRANSIENT}, {500, SK_REPLY_PERMANENT},    {599, SK_REPLY_PERMANENT},
                 {600, SK_REPLY_INVALID}};
    for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++)
        assert_int_equal(sk_reply_class_of(codes[i].code), codes[i].cls);
    static const struct {
        const char *enhanced;
        sk_reply_class cls;
    } enh[] = {{"2.0.0", SK_REPLY_SUCCESS},   {"4.7.1", SK_REPLY_TRANSIENT},
               {"5.1.1", SK_REPLY_PERMANENT}, {"3.0.0", SK_REPLY_INVALID},
               {"", SK_REPLY_INVALID},        {NULL, SK_REPLY_INVALID}};
    for (size_t i = 0; i < sizeof enh / sizeof enh[0]; i++)
        assert_int_equal(sk_enhanced_class(enh[i].enhanced), enh[i].cls);
}

/* A reply's one-line form, and back. */
static void test_reply_line(void **state)
{
    static const struct {
        sk_reply r;
        const char *line;
        sk_reply back; /* what the line reads back as */
    } c[] = {
        {{550, "5.1.1", "no such user"}, "550 5.1.1 no such user", {550, "5.1.1", "no such user"}},
        {{250, "", "ok"}, "250 ok", {250, "", "ok"}},
        {{451, "4.7.1", "greylisted\ntry later"},
         "451 4.7.1 greylisted try later",
         {451, "4.7.1", "greylisted try later"}},
        /* An enhanced status of another class than the code stays text. */
        {{550, "4.1.1", "odd"}, "550 4.1.1 odd", {550, "", "4.1.1 odd"}},
        {{421, "", ""}, "421 ", {421, "", ""}},
        {{0, "", "no reply"}, "0 no reply", {0, "", "0 no reply"}},
    };
    for (size_t i = 0; i < sizeof c / sizeof c[0]; i++) {
        sk_buf b = SK_BUF_INIT(2048);
        assert_int_equal(sk_reply_to_line(&c[i].r, &b), SK_OK);
        assert_string_equal(sk_buf_cstr(&b), c[i].line);
        sk_reply back;
        sk_reply_from_line(sk_buf_cstr(&b), &back);
        assert_int_equal(back.code, c[i].back.code);
        assert_string_equal(back.enhanced, c[i].back.enhanced);
        assert_string_equal(back.text, c[i].back.text);
        sk_buf_free(&b);
    }
    static const struct {
        const char *line;
        int code;
        const char *enhanced, *text;
    } in[] = {{"554", 554, "", ""},
              {"5.1.1 no code", 0, "5.1.1", "no code"},
              {"55 short", 0, "", "55 short"},
              {"550-5.1.1 continued", 0, "", "550-5.1.1 continued"}};
    for (size_t i = 0; i < sizeof in / sizeof in[0]; i++) {
        sk_reply r;
        sk_reply_from_line(in[i].line, &r);
        assert_int_equal(r.code, in[i].code);
        assert_string_equal(r.enhanced, in[i].enhanced);
        assert_string_equal(r.text, in[i].text);
    }
    sk_reply r = {.code = 1};
    sk_reply_from_line(NULL, &r);
    assert_int_equal(r.code, 0);
    assert_string_equal(r.text, "");
}

static void test_errors_named(void **state)
{
    for (int e = 0; e < SK_ERR__COUNT; e++) assert_non_null(sk_strerror((sk_err)e));
    assert_string_equal(sk_step_name(SK_STEP_RCPT), "RCPT");
    sk_error err;
    assert_int_equal(sk_error_set(&err, SK_ERR_TIMEOUT, SK_STEP_DATA, "after %d s", 3),
                     SK_ERR_TIMEOUT);
    assert_true(err.transient);
    assert_string_equal(err.text, "after 3 s");
}

/* The locale-free classes agree with <ctype.h> in the C locale for
 * ASCII, and take no octet over 0x7f; a table of the edges besides. */
static void test_ascii_classes(void **state)
{
    for (int c = -128; c < 256; c++) {
        bool ascii = c >= 0 && c < 0x80;
        if (sk_is_alpha(c) != (ascii && isalpha(c) != 0)) fail_msg("alpha 0x%x", (unsigned)c);
        if (sk_is_digit(c) != (ascii && isdigit(c) != 0)) fail_msg("digit 0x%x", (unsigned)c);
        if (sk_is_alnum(c) != (ascii && isalnum(c) != 0)) fail_msg("alnum 0x%x", (unsigned)c);
        if (sk_to_lower(c) != (ascii ? tolower(c) : c)) fail_msg("lower 0x%x", (unsigned)c);
    }
    static const struct {
        int c;
        bool wsp, atext;
    } cases[] = {
        {' ', true, false},  {'\t', true, false}, {'\r', false, false}, {'\n', false, false},
        {'a', false, true},  {'Z', false, true},  {'7', false, true},   {'!', false, true},
        {'~', false, true},  {'{', false, true},  {'.', false, false},  {'@', false, false},
        {'"', false, false}, {'(', false, false}, {0, false, false},    {0xe9, false, false},
        {-23, false, false},
    };
    for (size_t i = 0; i < SKT_N(cases); i++) {
        if (sk_is_wsp(cases[i].c) != cases[i].wsp) fail_msg("wsp, case %zu", i);
        if (sk_is_atext(cases[i].c) != cases[i].atext) fail_msg("atext, case %zu", i);
    }
}

static void test_ascii_words(void **state)
{
    static const struct {
        const char *in, *lower;
        bool ldh;
    } cases[] = {
        {"pass", "pass", true},
        {"Smtp.MailFrom", "smtp.mailfrom", false},
        {"MX-1", "mx-1", true},
        {"a", "a", true},
        {"9", "9", true},
        {"-a", "-a", false},
        {"a-", "a-", false},
        {"a--b", "a--b", true},
        {"a_b", "a_b", false},
        {"", "", false},
        {"J\xc3\x96RG", "j\xc3\x96rg", false},
    };
    for (size_t i = 0; i < SKT_N(cases); i++) {
        size_t n = strlen(cases[i].in);
        if (sk_is_ldh_word(cases[i].in, n) != cases[i].ldh) fail_msg("ldh, case %zu", i);
        char buf[32];
        memcpy(buf, cases[i].in, n + 1);
        sk_ascii_lower(buf, n);
        assert_string_equal(buf, cases[i].lower);
    }
    char part[] = "ABCDEF";
    sk_ascii_lower(part, 3); /* only the first n */
    assert_string_equal(part, "abcDEF");
}

/* The one errno mapping, both ways a file operation can go. */
static void test_err_from_errno(void **state)
{
    static const struct {
        int e;
        sk_file_op op;
        sk_err want;
    } cases[] = {
        {ENOSPC, SK_FILE_WRITE, SK_ERR_NOSPACE},  {EDQUOT, SK_FILE_WRITE, SK_ERR_NOSPACE},
        {ENOSPC, SK_FILE_READ, SK_ERR_NOSPACE},   {EDQUOT, SK_FILE_READ, SK_ERR_NOSPACE},
        {ENOENT, SK_FILE_READ, SK_ERR_NOT_FOUND}, {ENOENT, SK_FILE_WRITE, SK_ERR_IO},
        {EIO, SK_FILE_READ, SK_ERR_IO},           {EIO, SK_FILE_WRITE, SK_ERR_IO},
        {EACCES, SK_FILE_READ, SK_ERR_IO},        {EEXIST, SK_FILE_WRITE, SK_ERR_IO},
        {ENOMEM, SK_FILE_WRITE, SK_ERR_IO},       {0, SK_FILE_READ, SK_ERR_IO},
    };
    for (size_t i = 0; i < SKT_N(cases); i++)
        if (sk_err_from_errno(cases[i].e, cases[i].op) != cases[i].want)
            fail_msg("case %zu (%s): got %s", i, strerror(cases[i].e),
                     sk_strerror(sk_err_from_errno(cases[i].e, cases[i].op)));
}

/* An allocator for sk_array_grow's cases: it records the octets asked
 * for and refuses anything over a MiB, so that sizes near SIZE_MAX are
 * never asked of libc (nor of a sanitizer's allocator). */
static size_t grow_asked;
static void *grow_realloc(void *p, size_t n)
{
    grow_asked = n;
    return n > (1u << 20) ? NULL : realloc(p, n);
}

#define U SK_ARRAY_UNBOUNDED
/* Growth from nothing (about 64 octets, at least one element), doubling,
 * room already there, the maximum, and sizes whose octets would overflow
 * (refused before any allocation, or clamped so the octets still fit). */
static void test_array_grow(void **state)
{
    static const struct {
        size_t cap, need, elem, max;
        sk_err want;
        size_t want_cap, want_asked; /* want_asked 0: no allocation */
    } cases[] = {
        {0, 1, 1, U, SK_OK, 64, 64},
        {0, 1, 8, U, SK_OK, 8, 64},
        {0, 1, 24, U, SK_OK, 2, 48},
        {0, 1, 100, U, SK_OK, 1, 100},
        {0, 100, 8, U, SK_OK, 128, 1024},
        {8, 9, 8, U, SK_OK, 16, 128},
        {3, 100, 4, U, SK_OK, 192, 768},
        {8, 8, 8, U, SK_OK, 8, 0},
        {8, 0, 8, U, SK_OK, 8, 0},
        {0, 5, 8, 5, SK_OK, 5, 40},
        {4, 5, 8, 6, SK_OK, 6, 48},
        {0, 1, 1, 1, SK_OK, 1, 1},
        {6, 7, 8, 6, SK_ERR_TOO_LONG, 6, 0},
        {0, 1, 8, 0, SK_ERR_TOO_LONG, 0, 0},
        {0, 1, 0, U, SK_ERR_INVAL, 0, 0},
        /* need * elem past SIZE_MAX: refused without asking. */
        {0, SIZE_MAX / 8 + 1, 8, U, SK_ERR_NOMEM, 0, 0},
        {0, 3, SIZE_MAX / 2, U, SK_ERR_NOMEM, 0, 0},
        {0, SIZE_MAX, 2, U, SK_ERR_NOMEM, 0, 0},
        /* Doubling would pass what fits: the room stops at the most
         * elements whose octets fit (the allocator says no here). */
        {SIZE_MAX / 2 + 1, SIZE_MAX / 2 + 2, 1, U, SK_ERR_NOMEM, SIZE_MAX / 2 + 1, SIZE_MAX},
        {SIZE_MAX / 16 + 1, SIZE_MAX / 16 + 2, 8, U, SK_ERR_NOMEM, SIZE_MAX / 16 + 1,
         SIZE_MAX / 8 * 8},
        /* ... or at max, whichever is less. */
        {SIZE_MAX / 4, SIZE_MAX / 4 + 1, 1, SIZE_MAX / 3, SK_ERR_NOMEM, SIZE_MAX / 4, SIZE_MAX / 3},
    };
    sk_set_allocator(&(sk_allocator){malloc, grow_realloc, free});
    for (size_t i = 0; i < SKT_N(cases); i++) {
        size_t cap = cases[i].cap;
        /* A real array when its octets are small; else only the count. */
        char *v = cap && cap * cases[i].elem <= 4096 ? calloc(cap, cases[i].elem) : NULL;
        char *before = v;
        grow_asked = 0;
        sk_err e = sk_array_grow(&v, &cap, cases[i].need, cases[i].elem, cases[i].max);
        if (e != cases[i].want || cap != cases[i].want_cap || grow_asked != cases[i].want_asked)
            fail_msg("case %zu: %s, cap %zu, asked %zu", i, sk_strerror(e), cap, grow_asked);
        if (e) assert_ptr_equal(v, before);
        if (!e && cases[i].need) memset(v, 0xa5, cases[i].need * cases[i].elem); /* it is there */
        free(v);
    }
    sk_set_allocator(NULL);
    /* Appending one at a time keeps what was there. */
    uint32_t *a = NULL;
    size_t cap = 0;
    for (uint32_t i = 0; i < 1000; i++) {
        assert_int_equal(sk_array_grow(&a, &cap, i + 1, sizeof *a, 1000), SK_OK);
        assert_true(cap >= i + 1 && cap <= 1000);
        a[i] = i * 7;
    }
    assert_int_equal(cap, 1000);
    for (uint32_t i = 0; i < 1000; i++) assert_int_equal(a[i], i * 7);
    assert_int_equal(sk_array_grow(&a, &cap, 1001, sizeof *a, 1000), SK_ERR_TOO_LONG);
    sk_free(a);
}
#undef U

static void test_log_escape(void **state)
{
    sk_buf b = SK_BUF_INIT(64);
    assert_int_equal(sk_log_escape(&b, "a\r\n\"\\\xc3", 6), SK_OK);
    assert_string_equal(sk_buf_cstr(&b), "a\\x0d\\x0a\\\"\\\\\\xc3");
    sk_buf_free(&b);
}

/* Every octet value a hex digit can stand for, in both cases, and the
 * characters next to the digit ranges. */
static void test_hex_value(void **state)
{
    static const struct {
        int c, want;
    } cases[] = {
        {'0', 0},  {'9', 9},  {'A', 10}, {'F', 15}, {'a', 10},  {'f', 15},
        {'c', 12}, {'/', -1}, {':', -1}, {'@', -1}, {'G', -1},  {'`', -1},
        {'g', -1}, {' ', -1}, {0, -1},   {-1, -1},  {0xc3, -1},
    };
    for (size_t i = 0; i < SKT_N(cases); i++)
        if (sk_hex_value(cases[i].c) != cases[i].want)
            fail_msg("case %zu (0x%x): got %d, want %d", i, (unsigned)cases[i].c,
                     sk_hex_value(cases[i].c), cases[i].want);
}

static void test_hex_encode(void **state)
{
    static const struct {
        const char *in;
        size_t n;
        bool upper;
        const char *want;
    } cases[] = {
        {"", 0, false, ""},
        {"\x00", 1, true, "00"},
        {"\xff", 1, false, "ff"},
        {"\xff", 1, true, "FF"},
        {"\x01\x23\x45\x67\x89\xab\xcd\xef", 8, false, "0123456789abcdef"},
        {"\x01\x23\x45\x67\x89\xab\xcd\xef", 8, true, "0123456789ABCDEF"},
        {"a+b", 3, true, "612B62"},
    };
    for (size_t i = 0; i < SKT_N(cases); i++) {
        char out[2 * 8 + 2];
        memset(out, 'x', sizeof out);
        sk_hex_encode(out, cases[i].in, cases[i].n, cases[i].upper);
        assert_string_equal(out, cases[i].want);
        assert_int_equal(out[2 * cases[i].n + 1], 'x'); /* nothing past the NUL */
        for (size_t k = 0; k < cases[i].n; k++)
            assert_int_equal(sk_hex_value(out[2 * k]) * 16 + sk_hex_value(out[2 * k + 1]),
                             (unsigned char)cases[i].in[k]);
    }
}

/* "Did you mean": edits up to a third of the word, swaps of neighbours
 * count as one, a prefix of 3 or more is near, short words need an exact
 * one-edit match, long words get nothing. */
static void test_nearest(void **state)
{
    static const char *const names[] = {"send",       "serve", "queue",  "data-dir", "log-level",
                                        "log-format", "log",   "listen", NULL};
    static const struct {
        const char *word, *want; /* want NULL: no suggestion */
    } cases[] = {
        {"send", "send"},
        {"sned", "send"},  /* swapped neighbours: one edit */
        {"srve", "serve"}, /* one left out */
        {"serv", "serve"},
        {"queu", "queue"},
        {"qeueu", NULL},      /* two edits in five octets: too far */
        {"data", "data-dir"}, /* a prefix */
        {"log-levl", "log-level"},
        {"log-fromat", "log-format"},
        {"lsiten", "listen"},
        {"lg", "log"},
        {"x", NULL},
        {"zzzzzzzz", NULL},
        {"", NULL},
        {"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *got = sk_nearest(cases[i].word, names);
        if (cases[i].want == NULL ? got != NULL : (got == NULL || strcmp(got, cases[i].want)))
            fail_msg("case %zu (%s): got %s, want %s", i, cases[i].word, got ? got : "none",
                     cases[i].want ? cases[i].want : "none");
    }
    assert_null(sk_nearest("send", NULL));
}

static void test_log_levels(void **state)
{
    static const struct {
        const char *name;
        sk_err err;
        sk_log_level level;
    } cases[] = {
        {"error", SK_OK, SK_LOG_ERR}, {"warning", SK_OK, SK_LOG_WARN},
        {"info", SK_OK, SK_LOG_INFO}, {"debug", SK_OK, SK_LOG_DEBUG},
        {"warn", SK_ERR_SYNTAX, 0},   {"INFO", SK_ERR_SYNTAX, 0},
        {"", SK_ERR_SYNTAX, 0},       {"verbose", SK_ERR_SYNTAX, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        sk_log_level l = SK_LOG_DEBUG;
        assert_int_equal(sk_log_level_parse(cases[i].name, &l), cases[i].err);
        if (cases[i].err == SK_OK) {
            assert_int_equal(l, cases[i].level);
            assert_string_equal(sk_log_level_name(l), cases[i].name);
        }
    }
}

/* Lines of the library's shape taken apart: "FIELDS" is "key=value|..."
 * with the unescaped values; text is the rest. */
static void test_log_record_parse(void **state)
{
    static const struct {
        const char *line;
        const char *id, *module, *event, *fields, *text;
    } cases[] = {
        {"b3da9d2b0001 server rcpt addr=<bob@localhost> reply=250", "b3da9d2b0001", "server",
         "rcpt", "addr=<bob@localhost>|reply=250|", ""},
        {"- daemon stopped", "-", "daemon", "stopped", "", ""},
        {"Q1 queue delivered rcpt=\"bob@localhost\" reply=\"250 2.0.0 delivered to Maildir\"", "Q1",
         "queue", "delivered", "rcpt=bob@localhost|reply=250 2.0.0 delivered to Maildir|", ""},
        /* Escapes undone: quote, backslash, UTF-8 and control octets. */
        {"s1 server helo name=\"a\\\"b\\\\c Zo\\xc3\\xab\\x0a\"", "s1", "server", "helo",
         "name=a\"b\\c Zo\xc3\xab\n|", ""},
        /* A path with a space (quoted local part) stays one value. */
        {"s1 server mail addr=<\\\"a b\\\"@x> reply=250", "s1", "server", "mail",
         "addr=<\"a b\"@x>|reply=250|", ""},
        {"s1 server mail addr=<> reply=250", "s1", "server", "mail", "addr=<>|reply=250|", ""},
        /* A '>' in a quoted local part does not end the path. */
        {"s1 server rcpt addr=<\\\"a> b\\\"@x> reply=250", "s1", "server", "rcpt",
         "addr=<\"a> b\"@x>|reply=250|", ""},
        {"- spool journal replayed records=3", "-", "spool", "journal", "records=3|", "replayed"},
        {"- daemon track-unavailable path=/x error=\"no\" (no tracking, no suppression)", "-",
         "daemon", "track-unavailable", "path=/x|error=no|", "(no tracking, no suppression)"},
        {"x m e empty=\"\" k=v=w", "x", "m", "e", "empty=|k=v=w|", ""},
        /* An unclosed quote: the value is taken as it is, up to a space. */
        {"x m e k=\"open end", "x", "m", "e", "k=\"open|", "end"},
        {"only-id", "only-id", "", "", "", ""},
        {"", "", "", "", "", ""},
    };
    sk_log_record *r = malloc(sizeof *r);
    assert_non_null(r);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        assert_int_equal(sk_log_record_parse(cases[i].line, r), SK_OK);
        assert_string_equal(r->id, cases[i].id);
        assert_string_equal(r->module, cases[i].module);
        assert_string_equal(r->event, cases[i].event);
        char joined[512] = "";
        for (size_t f = 0; f < r->n_fields; f++) {
            assert_int_equal(strlen(r->fields[f].value), r->fields[f].value_len);
            strcat(joined, r->fields[f].key);
            strcat(joined, "=");
            strcat(joined, r->fields[f].value);
            strcat(joined, "|");
        }
        if (strcmp(joined, cases[i].fields))
            fail_msg("case %zu: fields \"%s\", want \"%s\"", i, joined, cases[i].fields);
        assert_string_equal(r->text, cases[i].text);
    }
    /* A NUL octet in a value is kept, with its length. */
    assert_int_equal(sk_log_record_parse("x m e k=\"a\\x00b\"", r), SK_OK);
    assert_int_equal(r->n_fields, 1);
    assert_int_equal(r->fields[0].value_len, 3);
    assert_memory_equal(r->fields[0].value, "a\0b", 3);
    /* Fields beyond the maximum stay in the text; the longest line fits. */
    char line[SK_LOG_LINE_MAX_OCTETS + 2];
    size_t n = (size_t)snprintf(line, sizeof line, "x m e");
    while (n + 4 <= SK_LOG_LINE_MAX_OCTETS) n += (size_t)snprintf(line + n, 5, " a=1");
    assert_int_equal(sk_log_record_parse(line, r), SK_OK);
    assert_int_equal(r->n_fields, SK_LOG_FIELDS_MAX);
    assert_non_null(strstr(r->text, "a=1 a=1"));
    memset(line, 'x', sizeof line - 1);
    line[sizeof line - 1] = '\0';
    assert_int_equal(sk_log_record_parse(line, r), SK_ERR_TOO_LONG);
    free(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_buf_bounded),    cmocka_unit_test(test_buf_truncate),
        cmocka_unit_test(test_buf_read_fd),    cmocka_unit_test(test_base64_vectors),
        cmocka_unit_test(test_base64_rejects), cmocka_unit_test(test_parse_units),
        cmocka_unit_test(test_enhanced_valid), cmocka_unit_test(test_reply_class),
        cmocka_unit_test(test_reply_line),     cmocka_unit_test(test_errors_named),
        cmocka_unit_test(test_log_escape),     cmocka_unit_test(test_nearest),
        cmocka_unit_test(test_log_levels),     cmocka_unit_test(test_log_record_parse),
        cmocka_unit_test(test_hex_value),      cmocka_unit_test(test_hex_encode),
        cmocka_unit_test(test_err_from_errno), cmocka_unit_test(test_array_grow),
        cmocka_unit_test(test_ascii_classes),  cmocka_unit_test(test_ascii_words),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
