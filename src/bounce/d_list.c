/* Detector "list": mailing-list managers' notices about a message posted to
 * a list, and the recognition of a list's own mail, which is never a bounce.
 *
 * Notices read (the recipient is the list's posting address):
 * - Mailman 2 and 3, held for moderation: subject "Your message to LIST
 *   awaits moderator approval", text "Your mail to 'LIST' with the subject
 *   ... Is being held until the list moderator can review it for
 *   approval. The reason it is being held: REASON" (a delay: never a
 *   failure);
 * - Mailman 2 and 3, refused: "Your request to the LIST mailing list ...
 *   has been rejected by the list moderator", the moderator's reason after
 *   it (a failure of policy, not of the address).
 * The list's address: the returned message's To or Cc naming the list, else
 * the notice's From with Mailman's role suffix taken off (LIST-bounces@,
 * LIST-owner@, LIST-admin@, LIST-request@).
 *
 * A list's own mail (bn_list_own): ezmlm's warnings and probes ("This is
 * the ezmlm program"), Mailman's probes ("This is a probe message") and
 * its notices to members and owners about bounces it received, and
 * digests (a multipart/digest, or Mailman's and ezmlm's digest subjects).
 * They quote or attach bounces of mail *to* the list's members: nothing
 * in them is a recipient of ours, so nothing is read from them at all. */
#include "bounce_int.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

/* Mailman's role addresses beside the posting address. */
static const char *const roles[] = {"-bounces", "-owner", "-admin", "-request"};

/* The posting address of the list from the From of the notice:
 * "name-bounces@host" gives "name@host". 0 when From is no role address. */
static int list_from_sender(const bn_msg *m, char *out, size_t outsize)
{
    char from[1024], addr[SK_SMTP_PATH_MAX_OCTETS + 1];
    if (!bn_header(&m->top, "From", from, sizeof from) ||
        !bn_address(from, strlen(from), addr, sizeof addr))
        return 0;
    char *at = strrchr(addr, '@');
    size_t local = (size_t)(at - addr);
    for (size_t i = 0; i < sizeof roles / sizeof roles[0]; i++) {
        size_t rn = strlen(roles[i]);
        if (local <= rn || strncasecmp(at - rn, roles[i], rn) != 0) continue;
        /* Not checked against the name the text gives: Mailman 2 names the
         * list by its display name, which may differ from its address. */
        size_t base = local - rn;
        int n = snprintf(out, outsize, "%.*s%s", (int)base, addr, at);
        return n > 0 && (size_t)n < outsize;
    }
    return 0;
}

/* The returned message's To or Cc address whose local part is the list's
 * name. */
static int list_from_returned(const bn_msg *m, const char *name, char *out, size_t outsize)
{
    static const char *const fields[] = {"To", "Cc"};
    for (size_t i = 0; name[0] && i < sizeof fields / sizeof fields[0]; i++) {
        char v[1024];
        if (!bn_header(&m->orig, fields[i], v, sizeof v)) continue;
        const char *p = v;
        char addr[SK_SMTP_PATH_MAX_OCTETS + 1];
        while ((p = bn_address(p, strlen(p), addr, sizeof addr)) != NULL) {
            const char *at = strrchr(addr, '@');
            if ((size_t)(at - addr) == strlen(name) && !strncasecmp(addr, name, strlen(name))) {
                snprintf(out, outsize, "%s", addr);
                return 1;
            }
        }
    }
    return 0;
}

/* The list's name after mark in the text: "'LIST'" or "the LIST mailing
 * list" (a word, quotes taken off); "" when absent. */
static void list_name(const sk_buf *t, const char *mark, char *out, size_t outsize)
{
    out[0] = '\0';
    const char *p = bn_find_buf(t, mark);
    if (!p) return;
    p += strlen(mark);
    const char *end = t->data + t->len;
    while (p < end && (*p == ' ' || *p == '\'' || *p == '"')) p++;
    size_t n = 0;
    while (p + n < end && !sk_is_wsp(p[n]) && p[n] != '\n' && p[n] != '\'' && p[n] != '"') n++;
    if (n && n < outsize) {
        memcpy(out, p, n);
        out[n] = '\0';
    }
}

int bn_list_own(const bn_msg *m)
{
    static const char *const marks[] = {
        "this is the ezmlm program",                       /* warnings, probes */
        "this is a probe message",                         /* Mailman's probes */
        "mailing list bounce action notice",               /* Mailman, to owners */
        "has been disabled due to excessive bounces",      /* Mailman, to members */
        "was received as a bounce, but either the bounce", /* Mailman, unrecognised */
    };
    for (size_t i = 0; i < sizeof marks / sizeof marks[0]; i++)
        if (bn_find_buf(&m->text, marks[i])) return 1;
    char v[512];
    if (bn_header(&m->top, "Content-Type", v, sizeof v) &&
        !strncasecmp(v + strspn(v, " \t"), "multipart/digest", 16))
        return 1;
    /* Mailman's "LIST Digest, Vol 12, Issue 3", ezmlm's "LIST Digest 5 Jun
     * 2004 ... Issue 123". A bounce of a digest puts its own words first
     * ("Undeliverable: ", "Returned mail: "): a colon before "Digest". */
    if (bn_header(&m->top, "Subject", v, sizeof v)) {
        const char *d = bn_find(v, strlen(v), " digest");
        if (d && !memchr(v, ':', (size_t)(d - v)) && bn_find(d, strlen(d), " issue ")) return 1;
    }
    return 0;
}

sk_err bn_list(const bn_msg *m, sk_bounce *b)
{
    char name[SK_SMTP_PATH_MAX_OCTETS + 1], reason[SK_REPLY_TEXT_MAX_OCTETS] = "";
    int action;
    const char *p;
    if ((p = bn_find_buf(&m->text, "until the list moderator can review it")) != NULL) {
        action = SK_DSN_DELAYED;
        list_name(&m->text, "your mail to", name, sizeof name);
        const char *r = bn_find_buf(&m->text, "the reason it is being held:");
        if (r) {
            r += strlen("the reason it is being held:");
            while (r < m->text.data + m->text.len && (*r == '\n' || sk_is_wsp(*r))) r++;
            bn_reason(r, (size_t)(m->text.data + m->text.len - r), 3, reason, sizeof reason);
        }
        if (!reason[0]) snprintf(reason, sizeof reason, "held for moderator approval");
    } else if ((p = bn_find_buf(&m->text, "has been rejected by the list moderator")) != NULL) {
        action = SK_DSN_FAILED;
        list_name(&m->text, "your request to the", name, sizeof name);
        const char *r = bn_find(p, (size_t)(m->text.data + m->text.len - p), "reason");
        /* Room left in reason after its fixed words. */
        char why[SK_REPLY_TEXT_MAX_OCTETS - 64] = "";
        if (r) {
            r = memchr(r, '\n', (size_t)(m->text.data + m->text.len - r));
            while (r && r < m->text.data + m->text.len && (*r == '\n' || sk_is_wsp(*r))) r++;
            if (r) bn_reason(r, (size_t)(m->text.data + m->text.len - r), 3, why, sizeof why);
        }
        snprintf(reason, sizeof reason, "rejected by the list moderator%s%s", why[0] ? ": " : "",
                 why);
    } else
        return SK_OK;
    char addr[SK_SMTP_PATH_MAX_OCTETS + 1];
    if (!list_from_returned(m, name, addr, sizeof addr) && !list_from_sender(m, addr, sizeof addr))
        return SK_OK;
    return bn_add(b, addr, action, NULL, reason, NULL);
}
