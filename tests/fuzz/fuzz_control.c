/* Fuzz target: the control socket's lines (docs/queue.md "The control
 * protocol"): requests as the daemon reads them (up to the first LF, a CR
 * before it dropped) and reply lines as the client reads them. What
 * parses is well-formed and formats back to a line that parses the same. */
#include <smtpkit/control.h>

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_request(const char *line, size_t n)
{
    sk_control_request r, back;
    sk_error err;
    sk_err e = sk_control_request_parse(line, n, &r, &err);
    if (e) {
        if ((e != SK_ERR_SYNTAX && e != SK_ERR_TOO_LONG) || !err.text[0]) abort();
        return;
    }
    const sk_queue_filter *f = &r.filter;
    if ((unsigned)r.op > SK_QUEUE_OP_DELETE || sk_queue_filter_empty(f)) abort();
    if (f->id[0] && !sk_spool_id_valid(f->id)) abort();
    if (f->states >= 1u << SK_SPOOL_STATE__COUNT) abort();
    if (!f->has_sender && f->sender[0]) abort();
    for (const unsigned char *p = (const unsigned char *)f->destination; *p; p++)
        if (*p <= 0x20 || *p == 0x7f || *p == '@') abort();
    for (const unsigned char *p = (const unsigned char *)f->sender; *p; p++)
        if (*p < 0x20 || *p == 0x7f) abort();
    sk_buf b = SK_BUF_INIT(SK_CONTROL_REQUEST_MAX_OCTETS);
    if (sk_control_request_format(&r, &b) != SK_OK) abort();
    if (b.len > SK_CONTROL_REQUEST_MAX_OCTETS || b.data[b.len - 1] != '\n') abort();
    if (sk_control_request_parse(b.data, b.len - 1, &back, &err) != SK_OK) abort();
    if (memcmp(&r, &back, sizeof r) != 0) abort();
    sk_buf_free(&b);
}

static void check_reply(const char *line, size_t n)
{
    sk_control_reply r, back;
    sk_err e = sk_control_reply_parse(line, n, &r);
    if (e) {
        if (e != SK_ERR_SYNTAX && e != SK_ERR_TOO_LONG) abort();
        return;
    }
    if ((unsigned)r.kind > SK_CONTROL_ERROR || r.changed > r.matched) abort();
    if (r.kind == SK_CONTROL_ERROR && (r.err == SK_OK || strlen(r.text) >= n)) abort();
    sk_buf b = SK_BUF_INIT(SK_CONTROL_REPLY_LINE_MAX_OCTETS);
    if (sk_control_reply_format(&r, &b) != SK_OK) abort();
    if (b.len > SK_CONTROL_REPLY_LINE_MAX_OCTETS || b.data[b.len - 1] != '\n') abort();
    if (sk_control_reply_parse(b.data, b.len - 1, &back) != SK_OK) abort();
    /* The text may be cut to fit the line with a longer error word. */
    size_t cut = strlen(back.text);
    if (back.kind != r.kind || back.matched != r.matched || back.changed != r.changed ||
        back.err != r.err || cut > strlen(r.text) || memcmp(back.text, r.text, cut) != 0 ||
        (cut < strlen(r.text) && b.len < SK_CONTROL_REPLY_LINE_MAX_OCTETS - 8))
        abort();
    sk_buf_free(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *p = (const char *)data;
    const char *lf = memchr(p, '\n', size);
    size_t n = lf ? (size_t)(lf - p) : size;
    if (n && p[n - 1] == '\r') n--;
    check_request(p, n);
    check_reply(p, n);
    return 0;
}
