/* Detector "qmail": qmail-send's bounce (qmail 1.03, netqmail, notqmail
 * and its descendants; also vpopmail's). Marks: "Hi. This is the
 * qmail-send program at HOST." and "I'm afraid I wasn't able to deliver
 * your message to the following addresses."; each recipient as "<addr>:"
 * followed by the reason, which ends in "(#5.1.1)" style status. Ends at
 * "--- Below this line is a copy of the message." */
#include "bounce_int.h"

sk_err bn_qmail(const bn_msg *m, sk_bounce *b)
{
    const char *p = bn_find_buf(&m->text, "This is the qmail-send program at");
    const char *q = bn_find_buf(&m->text, "wasn't able to deliver your message to the following");
    if (!p && !q) return SK_OK;
    char host[256];
    bn_word_after(&m->text, "qmail-send program at", host, sizeof host);
    sk_err e = bn_set_mta(b, host);
    if (!e) e = bn_blocks(m, q ? q : p, "--- Below this line is", b, SK_DSN_FAILED);
    return e;
}
