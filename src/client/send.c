/* Sending a message on a connected client: the envelope with its ESMTP
 * parameters, PIPELINING, per-recipient results, and DATA with dot-stuffing
 * (RFC 5321 3.3, 4.5.2; RFC 2920, 1870, 6152, 6531, 3461, 6710). */
#include "client/client_int.h"

#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <smtpkit/message.h>
#include <smtpkit/proto.h>

int cl_has_8bit(const char *s, size_t n)
{
    /* Eight octets at a time: a message body is mostly ASCII. */
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, s + i, sizeof w);
        if (w & UINT64_C(0x8080808080808080)) return 1;
    }
    for (; i < n; i++)
        if ((unsigned char)s[i] & 0x80) return 1;
    return 0;
}

/* The next CR or LF in data[i, len), len when none. */
static size_t next_eol(const char *data, size_t i, size_t len)
{
    const char *lf = memchr(data + i, '\n', len - i);
    size_t end = lf ? (size_t)(lf - data) : len;
    const char *cr = memchr(data + i, '\r', end - i);
    return cr ? (size_t)(cr - data) : end;
}

sk_err cl_stuff(sk_buf *out, const char *data, size_t len, int *at_bol, int last)
{
    sk_err e = SK_OK;
    size_t start = 0;
    for (size_t i = 0; i < len && !e; i++) {
        char ch = data[i];
        if (*at_bol == 2 && ch != '\n') {
            /* A lone CR is sent as CRLF too (RFC 5321 2.3.8), so that no
             * server that ends lines at a bare CR sees a line we did not
             * stuff, such as "\r.\r\n". */
            e = sk_buf_append(out, data + start, i - start);
            if (!e) e = sk_buf_putc(out, '\n');
            start = i;
            *at_bol = 1;
            if (e) break;
        }
        if (*at_bol == 1 && ch == '.') {
            /* RFC 5321 4.5.2: a line starting with "." gets another one. */
            e = sk_buf_append(out, data + start, i - start);
            if (!e) e = sk_buf_putc(out, '.');
            start = i;
        } else if (ch == '\n' && (i == 0 ? !(*at_bol == 2) : data[i - 1] != '\r')) {
            /* A lone LF (RFC 5321 2.3.8 allows only CRLF) is sent as CRLF. */
            e = sk_buf_append(out, data + start, i - start);
            if (!e) e = sk_buf_putc(out, '\r');
            start = i;
        }
        /* at_bol: 1 at a line start, 2 right after a CR (for a CRLF split
         * across calls), 0 elsewhere. */
        *at_bol = ch == '\n' ? 1 : ch == '\r' ? 2 : 0;
        /* Inside a line nothing changes until its end: skip to it. */
        if (*at_bol == 0 && i + 1 < len) {
            size_t eol = next_eol(data, i + 1, len);
            if (eol > i + 1) i = eol - 1;
        }
    }
    if (!e) e = sk_buf_append(out, data + start, len - start);
    if (!e && last) {
        if (*at_bol == 2)
            e = sk_buf_putc(out, '\n');
        else if (*at_bol == 0)
            e = sk_buf_puts(out, "\r\n");
        if (!e) e = sk_buf_puts(out, ".\r\n");
    }
    return e;
}

void cl_queue_id(const char *text, char *out, size_t size)
{
    out[0] = '\0';
    const char *p = text;
    /* Postfix, ours and many others: "queued as ID"; Exim: "id=ID". */
    for (; *p; p++) {
        size_t skip = 0;
        if (!strncasecmp(p, "queued as ", 10))
            skip = 10;
        else if (!strncasecmp(p, "id=", 3) && (p == text || p[-1] == ' '))
            skip = 3;
        if (!skip) continue;
        p += skip;
        size_t n = 0;
        while (p[n] && (isalnum((unsigned char)p[n]) || p[n] == '-' || p[n] == '_' || p[n] == '.' ||
                        p[n] == '@'))
            n++;
        while (n && p[n - 1] == '.') n--; /* a sentence's full stop */
        if (n && n < size) {
            memcpy(out, p, n);
            out[n] = '\0';
        }
        return;
    }
}

void sk_send_result_free(sk_send_result *res)
{
    if (!res) return;
    for (size_t i = 0; i < res->nrcpt; i++) sk_free(res->rcpts[i].address);
    sk_free(res->rcpts);
    memset(res, 0, sizeof *res);
}

static sk_err send_data_body(sk_client *c, const char *data, size_t len, sk_error *err)
{
    sk_buf chunk = SK_BUF_INIT(80 * 1024);
    int bol = 1;
    sk_err e = SK_OK;
    size_t off = 0;
    if (c->o.progress) c->o.progress(c->o.progress_ctx, 0, len);
    do {
        size_t n = len - off > 32 * 1024 ? 32 * 1024 : len - off;
        int last = off + n == len;
        sk_buf_reset(&chunk);
        /* A 32 KiB piece grows at most to 64 KiB (each LF or dot doubles). */
        e = cl_stuff(&chunk, data + off, n, &bol, last);
        if (e) {
            e = sk_error_set(err, e, SK_STEP_DATA, "cannot prepare the message");
            break;
        }
        /* RFC 5321 4.5.3.2.5: each block gets the data block timeout. */
        e = cl_write(c, chunk.data, chunk.len, c->o.data_block_timeout_ms, SK_STEP_DATA, err);
        off += n;
        if (!e && c->o.progress) c->o.progress(c->o.progress_ctx, off, len);
    } while (!e && off < len);
    sk_buf_free(&chunk);
    return e;
}

sk_err sk_client_data(sk_client *c, const char *data, size_t len, sk_reply *reply, sk_error *err)
{
    sk_error_clear(err);
    if (!c) return sk_error_set(err, SK_ERR_INVAL, SK_STEP_DATA, "no client");
    if (c->state != CL_MAIL)
        return sk_error_set(err, SK_ERR_STATE, SK_STEP_DATA, "no transaction open");
    if (!data && len) return sk_error_set(err, SK_ERR_INVAL, SK_STEP_DATA, "no data");
    sk_reply r;
    sk_err e = cl_send_line(c, "DATA", NULL, c->o.data_init_timeout_ms, SK_STEP_DATA, err);
    if (!e) e = cl_read_reply(c, c->o.data_init_timeout_ms, SK_STEP_DATA, &r, err);
    if (e) return e;
    if (r.code != 354) {
        if (reply) *reply = r;
        return cl_reply_error(err, SK_STEP_DATA, &r, SK_ERR_PERMFAIL);
    }
    if (c->o.transcript) cl_info(c, "(message of %zu octets)", len);
    e = send_data_body(c, data ? data : "", len, err);
    if (!e) e = cl_read_reply(c, c->o.data_end_timeout_ms, SK_STEP_DATA, &r, err);
    if (e) return e;
    /* Whatever the answer, the transaction is over (RFC 5321 4.1.1.4). */
    cl_set_state(c, CL_READY);
    if (reply) *reply = r;
    if (sk_reply_class_of(r.code) != SK_REPLY_SUCCESS)
        return cl_reply_error(err, SK_STEP_DATA, &r, SK_ERR_PERMFAIL);
    return SK_OK;
}

static int non_ascii(const char *s)
{
    return cl_has_8bit(s, strlen(s));
}

/* MAIL parameters for this message (RFC 5321 4.1.2 Mail-parameters). */
static sk_err mail_params(sk_client *c, sk_buf *p, size_t len, int eight, int utf8,
                          const sk_send_opts *so)
{
    unsigned ext = c->ext.ext;
    sk_err e = SK_OK;
    if (ext & SK_CLIENT_EXT_SIZE) e = sk_buf_printf(p, " SIZE=%zu", len);
    /* RFC 6531 3.1: SMTPUTF8 implies 8BITMIME; BODY= only when announced. */
    if (!e && eight && (ext & SK_CLIENT_EXT_8BITMIME)) e = sk_buf_puts(p, " BODY=8BITMIME");
    if (!e && utf8) e = sk_buf_puts(p, " SMTPUTF8");
    if (!e && so && (ext & SK_CLIENT_EXT_DSN)) {
        if (so->dsn_ret) e = sk_buf_printf(p, " RET=%s", so->dsn_ret);
        if (!e && so->dsn_envid) {
            e = sk_buf_puts(p, " ENVID=");
            if (!e)
                e = so->dsn_envid_xtext ? sk_buf_puts(p, so->dsn_envid)
                                        : sk_xtext_encode(so->dsn_envid, p);
        }
    }
    if (!e && so && so->has_priority && (ext & SK_CLIENT_EXT_MT_PRIORITY))
        e = sk_buf_printf(p, " MT-PRIORITY=%d", so->priority);
    return e;
}

/* utf8: the transaction uses SMTPUTF8 (what the ORCPT may hold depends on
 * it, RFC 6533 3). */
static sk_err rcpt_params(sk_client *c, sk_buf *p, const sk_rcpt_spec *r, const sk_send_opts *so,
                          int utf8)
{
    sk_err e = SK_OK;
    if (!(c->ext.ext & SK_CLIENT_EXT_DSN)) return SK_OK;
    const char *notify = r->notify ? r->notify : so ? so->dsn_notify : NULL;
    if (notify) e = sk_buf_printf(p, " NOTIFY=%s", notify);
    if (e || (!r->orcpt && !(so && so->dsn_orcpt))) return e;
    sk_buf o = SK_BUF_INIT(SK_DSN_ORCPT_MAX_OCTETS);
    if (r->orcpt) {
        /* RFC 3461 5.2.1: a relay passes the ORCPT it received unchanged;
         * only a "utf-8" one holding UTF-8 is rewritten, to the 7-bit form
         * of the same address, when SMTPUTF8 is not in use (RFC 6533 3). */
        e = sk_orcpt_pass(r->orcpt, utf8, &o);
    } else {
        /* RFC 3461 4.2: "rfc822" for an ASCII address, RFC 6533 3 "utf-8"
         * for the others. */
        e = sk_orcpt_format(r->address, utf8, &o);
    }
    if (!e) {
        e = sk_buf_printf(p, " ORCPT=%s", sk_buf_cstr(&o));
    } else if (e != SK_ERR_NOMEM) {
        /* ORCPT is optional (RFC 3461 4.2): one that cannot be written
         * within 500 octets is left out rather than the recipient. */
        cl_info(c, "ORCPT for <%s> left out: %s", r->address, sk_strerror(e));
        e = SK_OK;
    }
    sk_buf_free(&o);
    return e;
}

/* RFC 3461 4.1: "NEVER" or a list of SUCCESS, FAILURE, DELAY. */
static int notify_ok(const char *v)
{
    if (!v) return 1;
    if (!strcasecmp(v, "NEVER")) return 1;
    const char *p = v;
    while (*p) {
        size_t n = strcspn(p, ",");
        if (!((n == 7 && !strncasecmp(p, "SUCCESS", 7)) ||
              (n == 7 && !strncasecmp(p, "FAILURE", 7)) || (n == 5 && !strncasecmp(p, "DELAY", 5))))
            return 0;
        p += n;
        if (*p == ',') p++;
    }
    return *v != '\0' && v[strlen(v) - 1] != ',';
}

/* RFC 3461 4.1-4.4: the values we put on the command line verbatim. */
static int dsn_values_ok(const sk_send_opts *so, const sk_rcpt_spec *rcpts, size_t nrcpt)
{
    for (size_t i = 0; i < nrcpt; i++)
        if (!notify_ok(rcpts[i].notify) ||
            (rcpts[i].orcpt && !sk_orcpt_valid(rcpts[i].orcpt, strlen(rcpts[i].orcpt), 1)))
            return 0;
    if (!so) return 1;
    if (so->dsn_ret && strcasecmp(so->dsn_ret, "FULL") && strcasecmp(so->dsn_ret, "HDRS")) return 0;
    if (so->dsn_envid && so->dsn_envid_xtext &&
        (strlen(so->dsn_envid) > SK_DSN_ENVID_MAX_OCTETS ||
         !sk_xtext_valid(so->dsn_envid, strlen(so->dsn_envid))))
        return 0;
    return notify_ok(so->dsn_notify);
}

/* Does the transaction ask for any DSN parameter? */
static int wants_dsn(const sk_send_opts *so, const sk_rcpt_spec *rcpts, size_t nrcpt)
{
    if (so && (so->dsn_ret || so->dsn_envid || so->dsn_notify || so->dsn_orcpt)) return 1;
    for (size_t i = 0; i < nrcpt; i++)
        if (rcpts[i].notify || rcpts[i].orcpt) return 1;
    return 0;
}

/* Check what the message needs against what the server offers, before
 * anything is sent. */
static sk_err preflight(sk_client *c, const char *from, const sk_rcpt_spec *rcpts, size_t nrcpt,
                        const char *data, size_t len, const sk_send_opts *so, int *eight, int *utf8,
                        sk_error *err)
{
    if (!from) return sk_error_set(err, SK_ERR_INVAL, SK_STEP_MAIL, "no sender");
    if (!rcpts || nrcpt == 0) return sk_error_set(err, SK_ERR_INVAL, SK_STEP_RCPT, "no recipients");
    if (!data && len) return sk_error_set(err, SK_ERR_INVAL, SK_STEP_DATA, "no data");
    *utf8 = non_ascii(from);
    for (size_t i = 0; i < nrcpt; i++) {
        if (!rcpts[i].address)
            return sk_error_set(err, SK_ERR_INVAL, SK_STEP_RCPT, "NULL recipient");
        *utf8 |= non_ascii(rcpts[i].address);
    }
    *eight = data ? cl_has_8bit(data, len) : 0;
    unsigned ext = c->ext.ext;
    sk_err e = SK_OK;
    if (*utf8 && !(ext & SK_CLIENT_EXT_SMTPUTF8)) {
        e = sk_error_set(err, SK_ERR_UNSUPPORTED, SK_STEP_MAIL,
                         "an address is not ASCII and the server does not offer SMTPUTF8 "
                         "(RFC 6531)");
    } else if (*eight && !(ext & SK_CLIENT_EXT_8BITMIME) &&
               !(*utf8 && (ext & SK_CLIENT_EXT_SMTPUTF8))) {
        e = sk_error_set(err, SK_ERR_UNSUPPORTED, SK_STEP_DATA,
                         "the message has 8-bit content and the server does not offer "
                         "8BITMIME (RFC 6152)");
    } else if ((ext & SK_CLIENT_EXT_SIZE) && c->ext.size_max && len > c->ext.size_max) {
        /* RFC 1870 6: refuse before sending what the server cannot take. */
        e = sk_error_set(err, SK_ERR_TOO_LONG, SK_STEP_MAIL,
                         "the message (%zu octets) exceeds the server's SIZE limit of %llu", len,
                         (unsigned long long)c->ext.size_max);
        if (err)
            err->hint = "the server takes no message this large: send less (attachments grow "
                        "by a third in base64), or ask its operator to raise the limit";
    } else if (!dsn_values_ok(so, rcpts, nrcpt)) {
        e = sk_error_set(
            err, SK_ERR_INVAL, SK_STEP_MAIL,
            "DSN options: RET is FULL or HDRS, NOTIFY is NEVER or a list of "
            "SUCCESS, FAILURE, DELAY, ORCPT is TYPE;xtext (RFC 6533 for utf-8) and ENVID xtext "
            "(RFC 3461 4)");
    } else if (so && so->has_priority && (so->priority < -9 || so->priority > 9)) {
        e = sk_error_set(err, SK_ERR_INVAL, SK_STEP_MAIL, "MT-PRIORITY must be -9..9");
    } else if (wants_dsn(so, rcpts, nrcpt) && !(ext & SK_CLIENT_EXT_DSN)) {
        cl_info(c, "the server does not offer DSN: DSN parameters not sent");
    }
    if (!e && so && so->has_priority && !(ext & SK_CLIENT_EXT_MT_PRIORITY))
        cl_info(c, "the server does not offer MT-PRIORITY: priority not sent");
    if (e && err) err->transient = 0;
    return e;
}

/* Record RCPT replies; returns the number accepted. */
static void note_rcpt(sk_send_result *res, size_t i, const sk_reply *r)
{
    res->rcpts[i].reply = *r;
    res->rcpts[i].accepted = sk_reply_class_of(r->code) == SK_REPLY_SUCCESS;
    if (res->rcpts[i].accepted) res->naccepted++;
}

/* After every RCPT was refused: the error is the last refusal (a 4xx
 * among them makes the whole transient, since trying later may work). */
static sk_err all_refused(sk_client *c, sk_send_result *res, sk_error *err)
{
    const sk_reply *last = &res->rcpts[res->nrcpt - 1].reply;
    int any_transient = 0;
    for (size_t i = 0; i < res->nrcpt; i++)
        any_transient |= sk_reply_class_of(res->rcpts[i].reply.code) == SK_REPLY_TRANSIENT;
    sk_err e = cl_reply_error(err, SK_STEP_RCPT, last, SK_ERR_PERMFAIL);
    if (err && any_transient) err->transient = 1;
    if (c->state == CL_MAIL) {
        sk_error ignored;
        if (sk_client_rset(c, &ignored)) cl_info(c, "RSET failed: %s", ignored.text);
    }
    return e;
}

sk_err sk_client_send_rcpts(sk_client *c, const char *from, const sk_rcpt_spec *rcpts, size_t nrcpt,
                            const char *data, size_t len, const sk_send_opts *opts,
                            sk_send_result *res_out, sk_error *err)
{
    sk_error_clear(err);
    sk_send_result local, *res = res_out ? res_out : &local;
    memset(res, 0, sizeof *res);
    if (!c) return sk_error_set(err, SK_ERR_INVAL, SK_STEP_MAIL, "no client");
    sk_err e;
    if (c->state == CL_MAIL && (e = sk_client_rset(c, err))) return e;
    if (c->state != CL_READY)
        return sk_error_set(err, SK_ERR_STATE, SK_STEP_MAIL,
                            c->state == CL_CLOSED ? "not connected" : "EHLO has not been sent");
    int eight = 0, utf8 = 0;
    if ((e = preflight(c, from, rcpts, nrcpt, data, len, opts, &eight, &utf8, err))) return e;

    res->rcpts = sk_calloc(nrcpt, sizeof *res->rcpts);
    if (!res->rcpts) return sk_error_set(err, SK_ERR_NOMEM, SK_STEP_MAIL, "out of memory");
    res->nrcpt = nrcpt;
    for (size_t i = 0; i < nrcpt; i++)
        if (!(res->rcpts[i].address = sk_strdup(rcpts[i].address))) {
            e = sk_error_set(err, SK_ERR_NOMEM, SK_STEP_MAIL, "out of memory");
            goto out;
        }

    sk_buf params = SK_BUF_INIT(SK_SMTP_LINE_MAX_OCTETS);
    if (mail_params(c, &params, len, eight, utf8, opts)) {
        sk_buf_free(&params);
        e = sk_error_set(err, SK_ERR_TOO_LONG, SK_STEP_MAIL, "MAIL parameters too long");
        goto out;
    }

    if (!(c->ext.ext & SK_CLIENT_EXT_PIPELINING)) {
        /* One command at a time (RFC 5321 4.1.1.2-4). */
        e = sk_client_mail(c, from, sk_buf_cstr(&params) + (params.len ? 1 : 0), &res->mail, err);
        sk_buf_free(&params);
        if (e) goto out;
        for (size_t i = 0; i < nrcpt; i++) {
            sk_buf rp = SK_BUF_INIT(SK_SMTP_LINE_MAX_OCTETS);
            sk_error one;
            if (rcpt_params(c, &rp, &rcpts[i], opts, utf8)) {
                sk_buf_free(&rp);
                e = sk_error_set(err, SK_ERR_TOO_LONG, SK_STEP_RCPT, "RCPT parameters too long");
                goto out;
            }
            sk_reply r = {0};
            e = sk_client_rcpt(c, rcpts[i].address, sk_buf_cstr(&rp) + (rp.len ? 1 : 0), &r, &one);
            sk_buf_free(&rp);
            if (e == SK_ERR_TEMPFAIL || e == SK_ERR_PERMFAIL) {
                note_rcpt(res, i, &r);
                continue;
            }
            if (e) {
                if (err) *err = one;
                goto out;
            }
            note_rcpt(res, i, &r);
        }
        if (res->naccepted == 0) {
            e = all_refused(c, res, err);
            goto out;
        }
        e = sk_client_data(c, data, len, &res->data, err);
        if (e == SK_ERR_TEMPFAIL || e == SK_ERR_PERMFAIL) {
            /* Refused at DATA (354 not given): still in the transaction. */
            if (c->state == CL_MAIL) {
                sk_error ignored;
                if (sk_client_rset(c, &ignored)) cl_info(c, "RSET failed: %s", ignored.text);
            }
        }
        goto done;
    }

    /* RFC 2920 3.1: MAIL, every RCPT and DATA go in one write; then the
     * replies are read in order. */
    sk_buf batch = SK_BUF_INIT(SK_SMTP_LINE_MAX_OCTETS * (nrcpt + 2));
    e = sk_buf_printf(&batch, "MAIL FROM:<%s>%s\r\n", from, sk_buf_cstr(&params));
    sk_buf_free(&params);
    if (!e)
        e = strlen(from) > SK_SMTP_PATH_MAX_OCTETS || strpbrk(from, "\r\n<>") ? SK_ERR_INVAL
                                                                              : SK_OK;
    for (size_t i = 0; !e && i < nrcpt; i++) {
        const char *a = rcpts[i].address;
        if (!*a || strlen(a) > SK_SMTP_PATH_MAX_OCTETS || strpbrk(a, "\r\n<>")) {
            e = SK_ERR_INVAL;
            break;
        }
        e = sk_buf_printf(&batch, "RCPT TO:<%s>", a);
        if (!e) e = rcpt_params(c, &batch, &rcpts[i], opts, utf8);
        if (!e) e = sk_buf_puts(&batch, "\r\n");
    }
    if (!e) e = sk_buf_puts(&batch, "DATA\r\n");
    if (e) {
        sk_buf_free(&batch);
        e = sk_error_set(err, e == SK_ERR_INVAL ? SK_ERR_INVAL : SK_ERR_TOO_LONG, SK_STEP_MAIL,
                         e == SK_ERR_INVAL ? "invalid address" : "commands too long");
        goto out;
    }
    if (c->o.transcript) {
        const char *p = batch.data, *end = batch.data + batch.len;
        while (p < end) {
            const char *nl = memchr(p, '\r', (size_t)(end - p));
            c->o.transcript(c->o.transcript_ctx, 'C', p, (size_t)(nl - p));
            p = nl + 2;
        }
    }
    e = cl_write(c, batch.data, batch.len, c->o.mail_timeout_ms, SK_STEP_MAIL, err);
    sk_buf_free(&batch);
    if (e) goto out;
    e = cl_read_reply(c, c->o.mail_timeout_ms, SK_STEP_MAIL, &res->mail, err);
    if (e) goto out;
    int mail_ok = sk_reply_class_of(res->mail.code) == SK_REPLY_SUCCESS;
    if (mail_ok) cl_set_state(c, CL_MAIL);
    for (size_t i = 0; i < nrcpt; i++) {
        sk_reply r;
        e = cl_read_reply(c, c->o.rcpt_timeout_ms, SK_STEP_RCPT, &r, err);
        if (e) goto out;
        note_rcpt(res, i, &r);
    }
    sk_reply dr;
    e = cl_read_reply(c, c->o.data_init_timeout_ms, SK_STEP_DATA, &dr, err);
    if (e) goto out;
    if (dr.code == 354 && (!mail_ok || res->naccepted == 0)) {
        /* RFC 2920 3.1: DATA accepted without recipients: end it empty. */
        e = cl_write(c, ".\r\n", 3, c->o.data_block_timeout_ms, SK_STEP_DATA, err);
        if (!e) e = cl_read_reply(c, c->o.data_end_timeout_ms, SK_STEP_DATA, &dr, err);
        if (e) goto out;
    }
    if (!mail_ok) {
        e = cl_reply_error(err, SK_STEP_MAIL, &res->mail, SK_ERR_PERMFAIL);
        goto out;
    }
    if (res->naccepted == 0) {
        e = all_refused(c, res, err);
        goto out;
    }
    if (dr.code != 354) {
        res->data = dr;
        e = cl_reply_error(err, SK_STEP_DATA, &dr, SK_ERR_PERMFAIL);
        sk_error ignored;
        if (sk_client_rset(c, &ignored)) cl_info(c, "RSET failed: %s", ignored.text);
        goto out;
    }
    if (c->o.transcript) cl_info(c, "(message of %zu octets)", len);
    e = send_data_body(c, data ? data : "", len, err);
    if (!e) e = cl_read_reply(c, c->o.data_end_timeout_ms, SK_STEP_DATA, &res->data, err);
    if (e) goto out;
    cl_set_state(c, CL_READY);
    if (sk_reply_class_of(res->data.code) != SK_REPLY_SUCCESS)
        e = cl_reply_error(err, SK_STEP_DATA, &res->data, SK_ERR_PERMFAIL);

done:
    if (!e) {
        res->sent = 1;
        cl_queue_id(res->data.text, res->queue_id, sizeof res->queue_id);
        sk_log(&c->o.log, SK_LOG_INFO, "- client sent host=%s rcpts=%zu accepted=%zu queue_id=%s",
               c->o.host, nrcpt, res->naccepted, res->queue_id[0] ? res->queue_id : "-");
    }
out:
    if (res == &local) sk_send_result_free(&local);
    return e;
}

sk_err sk_client_send(sk_client *c, const char *from, const char *const *rcpts, size_t nrcpt,
                      const char *data, size_t len, const sk_send_opts *opts, sk_send_result *res,
                      sk_error *err)
{
    /* Without recipients the checks of sk_client_send_rcpts answer. */
    sk_rcpt_spec *spec = rcpts && nrcpt ? sk_calloc(nrcpt, sizeof *spec) : NULL;
    if (rcpts && nrcpt && !spec) {
        sk_error_clear(err);
        if (res) memset(res, 0, sizeof *res);
        return sk_error_set(err, SK_ERR_NOMEM, SK_STEP_MAIL, "out of memory");
    }
    for (size_t i = 0; spec && i < nrcpt; i++) spec[i].address = rcpts[i];
    sk_err e = sk_client_send_rcpts(c, from, spec, spec ? nrcpt : 0, data, len, opts, res, err);
    sk_free(spec);
    return e;
}

sk_err sk_client_send_message(sk_client *c, const sk_message *m, const sk_send_opts *opts,
                              sk_send_result *res, sk_error *err)
{
    sk_error_clear(err);
    if (res) memset(res, 0, sizeof *res);
    if (!c || !m) return sk_error_set(err, SK_ERR_INVAL, SK_STEP_COMPOSE, "no message");
    sk_message_envelope env;
    memset(&env, 0, sizeof env);
    sk_err e = sk_message_get_envelope(m, &env, err);
    if (e) {
        if (err && !err->step) err->step = SK_STEP_COMPOSE;
        return e;
    }
    if (env.recipient_count == 0) {
        sk_message_envelope_clear(&env);
        return sk_error_set(err, SK_ERR_INVAL, SK_STEP_COMPOSE, "the message has no recipients");
    }
    /* The server's SIZE bounds what is worth rendering; else the default. */
    _Static_assert(SK_MESSAGE_RENDER_MAX_OCTETS == 2 * SK_SERVER_MAX_MESSAGE_OCTETS_DEFAULT,
                   "message.h: twice the server's default");
    size_t max = c->ext.size_max ? (size_t)c->ext.size_max + 1 : SK_MESSAGE_RENDER_MAX_OCTETS;
    sk_buf body = SK_BUF_INIT(max);
    e = sk_message_render(m, &body, err);
    if (e == SK_ERR_TOO_LONG && c->ext.size_max) {
        e = sk_error_set(err, SK_ERR_TOO_LONG, SK_STEP_MAIL,
                         "the message exceeds the server's SIZE limit of %llu",
                         (unsigned long long)c->ext.size_max);
        if (err) err->transient = 0;
    } else if (e && err && !err->step) {
        err->step = SK_STEP_COMPOSE;
    }
    if (!e)
        e = sk_client_send(c, env.reverse_path, (const char *const *)env.recipients,
                           env.recipient_count, body.data, body.len, opts, res, err);
    sk_buf_free(&body);
    sk_message_envelope_clear(&env);
    return e;
}

sk_err sk_send(const sk_client_opts *opts, const sk_message *m, sk_error *err)
{
    sk_error_clear(err);
    sk_client *c = sk_client_new(opts);
    if (!c)
        return sk_error_set(err, opts && opts->host ? SK_ERR_NOMEM : SK_ERR_CONFIG, SK_STEP_CONNECT,
                            "cannot create the client (is the host set?)");
    sk_err e = sk_client_connect(c, err);
    if (!e) {
        sk_send_result res;
        e = sk_client_send_message(c, m, NULL, &res, err);
        sk_send_result_free(&res);
        sk_error ignored;
        (void)sk_client_quit(c, &ignored);
    }
    sk_client_free(c);
    return e;
}
