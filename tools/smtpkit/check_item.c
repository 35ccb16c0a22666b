/* smtpkit check: the checklist's items, text from outside made safe to
 * print and to put in JSON, and the DNS lookups the checks share. */
#include "check_int.h"

#include <arpa/inet.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

/* ---- small helpers ---- */

void ck_out_of_memory(void)
{
    fprintf(stderr, "smtpkit check: out of memory\n");
    exit(EX_OSERR);
}

void *ck_xcalloc(size_t n, size_t size)
{
    void *p = sk_calloc(n ? n : 1, size ? size : 1);
    if (!p) ck_out_of_memory();
    return p;
}

char *ck_xstrdup(const char *s)
{
    char *p = sk_strdup(s ? s : "");
    if (!p) ck_out_of_memory();
    return p;
}

void ck_must(sk_err e)
{
    if (e == SK_ERR_NOMEM) ck_out_of_memory();
}

/* UTF-8 character length at s (RFC 3629), 0 when s does not start one. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
    unsigned char c = s[0];
    size_t len = c >= 0xc2 && c <= 0xdf   ? 2
                 : c >= 0xe0 && c <= 0xef ? 3
                 : c >= 0xf0 && c <= 0xf4 ? 4
                                          : 0;
    if (!len || n < len) return 0;
    if ((c == 0xe0 && s[1] < 0xa0) || (c == 0xed && s[1] > 0x9f) || (c == 0xf0 && s[1] < 0x90) ||
        (c == 0xf4 && s[1] > 0x8f))
        return 0;
    for (size_t i = 1; i < len; i++)
        if ((s[i] & 0xc0) != 0x80) return 0;
    return len;
}

/* Text from outside (DNS, a web server, a message) made safe to print and
 * to put in JSON: control characters and octets that are not UTF-8 become
 * \xNN. Idempotent. */
char *ck_printable(const char *s, size_t n)
{
    sk_buf b = SK_BUF_INIT(n * 4 + 1);
    ck_must(sk_buf_reserve(&b, n + 1));
    for (size_t i = 0; i < n;) {
        unsigned char c = (unsigned char)s[i];
        size_t k = c >= 0x80 ? utf8_len((const unsigned char *)s + i, n - i) : 0;
        if (k) {
            ck_must(sk_buf_append(&b, s + i, k));
            i += k;
        } else if (c < 0x20 || c == 0x7f || c >= 0x80) {
            ck_must(sk_buf_printf(&b, "\\x%02x", c));
            i++;
        } else {
            ck_must(sk_buf_putc(&b, (char)c));
            i++;
        }
    }
    ck_must(sk_buf_reserve(&b, 1));
    char *r = sk_buf_detach(&b, NULL);
    return r;
}

static char *vformat(const char *fmt, va_list ap) SK_PRINTF(1, 0);
static char *vformat(const char *fmt, va_list ap)
{
    sk_buf b = SK_BUF_INIT(CHECK_TEXT_MAX_OCTETS);
    sk_err e = sk_buf_vprintf(&b, fmt, ap);
    ck_must(e);
    ck_must(sk_buf_reserve(&b, 1));
    char *raw = sk_buf_detach(&b, NULL);
    char *clean = ck_printable(raw, strlen(raw));
    sk_free(raw);
    return clean;
}

/* A JSON string of text that is already UTF-8. */
json_t *ck_json_stringn_z(const char *s)
{
    json_t *j = json_stringn(s, strlen(s));
    if (!j) ck_out_of_memory();
    return j;
}

/* A JSON string of text that may come from outside. */
json_t *ck_jstr(const char *s)
{
    if (!s) return json_null();
    char *p = ck_printable(s, strlen(s));
    json_t *j = ck_json_stringn_z(p);
    sk_free(p);
    if (!j) ck_out_of_memory();
    return j;
}

/* A JSON string of our own text (line ends and tabs kept), or escaped as
 * jstr when it holds octets that are not UTF-8. */
json_t *ck_jtext(const char *s)
{
    json_t *j = json_stringn(s, strlen(s));
    return j ? j : ck_jstr(s);
}

/* ---- items ---- */

item *ck_add(run *r, const char *check, verdict v, const char *fmt, ...)
{
    if (r->n == r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 32;
        item *n = sk_realloc(r->items, cap * sizeof *n);
        if (!n) ck_out_of_memory();
        r->items = n;
        r->cap = cap;
    }
    item *it = &r->items[r->n++];
    memset(it, 0, sizeof *it);
    it->check = check;
    it->v = v;
    sk_buf_init(&it->more, CHECK_TEXT_MAX_OCTETS);
    va_list ap;
    va_start(ap, fmt);
    it->detail = vformat(fmt, ap);
    va_end(ap);
    it->data = json_object();
    if (!it->data) ck_out_of_memory();
    return it;
}

void ck_fix(item *it, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    sk_free(it->fix);
    it->fix = vformat(fmt, ap);
    va_end(ap);
}

/* One more line of detail. Lines past the item's bound are left out. */
void ck_more(item *it, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *line = vformat(fmt, ap);
    va_end(ap);
    if (sk_buf_puts(&it->more, line) == SK_OK) (void)!sk_buf_putc(&it->more, '\n');
    sk_free(line);
}

void ck_jset(item *it, const char *key, json_t *v)
{
    if (!v || json_object_set_new(it->data, key, v)) ck_out_of_memory();
}

/* A check that a DNS failure kept from an answer. */
item *ck_add_temporary(run *r, const char *check, const char *what, const char *name,
                       const char *type)
{
    item *it = ck_add(r, check, V_FAIL,
                      "%s: the DNS lookup of %s %s failed (server failure or "
                      "timeout)",
                      what, type, name);
    it->temporary = 1;
    ck_fix(it,
           "try again later; if it persists, the domain's name servers are not answering for %s",
           name);
    return it;
}

/* ---- DNS ---- */

static void on_answer(void *ctx, const sk_dns_result *res)
{
    answer *a = ctx;
    a->status = res->status;
    a->n = res->status == SK_DNS_OK ? res->count : 0;
    a->v = ck_xcalloc(a->n, sizeof *a->v);
    a->len = ck_xcalloc(a->n, sizeof *a->len);
    for (size_t i = 0; i < a->n; i++) {
        size_t n = res->lengths ? res->lengths[i] : strlen(res->values[i]);
        a->v[i] = ck_xcalloc(n + 1, 1);
        memcpy(a->v[i], res->values[i], n);
        a->len[i] = n;
    }
}

void ck_answer_free(answer *a)
{
    for (size_t i = 0; i < a->n; i++) sk_free(a->v[i]);
    sk_free(a->v);
    sk_free(a->len);
    memset(a, 0, sizeof *a);
}

/* A resolver that cannot be used (a bad --dns-server) ends the run. */
void ck_dns_config_error(run *r, const sk_error *err)
{
    cli_warn(r->cmd, "%s", err->text[0] ? err->text : "the resolver cannot be used");
    exit(EX_CONFIG);
}

void ck_dns(run *r, const char *name, sk_dns_type type, answer *a)
{
    memset(a, 0, sizeof *a);
    a->status = SK_DNS_TEMPFAIL;
    sk_error err;
    sk_error_clear(&err);
    sk_err e = sk_dns_lookup_sync(&r->ro, name, type, on_answer, a, &err);
    if (e == SK_ERR_CONFIG) ck_dns_config_error(r, &err);
    if (e == SK_ERR_NOMEM) ck_out_of_memory();
}

/* The TXT records at NAME for the check CHECK (WHAT names them for people).
 * When the lookup failed for now, a is freed and the temporary item added is
 * returned: the check ends there. NULL when there is an answer. */
item *ck_txt_or_temporary(run *r, const char *name, const char *check, const char *what, answer *a)
{
    ck_dns(r, name, SK_DNS_TXT, a);
    if (a->status != SK_DNS_TEMPFAIL) return NULL;
    item *it = ck_add_temporary(r, check, what, name, "TXT");
    ck_answer_free(a);
    return it;
}

void ck_addrs_free(addrs *x)
{
    for (size_t i = 0; i < x->n; i++) sk_free(x->ip[i]);
    sk_free(x->ip);
    memset(x, 0, sizeof *x);
}

void ck_lookup_addrs(run *r, const char *name, addrs *out)
{
    answer a4, a6;
    ck_dns(r, name, SK_DNS_A, &a4);
    ck_dns(r, name, SK_DNS_AAAA, &a6);
    memset(out, 0, sizeof *out);
    out->ip = ck_xcalloc(a4.n + a6.n, sizeof *out->ip);
    for (size_t i = 0; i < a4.n; i++) out->ip[out->n++] = ck_xstrdup(a4.v[i]);
    for (size_t i = 0; i < a6.n; i++) out->ip[out->n++] = ck_xstrdup(a6.v[i]);
    if (out->n)
        out->status = SK_DNS_OK;
    else if (a4.status == SK_DNS_TEMPFAIL || a6.status == SK_DNS_TEMPFAIL)
        out->status = SK_DNS_TEMPFAIL;
    else if (a4.status == SK_DNS_NXDOMAIN)
        out->status = SK_DNS_NXDOMAIN;
    else
        out->status = SK_DNS_NODATA;
    ck_answer_free(&a4);
    ck_answer_free(&a6);
}

json_t *ck_json_strings(char *const *v, size_t n)
{
    json_t *a = json_array();
    if (!a) ck_out_of_memory();
    for (size_t i = 0; i < n; i++)
        if (json_array_append_new(a, ck_jstr(v[i]))) ck_out_of_memory();
    return a;
}

/* Two addresses in text form are the same address. */
int ck_same_ip(const char *a, const char *b)
{
    unsigned char x[16], y[16];
    int fa = strchr(a, ':') ? AF_INET6 : AF_INET, fb = strchr(b, ':') ? AF_INET6 : AF_INET;
    if (fa != fb || inet_pton(fa, a, x) != 1 || inet_pton(fb, b, y) != 1) return 0;
    return !memcmp(x, y, fa == AF_INET ? 4 : 16);
}
