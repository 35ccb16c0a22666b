/* The probe's SMTP checks: EHLO and what each extension offered means,
 * STARTTLS, AUTH, and the envelope (MAIL, RCPT, RSET). */
#include "client/probe_int.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

static const struct {
    const char *keyword, *meaning;
} ext_meanings[] = {
    {"PIPELINING", "commands can be sent in batches (RFC 2920): faster sending"},
    {"SMTPUTF8", "UTF-8 addresses and headers accepted (RFC 6531)"},
    {"STARTTLS", "the connection can be upgraded to TLS (RFC 3207)"},
    {"CHUNKING", "BDAT transfers without dot-stuffing (RFC 3030)"},
    {"BINARYMIME", "binary message bodies (RFC 3030)"},
    {"DSN", "delivery status notifications on request (RFC 3461)"},
    {"8BITMIME", "8-bit message bodies (RFC 6152)"},
    {"ENHANCEDSTATUSCODES", "replies carry x.y.z status codes (RFC 2034, RFC 3463)"},
    {"MT-PRIORITY", "message priorities (RFC 6710)"},
    {"REQUIRETLS", "messages can demand TLS on every hop (RFC 8689)"},
    {"VRFY", "addresses can be verified (RFC 5321 3.5)"},
    {"ETRN", "remote queue start (RFC 1985)"},
    {"HELP", "help text"},
    {"DELIVERBY", "delivery deadlines (RFC 2852)"},
};

/* One extension line ("SIZE 35882577") explained. */
static void explain_extension(sk_probe_ext *x, const char *line, size_t n, int tls_active)
{
    size_t k = 0;
    while (k < n && line[k] != ' ' && k + 1 < sizeof x->keyword) {
        char ch = line[k];
        x->keyword[k] = ch >= 'a' && ch <= 'z' ? (char)(ch - 'a' + 'A') : ch;
        k++;
    }
    x->keyword[k] = '\0';
    while (k < n && line[k] == ' ') k++;
    snprintf(x->params, sizeof x->params, "%.*s", (int)(n - k), line + k);
    if (!strcmp(x->keyword, "SIZE")) {
        unsigned long long sz = strtoull(x->params, NULL, 10);
        if (sz)
            snprintf(x->meaning, sizeof x->meaning,
                     "messages up to %.1f MB (%llu octets, RFC 1870)", (double)sz / 1e6, sz);
        else
            snprintf(x->meaning, sizeof x->meaning,
                     "no fixed message size limit announced (RFC 1870)");
    } else if (!strcmp(x->keyword, "AUTH")) {
        snprintf(x->meaning, sizeof x->meaning, "login with %s (RFC 4954)%s", x->params,
                 tls_active ? "" : "; offered before TLS");
    } else {
        snprintf(x->meaning, sizeof x->meaning, "not explained here");
        for (size_t i = 0; i < sizeof ext_meanings / sizeof ext_meanings[0]; i++)
            if (!strcmp(x->keyword, ext_meanings[i].keyword))
                snprintf(x->meaning, sizeof x->meaning, "%s", ext_meanings[i].meaning);
    }
}

/* Does a space-separated AUTH list hold a mechanism that sends the password
 * itself (RFC 4616 PLAIN, LOGIN)? */
static int offers_cleartext_auth(const char *mechs)
{
    char buf[sizeof((sk_ehlo_info *)0)->auth];
    snprintf(buf, sizeof buf, "%s", mechs);
    char *save = NULL;
    for (char *m = strtok_r(buf, " ", &save); m; m = strtok_r(NULL, " ", &save))
        if (!strcasecmp(m, "PLAIN") || !strcasecmp(m, "LOGIN")) return 1;
    return 0;
}

/* The extensions of the EHLO reply into the step (storage in the probe). */
static void keep_extensions(run *r, sk_probe_step *s)
{
    const char *lines = sk_client_ehlo_lines(r->c);
    const char *nl = strchr(lines, '\n');
    size_t count = 0;
    for (const char *l = nl ? nl + 1 : ""; *l; l++)
        if (*l == '\n') count++;
    if (nl && nl[1]) count++;
    if (!count) return;
    if (r->p->nexts_used == sizeof r->p->exts / sizeof r->p->exts[0]) {
        s->truncated = 1;
        return;
    }
    sk_probe_ext *xs = sk_calloc(count, sizeof *xs);
    if (!xs) {
        s->truncated = 1;
        return;
    }
    r->p->exts[r->p->nexts_used++] = xs;
    size_t i = 0;
    for (const char *l = nl + 1; *l && i < count;) {
        const char *end = strchr(l, '\n');
        size_t n = end ? (size_t)(end - l) : strlen(l);
        if (n) explain_extension(&xs[i++], l, n, sk_client_is_tls(r->c));
        l += n + (end ? 1 : 0);
    }
    s->extensions = xs;
    s->nextensions = i;
}

int pr_check_ehlo(run *r, int after_tls, sk_err rc, const sk_error *e)
{
    sk_client *c = r->c;
    sk_probe_step *s = pr_step_begin(r, SK_PROBE_EHLO);
    if (rc != SK_OK) {
        if (e->code) {
            pr_step_error_reply(s, e);
            pr_step_detail(s, "%d %s%s%s", e->code, e->enhanced, e->enhanced[0] ? " " : "",
                           e->text);
        } else {
            pr_step_detail(s, "EHLO failed: %s", e->text[0] ? e->text : sk_strerror(rc));
            s->explanation = e->hint;
        }
        return pr_step_fail(r, s, e, rc);
    }
    const sk_ehlo_info *x = sk_client_extensions(c);
    snprintf(s->server_name, sizeof s->server_name, "%s", x ? x->domain : "");
    s->esmtp = x && x->esmtp;
    keep_extensions(r, s);
    if (x && !x->esmtp) {
        pr_step_detail(s, "EHLO refused, HELO accepted: no ESMTP, so no STARTTLS, AUTH or SIZE");
        pr_step_hint(s, "an old or minimal server; sending may work, but without TLS");
        pr_step_end(r, s, SK_PROBE_WARN);
        return 0;
    }
    size_t count = s->nextensions;
    pr_step_detail(s, "%s offers %zu extension%s%s", x && x->domain[0] ? x->domain : "the server",
                   count, count == 1 ? "" : "s", after_tls ? " after TLS" : "");
    if (x && !sk_client_is_tls(c) && offers_cleartext_auth(x->auth)) {
        /* RFC 4954 4: servers must be able to withhold plaintext password
         * mechanisms until TLS protects the session. */
        s->explanation = "AUTH with PLAIN or LOGIN is offered on a connection without TLS: a "
                         "client that uses it sends the password in clear";
        pr_step_hint(s, "the server should offer these mechanisms only after STARTTLS (or on "
                        "implicit TLS, port 465)");
        pr_step_end(r, s, SK_PROBE_WARN);
        return 0;
    }
    pr_step_end(r, s, SK_PROBE_PASS);
    return 0;
}

int pr_check_starttls(run *r)
{
    sk_client *c = r->c;
    const sk_option_names *n = &r->names;
    const sk_ehlo_info *x = sk_client_extensions(c);
    int offered = x && (x->ext & SK_CLIENT_EXT_STARTTLS);
    sk_probe_step *s = pr_step_begin(r, SK_PROBE_TLS);
    if (c->o.tls == SK_TLS_NONE) {
        if (offered) {
            pr_step_detail(s, "not tried (%s), but the server offers STARTTLS", n->tls_none);
            pr_step_hint(s,
                         "use %s: without TLS, mail and passwords cross the network "
                         "in clear",
                         n->tls_starttls);
        } else {
            pr_step_detail(s, "no TLS: the server does not offer STARTTLS");
            pr_step_hint(s, "fine on a trusted network only; the operator should configure a "
                            "certificate");
        }
        pr_step_end(r, s, SK_PROBE_WARN);
        return 0;
    }
    if (!offered) {
        if (c->o.tls == SK_TLS_STARTTLS_OPPORTUNISTIC) {
            pr_step_detail(s,
                           "no TLS: the server does not offer STARTTLS (opportunistic: going on)");
            pr_step_hint(s, "the operator should configure a certificate");
            pr_step_end(r, s, SK_PROBE_WARN);
            return 0;
        }
        pr_step_detail(s, "the server does not offer STARTTLS");
        pr_step_hint_shared(r, s, CL_HINT_NO_STARTTLS);
        return pr_step_fail(r, s, NULL, SK_ERR_UNSUPPORTED);
    }
    sk_error e;
    sk_error_clear(&e);
    uint64_t t0 = sk_now_ms();
    sk_err rc = sk_client_starttls(c, &e);
    s->elapsed_ms = (long)(sk_now_ms() - t0);
    if (rc != SK_OK && sk_reply_class_of(e.code) >= SK_REPLY_TRANSIENT && e.step != SK_STEP_EHLO) {
        pr_step_error_reply(s, &e);
        pr_step_detail(s, "STARTTLS refused: %d %s%s%s", e.code, e.enhanced,
                       e.enhanced[0] ? " " : "", e.text);
        return pr_step_fail(r, s, &e, rc);
    }
    const sk_tls_info *ti = sk_client_tls_info(c);
    if (pr_report_tls(r, s, ti, rc, &e) < 0) return -1;
    /* RFC 3207 4.2: the client must EHLO again; the library did, and its
     * failure is reported as that step's. */
    return pr_check_ehlo(r, 1, rc, &e);
}

int pr_check_auth(run *r)
{
    sk_client *c = r->c;
    const sk_option_names *n = &r->names;
    sk_probe_step *s = pr_step_begin(r, SK_PROBE_AUTH);
    sk_error e;
    sk_error_clear(&e);
    uint64_t t0 = sk_now_ms();
    sk_err rc = sk_client_authenticate(c, &e);
    s->elapsed_ms = (long)(sk_now_ms() - t0);
    if (rc == SK_OK) {
        s->mechanism = sk_sasl_mech_name(sk_client_auth_mech(c));
        pr_step_detail(s, "credentials accepted (mechanism %s)", s->mechanism);
        pr_step_end(r, s, SK_PROBE_PASS);
        return 0;
    }
    if (e.code) {
        pr_step_error_reply(s, &e);
        pr_step_detail(s, "credentials not accepted: %d %s%s%s", e.code, e.enhanced,
                       e.enhanced[0] ? " " : "", e.text);
    } else {
        pr_step_detail(s, "authentication not possible: %s", e.text[0] ? e.text : sk_strerror(rc));
        s->explanation = e.hint;
        if (!sk_client_is_tls(c))
            pr_step_hint(s, "probe with %s or %s: credentials are never sent without TLS",
                         n->tls_starttls, n->tls_implicit);
    }
    sk_err kind = sk_reply_class_of(e.code) == SK_REPLY_TRANSIENT ? SK_ERR_TEMPFAIL
                  : rc == SK_ERR_CONFIG || rc == SK_ERR_STATE     ? rc
                                                                  : SK_ERR_AUTH;
    return pr_step_fail(r, s, &e, kind);
}

/* A refused or failed MAIL or RCPT: the reply, or the error's. */
static int envelope_fail(run *r, sk_probe_step *s, const char *verb, const char *addr,
                         const sk_reply *rp, sk_err rc, const sk_error *e)
{
    if (rp->code)
        pr_step_reply(s, rp);
    else if (e->code)
        pr_step_error_reply(s, e);
    if (s->reply.code)
        pr_step_detail(s, "%s:<%s> refused: %d %s%s%s", verb, addr, s->reply.code,
                       s->reply.enhanced, s->reply.enhanced[0] ? " " : "", s->reply.text);
    else
        pr_step_detail(s, "%s:<%s> failed: %s", verb, addr, e->text);
    return pr_step_fail(r, s, e, rc);
}

int pr_check_envelope(run *r)
{
    sk_client *c = r->c;
    const sk_probe_opts *po = r->po;
    sk_reply rp;
    sk_error e;
    sk_probe_step *s = pr_step_begin(r, SK_PROBE_MAIL);
    memset(&rp, 0, sizeof rp);
    sk_error_clear(&e);
    sk_err rc = sk_client_mail(c, po->from, NULL, &rp, &e);
    if (rc != SK_OK) return envelope_fail(r, s, "MAIL FROM", po->from, &rp, rc, &e);
    pr_step_reply(s, &rp);
    pr_step_detail(s, "MAIL FROM:<%s>: %d %s%s%s", po->from, rp.code, rp.enhanced,
                   rp.enhanced[0] ? " " : "", rp.text);
    pr_step_end(r, s, SK_PROBE_PASS);

    for (size_t i = 0; i < po->nto; i++) {
        s = pr_step_begin(r, SK_PROBE_RCPT);
        snprintf(s->recipient, sizeof s->recipient, "%s", po->to[i]);
        memset(&rp, 0, sizeof rp);
        sk_error_clear(&e);
        rc = sk_client_rcpt(c, po->to[i], NULL, &rp, &e);
        if (rc != SK_OK) return envelope_fail(r, s, "RCPT TO", po->to[i], &rp, rc, &e);
        pr_step_reply(s, &rp);
        pr_step_detail(s, "RCPT TO:<%s>: %d %s%s%s", po->to[i], rp.code, rp.enhanced,
                       rp.enhanced[0] ? " " : "", rp.text);
        pr_step_end(r, s, SK_PROBE_PASS);
    }

    /* Nothing is sent: the transaction is reset (RFC 5321 4.1.1.5). */
    s = pr_step_begin(r, SK_PROBE_RSET);
    sk_error_clear(&e);
    rc = sk_client_rset(c, &e);
    if (rc != SK_OK) {
        if (e.code) pr_step_error_reply(s, &e);
        pr_step_detail(s, "RSET failed: %s", e.text);
        return pr_step_fail(r, s, &e, rc);
    }
    pr_step_detail(s, "transaction reset; nothing was sent");
    pr_step_end(r, s, SK_PROBE_PASS);
    return 0;
}
