/* Fuzz target: the client's incremental reply parser. The input is read
 * once in one piece and once cut at pseudo-random points; both readings
 * must yield the same replies and end the same way. */
#include <smtpkit/reply.h>

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Replies kept for comparison; later ones are checked but not compared. */
#define KEEP_REPLIES 64

typedef struct reading {
    sk_reply replies[KEEP_REPLIES];
    size_t texts_len[KEEP_REPLIES]; /* length of the untruncated text */
    size_t n;
    sk_err end; /* SK_OK, or the error that stopped the reading */
} reading;

static void check_reply(const sk_reply_parser *p, const sk_reply *r, reading *out)
{
    if (r->code < 200 || r->code > 559) abort();
    if (sk_reply_class_of(r->code) == SK_REPLY_INVALID) abort();
    if (memchr(r->enhanced, '\0', sizeof r->enhanced) == NULL) abort();
    if (r->enhanced[0] && !sk_enhanced_valid(r->enhanced, r->code)) abort();
    if (memchr(r->text, '\0', sizeof r->text) == NULL) abort();
    const char *all = sk_reply_parser_text(p);
    size_t all_len = strlen(all);
    if (all_len > SK_SMTP_REPLY_MAX_OCTETS) abort();
    /* The reply's text is the parser's full text, truncated. */
    size_t tl = strlen(r->text);
    if (tl > all_len || memcmp(r->text, all, tl) != 0) abort();
    if (tl < all_len && tl != sizeof r->text - 1) abort();
    if (out->n < KEEP_REPLIES) {
        out->replies[out->n] = *r;
        out->texts_len[out->n] = all_len;
    }
    out->n++;
}

/* Feed data in pieces whose lengths come from cuts (NULL: one piece). */
static void read_all(const uint8_t *data, size_t size, const uint8_t *cuts, size_t ncuts,
                     reading *out)
{
    sk_reply_parser p;
    sk_reply_parser_init(&p);
    memset(out, 0, sizeof *out);
    size_t off = 0, piece = 0;
    while (off < size && out->end == SK_OK) {
        size_t chunk = size - off;
        if (cuts && ncuts) {
            chunk = 1 + cuts[piece++ % ncuts];
            if (chunk > size - off) chunk = size - off;
        }
        size_t pos = 0;
        while (pos < chunk) {
            size_t used = 0;
            int done = 0;
            sk_reply r;
            sk_err e = sk_reply_parser_feed(&p, (const char *)data + off + pos, chunk - pos, &used,
                                            &r, &done);
            if (used > chunk - pos) abort();
            if (e != SK_OK) {
                if (e != SK_ERR_SYNTAX && e != SK_ERR_TOO_LONG) abort();
                out->end = e;
                break;
            }
            pos += used;
            if (done) {
                check_reply(&p, &r, out);
            } else if (pos != chunk) {
                abort(); /* no reply, yet bytes were left unread */
            }
        }
        off += chunk;
    }
    sk_reply_parser_free(&p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* The first octets choose the cut points; the rest is the stream. */
    size_t ncuts = size ? data[0] % 8 : 0;
    if (size < 1 + ncuts) return 0;
    const uint8_t *cuts = data + 1;
    data += 1 + ncuts;
    size -= 1 + ncuts;

    static reading whole, pieces, bytes;
    static const uint8_t one[1] = {0};
    read_all(data, size, NULL, 0, &whole);
    read_all(data, size, cuts, ncuts, &pieces);
    read_all(data, size, one, 1, &bytes);
    const reading *other[] = {&pieces, &bytes};
    for (size_t k = 0; k < 2; k++) {
        const reading *o = other[k];
        if (o->n != whole.n || o->end != whole.end) abort();
        for (size_t i = 0; i < whole.n && i < KEEP_REPLIES; i++) {
            const sk_reply *a = &whole.replies[i], *b = &o->replies[i];
            if (a->code != b->code || strcmp(a->enhanced, b->enhanced) != 0 ||
                strcmp(a->text, b->text) != 0 || whole.texts_len[i] != o->texts_len[i])
                abort();
        }
    }
    return 0;
}
