/* DKIM canonicalization (RFC 6376 3.4) of header fields, and of the body
 * as it streams in, straight into its hash; and the streamed message split
 * into its header block and its body, with header selection (5.4.2). */
#include "dkim/dkim_int.h"

#include <string.h>
#include <strings.h>

/* ---- header fields ---- */

sk_err dkim_canon_header(sk_dkim_canon c, const char *field, size_t len, sk_buf *out)
{
    if (c == SK_DKIM_CANON_SIMPLE) return sk_buf_append(out, field, len);
    /* 3.4.2: name in lower case without whitespace before the colon;
     * value unfolded, WSP runs as one SP, none at either end. */
    const char *colon = memchr(field, ':', len);
    size_t nl = colon ? (size_t)(colon - field) : len;
    size_t end = nl;
    while (end > 0 && sk_is_wsp(field[end - 1])) end--;
    sk_err e = sk_buf_reserve(out, len + 2);
    if (e) return e;
    char *o = out->data + out->len;
    for (size_t i = 0; i < end; i++) *o++ = (char)sk_to_lower(field[i]);
    *o++ = ':';
    int space = 0, started = 0;
    for (size_t i = nl + 1; i < len; i++) {
        char ch = field[i];
        if (ch == '\r' && i + 1 < len && field[i + 1] == '\n') {
            i++; /* unfold: CRLF goes, the WSP after it stays */
            continue;
        }
        if (sk_is_wsp(ch)) {
            space = 1;
            continue;
        }
        if (space && started) *o++ = ' ';
        space = 0;
        started = 1;
        *o++ = ch;
    }
    *o++ = '\r';
    *o++ = '\n';
    out->len = (size_t)(o - out->data);
    out->data[out->len] = '\0';
    return SK_OK;
}

/* ---- the body ---- */

sk_err dkim_body_hash_init(dkim_body_hash *h, sk_dkim_canon c, const EVP_MD *md, uint64_t limit)
{
    /* Field by field: zeroing the whole structure would clear its 4 KiB
     * stage for every message. */
    h->canon = c;
    h->md = md;
    h->limit = limit;
    h->total = h->crlfs_held = 0;
    h->cr_held = h->wsp_held = h->content = h->failed = 0;
    h->staged = 0;
    h->ctx = EVP_MD_CTX_new();
    if (!h->ctx) return SK_ERR_NOMEM;
    if (!EVP_DigestInit_ex(h->ctx, md, NULL)) {
        EVP_MD_CTX_free(h->ctx);
        h->ctx = NULL;
        return SK_ERR_NOMEM;
    }
    return SK_OK;
}

void dkim_body_hash_clear(dkim_body_hash *h)
{
    if (!h) return;
    EVP_MD_CTX_free(h->ctx);
    h->ctx = NULL;
}

static void flush_stage(dkim_body_hash *h)
{
    if (h->staged && !EVP_DigestUpdate(h->ctx, h->stage, h->staged)) h->failed = 1;
    h->staged = 0;
}

/* Canonical octets out: into the hash up to the limit, counted always. */
static void emit(dkim_body_hash *h, const char *p, size_t n)
{
    if (h->total < h->limit) {
        uint64_t room = h->limit - h->total;
        size_t take = room < n ? (size_t)room : n;
        if (h->staged + take > sizeof h->stage) flush_stage(h);
        if (take > sizeof h->stage) {
            if (!EVP_DigestUpdate(h->ctx, p, take)) h->failed = 1;
        } else {
            memcpy(h->stage + h->staged, p, take);
            h->staged += take;
        }
    }
    h->total += n;
}

static const char crlfs[] = "\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n";

/* Content follows: the empty lines held back were not trailing after all. */
static void release(dkim_body_hash *h)
{
    while (h->crlfs_held) {
        uint64_t k = h->crlfs_held < 16 ? h->crlfs_held : 16;
        emit(h, crlfs, (size_t)k * 2);
        h->crlfs_held -= k;
    }
    if (h->wsp_held) {
        emit(h, " ", 1);
        h->wsp_held = 0;
    }
    h->content = 1;
}

static void content(dkim_body_hash *h, const char *p, size_t n)
{
    release(h);
    emit(h, p, n);
}

/* A line end: relaxed drops the whitespace before it (3.4.4 a). */
static void line_end(dkim_body_hash *h)
{
    h->wsp_held = 0;
    h->crlfs_held++;
}

void dkim_body_hash_feed(dkim_body_hash *h, const char *p, size_t n)
{
    size_t i = 0;
    if (n && h->cr_held) {
        h->cr_held = 0;
        if (p[0] == '\n') {
            line_end(h);
            i = 1;
        } else {
            content(h, "\r", 1); /* a bare CR is content */
        }
    }
    if (h->canon == SK_DKIM_CANON_SIMPLE) {
        while (i < n) {
            const char *cr = memchr(p + i, '\r', n - i);
            size_t end = cr ? (size_t)(cr - p) : n;
            if (end > i) content(h, p + i, end - i);
            if (!cr) return;
            if (end + 1 == n) {
                h->cr_held = 1;
                return;
            }
            if (p[end + 1] == '\n') {
                line_end(h);
                i = end + 2;
            } else {
                content(h, "\r", 1);
                i = end + 1;
            }
        }
        return;
    }
    /* relaxed (3.4.4): WSP runs become one SP, none before a line end. */
    while (i < n) {
        char c = p[i];
        if (c == '\r') {
            if (i + 1 == n) {
                h->cr_held = 1;
                return;
            }
            if (p[i + 1] == '\n') {
                line_end(h);
                i += 2;
            } else {
                content(h, "\r", 1);
                i++;
            }
        } else if (sk_is_wsp(c)) {
            h->wsp_held = 1;
            i++;
        } else {
            size_t j = i + 1;
            while (j < n && p[j] != '\r' && !sk_is_wsp(p[j])) j++;
            content(h, p + i, j - i);
            i = j;
        }
    }
}

sk_err dkim_body_hash_final(dkim_body_hash *h, unsigned char *out, size_t *len)
{
    if (h->cr_held) {
        h->cr_held = 0;
        content(h, "\r", 1);
    }
    /* Whitespace at the end of a last line without CRLF is kept as one SP
     * before the CRLF added below, as other implementations do (3.4.4
     * speaks of whitespace before line ends only). */
    if (h->wsp_held) release(h);
    /* 3.4.3 / 3.4.4: trailing empty lines go; a non-empty body ends in
     * CRLF; an empty one is CRLF for simple and nothing for relaxed. */
    if (h->content || h->canon == SK_DKIM_CANON_SIMPLE) emit(h, "\r\n", 2);
    h->crlfs_held = 0;
    flush_stage(h);
    unsigned ol = 0;
    if (h->failed || !EVP_DigestFinal_ex(h->ctx, out, &ol)) return SK_ERR_NOMEM;
    *len = ol;
    return SK_OK;
}

/* ---- the message ---- */

void dkim_msg_init(dkim_msg *m, sk_err (*head_fn)(void *ctx, dkim_msg *m), void *head_ctx,
                   dkim_body_fn body_fn, void *body_ctx)
{
    memset(m, 0, sizeof *m);
    m->head_fn = head_fn;
    m->head_ctx = head_ctx;
    m->body_fn = body_fn;
    m->body_ctx = body_ctx;
    sk_buf_init(&m->head, SK_DKIM_HEADER_BLOCK_MAX_OCTETS + 4);
    m->eol = 2; /* as if after a CRLF: a message starting with CRLF has no header */
}

void dkim_msg_clear(dkim_msg *m)
{
    if (!m) return;
    sk_buf_free(&m->head);
    sk_free(m->fields);
    m->fields = NULL;
    m->nfields = 0;
}

/* Cut the header block into fields: a line starting with WSP continues the
 * field before it. */
static sk_err split_fields(dkim_msg *m)
{
    const char *h = m->head.data;
    size_t n = m->head.len, lines = 0;
    for (size_t i = 0; i < n; i++)
        if (h[i] == '\n') lines++;
    m->fields = sk_calloc(lines + 1, sizeof *m->fields);
    if (!m->fields) return SK_ERR_NOMEM;
    size_t i = 0;
    while (i < n) {
        const char *nl = memchr(h + i, '\n', n - i);
        size_t end = nl ? (size_t)(nl - h) + 1 : n;
        if (sk_is_wsp(h[i]) && m->nfields) {
            dkim_field *f = &m->fields[m->nfields - 1];
            f->len = end - f->off;
        } else {
            dkim_field *f = &m->fields[m->nfields++];
            f->off = i;
            f->len = end - i;
            const char *colon = memchr(h + i, ':', end - i);
            if (colon && !sk_is_wsp(h[i])) {
                size_t nlen = (size_t)(colon - (h + i));
                while (nlen && sk_is_wsp(h[i + nlen - 1])) nlen--;
                f->name_len = nlen;
            }
        }
        i = end;
    }
    return SK_OK;
}

static sk_err head_done(dkim_msg *m)
{
    m->in_body = 1;
    sk_err e = split_fields(m);
    if (e) return e;
    m->parsed = 1;
    return m->head_fn ? m->head_fn(m->head_ctx, m) : SK_OK;
}

sk_err dkim_msg_feed(dkim_msg *m, const char *p, size_t n)
{
    if (m->err) return m->err;
    if (m->in_body) {
        if (m->body_fn && n) m->body_fn(m->body_ctx, p, n);
        return SK_OK;
    }
    /* Find the empty line that ends the header block. */
    size_t i = 0;
    int eol = m->eol;
    for (; i < n; i++) {
        char c = p[i];
        if (eol == 0) {
            const char *cr = memchr(p + i, '\r', n - i);
            if (!cr) {
                i = n;
                break;
            }
            i = (size_t)(cr - p);
            eol = 1;
        } else if (eol == 1) {
            eol = c == '\n' ? 2 : c == '\r' ? 1 : 0;
        } else if (eol == 2) {
            eol = c == '\r' ? 3 : 0;
        } else {
            if (c == '\n') break;
            eol = c == '\r' ? 1 : 0;
        }
    }
    m->eol = eol;
    if (i == n) {
        sk_err e = sk_buf_append(&m->head, p, n);
        if (e) m->err = e;
        return e;
    }
    /* p[i] is the LF of the empty line: keep the header block without it. */
    sk_err e = sk_buf_append(&m->head, p, i + 1);
    if (e) return m->err = e;
    m->head.len -= 2;
    m->head.data[m->head.len] = '\0';
    if (m->head.len > SK_DKIM_HEADER_BLOCK_MAX_OCTETS) return m->err = SK_ERR_TOO_LONG;
    e = head_done(m);
    if (e) return m->err = e;
    if (m->body_fn && i + 1 < n) m->body_fn(m->body_ctx, p + i + 1, n - i - 1);
    return SK_OK;
}

sk_err dkim_msg_end(dkim_msg *m)
{
    if (m->err) return m->err;
    if (m->in_body) return SK_OK;
    if (m->head.len > SK_DKIM_HEADER_BLOCK_MAX_OCTETS) return m->err = SK_ERR_TOO_LONG;
    /* No empty line: it was all header (RFC 5322 3.5: the body is optional). */
    sk_err e = head_done(m);
    if (e) m->err = e;
    return e;
}

sk_err dkim_msg_error(sk_err e, sk_error *err)
{
    if (e == SK_ERR_TOO_LONG)
        return sk_error_set(err, e, SK_STEP_NONE, "the header block is longer than %u octets",
                            (unsigned)SK_DKIM_HEADER_BLOCK_MAX_OCTETS);
    return sk_error_set(err, e, SK_STEP_NONE, "%s", sk_strerror(e));
}

sk_err dkim_msg_finish(dkim_msg *m, sk_error *err)
{
    sk_err e = dkim_msg_end(m);
    return e ? dkim_msg_error(e, err) : SK_OK;
}

int dkim_field_is(const dkim_msg *m, const dkim_field *f, const char *name, size_t nlen)
{
    return f->name_len == nlen && !strncasecmp(m->head.data + f->off, name, nlen);
}

sk_err dkim_hash_headers(EVP_MD_CTX *md, dkim_msg *m, const char *const *names, size_t nnames,
                         sk_dkim_canon c, const char *sig_field, size_t sig_len)
{
    sk_buf b = SK_BUF_INIT(SK_DKIM_HEADER_BLOCK_MAX_OCTETS + SK_DKIM_SIGNATURE_MAX_OCTETS + 4);
    sk_err e = SK_OK;
    for (size_t i = 0; i < m->nfields; i++) m->fields[i].used = 0;
    for (size_t k = 0; k < nnames && !e; k++) {
        size_t nl = strlen(names[k]);
        /* 5.4.2: the last instance not yet used, from the bottom up; a name
         * with no instance left contributes nothing. */
        for (size_t i = m->nfields; i-- > 0;) {
            dkim_field *f = &m->fields[i];
            if (f->used || !dkim_field_is(m, f, names[k], nl)) continue;
            f->used = 1;
            sk_buf_reset(&b);
            e = dkim_canon_header(c, m->head.data + f->off, f->len, &b);
            if (!e && !EVP_DigestUpdate(md, b.data, b.len)) e = SK_ERR_NOMEM;
            break;
        }
    }
    if (!e) {
        sk_buf_reset(&b);
        e = dkim_canon_header(c, sig_field, sig_len, &b);
    }
    if (!e) {
        /* 3.7: the signature's own field goes in without its final CRLF. */
        size_t len = b.len;
        if (len >= 2 && b.data[len - 2] == '\r' && b.data[len - 1] == '\n') len -= 2;
        if (!EVP_DigestUpdate(md, b.data, len)) e = SK_ERR_NOMEM;
    }
    sk_buf_free(&b);
    return e;
}
