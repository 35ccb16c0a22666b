/* Detector "groupwise": Novell/Micro Focus GroupWise (GWIA) delivery
 * failures. Marks: "The message that you sent was undeliverable to the
 * following:" with each address on a tab-indented line and the reason in
 * parentheses after it ("bob@example.com (user not found)"), then
 * "Possible causes:". */
#include "bounce_int.h"

sk_err bn_groupwise(const bn_msg *m, sk_bounce *b)
{
    const char *p =
        bn_find_buf(&m->text, "message that you sent was undeliverable to the following");
    if (!p) return SK_OK;
    return bn_blocks(m, p, "Possible causes", b, SK_DSN_FAILED);
}
