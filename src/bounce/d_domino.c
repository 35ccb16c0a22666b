/* Detector "domino": Lotus Notes / HCL Domino delivery failure reports.
 * Marks: "Your message ... was not delivered to:" then the addresses,
 * then "because:" and the reason for all of them ("User bob
 * (bob@example.com) not listed in Domino Directory"). */
#include "bounce_int.h"

#include <string.h>

sk_err bn_domino(const bn_msg *m, sk_bounce *b)
{
    const char *p = bn_find_buf(&m->text, "was not delivered to:");
    const char *because = bn_find_buf(&m->text, "because:");
    if (!p || !because || because < p) return SK_OK;
    sk_err e = bn_blocks(m, p + strlen("was not delivered to:"), "because:", b, SK_DSN_FAILED);
    char reason[SK_REPLY_TEXT_MAX_OCTETS], status[16];
    const char *r = because + strlen("because:");
    bn_reason(r, (size_t)(m->text.data + m->text.len - r), 4, reason, sizeof reason);
    for (size_t i = 0; !e && reason[0] && i < b->nrcpts; i++) {
        if (b->rcpts[i].reply) continue;
        b->rcpts[i].reply = sk_strdup(reason);
        if (!b->rcpts[i].reply) return SK_ERR_NOMEM;
        if (!b->rcpts[i].status && bn_status(reason, strlen(reason), status)) {
            b->rcpts[i].status = sk_strdup(status);
            if (!b->rcpts[i].status) return SK_ERR_NOMEM;
        }
    }
    return e;
}
