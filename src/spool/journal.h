/* The spool's journal (docs/queue.md "The journal"): one preallocated file
 * to which each group of small messages is appended as records and made
 * durable with one fdatasync(2), instead of a syncfs(2) of the whole file
 * system. The message files are still written, without a sync of their
 * own; a checkpoint (one syncfs, then a new generation) makes them durable
 * and retires every record. Recovery replays the records of the current
 * generation over missing or torn message files. */
#ifndef SK_SPOOL_JOURNAL_H
#define SK_SPOOL_JOURNAL_H

#include "spool/io.h"

#include <smtpkit/util.h>

#include <sys/types.h>

#include <stddef.h>
#include <stdint.h>

#define SK_JOURNAL_FILE "journal"
/* Octets before the first record: two header slots, written in turn. */
#define SK_JOURNAL_HEAD_OCTETS 4096
/* A record: magic, generation, queue ID, content length, CRC-32C. */
#define SK_JOURNAL_RECORD_OCTETS 48

typedef struct sk_journal {
    int fd;        /* -1: no journal */
    uint64_t size; /* of the file; records live in [HEAD, size) */
    uint64_t seq;  /* of the newest header slot */
    uint64_t gen;  /* records of this generation are live */
    uint64_t tail; /* where the next record goes */
    /* An append failed: its records may be on disk; start a new
     * generation (after a checkpoint) before the next append. */
    int need_reset;
    /* The test hooks of sk_spool_opts; empty in production. */
    sk_spool_hooks hooks;
} sk_journal;

/* Called by sk_journal_replay for each live record, in order: content is
 * the message file's bytes (body, envelope, trailer). */
typedef sk_err (*sk_journal_replay_fn)(void *ctx, const char *id, const char *content, size_t n);

/* Open dir_fd/journal, creating it (size octets, header, fdatasync, fsync
 * of dir_fd) when missing. An existing journal keeps its records until
 * sk_journal_replay. size 0: only open an existing one (j->fd stays -1
 * when there is none). */
SK_NODISCARD sk_err sk_journal_open(sk_journal *j, int dir_fd, uint64_t size);
/* Hand every live record to fn; stops at the first record that is not
 * complete and of the current generation (an append cut short). *n counts
 * the records. An error of fn or of reading stops it and is returned. */
SK_NODISCARD sk_err sk_journal_replay(sk_journal *j, sk_journal_replay_fn fn, void *ctx, size_t *n);
/* Start a new generation: every record written so far is retired. Writes
 * the other header slot and fdatasyncs it. The caller must have made the
 * records' message files durable first. Also brings the file to size
 * (a journal made with another size). */
SK_NODISCARD sk_err sk_journal_new_generation(sk_journal *j, uint64_t size);
/* Octets a record of a content of n octets takes. */
uint64_t sk_journal_record_octets(size_t n);
/* Append one record to out (the group's buffer, written with
 * sk_journal_append): its header, then the content given in nparts
 * pieces. */
SK_NODISCARD sk_err sk_journal_record(const sk_journal *j, const char *id,
                                      const struct iovec *parts, size_t nparts, sk_buf *out);
/* Write the group's records at the tail and fdatasync. On failure sets
 * need_reset. */
SK_NODISCARD sk_err sk_journal_append(sk_journal *j, const char *p, size_t n);
void sk_journal_close(sk_journal *j);

#endif
