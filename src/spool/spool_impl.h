/* The inside of an open spool, shared by the spool's files: the structures
 * of the spool and of a message in flight, and what each file offers the
 * others (one section per file). Not for other modules: spool_int.h. */
#ifndef SK_SPOOL_IMPL_H
#define SK_SPOOL_IMPL_H

#include "spool/id.h"
#include "spool/journal.h"
#include "spool/spool_int.h"

#include <smtpkit/worker.h>

#include <limits.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

struct event_base;
struct event;

/* Spare files kept ready: one per message, so a group of 64 (docs/queue.md
 * "Spare files"). */
#define SK_SPOOL_SPARES 64
/* Files of removed messages kept for reuse (docs/queue.md "Reused
 * files"): renaming one under a new message's name allocates no inode,
 * and on a busy ext4 inode allocation and freeing are the costliest part
 * of a relayed message's file work. */
#define SK_SPOOL_REUSE_MAX 512
/* A removed message's file while it waits for reuse. */
#define SK_SPOOL_REUSE_EXT ".free"

struct sk_spool_msg {
    sk_spool *s;
    char id[SK_SPOOL_ID_SIZE];
    int fd; /* ID.new: body, then envelope and trailer; -1 until created */
    /* Whether this message made ID.new, so a failure removes only its own
     * file (never another message's after an ID collision). */
    int body_created;
    int body_reused; /* the file held another message's bytes */
    sk_buf wbuf;
    sk_spool_envelope *env;
    uint64_t octets;
    uint32_t crc; /* CRC-32C of the body so far */
    /* The start of the body, until the empty line that ends the header
     * block (RFC 5322 2.1) or a bound (message.c). hdr_end is the header
     * block's length once that line was seen, -1 before. */
    sk_buf hdr;
    long hdr_end;
    sk_err err;
    sk_buf envtext; /* serialized at commit, written by the committer */
    sk_spool_done_fn done;
    void *ctx;
    sk_spool_msg *next;
    /* Acknowledged through the journal; its file is made afterwards by
     * the materializer thread (docs/queue.md "The journal"), which links
     * it through mnext. */
    int journaled;
    sk_spool_msg *mnext;
};

/* A removed message, waiting for the barrier that makes its removal
 * durable: then its ID.env goes, and its ID.free too unless that file
 * joined the reuse pool. */
typedef struct sk_spool_orphan {
    char id[SK_SPOOL_ID_SIZE];
    int pooled;
} sk_spool_orphan;

/* Removals waiting for a barrier (commit.c); guarded by mu. */
typedef struct sk_spool_removals {
    int dirty;         /* a removal waits for the next directory fsync */
    uint64_t since_ms; /* sk_now_ms() of the first such removal */
    /* Removed messages whose ID.env may still exist: unlinked only after
     * the barrier that makes the removal of their ID.msg durable, so a
     * crash never leaves the message file with only its first envelope
     * (docs/queue.md "No duplicate deliveries"). */
    sk_spool_orphan *orphans;
    size_t norphans, cap;
    int sync_failed; /* that barrier failed: logged on the loop thread */
} sk_spool_removals;

/* Spare files (spare.c): unnamed files (O_TMPFILE) made ahead of need by
 * the filler (a job of the spool's group, queued when a spare is taken
 * and it is not queued or running: filling) and given their name with
 * linkat(2), so that inode allocation, which costs up to milliseconds of
 * CPU on a busy ext4, is not on the path to the 250. Guarded by mu. */
typedef struct sk_spool_spares {
    int started;
    sk_job job;
    int filling;
    int fd[SK_SPOOL_SPARES];
    size_t n;
    size_t used;   /* linked under a message's name */
    int off_errno; /* why spare files were turned off (0: they are not) */
    int logged;    /* off_errno was logged (loop thread) */
} sk_spool_spares;

/* Reusable files (spare.c), named ID.free in msgdir; guarded by mu. A
 * removed message's file waits in freed until a barrier has made its
 * rename durable, and only then joins ids: written over earlier, a crash
 * could bring back the old name on the new bytes (docs/queue.md "Reused
 * files"). Together at most SK_SPOOL_REUSE_MAX. */
typedef struct sk_spool_reuse {
    char ids[SK_SPOOL_REUSE_MAX][SK_SPOOL_ID_SIZE];
    size_t n;
    char freed[SK_SPOOL_REUSE_MAX][SK_SPOOL_ID_SIZE];
    size_t nfreed;
    size_t reused; /* files given a message's name */
} sk_spool_reuse;

/* The materializer (materialize.c; SK_SPOOL_SYNC_LOG with an event base):
 * a job of the spool's group that writes the files of journaled messages
 * after their 250. Guarded by mu: q (to write), running (the job is
 * queued or running), written (for the loop thread), unwritten
 * (journaled, file not written yet; a checkpoint waits for 0 on
 * done_cv). */
typedef struct sk_spool_mat {
    int started;
    sk_job job;
    int running;
    size_t since_sync; /* files written since the last syncfs (the job's) */
    pthread_cond_t done_cv;
    sk_spool_msg *q, **tail;
    sk_spool_msg *written, **written_tail;
    size_t unwritten;
    int err_no, logged; /* the last failure, logged by the loop thread */
    /* The last write failed: a checkpoint does not wait (it fails at
     * once; a group that needs one gets 452 instead of waiting). */
    int failing;
} sk_spool_mat;

typedef struct sk_spool_sync_ops sk_spool_sync_ops;

struct sk_spool {
    sk_spool_opts opts;
    sk_spool_hooks hooks;          /* the test hooks of opts */
    const sk_spool_sync_ops *sync; /* opts.sync's table (sync.c) */
    char *dir;                     /* DATA-DIR/spool */
    char *msgdir;                  /* DATA-DIR/spool/msg */
    char *ctldir;                  /* DATA-DIR/spool/ctl */
    int msgdir_fd;
    int lock_fd;
    struct event_base *base;
    /* The spool's background threads (with an event base): one sk_workers
     * group, whose ends and posts the loop drains through ev. */
    sk_workers *workers;
    struct event *ev;
    /* Group commit (commit.c): sessions append to pending and queue the
     * commit job unless it is already (committing); the job takes all of
     * it, makes it durable and moves it to finished, then posts report
     * (unless reported: posted and not run yet), whose done runs on the
     * loop thread: the done callbacks. While only removals wait for a
     * group the job pauses (commit_pausing), and a new message wakes it.
     * Guarded by mu. */
    pthread_mutex_t mu;
    sk_job commit_job, report;
    int committing, commit_pausing, reported;
    int stopping;
    sk_spool_msg *pending, **pending_tail;
    sk_spool_msg *finished, **finished_tail;
    sk_spool_listener_fn listener;
    void *listener_ctx;
    /* The message whose done callback and listener are running (loop
     * thread): sk_spool_read_headers serves it from memory. */
    const sk_spool_msg *finishing;
    sk_spool_removals rm;
    sk_spool_spares spare;
    sk_spool_reuse reuse;
    /* SK_SPOOL_SYNC_LOG (docs/queue.md "The journal"): used by the
     * committer thread only (by the caller without an event base). jbuf
     * holds the records of one group. */
    sk_journal journal;
    sk_buf jbuf;
    sk_spool_mat mat;
    sk_spool_idgen ids; /* loop thread */
    /* With an event base: the IDs of the ID.msg files recovery has still
     * to check, oldest first, from unchecked_next on (loop thread;
     * sk_spool_recover_next). The rest of recovery is done at open. */
    char **unchecked;
    size_t nunchecked, unchecked_next;
};

/* ---- checks ---- */

/* Fail with SK_ERR_STATE unless s was opened as SK_SPOOL_OWNER. */
static inline sk_err sk_spool_check_owner(const sk_spool *s, sk_error *err)
{
    if (s->opts.mode == SK_SPOOL_OWNER) return SK_OK;
    return sk_error_set(err, SK_ERR_STATE, SK_STEP_NONE, "spool opened read-only");
}

/* ---- dir.c: names in msg/ ---- */

/* A name in msgdir: a queue ID and an ending. */
#define SK_SPOOL_NAME_SIZE (NAME_MAX + 1)
void sk_spool_name(char out[SK_SPOOL_NAME_SIZE], const char *id, const char *ext);
/* a/b, NULL when out of memory. */
char *sk_spool_path_join(const char *a, const char *b);
/* Open, test, remove msgdir/ID+ext; -1 with errno, 0, 1 as the system
 * call. */
int sk_spool_open_msg_file(const sk_spool *s, const char *id, const char *ext);
int sk_spool_exists(const sk_spool *s, const char *id, const char *ext);
void sk_spool_unlink(const sk_spool *s, const char *id, const char *ext);
/* Rename ID+from to ID+to; with noreplace failing (EEXIST) when the target
 * exists. 0, or -1 with errno. */
int sk_spool_rename(const sk_spool *s, const char *id, const char *from, const char *to,
                    int noreplace);
/* The queue IDs of the names in msgdir that end in ext, sorted (free with
 * sk_spool_ids_free); other names are not the spool's and are left out. */
SK_NODISCARD sk_err sk_spool_ids_with_ext(const sk_spool *s, const char *ext, char ***out,
                                          size_t *n_out);
/* Remove every msgdir name that ends in ext. */
SK_NODISCARD sk_err sk_spool_unlink_all(const sk_spool *s, const char *ext);

/* ---- msgfile.c: a message file (body, envelope, trailer) ---- */

/* The pieces of m's file, which are also the content of its journal
 * record: the body (whole in wbuf, or the rest of it), the envelope text,
 * the trailer (made in trailer). */
#define SK_SPOOL_MSGFILE_PARTS 3
void sk_spool_msgfile_parts(const sk_spool_msg *m, char trailer[SK_SPOOL_TRAILER_OCTETS + 1],
                            struct iovec iov[SK_SPOOL_MSGFILE_PARTS]);
/* Write the rest of m's file to fd: the body still in wbuf, the envelope,
 * the trailer; a reused file (it held another message) is cut to the new
 * length. */
SK_NODISCARD sk_err sk_spool_msgfile_write(const sk_spool_msg *m, int fd, int reused);
/* The envelope kept in message file fd, which must name id and start
 * where the body ends. SK_ERR_NOT_FOUND when the file has no trailer. */
SK_NODISCARD sk_err sk_spool_msgfile_envelope(int fd, const char *id, sk_spool_envelope **out);
/* Why message file fd does not hold env's body, NULL when it does; with
 * check_crc its CRC-32C too. */
const char *sk_spool_msgfile_problem(int fd, const sk_spool_envelope *env, int check_crc);
/* Whether fd holds exactly the n octets at p: 1, 0, or -1 on a read
 * error. */
int sk_spool_file_holds(int fd, const char *p, size_t n);

/* ---- message.c: a message being received ---- */

void sk_spool_msg_free(sk_spool_msg *m);
/* Remove the file of an uncommitted or failed message. */
void sk_spool_msg_unlink(sk_spool_msg *m);
/* Create m's ID.new (if not yet there) and write the rest of it: body,
 * envelope, trailer. The error is in m->err. */
void sk_spool_msg_write_file(sk_spool_msg *m);
/* The header block of m from memory, as sk_spool_read_headers would read
 * it from the file: 1 when answered (*e the append's result), 0 when the
 * file must be read. */
int sk_spool_msg_headers(const sk_spool_msg *m, sk_buf *out, sk_err *e);
/* The length of the header block at the start of the n octets at d,
 * without the empty line that ends it; all of them when there is none. */
size_t sk_spool_header_block_len(const char *d, size_t n);

/* ---- spare.c: where a new message file comes from ---- */

/* Create msgdir/name for writing, failing if it exists (IDs stay unique):
 * a reused file (*reused set), else a spare when spare_ok, else openat. */
int sk_spool_create_file(sk_spool *s, const char *name, int spare_ok, int *reused, sk_err *err);
/* The filler, with an event base (once the worker group runs). */
void sk_spool_spares_start(sk_spool *s);
/* Close the spares left (the group has stopped). */
void sk_spool_spares_stop(sk_spool *s);
/* Loop thread: log once that spare files were turned off. */
void sk_spool_spares_log_off(sk_spool *s);
/* Take a removed message's ID.msg out of its name (-1 with errno). */
int sk_spool_drop_file(sk_spool *s, const char *id, int *pooled);
/* The first k freed files may be written over now (mu held). */
void sk_spool_freed_to_reuse(sk_spool *s, size_t k);

/* ---- sync.c: how a group is made durable ---- */

/* One table per sk_spool_sync mode, chosen at open: the steps in which the
 * modes differ. A NULL step does nothing. A group commit (commit.c) is
 * commit_early, else: each file written (file_written after each), then
 * barrier, then the renames. */
struct sk_spool_sync_ops {
    /* Recovery, after the records of a journal found at open were
     * written back (replayed: how many; s->journal.fd is -1 when there
     * was none): keep the journal for appends (made in dir_fd when
     * missing), or retire its records and close it. */
    sk_err (*journal_ready)(sk_spool *s, int dir_fd, size_t replayed, sk_error *err);
    /* With an event base, once the committer runs: more threads. */
    void (*start)(sk_spool *s);
    /* Before any file of the group is written: make the group durable
     * without them and return 1 (*barrier and each message's err set), or
     * 0 to go on. */
    int (*commit_early)(sk_spool *s, sk_spool_msg *batch, int dir_dirty, sk_err *barrier);
    /* A message's file was written without error. */
    void (*file_written)(sk_spool *s, sk_spool_msg *m);
    /* The group's one barrier once its files are written; a message whose
     * own step fails gets its err set. dir_dirty: it must also cover the
     * removals made before it (only asked when barrier_covers_removals). */
    sk_err (*barrier)(sk_spool *s, sk_spool_msg *batch, int dir_dirty);
    int barrier_covers_removals;
    /* A barrier for removals alone. */
    sk_err (*sync_removals)(sk_spool *s);
    /* At sk_spool_free, once every commit is reported; unwritten: the
     * journaled messages whose file could not be written. */
    void (*close)(sk_spool *s, size_t unwritten);
};

/* NULL for a value that is not a mode. */
const sk_spool_sync_ops *sk_spool_sync_ops_for(sk_spool_sync mode);
uint64_t sk_spool_journal_size(const sk_spool *s);

/* ---- commit.c: group commit ---- */

/* The spool's worker group and the committer (with an event base). */
SK_NODISCARD sk_err sk_spool_committer_start(sk_spool *s, struct event_base *base, sk_error *err);
/* Finish every commit asked for and every removal waiting. */
void sk_spool_committer_stop(sk_spool *s);
/* Loop thread: run the done callbacks and the listener of finished
 * commits. */
void sk_spool_run_finished(sk_spool *s);
/* Hand m (its envelope serialized) to the committer, or commit it at
 * once without one. */
void sk_spool_commit_msg(sk_spool_msg *m);
/* Have the loop thread run sk_spool_run_finished (mu held). */
void sk_spool_wake_loop(sk_spool *s);
/* Make the removal of id's ID.msg durable (pooled: its ID.free joined the
 * reuse pool), then unlink its ID.env: by the committer later, or at once
 * without one. */
SK_NODISCARD sk_err sk_spool_commit_removal(sk_spool *s, const char *id, int pooled, sk_error *err);

/* ---- materialize.c: files of journaled messages, after their 250 ---- */

void sk_spool_materializer_start(sk_spool *s);
/* After the last finished commits ran: free the messages whose file could
 * not be written (they stay in the journal); how many. */
size_t sk_spool_materializer_drop(sk_spool *s);
/* Hand the journaled messages of batch to the thread (mu held). */
void sk_spool_materialize_later(sk_spool *s, sk_spool_msg *batch);
/* The messages whose files were written since the last call, linked by
 * mnext, and the last write error if not logged yet (mu held). */
sk_spool_msg *sk_spool_materialized_take(sk_spool *s, int *err_to_log);
/* Wait until every journaled message's file is written: SK_ERR_TIMEOUT
 * when that takes too long or writes are failing. */
SK_NODISCARD sk_err sk_spool_materializer_wait(sk_spool *s);

/* ---- recover.c ---- */

/* Settle what a crash left (docs/queue.md "Recovery"). */
SK_NODISCARD sk_err sk_spool_recover(sk_spool *s, sk_error *err);
/* Forget the messages recovery has not checked (the spool is being
 * freed: they stay on disk for the next open). */
void sk_spool_unchecked_free(sk_spool *s);

#endif
