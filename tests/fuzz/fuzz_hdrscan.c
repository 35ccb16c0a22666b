/* Fuzz target: `smtpkit serve`'s header scanner (src/daemon/hdrscan.c),
 * which removes the Authentication-Results fields bearing our authserv-id
 * from mail from outside as it streams in. The input's first line is the
 * authserv-id, the rest the message as DATA delivers it (inputs with a
 * bare CR or LF or a NUL, which the server refuses, are skipped).
 * Properties: read whole, in two pieces split where the first octet says,
 * and one octet at a time, the output, the From fields and the count of
 * removed fields are the same; the header block that comes out holds no
 * field sk_authres_find_ours calls ours; the body is untouched; the From
 * fields copied start as a From field of the input does. */
#include "daemon/daemon_int.h"

#include <smtpkit/authres.h>

#include <stdlib.h>
#include <string.h>
#include <strings.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct reading {
    sk_buf out;
    sk_hdrscan h;
} reading;

/* Feed msg in pieces of at most step octets (0: whole), first piece split. */
static void read_msg(const char *id, const char *msg, size_t n, size_t first, size_t step,
                     reading *r)
{
    sk_buf_init(&r->out, 4 * n + 64);
    sk_hdrscan_init(&r->h, id);
    size_t off = 0;
    while (off < n) {
        size_t k = off == 0 && first ? first : step ? step : n - off;
        if (k > n - off) k = n - off;
        const char *p = msg + off;
        size_t l = k;
        if (!sk_hdrscan_in_body(&r->h)) {
            size_t used = 0;
            if (sk_hdrscan_feed(&r->h, p, l, &r->out, &used) != SK_OK) abort();
            if (used > l || (!sk_hdrscan_in_body(&r->h) && used != l)) abort();
            p += used;
            l -= used;
        }
        if (sk_buf_append(&r->out, p, l) != SK_OK) abort();
        off += k;
    }
    if (!sk_hdrscan_in_body(&r->h) && sk_hdrscan_end(&r->h, &r->out) != SK_OK) abort();
}

/* Equal contents of two buffers (either may have no storage when empty). */
static int equal(const sk_buf *a, const sk_buf *b)
{
    return a->len == b->len && (!a->len || !memcmp(a->data, b->data, a->len));
}

static void same(const reading *a, const reading *b)
{
    if (!equal(&a->out, &b->out) || !equal(&a->h.from, &b->h.from)) abort();
    if (a->h.removed != b->h.removed || a->h.from_overflow != b->h.from_overflow) abort();
}

static void done(reading *r)
{
    sk_hdrscan_free(&r->h);
    sk_buf_free(&r->out);
}

/* The header block of n octets at d: up to and with the empty line. */
static size_t block_len(const char *d, size_t n)
{
    if (n >= 2 && d[0] == '\r' && d[1] == '\n') return 0;
    const char *e = memmem(d, n, "\r\n\r\n", 4);
    return e ? (size_t)(e - d) + 2 : n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2 || size > 64 * 1024) return 0;
    const char *in = (const char *)data;
    const char *nl = memchr(in + 1, '\n', size - 1);
    if (!nl) return 0;
    char *id = strndup(in + 1, (size_t)(nl - in - 1));
    if (!id || !*id) {
        free(id);
        return 0;
    }
    const char *msg = nl + 1;
    size_t n = size - (size_t)(msg - in);
    /* DATA as the server passes it on: CRLF line ends only, no NUL. */
    for (size_t i = 0; i < n; i++)
        if (!msg[i] || (msg[i] == '\r') != (i + 1 < n && msg[i + 1] == '\n') ||
            (msg[i] == '\n' && (i == 0 || msg[i - 1] != '\r'))) {
            free(id);
            return 0;
        }
    reading whole, split, octets;
    read_msg(id, msg, n, 0, 0, &whole);
    read_msg(id, msg, n, n ? (size_t)(unsigned char)in[0] % (n + 1) : 0, 0, &split);
    read_msg(id, msg, n, 0, 1, &octets);
    same(&whole, &split);
    same(&whole, &octets);

    /* Nothing of ours is left in the header block that comes out, and the
     * body is the body that went in. */
    size_t hb = block_len(whole.out.data ? whole.out.data : "", whole.out.len);
    sk_authres_span *spans = NULL;
    size_t found = 0;
    if (sk_authres_find_ours(whole.out.data ? whole.out.data : "", hb, id, &spans, &found) != SK_OK)
        abort();
    sk_free(spans);
    if (found) abort();
    size_t in_hb = block_len(msg, n);
    if (n - in_hb != whole.out.len - hb ||
        (n > in_hb && memcmp(msg + in_hb, whole.out.data + hb, n - in_hb)))
        abort();
    /* The From copy: From fields, whole lines of the input. */
    const sk_buf *f = &whole.h.from;
    if (f->len) {
        const char *eol = memmem(f->data, f->len, "\r\n", 2);
        size_t first = eol ? (size_t)(eol - f->data) : f->len;
        if (f->len < 5 || strncasecmp(f->data, "From", 4) || !memmem(msg, n, f->data, first))
            abort();
    }
    done(&whole);
    done(&split);
    done(&octets);
    free(id);
    return 0;
}
