/* Queue IDs that no two messages of one spool share (id.c). */
#ifndef SK_SPOOL_ID_H
#define SK_SPOOL_ID_H

#include <smtpkit/spool.h>

#include <stddef.h>
#include <stdint.h>

/* IDs of one millisecond compared for uniqueness; past that many the
 * time part moves on to the next millisecond. */
#define SK_SPOOL_RECENT_IDS 256

/* The IDs drawn so far by one spool (its loop thread): the time part never
 * goes back and IDs of the same millisecond are compared, so two messages
 * of this process never share one (docs/queue.md "On-disk layout"). Zero
 * is a valid start. */
typedef struct sk_spool_idgen {
    uint64_t ms;
    char recent[SK_SPOOL_RECENT_IDS][SK_SPOOL_ID_SIZE];
    size_t nrecent;
} sk_spool_idgen;

/* A new ID that g has not drawn, at the current time or later. */
SK_NODISCARD sk_err sk_spool_id_unique(sk_spool_idgen *g, char id[SK_SPOOL_ID_SIZE]);
/* Later IDs of g come after id (a stored message's), whatever the clock
 * says. */
void sk_spool_id_after(sk_spool_idgen *g, const char *id);

#endif
