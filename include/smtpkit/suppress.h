/* Suppression list: recipients we do not send to, because they bounced
 * hard or an operator said so. Kept in the tracking store (track.h), table
 * "suppression" (docs/tracking.md). */
#ifndef SMTPKIT_SUPPRESS_H
#define SMTPKIT_SUPPRESS_H

#include <stdint.h>

#include "classify.h"
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
    /* The bounce that caused it (all NULL for a manual entry, a
     * complaint, or a store from before causes were kept): the queue ID
     * of the message that bounced, the reply, the detector that read it
     * ("smtp-reply" for our own delivery's answer) and the evidence
     * ("recipient-domain", "repeated" or "any"). */
    char *queue_id;
    char *bounce;
    char *detector;
    char *evidence;
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

/* What a bounce is worth as evidence against its recipient. */
typedef struct sk_suppress_evidence {
    const sk_rules *rules; /* the class policies (define lines); NULL: nothing suppresses */
    /* The answer came from the servers of the recipient's own domain (our
     * delivery to its MX, or a report whose remote MTA is in the domain:
     * sk_bounce_host_in_domain). */
    int from_recipient_domain;
    const char *detector; /* the bounce detector; NULL: our delivery's SMTP reply */
    int64_t for_s;        /* 0: the class's duration; else the operator's */
} sk_suppress_evidence;

/* After a bounce: if ev (a bounced event, recorded with sk_track_event)
 * has a class whose policy suppresses, and a permanent reply, suppress
 * its recipient, recording the bounce as the cause. A class with
 * evidence=strong needs the answer from the recipient's own domain, or
 * bounced events of that class for the recipient from two messages
 * within the class's duration (pending events are flushed to count).
 * Temporary classes and 4xx replies never suppress. *added (may be NULL)
 * says whether it did. */
SK_NODISCARD sk_err sk_suppress_after_bounce(sk_track *tr, const sk_track_ev *ev,
                                             const sk_suppress_evidence *how, int *added,
                                             sk_error *err);

/* An in-memory set of entries, keyed by the stored address form: lookups
 * that must not wait for the database (an SMTP server's RCPT) use it. Fill
 * it yourself or let a mirror (below) keep it equal to the store. One
 * thread at a time. */
typedef struct sk_suppress_set sk_suppress_set;
sk_suppress_set *sk_suppress_set_new(void); /* NULL: out of memory */
void sk_suppress_set_free(sk_suppress_set *set);
/* Put a copy of e (its address normalized), replacing an entry for the
 * same address. SK_ERR_INVAL when e->address is not an address. */
SK_NODISCARD sk_err sk_suppress_set_put(sk_suppress_set *set, const sk_suppression *e);
/* SK_ERR_NOT_FOUND when addr had no entry. */
sk_err sk_suppress_set_remove(sk_suppress_set *set, const char *addr);
/* The entry for addr in force at now_s (until_s 0 or later than now_s:
 * the rule sk_suppress_check applies), NULL when there is none. Valid
 * until the set next changes. */
const sk_suppression *sk_suppress_set_find(const sk_suppress_set *set, const char *addr,
                                           int64_t now_s);
size_t sk_suppress_set_count(const sk_suppress_set *set);

/* A mirror: a set kept equal to the suppression list of the store at
 * path, whoever changes it (this process, `smtpkit suppress` in another,
 * the sqlite3 shell). Every change to the table is numbered in the store
 * (table "suppression_log", filled by triggers; docs/tracking.md); the
 * mirror loads the whole list once, then reads only the changes since the
 * last number it saw, on a connection of its own.
 * With an event base, a job on a background thread of the mirror's
 * (sk_workers) reads them every refresh_ms, or at once after
 * sk_suppress_mirror_poke, and the set is updated on
 * base's loop: the loop never waits for SQLite. Without one, the caller
 * reads them with sk_suppress_mirror_refresh. */
typedef struct sk_suppress_mirror sk_suppress_mirror;
typedef struct sk_suppress_mirror_opts {
    sk_logger log;
    unsigned refresh_ms; /* 0: SK_SUPPRESS_REFRESH_MS_DEFAULT */
} sk_suppress_mirror_opts;
/* Loads the list before it returns. NULL on error (the store cannot be
 * read, or was never opened read-write by this version: no change log). */
sk_suppress_mirror *sk_suppress_mirror_new(const char *path, const sk_suppress_mirror_opts *o,
                                           struct event_base *base, sk_error *err);
/* Stops its thread; call it on the loop's thread, before freeing base. */
void sk_suppress_mirror_free(sk_suppress_mirror *m);
/* The set as of the last refresh applied; with an event base, read it on
 * base's loop only. */
const sk_suppress_set *sk_suppress_mirror_set(const sk_suppress_mirror *m);
/* This process has just changed the list (a hard bounce, a complaint):
 * read the changes now rather than at the next refresh. Any thread. */
void sk_suppress_mirror_poke(sk_suppress_mirror *m);
/* Without an event base: read the changes since the last refresh and
 * apply them now (SK_ERR_STATE with a base: its thread does that). */
SK_NODISCARD sk_err sk_suppress_mirror_refresh(sk_suppress_mirror *m, sk_error *err);

#ifdef __cplusplus
}
#endif
#endif
