/* Detector "yahoo": the bounce Yahoo Mail's servers send. Marks: "Sorry,
 * we were unable to deliver your message to the following address."; the
 * address as "<addr>:" on its own line, then "Remote host said: 550 ...
 * [RCPT_TO]" or the reason in words. Ends at "--- Below this line is a
 * copy of the message." (its qmail ancestry). */
#include "bounce_int.h"

sk_err bn_yahoo(const bn_msg *m, sk_bounce *b)
{
    const char *p =
        bn_find_buf(&m->text, "we were unable to deliver your message to the following address");
    if (!p) return SK_OK;
    return bn_blocks(m, p, "--- Below this line is", b, SK_DSN_FAILED);
}
