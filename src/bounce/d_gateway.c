/* Detector "gateway": mail gateways and appliances that write a short
 * list (McAfee/Intel Security Email Gateway, Novell/NetMail and several
 * anti-spam appliances). Marks: "--- The following addresses had delivery
 * problems ---" or "The following recipient(s) could not be reached:";
 * each address on a line, the reason after it or on the next lines
 * ("<bob@example.com>   (Permanent error: 550 no such user)"). */
#include "bounce_int.h"

sk_err bn_gateway(const bn_msg *m, sk_bounce *b)
{
    static const char *const marks[] = {
        "following addresses had delivery problems",
        "following recipient(s) could not be reached",
        "following recipients could not be reached",
    };
    for (size_t i = 0; i < sizeof marks / sizeof marks[0]; i++) {
        const char *p = bn_find_buf(&m->text, marks[i]);
        if (p) return bn_blocks(m, p, NULL, b, bn_delayed(m) ? SK_DSN_DELAYED : SK_DSN_FAILED);
    }
    return SK_OK;
}
