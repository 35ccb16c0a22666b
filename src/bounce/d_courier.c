/* Detector "courier": the Courier mail server's text failure notice,
 * read when its report part is missing. Marks: "This is a delivery status
 * notification from HOST, running the Courier mail server"; each failed
 * address as "<addr>:" followed by the SMTP exchange ("<<< 550 5.1.1
 * ..."), and the session lines between them. */
#include "bounce_int.h"

sk_err bn_courier(const bn_msg *m, sk_bounce *b)
{
    const char *p = bn_find_buf(&m->text, "running the Courier mail server");
    if (!p) return SK_OK;
    char host[256];
    bn_word_after(&m->text, "delivery status notification from", host, sizeof host);
    sk_err e = bn_set_mta(b, host);
    if (!e) e = bn_blocks(m, p, NULL, b, bn_delayed(m) ? SK_DSN_DELAYED : SK_DSN_FAILED);
    return e;
}
