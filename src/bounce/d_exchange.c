/* Detector "exchange": Microsoft Exchange and Office 365 non-delivery
 * reports in their text form. Marks: "Delivery has failed to these
 * recipients or groups:" (Exchange 2007 and later, Office 365), "Your
 * message did not reach some or all of the intended recipients."
 * (Exchange 2000/2003), "did not reach the following recipient(s):"
 * (Exchange 5.5, its recipients in X.400 form with an SMTP part), "Your message to ADDR couldn't be
 * delivered." (Office 365 since 2017). The recipients follow the mark; the remote reply is in
 * "Diagnostic information for administrators:" as "Remote Server returned '550 5.1.1 ...'" or
 * "#550 5.1.1 ...##", or, in the older form, "<host #5.1.1>" after the address. */
#include "bounce_int.h"

#include <string.h>

sk_err bn_exchange(const bn_msg *m, sk_bounce *b)
{
    static const char *const marks[] = {
        "Delivery has failed to these recipients or groups",
        "did not reach some or all of the intended recipients",
        "couldn't be delivered",
        "could not be delivered to the following recipients",
        "did not reach the following recipient",
    };
    const char *p = NULL;
    for (size_t i = 0; i < sizeof marks / sizeof marks[0] && !p; i++)
        p = bn_find_buf(&m->text, marks[i]);
    if (!p) return SK_OK;
    /* Exchange's delay notices use the same words. */
    int action = bn_delayed(m) ? SK_DSN_DELAYED : SK_DSN_FAILED;
    const char *diag = bn_find_buf(&m->text, "Diagnostic information for administrators");
    sk_err e = bn_blocks(
        m, p, diag ? "Diagnostic information for administrators" : "Original message headers", b,
        action);
    /* "Your message to a@b couldn't be delivered." names the address on
     * the mark's own line. */
    if (!e && !b->nrcpts) {
        const char *ls;
        size_t ll;
        char addr[SK_SMTP_PATH_MAX_OCTETS + 1];
        bn_line_of(&m->text, p, &ls, &ll);
        if (bn_address(ls, ll, addr, sizeof addr) && !bn_not_recipient(m, addr))
            e = bn_add(b, addr, action, NULL, NULL, NULL);
    }
    if (!diag) return e;
    char gen[256];
    bn_word_after(&m->text, "Generating server:", gen, sizeof gen);
    if (!e) e = bn_set_mta(b, gen);
    size_t dn = (size_t)(m->text.data + m->text.len - diag);
    for (size_t i = 0; !e && i < b->nrcpts; i++) {
        sk_bounce_rcpt *r = &b->rcpts[i];
        const char *at = r->reported ? bn_find(diag, dn, r->reported) : NULL;
        const char *from = at ? at : diag;
        size_t fn = (size_t)(m->text.data + m->text.len - from);
        char reply[SK_REPLY_TEXT_MAX_OCTETS], status[16];
        const char *q = bn_find(from, fn < 2000 ? fn : 2000, "Remote Server returned '");
        if (q)
            q += strlen("Remote Server returned '");
        else if ((q = bn_find(from, fn < 2000 ? fn : 2000, "#")) != NULL)
            q++;
        if (!q || !bn_smtp_reply(q, (size_t)(m->text.data + m->text.len - q), reply, sizeof reply))
            continue;
        /* "#550 5.1.1 RESOLVER.ADR.RecipNotFound; not found ##" */
        char *hash = strstr(reply, "##");
        if (hash) *hash = '\0';
        sk_free(r->reply);
        r->reply = sk_strdup(reply);
        if (!r->reply) return SK_ERR_NOMEM;
        if (!r->status && bn_status(reply, strlen(reply), status)) {
            r->status = sk_strdup(status);
            if (!r->status) return SK_ERR_NOMEM;
        }
    }
    return e;
}
