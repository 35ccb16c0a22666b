/* Server-side parsing of SMTP command lines: verbs (RFC 5321 4.1.1) and the
 * ESMTP parameters of MAIL and RCPT (RFC 1870, 6152, 6531, 3461, 6710, 4954). */
#include <smtpkit/proto.h>

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static const char *const verb_names[] = {
    [SK_CMD_UNKNOWN] = "",  [SK_CMD_EHLO] = "EHLO",         [SK_CMD_HELO] = "HELO",
    [SK_CMD_MAIL] = "MAIL", [SK_CMD_RCPT] = "RCPT",         [SK_CMD_DATA] = "DATA",
    [SK_CMD_BDAT] = "BDAT", [SK_CMD_RSET] = "RSET",         [SK_CMD_NOOP] = "NOOP",
    [SK_CMD_QUIT] = "QUIT", [SK_CMD_VRFY] = "VRFY",         [SK_CMD_EXPN] = "EXPN",
    [SK_CMD_HELP] = "HELP", [SK_CMD_STARTTLS] = "STARTTLS", [SK_CMD_AUTH] = "AUTH",
};
_Static_assert(sizeof verb_names / sizeof verb_names[0] == SK_CMD__COUNT,
               "one name per command verb");

const char *sk_cmd_name(sk_cmd_verb v)
{
    return (unsigned)v < SK_CMD__COUNT ? verb_names[v] : "";
}

sk_cmd_verb sk_cmd_parse(const char *line, const char **args)
{
    size_t n = 0;
    while (isalpha((unsigned char)line[n])) n++;
    *args = "";
    if (line[n] != ' ' && line[n] != '\0') return SK_CMD_UNKNOWN;
    sk_cmd_verb v = SK_CMD_UNKNOWN;
    for (int i = 1; i < SK_CMD__COUNT; i++) {
        if (strlen(verb_names[i]) == n && strncasecmp(line, verb_names[i], n) == 0) {
            v = (sk_cmd_verb)i;
            break;
        }
    }
    if (v == SK_CMD_UNKNOWN) return v;
    const char *a = line[n] ? line + n + 1 : line + n;
    /* RFC 5321 4.1.1.2/4.1.1.3: "MAIL FROM:" and "RCPT TO:"; the space
     * after the colon is not in the grammar, but widely sent. */
    if (v == SK_CMD_MAIL || v == SK_CMD_RCPT) {
        const char *kw = v == SK_CMD_MAIL ? "FROM:" : "TO:";
        if (line[n] != ' ' || !sk_strcaseprefix(a, kw)) {
            *args = NULL;
            return v;
        }
        a += strlen(kw);
        while (*a == ' ') a++;
    }
    *args = a;
    return v;
}

/* One "KEYWORD[=VALUE]" (RFC 5321 4.1.2 esmtp-param); value may be NULL. */
typedef struct param {
    char key[32];
    const char *value;
    size_t value_len;
} param;

/* Next parameter from *p; 0 at the end, -1 on bad syntax. */
static int next_param(const char **pp, param *out, int utf8_ok)
{
    const char *p = *pp;
    if (*p == '\0') return 0;
    if (*p != ' ') return -1;
    while (*p == ' ') p++;
    if (*p == '\0') return 0;
    size_t k = 0;
    if (!isalnum((unsigned char)*p)) return -1;
    while (isalnum((unsigned char)p[k]) || p[k] == '-') {
        if (k + 1 >= sizeof out->key) return -1;
        out->key[k] = (char)toupper((unsigned char)p[k]);
        k++;
    }
    out->key[k] = '\0';
    p += k;
    out->value = NULL;
    out->value_len = 0;
    if (*p == '=') {
        const char *v = ++p;
        /* esmtp-value: %d33-60 / %d62-126, plus UTF-8 with SMTPUTF8. */
        while (*p && *p != ' ') {
            unsigned char c = (unsigned char)*p;
            if (c == '=' || c < 33 || c == 127 || (c >= 0x80 && !utf8_ok)) return -1;
            p++;
        }
        if (p == v) return -1;
        out->value = v;
        out->value_len = (size_t)(p - v);
    }
    *pp = p;
    return 1;
}

static int value_is(const param *pr, const char *s)
{
    return pr->value && strlen(s) == pr->value_len && strncasecmp(pr->value, s, pr->value_len) == 0;
}

static sk_err fail(sk_reply *why, int code, const char *enh, const char *text)
{
    if (why) *why = sk_reply_make(code, enh, "%s", text);
    return SK_ERR_SYNTAX;
}

static sk_err path_error(sk_err e, int mail, sk_reply *why)
{
    const char *enh = mail ? "5.1.7" : "5.1.3";
    if (e == SK_ERR_UNSUPPORTED)
        return fail(why, 553, "5.6.7", "UTF-8 address needs SMTPUTF8"), SK_ERR_UNSUPPORTED;
    if (e == SK_ERR_TOO_LONG)
        return fail(why, 501, enh, "Path too long"), SK_ERR_TOO_LONG; /* RFC 5321 4.5.3.1.10 */
    return fail(why, 553, enh, mail ? "Bad sender address syntax" : "Bad recipient address syntax");
}

/* SMTPUTF8 appears after the path, so look for it first (RFC 6531 3.4). */
static int has_smtputf8(const char *s)
{
    for (const char *p = strchr(s, ' '); p; p = strchr(p + 1, ' ')) {
        if (strncasecmp(p + 1, "SMTPUTF8", 8) == 0 && (p[9] == ' ' || p[9] == '\0')) return 1;
    }
    return 0;
}

sk_err sk_proto_parse_mail(const char *args, unsigned ext, sk_path *from, sk_mail_params *mp,
                           sk_reply *why)
{
    memset(mp, 0, sizeof *mp);
    if (!args || *args != '<') return fail(why, 501, "5.5.4", "Syntax: MAIL FROM:<address>");
    int utf8 = (ext & SK_EXT_SMTPUTF8) && has_smtputf8(args);
    const char *p;
    sk_err e = sk_path_parse(args, SK_PATH_NULL_OK | (utf8 ? SK_PATH_UTF8_OK : 0), from, &p);
    if (e) return path_error(e, 1, why);
    param pr;
    int r;
    while ((r = next_param(&p, &pr, utf8)) == 1) {
        if (!strcmp(pr.key, "SIZE") && (ext & SK_EXT_SIZE)) {
            /* RFC 1870 6: size-value 1*20DIGIT. */
            if (mp->has_size || !pr.value || pr.value_len > 20) goto bad;
            for (size_t i = 0; i < pr.value_len; i++)
                if (!isdigit((unsigned char)pr.value[i])) goto bad;
            errno = 0;
            unsigned long long v = strtoull(pr.value, NULL, 10);
            mp->size = errno ? UINT64_MAX : v;
            mp->has_size = 1;
        } else if (!strcmp(pr.key, "BODY") && (ext & SK_EXT_8BITMIME)) {
            if (mp->body) goto bad;
            if (value_is(&pr, "7BIT"))
                mp->body = SK_BODY_7BIT;
            else if (value_is(&pr, "8BITMIME"))
                mp->body = SK_BODY_8BITMIME;
            else
                return fail(why, 501, "5.5.4", "Unsupported BODY type");
        } else if (!strcmp(pr.key, "SMTPUTF8") && (ext & SK_EXT_SMTPUTF8)) {
            if (mp->smtputf8 || pr.value) goto bad;
            mp->smtputf8 = 1;
        } else if (!strcmp(pr.key, "RET") && (ext & SK_EXT_DSN)) {
            if (mp->ret) goto bad;
            if (value_is(&pr, "FULL"))
                mp->ret = SK_DSN_RET_FULL;
            else if (value_is(&pr, "HDRS"))
                mp->ret = SK_DSN_RET_HDRS;
            else
                goto bad;
        } else if (!strcmp(pr.key, "ENVID") && (ext & SK_EXT_DSN)) {
            if (mp->envid[0] || !pr.value || pr.value_len > SK_DSN_ENVID_MAX_OCTETS ||
                !sk_xtext_valid(pr.value, pr.value_len))
                goto bad;
            memcpy(mp->envid, pr.value, pr.value_len);
        } else if (!strcmp(pr.key, "MT-PRIORITY") && (ext & SK_EXT_MT_PRIORITY)) {
            /* RFC 6710 2: priority-value = [ "+" / "-" ] 1DIGIT, -9..9. */
            const char *v = pr.value;
            size_t n = pr.value_len;
            if (mp->has_priority || !v) goto bad;
            int sign = 1;
            if (*v == '+' || *v == '-') sign = *v == '-' ? -1 : 1, v++, n--;
            if (n != 1 || !isdigit((unsigned char)*v)) goto bad;
            mp->priority = sign * (*v - '0');
            mp->has_priority = 1;
        } else if (!strcmp(pr.key, "AUTH") && (ext & SK_EXT_AUTH)) {
            /* RFC 4954 5: AUTH=xtext or AUTH=<>. */
            if (mp->auth[0] || !pr.value || pr.value_len >= sizeof mp->auth) goto bad;
            if (!value_is(&pr, "<>") && !sk_xtext_valid(pr.value, pr.value_len)) goto bad;
            memcpy(mp->auth, pr.value, pr.value_len);
        } else {
            return fail(why, 555, "5.5.4", "Unsupported parameter");
        }
    }
    if (r < 0) goto bad;
    if (from->utf8 && !mp->smtputf8) return path_error(SK_ERR_UNSUPPORTED, 1, why);
    return SK_OK;
bad:
    return fail(why, 501, "5.5.4", "Bad MAIL parameter");
}

sk_err sk_proto_parse_rcpt(const char *args, unsigned ext, int smtputf8, sk_path *to,
                           sk_rcpt_params *rp, sk_reply *why)
{
    memset(rp, 0, sizeof *rp);
    if (!args || *args != '<') return fail(why, 501, "5.5.4", "Syntax: RCPT TO:<address>");
    const char *p;
    sk_err e =
        sk_path_parse(args, SK_PATH_POSTMASTER_OK | (smtputf8 ? SK_PATH_UTF8_OK : 0), to, &p);
    if (e) return path_error(e, 0, why);
    param pr;
    int r;
    while ((r = next_param(&p, &pr, smtputf8)) == 1) {
        if (!strcmp(pr.key, "NOTIFY") && (ext & SK_EXT_DSN)) {
            /* RFC 3461 4.1: NEVER, or a list of SUCCESS, FAILURE, DELAY. */
            if (rp->notify || !pr.value) goto bad;
            const char *v = pr.value, *end = pr.value + pr.value_len;
            while (v < end) {
                const char *c = memchr(v, ',', (size_t)(end - v));
                size_t n = (size_t)((c ? c : end) - v);
                unsigned bit = 0;
                if (n == 5 && !strncasecmp(v, "NEVER", 5)) bit = SK_DSN_NOTIFY_NEVER;
                if (n == 7 && !strncasecmp(v, "SUCCESS", 7)) bit = SK_DSN_NOTIFY_SUCCESS;
                if (n == 7 && !strncasecmp(v, "FAILURE", 7)) bit = SK_DSN_NOTIFY_FAILURE;
                if (n == 5 && !strncasecmp(v, "DELAY", 5)) bit = SK_DSN_NOTIFY_DELAY;
                if (!bit || (rp->notify & bit)) goto bad;
                rp->notify |= bit;
                v += n + (c ? 1 : 0);
                if (c && v == end) goto bad;
            }
            if ((rp->notify & SK_DSN_NOTIFY_NEVER) && rp->notify != SK_DSN_NOTIFY_NEVER) goto bad;
        } else if (!strcmp(pr.key, "ORCPT") && (ext & SK_EXT_DSN)) {
            /* RFC 3461 4.2: addr-type ";" xtext; for the "utf-8" type the
             * RFC 6533 3 encoding, with UTF-8 as it is (utf-8-addr-unitext)
             * only in a transaction that uses SMTPUTF8. Kept as received,
             * so a relay passes it on unchanged (RFC 3461 5.2.1). */
            if (rp->orcpt[0] || !pr.value || !sk_orcpt_valid(pr.value, pr.value_len, smtputf8))
                goto bad;
            memcpy(rp->orcpt, pr.value, pr.value_len);
        } else {
            return fail(why, 555, "5.5.4", "Unsupported parameter");
        }
    }
    if (r < 0) goto bad;
    return SK_OK;
bad:
    return fail(why, 501, "5.5.4", "Bad RCPT parameter");
}
