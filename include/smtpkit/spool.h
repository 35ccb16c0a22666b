/* The durable spool: accepted messages and their envelopes on disk, group
 * commit before the 250, crash recovery, and access to stored messages. */
#ifndef SMTPKIT_SPOOL_H
#define SMTPKIT_SPOOL_H

#include <stdint.h>
#include <sys/types.h>

#include "proto.h"
#include "util.h"

#ifdef __cplusplus
extern "C" {
#endif

struct event_base;

/* A queue ID: 16 characters of Crockford base32, 50 bits of milliseconds
 * since the epoch then 30 random bits, so IDs sort by arrival time. */
#define SK_SPOOL_ID_LEN  16
#define SK_SPOOL_ID_SIZE (SK_SPOOL_ID_LEN + 1)

/* Fill out with a new ID for time now_ms (0: the current time). */
SK_NODISCARD sk_err sk_spool_id_new(char out[SK_SPOOL_ID_SIZE], uint64_t now_ms);
/* 1 if s is a well-formed queue ID (also guards paths built from it). */
int sk_spool_id_valid(const char *s);

/* Where a message stands. A new message is ACTIVE (or HOLD when the daemon
 * runs with --hold); a transient failure makes it DEFERRED until
 * next_attempt; release moves HOLD to ACTIVE. */
typedef enum sk_spool_state {
    SK_SPOOL_ACTIVE = 0,
    SK_SPOOL_DEFERRED,
    SK_SPOOL_HOLD,
    SK_SPOOL_STATE__COUNT
} sk_spool_state;
const char *sk_spool_state_name(sk_spool_state s); /* "active", "deferred", "hold" */

typedef enum sk_rcpt_state {
    SK_RCPT_PENDING = 0,
    SK_RCPT_DELIVERED,
    SK_RCPT_FAILED, /* permanently; a DSN is due when NOTIFY asks for one */
    SK_RCPT_STATE__COUNT
} sk_rcpt_state;
const char *sk_rcpt_state_name(sk_rcpt_state s); /* "pending", "delivered", "failed" */

typedef struct sk_spool_rcpt {
    char *addr;      /* forward path without <> */
    char *orcpt;     /* RFC 3461 4.2 ORCPT as given ("rfc822;a@b"), NULL when none */
    unsigned notify; /* SK_DSN_NOTIFY_* bits */
    sk_rcpt_state state;
    char *last_reply; /* last reply for this recipient ("250 2.0.0 ..."), NULL when none */
} sk_spool_rcpt;

/* The envelope stored with each message. Strings are owned by the
 * envelope when it comes from the spool (sk_spool_load, free with
 * sk_spool_envelope_free); sk_spool_begin copies the caller's. NULL
 * strings mean "not given". */
typedef struct sk_spool_envelope {
    char id[SK_SPOOL_ID_SIZE]; /* set by the spool */
    int64_t arrival;           /* unix seconds; 0 in sk_spool_begin = now */
    char *sender;              /* reverse path without <>; "" is the null sender */
    sk_spool_rcpt *rcpts;
    size_t nrcpts;
    sk_mail_params mail; /* MAIL FROM parameters (SIZE, BODY, SMTPUTF8, RET, ENVID, ...) */
    /* The session it came from, for Received: (RFC 5321 4.4). */
    char *helo;      /* EHLO/HELO argument */
    char *peer;      /* client address, e.g. "192.0.2.1" or "IPv6:2001:db8::1" */
    char *peer_name; /* reverse DNS name when known */
    int esmtp;       /* 1 if the client said EHLO */
    char *tls;       /* TLS version and cipher ("TLSv1.3 TLS_AES_256_GCM_SHA384"), NULL = none */
    char *auth_user; /* authenticated user, NULL when none */
    /* Delivery state; survives restarts. */
    sk_spool_state state;
    unsigned attempts;
    int64_t next_attempt; /* unix seconds; 0 = as soon as possible */
    char *last_reply;     /* last transient reply for the message, NULL when none */
    /* 1 once the delay DSN (RFC 3464 "delayed") went out: one per message;
     * 0 in envelopes written before it was recorded. */
    int delay_dsn_sent;
    uint64_t body_octets; /* stored body size, set by the spool */
    /* CRC-32C of the stored body, set by the spool; recovery compares it
     * (docs/queue.md "Recovery"). has_body_crc32c is 0 in envelopes
     * written before it was recorded. */
    uint32_t body_crc32c;
    int has_body_crc32c;
    /* Header fields the receiving server added at acceptance (its
     * DKIM-Signature and Authentication-Results fields), CRLF line ends:
     * part of the message, kept apart from the stored body because they
     * are known only once the body has been read. The transports deliver
     * them first, below their own Return-Path and Received. NULL: none. */
    char *prepend;
} sk_spool_envelope;

void sk_spool_envelope_free(sk_spool_envelope *env); /* accepts NULL */
/* Deep copy (NULL on allocation failure). */
sk_spool_envelope *sk_spool_envelope_dup(const sk_spool_envelope *env);
/* The "with" protocol name of RFC 3848 for Received: SMTP, ESMTP, ESMTPS,
 * ESMTPA, ESMTPSA. */
const char *sk_spool_envelope_protocol(const sk_spool_envelope *env);
/* Text form written next to each message (docs/queue.md), and back. */
SK_NODISCARD sk_err sk_spool_envelope_serialize(const sk_spool_envelope *env, sk_buf *out);
SK_NODISCARD sk_err sk_spool_envelope_parse(const char *text, size_t len, sk_spool_envelope **out);

typedef struct sk_spool sk_spool;
typedef struct sk_spool_msg sk_spool_msg;

typedef enum sk_spool_mode {
    /* The daemon: takes the spool lock (waits up to lock_wait_ms), creates
     * the directories, recovers, and commits messages. */
    SK_SPOOL_OWNER = 0,
    /* Reading only (queue list/show): no lock, no recovery, no writing. */
    SK_SPOOL_READONLY,
} sk_spool_mode;

/* How a group of commits is made durable (docs/queue.md "Durability
 * order"). */
typedef enum sk_spool_sync {
    /* The group's small messages (bodies up to 64 KiB) are appended to the
     * spool's journal and made durable with one fdatasync(2) of it; their
     * files are synced later, many groups at a time, by one syncfs(2) (a
     * checkpoint). A group with a larger message gets a syncfs as in
     * SK_SPOOL_SYNC_FS. */
    SK_SPOOL_SYNC_LOG = 0,
    /* One syncfs(2) on the spool's file system per group, whatever its
     * size. Also flushes unrelated dirty data on that file system. */
    SK_SPOOL_SYNC_FS,
    /* fdatasync(2) of each body and envelope, one fsync(2) of the
     * directory per group: for a spool on a file system shared with
     * heavy writers, where syncfs would wait for their data too. */
    SK_SPOOL_SYNC_FILES,
} sk_spool_sync;

typedef struct sk_spool_opts {
    sk_spool_mode mode;
    sk_logger log;
    unsigned lock_wait_ms;    /* 0 = 5000 */
    size_t max_batch;         /* messages per group commit, 0 = 256 */
    uint64_t max_body_octets; /* writes past this fail with SK_ERR_TOO_LONG; 0 = no limit */
    sk_spool_sync sync;       /* SK_SPOOL_SYNC_LOG by default; no mode: SK_ERR_INVAL */
    /* Size of the journal (SK_SPOOL_SYNC_LOG): a checkpoint is made when
     * the next group does not fit. 0 = SK_SPOOL_JOURNAL_OCTETS. */
    uint64_t journal_octets;
    /* Test hooks, NULL in production: replace write(2) and the durability
     * calls (fdatasync(2) of a file, fsync(2) of the directory, or
     * syncfs(2) with the directory's fd), e.g. to fail with ENOSPC.
     * Called from the committer thread too. */
    ssize_t (*write_fn)(void *ctx, int fd, const void *p, size_t n);
    int (*sync_fn)(void *ctx, int fd);
    void *hook_ctx;
} sk_spool_opts;

/* Open the spool under data_dir (data_dir/spool; docs/queue.md). With an
 * event_base, commits are made durable by a committer thread in groups and
 * completed on that base's loop thread; with NULL, sk_spool_commit works
 * synchronously and calls done before it returns (tools and tests). */
sk_spool *sk_spool_open(const char *data_dir, const sk_spool_opts *opts, struct event_base *base,
                        sk_error *err);
/* Finishes commits in flight (their done callbacks run first), then frees. */
void sk_spool_free(sk_spool *s);
const char *sk_spool_dir(const sk_spool *s); /* data_dir/spool */

/* Start a message: assigns its queue ID (sk_spool_msg_id). No file is made
 * yet: the body stays in memory up to 64 KiB and its file is created when
 * it grows past that or by the commit. env is copied; its id, body_octets
 * and body_crc32c are ignored. Set env->state to SK_SPOOL_HOLD to keep the
 * message in the hold queue (--hold). */
sk_spool_msg *sk_spool_begin(sk_spool *s, const sk_spool_envelope *env, sk_error *err);
const char *sk_spool_msg_id(const sk_spool_msg *m);
/* Append body bytes as received (after dot-unstuffing; CRLF line ends).
 * Call as often as data arrives. An error is also remembered and reported
 * by the commit. */
sk_err sk_spool_write(sk_spool_msg *m, const void *p, size_t n);
/* Header fields (CRLF line ends, each ending in CRLF) to put before the
 * body, known only at its end: a DKIM signature, Authentication-Results.
 * Appended to what was given before; stored in the envelope (its
 * "prepend" line), so the commit makes them durable with the body.
 * Call before sk_spool_commit. SK_ERR_NOMEM; SK_ERR_SYNTAX when fields is
 * empty or does not end in CRLF. */
SK_NODISCARD sk_err sk_spool_msg_prepend(sk_spool_msg *m, const char *fields, size_t len);

/* Completion of a commit: SK_OK once the message and its envelope are on
 * disk and fsync'd (then, and only then, answer 250); SK_ERR_NOSPACE or
 * SK_ERR_IO otherwise (answer 452 4.3.1), and nothing of the message is
 * left. Called on the loop thread of the spool's event_base. */
typedef void (*sk_spool_done_fn)(void *ctx, sk_err err, const char *queue_id);
/* Make m durable; takes ownership of m (do not use it afterwards). */
void sk_spool_commit(sk_spool_msg *m, sk_spool_done_fn done, void *ctx);
/* Drop an uncommitted message and its file. */
void sk_spool_abort(sk_spool_msg *m);

/* Told of each message committed (after its done callback): the queue
 * runner registers here. One listener. */
typedef void (*sk_spool_listener_fn)(void *ctx, const sk_spool_envelope *env);
void sk_spool_set_listener(sk_spool *s, sk_spool_listener_fn fn, void *ctx);

/* Stored messages. IDs come sorted (oldest first); free with
 * sk_spool_ids_free. */
SK_NODISCARD sk_err sk_spool_list(sk_spool *s, char ***ids, size_t *n, sk_error *err);
void sk_spool_ids_free(char **ids, size_t n);
/* SK_ERR_NOT_FOUND when there is no committed message with that ID. */
SK_NODISCARD sk_err sk_spool_load(sk_spool *s, const char *id, sk_spool_envelope **env,
                                  sk_error *err);
/* Replace the stored envelope atomically and durably (owner only). */
SK_NODISCARD sk_err sk_spool_save(sk_spool *s, const sk_spool_envelope *env, sk_error *err);
/* Remove a message (envelope first, so it is never half there). It is gone
 * at once; with an event base the directory fsync that makes the removal
 * durable is left to the committer thread's next group. */
SK_NODISCARD sk_err sk_spool_remove(sk_spool *s, const char *id, sk_error *err);
/* Path of a message's body file (CRLF line ends, as received). */
SK_NODISCARD sk_err sk_spool_body_path(const sk_spool *s, const char *id, sk_buf *out);
/* The header block of a message (up to and without the empty line). */
SK_NODISCARD sk_err sk_spool_read_headers(sk_spool *s, const char *id, sk_buf *out, sk_error *err);

#ifdef __cplusplus
}
#endif
#endif
