/* The message composer: a builder that collects addresses, text, parts and
 * header fields, and renders them as one RFC 5322 / MIME message. */
#include "mime/mime_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

typedef struct part {
    char *filename; /* UTF-8 */
    char *type;     /* media type, maybe with parameters */
    char *cid;      /* inline parts: Content-ID without angle brackets */
    unsigned char *data;
    size_t len;
} part;

typedef struct field {
    char *name;
    char *value;
} field;

typedef struct mbox_vec {
    sk_mailbox *v;
    size_t n, cap;
} mbox_vec;

struct sk_message {
    sk_mailbox from, sender, reply_to; /* addr NULL: not set */
    mbox_vec to, cc, bcc;
    char **rcpts; /* envelope recipients, without duplicates */
    size_t nrcpts, rcpts_cap;
    char *subject, *text, *html;
    part *atts, *inl;
    size_t natts, atts_cap, ninl, inl_cap;
    field *fields;
    size_t nfields, fields_cap;
    char *message_id; /* set by the caller, without angle brackets */
    char id_random[33];
    int64_t date;
    bool has_date;
};

sk_message *sk_message_new(void)
{
    sk_message *m = sk_calloc(1, sizeof *m);
    if (!m) return NULL;
    /* RFC 5322 3.6.4: the left part must be unique; 128 random bits are. */
    unsigned char r[16];
    if (sk_random(r, sizeof r) != SK_OK) {
        sk_free(m);
        return NULL;
    }
    sk_hex_encode(m->id_random, r, sizeof r, false);
    return m;
}

static void part_clear(part *p)
{
    sk_free(p->filename);
    sk_free(p->type);
    sk_free(p->cid);
    sk_free(p->data);
}

static void mbox_vec_clear(mbox_vec *v)
{
    for (size_t i = 0; i < v->n; i++) sk_mailbox_clear(&v->v[i]);
    sk_free(v->v);
}

void sk_message_free(sk_message *m)
{
    if (!m) return;
    sk_mailbox_clear(&m->from);
    sk_mailbox_clear(&m->sender);
    sk_mailbox_clear(&m->reply_to);
    mbox_vec_clear(&m->to);
    mbox_vec_clear(&m->cc);
    mbox_vec_clear(&m->bcc);
    for (size_t i = 0; i < m->nrcpts; i++) sk_free(m->rcpts[i]);
    sk_free(m->rcpts);
    sk_free(m->subject);
    sk_free(m->text);
    sk_free(m->html);
    for (size_t i = 0; i < m->natts; i++) part_clear(&m->atts[i]);
    sk_free(m->atts);
    for (size_t i = 0; i < m->ninl; i++) part_clear(&m->inl[i]);
    sk_free(m->inl);
    for (size_t i = 0; i < m->nfields; i++) {
        sk_free(m->fields[i].name);
        sk_free(m->fields[i].value);
    }
    sk_free(m->fields);
    sk_free(m->message_id);
    sk_free(m);
}

static sk_err nomem(sk_error *err)
{
    return sk_error_set(err, SK_ERR_NOMEM, SK_STEP_COMPOSE, "out of memory");
}

/* Header text supplied by the caller: present, no CR or LF, UTF-8. */
static sk_err check_header_text(const char *s, const char *what, sk_error *err)
{
    if (!s) return sk_error_set(err, SK_ERR_INVAL, SK_STEP_COMPOSE, "%s missing", what);
    if (sk_mime_has_crlf(s))
        return sk_error_set(err, SK_ERR_INVAL, SK_STEP_COMPOSE,
                            "%s contains CR or LF (header injection refused)", what);
    if (!sk_mime_utf8_valid(s, strlen(s)))
        return sk_error_set(err, SK_ERR_INVAL, SK_STEP_COMPOSE, "%s is not UTF-8", what);
    return SK_OK;
}

static sk_err set_mailbox(sk_mailbox *dst, const char *s, const char *what, sk_error *err)
{
    if (!s) return sk_error_set(err, SK_ERR_INVAL, SK_STEP_COMPOSE, "%s missing", what);
    sk_mailbox mb;
    sk_err e = sk_mailbox_parse(s, &mb, err);
    if (e) return e;
    sk_mailbox_clear(dst);
    *dst = mb;
    return SK_OK;
}

sk_err sk_message_set_from(sk_message *m, const char *mailbox, sk_error *err)
{
    return set_mailbox(&m->from, mailbox, "From", err);
}

sk_err sk_message_set_sender(sk_message *m, const char *mailbox, sk_error *err)
{
    return set_mailbox(&m->sender, mailbox, "Sender", err);
}

sk_err sk_message_set_reply_to(sk_message *m, const char *mailbox, sk_error *err)
{
    return set_mailbox(&m->reply_to, mailbox, "Reply-To", err);
}

static sk_err add_recipient(sk_message *m, mbox_vec *v, const char *s, sk_error *err)
{
    if (!s) return sk_error_set(err, SK_ERR_INVAL, SK_STEP_COMPOSE, "recipient missing");
    sk_mailbox mb;
    sk_err e = sk_mailbox_parse(s, &mb, err);
    if (e) return e;
    bool dup = false;
    for (size_t i = 0; i < m->nrcpts && !dup; i++) dup = sk_mime_addr_equal(m->rcpts[i], mb.addr);
    char *copy = dup ? NULL : sk_strdup(mb.addr);
    if ((!dup && !copy) ||
        sk_array_grow(&v->v, &v->cap, v->n + 1, sizeof *v->v, SK_ARRAY_UNBOUNDED) ||
        (!dup && sk_array_grow(&m->rcpts, &m->rcpts_cap, m->nrcpts + 1, sizeof *m->rcpts,
                               SK_ARRAY_UNBOUNDED))) {
        sk_free(copy);
        sk_mailbox_clear(&mb);
        return nomem(err);
    }
    v->v[v->n++] = mb;
    if (!dup) m->rcpts[m->nrcpts++] = copy;
    return SK_OK;
}

sk_err sk_message_add_to(sk_message *m, const char *mailbox, sk_error *err)
{
    return add_recipient(m, &m->to, mailbox, err);
}

sk_err sk_message_add_cc(sk_message *m, const char *mailbox, sk_error *err)
{
    return add_recipient(m, &m->cc, mailbox, err);
}

sk_err sk_message_add_bcc(sk_message *m, const char *mailbox, sk_error *err)
{
    return add_recipient(m, &m->bcc, mailbox, err);
}

static sk_err replace_string(char **dst, const char *s, sk_error *err)
{
    char *copy = sk_strdup(s);
    if (!copy) return nomem(err);
    sk_free(*dst);
    *dst = copy;
    return SK_OK;
}

sk_err sk_message_set_subject(sk_message *m, const char *subject, sk_error *err)
{
    sk_err e = check_header_text(subject, "Subject", err);
    return e ? e : replace_string(&m->subject, subject, err);
}

static sk_err set_body(char **dst, const char *s, const char *what, sk_error *err)
{
    if (!s) return sk_error_set(err, SK_ERR_INVAL, SK_STEP_COMPOSE, "%s body missing", what);
    if (!sk_mime_utf8_valid(s, strlen(s)))
        return sk_error_set(err, SK_ERR_INVAL, SK_STEP_COMPOSE, "%s body is not UTF-8", what);
    return replace_string(dst, s, err);
}

sk_err sk_message_set_text(sk_message *m, const char *text, sk_error *err)
{
    return set_body(&m->text, text, "text", err);
}

sk_err sk_message_set_html(sk_message *m, const char *html, sk_error *err)
{
    return set_body(&m->html, html, "HTML", err);
}

/* RFC 2045 5.1 token characters. */
static bool is_token_char(unsigned char c)
{
    return c > ' ' && c < 0x7f && !strchr("()<>@,;:\\\"/[]?=", c);
}

/* "type/subtype" followed by optional "; param=value" text. */
static sk_err check_content_type(const char *t, sk_error *err)
{
    if (sk_mime_has_crlf(t))
        return sk_error_set(err, SK_ERR_INVAL, SK_STEP_COMPOSE,
                            "content type contains CR or LF (header injection refused)");
    const char *p = t;
    size_t a = 0, b = 0;
    while (is_token_char((unsigned char)*p)) p++, a++;
    if (*p == '/') {
        p++;
        while (is_token_char((unsigned char)*p)) p++, b++;
    }
    /* Long enough for any registered type with a parameter or two; a
     * longer one could not be folded within 998 octets. */
    bool ok = a && b && (*p == '\0' || *p == ';') && strlen(t) <= 200;
    for (; ok && *p; p++) ok = (unsigned char)*p >= ' ' && (unsigned char)*p < 0x7f;
    if (!ok)
        return sk_error_set(err, SK_ERR_INVAL, SK_STEP_COMPOSE, "malformed content type \"%s\"", t);
    return SK_OK;
}

static sk_err check_filename(const char *f, sk_error *err)
{
    sk_err e = check_header_text(f, "file name", err);
    if (e) return e;
    bool ok = *f != '\0' && strchr(f, '/') == NULL;
    for (const char *p = f; ok && *p; p++) ok = (unsigned char)*p >= ' ' && *p != 0x7f;
    if (!ok)
        return sk_error_set(err, SK_ERR_INVAL, SK_STEP_COMPOSE, "unusable file name \"%s\"", f);
    return SK_OK;
}

/* RFC 5322 3.6.4 msg-id content "id-left@id-right" (also Content-ID,
 * RFC 2392): dot-atom-text "@" (dot-atom-text / "[" dtext "]"). */
static bool msg_id_valid(const char *s, size_t n)
{
    const char *at = memchr(s, '@', n);
    if (!at || at == s) return false;
    size_t l = (size_t)(at - s), r = n - l - 1;
    if (!sk_mime_is_ascii(s, n)) return false;
    bool ok = s[0] != '.' && s[l - 1] != '.';
    for (size_t i = 0; ok && i < l; i++)
        ok = sk_is_atext((unsigned char)s[i]) || (s[i] == '.' && s[i + 1] != '.');
    const char *d = at + 1;
    if (!ok || r == 0) return false;
    if (d[0] == '[') {
        if (r < 2 || d[r - 1] != ']') return false;
        for (size_t i = 1; i + 1 < r; i++)
            if (d[i] <= ' ' || d[i] >= 0x7f || d[i] == '[' || d[i] == ']' || d[i] == '\\')
                return false;
        return true;
    }
    if (d[0] == '.' || d[r - 1] == '.') return false;
    for (size_t i = 0; i < r; i++)
        if (!(sk_is_atext((unsigned char)d[i]) || (d[i] == '.' && d[i + 1] != '.'))) return false;
    return true;
}

/* id with optional angle brackets; start and len give the bare id. */
static sk_err check_msg_id(const char *id, const char *what, const char **start, size_t *len,
                           sk_error *err)
{
    if (!id) return sk_error_set(err, SK_ERR_INVAL, SK_STEP_COMPOSE, "%s missing", what);
    if (sk_mime_has_crlf(id))
        return sk_error_set(err, SK_ERR_INVAL, SK_STEP_COMPOSE,
                            "%s contains CR or LF (header injection refused)", what);
    size_t n = strlen(id);
    if (n >= 2 && id[0] == '<' && id[n - 1] == '>') id++, n -= 2;
    if (!msg_id_valid(id, n) || n > SK_MIME_LINE_SOFT_OCTETS - 14)
        return sk_error_set(err, SK_ERR_SYNTAX, SK_STEP_COMPOSE,
                            "%s must look like left@right: \"%.*s\"", what, (int)n, id);
    *start = id;
    *len = n;
    return SK_OK;
}

static sk_err add_part(part **v, size_t *n, size_t *cap, const char *filename, const void *data,
                       size_t len, const char *type, const char *cid, size_t cidlen, sk_error *err)
{
    sk_err e = check_filename(filename, err);
    if (!e && type) e = check_content_type(type, err);
    if (e) return e;
    if (len > SK_MIME_ATTACHMENT_MAX_OCTETS)
        return sk_error_set(err, SK_ERR_TOO_LONG, SK_STEP_COMPOSE, "\"%s\" is over %u octets",
                            filename, SK_MIME_ATTACHMENT_MAX_OCTETS);
    part p = {sk_strdup(filename), sk_strdup(type ? type : sk_mime_type_for_filename(filename)),
              cid ? sk_strndup(cid, cidlen) : NULL, sk_malloc(len), len};
    if (!p.filename || !p.type || (cid && !p.cid) || !p.data ||
        sk_array_grow(v, cap, *n + 1, sizeof **v, SK_ARRAY_UNBOUNDED)) {
        part_clear(&p);
        return nomem(err);
    }
    if (len) memcpy(p.data, data, len);
    (*v)[(*n)++] = p;
    return SK_OK;
}

sk_err sk_message_attach_data(sk_message *m, const char *filename, const void *data, size_t len,
                              const char *content_type, sk_error *err)
{
    if (!data && len) return sk_error_set(err, SK_ERR_INVAL, SK_STEP_COMPOSE, "no data");
    return add_part(&m->atts, &m->natts, &m->atts_cap, filename, data, len, content_type, NULL, 0,
                    err);
}

sk_err sk_message_add_inline_data(sk_message *m, const char *cid, const char *filename,
                                  const void *data, size_t len, const char *content_type,
                                  sk_error *err)
{
    const char *id;
    size_t idlen;
    sk_err e = check_msg_id(cid, "Content-ID", &id, &idlen, err);
    if (e) return e;
    if (!data && len) return sk_error_set(err, SK_ERR_INVAL, SK_STEP_COMPOSE, "no data");
    return add_part(&m->inl, &m->ninl, &m->inl_cap, filename, data, len, content_type, id, idlen,
                    err);
}

/* Read a whole file, bounded by SK_MIME_ATTACHMENT_MAX_OCTETS. */
static sk_err read_file(const char *path, sk_buf *out, sk_error *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return sk_error_set(err, sk_err_from_errno(errno, SK_FILE_READ), SK_STEP_COMPOSE,
                            "cannot open \"%s\": %s", path, strerror(errno));
    sk_err e = sk_buf_read_fd(out, fd, SK_BUF_READ_ALL);
    close(fd);
    if (e == SK_ERR_TOO_LONG)
        return sk_error_set(err, e, SK_STEP_COMPOSE, "\"%s\" is over %u octets", path,
                            SK_MIME_ATTACHMENT_MAX_OCTETS);
    if (e == SK_ERR_IO) return sk_error_set(err, e, SK_STEP_COMPOSE, "cannot read \"%s\"", path);
    if (e) return nomem(err);
    return SK_OK;
}

static const char *base_name(const char *path)
{
    const char *slash = strrchr(path, '/');
    return slash ? slash + 1 : path;
}

sk_err sk_message_attach_file(sk_message *m, const char *path, const char *content_type,
                              sk_error *err)
{
    if (!path) return sk_error_set(err, SK_ERR_INVAL, SK_STEP_COMPOSE, "no path");
    sk_err e = check_filename(base_name(path), err);
    if (!e && content_type) e = check_content_type(content_type, err);
    if (e) return e;
    sk_buf b = SK_BUF_INIT(SK_MIME_ATTACHMENT_MAX_OCTETS);
    e = read_file(path, &b, err);
    if (!e)
        e = sk_message_attach_data(m, base_name(path), b.data ? b.data : "", b.len, content_type,
                                   err);
    sk_buf_free(&b);
    return e;
}

sk_err sk_message_add_inline_file(sk_message *m, const char *cid, const char *path,
                                  const char *content_type, sk_error *err)
{
    if (!path) return sk_error_set(err, SK_ERR_INVAL, SK_STEP_COMPOSE, "no path");
    const char *id;
    size_t idlen;
    sk_err e = check_msg_id(cid, "Content-ID", &id, &idlen, err);
    if (!e) e = check_filename(base_name(path), err);
    if (e) return e;
    sk_buf b = SK_BUF_INIT(SK_MIME_ATTACHMENT_MAX_OCTETS);
    e = read_file(path, &b, err);
    if (!e)
        e = sk_message_add_inline_data(m, cid, base_name(path), b.data ? b.data : "", b.len,
                                       content_type, err);
    sk_buf_free(&b);
    return e;
}

/* Fields the composer writes itself; a second copy would be ambiguous. */
static bool reserved_field(const char *name)
{
    static const char *const names[] = {"From", "To",     "Cc",       "Bcc",        "Subject",
                                        "Date", "Sender", "Reply-To", "Message-ID", "MIME-Version"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (strcasecmp(name, names[i]) == 0) return true;
    return sk_strcaseprefix(name, "Content-");
}

sk_err sk_message_add_header(sk_message *m, const char *name, const char *value, sk_error *err)
{
    sk_err e = check_header_text(name, "header name", err);
    if (!e) e = check_header_text(value, "header value", err);
    if (e) return e;
    /* RFC 5322 3.6.8: field names are printable ASCII except ':'. */
    bool ok = *name && strlen(name) < SK_MIME_LINE_SOFT_OCTETS - 2;
    for (const char *p = name; ok && *p; p++) ok = *p >= 33 && *p <= 126 && *p != ':';
    if (!ok)
        return sk_error_set(err, SK_ERR_INVAL, SK_STEP_COMPOSE, "malformed header name \"%s\"",
                            name);
    if (reserved_field(name))
        return sk_error_set(err, SK_ERR_INVAL, SK_STEP_COMPOSE,
                            "%s is written by the composer; use its setter", name);
    /* ASCII words are kept whole: one must fit on a line (RFC 5322 2.1.1). */
    for (const char *p = value; *p;) {
        size_t n = strcspn(p, " \t");
        if (strlen(name) + 2 + n > SK_MIME_LINE_MAX_OCTETS)
            return sk_error_set(err, SK_ERR_TOO_LONG, SK_STEP_COMPOSE,
                                "a word of %s is too long for a line of 998 octets", name);
        p += n;
        p += strspn(p, " \t");
    }
    field f = {sk_strdup(name), sk_strdup(value)};
    if (!f.name || !f.value ||
        sk_array_grow(&m->fields, &m->fields_cap, m->nfields + 1, sizeof f, SK_ARRAY_UNBOUNDED)) {
        sk_free(f.name);
        sk_free(f.value);
        return nomem(err);
    }
    m->fields[m->nfields++] = f;
    return SK_OK;
}

sk_err sk_message_set_message_id(sk_message *m, const char *id, sk_error *err)
{
    const char *start;
    size_t len;
    sk_err e = check_msg_id(id, "Message-ID", &start, &len, err);
    if (e) return e;
    char *copy = sk_strndup(start, len);
    if (!copy) return nomem(err);
    sk_free(m->message_id);
    m->message_id = copy;
    return SK_OK;
}

void sk_message_set_date(sk_message *m, int64_t unix_seconds)
{
    m->date = unix_seconds;
    m->has_date = true;
}

/* ---- Envelope ------------------------------------------------------------ */

const char *sk_message_reverse_path(const sk_message *m)
{
    return m->sender.addr ? m->sender.addr : m->from.addr;
}

size_t sk_message_recipient_count(const sk_message *m)
{
    return m->nrcpts;
}

const char *sk_message_recipient(const sk_message *m, size_t i)
{
    return i < m->nrcpts ? m->rcpts[i] : NULL;
}

static bool addr_ascii(const sk_mailbox *mb)
{
    return !mb->addr || sk_mime_is_ascii(mb->addr, strlen(mb->addr));
}

int sk_message_needs_smtputf8(const sk_message *m)
{
    /* RFC 6531 3.2: UTF-8 addresses in the envelope or in header fields. */
    if (!addr_ascii(&m->from) || !addr_ascii(&m->sender) || !addr_ascii(&m->reply_to)) return 1;
    const mbox_vec *vs[] = {&m->to, &m->cc, &m->bcc};
    for (size_t k = 0; k < 3; k++)
        for (size_t i = 0; i < vs[k]->n; i++)
            if (!addr_ascii(&vs[k]->v[i])) return 1;
    return 0;
}

void sk_message_envelope_clear(sk_message_envelope *env)
{
    if (!env) return;
    sk_free(env->reverse_path);
    for (size_t i = 0; i < env->recipient_count; i++) sk_free(env->recipients[i]);
    sk_free(env->recipients);
    memset(env, 0, sizeof *env);
}

sk_err sk_message_get_envelope(const sk_message *m, sk_message_envelope *env, sk_error *err)
{
    memset(env, 0, sizeof *env);
    const char *rp = sk_message_reverse_path(m);
    if (!rp) return sk_error_set(err, SK_ERR_INVAL, SK_STEP_COMPOSE, "no From address");
    env->reverse_path = sk_strdup(rp);
    env->recipients = sk_calloc(m->nrcpts ? m->nrcpts : 1, sizeof *env->recipients);
    if (!env->reverse_path || !env->recipients) {
        sk_message_envelope_clear(env);
        return nomem(err);
    }
    for (size_t i = 0; i < m->nrcpts; i++) {
        env->recipients[i] = sk_strdup(m->rcpts[i]);
        if (!env->recipients[i]) {
            sk_message_envelope_clear(env);
            return nomem(err);
        }
        env->recipient_count = i + 1;
    }
    env->smtputf8 = sk_message_needs_smtputf8(m);
    env->eightbit = 0; /* the composer writes 7-bit bodies */
    return SK_OK;
}

/* ---- Rendering ----------------------------------------------------------- */

static void write_message_id(const sk_message *m, sk_buf *out, sk_err *e)
{
    if (*e) return;
    if (m->message_id) {
        *e = sk_buf_printf(out, "<%s>", m->message_id);
        return;
    }
    const char *at = m->from.addr ? strrchr(m->from.addr, '@') : NULL;
    const char *domain = at ? at + 1 : "localhost";
    /* msg-id is ASCII (RFC 5322 3.6.4); a UTF-8 domain cannot be used. */
    if (!sk_mime_is_ascii(domain, strlen(domain))) domain = "localhost";
    *e = sk_buf_printf(out, "<%s@%s>", m->id_random, domain);
}

sk_err sk_message_get_message_id(const sk_message *m, sk_buf *out)
{
    if (!m->message_id && !m->from.addr) return SK_ERR_INVAL;
    sk_err e = SK_OK;
    write_message_id(m, out, &e);
    return e;
}

static sk_err new_boundary(char out[40])
{
    unsigned char r[12];
    if (sk_random(r, sizeof r) != SK_OK) return SK_ERR_IO;
    /* "=_" never occurs in quoted-printable or base64 output, and 7bit text
     * containing it is not sent as 7bit (sk_mime_choose_text_cte): so the
     * boundary cannot occur in any part (RFC 2046 5.1.1). */
    memcpy(out, "=_sk_", 5);
    sk_hex_encode(out + 5, r, sizeof r, false);
    return SK_OK;
}

/* A text leaf: canonical CRLF lines, encoded as the content suggests. */
static sk_err render_text(sk_buf *out, const char *subtype, const char *text)
{
    sk_buf canon = SK_BUF_INIT(out->max);
    sk_err e = sk_mime_canon_text(&canon, text, strlen(text));
    const char *c = sk_buf_cstr(&canon);
    sk_cte cte = sk_mime_choose_text_cte(c, canon.len);
    if (!e)
        e = sk_buf_printf(out,
                          "Content-Type: text/%s; charset=utf-8\r\n"
                          "Content-Transfer-Encoding: %s\r\n\r\n",
                          subtype, sk_cte_name(cte));
    if (!e) {
        if (cte == SK_CTE_7BIT)
            e = sk_buf_append(out, c, canon.len);
        else if (cte == SK_CTE_QP)
            e = sk_mime_qp_encode(out, c, canon.len, true);
        else
            e = sk_mime_base64_lines(out, c, canon.len);
    }
    sk_buf_free(&canon);
    return e;
}

/* RFC 2231 7 attribute-char: what may stand for itself in an extended
 * parameter value. */
static bool attr_char(unsigned char c)
{
    return c > ' ' && c < 0x7f && !strchr("*'%()<>@,;:\\\"/[]?=", c);
}

/* "; attr=value" with value a quoted-string when it is short ASCII, else
 * RFC 2231 extended (UTF-8, percent-encoded) in continuations of at most
 * one line each. */
static void write_param(sk_hdr_writer *w, const char *attr, const char *value)
{
    size_t n = strlen(value);
    bool simple = n <= 60 && sk_mime_is_ascii(value, n) && !strpbrk(value, "\"\\");
    sk_buf tok = SK_BUF_INIT(SK_MIME_LINE_SOFT_OCTETS * 2);
    sk_hdr_token(w, "", 0, ";", 1);
    if (simple) {
        sk_err e = sk_buf_printf(&tok, "%s=\"%s\"", attr, value);
        if (e && !w->err) w->err = e;
        if (!e) sk_hdr_token(w, " ", 1, tok.data, tok.len);
        sk_buf_free(&tok);
        return;
    }
    size_t encoded = 0;
    for (size_t j = 0; j < n; j++) encoded += attr_char((unsigned char)value[j]) ? 1 : 3;
    /* One section when it fits on a line, else numbered ones (RFC 2231 3). */
    bool one = strlen(attr) + strlen("*=UTF-8''") + encoded + 1 <= SK_MIME_LINE_SOFT_OCTETS - 2;
    size_t i = 0;
    for (int section = 0; i < n && !w->err; section++) {
        sk_buf_reset(&tok);
        sk_err e = one ? sk_buf_printf(&tok, "%s*=UTF-8''", attr)
                       : sk_buf_printf(&tok, "%s*%d*=%s", attr, section, section ? "" : "UTF-8''");
        /* Whole UTF-8 sequences per section, so each decodes on its own. */
        while (!e && i < n) {
            size_t k = sk_mime_utf8_seq_len(value + i, n - i);
            size_t width = 0;
            for (size_t j = 0; j < k; j++) width += attr_char((unsigned char)value[i + j]) ? 1 : 3;
            if (tok.len + width + 1 > SK_MIME_LINE_SOFT_OCTETS - 2 && tok.len > 20) break;
            for (size_t j = 0; !e && j < k; j++) {
                unsigned char c = (unsigned char)value[i + j];
                if (attr_char(c)) {
                    e = sk_buf_putc(&tok, (char)c);
                } else {
                    char esc[4] = {'%'};
                    sk_hex_encode(esc + 1, &c, 1, true);
                    e = sk_buf_append(&tok, esc, 3);
                }
            }
            i += k;
        }
        if (!e && i < n) e = sk_buf_putc(&tok, ';');
        if (e) {
            if (!w->err) w->err = e;
            break;
        }
        sk_hdr_token(w, " ", 1, tok.data, tok.len);
    }
    sk_buf_free(&tok);
}

static sk_err render_part(sk_buf *out, const part *p, bool is_inline)
{
    sk_hdr_writer w;
    sk_hdr_begin(&w, out, "Content-Type");
    sk_hdr_token(&w, " ", 1, p->type, strlen(p->type));
    write_param(&w, "name", p->filename);
    sk_err e = sk_hdr_end(&w);
    if (!e) e = sk_buf_puts(out, "Content-Transfer-Encoding: base64\r\n");
    if (!e && p->cid) e = sk_buf_printf(out, "Content-ID: <%s>\r\n", p->cid);
    if (e) return e;
    sk_hdr_begin(&w, out, "Content-Disposition");
    sk_hdr_token(&w, " ", 1, is_inline ? "inline" : "attachment", is_inline ? 6 : 10);
    write_param(&w, "filename", p->filename);
    e = sk_hdr_end(&w);
    if (!e) e = sk_buf_puts(out, "\r\n");
    if (!e) e = sk_mime_base64_lines(out, p->data, p->len);
    return e;
}

static sk_err multipart_begin(sk_buf *out, const char *subtype, const char *extra, char b[40])
{
    sk_err e = new_boundary(b);
    if (!e)
        e = sk_buf_printf(out, "Content-Type: multipart/%s;%s\r\n boundary=\"%s\"\r\n\r\n", subtype,
                          extra ? extra : "", b);
    if (!e) e = sk_buf_printf(out, "--%s\r\n", b);
    return e;
}

/* The delimiter before a further body part; the CRLF before "--" belongs to
 * the delimiter (RFC 2046 5.1.1). */
static sk_err multipart_next(sk_buf *out, const char *b)
{
    return sk_buf_printf(out, "\r\n--%s\r\n", b);
}

static sk_err multipart_end(sk_buf *out, const char *b)
{
    return sk_buf_printf(out, "\r\n--%s--\r\n", b);
}

/* The HTML (or, without HTML, the text) with its inline parts. */
static sk_err render_related(const sk_message *m, sk_buf *out, bool html)
{
    const char *body = html ? m->html : (m->text ? m->text : "");
    const char *subtype = html ? "html" : "plain";
    if (m->ninl == 0) return render_text(out, subtype, body);
    char b[40];
    /* RFC 2387 3.1: type names the root part's type. */
    sk_err e =
        multipart_begin(out, "related", html ? " type=\"text/html\";" : " type=\"text/plain\";", b);
    if (!e) e = render_text(out, subtype, body);
    for (size_t i = 0; !e && i < m->ninl; i++) {
        e = multipart_next(out, b);
        if (!e) e = render_part(out, &m->inl[i], true);
    }
    if (!e) e = multipart_end(out, b);
    return e;
}

static sk_err render_core(const sk_message *m, sk_buf *out)
{
    if (!(m->text && m->html)) return render_related(m, out, m->html != NULL);
    /* RFC 2046 5.1.4: alternatives in increasing order of preference. */
    char b[40];
    sk_err e = multipart_begin(out, "alternative", NULL, b);
    if (!e) e = render_text(out, "plain", m->text);
    if (!e) e = multipart_next(out, b);
    if (!e) e = render_related(m, out, true);
    if (!e) e = multipart_end(out, b);
    return e;
}

static sk_err render_body(const sk_message *m, sk_buf *out)
{
    if (m->natts == 0) return render_core(m, out);
    char b[40];
    sk_err e = multipart_begin(out, "mixed", NULL, b);
    if (!e) e = render_core(m, out);
    for (size_t i = 0; !e && i < m->natts; i++) {
        e = multipart_next(out, b);
        if (!e) e = render_part(out, &m->atts[i], false);
    }
    if (!e) e = multipart_end(out, b);
    return e;
}

static sk_err render_address_field(sk_buf *out, const char *name, const sk_mailbox *v, size_t n)
{
    if (n == 0) return SK_OK;
    sk_hdr_writer w;
    sk_hdr_begin(&w, out, name);
    for (size_t i = 0; i < n; i++) sk_hdr_mailbox(&w, &v[i], i + 1 < n ? "," : "");
    return sk_hdr_end(&w);
}

static sk_err render_headers(const sk_message *m, sk_buf *out)
{
    char date[40];
    sk_time_rfc5322(m->has_date ? m->date : (int64_t)time(NULL), date);
    sk_err e = sk_buf_printf(out, "Date: %s\r\n", date);
    if (!e) e = render_address_field(out, "From", &m->from, 1);
    if (!e && m->sender.addr) e = render_address_field(out, "Sender", &m->sender, 1);
    if (!e && m->reply_to.addr) e = render_address_field(out, "Reply-To", &m->reply_to, 1);
    if (!e) e = render_address_field(out, "To", m->to.v, m->to.n);
    if (!e) e = render_address_field(out, "Cc", m->cc.v, m->cc.n);
    /* Bcc recipients are never written (RFC 5322 3.6.3 allows either way;
     * leaking them is the risk that matters). */
    if (!e && m->subject) {
        sk_hdr_writer w;
        sk_hdr_begin(&w, out, "Subject");
        sk_hdr_unstructured(&w, m->subject, false);
        e = sk_hdr_end(&w);
    }
    if (!e) e = sk_buf_puts(out, "Message-ID: ");
    write_message_id(m, out, &e);
    if (!e) e = sk_buf_puts(out, "\r\n");
    for (size_t i = 0; !e && i < m->nfields; i++) {
        sk_hdr_writer w;
        sk_hdr_begin(&w, out, m->fields[i].name);
        sk_hdr_unstructured(&w, m->fields[i].value, true);
        e = sk_hdr_end(&w);
    }
    if (!e) e = sk_buf_puts(out, "MIME-Version: 1.0\r\n");
    return e;
}

sk_err sk_message_render(const sk_message *m, sk_buf *out, sk_error *err)
{
    if (!m || !out) return sk_error_set(err, SK_ERR_INVAL, SK_STEP_COMPOSE, "no message");
    if (!m->from.addr)
        return sk_error_set(err, SK_ERR_INVAL, SK_STEP_COMPOSE,
                            "no From address (RFC 5322 3.6 requires one)");
    size_t mark = out->len;
    sk_err e = render_headers(m, out);
    if (!e) e = render_body(m, out);
    /* The message ends with a line end, as DATA requires (RFC 5321 4.1.1.4). */
    if (!e && (out->len < 2 || memcmp(out->data + out->len - 2, "\r\n", 2) != 0))
        e = sk_buf_append(out, "\r\n", 2);
    if (!e) return SK_OK;
    sk_buf_truncate(out, mark);
    switch (e) {
    case SK_ERR_NOMEM:
        return nomem(err);
    case SK_ERR_TOO_LONG:
        return sk_error_set(err, e, SK_STEP_COMPOSE,
                            "message larger than the buffer's maximum (%zu octets)", out->max);
    case SK_ERR_IO:
        return sk_error_set(err, e, SK_STEP_COMPOSE, "no random numbers for MIME boundaries");
    default:
        return sk_error_set(err, e, SK_STEP_COMPOSE, "%s", sk_strerror(e));
    }
}
