/* Private parts of the spool shared with the queue runner and the tests:
 * directory names, the lock, durable small-file writes (io.h), CRC-32C
 * (crc32c.h), and counters of the file pools. */
#ifndef SK_SPOOL_INT_H
#define SK_SPOOL_INT_H

#include "spool/crc32c.h"
#include "spool/io.h"

#include <smtpkit/spool.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Layout under DATA-DIR (docs/queue.md). */
#define SK_SPOOL_SUBDIR   "spool"
#define SK_SPOOL_MSGDIR   "msg"
#define SK_SPOOL_CTLDIR   "ctl"
#define SK_SPOOL_LOCKFILE "lock"
#define SK_SPOOL_BODY_EXT ".msg"
#define SK_SPOOL_ENV_EXT  ".env"
#define SK_SPOOL_TMP_EXT  ".tmp"
/* A message being received or committed: renamed to ID.msg once durable. */
#define SK_SPOOL_NEW_EXT ".new"

/* The last octets of every message file: where its envelope starts, which
 * is also the body's length (docs/queue.md "Message file"). Fixed width, so
 * a reader finds it with one pread(2) at size - SK_SPOOL_TRAILER_OCTETS. */
#define SK_SPOOL_TRAILER_TAG    "smtpkit-envelope-at "
#define SK_SPOOL_TRAILER_DIGITS 15
#define SK_SPOOL_TRAILER_OCTETS (sizeof SK_SPOOL_TRAILER_TAG - 1 + SK_SPOOL_TRAILER_DIGITS + 1)

/* Take the spool lock under spool_dir, waiting up to wait_ms. Returns the
 * lock's fd, or -1 with *busy_pid set (0 if unknown) when another process
 * holds it, or -1 with an error in err. */
int sk_spool_lock(const char *spool_dir, unsigned wait_ms, long *busy_pid, sk_error *err);

/* The spare files (docs/queue.md "Spare files"), for tests: how many are
 * ready, how many were given a message's name, and why they are off (0:
 * on; -1: no filler, as without an event base). */
void sk_spool_spare_stats(sk_spool *s, size_t *ready, size_t *used, int *off_errno);
/* Files of removed messages kept for reuse (docs/queue.md "Reused
 * files"), for tests: how many are waiting, how many were reused. */
void sk_spool_reuse_stats(sk_spool *s, size_t *pool, size_t *reused);

/* The messages recovery has still to check. With an event base,
 * sk_spool_open settles everything a crash can leave and lists the stored
 * messages (new IDs come after them) but leaves checking each one (its
 * envelope read, its file's size against it) to these calls, so that the
 * daemon accepts mail while the queue takes the old messages in. Each
 * call checks up to max of them, oldest first, removes the broken ones
 * (logged) and hands over the envelopes of those kept: the caller owns
 * the array (sk_free) and each envelope; *more says whether any are left.
 * A message removed meanwhile (sk_spool_remove) is skipped. An error of
 * the moment (EIO, no memory) keeps the files and returns the error with
 * that message still first (what was checked before it is handed over).
 * Without an event base every message is checked at open and there is
 * nothing left here. */
SK_NODISCARD sk_err sk_spool_recover_next(sk_spool *s, size_t max, sk_spool_envelope ***envs,
                                          size_t *n, bool *more, sk_error *err);
size_t sk_spool_unchecked_count(const sk_spool *s);

/* The control directory for requests from other processes. */
const char *sk_spool_ctl_dir(const sk_spool *s);

#endif
