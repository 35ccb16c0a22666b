/* Suppression list: recipients we do not send to, because they bounced
 * hard or an operator said so. Kept in the tracking store (track.h), table
 * "suppression" (docs/tracking.md). */
#ifndef SMTPKIT_SUPPRESS_H
#define SMTPKIT_SUPPRESS_H

#include <stdint.h>

#include "track.h"
#include "util.h"

#ifdef __cplusplus
extern "C" {
#endif

/* One entry. Addresses are compared with the domain case-insensitively
 * (RFC 5321 2.4: domains are case-insensitive) and the local part exactly
 * (RFC 5321 2.4: only the receiving host may interpret its case). */
typedef struct sk_suppression {
    char *address;     /* local part as given, "@", domain in lower case */
    char *reason;      /* "bad-mailbox: 550 5.1.1 no such user", "manual" */
    int64_t created_s; /* Unix seconds */
    int64_t until_s;   /* Unix seconds; 0: does not expire */
} sk_suppression;
void sk_suppression_clear(sk_suppression *s);

/* The form an address is stored in: angle brackets removed, domain (after
 * the last '@') in lower case. SK_ERR_INVAL without a local part or domain. */
SK_NODISCARD sk_err sk_suppress_normalize(const char *addr, sk_buf *out);

/* Suppress addr until until_s (0: for ever), replacing an earlier entry.
 * now_s is the creation time (0: the store's clock). Written at once, not
 * batched like events. */
SK_NODISCARD sk_err sk_suppress_add(sk_track *tr, const char *addr, const char *reason,
                                    int64_t now_s, int64_t until_s, sk_error *err);
/* SK_OK and *found filled (if found is not NULL) when addr is suppressed at
 * now_s (0: the store's clock); SK_ERR_NOT_FOUND when it is not (expired
 * entries do not count). */
SK_NODISCARD sk_err sk_suppress_check(sk_track *tr, const char *addr, int64_t now_s,
                                      sk_suppression *found, sk_error *err);
/* SK_ERR_NOT_FOUND when addr had no entry. */
SK_NODISCARD sk_err sk_suppress_remove(sk_track *tr, const char *addr, sk_error *err);
/* Entries in force at now_s (0: the store's clock), by address. Free with
 * sk_suppress_list_free. */
SK_NODISCARD sk_err sk_suppress_list(sk_track *tr, int64_t now_s, sk_suppression **out, size_t *n,
                                     sk_error *err);
void sk_suppress_list_free(sk_suppression *list, size_t n);

/* After a bounce: if ev is a bounced event whose class is a hard one
 * (bad-mailbox, domain-not-found), suppress its recipient for for_s seconds
 * (0: SK_SUPPRESS_DURATION_S_DEFAULT) with the class and reply as reason.
 * *added (may be NULL) says whether it did. */
SK_NODISCARD sk_err sk_suppress_after_bounce(sk_track *tr, const sk_track_ev *ev, int64_t for_s,
                                             int *added, sk_error *err);

#ifdef __cplusplus
}
#endif
#endif
