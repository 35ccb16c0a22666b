/* The SMTP commands of a session: the command table (what each command may
 * do where), the dispatch of a command line, and the envelope commands. */
#include "server/session_int.h"

#include <stdio.h>
#include <string.h>

/* Commands: what each may do where. A new command is one row. */
#define CF_PRE_HELO 0x01u /* before HELO/EHLO */
#define CF_PRE_TLS  0x02u /* on a listener that requires TLS, before it */
#define CF_PRE_AUTH 0x04u /* on a submission listener, before AUTH */
#define CF_IN_TX    0x08u /* inside a mail transaction */
#define CF_IDLE     0x10u /* makes no progress (counted against max_idle_commands) */
#define CF_ESMTP    0x20u /* an ESMTP extension: only after EHLO, never after HELO */

typedef struct cmd_def {
    unsigned flags;
    void (*handler)(sk_session *s, const char *args);
} cmd_def;

static void cmd_helo(sk_session *s, const char *args);
static void cmd_ehlo(sk_session *s, const char *args);
static void cmd_mail(sk_session *s, const char *args);
static void cmd_rcpt(sk_session *s, const char *args);
static void cmd_rset(sk_session *s, const char *args);
static void cmd_noop(sk_session *s, const char *args);
static void cmd_quit(sk_session *s, const char *args);
static void cmd_vrfy(sk_session *s, const char *args);
static void cmd_expn(sk_session *s, const char *args);
static void cmd_help(sk_session *s, const char *args);

static const cmd_def commands[] = {
    [SK_CMD_UNKNOWN] = {CF_PRE_HELO | CF_PRE_TLS | CF_PRE_AUTH | CF_IN_TX | CF_IDLE, NULL},
    [SK_CMD_EHLO] = {CF_PRE_HELO | CF_PRE_TLS | CF_PRE_AUTH | CF_IN_TX, cmd_ehlo},
    [SK_CMD_HELO] = {CF_PRE_HELO | CF_PRE_TLS | CF_PRE_AUTH | CF_IN_TX, cmd_helo},
    [SK_CMD_MAIL] = {0, cmd_mail},
    [SK_CMD_RCPT] = {CF_IN_TX, cmd_rcpt},
    [SK_CMD_DATA] = {CF_IN_TX, sk_sess_cmd_data},
    [SK_CMD_BDAT] = {CF_IN_TX | CF_ESMTP, sk_sess_cmd_bdat},
    [SK_CMD_RSET] = {CF_PRE_HELO | CF_PRE_TLS | CF_PRE_AUTH | CF_IN_TX | CF_IDLE, cmd_rset},
    [SK_CMD_NOOP] = {CF_PRE_HELO | CF_PRE_TLS | CF_PRE_AUTH | CF_IN_TX | CF_IDLE, cmd_noop},
    [SK_CMD_QUIT] = {CF_PRE_HELO | CF_PRE_TLS | CF_PRE_AUTH | CF_IN_TX, cmd_quit},
    [SK_CMD_VRFY] = {CF_PRE_HELO | CF_IN_TX | CF_IDLE, cmd_vrfy},
    [SK_CMD_EXPN] = {CF_PRE_HELO | CF_IN_TX | CF_IDLE, cmd_expn},
    [SK_CMD_HELP] = {CF_PRE_HELO | CF_PRE_TLS | CF_PRE_AUTH | CF_IN_TX | CF_IDLE, cmd_help},
    [SK_CMD_STARTTLS] = {CF_PRE_TLS | CF_PRE_AUTH | CF_ESMTP, sk_sess_cmd_starttls},
    /* AUTH checks TLS itself: 538, not 530 (RFC 4954 6). */
    [SK_CMD_AUTH] = {CF_PRE_TLS | CF_PRE_AUTH | CF_ESMTP, sk_sess_cmd_auth},
};
_Static_assert(sizeof commands / sizeof commands[0] == SK_CMD__COUNT, "one row per command");

void sk_sess_tx_reset(sk_session *s)
{
    sk_sess_msg_abort(s);
    sk_free(s->from);
    sk_free(s->mp);
    sk_free(s->rcpts);
    s->from = NULL;
    s->mp = NULL;
    s->rcpts = NULL;
    s->nrcpts = s->cap_rcpts = s->rcpt_over = 0;
}

int sk_sess_no_args(sk_session *s, const char *args)
{
    if (args && *args) {
        sk_sess_reply(s, 501, "5.5.4", "No parameters allowed");
        return 0;
    }
    return 1;
}

static size_t line_limit(const sk_session *s, sk_cmd_verb v)
{
    size_t lim = SK_SMTP_COMMAND_LINE_MAX_OCTETS;
    if (s->esmtp && v == SK_CMD_MAIL) lim += SK_SERVER_MAIL_EXT_OCTETS;
    if (s->esmtp && v == SK_CMD_RCPT) lim += SK_SERVER_RCPT_EXT_OCTETS;
    if (v == SK_CMD_AUTH) lim = SK_SMTP_LINE_MAX_OCTETS; /* RFC 4954 4 allows longer */
    return lim < SK_SMTP_LINE_MAX_OCTETS ? lim : SK_SMTP_LINE_MAX_OCTETS;
}

void sk_sess_handle_line(sk_session *s, char *line, size_t n)
{
    s->commands++;
    /* RFC 5321 2.3.8: lines end with CRLF, and CR or LF never appear alone. */
    if (n < 2 || line[n - 2] != '\r') {
        sk_sess_bad_line(s, "Line must end with CRLF");
        return;
    }
    line[n - 2] = '\0';
    if (memchr(line, '\r', n - 2) || strlen(line) != n - 2) {
        sk_sess_bad_line(s, "Bare CR or NUL in command");
        return;
    }
    if (s->state == SS_AUTH) {
        sk_sess_auth_line(s, line);
        return;
    }
    if (sk_sess_maybe_stop(s)) return;
    const char *args;
    sk_cmd_verb v = sk_cmd_parse(line, &args);
    if (v != SK_CMD_AUTH && logger(s)->fn && logger(s)->max_level >= SK_LOG_DEBUG) {
        sk_buf esc = SK_BUF_INIT(4 * SK_SMTP_LINE_MAX_OCTETS);
        if (sk_log_escape(&esc, line, strlen(line)) == SK_OK)
            sk_log(logger(s), SK_LOG_DEBUG, "%s server command line=\"%s\"", s->id,
                   sk_buf_cstr(&esc));
        sk_buf_free(&esc);
    }
    if (n > line_limit(s, v)) {
        sk_sess_reply(s, 500, "5.5.2", "Line too long");
        return;
    }
    const cmd_def *c = &commands[v];
    if (v == SK_CMD_UNKNOWN) {
        sk_sess_reply(s, 500, "5.5.2", "Command unrecognized");
        return;
    }
    if (c->flags & CF_IDLE) s->idle++;
    sk_reply gate = {0};
    if (!(c->flags & CF_PRE_HELO) && !s->helo)
        gate = sk_reply_make(503, "5.5.1", "Send HELO or EHLO first");
    else if ((c->flags & CF_ESMTP) && !s->esmtp)
        /* RFC 5321 2.2.1: after HELO no extension is in effect. The verb is
         * known but not implemented in this session, so 502, not 500
         * (RFC 5321 4.2.4); MAIL parameters after HELO get 555 likewise. */
        gate = sk_reply_make(502, "5.5.1", "Command not implemented after HELO; use EHLO");
    else if (!(c->flags & CF_PRE_TLS) && sk_sess_tls_required(s))
        gate = sk_reply_make(530, "5.7.0", "Must issue a STARTTLS command first");
    else if (!(c->flags & CF_PRE_AUTH) && s->kind != SK_LISTEN_SMTP && !s->auth_user)
        gate = sk_reply_make(530, "5.7.0", "Authentication required");
    if (gate.code) {
        /* A refused BDAT's chunk follows all the same (RFC 3030 2): it is
         * read, never run as commands. */
        if (v == SK_CMD_BDAT)
            sk_sess_bdat_start(s, args, &gate);
        else
            sk_sess_reply_r(s, &gate);
        return;
    }
    if (!(c->flags & CF_IN_TX) && in_tx(s)) {
        sk_sess_reply(s, 503, "5.5.1", "Not allowed in a mail transaction");
        return;
    }
    /* RFC 3030 2: after a BDAT, only BDAT, RSET, NOOP and QUIT. */
    if (s->bdat_mode && v != SK_CMD_BDAT && v != SK_CMD_RSET && v != SK_CMD_NOOP &&
        v != SK_CMD_QUIT) {
        sk_sess_reply(s, 503, "5.5.1", "Only BDAT may follow BDAT");
        return;
    }
    c->handler(s, args);
}

static void greet(sk_session *s, const char *args, int esmtp)
{
    if (!*args) {
        sk_sess_reply(s, 501, "5.5.4", "Syntax: %s hostname", esmtp ? "EHLO" : "HELO");
        return;
    }
    if (!sk_proto_helo_valid(args)) {
        sk_sess_reply(s, 501, "5.5.4", "Invalid domain name");
        return;
    }
    if (s->srv->on_helo) {
        sk_reply r = s->srv->on_helo(s, args, s->srv->on_helo_ctx);
        if (sk_sess_hook_refused(s, &r, "helo")) return;
    }
    sk_sess_tx_reset(s); /* RFC 5321 4.1.4: EHLO resets the transaction */
    if (s->helo) s->idle++;
    sk_free(s->helo);
    s->helo = sk_strdup(args);
    if (!s->helo) {
        sk_sess_reply(s, 451, "4.3.0", "Out of memory");
        return;
    }
    s->esmtp = esmtp;
    sk_buf esc = SK_BUF_INIT(4 * SK_SMTP_LINE_MAX_OCTETS);
    if (sk_log_escape(&esc, args, strlen(args)) == SK_OK)
        sk_log(logger(s), SK_LOG_INFO, "%s server helo name=\"%s\" esmtp=%d", s->id,
               sk_buf_cstr(&esc), esmtp);
    sk_buf_free(&esc);
    sk_sess_set_state(s, SS_READY);
    if (!esmtp) {
        sk_sess_reply(s, 250, NULL, "%s", s->cfg->hostname);
        return;
    }
    char text[512];
    int len = snprintf(text, sizeof text,
                       "%s\nPIPELINING\nSIZE %llu\n8BITMIME\nSMTPUTF8\nENHANCEDSTATUSCODES\n",
                       s->cfg->hostname, (unsigned long long)s->cfg->max_message_size);
    if (sk_sess_starttls_offered(s))
        len += snprintf(text + len, sizeof text - (size_t)len, "STARTTLS\n");
    /* RFC 4954 4 / RFC 3207 6: no AUTH in clear text on a network port. */
    if (sk_sess_auth_offered(s) && !s->auth_user)
        len += snprintf(text + len, sizeof text - (size_t)len, "AUTH PLAIN LOGIN\n");
    snprintf(text + len, sizeof text - (size_t)len, "CHUNKING\nDSN\nMT-PRIORITY");
    sk_sess_reply_text(s, 250, NULL, text);
}

static void cmd_ehlo(sk_session *s, const char *args)
{
    greet(s, args, 1);
}

static void cmd_helo(sk_session *s, const char *args)
{
    greet(s, args, 0);
}

static unsigned ext_mask(const sk_session *s)
{
    if (!s->esmtp) return 0;
    unsigned ext =
        SK_EXT_SIZE | SK_EXT_8BITMIME | SK_EXT_SMTPUTF8 | SK_EXT_DSN | SK_EXT_MT_PRIORITY;
    if (sk_sess_auth_offered(s)) ext |= SK_EXT_AUTH;
    return ext;
}

static void log_path(sk_session *s, const char *event, const sk_path *p, int code)
{
    sk_buf esc = SK_BUF_INIT(4 * SK_SMTP_PATH_MAX_OCTETS);
    if (sk_log_escape(&esc, p->mailbox, strlen(p->mailbox)) == SK_OK)
        sk_log(logger(s), SK_LOG_INFO, "%s server %s addr=<%s> reply=%d", s->id, event,
               sk_buf_cstr(&esc), code);
    sk_buf_free(&esc);
}

static void cmd_mail(sk_session *s, const char *args)
{
    sk_path *from = sk_malloc(sizeof *from);
    sk_mail_params *mp = sk_malloc(sizeof *mp);
    sk_reply r;
    if (!from || !mp) {
        sk_sess_reply(s, 451, "4.3.0", "Out of memory");
        goto out;
    }
    if (sk_proto_parse_mail(args, ext_mask(s), from, mp, &r) != SK_OK) {
        sk_sess_reply_r(s, &r);
        goto out;
    }
    if (mp->has_size && mp->size > s->cfg->max_message_size) {
        sk_sess_reply(s, 552, "5.3.4", "Message size exceeds fixed maximum message size");
        goto out;
    }
    if (s->srv->on_mail) {
        r = s->srv->on_mail(s, from, mp, s->srv->on_mail_ctx);
        if (sk_sess_hook_refused(s, &r, "mail")) {
            log_path(s, "mail", from, r.code);
            goto out;
        }
    }
    s->from = from;
    s->mp = mp;
    from = NULL;
    mp = NULL;
    log_path(s, "mail", s->from, 250);
    sk_sess_set_state(s, SS_MAIL);
    sk_sess_reply(s, 250, "2.1.0", "Ok");
out:
    sk_free(from);
    sk_free(mp);
}

static void cmd_rcpt(sk_session *s, const char *args)
{
    if (!in_tx(s)) {
        sk_sess_reply(s, 503, "5.5.1", "Need MAIL before RCPT");
        return;
    }
    if (s->nrcpts >= s->cfg->max_recipients) {
        /* RFC 5321 4.5.3.1.10: the client sends the rest in a later
         * transaction, so these are no errors against the idle limit. */
        unsigned idle = s->idle;
        sk_sess_reply(s, 452, "4.5.3", "Too many recipients");
        if (s->rcpt_over++ < SK_SERVER_RCPT_OVERSHOOT_MAX) s->idle = idle;
        return;
    }
    sk_envelope_rcpt rc;
    sk_reply r;
    if (sk_proto_parse_rcpt(args, ext_mask(s), s->mp->smtputf8, &rc.path, &rc.params, &r) !=
        SK_OK) {
        sk_sess_reply_r(s, &r);
        return;
    }
    if (s->srv->on_rcpt) {
        r = s->srv->on_rcpt(s, &rc.path, &rc.params, s->srv->on_rcpt_ctx);
        if (sk_sess_hook_refused(s, &r, "rcpt")) {
            log_path(s, "rcpt", &rc.path, r.code);
            return;
        }
    }
    if (sk_array_grow(&s->rcpts, &s->cap_rcpts, s->nrcpts + 1, sizeof *s->rcpts,
                      s->cfg->max_recipients)) {
        sk_sess_reply(s, 452, "4.3.1", "Out of memory");
        return;
    }
    s->rcpts[s->nrcpts++] = rc;
    log_path(s, "rcpt", &rc.path, 250);
    sk_sess_reply(s, 250, "2.1.5", "Ok");
}

static void cmd_rset(sk_session *s, const char *args)
{
    if (!sk_sess_no_args(s, args)) return;
    sk_sess_tx_reset(s);
    sk_sess_set_state(s, rest_state(s));
    sk_sess_reply(s, 250, "2.0.0", "Ok");
}

static void cmd_noop(sk_session *s, const char *args)
{
    sk_sess_reply(s, 250, "2.0.0", "Ok"); /* RFC 5321 4.1.1.9: a parameter is allowed */
}

static void cmd_quit(sk_session *s, const char *args)
{
    if (!sk_sess_no_args(s, args)) return;
    sk_sess_end(s, 221, "2.0.0", "%s Bye", s->cfg->hostname);
}

static void cmd_vrfy(sk_session *s, const char *args)
{
    if (!*args) {
        sk_sess_reply(s, 501, "5.5.4", "Syntax: VRFY address");
        return;
    }
    /* RFC 5321 3.5.3: 252 when we will not verify. */
    sk_sess_reply(s, 252, "2.5.0",
                  "Cannot VRFY user, but will accept message and attempt delivery");
}

static void cmd_expn(sk_session *s, const char *args)
{
    sk_sess_reply(s, 502, "5.5.1", "EXPN not implemented");
}

static void cmd_help(sk_session *s, const char *args)
{
    sk_sess_reply(s, 214, "2.0.0",
                  "Commands: EHLO HELO MAIL RCPT DATA BDAT RSET NOOP QUIT VRFY HELP "
                  "STARTTLS AUTH; see RFC 5321");
}
