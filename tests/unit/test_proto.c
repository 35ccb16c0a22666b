/* Unit tests for src/proto server-side parsing: verbs, paths, MAIL and RCPT
 * parameters, xtext, HELO arguments. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "sktest.h"

#include <smtpkit/smtpkit.h>
#include <string.h>

static void test_cmd_parse(void **state)
{
    static const struct {
        const char *line;
        sk_cmd_verb verb;
        const char *args; /* NULL: MAIL/RCPT without FROM:/TO: */
    } cases[] = {
        {"EHLO mx.example.org", SK_CMD_EHLO, "mx.example.org"},
        {"ehlo x", SK_CMD_EHLO, "x"},
        {"HeLo x", SK_CMD_HELO, "x"},
        {"MAIL FROM:<a@b.example>", SK_CMD_MAIL, "<a@b.example>"},
        {"mail from: <a@b.example> SIZE=10", SK_CMD_MAIL, "<a@b.example> SIZE=10"},
        {"MAIL TO:<a@b.example>", SK_CMD_MAIL, NULL},
        {"MAIL", SK_CMD_MAIL, NULL},
        {"RCPT TO:<postmaster>", SK_CMD_RCPT, "<postmaster>"},
        {"RCPT FROM:<a@b>", SK_CMD_RCPT, NULL},
        {"DATA", SK_CMD_DATA, ""},
        {"BDAT 10 LAST", SK_CMD_BDAT, "10 LAST"},
        {"QUIT", SK_CMD_QUIT, ""},
        {"STARTTLS", SK_CMD_STARTTLS, ""},
        {"AUTH PLAIN AGFiAGM=", SK_CMD_AUTH, "PLAIN AGFiAGM="},
        {"NOOP anything", SK_CMD_NOOP, "anything"},
        {"MAILX FROM:<a@b>", SK_CMD_UNKNOWN, ""},
        {"GET / HTTP/1.1", SK_CMD_UNKNOWN, ""},
        {"", SK_CMD_UNKNOWN, ""},
        {"QUIT:", SK_CMD_UNKNOWN, ""},
    };
    for (size_t i = 0; i < SKT_N(cases); i++) {
        const char *args = "unset";
        sk_cmd_verb v = sk_cmd_parse(cases[i].line, &args);
        assert_int_equal(v, cases[i].verb);
        if (cases[i].args)
            assert_string_equal(args, cases[i].args);
        else
            assert_null(args);
    }
    assert_string_equal(sk_cmd_name(SK_CMD_STARTTLS), "STARTTLS");
    assert_string_equal(sk_cmd_name(SK_CMD_UNKNOWN), "");
}

static void test_path_parse(void **state)
{
    static const struct {
        const char *in;
        unsigned flags;
        sk_err err;
        const char *mailbox, *local, *domain, *rest;
        int utf8;
    } cases[] = {
        {"<a@b.example>", 0, SK_OK, "a@b.example", "a", "b.example", "", 0},
        {"<a.b+tag@sub.b-c.example> X", 0, SK_OK, "a.b+tag@sub.b-c.example", "a.b+tag",
         "sub.b-c.example", " X", 0},
        {"<\"john doe\"@b.example>", 0, SK_OK, "\"john doe\"@b.example", "\"john doe\"",
         "b.example", "", 0},
        {"<\"a\\\"b\"@x.example>", 0, SK_OK, "\"a\\\"b\"@x.example", "\"a\\\"b\"", "x.example", "",
         0},
        /* RFC 5321 C: source routes are accepted and dropped. */
        {"<@relay.example,@r2.example:u@d.example>", 0, SK_OK, "u@d.example", "u", "d.example", "",
         0},
        /* A UTF-8 domain in the dropped route does not make the path UTF-8. */
        {"<@\xc2\xa4.example:S@g.example>", 0, SK_OK, "S@g.example", "S", "g.example", "", 0},
        {"<u@[192.0.2.1]>", 0, SK_OK, "u@[192.0.2.1]", "u", "[192.0.2.1]", "", 0},
        {"<u@[IPv6:2001:db8::1]>", 0, SK_OK, "u@[IPv6:2001:db8::1]", "u", "[IPv6:2001:db8::1]", "",
         0},
        {"<>", SK_PATH_NULL_OK, SK_OK, "", "", "", "", 0},
        {"<>", 0, SK_ERR_SYNTAX, NULL, NULL, NULL, NULL, 0},
        {"<Postmaster>", SK_PATH_POSTMASTER_OK, SK_OK, "Postmaster", "Postmaster", "", "", 0},
        {"<postmaster>", 0, SK_ERR_SYNTAX, NULL, NULL, NULL, NULL, 0},
        /* RFC 6531 3.3: UTF-8 only when SMTPUTF8 is in effect. */
        {"<j\xc3\xb6rg@m\xc3\xbcller.example>", SK_PATH_UTF8_OK, SK_OK,
         "j\xc3\xb6rg@m\xc3\xbcller.example", "j\xc3\xb6rg", "m\xc3\xbcller.example", "", 1},
        {"<j\xc3\xb6rg@example.org>", 0, SK_ERR_UNSUPPORTED, NULL, NULL, NULL, NULL, 0},
        {"<j\xc3@example.org>", SK_PATH_UTF8_OK, SK_ERR_SYNTAX, NULL, NULL, NULL, NULL, 0},
        {"<a@b", 0, SK_ERR_SYNTAX, NULL, NULL, NULL, NULL, 0},
        {"a@b.example", 0, SK_ERR_SYNTAX, NULL, NULL, NULL, NULL, 0},
        {"<a@>", 0, SK_ERR_SYNTAX, NULL, NULL, NULL, NULL, 0},
        {"<@b.example>", 0, SK_ERR_SYNTAX, NULL, NULL, NULL, NULL, 0},
        {"<a..b@c.example>", 0, SK_ERR_SYNTAX, NULL, NULL, NULL, NULL, 0},
        {"<.a@c.example>", 0, SK_ERR_SYNTAX, NULL, NULL, NULL, NULL, 0},
        {"<a b@c.example>", 0, SK_ERR_SYNTAX, NULL, NULL, NULL, NULL, 0},
        {"<a@-c.example>", 0, SK_ERR_SYNTAX, NULL, NULL, NULL, NULL, 0},
        {"<a@c-.example>", 0, SK_ERR_SYNTAX, NULL, NULL, NULL, NULL, 0},
        {"<a@c..example>", 0, SK_ERR_SYNTAX, NULL, NULL, NULL, NULL, 0},
        {"<a@[300.1.1.1]>", 0, SK_ERR_SYNTAX, NULL, NULL, NULL, NULL, 0},
        {"<a@b.example\r>", 0, SK_ERR_SYNTAX, NULL, NULL, NULL, NULL, 0},
        {"<\"unterminated@b.example>", 0, SK_ERR_SYNTAX, NULL, NULL, NULL, NULL, 0},
        {"<a@b.example", 0, SK_ERR_SYNTAX, NULL, NULL, NULL, NULL, 0},
        /* RFC 5321 4.5.3.1.1: local part at most 64 octets. */
        {"<aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa@b.example>", 0,
         SK_ERR_TOO_LONG, NULL, NULL, NULL, NULL, 0},
        {"<aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa@b.example>", 0, SK_OK,
         "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa@b.example",
         "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "b.example", "", 0},
    };
    for (size_t i = 0; i < SKT_N(cases); i++) {
        sk_path p;
        const char *end = NULL;
        sk_err e = sk_path_parse(cases[i].in, cases[i].flags, &p, &end);
        if (e != cases[i].err)
            fail_msg("case %zu (%s): got %d want %d", i, cases[i].in, e, cases[i].err);
        if (e) continue;
        assert_string_equal(p.mailbox, cases[i].mailbox);
        assert_string_equal(p.local, cases[i].local);
        assert_string_equal(p.domain, cases[i].domain);
        assert_string_equal(end, cases[i].rest);
        assert_int_equal(p.utf8, cases[i].utf8);
    }
}

static void test_label_too_long(void **state)
{
    char in[128] = "<a@";
    memset(in + 3, 'x', 64);
    strcpy(in + 67, ".example>");
    sk_path p;
    const char *end;
    assert_int_equal(sk_path_parse(in, 0, &p, &end), SK_ERR_SYNTAX);
    memmove(in + 3, in + 4, strlen(in + 4) + 1); /* a 63-octet label is fine */
    assert_int_equal(sk_path_parse(in, 0, &p, &end), SK_OK);
}

#define ALL_EXT                                                                                    \
    (SK_EXT_SIZE | SK_EXT_8BITMIME | SK_EXT_SMTPUTF8 | SK_EXT_DSN | SK_EXT_MT_PRIORITY |           \
     SK_EXT_AUTH)

static void test_parse_mail(void **state)
{
    static const struct {
        const char *args;
        unsigned ext;
        int code; /* 0: accepted */
        const char *enh;
    } cases[] = {
        {"<a@b.example>", ALL_EXT, 0, NULL},
        {"<>", ALL_EXT, 0, NULL},
        {"<a@b.example> SIZE=1000 BODY=8BITMIME", ALL_EXT, 0, NULL},
        {"<a@b.example> size=1000 body=7bit", ALL_EXT, 0, NULL},
        {"<a@b.example> RET=HDRS ENVID=QQ314159", ALL_EXT, 0, NULL},
        {"<a@b.example> MT-PRIORITY=-3", ALL_EXT, 0, NULL},
        {"<a@b.example> AUTH=<>", ALL_EXT, 0, NULL},
        {"<a@b.example> AUTH=e+3Dmc2@example.com", ALL_EXT, 0, NULL},
        {"<j\xc3\xb6rg@example.org> SMTPUTF8", ALL_EXT, 0, NULL},
        {"<j\xc3\xb6rg@example.org>", ALL_EXT, 553, "5.6.7"},
        {"<j\xc3\xb6rg@example.org> SMTPUTF8", ALL_EXT & ~SK_EXT_SMTPUTF8, 553, "5.6.7"},
        {"a@b.example", ALL_EXT, 501, "5.5.4"},
        {NULL, ALL_EXT, 501, "5.5.4"},
        {"<a@@b.example>", ALL_EXT, 553, "5.1.7"},
        {"<a@b.example> FOO=BAR", ALL_EXT, 555, "5.5.4"},
        {"<a@b.example> SIZE=10", 0, 555, "5.5.4"}, /* HELO session: no extensions */
        {"<a@b.example> SIZE=abc", ALL_EXT, 501, "5.5.4"},
        {"<a@b.example> SIZE=1 SIZE=2", ALL_EXT, 501, "5.5.4"},
        {"<a@b.example> BODY=BINARYMIME", ALL_EXT, 501, "5.5.4"},
        {"<a@b.example> RET=ALL", ALL_EXT, 501, "5.5.4"},
        {"<a@b.example> ENVID=a=b", ALL_EXT, 501, "5.5.4"},
        {"<a@b.example> MT-PRIORITY=10", ALL_EXT, 501, "5.5.4"},
        {"<a@b.example> MT-PRIORITY=", ALL_EXT, 501, "5.5.4"},
        {"<a@b.example> SMTPUTF8=yes", ALL_EXT, 501, "5.5.4"},
        {"<a@b.example>SIZE=1", ALL_EXT, 501, "5.5.4"},
    };
    for (size_t i = 0; i < SKT_N(cases); i++) {
        sk_path from;
        sk_mail_params mp;
        sk_reply why = {0};
        sk_err e = sk_proto_parse_mail(cases[i].args, cases[i].ext, &from, &mp, &why);
        if (!cases[i].code) {
            if (e != SK_OK) fail_msg("case %zu: %d %s %s", i, why.code, why.enhanced, why.text);
            continue;
        }
        if (e == SK_OK) fail_msg("case %zu (%s) accepted", i, cases[i].args);
        assert_int_equal(why.code, cases[i].code);
        assert_string_equal(why.enhanced, cases[i].enh);
    }
}

static void test_mail_values(void **state)
{
    sk_path from;
    sk_mail_params mp;
    sk_reply why;
    assert_int_equal(sk_proto_parse_mail("<a@b.example> SIZE=99999999999999999999 BODY=8BITMIME "
                                         "SMTPUTF8 RET=FULL ENVID=x+2By MT-PRIORITY=+4 AUTH=<>",
                                         ALL_EXT, &from, &mp, &why),
                     SK_OK);
    assert_true(mp.has_size);
    assert_true(mp.size == UINT64_MAX); /* overflow reads as "too big" */
    assert_int_equal(mp.body, SK_BODY_8BITMIME);
    assert_true(mp.smtputf8);
    assert_int_equal(mp.ret, SK_DSN_RET_FULL);
    assert_string_equal(mp.envid, "x+2By");
    assert_true(mp.has_priority);
    assert_int_equal(mp.priority, 4);
    assert_string_equal(mp.auth, "<>");
    assert_string_equal(from.mailbox, "a@b.example");
}

static void test_parse_rcpt(void **state)
{
    static const struct {
        const char *args;
        int smtputf8;
        int code;
        unsigned notify;
        const char *orcpt;
    } cases[] = {
        {"<b@c.example>", 0, 0, 0, ""},
        {"<postmaster>", 0, 0, 0, ""},
        {"<b@c.example> NOTIFY=SUCCESS,FAILURE", 0, 0,
         SK_DSN_NOTIFY_SUCCESS | SK_DSN_NOTIFY_FAILURE, ""},
        {"<b@c.example> NOTIFY=never", 0, 0, SK_DSN_NOTIFY_NEVER, ""},
        {"<b@c.example> ORCPT=rfc822;b+40c.example", 0, 0, 0, "rfc822;b+40c.example"},
        {"<b@c.example> NOTIFY=NEVER,DELAY", 0, 501, 0, NULL},
        {"<b@c.example> NOTIFY=SUCCESS,", 0, 501, 0, NULL},
        {"<b@c.example> NOTIFY=SUCCESS,SUCCESS", 0, 501, 0, NULL},
        {"<b@c.example> NOTIFY=SOMETIMES", 0, 501, 0, NULL},
        {"<b@c.example> ORCPT=b@c.example", 0, 501, 0, NULL},
        {"<b@c.example> ORCPT=rfc822;", 0, 501, 0, NULL},
        /* RFC 6533 3: the "utf-8" type; UTF-8 as it is only with SMTPUTF8. */
        {"<b@c.example> ORCPT=utf-8;j\\x{F6}rg@c.example", 0, 0, 0, "utf-8;j\\x{F6}rg@c.example"},
        {"<b@c.example> ORCPT=UTF-8;j\\x{f6}rg@c.example", 0, 0, 0, "UTF-8;j\\x{f6}rg@c.example"},
        {"<b@c.example> ORCPT=utf-8;j\xc3\xb6rg@c.example", 1, 0, 0, "utf-8;j\xc3\xb6rg@c.example"},
        {"<b@c.example> ORCPT=utf-8;j\xc3\xb6rg@c.example", 0, 501, 0, NULL},
        {"<b@c.example> ORCPT=rfc822;j\xc3\xb6rg@c.example", 1, 501, 0, NULL},
        {"<b@c.example> ORCPT=utf-8;a+2Bb@c.example", 0, 501, 0, NULL},
        {"<b@c.example> ORCPT=utf-8;a\\x{0D}\\x{0A}b@c.example", 1, 501, 0, NULL},
        {"<b@c.example> ORCPT=utf-8;a\\x{09}b@c.example", 1, 501, 0, NULL},
        {"<b@c.example> ORCPT=utf-8;\\x{D800}@c.example", 1, 501, 0, NULL},
        {"<b@c.example> ORCPT=x-foo;a+2Bb", 0, 0, 0, "x-foo;a+2Bb"},
        {"<b@c.example> SIZE=10", 0, 555, 0, NULL},
        {"<>", 0, 553, 0, NULL},
        {"<b@c..example>", 0, 553, 0, NULL},
        {"<\xc3\xa9@c.example>", 0, 553, 0, NULL},
        {"<\xc3\xa9@c.example>", 1, 0, 0, ""},
        {"b@c.example", 0, 501, 0, NULL},
    };
    for (size_t i = 0; i < SKT_N(cases); i++) {
        sk_path to;
        sk_rcpt_params rp;
        sk_reply why = {0};
        unsigned ext = SK_EXT_DSN | SK_EXT_SMTPUTF8;
        sk_err e = sk_proto_parse_rcpt(cases[i].args, ext, cases[i].smtputf8, &to, &rp, &why);
        if (!cases[i].code) {
            if (e != SK_OK) fail_msg("case %zu: %d %s %s", i, why.code, why.enhanced, why.text);
            assert_int_equal(rp.notify, cases[i].notify);
            assert_string_equal(rp.orcpt, cases[i].orcpt);
            continue;
        }
        if (e == SK_OK) fail_msg("case %zu (%s) accepted", i, cases[i].args);
        assert_int_equal(why.code, cases[i].code);
    }
}

/* RFC 6533 3 utf-8-addr-xtext / utf-8-addr-unitext: encode, decode back,
 * and malformed values refused. */
static void test_utf8_addr(void **state)
{
    (void)state;
    static const struct {
        const char *addr, *xtext, *unitext;
    } rt[] = {
        {"a@b.example", "a@b.example", "a@b.example"},
        {"j\xc3\xb6rg@b.example", "j\\x{F6}rg@b.example", "j\xc3\xb6rg@b.example"},
        {"a+b=c\\d e@b.example", "a\\x{2B}b\\x{3D}c\\x{5C}d\\x{20}e@b.example",
         "a\\x{2B}b\\x{3D}c\\x{5C}d\\x{20}e@b.example"},
        {"\xc4\x80@b", "\\x{100}@b", "\xc4\x80@b"},
        {"\xe0\xa0\x80@b", "\\x{800}@b", "\xe0\xa0\x80@b"},
        {"\xe7\x94\xa8@b", "\\x{7528}@b", "\xe7\x94\xa8@b"},
        {"\xf0\x9f\x98\x80@b", "\\x{1F600}@b", "\xf0\x9f\x98\x80@b"},
        {"\xf4\x8f\xbf\xbf@b", "\\x{10FFFF}@b", "\xf4\x8f\xbf\xbf@b"},
        {"\xc2\x85@b", "\\x{85}@b", "\xc2\x85@b"},
    };
    for (size_t i = 0; i < SKT_N(rt); i++) {
        for (int form = 0; form < 2; form++) {
            const char *want = form ? rt[i].unitext : rt[i].xtext;
            sk_buf b = SK_BUF_INIT(1000);
            if (sk_utf8_addr_encode(rt[i].addr, (sk_utf8_addr_form)form, &b) != SK_OK)
                fail_msg("case %zu form %d: not encoded", i, form);
            assert_string_equal(sk_buf_cstr(&b), want);
            char back[200];
            assert_int_equal(sk_utf8_addr_decode(b.data, b.len, form, back, sizeof back), SK_OK);
            assert_string_equal(back, rt[i].addr);
            sk_buf_free(&b);
        }
        /* The xtext form is 7-bit; the unitext form needs allow_utf8. */
        char back[200];
        sk_err e = sk_utf8_addr_decode(rt[i].unitext, strlen(rt[i].unitext), 0, back, sizeof back);
        assert_int_equal(e, strcmp(rt[i].unitext, rt[i].xtext) &&
                                    strchr(rt[i].addr, '\\') == NULL &&
                                    strchr(rt[i].addr, '+') == NULL
                                ? SK_ERR_SYNTAX
                                : SK_OK);
    }
    /* Addresses no form can carry. */
    static const char *const bad_addr[] = {"",           "a\r\nb@c",          "a\tb@c",
                                           "a\x7f@c",    "a\xc3@c",           "\xed\xa0\x80@c",
                                           "\xc0\xaf@c", "\xf4\x90\x80\x80@c"};
    for (size_t i = 0; i < SKT_N(bad_addr); i++) {
        sk_buf b = SK_BUF_INIT(1000);
        assert_int_equal(sk_buf_puts(&b, "keep"), SK_OK);
        if (sk_utf8_addr_encode(bad_addr[i], SK_UTF8_ADDR_XTEXT, &b) != SK_ERR_SYNTAX)
            fail_msg("bad address %zu encoded", i);
        assert_string_equal(sk_buf_cstr(&b), "keep"); /* out unchanged */
        sk_buf_free(&b);
    }
    /* Malformed encodings (allow_utf8 on, so only the escapes are at fault). */
    static const char *const bad[] = {
        "",
        "a+2Bb",
        "a=b",
        "a b",
        "a\\b",
        "a\\x{",
        "a\\x{}",
        "a\\x{F}",
        "a\\X{F6}",
        "a\\x(F6)",
        "a\\x{F6",
        "a\\x{41}",
        "a\\x{7E}",
        "a\\x{00}",
        "a\\x{0A}",
        "a\\x{0D}",
        "a\\x{1F}",
        "a\\x{09}",
        "a\\x{7F}",
        "a\\x{00F6}",
        "a\\x{0100}",
        "a\\x{0FFF}",
        "a\\x{D800}",
        "a\\x{DFFF}",
        "a\\x{0FFFF}",
        "a\\x{110000}",
        "a\\x{1000000}",
        "a\\x{GG}",
        "a\xc3",
        "a\xc3\x28",
        "a\xe0\x80\x80",
        "a\xed\xa0\x80",
    };
    for (size_t i = 0; i < SKT_N(bad); i++) {
        char out[64];
        if (sk_utf8_addr_decode(bad[i], strlen(bad[i]), 1, out, sizeof out) != SK_ERR_SYNTAX)
            fail_msg("bad encoding %zu (%s) accepted", i, bad[i]);
    }
    /* Accepted spellings: lower-case hex (RFC 5234 2.3), all digit counts. */
    static const struct {
        const char *in, *out;
    } ok[] = {{"\\x{f6}", "\xc3\xb6"},
              {"\\x{5C}", "\\"},
              {"\\x{2b}", "+"},
              {"\\x{20}", " "},
              {"\\x{3D}", "="},
              {"\\x{FFF}", "\xe0\xbf\xbf"},
              {"\\x{D7FF}", "\xed\x9f\xbf"},
              {"\\x{E000}", "\xee\x80\x80"},
              {"\\x{10000}", "\xf0\x90\x80\x80"},
              {"\\x{100000}", "\xf4\x80\x80\x80"}};
    for (size_t i = 0; i < SKT_N(ok); i++) {
        char out[64];
        if (sk_utf8_addr_decode(ok[i].in, strlen(ok[i].in), 0, out, sizeof out) != SK_OK)
            fail_msg("good encoding %zu (%s) refused", i, ok[i].in);
        assert_string_equal(out, ok[i].out);
    }
    char small[4];
    assert_int_equal(sk_utf8_addr_decode("\\x{1F600}", 9, 0, small, sizeof small), SK_ERR_TOO_LONG);
}

/* ORCPT values: checked, written for an address, and passed on. */
static void test_orcpt_values(void **state)
{
    (void)state;
    static const struct {
        const char *v;
        int utf8, ok;
    } valid[] = {
        {"rfc822;a+2Bb@c", 0, 1},
        {"rfc822;a+2Bb@c", 1, 1},
        {"utf-8;j\\x{F6}rg@c", 0, 1},
        {"utf-8;j\xc3\xb6rg@c", 1, 1},
        {"utf-8;j\xc3\xb6rg@c", 0, 0},
        {"rfc822;j\xc3\xb6rg@c", 1, 0},
        {"utf-8;a+2Bb@c", 1, 0},
        {"x400;a+2Bb", 0, 1},
        {"rfc 822;a", 0, 0},
        {";a@c", 0, 0},
        {"rfc822;", 0, 0},
        {"rfc822", 0, 0},
        {"utf-8;", 1, 0},
    };
    for (size_t i = 0; i < SKT_N(valid); i++)
        if (sk_orcpt_valid(valid[i].v, strlen(valid[i].v), valid[i].utf8) != valid[i].ok)
            fail_msg("valid case %zu (%s)", i, valid[i].v);
    static const struct {
        const char *addr;
        int utf8;
        const char *want; /* NULL: SK_ERR_TOO_LONG */
    } fmt[] = {
        {"a+b@c", 0, "rfc822;a+2Bb@c"},
        {"j\xc3\xb6rg@c", 1, "utf-8;j\xc3\xb6rg@c"},
        {"j\xc3\xb6rg@c", 0, "utf-8;j\\x{F6}rg@c"},
        {"j\xc3\xb6rg+1@c", 1, "utf-8;j\\x{F6}rg\\x{2B}1@c"},
    };
    for (size_t i = 0; i < SKT_N(fmt); i++) {
        sk_buf b = SK_BUF_INIT(1000);
        assert_int_equal(sk_orcpt_format(fmt[i].addr, fmt[i].utf8, &b), SK_OK);
        assert_string_equal(sk_buf_cstr(&b), fmt[i].want);
        /* What we write, we accept. */
        assert_true(sk_orcpt_valid(b.data, b.len, fmt[i].utf8));
        sk_buf_free(&b);
    }
    /* Over 500 octets once encoded: refused, nothing written. 200 "ö"
     * are 400 octets as UTF-8 but 1200 as \x{F6}. */
    char big[512] = "";
    for (int i = 0; i < 200; i++) strcat(big, "\xc3\xb6");
    strcat(big, "@c");
    sk_buf b = SK_BUF_INIT(4000);
    assert_int_equal(sk_orcpt_format(big, 1, &b), SK_OK);
    sk_buf_reset(&b);
    assert_int_equal(sk_orcpt_format(big, 0, &b), SK_ERR_TOO_LONG);
    assert_int_equal(b.len, 0);
    char pass_big[520];
    strcpy(pass_big, "utf-8;");
    strcat(pass_big, big);
    assert_int_equal(sk_orcpt_pass(pass_big, 1, &b), SK_OK);
    assert_string_equal(sk_buf_cstr(&b), pass_big);
    sk_buf_reset(&b);
    assert_int_equal(sk_orcpt_pass(pass_big, 0, &b), SK_ERR_TOO_LONG);
    assert_int_equal(b.len, 0);
    sk_buf_free(&b);
    static const struct {
        const char *v;
        int utf8;
        const char *want; /* NULL: SK_ERR_SYNTAX */
    } pass[] = {
        {"rfc822;a+2Bb@c", 0, "rfc822;a+2Bb@c"},
        {"utf-8;j\\x{F6}rg@c", 1, "utf-8;j\\x{F6}rg@c"},
        {"UTF-8;j\\x{f6}rg@c", 0, "UTF-8;j\\x{f6}rg@c"},
        {"utf-8;j\xc3\xb6rg@c", 1, "utf-8;j\xc3\xb6rg@c"},
        {"utf-8;j\xc3\xb6rg@c", 0, "utf-8;j\\x{F6}rg@c"},
        {"utf-8;j\xc3\xb6rg\\x{2b}@c", 0, "utf-8;j\\x{F6}rg\\x{2B}@c"},
        {"utf-8;a+2Bb@c", 1, NULL},
        {"rfc822;j\xc3\xb6rg@c", 1, NULL},
        {"nothing", 1, NULL},
    };
    for (size_t i = 0; i < SKT_N(pass); i++) {
        sk_buf p = SK_BUF_INIT(1000);
        sk_err e = sk_orcpt_pass(pass[i].v, pass[i].utf8, &p);
        if (!pass[i].want) {
            assert_int_equal(e, SK_ERR_SYNTAX);
        } else {
            if (e) fail_msg("pass case %zu: %d", i, e);
            assert_string_equal(sk_buf_cstr(&p), pass[i].want);
        }
        sk_buf_free(&p);
    }
}

/* RFC 3461 4 xtext. A row with plain is a round trip: plain encodes to
 * xtext, which is valid and decodes back; a row without is text that is
 * not valid xtext, which decodes to want (lenient: lower-case digits) or
 * fails with err. */
static void test_xtext(void **state)
{
    static const struct {
        const char *plain, *xtext, *want;
        sk_err err;
    } cases[] = {
        {"bob@example.net", "bob@example.net", NULL, SK_OK},
        {"", "", NULL, SK_OK},
        {"a+b@c", "a+2Bb@c", NULL, SK_OK},
        {"x=y z", "x+3Dy+20z", NULL, SK_OK},
        {"a+b=c d\x01\xc3\xa9", "a+2Bb+3Dc+20d+01+C3+A9", NULL, SK_OK},
        {"~!\x7f\t", "~!+7F+09", NULL, SK_OK},
        {NULL, "a+2bc", "a+c", SK_OK}, /* lower-case digits: not xtext, decoded all the same */
        {NULL, "a+2", NULL, SK_ERR_SYNTAX},
        {NULL, "a+", NULL, SK_ERR_SYNTAX},
        {NULL, "bad+ZZ", NULL, SK_ERR_SYNTAX},
        {NULL, "a+G0", NULL, SK_ERR_SYNTAX},
        {NULL, "a=b", "a=b", SK_OK}, /* "=" and SP are not xchars; the decoder keeps them */
        {NULL, "a b", "a b", SK_OK},
    };
    for (size_t i = 0; i < SKT_N(cases); i++) {
        const char *x = cases[i].xtext;
        if (sk_xtext_valid(x, strlen(x)) != (cases[i].plain != NULL))
            fail_msg("valid, case %zu", i);
        char out[64];
        sk_err e = sk_xtext_decode(x, out, sizeof out);
        if (e != cases[i].err) fail_msg("decode, case %zu: %s", i, sk_strerror(e));
        const char *want = cases[i].plain ? cases[i].plain : cases[i].want;
        if (want) assert_string_equal(out, want);
        if (!cases[i].plain) continue;
        sk_buf b = SK_BUF_INIT(64);
        assert_int_equal(sk_xtext_encode(cases[i].plain, &b), SK_OK);
        assert_string_equal(sk_buf_cstr(&b), x);
        sk_buf_free(&b);
    }
    /* Bounds: the NUL needs room; an encoding past the buffer's maximum. */
    char small[4];
    assert_int_equal(sk_xtext_decode("abc", small, sizeof small), SK_OK);
    assert_int_equal(sk_xtext_decode("abcd", small, sizeof small), SK_ERR_TOO_LONG);
    assert_int_equal(sk_xtext_decode("ab+2B", small, 3), SK_ERR_TOO_LONG);
    assert_int_equal(sk_xtext_decode("", small, 0), SK_ERR_TOO_LONG);
    sk_buf b = SK_BUF_INIT(5);
    assert_int_equal(sk_xtext_encode("abc+", &b), SK_ERR_TOO_LONG);
    sk_buf_free(&b);
}

static void test_helo(void **state)
{
    static const struct {
        const char *s;
        int ok;
    } helo[] = {{"mx.example.org", 1},
                {"localhost", 1},
                {"[192.0.2.1]", 1},
                {"[IPv6:::1]", 1},
                {"m\xc3\xbcller.example", 1},
                {"bad_name.example", 0},
                {"a b", 0},
                {"", 0},
                {"[1.2.3]", 0},
                {"-x.example", 0}};
    for (size_t i = 0; i < SKT_N(helo); i++)
        if (sk_proto_helo_valid(helo[i].s) != helo[i].ok) fail_msg("helo case %zu", i);
}

/* Decode in, split at every position (the stream comes in pieces). */
static void decode_split(const char *in, size_t n, int bdat, size_t split, char *out, size_t *olen,
                         size_t *consumed, int *end, unsigned *bad)
{
    sk_data_decoder d;
    sk_data_decoder_init(&d, bdat);
    *olen = 0;
    *consumed = 0;
    *end = 0;
    size_t bounds[3] = {0, split, n};
    for (int part = 0; part < 2 && !*end; part++) {
        size_t from = bounds[part], len = bounds[part + 1] - from, o;
        size_t k = sk_data_decode(&d, in + from, len, out + *olen, &o, end);
        assert_true(o <= len + 1);
        *olen += o;
        *consumed += k;
        if (!*end) assert_int_equal(k, len);
    }
    if (bdat) {
        size_t o;
        sk_data_decoder_finish(&d, out + *olen, &o);
        *olen += o;
    }
    *bad = d.bad;
}

static void test_data_decoder(void **state)
{
    /* Octet strings with their length: some hold a NUL. */
#define B(lit)                                                                                     \
    {                                                                                              \
        lit, sizeof(lit) - 1                                                                       \
    }
    static const struct {
        struct {
            const char *s;
            size_t n;
        } in;
        int bdat;
        struct {
            const char *s;
            size_t n;
        } body; /* what comes out */
        int end;
        size_t consumed; /* with end: octets up to and with the marker */
        unsigned bad;
    } cases[] = {
        {B(".\r\n"), 0, B(""), 1, 3, 0},
        {B("a\r\n.\r\nQUIT\r\n"), 0, B("a\r\n"), 1, 6, 0},
        {B("..x\r\n.\r\n"), 0, B(".x\r\n"), 1, 8, 0},
        {B(".x\r\n..\r\n.\r\n"), 0, B("x\r\n.\r\n"), 1, 11, 0},
        {B("a\r\n. \r\n.\r\n"), 0, B("a\r\n \r\n"), 1, 10, 0},
        {B("a.b\r\n.\r\n"), 0, B("a.b\r\n"), 1, 8, 0},
        /* Smuggling: none of these ends the data; each is a bare CR/LF,
         * and a bare LF does not start a line (its dot stays). */
        {B("a\n.\nb"), 0, B("a\n.\nb"), 0, 5, SK_DATA_BARE_LF},
        {B("a\r\n.\nb"), 0, B("a\r\n\nb"), 0, 7, SK_DATA_BARE_LF},
        {B("a\n.\r\nb"), 0, B("a\n.\r\nb"), 0, 6, SK_DATA_BARE_LF},
        {B("a\r.\rb"), 0, B("a\r.\rb"), 0, 6, SK_DATA_BARE_CR},
        {B("a\r\n.\rb"), 0, B("a\r\n\rb"), 0, 7, SK_DATA_BARE_CR},
        {B("a\r.\r\nb"), 0, B("a\r.\r\nb"), 0, 7, SK_DATA_BARE_CR},
        {B("a\r\n.\r\r\n"), 0, B("a\r\n\r\r\n"), 0, 8, SK_DATA_BARE_CR},
        {B("a\rb\r\n.\r\n"), 0, B("a\rb\r\n"), 1, 8, SK_DATA_BARE_CR},
        {B("a\nb\r\n.\r\n"), 0, B("a\nb\r\n"), 1, 8, SK_DATA_BARE_LF},
        /* BDAT: no dot handling, no end marker, line ends still checked. */
        {B(".\r\n..\r\n"), 1, B(".\r\n..\r\n"), 0, 8, 0},
        {B("a\nb"), 1, B("a\nb"), 0, 4, SK_DATA_BARE_LF},
        {B("a\r"), 1, B("a\r"), 0, 2, SK_DATA_BARE_CR},
        {B("a\rb"), 1, B("a\rb"), 0, 4, SK_DATA_BARE_CR},
        /* NUL (RFC 2045 2.7, 2.8): a receiver that drops it would see an
         * end marker in the first two. The stuffed dot is still removed. */
        {B("a\r\n\0.\r\nb\r\n.\r\n"), 0, B("a\r\n\0.\r\nb\r\n"), 1, 13, SK_DATA_NUL},
        {B("a\r\n.\0\r\nb\r\n.\r\n"), 0, B("a\r\n\0\r\nb\r\n"), 1, 13, SK_DATA_NUL},
        {B("a\0b\r\n.\r\n"), 0, B("a\0b\r\n"), 1, 8, SK_DATA_NUL},
        {B("\0\r\n.\r\n"), 0, B("\0\r\n"), 1, 6, SK_DATA_NUL},
        {B("a\r\0\n.\r\n"), 0, B("a\r\0\n.\r\n"), 0, 0,
         SK_DATA_NUL | SK_DATA_BARE_CR | SK_DATA_BARE_LF},
        {B("a\0\n.\n"), 0, B("a\0\n.\n"), 0, 0, SK_DATA_NUL | SK_DATA_BARE_LF},
        /* BDAT: no BINARYMIME (RFC 3030 3) is offered, so NUL is never allowed. */
        {B("a\r\n\0.\r\n"), 1, B("a\r\n\0.\r\n"), 0, 0, SK_DATA_NUL},
        {B("a\r\n.\0\r\n"), 1, B("a\r\n.\0\r\n"), 0, 0, SK_DATA_NUL},
        {B("\0"), 1, B("\0"), 0, 0, SK_DATA_NUL},
    };
#undef B
    for (size_t i = 0; i < SKT_N(cases); i++) {
        size_t n = cases[i].in.n;
        for (size_t split = 0; split <= n; split++) {
            char out[64];
            size_t olen, consumed;
            int end;
            unsigned bad;
            decode_split(cases[i].in.s, n, cases[i].bdat, split, out, &olen, &consumed, &end, &bad);
            if (end != cases[i].end || bad != cases[i].bad || olen != cases[i].body.n ||
                memcmp(out, cases[i].body.s, olen) ||
                (cases[i].end && consumed != cases[i].consumed))
                fail_msg("case %zu split %zu: end %d bad %u consumed %zu out \"%.*s\"", i, split,
                         end, bad, consumed, (int)olen, out);
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cmd_parse),      cmocka_unit_test(test_path_parse),
        cmocka_unit_test(test_label_too_long), cmocka_unit_test(test_parse_mail),
        cmocka_unit_test(test_mail_values),    cmocka_unit_test(test_parse_rcpt),
        cmocka_unit_test(test_xtext),          cmocka_unit_test(test_helo),
        cmocka_unit_test(test_utf8_addr),      cmocka_unit_test(test_orcpt_values),
        cmocka_unit_test(test_data_decoder),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
