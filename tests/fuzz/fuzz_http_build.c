/* Fuzz target: the HTTP API's request-to-message builder
 * (sk_http_build_messages, src/http/build.c): a POST /v1/messages or
 * /v1/messages/raw body, JSON, made into message bytes and envelopes.
 * The first octet picks the kind (bit 0: raw) and the size limit (bits
 * 1-2); the rest is the body. Beyond "no crash": an error leaves no
 * message, is one of the documented kinds and says why; a message has an
 * envelope of addr-specs, stays within the limit, has CRLF line ends only
 * and no NUL, and is marked SMTPUTF8 when its envelope or header is not
 * ASCII. */
#include <smtpkit/http.h>

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const uint64_t limits[] = {0, 512, 4096, 65536};

static bool ascii(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] > 0x7f) return false;
    return true;
}

/* An addr-spec as the envelope carries it: local@domain, no space, no
 * control character, no angle bracket. */
static bool addr_ok(const char *a, bool empty_ok)
{
    if (!a) return false;
    if (!*a) return empty_ok;
    if (!strchr(a, '@')) return false;
    for (const unsigned char *c = (const unsigned char *)a; *c; c++)
        if (*c < 0x21 || *c == 0x7f || *c == '<' || *c == '>') return false;
    return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    sk_http_body_kind kind = data[0] & 1 ? SK_HTTP_RAW : SK_HTTP_COMPOSE;
    uint64_t max = limits[(data[0] >> 1) & 3];
    sk_http_build b;
    sk_err e = sk_http_build_messages(kind, (const char *)data + 1, size - 1, max, &b);
    if (e) {
        if (e != SK_ERR_SYNTAX && e != SK_ERR_INVAL && e != SK_ERR_TOO_LONG && e != SK_ERR_NOMEM)
            abort();
        if (b.msgs || b.n) abort();
        if (!memchr(b.field, '\0', sizeof b.field) || !memchr(b.message, '\0', sizeof b.message))
            abort();
        if (!b.message[0]) abort();
        sk_http_build_free(&b);
        return 0;
    }
    if (!b.msgs || b.n < 1 || b.n > SK_HTTP_BATCH_MAX) abort();
    for (size_t i = 0; i < b.n; i++) {
        const sk_http_out *o = &b.msgs[i];
        if (!addr_ok(o->sender, true) || o->nrcpts < 1 || !o->rcpts) abort();
        bool utf8 = !ascii(o->sender, strlen(o->sender));
        for (size_t k = 0; k < o->nrcpts; k++) {
            if (!addr_ok(o->rcpts[k], false)) abort();
            if (!ascii(o->rcpts[k], strlen(o->rcpts[k]))) utf8 = true;
        }
        const char *d = o->data.data;
        size_t len = o->data.len;
        if (!d || len < 2 || (max && len > max)) abort();
        if (memchr(d, '\0', len)) abort();
        for (size_t k = 0; k < len; k++) {
            if (d[k] == '\r' && (k + 1 == len || d[k + 1] != '\n')) abort();
            if (d[k] == '\n' && (k == 0 || d[k - 1] != '\r')) abort();
        }
        if (d[len - 2] != '\r' || d[len - 1] != '\n') abort();
        /* The header block: up to the first empty line. */
        const char *end = memmem(d, len, "\r\n\r\n", 4);
        if (kind == SK_HTTP_COMPOSE && !end) abort();
        if (!ascii(d, end ? (size_t)(end - d) : len)) utf8 = true;
        if (utf8 && !o->smtputf8) abort();
        if (o->message_id) {
            size_t n = strlen(o->message_id);
            if (n < 3 || o->message_id[0] != '<' || o->message_id[n - 1] != '>') abort();
        }
        if (kind == SK_HTTP_COMPOSE && !o->message_id) abort();
        if (o->has_priority && (o->priority < -9 || o->priority > 9)) abort();
    }
    sk_http_build_free(&b);
    return 0;
}
