/* Unit tests for src/mime: encoders, header folding, address parsing,
 * injection refusal, rendering, prepared messages, allocation failures,
 * and an oracle: Python's email package must read back what was composed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "sktest.h"

#include <smtpkit/smtpkit.h>
#include "mime/mime_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define BIG (16u * 1024 * 1024)

static unsigned char all_bytes[256];

/* Every line of s ends with CRLF and has at most max octets. */
static void assert_lines(const char *s, size_t len, size_t max)
{
    size_t col = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] == '\r') {
            assert_true(i + 1 < len && s[i + 1] == '\n');
            col = 0;
            i++;
            continue;
        }
        assert_true(s[i] != '\n');
        col++;
        if (col > max)
            fail_msg("line over %zu octets near offset %zu: %.40s", max, i, s + i - col + 1);
    }
}

/* ---- Quoted-printable ------------------------------------------------------ */

static void test_qp_cases(void **state)
{
    static const struct {
        const char *in;
        bool text;
        const char *out;
    } cases[] = {
        {"abc", true, "abc"},
        {"a=b", true, "a=3Db"},
        {"trailing \r\nnext", true, "trailing=20\r\nnext"},
        {"tab\t\r\n", true, "tab=09\r\n"},
        {"end ", true, "end=20"},
        {"inner space stays", true, "inner space stays"},
        {".dot\r\n.\r\n", true, "=2Edot\r\n=2E\r\n"},
        {"a.b", true, "a.b"},
        {"From me\r\nFromage", true, "=46rom me\r\nFromage"},
        {"caf\xc3\xa9", true, "caf=C3=A9"},
        {"\x01\x7f", true, "=01=7F"},
        {"a\r\nb", false, "a=0D=0Ab"},
        /* RFC 2045 6.7 (5): 76 characters per line including the '='. */
        {"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", true,
         "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa=\r\n"
         "aaaaaaa"},
        /* 76 characters fit exactly on a last line. */
        {"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n", true,
         "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n"},
        /* An escape is never split by a soft break. */
        {"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa=x", true,
         "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa=\r\n=3Dx"},
        /* A '.' that a soft break puts at the start of a line is encoded. */
        {"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.b", true,
         "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa=\r\n=2Eb"},
        /* Trailing white space before a soft break needs no encoding. */
        {"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa b c", true,
         "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa =\r\nb c"},
    };
    for (size_t i = 0; i < SKT_N(cases); i++) {
        sk_buf b = SK_BUF_INIT(1024);
        size_t n = strlen(cases[i].in);
        assert_int_equal(sk_mime_qp_encode(&b, cases[i].in, n, cases[i].text), SK_OK);
        if (strcmp(sk_buf_cstr(&b), cases[i].out) != 0)
            fail_msg("case %zu: got \"%s\" want \"%s\"", i, sk_buf_cstr(&b), cases[i].out);
        assert_int_equal(sk_mime_qp_length(cases[i].in, n, cases[i].text), b.len);
        sk_buf_free(&b);
    }
}

/* All 256 octets in binary mode: lines of 76 at most, and decoding (here,
 * by hand) gives them back. */
static void test_qp_all_octets(void **state)
{
    sk_buf b = SK_BUF_INIT(4096);
    assert_int_equal(sk_mime_qp_encode(&b, all_bytes, 256, false), SK_OK);
    assert_int_equal(sk_buf_append(&b, "\r\n", 2), SK_OK);
    assert_lines(b.data, b.len, SK_MIME_QP_LINE_OCTETS);
    unsigned char dec[256];
    size_t n = 0;
    for (size_t i = 0; i + 2 < b.len + 2 && i < b.len; i++) {
        if (b.data[i] == '=' && b.data[i + 1] == '\r') {
            i += 2;
            continue;
        }
        if (b.data[i] == '\r') break; /* the final CRLF we added */
        assert_true(n < 256);
        if (b.data[i] == '=') {
            unsigned v;
            assert_int_equal(sscanf(b.data + i + 1, "%2X", &v), 1);
            dec[n++] = (unsigned char)v;
            i += 2;
        } else {
            dec[n++] = (unsigned char)b.data[i];
        }
    }
    assert_int_equal(n, 256);
    assert_memory_equal(dec, all_bytes, 256);
    sk_buf_free(&b);
}

static void test_base64_lines(void **state)
{
    static const size_t sizes[] = {0, 1, 56, 57, 58, 114, 256, 1000};
    unsigned char data[1000];
    for (size_t i = 0; i < sizeof data; i++) data[i] = (unsigned char)(i * 7 + 3);
    for (size_t k = 0; k < SKT_N(sizes); k++) {
        sk_buf b = SK_BUF_INIT(4096);
        assert_int_equal(sk_mime_base64_lines(&b, data, sizes[k]), SK_OK);
        size_t lines = (sizes[k] + 56) / 57;
        size_t chars = (sizes[k] + 2) / 3 * 4;
        assert_int_equal(b.len, chars + 2 * lines);
        assert_lines(b.data, b.len, SK_MIME_BASE64_LINE_OCTETS);
        /* Joined again, the lines decode to the input. */
        sk_buf joined = SK_BUF_INIT(4096), dec = SK_BUF_INIT(4096);
        for (size_t i = 0; i < b.len; i++)
            if (b.data[i] != '\r' && b.data[i] != '\n')
                assert_int_equal(sk_buf_putc(&joined, b.data[i]), SK_OK);
        assert_int_equal(sk_base64_decode(&dec, sk_buf_cstr(&joined), joined.len), SK_OK);
        assert_int_equal(dec.len, sizes[k]);
        if (sizes[k]) assert_memory_equal(dec.data, data, sizes[k]);
        sk_buf_free(&b);
        sk_buf_free(&joined);
        sk_buf_free(&dec);
    }
}

static void test_text_encoding_choice(void **state)
{
    static const struct {
        const char *in;
        sk_cte cte;
    } cases[] = {
        {"plain ASCII\r\n", SK_CTE_7BIT},
        {"", SK_CTE_7BIT},
        {"caf\xc3\xa9 au lait, mostly ASCII text\r\n", SK_CTE_QP},
        /* Mostly non-ASCII (Japanese): base64 is shorter. */
        {"\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e\xe3\x81\xae\xe3\x83\x86\xe3\x82\xad\xe3\x82\xb9"
         "\xe3\x83\x88\r\n",
         SK_CTE_BASE64},
        /* A line over 78 octets is not sent as 7bit. */
        {"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n",
         SK_CTE_QP},
        /* Our boundary prefix in 7bit text forces an encoding. */
        {"see =_sk_0123\r\n", SK_CTE_QP},
        /* A bare LF is not 7bit data (RFC 2045 2.7). */
        {"a\nb", SK_CTE_QP},
    };
    for (size_t i = 0; i < SKT_N(cases); i++)
        if (sk_mime_choose_text_cte(cases[i].in, strlen(cases[i].in)) != cases[i].cte)
            fail_msg("case %zu (%s): wrong encoding", i, cases[i].in);
}

/* ---- Header fields ---------------------------------------------------------- */

/* Render "Subject: text" with the unstructured writer. */
static sk_buf subject_of(const char *text)
{
    sk_buf b = SK_BUF_INIT(BIG);
    sk_hdr_writer w;
    sk_hdr_begin(&w, &b, "Subject");
    sk_hdr_unstructured(&w, text, false);
    assert_int_equal(sk_hdr_end(&w), SK_OK);
    return b;
}

/* Unfold (drop CRLF before WSP) and decode encoded words. */
static char *unfold_decode(const char *field)
{
    sk_buf u = SK_BUF_INIT(BIG), d = SK_BUF_INIT(BIG);
    const char *colon = strchr(field, ':');
    assert_non_null(colon);
    const char *p = colon + 1;
    while (*p == ' ') p++;
    for (; *p; p++) {
        if (p[0] == '\r' && p[1] == '\n' && (p[2] == ' ' || p[2] == '\t')) {
            p++;
            continue;
        }
        if (p[0] == '\r' && p[1] == '\n' && p[2] == '\0') break;
        assert_int_equal(sk_buf_putc(&u, *p), SK_OK);
    }
    assert_int_equal(sk_mime_decode_words(&d, sk_buf_cstr(&u), u.len), SK_OK);
    sk_buf_free(&u);
    return sk_buf_detach(&d, NULL);
}

/* Each encoded word is at most 75 characters and decodes, alone, to
 * valid UTF-8 (no character split between words). */
static void assert_words_sound(const char *s)
{
    for (const char *p = strstr(s, "=?"); p; p = strstr(p + 2, "=?")) {
        const char *end = strstr(p + 10, "?=");
        assert_non_null(end);
        size_t n = (size_t)(end + 2 - p);
        assert_true(n <= SK_MIME_ENCODED_WORD_MAX_OCTETS);
        sk_buf d = SK_BUF_INIT(256);
        assert_int_equal(sk_mime_decode_words(&d, p, n), SK_OK);
        assert_true(strstr(sk_buf_cstr(&d), "=?") == NULL); /* it did decode */
        assert_true(sk_mime_utf8_valid(sk_buf_cstr(&d), d.len));
        sk_buf_free(&d);
        p = end;
    }
}

static void test_header_exact(void **state)
{
    static const struct {
        const char *in, *out;
    } cases[] = {
        {"Hello world", "Subject: Hello world\r\n"},
        {"Gr\xc3\xbc\xc3\x9f"
         "e",
         "Subject: =?UTF-8?B?R3LDvMOfZQ==?=\r\n"},
        /* A run of words needing encoding carries its spaces inside. */
        {"K\xc3\xb6ln \xe2\x80\x94 ok", "Subject: =?UTF-8?B?S8O2bG4g4oCU?= ok\r\n"},
        /* Few non-ASCII octets in a long word: Q is shorter than B. */
        {"Aaaaaaaaaaaaaaaaaaaaaaaaaa\xc3\xa9",
         "Subject: =?UTF-8?Q?Aaaaaaaaaaaaaaaaaaaaaaaaaa=C3=A9?=\r\n"},
        /* Text that looks like an encoded word is encoded, so it stays text. */
        {"=?UTF-8?B?eA==?=", "Subject: =?UTF-8?B?PT9VVEYtOD9CP2VBPT0/PQ==?=\r\n"},
        {"  spaced   out  ", "Subject: spaced out\r\n"},
        {"", "Subject:\r\n"},
    };
    for (size_t i = 0; i < SKT_N(cases); i++) {
        sk_buf b = subject_of(cases[i].in);
        if (strcmp(sk_buf_cstr(&b), cases[i].out) != 0)
            fail_msg("case %zu: got \"%s\" want \"%s\"", i, sk_buf_cstr(&b), cases[i].out);
        sk_buf_free(&b);
    }
}

static void test_header_folding(void **state)
{
    static const char *const cases[] = {
        "A subject line with a great many ordinary words that certainly will not fit on one "
        "line of seventy-eight characters, so it is folded at white space several times over",
        "Party \xf0\x9f\x8e\x89\xf0\x9f\x8e\x89\xf0\x9f\x8e\x89\xf0\x9f\x8e\x89\xf0\x9f\x8e\x89"
        "\xf0\x9f\x8e\x89\xf0\x9f\x8e\x89\xf0\x9f\x8e\x89\xf0\x9f\x8e\x89\xf0\x9f\x8e\x89\xf0"
        "\x9f\x8e\x89\xf0\x9f\x8e\x89\xf0\x9f\x8e\x89\xf0\x9f\x8e\x89\xf0\x9f\x8e\x89 tonight",
        "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e\xe3\x81\xae\xe4\xbb\xb6\xe5\x90\x8d\xe3\x81\xaf"
        "\xe9\x95\xb7\xe3\x81\x84\xe3\x81\xa7\xe3\x81\x99\xe3\x81\xad\xe3\x80\x82\xe6\x97\xa5"
        "\xe6\x9c\xac\xe8\xaa\x9e\xe3\x81\xae\xe4\xbb\xb6\xe5\x90\x8d\xe3\x81\xaf\xe9\x95\xb7"
        "\xe3\x81\x84\xe3\x81\xa7\xe3\x81\x99\xe3\x81\xad\xe3\x80\x82",
        "word "
        "averyveryveryveryveryveryveryveryveryveryveryveryveryveryveryveryveryveryveryverylongword"
        " end",
        "Gr\xc3\xbc\xc3\x9f"
        "e aus K\xc3\xb6ln und M\xc3\xbcnchen und D\xc3\xbcsseldorf und N\xc3\xbcrnberg und "
        "W\xc3\xbcrzburg und L\xc3\xbc"
        "beck \xe2\x80\x94 \xc3\xa0 bient\xc3\xb4t",
    };
    for (size_t i = 0; i < SKT_N(cases); i++) {
        sk_buf b = subject_of(cases[i]);
        assert_lines(b.data, b.len, SK_MIME_LINE_SOFT_OCTETS);
        assert_true(sk_mime_is_ascii(b.data, b.len));
        assert_words_sound(b.data);
        char *back = unfold_decode(b.data);
        if (strcmp(back, cases[i]) != 0) fail_msg("case %zu: decoded to \"%s\"", i, back);
        sk_free(back);
        sk_buf_free(&b);
    }
}

static void test_phrase(void **state)
{
    static const struct {
        const char *name, *out;
    } cases[] = {
        {"Alice Smith", "To: Alice Smith <a@x>\r\n"},
        {"Doe, John", "To: \"Doe, John\" <a@x>\r\n"},
        {"say \"hi\"", "To: \"say \\\"hi\\\"\" <a@x>\r\n"},
        /* Q and B are as long: Q, which stays readable, wins. */
        {"Zo\xc3\xab", "To: =?UTF-8?Q?Zo=C3=AB?= <a@x>\r\n"},
        {"", "To: a@x\r\n"},
    };
    for (size_t i = 0; i < SKT_N(cases); i++) {
        sk_buf b = SK_BUF_INIT(1024);
        sk_hdr_writer w;
        sk_hdr_begin(&w, &b, "To");
        sk_mailbox mb = {(char *)cases[i].name, (char *)"a@x"};
        sk_hdr_mailbox(&w, &mb, "");
        assert_int_equal(sk_hdr_end(&w), SK_OK);
        if (strcmp(sk_buf_cstr(&b), cases[i].out) != 0)
            fail_msg("case %zu: got \"%s\"", i, sk_buf_cstr(&b));
        sk_buf_free(&b);
    }
}

static void test_decode_words(void **state)
{
    static const struct {
        const char *in, *out;
    } cases[] = {
        {"=?UTF-8?B?Wm/Dqw==?=", "Zo\xc3\xab"},
        {"=?utf-8?q?J=C3=B6rg_M?=", "J\xc3\xb6rg M"},
        {"=?UTF-8?Q?a?= =?UTF-8?Q?b?=", "ab"},      /* RFC 2047 6.2 */
        {"=?UTF-8?Q?a?=  x", "a  x"},               /* text after a word keeps spaces */
        {"=?ISO-8859-1?Q?caf=E9?=", "caf\xc3\xa9"}, /* converted to UTF-8 */
        {"=?KOI8-R?B?5M/C0s/F?=", "=?KOI8-R?B?5M/C0s/F?="},
        {"=?UTF-8?B?not base64?=", "=?UTF-8?B?not base64?="},
        {"=?UTF-8?B?/w==?=", "=?UTF-8?B?/w==?="}, /* not UTF-8 once decoded */
        {"plain", "plain"},
    };
    for (size_t i = 0; i < SKT_N(cases); i++) {
        sk_buf b = SK_BUF_INIT(1024);
        assert_int_equal(sk_mime_decode_words(&b, cases[i].in, strlen(cases[i].in)), SK_OK);
        if (strcmp(sk_buf_cstr(&b), cases[i].out) != 0)
            fail_msg("case %zu: got \"%s\"", i, sk_buf_cstr(&b));
        sk_buf_free(&b);
    }
}

/* ---- Addresses -------------------------------------------------------------- */

static void test_mailbox_parse(void **state)
{
    static const struct {
        const char *in;
        sk_err err;
        const char *name, *addr;
    } cases[] = {
        {"user@example.org", SK_OK, "", "user@example.org"},
        {"  <user@example.org>  ", SK_OK, "", "user@example.org"},
        {"Zo\xc3\xab <zoe@example.org>", SK_OK, "Zo\xc3\xab", "zoe@example.org"},
        {"\"john doe\"@example.org", SK_OK, "", "\"john doe\"@example.org"},
        {"\"john\"@example.org", SK_OK, "", "john@example.org"},
        {"\"a\\\"b\"@example.org", SK_OK, "", "\"a\\\"b\"@example.org"},
        {"\"Doe, John\" <jd@example.org>", SK_OK, "Doe, John", "jd@example.org"},
        {"Doe, John <jd@example.org>", SK_OK, "Doe, John", "jd@example.org"},
        {"John Q. Public <jqp@example.org>", SK_OK, "John Q. Public", "jqp@example.org"},
        {"=?UTF-8?B?Wm/Dqw==?= <zoe@example.org>", SK_OK, "Zo\xc3\xab", "zoe@example.org"},
        {"\xe7\x94\xa8\xe6\x88\xb7@\xe4\xbe\x8b\xe5\xad\x90.\xe5\xb9\xbf\xe5\x91\x8a", SK_OK, "",
         "\xe7\x94\xa8\xe6\x88\xb7@\xe4\xbe\x8b\xe5\xad\x90.\xe5\xb9\xbf\xe5\x91\x8a"},
        {"a@b (a comment)", SK_OK, "", "a@b"},
        {"first.last+tag@sub.example.org", SK_OK, "", "first.last+tag@sub.example.org"},
        {"x@[192.0.2.1]", SK_OK, "", "x@[192.0.2.1]"},
        {"Name <@relay.example:x@example.org>", SK_OK, "Name", "x@example.org"},
        {"", SK_ERR_SYNTAX, NULL, NULL},
        {"user", SK_ERR_SYNTAX, NULL, NULL},
        {"user@", SK_ERR_SYNTAX, NULL, NULL},
        {"@example.org", SK_ERR_SYNTAX, NULL, NULL},
        {"a@@example.org", SK_ERR_SYNTAX, NULL, NULL},
        {"a b@example.org", SK_ERR_SYNTAX, NULL, NULL},
        {".a@example.org", SK_ERR_SYNTAX, NULL, NULL},
        {"a..b@example.org", SK_ERR_SYNTAX, NULL, NULL},
        {"a@-example.org", SK_ERR_SYNTAX, NULL, NULL},
        {"a@example..org", SK_ERR_SYNTAX, NULL, NULL},
        {"a@exa_mple.org", SK_ERR_SYNTAX, NULL, NULL},
        {"<a@example.org", SK_ERR_SYNTAX, NULL, NULL},
        {"a@example.org>", SK_ERR_SYNTAX, NULL, NULL},
        {"a@x, b@y", SK_ERR_SYNTAX, NULL, NULL},
        {"Team: a@x;", SK_ERR_SYNTAX, NULL, NULL},
        {"\"unclosed@example.org", SK_ERR_SYNTAX, NULL, NULL},
        {"a@b (unclosed", SK_ERR_SYNTAX, NULL, NULL},
        {"\xff@example.org", SK_ERR_SYNTAX, NULL, NULL},
        {"a\x01@example.org", SK_ERR_SYNTAX, NULL, NULL},
        {"Name <a@b> trailing", SK_ERR_SYNTAX, NULL, NULL},
        /* RFC 5321 4.5.3.1.1: 64 octets of local part at most. */
        {"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa@example.org",
         SK_ERR_SYNTAX, NULL, NULL},
        {"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa@example.org", SK_OK, "",
         "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa@example.org"},
        {"a@example.org\r\nBcc: x@y", SK_ERR_INVAL, NULL, NULL},
        {"a@example.org\n", SK_ERR_INVAL, NULL, NULL},
        {"Name\r <a@example.org>", SK_ERR_INVAL, NULL, NULL},
    };
    for (size_t i = 0; i < SKT_N(cases); i++) {
        sk_mailbox mb;
        sk_error err;
        sk_err e = sk_mailbox_parse(cases[i].in, &mb, &err);
        if (e != cases[i].err)
            fail_msg("case %zu (%s): got %s want %s", i, cases[i].in, sk_strerror(e),
                     sk_strerror(cases[i].err));
        if (e == SK_OK) {
            assert_string_equal(mb.name, cases[i].name);
            assert_string_equal(mb.addr, cases[i].addr);
            sk_mailbox_clear(&mb);
        } else {
            assert_int_equal(err.err, e);
            assert_true(err.text[0] != '\0');
        }
    }
}

static void test_address_list_parse(void **state)
{
    static const struct {
        const char *in;
        sk_err err;
        const char *joined; /* "name|addr;" for each */
    } cases[] = {
        {"a@x, B <b@y>", SK_OK, "|a@x;B|b@y;"},
        {"Team: a@x, b@y;, c@z", SK_OK, "|a@x;|b@y;|c@z;"},
        {"Empty:;, d@w", SK_OK, "|d@w;"},
        {"=?UTF-8?Q?J=C3=B6rg?= <j@x>, \"Q, R\" <q@r>", SK_OK, "J\xc3\xb6rg|j@x;Q, R|q@r;"},
        {"=?UTF-8?B?Wm/Dqw==?= =?UTF-8?B?IE1heQ==?= <z@x>", SK_OK, "Zo\xc3\xab May|z@x;"},
        {"a@x,\r\n b@y", SK_OK, "|a@x;|b@y;"},
        {"a@x,, b@y,", SK_OK, "|a@x;|b@y;"},
        {"(c) \"john doe\"@example.org (c)", SK_OK, "|\"john doe\"@example.org;"},
        {"undisclosed-recipients:;", SK_ERR_SYNTAX, NULL},
        {"", SK_ERR_SYNTAX, NULL},
        {"a@x,\r\nb@y", SK_ERR_SYNTAX, NULL},
        {"a@x\nb@y", SK_ERR_SYNTAX, NULL},
        {"a@x b@y", SK_ERR_SYNTAX, NULL},
        {"Team: a@x", SK_ERR_SYNTAX, NULL},
        {"A: B: c@d;;", SK_ERR_SYNTAX, NULL},
        {"Doe, John <jd@x>", SK_ERR_SYNTAX, NULL},
    };
    for (size_t i = 0; i < SKT_N(cases); i++) {
        sk_address_list l;
        sk_err e = sk_address_list_parse(cases[i].in, strlen(cases[i].in), &l, NULL);
        if (e != cases[i].err)
            fail_msg("case %zu (%s): got %s want %s", i, cases[i].in, sk_strerror(e),
                     sk_strerror(cases[i].err));
        if (e) continue;
        sk_buf j = SK_BUF_INIT(1024);
        for (size_t k = 0; k < l.count; k++)
            assert_int_equal(sk_buf_printf(&j, "%s|%s;", l.items[k].name, l.items[k].addr), SK_OK);
        if (strcmp(sk_buf_cstr(&j), cases[i].joined) != 0)
            fail_msg("case %zu: got \"%s\"", i, sk_buf_cstr(&j));
        sk_buf_free(&j);
        sk_address_list_clear(&l);
    }
}

/* The reason a malformed address gives names what is missing. */
static void test_address_errors(void **state)
{
    static const struct {
        bool list; /* sk_address_list_parse, else sk_mailbox_parse */
        const char *in;
        const char *why;
    } cases[] = {
        /* A name and an address without angle brackets. */
        {false, "Zo\xc3\xab zoe@example.org", "expected '<' before the address"},
        {false, "Name user@x", "expected '<' before the address"},
        {false, "\"Zo\xc3\xab\" zoe@example.org", "expected '<' before the address"},
        {false, "John Q. Public jqp@example.org", "expected '<' before the address"},
        {false, "John Doe john.doe@example.org", "expected '<' before the address"},
        {false, "a b@example.org", "expected '<' before the address"},
        {true, "Name user@x", "expected '<' before the address"},
        {true, "a@x, Name user@x", "expected '<' before the address"},
        /* Other mistakes keep their own reason. */
        {false, "Name <user@x", "expected '>'"},
        {false, "user", "expected '@'"},
        {false, "user@", "malformed domain"},
        {false, "a..b@example.org", "expected a local part"},
        {true, "a@x b@y", "expected ',' between addresses"},
    };
    for (size_t i = 0; i < SKT_N(cases); i++) {
        sk_error err;
        sk_error_clear(&err);
        sk_err e;
        if (cases[i].list) {
            sk_address_list l;
            e = sk_address_list_parse(cases[i].in, strlen(cases[i].in), &l, &err);
        } else {
            sk_mailbox mb;
            e = sk_mailbox_parse(cases[i].in, &mb, &err);
        }
        assert_int_equal(e, SK_ERR_SYNTAX);
        if (!strstr(err.text, cases[i].why))
            fail_msg("case %zu (%s): \"%s\" lacks \"%s\"", i, cases[i].in, err.text, cases[i].why);
    }
}

/* What the composer writes, the parser reads back: names and addresses
 * survive a trip through a folded To field. */
static void test_address_roundtrip(void **state)
{
    static const char *const names[] = {
        "",
        "Alice",
        "Doe, John",
        "say \"hi\" \\ bye",
        "(not a comment)",
        "=?UTF-8?B?eA==?= literal",
        "Zo\xc3\xab \xc3\x9cn\xc3\xaf"
        "code",
        "\xe5\x90\x8d\xe5\x89\x8d \xf0\x9f\xa6\x8a",
        "A name long enough that it has to be folded or encoded over more than one line of "
        "the header, with commas, too",
        "J\xc3\xb6rg M\xc3\xbcller-L\xc3\xbc"
        "denscheid und S\xc3\xb6hne GmbH & Co. KG, Gesch\xc3\xa4"
        "ftsf\xc3\xbchrung und Vertrieb",
        "tab\tinside",
    };
    static const char *const addrs[] = {
        "a@example.org",
        "\"john doe\"@example.org",
        "\"a\\\"b\"@example.org",
        "first.last+tag@sub.example.org",
        "j\xc3\xb6rg@m\xc3\xbcller.example",
        "x@[192.0.2.1]",
    };
    for (size_t i = 0; i < SKT_N(names); i++) {
        sk_buf b = SK_BUF_INIT(4096);
        sk_hdr_writer w;
        sk_hdr_begin(&w, &b, "To");
        for (size_t k = 0; k < SKT_N(addrs); k++) {
            sk_mailbox mb = {(char *)names[i], (char *)addrs[k]};
            sk_hdr_mailbox(&w, &mb, k + 1 < SKT_N(addrs) ? "," : "");
        }
        assert_int_equal(sk_hdr_end(&w), SK_OK);
        assert_lines(b.data, b.len, SK_MIME_LINE_SOFT_OCTETS);
        sk_address_list l;
        sk_error err;
        const char *value = b.data + 3;
        if (sk_address_list_parse(value, b.len - 3 - 2, &l, &err) != SK_OK)
            fail_msg("name %zu: %s in %s", i, err.text, b.data);
        assert_int_equal(l.count, SKT_N(addrs));
        for (size_t k = 0; k < l.count; k++) {
            /* Tabs in names are written as they are and read back. */
            if (strcmp(l.items[k].name, names[i]) != 0)
                fail_msg("name %zu: read back \"%s\" from %s", i, l.items[k].name, b.data);
            assert_string_equal(l.items[k].addr, addrs[k]);
        }
        sk_address_list_clear(&l);
        sk_buf_free(&b);
    }
}

/* Deterministic noise from an alphabet of troublesome characters: the
 * parsers never crash (ASan watches), and what they accept is sound. */
static void test_parser_noise(void **state)
{
    static const char *const atoms[] = {
        "a",    "@",    ".",           ",",    ";",     ":",        "<",     ">",
        "\"",   "\\",   "(",           ")",    " ",     "\t",       "\r\n ", "\n",
        "\r",   "[",    "]",           "=?",   "?=",    "UTF-8?B?", "Q?",    "\xc3\xa9",
        "\xc3", "\xff", "example.org", "To: ", "Bcc: ", "From: ",   "\n\n",
    };
    uint32_t seed = 12345;
    for (int iter = 0; iter < 20000; iter++) {
        char in[256];
        size_t n = 0;
        seed = seed * 1103515245u + 12345u;
        size_t parts = (seed >> 16) % 24;
        for (size_t k = 0; k < parts; k++) {
            seed = seed * 1103515245u + 12345u;
            const char *a = atoms[(seed >> 16) % SKT_N(atoms)];
            size_t al = strlen(a);
            if (n + al >= sizeof in) break;
            memcpy(in + n, a, al);
            n += al;
        }
        in[n] = '\0';

        sk_mailbox mb;
        if (sk_mailbox_parse(in, &mb, NULL) == SK_OK) {
            assert_true(sk_mime_utf8_valid(mb.name, strlen(mb.name)));
            assert_null(strpbrk(mb.addr, "\r\n"));
            /* An accepted address parses again to itself. */
            sk_mailbox again;
            assert_int_equal(sk_mailbox_parse(mb.addr, &again, NULL), SK_OK);
            assert_string_equal(again.addr, mb.addr);
            sk_mailbox_clear(&again);
            sk_mailbox_clear(&mb);
        }
        sk_address_list l;
        if (sk_address_list_parse(in, n, &l, NULL) == SK_OK) {
            assert_true(l.count > 0);
            sk_address_list_clear(&l);
        }
        sk_message_envelope env;
        if (sk_message_parse_envelope(in, n, &env, NULL) == SK_OK) {
            assert_non_null(env.reverse_path);
            sk_message_envelope_clear(&env);
        }
        sk_buf out = SK_BUF_INIT(4096), dec = SK_BUF_INIT(4096);
        if (sk_message_prepare_raw(in, n, &out, NULL) == SK_OK) {
            assert_lines(sk_buf_cstr(&out), out.len, SK_MIME_LINE_MAX_OCTETS);
            /* No Bcc field in the header (the body may say anything). */
            const char *o = sk_buf_cstr(&out);
            const char *body = strstr(o, "\r\n\r\n");
            const char *bcc = strstr(o, "\r\nBcc:");
            assert_true(bcc == NULL || (body && bcc >= body));
            assert_true(strncmp(o, "Bcc:", 4) != 0);
        }
        assert_int_equal(sk_mime_decode_words(&dec, in, n), SK_OK);
        sk_buf_free(&out);
        sk_buf_free(&dec);
    }
}

/* ---- Composer ----------------------------------------------------------------- */

static sk_message *basic_message(void)
{
    sk_message *m = sk_message_new();
    assert_non_null(m);
    assert_int_equal(sk_message_set_from(m, "Alice <alice@example.org>", NULL), SK_OK);
    assert_int_equal(sk_message_add_to(m, "bob@example.net", NULL), SK_OK);
    assert_int_equal(sk_message_set_subject(m, "Hello", NULL), SK_OK);
    assert_int_equal(sk_message_set_text(m, "Hi\n", NULL), SK_OK);
    return m;
}

static void test_injection_refused(void **state)
{
    static const char *const evil[] = {"x\r\nX-Injected: yes", "x\nX-Injected: yes",
                                       "x\rX-Injected: yes", "\r\n"};
    for (size_t k = 0; k < SKT_N(evil); k++) {
        char addr[64];
        snprintf(addr, sizeof addr, "a@example.org%s", evil[k]);
        const char *v = evil[k];
        sk_message *m = basic_message();
        sk_error err;
        const struct {
            const char *what;
            sk_err got;
        } r[] = {
            {"from", sk_message_set_from(m, addr, &err)},
            {"sender", sk_message_set_sender(m, addr, &err)},
            {"reply-to", sk_message_set_reply_to(m, addr, &err)},
            {"to", sk_message_add_to(m, addr, &err)},
            {"cc", sk_message_add_cc(m, addr, &err)},
            {"bcc", sk_message_add_bcc(m, addr, &err)},
            {"subject", sk_message_set_subject(m, v, &err)},
            {"header value", sk_message_add_header(m, "X-Test", v, &err)},
            {"header name", sk_message_add_header(m, v, "value", &err)},
            {"message-id", sk_message_set_message_id(m, v, &err)},
            {"filename", sk_message_attach_data(m, v, "d", 1, NULL, &err)},
            {"content type", sk_message_attach_data(m, "f.txt", "d", 1, v, &err)},
            {"cid", sk_message_add_inline_data(m, v, "i.png", "d", 1, "image/png", &err)},
            {"inline name", sk_message_add_inline_data(m, "i@x", v, "d", 1, "image/png", &err)},
        };
        for (size_t i = 0; i < SKT_N(r); i++)
            if (r[i].got != SK_ERR_INVAL)
                fail_msg("%s with \"%s\": got %s", r[i].what, evil[k], sk_strerror(r[i].got));
        /* Nothing was taken: the message renders as before. */
        sk_buf out = SK_BUF_INIT(BIG);
        assert_int_equal(sk_message_render(m, &out, &err), SK_OK);
        assert_null(strstr(out.data, "X-Injected"));
        assert_non_null(strstr(out.data, "From: Alice <alice@example.org>\r\n"));
        assert_int_equal(sk_message_recipient_count(m), 1);
        sk_buf_free(&out);
        sk_message_free(m);
    }
}

static void test_setter_errors(void **state)
{
    sk_message *m = basic_message();
    static const char *const reserved[] = {"From",         "to",           "BCC",        "Subject",
                                           "Content-Type", "MIME-Version", "Message-Id", "Date"};
    for (size_t i = 0; i < SKT_N(reserved); i++)
        assert_int_equal(sk_message_add_header(m, reserved[i], "x", NULL), SK_ERR_INVAL);
    static const char *const bad_names[] = {"", "X Test", "X:Test", "X-T\xc3\xa9st", "X\x7f"};
    for (size_t i = 0; i < SKT_N(bad_names); i++)
        assert_int_equal(sk_message_add_header(m, bad_names[i], "x", NULL), SK_ERR_INVAL);
    assert_int_equal(sk_message_add_header(m, "X-Ok", "fine", NULL), SK_OK);
    assert_int_equal(sk_message_set_subject(m, "\xc3\x28", NULL), SK_ERR_INVAL); /* not UTF-8 */
    assert_int_equal(sk_message_set_text(m, "\xff", NULL), SK_ERR_INVAL);
    assert_int_equal(sk_message_add_to(m, "not an address", NULL), SK_ERR_SYNTAX);
    assert_int_equal(sk_message_set_from(m, "@", NULL), SK_ERR_SYNTAX);
    assert_int_equal(sk_message_set_message_id(m, "no-at-sign", NULL), SK_ERR_SYNTAX);
    assert_int_equal(sk_message_set_message_id(m, "<a b@c>", NULL), SK_ERR_SYNTAX);
    assert_int_equal(sk_message_attach_data(m, "dir/name", "x", 1, NULL, NULL), SK_ERR_INVAL);
    assert_int_equal(sk_message_attach_data(m, "", "x", 1, NULL, NULL), SK_ERR_INVAL);
    assert_int_equal(sk_message_attach_data(m, "a.bin", "x", 1, "nonsense", NULL), SK_ERR_INVAL);
    assert_int_equal(sk_message_add_inline_data(m, "no-at", "a.png", "x", 1, NULL, NULL),
                     SK_ERR_SYNTAX);
    sk_error err;
    assert_int_equal(sk_message_attach_file(m, "/nonexistent/file.pdf", NULL, &err),
                     SK_ERR_NOT_FOUND);
    assert_non_null(strstr(err.text, "/nonexistent/file.pdf"));
    sk_message_free(m);

    /* No From: nothing to render. */
    sk_message *e = sk_message_new();
    sk_buf out = SK_BUF_INIT(BIG);
    assert_int_equal(sk_message_render(e, &out, &err), SK_ERR_INVAL);
    assert_int_equal(out.len, 0);
    assert_null(sk_message_reverse_path(e));
    sk_message_free(e);
    sk_message_free(NULL);
    /* A buffer too small is an error, and leaves the buffer as it was. */
    m = basic_message();
    sk_buf small = SK_BUF_INIT(100);
    assert_int_equal(sk_buf_puts(&small, "keep"), SK_OK);
    assert_int_equal(sk_message_render(m, &small, &err), SK_ERR_TOO_LONG);
    assert_string_equal(sk_buf_cstr(&small), "keep");
    sk_buf_free(&small);
    sk_buf_free(&out);
    sk_message_free(m);
}

static void test_custom_headers(void **state)
{
    static const struct {
        const char *name, *value, *line;
    } cases[] = {
        /* Structured fields keep their syntax: a long URL is not encoded. */
        {"List-Unsubscribe",
         "<mailto:unsub@example.org?subject=unsubscribe>, "
         "<https://example.org/unsubscribe/0123456789abcdef0123456789abcdef0123456789abcdef>",
         "List-Unsubscribe: <mailto:unsub@example.org?subject=unsubscribe>,\r\n"
         " <https://example.org/unsubscribe/0123456789abcdef0123456789abcdef0123456789abcdef>\r\n"},
        /* Encoded words given stay encoded words. */
        {"X-Given", "=?UTF-8?B?w6k=?=", "X-Given: =?UTF-8?B?w6k=?=\r\n"},
        {"X-Text", "\xc3\xa9t\xc3\xa9 2024", "X-Text: =?UTF-8?B?w6l0w6k=?= 2024\r\n"},
        {"X-Priority", "1", "X-Priority: 1\r\n"},
    };
    sk_message *m = basic_message();
    for (size_t i = 0; i < SKT_N(cases); i++)
        assert_int_equal(sk_message_add_header(m, cases[i].name, cases[i].value, NULL), SK_OK);
    sk_buf out = SK_BUF_INIT(BIG);
    assert_int_equal(sk_message_render(m, &out, NULL), SK_OK);
    for (size_t i = 0; i < SKT_N(cases); i++)
        if (!strstr(out.data, cases[i].line)) fail_msg("case %zu not in:\n%s", i, out.data);
    /* A word that cannot fit a line of 998 octets is refused. */
    char word[1000];
    memset(word, 'w', sizeof word - 1);
    word[sizeof word - 1] = '\0';
    assert_int_equal(sk_message_add_header(m, "X-Long", word, NULL), SK_ERR_TOO_LONG);
    assert_int_equal(sk_message_add_header(m, "X-Long", word + 10, NULL), SK_OK);
    sk_buf_reset(&out);
    assert_int_equal(sk_message_render(m, &out, NULL), SK_OK);
    assert_lines(out.data, out.len, SK_MIME_LINE_MAX_OCTETS);
    sk_buf_free(&out);
    sk_message_free(m);
}

static void test_bcc_and_envelope(void **state)
{
    sk_message *m = basic_message();
    assert_int_equal(sk_message_add_cc(m, "Carol <carol@example.net>", NULL), SK_OK);
    assert_int_equal(sk_message_add_bcc(m, "Hidden Person <hidden@secret.example>", NULL), SK_OK);
    /* Duplicates: the domain compares without case, the local part exactly. */
    assert_int_equal(sk_message_add_bcc(m, "bob@EXAMPLE.net", NULL), SK_OK);
    assert_int_equal(sk_message_add_cc(m, "Bob@example.net", NULL), SK_OK);
    sk_buf out = SK_BUF_INIT(BIG);
    assert_int_equal(sk_message_render(m, &out, NULL), SK_OK);
    assert_null(strstr(out.data, "hidden@secret.example"));
    assert_null(strstr(out.data, "Hidden Person"));
    assert_null(strstr(out.data, "\nBcc:"));
    assert_non_null(strstr(out.data, "Cc: Carol <carol@example.net>, Bob@example.net\r\n"));
    static const char *const want[] = {"bob@example.net", "carol@example.net",
                                       "hidden@secret.example", "Bob@example.net"};
    assert_int_equal(sk_message_recipient_count(m), SKT_N(want));
    for (size_t i = 0; i < SKT_N(want); i++)
        assert_string_equal(sk_message_recipient(m, i), want[i]);
    assert_null(sk_message_recipient(m, SKT_N(want)));
    assert_string_equal(sk_message_reverse_path(m), "alice@example.org");
    assert_int_equal(sk_message_needs_smtputf8(m), 0);

    sk_message_envelope env;
    assert_int_equal(sk_message_get_envelope(m, &env, NULL), SK_OK);
    assert_string_equal(env.reverse_path, "alice@example.org");
    assert_int_equal(env.recipient_count, SKT_N(want));
    assert_string_equal(env.recipients[2], "hidden@secret.example");
    assert_int_equal(env.smtputf8, 0);
    sk_message_envelope_clear(&env);

    /* Sender becomes the reverse-path; a UTF-8 address needs SMTPUTF8. */
    assert_int_equal(sk_message_set_sender(m, "lists@example.org", NULL), SK_OK);
    assert_string_equal(sk_message_reverse_path(m), "lists@example.org");
    assert_int_equal(sk_message_add_to(m, "j\xc3\xb6rg@example.de", NULL), SK_OK);
    assert_int_equal(sk_message_needs_smtputf8(m), 1);
    sk_buf_free(&out);
    sk_message_free(m);
}

static void test_message_id_and_date(void **state)
{
    sk_message *m = basic_message();
    sk_buf a = SK_BUF_INIT(1024), b = SK_BUF_INIT(1024), id = SK_BUF_INIT(256);
    sk_message_set_date(m, 0);
    assert_int_equal(sk_message_render(m, &a, NULL), SK_OK);
    assert_int_equal(sk_message_render(m, &b, NULL), SK_OK);
    /* The same message renders the same way, Message-ID included. */
    assert_string_equal(a.data, b.data);
    assert_int_equal(sk_message_get_message_id(m, &id), SK_OK);
    assert_int_equal(id.len, 1 + 32 + 1 + strlen("example.org") + 1);
    assert_non_null(strstr(id.data, "@example.org>"));
    char line[128];
    snprintf(line, sizeof line, "Message-ID: %s\r\n", id.data);
    assert_non_null(strstr(a.data, line));
    char date[40];
    sk_time_rfc5322(0, date);
    snprintf(line, sizeof line, "Date: %s\r\n", date);
    assert_non_null(strstr(a.data, line));
    /* Two messages get different IDs. */
    sk_message *m2 = basic_message();
    sk_buf id2 = SK_BUF_INIT(256);
    assert_int_equal(sk_message_get_message_id(m2, &id2), SK_OK);
    assert_string_not_equal(id.data, id2.data);
    /* A given ID is used, with or without brackets. */
    assert_int_equal(sk_message_set_message_id(m2, "<abc.def@host.example>", NULL), SK_OK);
    sk_buf_reset(&id2);
    assert_int_equal(sk_message_get_message_id(m2, &id2), SK_OK);
    assert_string_equal(id2.data, "<abc.def@host.example>");
    sk_buf_reset(&b);
    assert_int_equal(sk_message_render(m2, &b, NULL), SK_OK);
    assert_non_null(strstr(b.data, "\r\nMessage-ID: <abc.def@host.example>\r\n"));
    assert_non_null(strstr(b.data, "\r\nMIME-Version: 1.0\r\n"));
    sk_buf_free(&a);
    sk_buf_free(&b);
    sk_buf_free(&id);
    sk_buf_free(&id2);
    sk_message_free(m);
    sk_message_free(m2);
}

/* Collect the boundary="..." values of a rendered message. */
static size_t boundaries(const char *s, char out[][64], size_t max)
{
    size_t n = 0;
    for (const char *p = strstr(s, "boundary=\""); p && n < max; p = strstr(p + 1, "boundary=\"")) {
        p += strlen("boundary=\"");
        const char *q = strchr(p, '"');
        assert_non_null(q);
        assert_true((size_t)(q - p) < 64);
        snprintf(out[n++], 64, "%.*s", (int)(q - p), p);
    }
    return n;
}

static void test_boundaries_unique(void **state)
{
    sk_message *m = basic_message();
    /* A body that contains what a boundary looks like. */
    assert_int_equal(sk_message_set_text(m, "--=_sk_0000\n=_sk_\n", NULL), SK_OK);
    assert_int_equal(sk_message_set_html(m, "<img src=\"cid:i@x\">\n", NULL), SK_OK);
    assert_int_equal(sk_message_add_inline_data(m, "i@x", "i.png", all_bytes, 256, NULL, NULL),
                     SK_OK);
    assert_int_equal(sk_message_attach_data(m, "a.bin", all_bytes, 256, NULL, NULL), SK_OK);
    sk_buf a = SK_BUF_INIT(BIG), b = SK_BUF_INIT(BIG);
    assert_int_equal(sk_message_render(m, &a, NULL), SK_OK);
    assert_int_equal(sk_message_render(m, &b, NULL), SK_OK);
    char ba[8][64], bb[8][64];
    size_t na = boundaries(a.data, ba, 8), nb = boundaries(b.data, bb, 8);
    assert_int_equal(na, 3); /* mixed, alternative, related */
    assert_int_equal(nb, 3);
    for (size_t i = 0; i < na; i++) {
        for (size_t j = 0; j < na; j++)
            if (i != j) assert_string_not_equal(ba[i], ba[j]);
        for (size_t j = 0; j < nb; j++) assert_string_not_equal(ba[i], bb[j]);
        /* The boundary appears in its parameter and delimiter lines only:
         * each occurrence is preceded by a quote or by CRLF "--". */
        for (const char *p = strstr(a.data, ba[i]); p; p = strstr(p + 1, ba[i]))
            assert_true(p[-1] == '"' || (p[-1] == '-' && p[-2] == '-' && p[-3] == '\n'));
    }
    assert_lines(a.data, a.len, SK_MIME_LINE_SOFT_OCTETS);
    assert_non_null(strstr(a.data, "Content-Type: multipart/mixed;"));
    assert_non_null(strstr(a.data, "Content-Type: multipart/alternative;"));
    assert_non_null(strstr(a.data, "Content-Type: multipart/related;"));
    assert_non_null(strstr(a.data, "Content-Type: image/png; name=\"i.png\"\r\n"));
    assert_non_null(strstr(a.data, "Content-Type: application/octet-stream; name=\"a.bin\"\r\n"));
    sk_buf_free(&a);
    sk_buf_free(&b);
    sk_message_free(m);
}

static void test_attach_file_and_types(void **state)
{
    static const struct {
        const char *name, *type;
    } cases[] = {
        {"report.pdf", "application/pdf"},
        {"PHOTO.JPG", "image/jpeg"},
        {"notes.txt", "text/plain"},
        {"archive.tar.gz", "application/gzip"},
        {"noext", "application/octet-stream"},
        {".hidden", "application/octet-stream"},
        {"weird.xyz", "application/octet-stream"},
    };
    for (size_t i = 0; i < SKT_N(cases); i++)
        assert_string_equal(sk_mime_type_for_filename(cases[i].name), cases[i].type);

    char *dir = skt_tmpdir("mime");
    char path[128];
    snprintf(path, sizeof path, "%s/r\xc3\xa9sum\xc3\xa9.pdf", dir);
    skt_write_file(path, all_bytes, 256);
    sk_message *m = basic_message();
    assert_int_equal(sk_message_attach_file(m, path, NULL, NULL), SK_OK);
    assert_int_equal(sk_message_attach_file(m, path, "application/x-override", NULL), SK_OK);
    sk_buf out = SK_BUF_INIT(BIG);
    assert_int_equal(sk_message_render(m, &out, NULL), SK_OK);
    assert_non_null(strstr(out.data, "Content-Type: application/pdf;"));
    assert_non_null(strstr(out.data, "Content-Type: application/x-override;"));
    assert_non_null(strstr(out.data, "filename*=UTF-8''r%C3%A9sum%C3%A9.pdf"));
    sk_buf_free(&out);
    sk_message_free(m);
    skt_rmtree(dir);
    free(dir);
}

/* ---- Prepared messages ------------------------------------------------------- */

static void test_parse_envelope(void **state)
{
    static const struct {
        const char *raw;
        sk_err err;
        const char *from, *rcpts;
        int smtputf8, eightbit;
    } cases[] = {
        {"From: A <a@x.org>\nTo: b@y.org, C <c@z.org>\nSubject: hi\n\nbody\n", SK_OK, "a@x.org",
         "b@y.org,c@z.org,", 0, 0},
        {"From: a@x.org\r\nTo: b@y.org,\r\n c@z.org\r\nCc: =?UTF-8?B?Wm/Dqw==?= <d@w.org>\r\n"
         "Bcc: e@v.org\r\n\r\nbody",
         SK_OK, "a@x.org", "b@y.org,c@z.org,d@w.org,e@v.org,", 0, 0},
        {"Sender: s@x.org\nFrom: a@x.org, b@x.org\nTo: Team: t1@y.org, t2@y.org;\n"
         "cc: T1@Y.ORG\n\n",
         SK_OK, "s@x.org", "t1@y.org,t2@y.org,T1@Y.ORG,", 0, 0},
        {"From: a@x.org\nTo: undisclosed-recipients:;\nBcc: b@y.org\n\n", SK_OK, "a@x.org",
         "b@y.org,", 0, 0},
        {"From: a@x.org\nTo: j\xc3\xb6rg@y.org\n\n", SK_OK, "a@x.org", "j\xc3\xb6rg@y.org,", 1, 0},
        {"From: a@x.org\nTo: b@y.org\n\nGr\xc3\xbc\xc3\x9f"
         "e\n",
         SK_OK, "a@x.org", "b@y.org,", 0, 1},
        {"From: a@x.org\nSubject: no recipients\n\n", SK_OK, "a@x.org", "", 0, 0},
        {"To: b@y.org\n\n", SK_ERR_SYNTAX, NULL, NULL, 0, 0},
        {"From: a@x.org\nTo: not an address\n\n", SK_ERR_SYNTAX, NULL, NULL, 0, 0},
        {" folded first\nFrom: a@x.org\n\n", SK_ERR_SYNTAX, NULL, NULL, 0, 0},
        {"From a@x.org Mon Jan  1 00:00:00 2024\nFrom: a@x.org\n\n", SK_ERR_SYNTAX, NULL, NULL, 0,
         0},
        {"From: a@x.org\nTo: Team: a@b;\nFrom: c@d.org\n\n", SK_OK, "a@x.org", "a@b,", 0, 0},
    };
    for (size_t i = 0; i < SKT_N(cases); i++) {
        sk_message_envelope env;
        sk_error err;
        sk_err e = sk_message_parse_envelope(cases[i].raw, strlen(cases[i].raw), &env, &err);
        if (e != cases[i].err)
            fail_msg("case %zu: got %s want %s (%s)", i, sk_strerror(e), sk_strerror(cases[i].err),
                     err.text);
        if (e) continue;
        assert_string_equal(env.reverse_path, cases[i].from);
        sk_buf j = SK_BUF_INIT(1024);
        for (size_t k = 0; k < env.recipient_count; k++)
            assert_int_equal(sk_buf_printf(&j, "%s,", env.recipients[k]), SK_OK);
        if (strcmp(sk_buf_cstr(&j), cases[i].rcpts) != 0)
            fail_msg("case %zu: recipients \"%s\"", i, sk_buf_cstr(&j));
        assert_int_equal(env.smtputf8, cases[i].smtputf8);
        assert_int_equal(env.eightbit, cases[i].eightbit);
        sk_buf_free(&j);
        sk_message_envelope_clear(&env);
    }
}

static void test_prepare_raw(void **state)
{
    static const struct {
        const char *in;
        sk_err err;
        const char *out;
    } cases[] = {
        {"From: a@x\nBcc: b@y,\n c@z\nTo: d@w\n\nbody\nBcc: stays in the body\n", SK_OK,
         "From: a@x\r\nTo: d@w\r\n\r\nbody\r\nBcc: stays in the body\r\n"},
        {"From: a@x\r\nBCC: b@y\r\n\r\nno final line end", SK_OK,
         "From: a@x\r\n\r\nno final line end\r\n"},
        {"From: a@x\rTo: b@y\r\rmac\r", SK_OK, "From: a@x\r\nTo: b@y\r\n\r\nmac\r\n"},
        {"From: a@x\nbcc : hidden@y\nX: 1\n\n", SK_OK, "From: a@x\r\nX: 1\r\n\r\n"},
        {"From: a@x\nBcc-Like: kept\n\n", SK_OK, "From: a@x\r\nBcc-Like: kept\r\n\r\n"},
        {"", SK_ERR_SYNTAX, NULL},
        {"not a header line\n\n", SK_ERR_SYNTAX, NULL},
        {" continuation first\n\n", SK_ERR_SYNTAX, NULL},
        {"\nbody only\n", SK_ERR_SYNTAX, NULL},
        {"Bcc: a@x\n\nbody\n", SK_ERR_SYNTAX, NULL},
        {"Bcc: a@x", SK_ERR_SYNTAX, NULL},
    };
    for (size_t i = 0; i < SKT_N(cases); i++) {
        sk_buf out = SK_BUF_INIT(BIG);
        sk_err e = sk_message_prepare_raw(cases[i].in, strlen(cases[i].in), &out, NULL);
        if (e != cases[i].err) fail_msg("case %zu: got %s", i, sk_strerror(e));
        if (!e && strcmp(sk_buf_cstr(&out), cases[i].out) != 0)
            fail_msg("case %zu: got \"%s\"", i, sk_buf_cstr(&out));
        if (e) assert_int_equal(out.len, 0);
        sk_buf_free(&out);
    }
    /* A line over 998 octets cannot be sent (RFC 5322 2.1.1). */
    sk_buf big = SK_BUF_INIT(BIG), out = SK_BUF_INIT(BIG);
    assert_int_equal(sk_buf_puts(&big, "From: a@x\n\n"), SK_OK);
    for (int i = 0; i < 999; i++) assert_int_equal(sk_buf_putc(&big, 'a'), SK_OK);
    assert_int_equal(sk_message_prepare_raw(big.data, big.len, &out, NULL), SK_ERR_SYNTAX);
    big.len--;
    assert_int_equal(sk_message_prepare_raw(big.data, big.len, &out, NULL), SK_OK);
    sk_buf_free(&big);
    sk_buf_free(&out);
}

/* ---- Allocation failures -------------------------------------------------------- */

/* One run of everything that allocates; SK_OK, or the first error. */
static sk_err compose_all(void)
{
    sk_err e = SK_OK;
    sk_buf out = SK_BUF_INIT(BIG), prepared = SK_BUF_INIT(BIG);
    sk_message_envelope env = {0}, env2 = {0};
    sk_address_list l = {0};
    sk_message *m = sk_message_new();
    if (!m) return SK_ERR_NOMEM;
#define TRY(x)                                                                                     \
    do {                                                                                           \
        if ((e = (x)) != SK_OK) goto done;                                                         \
    } while (0)
    TRY(sk_message_set_from(m, "Zo\xc3\xab <zoe@example.org>", NULL));
    TRY(sk_message_set_sender(m, "\"a b\"@example.org", NULL));
    TRY(sk_message_set_reply_to(m, "Doe, John <jd@example.org>", NULL));
    TRY(sk_message_add_to(m, "=?UTF-8?B?Wm/Dqw==?= <z@x.org>", NULL));
    TRY(sk_message_add_cc(m, "c@x.org", NULL));
    TRY(sk_message_add_bcc(m, "b@x.org", NULL));
    TRY(sk_message_set_subject(
        m,
        "Gr\xc3\xbc\xc3\x9f"
        "e und ein langer Betreff mit vielen W\xc3\xb6rtern \xf0\x9f\x8e\x89 "
        "der gefaltet werden muss",
        NULL));
    TRY(sk_message_set_text(m, "caf\xc3\xa9\n.\nFrom x\n", NULL));
    TRY(sk_message_set_html(m, "<p>\xc3\xa9</p>\n", NULL));
    TRY(sk_message_attach_data(m, "r\xc3\xa9sum\xc3\xa9 with a long name to continue.pdf",
                               all_bytes, 256, NULL, NULL));
    TRY(sk_message_add_inline_data(m, "logo@x", "logo.png", all_bytes, 16, NULL, NULL));
    TRY(sk_message_add_header(m, "X-Note", "\xc3\xa9t\xc3\xa9", NULL));
    TRY(sk_message_set_message_id(m, "id@example.org", NULL));
    TRY(sk_message_render(m, &out, NULL));
    TRY(sk_message_get_envelope(m, &env, NULL));
    TRY(sk_message_parse_envelope(out.data, out.len, &env2, NULL));
    TRY(sk_message_prepare_raw(out.data, out.len, &prepared, NULL));
    {
        static const char list[] = "T: a@b, \"c d\"@e;, =?UTF-8?Q?x?= <f@g>";
        TRY(sk_address_list_parse(list, strlen(list), &l, NULL));
    }
#undef TRY
done:
    sk_address_list_clear(&l);
    sk_message_envelope_clear(&env);
    sk_message_envelope_clear(&env2);
    sk_buf_free(&out);
    sk_buf_free(&prepared);
    sk_message_free(m);
    return e;
}

static void test_alloc_failure_sweep(void **state)
{
    long n;
    for (n = 0;; n++) {
        skt_alloc_fail_at(n);
        sk_err e = compose_all();
        skt_alloc_end();
        if (skt_alloc_live() != 0)
            fail_msg("allocation %ld failed: %ld blocks leaked", n, skt_alloc_live());
        if (!skt_alloc_failed()) {
            if (e != SK_OK) fail_msg("run without failure returned %s", sk_strerror(e));
            break;
        }
        if (e != SK_ERR_NOMEM)
            fail_msg("failing allocation %ld gave %s, not SK_ERR_NOMEM", n, sk_strerror(e));
    }
    assert_true(n > 50); /* the sweep did cover the work */
}

/* ---- The oracle: Python's email package reads what we composed ----------- */

typedef struct oaddr {
    const char *in, *name, *addr;
} oaddr;
typedef struct opart {
    const char *cid, *filename, *type_in, *type; /* type_in NULL: from the table */
    const unsigned char *data;
    size_t len;
} opart;
typedef struct ocase {
    const char *structure;
    oaddr from, sender, reply_to;
    oaddr to[3], cc[3];
    const char *bcc[2];
    const char *subject, *text, *html;
    opart atts[4], inl[2];
    const char *hname, *hvalue;
    int smtputf8;
} ocase;

static unsigned char png[300];
static unsigned char big_text_bytes[1];

#define LONG_SUBJECT                                                                               \
    "Quarterly report \xe2\x80\x94 Zusammenfassung der Ergebnisse f\xc3\xbcr das dritte "          \
    "Quartal, including a veryveryveryveryveryveryveryveryveryveryveryveryveryveryveryverylong"    \
    "word and \xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e\xe3\x81\xae\xe4\xbb\xb6\xe5\x90\x8d\xe3\x81"    \
    "\xaf\xe9\x95\xb7\xe3\x81\x84\xe3\x81\xa7\xe3\x81\x99\xe3\x81\xad and emoji \xf0\x9f\x93\x88"  \
    "\xf0\x9f\x93\x88\xf0\x9f\x93\x88 at the end of a subject that goes on and on and on"

static const ocase ocases[] = {
    {.structure = "text/plain",
     .from = {"Alice <alice@example.org>", "Alice", "alice@example.org"},
     .to = {{"bob@example.net", "", "bob@example.net"}},
     .subject = "Hello",
     .text = "Hi Bob,\n\nsee you.\n"},
    {.structure = "text/plain",
     .from = {"Zo\xc3\xab \xc3\x9cn\xc3\xaf"
              "code <zoe@example.org>",
              "Zo\xc3\xab \xc3\x9cn\xc3\xaf"
              "code",
              "zoe@example.org"},
     .to = {{"J\xc3\xb6rg M\xc3\xbcller <joerg@example.de>", "J\xc3\xb6rg M\xc3\xbcller",
             "joerg@example.de"},
            {"\"Doe, John\" <jd@example.net>", "Doe, John", "jd@example.net"},
            {"\xe5\x90\x8d\xe5\x89\x8d <name@example.jp>", "\xe5\x90\x8d\xe5\x89\x8d",
             "name@example.jp"}},
     .cc = {{"Doe, Jane <jane@example.net>", "Doe, Jane", "jane@example.net"},
            {"\"john doe\"@example.org", "", "\"john doe\"@example.org"}},
     .bcc = {"hidden@example.com"},
     .subject = "Gr\xc3\xbc\xc3\x9f"
                "e aus K\xc3\xb6ln",
     .text = "Gr\xc3\xbc\xc3\x9f"
             "e!\nTrailing space \n.leading dot\nFrom the start\n"},
    {.structure = "text/plain",
     .from = {"\xf0\x9f\xa6\x8a Fox <fox@example.org>", "\xf0\x9f\xa6\x8a Fox", "fox@example.org"},
     .to = {{"\xf0\x9f\x8e\x89 <party@example.org>", "\xf0\x9f\x8e\x89", "party@example.org"}},
     .subject = "Party \xf0\x9f\x8e\x89\xf0\x9f\x8e\x89 tonight \xf0\x9f\xa5\xb3",
     .text = "\xf0\x9f\x98\x80\n"},
    {.structure = "text/plain",
     .from = {"a@example.org", "", "a@example.org"},
     .to = {{"b@example.org", "", "b@example.org"}},
     .subject = LONG_SUBJECT,
     .text = "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e\xe3\x81\xae\xe3\x83\x86\xe3\x82\xad\xe3\x82"
             "\xb9\xe3\x83\x88\xe3\x81\xa7\xe3\x81\x99\xe3\x80\x82\n"},
    {.structure = "multipart/alternative",
     .from = {"a@example.org", "", "a@example.org"},
     .to = {{"b@example.org", "", "b@example.org"}},
     .subject = "Text and HTML",
     .text = "A line that is much longer than seventy-eight characters, so it cannot go as 7bit "
             "and is soft-broken = fine\nand a last line without a line end",
     .html = "<html><body><p>Caf\xc3\xa9 &amp; cr\xc3\xa8me</p></body></html>\n"},
    {.structure = "multipart/mixed",
     .from = {"a@example.org", "", "a@example.org"},
     .to = {{"b@example.org", "", "b@example.org"}},
     .subject = "Attachments",
     .text = "See the attachments.\n",
     .atts = {{NULL, "all-bytes.bin", NULL, "application/octet-stream", all_bytes, 256},
              {NULL, "r\xc3\xa9sum\xc3\xa9.pdf", NULL, "application/pdf", all_bytes, 100},
              {NULL,
               "\xe5\xa0\xb1\xe5\x91\x8a\xe6\x9b\xb8 with a long name that needs "
               "several RFC 2231 continuations \xe2\x80\x94 final.txt",
               NULL, "text/plain", (const unsigned char *)"hello\r\n", 7},
              {NULL, "my \"quoted\" report.csv", "text/x-custom", "text/x-custom",
               (const unsigned char *)"a,b\r\n", 5}}},
    {.structure = "multipart/mixed",
     .from = {"a@example.org", "", "a@example.org"},
     .to = {{"b@example.org", "", "b@example.org"}},
     .subject = "Inline images",
     .text = "Plain version\n",
     .html = "<p><img src=\"cid:logo@example.org\"> and <img src=\"cid:chart@example.org\"></p>\n",
     .inl = {{"logo@example.org", "logo.png", NULL, "image/png", png, sizeof png},
             {"chart@example.org", "chart.gif", "image/gif", "image/gif", all_bytes, 256}},
     .atts = {{NULL, "empty.dat", NULL, "application/octet-stream", big_text_bytes, 0}}},
    {.structure = "multipart/related",
     .from = {"a@example.org", "", "a@example.org"},
     .to = {{"b@example.org", "", "b@example.org"}},
     .subject = "HTML only with an image",
     .html = "<p><img src=\"cid:logo@example.org\"></p>\n",
     .inl = {{"logo@example.org", "logo.png", NULL, "image/png", png, sizeof png}}},
    {.structure = "text/plain",
     .from = {"Info <info@example.org>", "Info", "info@example.org"},
     .sender = {"Mailer <mailer@example.org>", "Mailer", "mailer@example.org"},
     .reply_to = {"Support Team <support@example.org>", "Support Team", "support@example.org"},
     .to = {{"b@example.org", "", "b@example.org"}},
     .subject = "Headers",
     .text = "x\n",
     .hname = "X-Campaign",
     .hvalue = "\xc3\x89t\xc3\xa9 2024 \xe2\x80\x94 summer"},
    {.structure = "text/plain",
     .smtputf8 = 1,
     .from = {"Zo\xc3\xab <zo\xc3\xab@ex\xc3\xa4mple.org>", "Zo\xc3\xab",
              "zo\xc3\xab@ex\xc3\xa4mple.org"},
     .to = {{"\xe7\x94\xa8\xe6\x88\xb7@\xe4\xbe\x8b\xe5\xad\x90.\xe5\xb9\xbf\xe5\x91\x8a", "",
             "\xe7\x94\xa8\xe6\x88\xb7@\xe4\xbe\x8b\xe5\xad\x90.\xe5\xb9\xbf\xe5\x91\x8a"}},
     .subject = "SMTPUTF8",
     .text = "UTF-8 addresses\n"},
};

static void json_str(sk_buf *b, const char *s)
{
    assert_int_equal(sk_buf_putc(b, '"'), SK_OK);
    for (; s && *s; s++) {
        unsigned char c = (unsigned char)*s;
        sk_err e;
        if (c == '"' || c == '\\')
            e = sk_buf_printf(b, "\\%c", c);
        else if (c < 0x20)
            e = sk_buf_printf(b, "\\u%04x", c);
        else
            e = sk_buf_putc(b, (char)c);
        assert_int_equal(e, SK_OK);
    }
    assert_int_equal(sk_buf_putc(b, '"'), SK_OK);
}

static void json_addr(sk_buf *b, const oaddr *a)
{
    assert_int_equal(sk_buf_putc(b, '['), SK_OK);
    json_str(b, a->name);
    assert_int_equal(sk_buf_putc(b, ','), SK_OK);
    json_str(b, a->addr);
    assert_int_equal(sk_buf_putc(b, ']'), SK_OK);
}

static void json_parts(sk_buf *b, const char *key, const opart *p, size_t max)
{
    assert_int_equal(sk_buf_printf(b, ",\"%s\":[", key), SK_OK);
    for (size_t i = 0; i < max && p[i].filename; i++) {
        sk_buf d = SK_BUF_INIT(BIG);
        assert_int_equal(sk_base64_encode(&d, p[i].data, p[i].len), SK_OK);
        assert_int_equal(sk_buf_puts(b, i ? ",{\"cid\":" : "{\"cid\":"), SK_OK);
        json_str(b, p[i].cid);
        assert_int_equal(sk_buf_puts(b, ",\"filename\":"), SK_OK);
        json_str(b, p[i].filename);
        assert_int_equal(sk_buf_puts(b, ",\"type\":"), SK_OK);
        json_str(b, p[i].type);
        assert_int_equal(sk_buf_puts(b, ",\"data\":"), SK_OK);
        json_str(b, sk_buf_cstr(&d));
        assert_int_equal(sk_buf_putc(b, '}'), SK_OK);
        sk_buf_free(&d);
    }
    assert_int_equal(sk_buf_putc(b, ']'), SK_OK);
}

static void write_file(const char *dir, const char *name, const char *data, size_t len)
{
    char path[256];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    skt_write_file(path, data, len);
}

static sk_message *compose_case(const ocase *c)
{
    sk_message *m = sk_message_new();
    sk_error err;
#define OK(x)                                                                                      \
    do {                                                                                           \
        if ((x) != SK_OK) fail_msg("%s: %s", #x, err.text);                                        \
    } while (0)
    OK(sk_message_set_from(m, c->from.in, &err));
    if (c->sender.in) OK(sk_message_set_sender(m, c->sender.in, &err));
    if (c->reply_to.in) OK(sk_message_set_reply_to(m, c->reply_to.in, &err));
    for (size_t i = 0; i < 3 && c->to[i].in; i++) OK(sk_message_add_to(m, c->to[i].in, &err));
    for (size_t i = 0; i < 3 && c->cc[i].in; i++) OK(sk_message_add_cc(m, c->cc[i].in, &err));
    for (size_t i = 0; i < 2 && c->bcc[i]; i++) OK(sk_message_add_bcc(m, c->bcc[i], &err));
    if (c->subject) OK(sk_message_set_subject(m, c->subject, &err));
    if (c->text) OK(sk_message_set_text(m, c->text, &err));
    if (c->html) OK(sk_message_set_html(m, c->html, &err));
    for (size_t i = 0; i < 4 && c->atts[i].filename; i++)
        OK(sk_message_attach_data(m, c->atts[i].filename, c->atts[i].data, c->atts[i].len,
                                  c->atts[i].type_in, &err));
    for (size_t i = 0; i < 2 && c->inl[i].filename; i++)
        OK(sk_message_add_inline_data(m, c->inl[i].cid, c->inl[i].filename, c->inl[i].data,
                                      c->inl[i].len, c->inl[i].type_in, &err));
    if (c->hname) OK(sk_message_add_header(m, c->hname, c->hvalue, &err));
#undef OK
    return m;
}

static int run_oracle(const char *dir)
{
    const char *src = getenv("SK_SOURCE_DIR");
    char script[512];
    snprintf(script, sizeof script, "%s/tests/unit/mime_oracle.py", src ? src : ".");
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        execl("/usr/bin/python3", "python3", script, dir, (char *)NULL);
        _exit(127);
    }
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
}

/* Prepared messages whose envelope Python computes as well. */
static const char *const raw_cases[] = {
    "From: \"Doe, John\" <jd@example.org>\r\n"
    "To: a@x.org,\r\n =?UTF-8?Q?J=C3=B6rg?= <j@y.org>, (c) \"john doe\"@z.org\r\n"
    "Cc: Team: t1@w.org, T <t2@w.org>;\r\n"
    "Bcc: hidden@v.org\r\n"
    "Subject: x\r\n\r\nbody\r\n",
    "Sender: s@x.org\nFrom: a@x.org, b@y.org\nTo: undisclosed-recipients:;\n"
    "Bcc: =?ISO-8859-1?Q?Andr=E9?= <andre@u.org>\n\n",
    "From: a@x.org\nTo: B@Y.org, \"q\"@r.org\nCc: B@y.ORG, Mary Smith <mary@x.net> (home)\n"
    "cc: \"a\\\"b\" <q@r.org>\n\nbody\n",
    "From: Zo\xc3\xab <zo\xc3\xab@ex\xc3\xa4mple.org>\n"
    "To: \xe7\x94\xa8\xe6\x88\xb7@\xe4\xbe\x8b\xe5\xad\x90.\xe5\xb9\xbf\xe5\x91\x8a\n\nx\n",
};

static void write_raw_cases(const char *dir)
{
    sk_buf json = SK_BUF_INIT(BIG);
    assert_int_equal(sk_buf_putc(&json, '['), SK_OK);
    for (size_t i = 0; i < SKT_N(raw_cases); i++) {
        char name[32];
        snprintf(name, sizeof name, "raw%zu.eml", i);
        write_file(dir, name, raw_cases[i], strlen(raw_cases[i]));
        sk_message_envelope env;
        sk_error err;
        if (sk_message_parse_envelope(raw_cases[i], strlen(raw_cases[i]), &env, &err) != SK_OK)
            fail_msg("raw case %zu: %s", i, err.text);
        assert_int_equal(
            sk_buf_printf(&json, "%s{\"file\":\"%s\",\"reverse_path\":", i ? "," : "", name),
            SK_OK);
        json_str(&json, env.reverse_path);
        assert_int_equal(sk_buf_puts(&json, ",\"recipients\":["), SK_OK);
        for (size_t k = 0; k < env.recipient_count; k++) {
            if (k) assert_int_equal(sk_buf_putc(&json, ','), SK_OK);
            json_str(&json, env.recipients[k]);
        }
        assert_int_equal(sk_buf_puts(&json, "]}"), SK_OK);
        sk_message_envelope_clear(&env);
    }
    assert_int_equal(sk_buf_putc(&json, ']'), SK_OK);
    write_file(dir, "envelopes.json", json.data, json.len);
    sk_buf_free(&json);
}

static void test_oracle_python(void **state)
{
    char *dir = skt_tmpdir("mime-oracle");
    sk_buf json = SK_BUF_INIT(BIG);
    assert_int_equal(sk_buf_putc(&json, '['), SK_OK);
    for (size_t i = 0; i < SKT_N(ocases); i++) {
        const ocase *c = &ocases[i];
        sk_message *m = compose_case(c);
        assert_int_equal(sk_message_needs_smtputf8(m), c->smtputf8);
        sk_buf out = SK_BUF_INIT(BIG);
        sk_error err;
        if (sk_message_render(m, &out, &err) != SK_OK) fail_msg("case %zu: %s", i, err.text);
        char name[32];
        snprintf(name, sizeof name, "case%zu.eml", i);
        write_file(dir, name, out.data, out.len);

        if (i) assert_int_equal(sk_buf_putc(&json, ','), SK_OK);
        assert_int_equal(sk_buf_printf(&json, "{\"file\":\"%s\",\"smtputf8\":%s,\"structure\":",
                                       name, c->smtputf8 ? "true" : "false"),
                         SK_OK);
        json_str(&json, c->structure);
        assert_int_equal(sk_buf_puts(&json, ",\"from\":"), SK_OK);
        json_addr(&json, &c->from);
        if (c->sender.in) {
            assert_int_equal(sk_buf_puts(&json, ",\"sender\":"), SK_OK);
            json_addr(&json, &c->sender);
        }
        if (c->reply_to.in) {
            assert_int_equal(sk_buf_puts(&json, ",\"reply_to\":"), SK_OK);
            json_addr(&json, &c->reply_to);
        }
        const oaddr *lists[] = {c->to, c->cc};
        const char *keys[] = {"to", "cc"};
        for (size_t k = 0; k < 2; k++) {
            assert_int_equal(sk_buf_printf(&json, ",\"%s\":[", keys[k]), SK_OK);
            for (size_t j = 0; j < 3 && lists[k][j].in; j++) {
                if (j) assert_int_equal(sk_buf_putc(&json, ','), SK_OK);
                json_addr(&json, &lists[k][j]);
            }
            assert_int_equal(sk_buf_putc(&json, ']'), SK_OK);
        }
        assert_int_equal(sk_buf_puts(&json, ",\"bcc\":["), SK_OK);
        for (size_t j = 0; j < 2 && c->bcc[j]; j++) {
            if (j) assert_int_equal(sk_buf_putc(&json, ','), SK_OK);
            json_str(&json, c->bcc[j]);
        }
        assert_int_equal(sk_buf_puts(&json, "],\"subject\":"), SK_OK);
        json_str(&json, c->subject);
        if (c->text) {
            assert_int_equal(sk_buf_puts(&json, ",\"text\":"), SK_OK);
            json_str(&json, c->text);
        }
        if (c->html) {
            assert_int_equal(sk_buf_puts(&json, ",\"html\":"), SK_OK);
            json_str(&json, c->html);
        }
        json_parts(&json, "attachments", c->atts, 4);
        json_parts(&json, "inline", c->inl, 2);
        assert_int_equal(sk_buf_puts(&json, ",\"headers\":{"), SK_OK);
        if (c->hname) {
            json_str(&json, c->hname);
            assert_int_equal(sk_buf_putc(&json, ':'), SK_OK);
            json_str(&json, c->hvalue);
        }
        assert_int_equal(sk_buf_puts(&json, "}}"), SK_OK);
        sk_buf_free(&out);
        sk_message_free(m);
    }
    assert_int_equal(sk_buf_putc(&json, ']'), SK_OK);
    write_file(dir, "expected.json", json.data, json.len);
    sk_buf_free(&json);
    write_raw_cases(dir);
    int rc = run_oracle(dir);
    if (rc != 0) fail_msg("mime_oracle.py exited with %d (messages kept in %s)", rc, dir);
    skt_rmtree(dir); /* kept on failure, for a look */
    free(dir);
}

int main(void)
{
    for (int i = 0; i < 256; i++) all_bytes[i] = (unsigned char)i;
    for (size_t i = 0; i < sizeof png; i++) png[i] = (unsigned char)(i * 31 + 7);
    memcpy(png, "\x89PNG\r\n\x1a\n", 8);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_qp_cases),
        cmocka_unit_test(test_qp_all_octets),
        cmocka_unit_test(test_base64_lines),
        cmocka_unit_test(test_text_encoding_choice),
        cmocka_unit_test(test_header_exact),
        cmocka_unit_test(test_header_folding),
        cmocka_unit_test(test_phrase),
        cmocka_unit_test(test_decode_words),
        cmocka_unit_test(test_mailbox_parse),
        cmocka_unit_test(test_address_errors),
        cmocka_unit_test(test_address_list_parse),
        cmocka_unit_test(test_address_roundtrip),
        cmocka_unit_test(test_parser_noise),
        cmocka_unit_test(test_injection_refused),
        cmocka_unit_test(test_setter_errors),
        cmocka_unit_test(test_custom_headers),
        cmocka_unit_test(test_bcc_and_envelope),
        cmocka_unit_test(test_message_id_and_date),
        cmocka_unit_test(test_boundaries_unique),
        cmocka_unit_test(test_attach_file_and_types),
        cmocka_unit_test(test_parse_envelope),
        cmocka_unit_test(test_prepare_raw),
        cmocka_unit_test(test_alloc_failure_sweep),
        cmocka_unit_test(test_oracle_python),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
