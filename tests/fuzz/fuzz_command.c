/* Fuzz target: the server's command-line grammar: verbs, paths (RFC 5321
 * 4.1.2), MAIL/RCPT parameters, HELO arguments and xtext. The first octet
 * chooses the offered extensions; the rest is one command line. */
#include <smtpkit/dsn.h>
#include <smtpkit/proto.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const unsigned all_ext =
    SK_EXT_SIZE | SK_EXT_8BITMIME | SK_EXT_SMTPUTF8 | SK_EXT_DSN | SK_EXT_MT_PRIORITY | SK_EXT_AUTH;

static void check_path(const sk_path *p, unsigned flags)
{
    if (!memchr(p->mailbox, '\0', sizeof p->mailbox) || !memchr(p->local, '\0', sizeof p->local) ||
        !memchr(p->domain, '\0', sizeof p->domain))
        abort();
    if (strlen(p->mailbox) > SK_SMTP_PATH_MAX_OCTETS - 2) abort();
    if (p->mailbox[0] == '\0' && !(flags & SK_PATH_NULL_OK)) abort();
    if (p->utf8 && !(flags & SK_PATH_UTF8_OK)) abort();
    if (p->domain[0] == '\0' && p->mailbox[0] &&
        (!(flags & SK_PATH_POSTMASTER_OK) || strcasecmp(p->mailbox, "postmaster") != 0))
        abort();
    /* The mailbox as parsed is a path of its own (source route dropped),
     * and reads back unchanged. */
    char again[SK_SMTP_PATH_MAX_OCTETS + 8];
    snprintf(again, sizeof again, "<%s>", p->mailbox);
    sk_path q;
    const char *end;
    if (sk_path_parse(again, flags, &q, &end) != SK_OK) abort();
    if (*end != '\0' || strcmp(q.mailbox, p->mailbox) != 0 || strcmp(q.local, p->local) != 0 ||
        strcmp(q.domain, p->domain) != 0)
        abort();
    /* utf8 says whether the mailbox has octets >= 0x80 (a dropped source
     * route does not count). */
    int high = 0;
    for (const char *c = p->mailbox; *c; c++) high |= (unsigned char)*c >= 0x80;
    if (q.utf8 != high || p->utf8 != high) abort();
}

static void check_refusal(const sk_reply *why)
{
    if (why->code != 501 && why->code != 553 && why->code != 555) abort();
    if (!sk_enhanced_valid(why->enhanced, why->code)) abort();
}

static void check_mail(const char *args, unsigned ext)
{
    sk_path from;
    sk_mail_params mp;
    sk_reply why = {0};
    if (sk_proto_parse_mail(args, ext, &from, &mp, &why) != SK_OK) {
        check_refusal(&why);
        return;
    }
    check_path(&from, SK_PATH_NULL_OK | (mp.smtputf8 ? SK_PATH_UTF8_OK : 0));
    if (from.utf8 && !mp.smtputf8) abort();
    if (mp.has_size && !(ext & SK_EXT_SIZE)) abort();
    if (mp.body && !(ext & SK_EXT_8BITMIME)) abort();
    if (mp.smtputf8 && !(ext & SK_EXT_SMTPUTF8)) abort();
    if ((mp.ret || mp.envid[0]) && !(ext & SK_EXT_DSN)) abort();
    if (mp.has_priority && (!(ext & SK_EXT_MT_PRIORITY) || mp.priority < -9 || mp.priority > 9))
        abort();
    if (mp.auth[0] && !(ext & SK_EXT_AUTH)) abort();
    if (!memchr(mp.envid, '\0', sizeof mp.envid) || !memchr(mp.auth, '\0', sizeof mp.auth)) abort();
    if (mp.envid[0]) {
        if (!sk_xtext_valid(mp.envid, strlen(mp.envid))) abort();
        char plain[SK_DSN_ENVID_MAX_OCTETS + 1];
        if (sk_xtext_decode(mp.envid, plain, sizeof plain) != SK_OK) abort();
    }
}

static void check_rcpt(const char *args, unsigned ext, int smtputf8)
{
    sk_path to;
    sk_rcpt_params rp;
    sk_reply why = {0};
    if (sk_proto_parse_rcpt(args, ext, smtputf8, &to, &rp, &why) != SK_OK) {
        check_refusal(&why);
        return;
    }
    check_path(&to, SK_PATH_POSTMASTER_OK | (smtputf8 ? SK_PATH_UTF8_OK : 0));
    if ((rp.notify || rp.orcpt[0]) && !(ext & SK_EXT_DSN)) abort();
    if (rp.notify > 15) abort();
    if ((rp.notify & SK_DSN_NOTIFY_NEVER) && rp.notify != SK_DSN_NOTIFY_NEVER) abort();
    if (!memchr(rp.orcpt, '\0', sizeof rp.orcpt)) abort();
    if (rp.orcpt[0] && (!strchr(rp.orcpt, ';') || rp.orcpt[0] == ';')) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    unsigned ext = data[0] & all_ext;
    int smtputf8 = (data[0] & 0x80) != 0;
    char *line = malloc(size);
    if (!line) return 0;
    memcpy(line, data + 1, size - 1);
    line[size - 1] = '\0';
    size_t len = strlen(line);

    const char *args = NULL;
    sk_cmd_verb v = sk_cmd_parse(line, &args);
    if ((unsigned)v >= SK_CMD__COUNT) abort();
    if (v == SK_CMD_UNKNOWN) {
        if (!args || *args) abort();
    } else {
        const char *name = sk_cmd_name(v);
        if (!*name || strncasecmp(line, name, strlen(name)) != 0) abort();
        if (args && (args < line || args > line + len)) abort();
        if (!args && v != SK_CMD_MAIL && v != SK_CMD_RCPT) abort();
    }
    if (v == SK_CMD_MAIL) check_mail(args, ext);
    if (v == SK_CMD_RCPT) check_rcpt(args, ext, smtputf8);
    if (v == SK_CMD_EHLO || v == SK_CMD_HELO) (void)sk_proto_helo_valid(args);

    /* The same text as arguments alone, so paths need not start with a
     * verb to be explored. */
    check_mail(line, ext);
    check_rcpt(line, ext, smtputf8);
    for (unsigned flags = 0; flags < 8; flags++) {
        sk_path p;
        const char *end = NULL;
        sk_err e = sk_path_parse(line, flags, &p, &end);
        if (e == SK_OK) {
            if (end <= line || end > line + len || end[-1] != '>') abort();
            check_path(&p, flags);
        } else if (e != SK_ERR_SYNTAX && e != SK_ERR_TOO_LONG && e != SK_ERR_UNSUPPORTED) {
            abort();
        }
    }
    if (sk_proto_helo_valid(line) && len > SK_SMTP_DOMAIN_MAX_OCTETS) abort();
    if (sk_xtext_valid(line, len)) {
        char *plain = malloc(len + 1);
        if (plain && sk_xtext_decode(line, plain, len + 1) != SK_OK) abort();
        if (plain && strlen(plain) > len) abort();
        free(plain);
    }
    free(line);
    return 0;
}
