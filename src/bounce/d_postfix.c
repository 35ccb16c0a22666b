/* Detector "postfix": Postfix's human-readable bounce text (bounce(8)
 * templates), read when the report part is missing or stripped. Marks:
 * "This is the mail system at host HOST." (Postfix 2.3 and later) or
 * "This is the Postfix program at host HOST." (older); one recipient a
 * line, "<addr>: reason", the reason folded onto indented lines, "host X
 * said: 550 ..." for a remote reply, "(expanded from <alias>)" for an
 * alias (the envelope recipient, taken by bn_blocks). */
#include "bounce_int.h"

#include <string.h>

sk_err bn_postfix(const bn_msg *m, sk_bounce *b)
{
    static const char *const marks[] = {"This is the mail system at host",
                                        "This is the Postfix program at host"};
    for (size_t i = 0; i < sizeof marks / sizeof marks[0]; i++) {
        const char *p = bn_find_buf(&m->text, marks[i]);
        if (!p) continue;
        char host[256];
        bn_word_after(&m->text, marks[i], host, sizeof host);
        sk_err e = bn_set_mta(b, host);
        if (!e)
            e = bn_blocks(m, p, "Content-Description:", b,
                          bn_delayed(m) ? SK_DSN_DELAYED : SK_DSN_FAILED);
        return e;
    }
    return SK_OK;
}
