/* Fuzz target: reading Authentication-Results (sk_authres_parse_id) and
 * finding and stripping ours in a header block (sk_authres_find_ours,
 * sk_authres_strip). The first line of the input is the authserv-id to
 * look for, the rest the header block. Properties: an id that parses
 * writes back (sk_authres_build) to a field whose id reads the same; the
 * spans found are whole fields in order; stripping removes exactly them
 * (keeping the lines around them apart), and stripping again finds
 * nothing. */
#include <smtpkit/authres.h>
#include <smtpkit/message.h>

#include <stdlib.h>
#include <string.h>
#include <strings.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void roundtrip_id(const char *value, size_t n)
{
    sk_buf id = SK_BUF_INIT(SK_AUTHRES_HEADER_MAX_OCTETS);
    unsigned v;
    if (sk_authres_parse_id(value, n, &id, &v) != SK_OK) goto out;
    if (id.len == 0 || memchr(id.data, '\0', id.len)) goto out;
    sk_buf h = SK_BUF_INIT(SK_AUTHRES_HEADER_MAX_OCTETS);
    sk_err e = sk_authres_build(id.data, NULL, 0, &h, NULL);
    if (e == SK_OK) {
        sk_buf back = SK_BUF_INIT(SK_AUTHRES_HEADER_MAX_OCTETS);
        const char *colon = strchr(h.data, ':');
        if (sk_authres_parse_id(colon + 1, strlen(colon + 1), &back, NULL) != SK_OK) abort();
        if (strcmp(back.data, id.data)) abort();
        sk_buf_free(&back);
    } else if (e != SK_ERR_INVAL && e != SK_ERR_TOO_LONG) {
        abort();
    }
    sk_buf_free(&h);
out:
    sk_buf_free(&id);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 64 * 1024) return 0;
    const char *in = (const char *)data;
    const char *nl = memchr(in, '\n', size);
    if (!nl) {
        roundtrip_id(in, size);
        return 0;
    }
    char *id = strndup(in, (size_t)(nl - in));
    if (!id) return 0;
    const char *hdr = nl + 1;
    size_t len = size - (size_t)(hdr - in);
    roundtrip_id(hdr, len);

    sk_authres_span *spans;
    size_t n;
    sk_err e = sk_authres_find_ours(hdr, len, id, &spans, &n);
    if (e == SK_ERR_INVAL && !*id) goto done;
    if (e != SK_OK) abort();
    size_t removed_octets = 0, prev_end = 0;
    for (size_t i = 0; i < n; i++) {
        if (spans[i].offset < prev_end || spans[i].length == 0) abort();
        if (spans[i].offset + spans[i].length > len) abort();
        if (strncasecmp(hdr + spans[i].offset, "Authentication-Results", 22)) abort();
        prev_end = spans[i].offset + spans[i].length;
        removed_octets += spans[i].length;
    }
    sk_free(spans);
    sk_buf out = SK_BUF_INIT(len + 1);
    size_t removed;
    if (sk_authres_strip(hdr, len, id, &out, &removed) != SK_OK) abort();
    /* Removed fields, and a CR made CRLF where lines would join. */
    if (removed != n || out.len < len - removed_octets || out.len > len - removed_octets + n)
        abort();
    if (sk_authres_find_ours(out.data ? out.data : "", out.len, id, &spans, &n) != SK_OK) abort();
    if (n != 0) abort();
    sk_buf_free(&out);
done:
    free(id);
    return 0;
}
