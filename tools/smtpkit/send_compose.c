/* smtpkit send: the message, composed from the options (--from, --to,
 * --text, --attach, ...) or taken as given (--message), and its envelope. */
#include "send_int.h"

#include <errno.h>
#include <string.h>
#include <strings.h>

/* ---- The message ------------------------------------------------------ */

static int compose_error(outcome *o, const send_args *a, const char *opt, const char *value,
                         const sk_error *e)
{
    int code = e->err == SK_ERR_NOMEM ? EX_OSERR : EX_DATAERR;
    return sn_fail_early(o, a, code, opt, SK_STEP_COMPOSE, "%s '%s': %s", opt, value,
                         e->text[0] ? e->text : sk_strerror(e->err));
}

/* Read a body file (or "-"); unreadable input is bad data (65). */
static int read_body(outcome *o, const send_args *a, const char *opt, const char *path, char **out)
{
    size_t len;
    *out = cli_read_file(path, &len);
    if (!*out)
        return sn_fail_early(o, a, EX_DATAERR, opt, SK_STEP_COMPOSE, "%s '%s': %s", opt, path,
                             strerror(errno));
    if (strlen(*out) != len)
        return sn_fail_early(o, a, EX_DATAERR, opt, SK_STEP_COMPOSE,
                             "%s '%s': contains a NUL octet", opt, path);
    return -1;
}

static int add_addresses(outcome *o, const send_args *a, sk_message *m, const char *opt,
                         const str_list *l, sk_err (*add)(sk_message *, const char *, sk_error *))
{
    for (size_t i = 0; i < l->n; i++) {
        sk_error e;
        sk_error_clear(&e);
        if (add(m, l->v[i], &e) != SK_OK) return compose_error(o, a, opt, l->v[i], &e);
    }
    return -1;
}

int sn_compose(outcome *o, const send_args *a, prepared *p)
{
    sk_message *m = sk_message_new();
    if (!m) return sn_fail_early(o, a, EX_OSERR, NULL, SK_STEP_COMPOSE, "out of memory");
    int rc = -1;
    char *text = NULL, *html = NULL;
    sk_error e;
    sk_error_clear(&e);
    if (sk_message_set_from(m, a->from, &e) != SK_OK) {
        rc = compose_error(o, a, "--from", a->from, &e);
        goto out;
    }
    if ((rc = add_addresses(o, a, m, "--to", &a->to, sk_message_add_to)) >= 0 ||
        (rc = add_addresses(o, a, m, "--cc", &a->cc, sk_message_add_cc)) >= 0 ||
        (rc = add_addresses(o, a, m, "--bcc", &a->bcc, sk_message_add_bcc)) >= 0)
        goto out;
    if (a->subject && sk_message_set_subject(m, a->subject, &e) != SK_OK) {
        rc = compose_error(o, a, "--subject", a->subject, &e);
        goto out;
    }
    if (a->text) {
        if ((rc = read_body(o, a, "--text", a->text, &text)) >= 0) goto out;
        if (sk_message_set_text(m, text, &e) != SK_OK) {
            rc = compose_error(o, a, "--text", a->text, &e);
            goto out;
        }
    }
    if (a->html) {
        if ((rc = read_body(o, a, "--html", a->html, &html)) >= 0) goto out;
        if (sk_message_set_html(m, html, &e) != SK_OK) {
            rc = compose_error(o, a, "--html", a->html, &e);
            goto out;
        }
    }
    if (!a->text && !a->html && sk_message_set_text(m, "", &e) != SK_OK) {
        rc = compose_error(o, a, "--text", "", &e);
        goto out;
    }
    for (size_t i = 0; i < a->attach.n; i++) {
        /* Any failure to read an attachment is bad input (65), whatever
         * the reason (missing, unreadable, too large). */
        if (sk_message_attach_file(m, a->attach.v[i], NULL, &e) != SK_OK) {
            rc = compose_error(o, a, "--attach", a->attach.v[i], &e);
            goto out;
        }
    }
    for (size_t i = 0; i < a->inline_parts.n; i++) {
        const char *spec = a->inline_parts.v[i], *eq = strchr(spec, '=');
        char *cid = sk_strndup(spec, (size_t)(eq - spec));
        sk_err r = cid ? sk_message_add_inline_file(m, cid, eq + 1, NULL, &e) : SK_ERR_NOMEM;
        sk_free(cid);
        if (r != SK_OK) {
            rc = compose_error(o, a, "--inline", spec, &e);
            goto out;
        }
    }
    for (size_t i = 0; i < a->headers.n; i++) {
        const char *h = a->headers.v[i], *colon = strchr(h, ':');
        char *name = sk_strndup(h, (size_t)(colon - h));
        const char *value = colon + 1;
        while (*value == ' ' || *value == '\t') value++;
        sk_err r = name ? sk_message_add_header(m, name, value, &e) : SK_ERR_NOMEM;
        sk_free(name);
        if (r != SK_OK) {
            rc = compose_error(o, a, "--header", h, &e);
            goto out;
        }
    }
    if (sk_message_render(m, &p->data, &e) != SK_OK ||
        sk_message_get_envelope(m, &p->env, &e) != SK_OK) {
        rc = sn_fail_early(o, a, e.err == SK_ERR_NOMEM ? EX_OSERR : EX_DATAERR, NULL,
                           SK_STEP_COMPOSE, "could not compose the message: %s",
                           e.text[0] ? e.text : sk_strerror(e.err));
        goto out;
    }
    sk_buf id = SK_BUF_INIT(sizeof o->message_id - 1);
    if (sk_message_get_message_id(m, &id) == SK_OK)
        snprintf(o->message_id, sizeof o->message_id, "%s", sk_buf_cstr(&id));
    sk_buf_free(&id);
out:
    sk_free(text);
    sk_free(html);
    sk_message_free(m);
    return rc;
}

/* The Message-ID field of a prepared message, for the report. */
static void find_message_id(const char *raw, size_t len, char *out, size_t outsz)
{
    const char *p = raw, *end = raw + len;
    while (p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        size_t n = eol ? (size_t)(eol - p) : (size_t)(end - p);
        if (n == 0 || (n == 1 && p[0] == '\r')) return; /* end of the header */
        if (n > 11 && !strncasecmp(p, "Message-ID:", 11)) {
            const char *v = p + 11;
            while (v < p + n && (*v == ' ' || *v == '\t')) v++;
            size_t vn = (size_t)(p + n - v);
            while (vn && (v[vn - 1] == '\r' || v[vn - 1] == ' ')) vn--;
            if (vn < outsz) {
                memcpy(out, v, vn);
                out[vn] = '\0';
            }
            return;
        }
        p += n + 1;
    }
}

int sn_prepare_raw(outcome *o, const send_args *a, prepared *p)
{
    size_t len;
    char *raw = cli_read_file(a->message, &len);
    if (!raw)
        return sn_fail_early(o, a, EX_DATAERR, "--message", SK_STEP_COMPOSE, "--message '%s': %s",
                             a->message, strerror(errno));
    int rc = -1;
    sk_error e;
    sk_error_clear(&e);
    int need_rcpts = a->to.n + a->cc.n + a->bcc.n == 0;
    if ((need_rcpts || !a->from) && sk_message_parse_envelope(raw, len, &p->env, &e) != SK_OK) {
        rc = compose_error(o, a, "--message", a->message, &e);
        goto out;
    }
    if (need_rcpts && p->env.recipient_count == 0) {
        rc =
            sn_fail_early(o, a, EX_DATAERR, "--message", SK_STEP_COMPOSE,
                          "--message '%s': no recipients in To, Cc or Bcc (give --to)", a->message);
        goto out;
    }
    if (sk_message_prepare_raw(raw, len, &p->data, &e) != SK_OK) {
        rc = compose_error(o, a, "--message", a->message, &e);
        goto out;
    }
    find_message_id(raw, len, o->message_id, sizeof o->message_id);
out:
    sk_free(raw);
    return rc;
}

/* Envelope addresses given on the command line (--from with --message,
 * and --to/--cc/--bcc): their addr-specs. */
int sn_flag_envelope(outcome *o, const send_args *a, prepared *p)
{
    sk_error e;
    sk_mailbox mb;
    if (a->from) {
        sk_error_clear(&e);
        if (sk_mailbox_parse(a->from, &mb, &e) != SK_OK)
            return compose_error(o, a, "--from", a->from, &e);
        p->from_addr = sk_strdup(mb.addr);
        sk_mailbox_clear(&mb);
        if (!p->from_addr) return sn_fail_early(o, a, EX_OSERR, NULL, SK_STEP_COMPOSE, "no memory");
    }
    size_t n = a->to.n + a->cc.n + a->bcc.n;
    if (n == 0) return -1;
    /* Replace whatever the headers said: the flags are the envelope. */
    for (size_t i = 0; i < p->env.recipient_count; i++) sk_free(p->env.recipients[i]);
    sk_free(p->env.recipients);
    p->env.recipients = sk_calloc(n, sizeof *p->env.recipients);
    p->env.recipient_count = 0;
    if (!p->env.recipients)
        return sn_fail_early(o, a, EX_OSERR, NULL, SK_STEP_COMPOSE, "no memory");
    const str_list *lists[] = {&a->to, &a->cc, &a->bcc};
    const char *names[] = {"--to", "--cc", "--bcc"};
    for (size_t l = 0; l < 3; l++)
        for (size_t i = 0; i < lists[l]->n; i++) {
            sk_error_clear(&e);
            if (sk_mailbox_parse(lists[l]->v[i], &mb, &e) != SK_OK)
                return compose_error(o, a, names[l], lists[l]->v[i], &e);
            /* One RCPT per address, as the composer does for its own. */
            int dup = 0;
            for (size_t k = 0; k < p->env.recipient_count && !dup; k++)
                dup = !strcmp(p->env.recipients[k], mb.addr);
            if (!dup) {
                p->env.recipients[p->env.recipient_count++] = mb.addr;
                mb.addr = NULL;
            }
            sk_mailbox_clear(&mb);
        }
    return -1;
}
