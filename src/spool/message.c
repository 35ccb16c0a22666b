/* A message being received: its ID, its body (in memory up to 64 KiB, else
 * in ID.new), its captured header block, its hand-over to the committer. */
#include "spool/spool_impl.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Body bytes are gathered into writes of this size; a body that stays
 * within it is written by the committer (or goes to the journal whole). */
#define WRITE_CHUNK_OCTETS (64 * 1024)
/* The header block kept in memory while the body streams in, so that
 * sk_spool_read_headers right after the commit (the daemon looks for the
 * Message-ID then) needs no openat(2) and read(2) of the message file.
 * Longer header blocks are read from the file as before. */
#define HEADER_CAPTURE_OCTETS 8192

void sk_spool_msg_free(sk_spool_msg *m)
{
    if (m->fd >= 0) close(m->fd);
    sk_buf_free(&m->wbuf);
    sk_buf_free(&m->hdr);
    sk_buf_free(&m->envtext);
    sk_spool_envelope_free(m->env);
    sk_free(m);
}

void sk_spool_msg_unlink(sk_spool_msg *m)
{
    if (m->body_created) sk_spool_unlink(m->s, m->id, SK_SPOOL_NEW_EXT);
}

/* Create the message file, ID.new. Small messages stay in wbuf until the
 * committer thread creates it, so the event loop never waits in openat(2)
 * for the directory while a group is being made durable (docs/queue.md).
 * O_EXCL keeps IDs unique: a collision fails this message only. */
static sk_err create_body(sk_spool_msg *m)
{
    if (m->err || m->fd >= 0) return m->err;
    char name[SK_SPOOL_NAME_SIZE];
    sk_spool_name(name, m->id, SK_SPOOL_NEW_EXT);
    m->fd = sk_spool_create_file(m->s, name, 1, &m->body_reused, &m->err);
    if (m->fd < 0) return m->err;
    m->body_created = 1;
    return SK_OK;
}

sk_spool_msg *sk_spool_begin(sk_spool *s, const sk_spool_envelope *env, sk_error *err)
{
    if (sk_spool_check_owner(s, err)) return NULL;
    sk_spool_msg *m = sk_calloc(1, sizeof *m);
    if (!m || !(m->env = sk_spool_envelope_dup(env))) {
        sk_free(m);
        sk_error_set(err, SK_ERR_NOMEM, SK_STEP_NONE, "out of memory");
        return NULL;
    }
    m->s = s;
    m->fd = -1;
    sk_buf_init(&m->wbuf, WRITE_CHUNK_OCTETS);
    sk_buf_init(&m->hdr, HEADER_CAPTURE_OCTETS);
    m->hdr_end = -1;
    sk_buf_init(&m->envtext, SK_SPOOL_ENVELOPE_MAX_OCTETS);
    if (!m->env->arrival) m->env->arrival = (int64_t)time(NULL);
    sk_err e = sk_spool_id_unique(&s->ids, m->id);
    if (e) {
        sk_error_set(err, e, SK_STEP_NONE, "no random bytes");
        sk_spool_msg_free(m);
        return NULL;
    }
    memcpy(m->env->id, m->id, SK_SPOOL_ID_SIZE);
    return m;
}

const char *sk_spool_msg_id(const sk_spool_msg *m)
{
    return m->id;
}

static sk_err flush_wbuf(sk_spool_msg *m)
{
    if (m->err || !m->wbuf.len || create_body(m)) return m->err;
    m->err = sk_spool_write_all(&m->s->hooks, m->fd, m->wbuf.data, m->wbuf.len);
    sk_buf_reset(&m->wbuf);
    return m->err;
}

/* Keep the start of the body until the header block's end is known. */
static void capture_headers(sk_spool_msg *m, const char *p, size_t n)
{
    if (m->hdr_end >= 0 || m->hdr.len >= HEADER_CAPTURE_OCTETS) return;
    size_t old = m->hdr.len;
    size_t k = HEADER_CAPTURE_OCTETS - old;
    if (k > n) k = n;
    /* The bound was set to the capture size: this append cannot fail. */
    if (sk_buf_append(&m->hdr, p, k)) return;
    const char *d = m->hdr.data;
    if (m->hdr.len >= 2 && d[0] == '\r' && d[1] == '\n') {
        m->hdr_end = 0; /* no header fields at all */
        return;
    }
    /* Look again at the last 3 bytes already held: the empty line may
     * straddle two writes. */
    size_t from = old > 3 ? old - 3 : 0;
    for (size_t i = from; i + 4 <= m->hdr.len; i++) {
        if (memcmp(d + i, "\r\n\r\n", 4) == 0) {
            m->hdr_end = (long)i + 2;
            return;
        }
    }
}

sk_err sk_spool_write(sk_spool_msg *m, const void *p, size_t n)
{
    if (m->err) return m->err;
    if (m->s->opts.max_body_octets && m->octets + n > m->s->opts.max_body_octets)
        return m->err = SK_ERR_TOO_LONG;
    capture_headers(m, p, n);
    m->octets += n;
    m->crc = sk_spool_crc32c(m->crc, p, n);
    const char *c = p;
    while (n) {
        size_t room = WRITE_CHUNK_OCTETS - m->wbuf.len;
        if (n >= WRITE_CHUNK_OCTETS && !m->wbuf.len) {
            /* Large pieces go straight to the file. */
            if (create_body(m)) return m->err;
            m->err = sk_spool_write_all(&m->s->hooks, m->fd, c, n);
            return m->err;
        }
        size_t k = n < room ? n : room;
        sk_err e = sk_buf_append(&m->wbuf, c, k);
        if (e) return m->err = e;
        c += k;
        n -= k;
        if (m->wbuf.len == WRITE_CHUNK_OCTETS && flush_wbuf(m)) return m->err;
    }
    return SK_OK;
}

sk_err sk_spool_msg_prepend(sk_spool_msg *m, const char *fields, size_t len)
{
    if (len < 2 || fields[len - 2] != '\r' || fields[len - 1] != '\n' || memchr(fields, '\0', len))
        return SK_ERR_SYNTAX;
    size_t old = m->env->prepend ? strlen(m->env->prepend) : 0;
    char *p = sk_realloc(m->env->prepend, old + len + 1);
    if (!p) return SK_ERR_NOMEM;
    memcpy(p + old, fields, len);
    p[old + len] = '\0';
    m->env->prepend = p;
    return SK_OK;
}

void sk_spool_abort(sk_spool_msg *m)
{
    if (!m) return;
    sk_spool_msg_unlink(m);
    sk_spool_msg_free(m);
}

void sk_spool_commit(sk_spool_msg *m, sk_spool_done_fn done, void *ctx)
{
    m->done = done;
    m->ctx = ctx;
    m->next = NULL;
    /* The envelope records the body's size and CRC-32C, so recovery tells
     * a complete file from a torn one; the rest of the body is written by
     * the committer (sk_spool_msg_write_file). */
    if (!m->err) {
        m->env->body_octets = m->octets;
        m->env->body_crc32c = m->crc;
        m->env->has_body_crc32c = 1;
        m->err = sk_spool_envelope_serialize(m->env, &m->envtext);
    }
    sk_spool_commit_msg(m);
}

/* Phase 1 of a group commit (docs/queue.md "Durability order"): ID.new
 * created here unless the body outgrew wbuf during DATA (an empty body
 * still gets its file), then the rest of it. wbuf is kept: a journal
 * record is made from it. */
void sk_spool_msg_write_file(sk_spool_msg *m)
{
    if (create_body(m)) return;
    m->err = sk_spool_msgfile_write(m, m->fd, m->body_reused);
}

/* The length of the header block at the start of the n octets at d,
 * without the empty line that ends it (RFC 5322 2.1); all of them when
 * none is seen. memmem, not strstr: DATA may carry a NUL, which must not
 * hide that line (capture_headers does not stop there either). */
size_t sk_spool_header_block_len(const char *d, size_t n)
{
    if (!d) return 0;
    if (n >= 2 && d[0] == '\r' && d[1] == '\n') return 0;
    const char *blank = memmem(d, n, "\r\n\r\n", 4);
    return blank ? (size_t)(blank - d) + 2 : n;
}

int sk_spool_msg_headers(const sk_spool_msg *m, sk_buf *out, sk_err *e)
{
    if (m->wbuf.len == m->octets) {
        /* The whole body is still in memory (a journaled message's file
         * may not be written yet). */
        size_t want = m->octets < SK_SPOOL_HEADERS_MAX_OCTETS ? (size_t)m->octets
                                                              : SK_SPOOL_HEADERS_MAX_OCTETS;
        *e = sk_buf_append(out, m->wbuf.data ? m->wbuf.data : "",
                           sk_spool_header_block_len(m->wbuf.data, want));
        return 1;
    }
    /* The same answer as the file gives, when the capture saw the header
     * block's end or the whole body. */
    if (m->hdr_end < 0 && m->hdr.len != m->octets) return 0;
    size_t hlen = m->hdr_end >= 0 ? (size_t)m->hdr_end : m->hdr.len;
    *e = sk_buf_append(out, m->hdr.data ? m->hdr.data : "", hlen);
    return 1;
}
