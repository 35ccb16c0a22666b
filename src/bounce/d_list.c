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
 * in them is a recipient of ours, so nothing is read from them at all.
 *
 * The addresses of the lists a bounce or its returned message passed
 * through (bn_list_addresses), which are never the failed recipient: a
 * list hands a post on to its members, and a bounce about one of them
 * carries the list's headers and the list's address as the returned
 * message's To. Only the notices above, about a post the list itself
 * held or refused, name the list (they do not ask bn_not_recipient). */
#include "bounce_int.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

/* Mailman's role addresses beside the posting address. */
static const char *const roles[] = {"-bounces", "-owner", "-admin", "-request"};

/* The base of a role address: "name-bounces@host" gives "name@host" in
 * out; 0 when addr is no role address. */
static int role_base(const char *addr, char *out, size_t outsize)
{
    const char *at = strrchr(addr, '@');
    if (!at) return 0;
    size_t local = (size_t)(at - addr);
    for (size_t i = 0; i < sizeof roles / sizeof roles[0]; i++) {
        size_t rn = strlen(roles[i]);
        if (local <= rn || strncasecmp(at - rn, roles[i], rn) != 0) continue;
        int n = snprintf(out, outsize, "%.*s%s", (int)(local - rn), addr, at);
        return n > 0 && (size_t)n < outsize;
    }
    return 0;
}

/* One entry of m->lists. */
static sk_err add_list(bn_msg *m, const char *s, size_t n)
{
    sk_err e = sk_buf_append(&m->lists, s, n);
    return e ? e : sk_buf_putc(&m->lists, '\n');
}

sk_err bn_list_addresses(bn_msg *m)
{
    /* RFC 2369 3: the list's own mailto: addresses (posting, requests,
     * owner); Mailman's X-BeenThere: the posting address. */
    static const char *const named[] = {"List-Post",        "List-Help",  "List-Subscribe",
                                        "List-Unsubscribe", "List-Owner", "X-BeenThere"};
    /* Where a list's role address shows: the bounce sent to the list's
     * bounce address, the returned message sent by the list. */
    static const char *const top_roles[] = {"To",     "X-Original-To", "Delivered-To",
                                            "Sender", "Errors-To",     "Return-Path"};
    static const char *const orig_roles[] = {"Sender", "Errors-To", "Return-Path"};
    const sk_buf *blocks[] = {&m->top, &m->orig};
    sk_err e = SK_OK;
    for (size_t k = 0; k < 2 && !e; k++) {
        char v[1024], addr[SK_SMTP_PATH_MAX_OCTETS + 1], base[SK_SMTP_PATH_MAX_OCTETS + 1];
        for (size_t i = 0; i < sizeof named / sizeof named[0] && !e; i++) {
            if (!bn_header(blocks[k], named[i], v, sizeof v)) continue;
            /* A role address there ("LIST-request@") names the list too. */
            for (const char *p = v; !e && (p = bn_address(p, strlen(p), addr, sizeof addr));) {
                e = add_list(m, addr, strlen(addr));
                if (!e && role_base(addr, base, sizeof base)) e = add_list(m, base, strlen(base));
            }
        }
        /* RFC 2919 2: List-Id: "phrase <list-label.host>". */
        if (!e && bn_header(blocks[k], "List-Id", v, sizeof v)) {
            const char *lt = strrchr(v, '<'), *gt = lt ? strchr(lt, '>') : NULL;
            if (gt && gt > lt + 1 && memchr(lt, '.', (size_t)(gt - lt)))
                e = add_list(m, lt + 1, (size_t)(gt - lt - 1));
        }
        const char *const *roles_in = k ? orig_roles : top_roles;
        size_t n_roles =
            k ? sizeof orig_roles / sizeof orig_roles[0] : sizeof top_roles / sizeof top_roles[0];
        for (size_t i = 0; i < n_roles && !e; i++)
            if (bn_header(blocks[k], roles_in[i], v, sizeof v) &&
                bn_address(v, strlen(v), addr, sizeof addr) && role_base(addr, base, sizeof base))
                e = add_list(m, base, strlen(base));
    }
    return e;
}

/* 1 when the entry line[0..n) names addr: the same address, or the
 * list-id its local part and host make ("list@host" is "list.host"). */
static int names(const char *line, size_t n, const char *addr)
{
    size_t an = strlen(addr);
    if (n != an) return 0;
    const char *at = strrchr(addr, '@');
    if (memchr(line, '@', n)) return !strncasecmp(line, addr, n);
    size_t local = (size_t)(at - addr);
    return line[local] == '.' && !strncasecmp(line, addr, local) &&
           !strncasecmp(line + local + 1, at + 1, n - local - 1);
}

int bn_list_address(const bn_msg *m, const char *addr)
{
    char base[SK_SMTP_PATH_MAX_OCTETS + 1];
    const char *forms[2] = {addr, role_base(addr, base, sizeof base) ? base : NULL};
    size_t pos = 0, len;
    const char *line;
    if (!strchr(addr, '@')) return 0;
    while (bn_next_line(&m->lists, &pos, &line, &len))
        for (size_t i = 0; i < 2; i++)
            if (forms[i] && len && names(line, len, forms[i])) return 1;
    return 0;
}

/* The posting address of the list from the From of the notice:
 * "name-bounces@host" gives "name@host". 0 when From is no role address. */
static int list_from_sender(const bn_msg *m, char *out, size_t outsize)
{
    char from[1024], addr[SK_SMTP_PATH_MAX_OCTETS + 1];
    if (!bn_header(&m->top, "From", from, sizeof from) ||
        !bn_address(from, strlen(from), addr, sizeof addr))
        return 0;
    /* Not checked against the name the text gives: Mailman 2 names the
     * list by its display name, which may differ from its address. */
    return role_base(addr, out, outsize);
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
