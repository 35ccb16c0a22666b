/* The spool: message files written as data arrives, made durable in groups
 * by a committer thread, recovered on open (docs/queue.md). */
#include "spool/spool_int.h"

#include "spool/id.h"
#include "spool/journal.h"

#include <dirent.h>
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

/* Body bytes are gathered into writes of this size. */
#define SPOOL_WRITE_CHUNK_OCTETS (64 * 1024)
#define SPOOL_BATCH_DEFAULT      256
#define SPOOL_LOCK_WAIT_MS       5000
/* Spare files kept ready: one per message, so a group of 64 (docs/queue.md
 * "Spare files"). */
#define SPOOL_SPARES 64
/* The header block kept in memory while the body streams in, so that
 * sk_spool_read_headers right after the commit (the daemon looks for the
 * Message-ID then) needs no openat(2) and read(2) of the message file.
 * Longer header blocks are read from the file as before. */
#define SPOOL_HEADER_CAPTURE_OCTETS 8192
/* Files of removed messages kept for reuse (docs/queue.md "Reused
 * files"): renaming one under a new message's name allocates no inode,
 * and on a busy ext4 inode allocation and freeing are the costliest part
 * of a relayed message's file work. */
#define SPOOL_REUSE_MAX 512
/* How long a removal may wait for its directory fsync: a group commit in
 * that time carries it for free (its barrier covers the directory), so a
 * steady relay pays no barrier for removals at all. A removal lost in a
 * crash only brings back a message whose recipients are done
 * (docs/queue.md "No duplicate deliveries"). */
#define SPOOL_REMOVE_SYNC_DELAY_MS 100
#define SPOOL_REUSE_EXT            ".free"
/* How long a checkpoint waits for the materializer to write the files of
 * journaled messages (a retire must not come before them). */
#define SPOOL_CHECKPOINT_WAIT_MS 10000
/* The materializer makes the files it wrote durable every this many
 * (materializer_main says why). */
#define SPOOL_MATERIALIZE_SYNC_FILES 8
/* A failed file write of a journaled message is tried again after this. */
#define SPOOL_MATERIALIZE_RETRY_MS 1000

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
     * block (RFC 5322 2.1) or SPOOL_HEADER_CAPTURE_OCTETS. hdr_end is the
     * header block's length once that line was seen, -1 before. */
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

struct sk_spool {
    sk_spool_opts opts;
    sk_spool_hooks hooks; /* the test hooks of opts */
    char *dir;            /* DATA-DIR/spool */
    char *msgdir;         /* DATA-DIR/spool/msg */
    char *ctldir;         /* DATA-DIR/spool/ctl */
    int msgdir_fd;
    int lock_fd;
    struct event_base *base;
    /* Group commit: sessions append to pending; the committer thread takes
     * all of it, makes it durable and moves it to finished; the loop
     * thread is woken through efd and runs the done callbacks. */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pthread_t thread;
    int thread_started;
    int stopping;
    int dir_dirty;               /* a removal waits for the next directory fsync */
    uint64_t dir_dirty_since_ms; /* sk_now_ms() of the first such removal */
    /* Removed messages whose ID.env may still exist: unlinked only after
     * the barrier that makes the removal of their ID.msg durable, so a
     * crash never leaves the message file with only its first envelope
     * (docs/queue.md "No duplicate deliveries"). */
    sk_spool_orphan *orphans;
    size_t norphans, orphans_cap;
    int remove_sync_failed; /* that fsync failed: logged on the loop thread */
    sk_spool_msg *pending, **pending_tail;
    sk_spool_msg *finished, **finished_tail;
    int efd;
    struct event *ev;
    sk_spool_listener_fn listener;
    void *listener_ctx;
    /* Spare files: unnamed files (O_TMPFILE) made ahead of need by the
     * filler thread and given their name with linkat(2), so that inode
     * allocation, which costs up to milliseconds of CPU on a busy ext4,
     * is not on the path to the 250. Guarded by mu. */
    pthread_t filler;
    int filler_started;
    pthread_cond_t filler_cv;
    int spare[SPOOL_SPARES];
    size_t nspare;
    size_t spares_used; /* linked under a message's name */
    int spare_errno;    /* why spare files were turned off (0: they are not) */
    int spare_logged;   /* spare_errno was logged (loop thread) */
    /* The message whose done callback and listener are running (loop
     * thread): sk_spool_read_headers serves it from its captured header
     * block. */
    const sk_spool_msg *finishing;
    /* Reusable files, named N.free in msgdir; guarded by mu. A removed
     * message's file waits in freed until a barrier has made its rename
     * durable, and only then joins reuse: written over earlier, a crash
     * could bring back the old name on the new bytes (docs/queue.md
     * "Reused files"). Together at most SPOOL_REUSE_MAX. */
    char reuse[SPOOL_REUSE_MAX][SK_SPOOL_ID_SIZE];
    size_t nreuse;
    char freed[SPOOL_REUSE_MAX][SK_SPOOL_ID_SIZE];
    size_t nfreed;
    size_t reused; /* files given a message's name */
    /* SK_SPOOL_SYNC_LOG (docs/queue.md "The journal"): used by the
     * committer thread only (by the caller without an event base). jbuf
     * holds the records of one group. */
    sk_journal journal;
    sk_buf jbuf;
    /* The materializer thread (SK_SPOOL_SYNC_LOG with an event base):
     * writes the files of journaled messages after their 250. Guarded by
     * mu: mat_q (to write), materialized (written, for the loop thread),
     * unmaterialized (journaled, file not written yet; a checkpoint waits
     * for 0 on mat_done_cv). */
    pthread_t mat;
    int mat_started, mat_stopping, mat_stop_tries;
    pthread_cond_t mat_cv, mat_done_cv;
    sk_spool_msg *mat_q, **mat_tail;
    sk_spool_msg *materialized, **materialized_tail;
    size_t unmaterialized;
    int mat_errno, mat_logged; /* the last failure, logged by the loop thread */
    /* The last write failed: a checkpoint does not wait (it fails at
     * once; a group that needs one gets 452 instead of waiting). */
    int mat_failing;
    sk_spool_idgen ids; /* loop thread */
};

/* The first k files of freed had their removal made durable by a barrier:
 * they may be written over now. Called with mu held. */
static void freed_to_reuse(sk_spool *s, size_t k)
{
    memcpy(s->reuse + s->nreuse, s->freed, k * sizeof *s->freed);
    s->nreuse += k;
    s->nfreed -= k;
    memmove(s->freed, s->freed + k, s->nfreed * sizeof *s->freed);
}

static char *path_join(const char *a, const char *b)
{
    sk_buf p = SK_BUF_INIT(PATH_MAX);
    if (sk_buf_printf(&p, "%s/%s", a, b)) {
        sk_buf_free(&p);
        return NULL;
    }
    return sk_buf_detach(&p, NULL);
}

static sk_err make_dir(const char *path, sk_error *err)
{
    if (mkdir(path, 0700) == 0 || errno == EEXIST) return SK_OK;
    return sk_error_set(err, sk_spool_errno(errno), SK_STEP_NONE, "cannot create %s: %s", path,
                        strerror(errno));
}

static uint64_t journal_size(const sk_spool *s)
{
    return s->opts.journal_octets ? s->opts.journal_octets : SK_SPOOL_JOURNAL_OCTETS;
}

/* A checkpoint (SK_SPOOL_SYNC_LOG): one syncfs makes every message file
 * written so far durable, and removals too; then the journal starts a new
 * generation, which retires all its records. Until the new header is on
 * disk, recovery may still replay records of messages removed since: the
 * removal counts as lost in the crash (docs/queue.md "The journal"). */
static sk_err checkpoint(sk_spool *s)
{
    if (s->mat_started) {
        /* Every journaled message's file written first: the syncfs below
         * must cover it before its record is retired. */
        uint64_t until = sk_now_ms() + SPOOL_CHECKPOINT_WAIT_MS;
        pthread_mutex_lock(&s->mu);
        while (s->unmaterialized && !s->mat_failing && sk_now_ms() < until) {
            struct timespec ts = {(time_t)(until / 1000), (long)(until % 1000) * 1000000L};
            pthread_cond_timedwait(&s->mat_done_cv, &s->mu, &ts);
        }
        int behind = s->unmaterialized > 0;
        pthread_mutex_unlock(&s->mu);
        if (behind) return SK_ERR_TIMEOUT;
    }
    sk_err e = sk_spool_sync_fs(&s->hooks, s->msgdir_fd);
    if (e) {
        s->journal.need_reset = 1;
        return e;
    }
    if (s->journal.fd < 0) return SK_OK;
    return sk_journal_new_generation(&s->journal, journal_size(s));
}

int sk_spool_lock(const char *spool_dir, unsigned wait_ms, long *busy_pid, sk_error *err)
{
    *busy_pid = 0;
    char *path = path_join(spool_dir, SK_SPOOL_LOCKFILE);
    if (!path) {
        sk_error_set(err, SK_ERR_NOMEM, SK_STEP_NONE, "out of memory");
        return -1;
    }
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) {
        sk_error_set(err, sk_spool_errno(errno), SK_STEP_NONE, "cannot open %s: %s", path,
                     strerror(errno));
        sk_free(path);
        return -1;
    }
    uint64_t deadline = sk_now_ms() + wait_ms;
    while (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        if (errno != EWOULDBLOCK && errno != EINTR) {
            sk_error_set(err, SK_ERR_IO, SK_STEP_NONE, "cannot lock %s: %s", path, strerror(errno));
            close(fd);
            sk_free(path);
            return -1;
        }
        if (sk_now_ms() >= deadline) {
            char pid[32] = "";
            ssize_t r = pread(fd, pid, sizeof pid - 1, 0);
            if (r > 0) pid[r] = '\0';
            *busy_pid = strtol(pid, NULL, 10);
            sk_error_set(err, SK_ERR_STATE, SK_STEP_NONE, "spool %s is in use by process %ld",
                         spool_dir, *busy_pid);
            close(fd);
            sk_free(path);
            return -1;
        }
        struct timespec ts = {0, 20 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    sk_free(path);
    char pid[32];
    int n = snprintf(pid, sizeof pid, "%ld\n", (long)getpid());
    if (ftruncate(fd, 0) == 0 && pwrite(fd, pid, (size_t)n, 0) != n) {
        /* The PID is informational only; the lock is what counts. */
    }
    return fd;
}

/* Where the envelope kept at the end of message file fd starts (which is
 * also the body's length), from the file's trailer. SK_ERR_NOT_FOUND when
 * the file has no trailer: a message being received, or a file written by
 * a version that kept envelopes only in ID.env. */
static sk_err trailer_read(int fd, uint64_t size, uint64_t *env_at)
{
    const size_t tag = sizeof SK_SPOOL_TRAILER_TAG - 1;
    char t[SK_SPOOL_TRAILER_OCTETS];
    if (size < sizeof t) return SK_ERR_NOT_FOUND;
    if (sk_spool_pread_all(fd, t, sizeof t, size - sizeof t)) return SK_ERR_IO;
    if (memcmp(t, SK_SPOOL_TRAILER_TAG, tag) || t[sizeof t - 1] != '\n') return SK_ERR_NOT_FOUND;
    uint64_t v = 0;
    for (size_t i = tag; i < tag + SK_SPOOL_TRAILER_DIGITS; i++) {
        if (t[i] < '0' || t[i] > '9') return SK_ERR_NOT_FOUND;
        v = v * 10 + (uint64_t)(t[i] - '0');
    }
    if (v > size - sizeof t) return SK_ERR_NOT_FOUND;
    *env_at = v;
    return SK_OK;
}

/* The envelope kept in message file fd (docs/queue.md "Message file"):
 * the text between the body and the trailer. It must name id and record
 * the body's length as where it starts. */
static sk_err trailer_envelope(int fd, const char *id, sk_spool_envelope **out)
{
    *out = NULL;
    struct stat st;
    if (fstat(fd, &st)) return SK_ERR_IO;
    uint64_t size = (uint64_t)st.st_size, at;
    sk_err e = trailer_read(fd, size, &at);
    if (e) return e;
    uint64_t len = size - SK_SPOOL_TRAILER_OCTETS - at;
    if (len > SK_SPOOL_ENVELOPE_MAX_OCTETS) return SK_ERR_SYNTAX;
    char *text = sk_malloc(len + 1);
    if (!text) return SK_ERR_NOMEM;
    e = sk_spool_pread_all(fd, text, (size_t)len, at);
    if (e == SK_ERR_NOT_FOUND) e = SK_ERR_IO; /* shorter than a moment ago */
    if (!e) e = sk_spool_envelope_parse(text, (size_t)len, out);
    sk_free(text);
    if (!e && (strcmp((*out)->id, id) || (*out)->body_octets != at)) e = SK_ERR_SYNTAX;
    if (e) {
        sk_spool_envelope_free(*out);
        *out = NULL;
    }
    return e;
}

/* Why message file fd does not hold env's body; NULL when it does. The
 * file is the body followed by a trailer that points at the body's end,
 * or (written by a version that kept envelopes only in ID.env) the body
 * alone. With check_crc the body is read and its CRC-32C compared. */
static const char *body_problem(int fd, const sk_spool_envelope *env, int check_crc)
{
    struct stat st;
    if (fd < 0 || fstat(fd, &st)) return "no-body";
    uint64_t size = (uint64_t)st.st_size, at;
    if (!(trailer_read(fd, size, &at) == SK_OK && at == env->body_octets) &&
        size != env->body_octets)
        return size < env->body_octets ? "body-short" : "body-long";
    if (!check_crc) return NULL;
    if (!env->has_body_crc32c) return "no-checksum";
    uint32_t crc = 0;
    char chunk[65536];
    for (uint64_t off = 0; off < env->body_octets;) {
        uint64_t want = env->body_octets - off;
        ssize_t r = pread(fd, chunk, want < sizeof chunk ? (size_t)want : sizeof chunk, (off_t)off);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return "body-unreadable";
        crc = sk_spool_crc32c(crc, chunk, (size_t)r);
        off += (uint64_t)r;
    }
    return crc == env->body_crc32c ? NULL : "body-checksum";
}

static int open_msg_file(const sk_spool *s, const char *id, const char *ext)
{
    char name[NAME_MAX + 1];
    snprintf(name, sizeof name, "%s%s", id, ext);
    return openat(s->msgdir_fd, name, O_RDONLY | O_CLOEXEC);
}

/* Why the envelope text in b does not describe a complete message whose
 * file is msgdir/id.msg; NULL when it does. */
static const char *pair_problem(const sk_spool *s, const char *id, const sk_buf *b, int check_crc)
{
    sk_spool_envelope *env;
    if (sk_spool_envelope_parse(b->data ? b->data : "", b->len, &env)) return "torn-envelope";
    const char *why = NULL;
    int fd = open_msg_file(s, id, SK_SPOOL_BODY_EXT);
    if (strcmp(env->id, id))
        why = "wrong-id";
    else
        why = body_problem(fd, env, check_crc);
    if (fd >= 0) close(fd);
    sk_spool_envelope_free(env);
    return why;
}

/* msgdir for reading, from the start (a fresh descriptor: the DIR owns it). */
static DIR *open_msgdir(const sk_spool *s)
{
    int dfd = dup(s->msgdir_fd);
    DIR *d = dfd >= 0 ? fdopendir(dfd) : NULL;
    if (!d) {
        if (dfd >= 0) close(dfd);
        return NULL;
    }
    rewinddir(d);
    return d;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Names in msgdir that are a queue ID followed by ext, as sorted IDs (the
 * directory is read before anything is renamed, so no entry is seen
 * twice); other names are not the spool's and are left alone. */
static sk_err ids_with_ext(const sk_spool *s, const char *ext, char ***out, size_t *n_out)
{
    *out = NULL;
    *n_out = 0;
    DIR *d = open_msgdir(s);
    if (!d) return SK_ERR_IO;
    char **ids = NULL;
    size_t n = 0, cap = 0;
    sk_err e = SK_OK;
    struct dirent *de;
    while (!e && (de = readdir(d))) {
        size_t len = strlen(de->d_name);
        if (len != SK_SPOOL_ID_LEN + strlen(ext) || strcmp(de->d_name + SK_SPOOL_ID_LEN, ext))
            continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 64;
            char **p = sk_realloc(ids, cap * sizeof *ids);
            if (!p) {
                e = SK_ERR_NOMEM;
                break;
            }
            ids = p;
        }
        if (!(ids[n] = sk_strndup(de->d_name, SK_SPOOL_ID_LEN)))
            e = SK_ERR_NOMEM;
        else if (sk_spool_id_valid(ids[n]))
            n++;
        else
            sk_free(ids[n]);
    }
    closedir(d);
    if (e) {
        sk_spool_ids_free(ids, n);
        return e;
    }
    if (n) qsort(ids, n, sizeof *ids, cmp_str);
    *out = ids;
    *n_out = n;
    return SK_OK;
}

/* Files kept for reuse by an earlier run are not tracked any more. */
static sk_err remove_reusable(sk_spool *s)
{
    DIR *d = open_msgdir(s);
    if (!d) return SK_ERR_IO;
    struct dirent *de;
    size_t ext = strlen(SPOOL_REUSE_EXT);
    while ((de = readdir(d))) {
        size_t len = strlen(de->d_name);
        if (len > ext && strcmp(de->d_name + len - ext, SPOOL_REUSE_EXT) == 0)
            unlinkat(s->msgdir_fd, de->d_name, 0);
    }
    closedir(d);
    return SK_OK;
}

static int exists_at(const sk_spool *s, const char *id, const char *ext)
{
    char name[NAME_MAX + 1];
    struct stat st;
    snprintf(name, sizeof name, "%s%s", id, ext);
    return fstatat(s->msgdir_fd, name, &st, 0) == 0;
}

static void unlink_at(const sk_spool *s, const char *id, const char *ext)
{
    char name[NAME_MAX + 1];
    snprintf(name, sizeof name, "%s%s", id, ext);
    unlinkat(s->msgdir_fd, name, 0);
}

/* Rename id+from to id+to. With noreplace it fails (EEXIST) when the
 * target exists: a new message never takes the place of another one whose
 * ID it happened to draw. */
static int rename_ext(const sk_spool *s, const char *id, const char *from, const char *to,
                      int noreplace)
{
    char a[NAME_MAX + 1], b[NAME_MAX + 1];
    snprintf(a, sizeof a, "%s%s", id, from);
    snprintf(b, sizeof b, "%s%s", id, to);
    if (!noreplace) return renameat(s->msgdir_fd, a, s->msgdir_fd, b);
    if (renameat2(s->msgdir_fd, a, s->msgdir_fd, b, RENAME_NOREPLACE) == 0) return 0;
    if (errno != EINVAL) return -1;
    /* A file system without RENAME_NOREPLACE: link(2) also refuses an
     * existing name. */
    if (linkat(s->msgdir_fd, a, s->msgdir_fd, b, 0)) return -1;
    unlinkat(s->msgdir_fd, a, 0);
    return 0;
}

/* Whether the file fd holds exactly the n octets at p: 1, 0, or -1 on a
 * read error. */
static int file_holds(int fd, const char *p, size_t n)
{
    struct stat st;
    if (fstat(fd, &st)) return -1;
    if ((uint64_t)st.st_size != n) return 0;
    char buf[8192];
    for (size_t off = 0; off < n;) {
        size_t k = n - off < sizeof buf ? n - off : sizeof buf;
        sk_err e = sk_spool_pread_all(fd, buf, k, off);
        if (e) return -1;
        if (memcmp(buf, p + off, k)) return 0;
        off += k;
    }
    return 1;
}

typedef struct replay_ctx {
    sk_spool *s;
    size_t rewritten, removed;
} replay_ctx;

/* One live record of the journal: an acknowledged message, whose file
 * may have been lost or torn by a crash (it was not synced yet). Written
 * again from the record unless ID.msg holds exactly its bytes. */
static sk_err replay_record(void *ctx, const char *id, const char *content, size_t n)
{
    replay_ctx *r = ctx;
    sk_spool *s = r->s;
    int fd = open_msg_file(s, id, SK_SPOOL_BODY_EXT);
    if (fd >= 0) {
        int same = file_holds(fd, content, n);
        close(fd);
        if (same < 0) return SK_ERR_IO;
        if (same) return SK_OK;
    } else if (errno != ENOENT) {
        return sk_spool_errno(errno);
    } else if (exists_at(s, id, SPOOL_REUSE_EXT)) {
        /* Removed (drop_file) since: not brought back. */
        r->removed++;
        return SK_OK;
    }
    char name[NAME_MAX + 1];
    snprintf(name, sizeof name, "%s%s", id, SK_SPOOL_NEW_EXT);
    unlinkat(s->msgdir_fd, name, 0);
    fd = openat(s->msgdir_fd, name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) return sk_spool_errno(errno);
    sk_err e = sk_spool_write_all(&s->hooks, fd, content, n);
    if (close(fd) && !e) e = sk_spool_errno(errno);
    /* The checkpoint after the replay makes it durable. */
    if (!e && rename_ext(s, id, SK_SPOOL_NEW_EXT, SK_SPOOL_BODY_EXT, 0)) e = sk_spool_errno(errno);
    if (e) {
        unlinkat(s->msgdir_fd, name, 0);
        return e;
    }
    sk_log(&s->opts.log, SK_LOG_INFO, "%s spool recover kept=journal-record", id);
    r->rewritten++;
    return SK_OK;
}

/* Before anything else in recovery: the journal's live records are
 * messages that were acknowledged, whose files may not be durable; they
 * are written again where needed, then a checkpoint retires them. In the
 * other sync modes an existing journal is replayed the same way (the
 * spool may have been run with the journal before), and then closed. */
static sk_err replay_journal(sk_spool *s, sk_error *err)
{
    int log = s->opts.sync == SK_SPOOL_SYNC_LOG;
    int dfd = open(s->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0)
        return sk_error_set(err, sk_spool_errno(errno), SK_STEP_NONE, "cannot open %s: %s", s->dir,
                            strerror(errno));
    sk_err e = sk_journal_open(&s->journal, dfd, log ? journal_size(s) : 0);
    close(dfd);
    if (e == SK_ERR_NOSPACE && s->journal.fd < 0) {
        /* No room to make one (a tiny file system): every group gets a
         * syncfs instead, as with SK_SPOOL_SYNC_FS; the next start tries
         * again. */
        sk_log(&s->opts.log, SK_LOG_WARN, "- spool journal=off error=\"%s\" octets=%llu",
               sk_strerror(e), (unsigned long long)journal_size(s));
        return SK_OK;
    }
    if (e)
        return sk_error_set(err, e, SK_STEP_NONE, "cannot open the journal %s/%s: %s", s->dir,
                            SK_JOURNAL_FILE, sk_strerror(e));
    if (s->journal.fd < 0) return SK_OK;
    replay_ctx r = {s, 0, 0};
    size_t n;
    e = sk_journal_replay(&s->journal, replay_record, &r, &n);
    if (e)
        return sk_error_set(err, e, SK_STEP_NONE, "cannot replay the journal %s/%s (kept): %s",
                            s->dir, SK_JOURNAL_FILE, sk_strerror(e));
    /* A new generation at every start with the journal, replayed or not:
     * a crash in the middle of an append may have left records of this
     * generation past the first torn one (pages reach the disk in any
     * order), which later appends must not be followed by. */
    if (n || (log && !s->journal.created)) {
        e = checkpoint(s);
        if (e)
            return sk_error_set(err, e, SK_STEP_NONE, "cannot checkpoint the journal %s/%s: %s",
                                s->dir, SK_JOURNAL_FILE, sk_strerror(e));
    }
    if (n)
        sk_log(&s->opts.log, SK_LOG_INFO,
               "- spool journal replayed records=%zu rewritten=%zu removed=%zu", n, r.rewritten,
               r.removed);
    if (!log) sk_journal_close(&s->journal);
    return SK_OK;
}

/* Settle what a crash left (docs/queue.md "Recovery"). Nothing relies on
 * an order between files: every envelope records its body's size and
 * CRC-32C and ends with "end", and a message file ends with a trailer.
 * 1. ID.new, a commit in flight: kept (renamed to ID.msg) only if its
 *    envelope is complete and its body matches size and CRC-32C, since its
 *    group may have been made durable and acknowledged; else removed.
 * 2. ID.env.tmp, a save in flight (or a commit by an earlier version):
 *    promoted to ID.env when complete and matching, else removed.
 * 3. ID.env without ID.msg, a removal cut short: removed.
 * 4. ID.msg whose envelope (ID.env, else its trailer) is unreadable or
 *    disagrees with the file's size: cannot happen with the write order;
 *    removed with a warning if it does. */
static sk_err recover(sk_spool *s, sk_error *err)
{
    size_t removed = 0, kept = 0, promoted = 0;
    sk_err je = replay_journal(s, err);
    if (je) return je;
    if (remove_reusable(s))
        return sk_error_set(err, SK_ERR_IO, SK_STEP_NONE, "cannot read %s", s->msgdir);
    char **ids;
    size_t n;

    if (ids_with_ext(s, SK_SPOOL_NEW_EXT, &ids, &n))
        return sk_error_set(err, SK_ERR_IO, SK_STEP_NONE, "cannot read %s", s->msgdir);
    for (size_t i = 0; i < n; i++) {
        /* Only what the file holds decides; an error of the moment (EIO,
         * ENOMEM, ENOSPC on the rename) fails the open and keeps the file,
         * which may hold an acknowledged message. */
        sk_err fail = SK_OK;
        int fail_errno = 0;
        int fd = open_msg_file(s, ids[i], SK_SPOOL_NEW_EXT);
        sk_spool_envelope *env = NULL;
        const char *why = NULL;
        if (fd < 0) {
            fail_errno = errno;
            fail = errno == ENOENT ? SK_OK : sk_spool_errno(errno);
            why = "gone";
        }
        sk_err te = fd < 0 ? SK_OK : trailer_envelope(fd, ids[i], &env);
        if (te == SK_ERR_IO || te == SK_ERR_NOMEM) {
            fail = te;
            fail_errno = te == SK_ERR_NOMEM ? ENOMEM : EIO;
        } else if (te) {
            why = "torn-envelope";
        }
        if (!fail && !why) why = body_problem(fd, env, 1);
        if (why && !strcmp(why, "body-unreadable")) {
            fail = SK_ERR_IO;
            fail_errno = EIO;
        }
        sk_spool_envelope_free(env);
        if (fd >= 0) close(fd);
        if (!fail && !why) {
            if (rename_ext(s, ids[i], SK_SPOOL_NEW_EXT, SK_SPOOL_BODY_EXT, 1) == 0) {
                sk_log(&s->opts.log, SK_LOG_INFO, "%s spool recover kept=durable-message", ids[i]);
                promoted++;
                continue;
            }
            /* EEXIST: another message has this ID (and this one was never
             * acknowledged: its own commit's rename failed the same way). */
            if (errno != EEXIST) {
                fail_errno = errno;
                fail = sk_spool_errno(errno);
            }
            why = "id-taken";
        }
        if (fail) {
            sk_error_set(err, fail, SK_STEP_NONE, "cannot recover %s/%s%s (kept): %s", s->msgdir,
                         ids[i], SK_SPOOL_NEW_EXT, strerror(fail_errno));
            sk_spool_ids_free(ids, n);
            return fail;
        }
        sk_log(&s->opts.log, SK_LOG_INFO, "%s spool recover removed=incomplete reason=%s", ids[i],
               why);
        unlink_at(s, ids[i], SK_SPOOL_NEW_EXT);
        removed++;
    }
    sk_spool_ids_free(ids, n);

    if (ids_with_ext(s, SK_SPOOL_ENV_EXT SK_SPOOL_TMP_EXT, &ids, &n))
        return sk_error_set(err, SK_ERR_IO, SK_STEP_NONE, "cannot read %s", s->msgdir);
    for (size_t i = 0; i < n; i++) {
        char name[NAME_MAX + 1];
        snprintf(name, sizeof name, "%s%s%s", ids[i], SK_SPOOL_ENV_EXT, SK_SPOOL_TMP_EXT);
        sk_buf b = SK_BUF_INIT(SK_SPOOL_ENVELOPE_MAX_OCTETS);
        const char *why = sk_spool_read_file(s->msgdir_fd, name, &b) ? "unreadable" : NULL;
        if (!why) why = pair_problem(s, ids[i], &b, 1);
        sk_buf_free(&b);
        if (!why &&
            rename_ext(s, ids[i], SK_SPOOL_ENV_EXT SK_SPOOL_TMP_EXT, SK_SPOOL_ENV_EXT, 0) == 0) {
            sk_log(&s->opts.log, SK_LOG_INFO, "%s spool recover kept=durable-envelope", ids[i]);
            promoted++;
            continue;
        }
        /* A save cut short: the previous envelope stays as it was. */
        sk_log(&s->opts.log, SK_LOG_INFO, "%s spool recover removed=envelope-tmp reason=%s", ids[i],
               why ? why : "rename-failed");
        unlinkat(s->msgdir_fd, name, 0);
        removed++;
    }
    sk_spool_ids_free(ids, n);

    if (ids_with_ext(s, SK_SPOOL_ENV_EXT, &ids, &n))
        return sk_error_set(err, SK_ERR_IO, SK_STEP_NONE, "cannot read %s", s->msgdir);
    for (size_t i = 0; i < n; i++) {
        if (exists_at(s, ids[i], SK_SPOOL_BODY_EXT)) continue;
        sk_log(&s->opts.log, SK_LOG_INFO, "%s spool recover removed=envelope-without-message",
               ids[i]);
        unlink_at(s, ids[i], SK_SPOOL_ENV_EXT);
        removed++;
    }
    sk_spool_ids_free(ids, n);

    if (ids_with_ext(s, SK_SPOOL_BODY_EXT, &ids, &n))
        return sk_error_set(err, SK_ERR_IO, SK_STEP_NONE, "cannot read %s", s->msgdir);
    for (size_t i = 0; i < n; i++) {
        sk_spool_envelope *env = NULL;
        const char *why = NULL;
        /* A message is only ever renamed to ID.msg once durable, so the
         * size is enough here; reading every body would slow the start. */
        sk_err le = sk_spool_load(s, ids[i], &env, NULL);
        if (le == SK_ERR_IO || le == SK_ERR_NOMEM) {
            /* Not what the files hold: keep the message, fail the open. */
            sk_error_set(err, le, SK_STEP_NONE, "cannot read the envelope of %s in %s (kept)",
                         ids[i], s->msgdir);
            sk_spool_ids_free(ids, n);
            return le;
        }
        if (le) {
            why = "envelope-unreadable";
        } else {
            int fd = open_msg_file(s, ids[i], SK_SPOOL_BODY_EXT);
            if (fd < 0 && errno != ENOENT) {
                int e = errno;
                sk_spool_envelope_free(env);
                sk_err r = sk_error_set(err, sk_spool_errno(e), SK_STEP_NONE,
                                        "cannot open %s/%s%s (kept): %s", s->msgdir, ids[i],
                                        SK_SPOOL_BODY_EXT, strerror(e));
                sk_spool_ids_free(ids, n);
                return r;
            }
            why = body_problem(fd, env, 0);
            if (fd >= 0) close(fd);
        }
        sk_spool_envelope_free(env);
        if (!why) {
            kept++;
            continue;
        }
        sk_log(&s->opts.log, SK_LOG_WARN, "%s spool recover removed=%s", ids[i], why);
        unlink_at(s, ids[i], SK_SPOOL_BODY_EXT);
        unlink_at(s, ids[i], SK_SPOOL_ENV_EXT);
        removed++;
    }
    /* New IDs come after every stored one, whatever the clock says. */
    if (n) sk_spool_id_after(&s->ids, ids[n - 1]);
    sk_spool_ids_free(ids, n);
    if ((removed || promoted) && fsync(s->msgdir_fd))
        return sk_error_set(err, sk_spool_errno(errno), SK_STEP_NONE, "fsync %s failed", s->msgdir);
    sk_log(&s->opts.log, SK_LOG_INFO, "- spool recovered messages=%zu removed=%zu", kept, removed);
    return SK_OK;
}

static void on_finished(evutil_socket_t fd, short what, void *arg);
static void *committer_main(void *arg);
static void *materializer_main(void *arg);

/* Keep the spare files topped up. The file is created outside the lock:
 * O_TMPFILE does not take the directory's lock either, so the committer's
 * links and renames in msgdir do not wait for it. */
static void *filler_main(void *arg)
{
    sk_spool *s = arg;
    pthread_mutex_lock(&s->mu);
    while (!s->stopping && !s->spare_errno) {
        if (s->nspare == SPOOL_SPARES) {
            pthread_cond_wait(&s->filler_cv, &s->mu);
            continue;
        }
        pthread_mutex_unlock(&s->mu);
        int fd = openat(s->msgdir_fd, ".", O_RDWR | O_TMPFILE | O_CLOEXEC, 0600);
        int e = errno;
        pthread_mutex_lock(&s->mu);
        if (fd < 0) {
            /* ENOSPC may pass; anything else (no O_TMPFILE support) will
             * not: stop making them and let create_file use openat. */
            if (e != ENOSPC && e != EDQUOT) s->spare_errno = e;
            if (!s->stopping && !s->spare_errno) {
                struct timespec ts;
                clock_gettime(CLOCK_REALTIME, &ts);
                ts.tv_sec += 1;
                pthread_cond_timedwait(&s->filler_cv, &s->mu, &ts);
            }
            continue;
        }
        s->spare[s->nspare++] = fd;
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

/* Create msgdir/name for writing, failing if it exists (O_EXCL keeps IDs
 * unique): a reused file, else a spare file linked under that name when
 * one is ready (and spare_ok), else openat(2). The spare is linked through /proc/self/fd because
 * linkat's AT_EMPTY_PATH needs CAP_DAC_READ_SEARCH. */
static int create_file(sk_spool *s, const char *name, int spare_ok, int *reused, sk_err *err)
{
    *reused = 0;
    int fd = -1;
    for (;;) {
        pthread_mutex_lock(&s->mu);
        int have = s->nreuse > 0;
        char old[NAME_MAX + 1];
        if (have) snprintf(old, sizeof old, "%s%s", s->reuse[--s->nreuse], SPOOL_REUSE_EXT);
        pthread_mutex_unlock(&s->mu);
        if (!have) break;
        /* NOREPLACE keeps IDs unique as O_EXCL does below. */
        if (renameat2(s->msgdir_fd, old, s->msgdir_fd, name, RENAME_NOREPLACE) == 0) {
            /* The file keeps the old bytes until write_envelope cuts it to
             * the new length: truncating to 0 makes ext4 write the file
             * back at close (auto_da_alloc). Recovery's trailer, size and
             * CRC-32C checks catch a crash in between. */
            fd = openat(s->msgdir_fd, name, O_WRONLY | O_CLOEXEC);
            if (fd >= 0) {
                *reused = 1;
                pthread_mutex_lock(&s->mu);
                s->reused++;
                pthread_mutex_unlock(&s->mu);
                return fd;
            }
            *err = sk_spool_errno(errno);
            unlinkat(s->msgdir_fd, name, 0);
            return -1;
        }
        int e = errno;
        unlinkat(s->msgdir_fd, old, 0);
        if (e == EEXIST) {
            *err = SK_ERR_IO;
            return -1;
        }
        /* Anything else: drop that file and try the next, or create. */
    }
    if (s->filler_started && spare_ok) {
        pthread_mutex_lock(&s->mu);
        if (s->nspare) fd = s->spare[--s->nspare];
        pthread_cond_signal(&s->filler_cv);
        pthread_mutex_unlock(&s->mu);
    }
    if (fd >= 0) {
        char proc[64];
        snprintf(proc, sizeof proc, "/proc/self/fd/%d", fd);
        if (linkat(AT_FDCWD, proc, s->msgdir_fd, name, AT_SYMLINK_FOLLOW) == 0) {
            pthread_mutex_lock(&s->mu);
            s->spares_used++;
            pthread_mutex_unlock(&s->mu);
            return fd;
        }
        int e = errno;
        close(fd);
        if (e == EEXIST || e == ENOSPC || e == EDQUOT) {
            *err = e == EEXIST ? SK_ERR_IO : sk_spool_errno(e);
            return -1;
        }
        /* No /proc (a chroot) or a file system that refuses: the message
         * still gets its file below; spares stop (logged by finish). */
        pthread_mutex_lock(&s->mu);
        s->spare_errno = e;
        pthread_cond_signal(&s->filler_cv);
        pthread_mutex_unlock(&s->mu);
    }
    fd = openat(s->msgdir_fd, name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) *err = errno == EEXIST ? SK_ERR_IO : sk_spool_errno(errno);
    return fd;
}

void sk_spool_reuse_stats(sk_spool *s, size_t *pool, size_t *reused)
{
    pthread_mutex_lock(&s->mu);
    *pool = s->nreuse;
    *reused = s->reused;
    pthread_mutex_unlock(&s->mu);
}

void sk_spool_spare_stats(sk_spool *s, size_t *ready, size_t *used, int *off_errno)
{
    pthread_mutex_lock(&s->mu);
    *ready = s->nspare;
    *used = s->spares_used;
    *off_errno = s->filler_started ? s->spare_errno : -1;
    pthread_mutex_unlock(&s->mu);
}

sk_spool *sk_spool_open(const char *data_dir, const sk_spool_opts *opts, struct event_base *base,
                        sk_error *err)
{
    sk_error_clear(err);
    sk_spool *s = sk_calloc(1, sizeof *s);
    if (!s) {
        sk_error_set(err, SK_ERR_NOMEM, SK_STEP_NONE, "out of memory");
        return NULL;
    }
    if (opts) s->opts = *opts;
    if (!s->opts.max_batch) s->opts.max_batch = SPOOL_BATCH_DEFAULT;
    if (!s->opts.lock_wait_ms) s->opts.lock_wait_ms = SPOOL_LOCK_WAIT_MS;
    s->msgdir_fd = s->lock_fd = s->efd = s->journal.fd = -1;
    s->hooks = (sk_spool_hooks){s->opts.write_fn, s->opts.sync_fn, s->opts.hook_ctx};
    s->journal.hooks = s->hooks;
    sk_buf_init(&s->jbuf, journal_size(s));
    s->base = base;
    s->pending_tail = &s->pending;
    s->finished_tail = &s->finished;
    s->mat_tail = &s->mat_q;
    s->materialized_tail = &s->materialized;
    pthread_mutex_init(&s->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC); /* the clock of sk_now_ms */
    pthread_cond_init(&s->cv, &ca);
    pthread_cond_init(&s->mat_cv, &ca);
    pthread_cond_init(&s->mat_done_cv, &ca);
    pthread_condattr_destroy(&ca);
    pthread_cond_init(&s->filler_cv, NULL);
    s->dir = path_join(data_dir, SK_SPOOL_SUBDIR);
    s->msgdir = s->dir ? path_join(s->dir, SK_SPOOL_MSGDIR) : NULL;
    s->ctldir = s->dir ? path_join(s->dir, SK_SPOOL_CTLDIR) : NULL;
    if (!s->msgdir || !s->ctldir) {
        sk_error_set(err, SK_ERR_NOMEM, SK_STEP_NONE, "out of memory");
        goto fail;
    }
    int owner = s->opts.mode == SK_SPOOL_OWNER;
    if (owner && (make_dir(data_dir, err) || make_dir(s->dir, err) || make_dir(s->msgdir, err) ||
                  make_dir(s->ctldir, err)))
        goto fail;
    s->msgdir_fd = open(s->msgdir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (s->msgdir_fd < 0) {
        sk_error_set(err, errno == ENOENT ? SK_ERR_NOT_FOUND : SK_ERR_IO, SK_STEP_NONE,
                     "cannot open spool %s: %s", s->msgdir, strerror(errno));
        goto fail;
    }
    if (!owner) return s;
    long busy;
    s->lock_fd = sk_spool_lock(s->dir, s->opts.lock_wait_ms, &busy, err);
    if (s->lock_fd < 0) goto fail;
    if (recover(s, err)) goto fail;
    if (base) {
        s->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        if (s->efd < 0) {
            sk_error_set(err, SK_ERR_IO, SK_STEP_NONE, "eventfd: %s", strerror(errno));
            goto fail;
        }
        s->ev = event_new(base, s->efd, EV_READ | EV_PERSIST, on_finished, s);
        if (!s->ev || event_add(s->ev, NULL)) {
            sk_error_set(err, SK_ERR_NOMEM, SK_STEP_NONE, "cannot add event");
            goto fail;
        }
        if (pthread_create(&s->thread, NULL, committer_main, s)) {
            sk_error_set(err, SK_ERR_NOMEM, SK_STEP_NONE, "cannot start the committer thread");
            goto fail;
        }
        s->thread_started = 1;
        if (s->opts.sync == SK_SPOOL_SYNC_LOG && s->journal.fd >= 0) {
            /* Without it, journaled groups get their files before the
             * barrier, as without an event base. */
            if (pthread_create(&s->mat, NULL, materializer_main, s) == 0)
                s->mat_started = 1;
            else
                sk_log(&s->opts.log, SK_LOG_WARN, "- spool materializer=off reason=no-thread");
        }
        if (pthread_create(&s->filler, NULL, filler_main, s) == 0) {
            s->filler_started = 1;
        } else {
            sk_log(&s->opts.log, SK_LOG_WARN, "- spool spare-files=off reason=no-thread");
        }
    }
    return s;
fail:
    sk_spool_free(s);
    return NULL;
}

const char *sk_spool_dir(const sk_spool *s)
{
    return s->dir;
}

const char *sk_spool_ctl_dir(const sk_spool *s)
{
    return s->ctldir;
}

void sk_spool_set_listener(sk_spool *s, sk_spool_listener_fn fn, void *ctx)
{
    s->listener = fn;
    s->listener_ctx = ctx;
}

static void msg_free(sk_spool_msg *m)
{
    if (m->fd >= 0) close(m->fd);
    sk_buf_free(&m->wbuf);
    sk_buf_free(&m->hdr);
    sk_buf_free(&m->envtext);
    sk_spool_envelope_free(m->env);
    sk_free(m);
}

/* Remove the file of an uncommitted or failed message. */
static void msg_unlink(sk_spool_msg *m)
{
    if (m->body_created) unlink_at(m->s, m->id, SK_SPOOL_NEW_EXT);
}

/* Create the message file, ID.new. Small messages stay in wbuf until the
 * committer thread creates it, so the event loop never waits in openat(2)
 * for the directory while a group is being made durable (docs/queue.md).
 * O_EXCL keeps IDs unique: a collision fails this message only. */
static sk_err create_body(sk_spool_msg *m)
{
    if (m->err || m->fd >= 0) return m->err;
    char name[NAME_MAX + 1];
    snprintf(name, sizeof name, "%s%s", m->id, SK_SPOOL_NEW_EXT);
    m->fd = create_file(m->s, name, 1, &m->body_reused, &m->err);
    if (m->fd < 0) return m->err;
    m->body_created = 1;
    return SK_OK;
}

sk_spool_msg *sk_spool_begin(sk_spool *s, const sk_spool_envelope *env, sk_error *err)
{
    if (s->opts.mode != SK_SPOOL_OWNER) {
        sk_error_set(err, SK_ERR_STATE, SK_STEP_NONE, "spool opened read-only");
        return NULL;
    }
    sk_spool_msg *m = sk_calloc(1, sizeof *m);
    if (!m || !(m->env = sk_spool_envelope_dup(env))) {
        sk_free(m);
        sk_error_set(err, SK_ERR_NOMEM, SK_STEP_NONE, "out of memory");
        return NULL;
    }
    m->s = s;
    m->fd = -1;
    sk_buf_init(&m->wbuf, SPOOL_WRITE_CHUNK_OCTETS);
    sk_buf_init(&m->hdr, SPOOL_HEADER_CAPTURE_OCTETS);
    m->hdr_end = -1;
    sk_buf_init(&m->envtext, SK_SPOOL_ENVELOPE_MAX_OCTETS);
    if (!m->env->arrival) m->env->arrival = (int64_t)time(NULL);
    sk_err e = sk_spool_id_unique(&s->ids, m->id);
    if (e) {
        sk_error_set(err, e, SK_STEP_NONE, "no random bytes");
        msg_free(m);
        return NULL;
    }
    memcpy(m->env->id, m->id, SK_SPOOL_ID_SIZE);
    return m;
}

const char *sk_spool_msg_id(const sk_spool_msg *m)
{
    return m->id;
}

static sk_err flush_wbuf(sk_spool_msg *m)
{
    if (m->err || !m->wbuf.len || create_body(m)) return m->err;
    m->err = sk_spool_write_all(&m->s->hooks, m->fd, m->wbuf.data, m->wbuf.len);
    sk_buf_reset(&m->wbuf);
    return m->err;
}

/* Keep the start of the body until the header block's end is known. */
static void capture_headers(sk_spool_msg *m, const char *p, size_t n)
{
    if (m->hdr_end >= 0 || m->hdr.len >= SPOOL_HEADER_CAPTURE_OCTETS) return;
    size_t old = m->hdr.len;
    size_t k = SPOOL_HEADER_CAPTURE_OCTETS - old;
    if (k > n) k = n;
    /* The bound was set to the capture size: this append cannot fail. */
    if (sk_buf_append(&m->hdr, p, k)) return;
    const char *d = m->hdr.data;
    if (m->hdr.len >= 2 && d[0] == '\r' && d[1] == '\n') {
        m->hdr_end = 0; /* no header fields at all */
        return;
    }
    /* Look again at the last 3 bytes already held: the empty line may
     * straddle two writes. */
    size_t from = old > 3 ? old - 3 : 0;
    for (size_t i = from; i + 4 <= m->hdr.len; i++) {
        if (memcmp(d + i, "\r\n\r\n", 4) == 0) {
            m->hdr_end = (long)i + 2;
            return;
        }
    }
}

sk_err sk_spool_write(sk_spool_msg *m, const void *p, size_t n)
{
    if (m->err) return m->err;
    if (m->s->opts.max_body_octets && m->octets + n > m->s->opts.max_body_octets)
        return m->err = SK_ERR_TOO_LONG;
    capture_headers(m, p, n);
    m->octets += n;
    m->crc = sk_spool_crc32c(m->crc, p, n);
    const char *c = p;
    while (n) {
        size_t room = SPOOL_WRITE_CHUNK_OCTETS - m->wbuf.len;
        if (n >= SPOOL_WRITE_CHUNK_OCTETS && !m->wbuf.len) {
            /* Large pieces go straight to the file. */
            if (create_body(m)) return m->err;
            m->err = sk_spool_write_all(&m->s->hooks, m->fd, c, n);
            return m->err;
        }
        size_t k = n < room ? n : room;
        sk_err e = sk_buf_append(&m->wbuf, c, k);
        if (e) return m->err = e;
        c += k;
        n -= k;
        if (m->wbuf.len == SPOOL_WRITE_CHUNK_OCTETS && flush_wbuf(m)) return m->err;
    }
    return SK_OK;
}

void sk_spool_abort(sk_spool_msg *m)
{
    if (!m) return;
    msg_unlink(m);
    msg_free(m);
}

/* Phase 1: complete ID.new: the rest of the body, then the envelope, then
 * the trailer that says where the envelope starts (docs/queue.md "Message
 * file"). The envelope records the body's size and CRC-32C and ends with
 * "end", so recovery tells a complete file from a torn one. */
static void make_trailer(const sk_spool_msg *m, char trailer[SK_SPOOL_TRAILER_OCTETS + 1])
{
    snprintf(trailer, SK_SPOOL_TRAILER_OCTETS + 1, "%s%0*llu\n", SK_SPOOL_TRAILER_TAG,
             SK_SPOOL_TRAILER_DIGITS, (unsigned long long)m->octets);
}

static void write_envelope(sk_spool_msg *m)
{
    sk_spool *s = m->s;
    /* Created here unless the body outgrew wbuf during DATA; an empty body
     * still gets its file. wbuf is kept: the journal's record is made from
     * it (journal_group). */
    if (create_body(m)) return;
    char trailer[SK_SPOOL_TRAILER_OCTETS + 1];
    make_trailer(m, trailer);
    struct iovec iov[] = {{m->wbuf.data, m->wbuf.len},
                          {m->envtext.data, m->envtext.len},
                          {trailer, SK_SPOOL_TRAILER_OCTETS}};
    m->err = sk_spool_write_parts(&s->hooks, m->fd, iov, 3);
    /* A reused file is written over, not truncated first (see create_file):
     * cut it to the new length before the barrier. */
    off_t total = (off_t)(m->octets + m->envtext.len + SK_SPOOL_TRAILER_OCTETS);
    if (!m->err && m->body_reused && ftruncate(m->fd, total)) m->err = sk_spool_errno(errno);
    /* SK_SPOOL_SYNC_FILES: only a hint to start the data writes (and
     * ext4's block allocation) for the whole group before the first
     * fdatasync. */
    if (!m->err && s->opts.sync == SK_SPOOL_SYNC_FILES)
        sync_file_range(m->fd, 0, 0, SYNC_FILE_RANGE_WRITE);
}

/* SK_SPOOL_SYNC_FILES: the file's data durable. On a journalling file
 * system the first fdatasync commits the transaction that holds every
 * file of the group, so the others mostly wait for data already written. */
static void sync_files(sk_spool_msg *m)
{
    if (!m->err) m->err = sk_spool_sync_file(&m->s->hooks, m->fd);
}

/* Phase 3, after the barrier: the message is already durable (as ID.new,
 * which recovery keeps when complete); the rename makes it visible to
 * sk_spool_list and readers. Its own durability comes with a later
 * barrier, and recovery redoes it if a crash loses it. */
static void rename_envelope(sk_spool_msg *m)
{
    if (m->err) return;
    if (rename_ext(m->s, m->id, SK_SPOOL_NEW_EXT, SK_SPOOL_BODY_EXT, 1))
        m->err = errno == EEXIST ? SK_ERR_IO : sk_spool_errno(errno);
}

/* Committer thread: the removals of the orphans' message files are
 * durable now; their saved envelopes can go. */
static void unlink_orphans(sk_spool *s, sk_spool_orphan *o, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unlink_at(s, o[i].id, SK_SPOOL_ENV_EXT);
        if (!o[i].pooled) unlink_at(s, o[i].id, SPOOL_REUSE_EXT);
    }
    sk_free(o);
}

/* The octets the group's records take in the journal, or 0 when the group
 * cannot go there: a body that did not stay in memory whole (over 64 KiB;
 * its file was written during DATA), or more than the journal holds. */
static uint64_t journal_octets(const sk_spool *s, const sk_spool_msg *batch)
{
    if (s->opts.sync != SK_SPOOL_SYNC_LOG || s->journal.fd < 0) return 0;
    uint64_t total = 0;
    for (const sk_spool_msg *m = batch; m; m = m->next) {
        if (m->err) continue;
        if (m->wbuf.len != m->octets || (s->mat_started && m->fd >= 0)) return 0;
        total += sk_journal_record_octets(m->octets + m->envtext.len + SK_SPOOL_TRAILER_OCTETS);
    }
    return total <= s->journal.size - SK_JOURNAL_HEAD_OCTETS ? total : 0;
}

/* The barrier of SK_SPOOL_SYNC_LOG: every message of the group as one
 * record (the bytes of its file) appended to the journal, then one
 * fdatasync. A checkpoint first when the records do not fit after the
 * tail, or an earlier append failed. */
static sk_err journal_group(sk_spool *s, sk_spool_msg *batch, uint64_t octets)
{
    sk_journal *j = &s->journal;
    if (j->need_reset || octets > j->size - j->tail) {
        sk_err e = checkpoint(s);
        if (e) return e;
    }
    sk_buf_reset(&s->jbuf);
    for (sk_spool_msg *m = batch; m; m = m->next) {
        if (m->err) continue;
        char trailer[SK_SPOOL_TRAILER_OCTETS + 1];
        make_trailer(m, trailer);
        const void *const parts[] = {m->wbuf.data, m->envtext.data, trailer};
        const size_t lens[] = {m->wbuf.len, m->envtext.len, SK_SPOOL_TRAILER_OCTETS};
        sk_err e = sk_journal_record(j, m->id, parts, lens, 3, &s->jbuf);
        if (e) return e;
    }
    /* A failure sets need_reset: the records may be on disk, so the next
     * group starts a new generation first (a crash before that may bring
     * these refused messages back, as with a failed syncfs). */
    return sk_journal_append(j, s->jbuf.data, s->jbuf.len);
}

/* Commit a group: write every envelope, then ONE barrier for all of them
 * (the journal's fdatasync, a syncfs, or with SK_SPOOL_SYNC_FILES the
 * per-file fdatasyncs and one directory fsync), then the renames
 * (docs/queue.md "Durability order"). If the barrier fails, no message of
 * the group is acknowledged. Failed messages are removed. dir_dirty: the
 * barrier must also cover removals (not with the journal). Returns the
 * barrier's result. */
static sk_err commit_batch(sk_spool *s, sk_spool_msg *batch, int dir_dirty)
{
    if (s->mat_started && !dir_dirty) {
        /* With the materializer, a group that fits the journal is made
         * durable by its records alone; its files are written after the
         * 250 (materialize), off the path every session waits on. */
        uint64_t octets = journal_octets(s, batch);
        if (octets) {
            sk_err barrier = journal_group(s, batch, octets);
            for (sk_spool_msg *m = batch; m; m = m->next) {
                if (!m->err) m->err = barrier;
                m->journaled = !m->err;
            }
            return barrier;
        }
    }
    int any_ok = 0;
    for (sk_spool_msg *m = batch; m; m = m->next) write_envelope(m);
    if (s->opts.sync == SK_SPOOL_SYNC_FILES)
        for (sk_spool_msg *m = batch; m; m = m->next) sync_files(m);
    for (sk_spool_msg *m = batch; m; m = m->next) any_ok |= !m->err;
    sk_err barrier = SK_OK;
    uint64_t octets = any_ok && !dir_dirty ? journal_octets(s, batch) : 0;
    if (octets)
        barrier = journal_group(s, batch, octets);
    else if (any_ok || dir_dirty)
        barrier = s->opts.sync == SK_SPOOL_SYNC_FILES ? sk_spool_sync_dir(&s->hooks, s->msgdir_fd)
                                                      : sk_spool_sync_fs(&s->hooks, s->msgdir_fd);
    for (sk_spool_msg *m = batch; m; m = m->next) {
        /* The state on disk is unknown after a failed barrier: take every
         * message back out so none is delivered. */
        if (!m->err) m->err = barrier;
        rename_envelope(m);
        if (m->err) msg_unlink(m);
        if (m->fd >= 0) {
            close(m->fd);
            m->fd = -1;
        }
    }
    return barrier;
}

/* The steps of reporting a message on the loop thread: its done callback
 * (the 250), then the listener (the queue), then it is freed. A journaled
 * message gets the first when its record is durable and the rest when
 * its file is written. */
enum { FINISH_DONE = 1, FINISH_STORED = 2, FINISH_ALL = 3 };

static void finish(sk_spool_msg *m, int steps)
{
    sk_spool *s = m->s;
    if (s->filler_started && !s->spare_logged) {
        pthread_mutex_lock(&s->mu);
        int e = s->spare_errno;
        pthread_mutex_unlock(&s->mu);
        if (e) {
            s->spare_logged = 1;
            sk_log(&s->opts.log, SK_LOG_WARN, "- spool spare-files=off error=\"%s\"", strerror(e));
        }
    }
    s->finishing = m->err ? NULL : m;
    if (steps & FINISH_DONE) {
        if (m->err)
            sk_log(&s->opts.log, SK_LOG_ERR, "%s spool commit-failed error=\"%s\"", m->id,
                   sk_strerror(m->err));
        else
            /* The daemon logs the message as queued right after. */
            sk_log(&s->opts.log, SK_LOG_DEBUG, "%s spool committed octets=%llu rcpts=%zu", m->id,
                   (unsigned long long)m->octets, m->env->nrcpts);
        if (m->done) m->done(m->ctx, m->err, m->err ? NULL : m->id);
    }
    if ((steps & FINISH_STORED) && !m->err && s->listener) s->listener(s->listener_ctx, m->env);
    s->finishing = NULL;
    if (steps & FINISH_STORED) {
        msg_free(m);
    }
}

/* Removals waiting for a barrier, taken by the committer (with mu held)
 * before the barrier that covers them. */
typedef struct removals {
    int dirty;
    size_t freed; /* the first freed files: reusable after the barrier */
    sk_spool_orphan *orphans;
    size_t norphans;
} removals;

static removals take_removals(sk_spool *s)
{
    /* freed may be ahead of dir_dirty (sk_spool_remove sets it after the
     * rename), or left by a failed barrier: it needs one too. */
    removals r = {s->dir_dirty || s->nfreed, s->nfreed, s->orphans, s->norphans};
    s->dir_dirty = 0;
    s->orphans = NULL;
    s->norphans = s->orphans_cap = 0;
    return r;
}

/* After the barrier (mu not held): the saved envelopes of the removed
 * messages go and their files become reusable; after a failure they stay
 * in freed for a later barrier, and their ID.env for recovery. */
static void settle_removals(sk_spool *s, removals *r, sk_err barrier)
{
    if (!barrier)
        unlink_orphans(s, r->orphans, r->norphans);
    else
        sk_free(r->orphans);
    pthread_mutex_lock(&s->mu);
    if (!barrier) freed_to_reuse(s, r->freed);
    if (barrier && r->dirty) s->remove_sync_failed = 1;
    pthread_mutex_unlock(&s->mu);
}

static void *committer_main(void *arg)
{
    sk_spool *s = arg;
    /* With the journal a group's barrier does not cover the directory:
     * removals get their own (a checkpoint) after at most the delay. */
    int log = s->opts.sync == SK_SPOOL_SYNC_LOG;
    pthread_mutex_lock(&s->mu);
    for (;;) {
        while (!s->pending && !s->dir_dirty && !s->stopping) pthread_cond_wait(&s->cv, &s->mu);
        if (!s->pending && !s->dir_dirty && s->stopping) break;
        uint64_t due = s->dir_dirty_since_ms + SPOOL_REMOVE_SYNC_DELAY_MS;
        int removals_due = s->dir_dirty && (s->stopping || sk_now_ms() >= due);
        if (!s->pending && !removals_due) {
            /* Only removals: give a group the chance to carry them. */
            struct timespec ts = {(time_t)(due / 1000), (long)(due % 1000) * 1000000L};
            pthread_cond_timedwait(&s->cv, &s->mu, &ts);
            continue;
        }
        if (!s->pending || (log && removals_due)) {
            /* A barrier for removals alone. */
            removals r = take_removals(s);
            pthread_mutex_unlock(&s->mu);
            sk_err e = log ? checkpoint(s) : sk_spool_sync_dir(&s->hooks, s->msgdir_fd);
            settle_removals(s, &r, e);
            pthread_mutex_lock(&s->mu);
            continue;
        }
        /* Removals before this point are covered by the group's barrier
         * (not by the journal's). */
        removals r = log ? (removals){0} : take_removals(s);
        /* Take everything pending now (up to max_batch). */
        sk_spool_msg *batch = s->pending, *last = batch;
        size_t n = 1;
        while (last->next && n < s->opts.max_batch) {
            last = last->next;
            n++;
        }
        s->pending = last->next;
        if (!s->pending) s->pending_tail = &s->pending;
        last->next = NULL;
        pthread_mutex_unlock(&s->mu);

        sk_err barrier = commit_batch(s, batch, r.dirty);
        settle_removals(s, &r, barrier);

        pthread_mutex_lock(&s->mu);
        for (sk_spool_msg *m = batch; m; m = m->next) {
            if (!m->journaled) continue;
            m->mnext = NULL;
            *s->mat_tail = m;
            s->mat_tail = &m->mnext;
            s->unmaterialized++;
            pthread_cond_signal(&s->mat_cv);
        }
        *s->finished_tail = batch;
        s->finished_tail = &last->next;
        uint64_t one = 1;
        if (write(s->efd, &one, sizeof one) < 0) {
            /* EAGAIN: the counter is already non-zero, the loop will wake. */
        }
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

/* Loop thread: report finished commits. */
static void run_finished(sk_spool *s)
{
    /* Both lists at once: a message's file is written only after its
     * record, so when it is in stored its done step is in list or was
     * run before. */
    pthread_mutex_lock(&s->mu);
    sk_spool_msg *list = s->finished, *stored = s->materialized;
    s->finished = s->materialized = NULL;
    s->finished_tail = &s->finished;
    s->materialized_tail = &s->materialized;
    int mat_errno = s->mat_logged ? 0 : s->mat_errno;
    s->mat_logged = 1;
    pthread_mutex_unlock(&s->mu);
    if (mat_errno)
        sk_log(&s->opts.log, SK_LOG_ERR,
               "- spool materialize-failed error=\"%s\" (kept in the journal; trying again)",
               strerror(mat_errno));
    while (list) {
        sk_spool_msg *next = list->next;
        finish(list, list->journaled ? FINISH_DONE : FINISH_ALL);
        list = next;
    }
    while (stored) {
        sk_spool_msg *next = stored->mnext;
        finish(stored, FINISH_STORED);
        stored = next;
    }
}

/* Write the file of a journaled message: the same bytes as its record,
 * straight under its final name (a crash before the next checkpoint
 * leaves a torn or missing file, which recovery writes again from the
 * record). */
static sk_err materialize(sk_spool_msg *m)
{
    sk_spool *s = m->s;
    char name[NAME_MAX + 1];
    snprintf(name, sizeof name, "%s%s", m->id, SK_SPOOL_BODY_EXT);
    sk_err e = SK_OK;
    int reused;
    /* Not a spare: this thread is off the path to the 250 and can
     * allocate the inode itself; spares stay for the files made on that
     * path (large bodies during DATA, groups that do not go to the
     * journal), and the filler thread mostly sleeps. */
    int fd = create_file(s, name, 0, &reused, &e);
    if (fd < 0) return e;
    char trailer[SK_SPOOL_TRAILER_OCTETS + 1];
    make_trailer(m, trailer);
    struct iovec iov[] = {{m->wbuf.data, m->wbuf.len},
                          {m->envtext.data, m->envtext.len},
                          {trailer, SK_SPOOL_TRAILER_OCTETS}};
    e = sk_spool_write_parts(&s->hooks, fd, iov, 3);
    off_t total = (off_t)(m->octets + m->envtext.len + SK_SPOOL_TRAILER_OCTETS);
    if (!e && reused && ftruncate(fd, total)) e = sk_spool_errno(errno);
    if (close(fd) && !e) e = sk_spool_errno(errno);
    if (e) unlinkat(s->msgdir_fd, name, 0);
    return e;
}

/* The materializer thread: files for journaled messages, in order. A
 * failure (no space, EIO) keeps the message (it is durable in the
 * journal) and tries again later; at stop it is left to recovery. */
static void *materializer_main(void *arg)
{
    sk_spool *s = arg;
    size_t mat_since_sync = 0;
    pthread_mutex_lock(&s->mu);
    for (;;) {
        while (!s->mat_q && !s->mat_stopping) pthread_cond_wait(&s->mat_cv, &s->mu);
        if (!s->mat_q) break;
        sk_spool_msg *list = s->mat_q;
        s->mat_q = NULL;
        s->mat_tail = &s->mat_q;
        pthread_mutex_unlock(&s->mu);
        sk_spool_msg *done = NULL, **done_tail = &done, *failed = list;
        size_t n = 0;
        int err = 0;
        while (list) {
            sk_spool_msg *m = list;
            sk_err e = materialize(m);
            if (e) {
                err = e == SK_ERR_NOSPACE ? ENOSPC : EIO;
                break;
            }
            list = m->mnext;
            m->mnext = NULL;
            *done_tail = m;
            done_tail = &m->mnext;
            n++;
        }
        failed = list;
        /* Every few files, a syncfs (docs/queue.md "The journal"): the
         * files' data and inodes go to disk here, off the path to the
         * 250, so the journal's fdatasync and the next checkpoint find
         * little else to wait for; and ext4 without a journal skips inodes
         * freed in the last 5 minutes while their inode table block is
         * dirty (recently_deleted()), which makes creating files costly
         * unless those blocks are written out often. Its result does not
         * matter: the checkpoint's own syncfs is what counts. */
        mat_since_sync += n;
        if (mat_since_sync >= SPOOL_MATERIALIZE_SYNC_FILES) {
            if (sk_spool_sync_fs(&s->hooks, s->msgdir_fd)) {
                /* Does not matter: see above. */
            }
            mat_since_sync = 0;
        }
        pthread_mutex_lock(&s->mu);
        s->mat_failing = failed != NULL;
        if (done) {
            *s->materialized_tail = done;
            s->materialized_tail = done_tail;
            s->unmaterialized -= n;
            pthread_cond_broadcast(&s->mat_done_cv);
            uint64_t one = 1;
            if (write(s->efd, &one, sizeof one) < 0) {
                /* EAGAIN: the loop will wake anyway. */
            }
        }
        if (failed) {
            /* Back to the front, in order, and a pause before the next
             * try; at stop they stay for recovery to write. */
            sk_spool_msg **t = &failed;
            while (*t) t = &(*t)->mnext;
            *t = s->mat_q;
            if (!s->mat_q) s->mat_tail = t;
            s->mat_q = failed;
            if (s->mat_errno != err) s->mat_logged = 0;
            s->mat_errno = err;
            /* At stop, one more try after the pause, then recovery. */
            if (s->mat_stopping && s->mat_stop_tries++) break;
            uint64_t at = sk_now_ms() + SPOOL_MATERIALIZE_RETRY_MS;
            struct timespec ts = {(time_t)(at / 1000), (long)(at % 1000) * 1000000L};
            pthread_cond_timedwait(&s->mat_cv, &s->mu, &ts);
        }
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

static void on_finished(evutil_socket_t fd, short what, void *arg)
{
    uint64_t v;
    if (read(fd, &v, sizeof v) < 0) {
        /* EAGAIN: another wake-up already drained it. */
    }
    run_finished(arg);
}

void sk_spool_commit(sk_spool_msg *m, sk_spool_done_fn done, void *ctx)
{
    sk_spool *s = m->s;
    m->done = done;
    m->ctx = ctx;
    m->next = NULL;
    /* The rest of the body is written by the committer (write_envelope). */
    if (!m->err) {
        m->env->body_octets = m->octets;
        m->env->body_crc32c = m->crc;
        m->env->has_body_crc32c = 1;
        m->err = sk_spool_envelope_serialize(m->env, &m->envtext);
    }
    if (!s->thread_started) {
        (void)commit_batch(s, m, 0);
        finish(m, FINISH_ALL);
        return;
    }
    pthread_mutex_lock(&s->mu);
    if (m->err) {
        /* Already failed: straight to the loop, nothing to make durable. */
        msg_unlink(m);
        if (m->fd >= 0) close(m->fd);
        m->fd = -1;
        *s->finished_tail = m;
        s->finished_tail = &m->next;
        uint64_t one = 1;
        if (write(s->efd, &one, sizeof one) < 0) {
            /* already signalled */
        }
    } else {
        *s->pending_tail = m;
        s->pending_tail = &m->next;
        pthread_cond_signal(&s->cv);
    }
    pthread_mutex_unlock(&s->mu);
}

void sk_spool_free(sk_spool *s)
{
    if (!s) return;
    if (s->thread_started) {
        pthread_mutex_lock(&s->mu);
        s->stopping = 1;
        pthread_cond_signal(&s->cv);
        pthread_mutex_unlock(&s->mu);
        pthread_join(s->thread, NULL);
    }
    int left = 0; /* journaled messages whose file could not be written */
    if (s->mat_started) {
        /* Writes the files still to do, then stops. */
        pthread_mutex_lock(&s->mu);
        s->mat_stopping = 1;
        pthread_cond_signal(&s->mat_cv);
        pthread_mutex_unlock(&s->mu);
        pthread_join(s->mat, NULL);
        s->mat_started = 0;
    }
    if (s->thread_started) run_finished(s);
    while (s->mat_q) {
        /* Acknowledged and kept in the journal for recovery to write. */
        sk_spool_msg *m = s->mat_q;
        s->mat_q = m->mnext;
        msg_free(m);
        left++;
    }
    if (s->filler_started) {
        pthread_mutex_lock(&s->mu);
        s->stopping = 1;
        pthread_cond_signal(&s->filler_cv);
        pthread_mutex_unlock(&s->mu);
        pthread_join(s->filler, NULL);
    }
    /* A clean stop leaves no record to replay at the next start. */
    if (s->journal.fd >= 0 && !left &&
        (s->journal.tail > SK_JOURNAL_HEAD_OCTETS || s->journal.need_reset) && checkpoint(s))
        sk_log(&s->opts.log, SK_LOG_WARN, "- spool checkpoint-failed at=stop");
    sk_journal_close(&s->journal);
    sk_buf_free(&s->jbuf);
    for (size_t i = 0; i < s->nspare; i++) close(s->spare[i]);
    sk_free(s->orphans); /* none left after the committer stopped, unless a sync failed */
    if (s->ev) event_free(s->ev);
    if (s->efd >= 0) close(s->efd);
    if (s->msgdir_fd >= 0) close(s->msgdir_fd);
    if (s->lock_fd >= 0) close(s->lock_fd); /* releases the lock */
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    pthread_cond_destroy(&s->filler_cv);
    pthread_cond_destroy(&s->mat_cv);
    pthread_cond_destroy(&s->mat_done_cv);
    sk_free(s->dir);
    sk_free(s->msgdir);
    sk_free(s->ctldir);
    sk_free(s);
}

sk_err sk_spool_list(sk_spool *s, char ***ids_out, size_t *n_out, sk_error *err)
{
    sk_err e = ids_with_ext(s, SK_SPOOL_BODY_EXT, ids_out, n_out);
    if (e == SK_ERR_NOMEM) return sk_error_set(err, e, SK_STEP_NONE, "out of memory");
    if (e) return sk_error_set(err, e, SK_STEP_NONE, "cannot read %s", s->msgdir);
    return SK_OK;
}

void sk_spool_ids_free(char **ids, size_t n)
{
    for (size_t i = 0; i < n; i++) sk_free(ids[i]);
    sk_free(ids);
}

/* The envelope of a committed message: ID.env once the queue has saved
 * one, else the one kept in ID.msg since the commit. */
sk_err sk_spool_load(sk_spool *s, const char *id, sk_spool_envelope **env, sk_error *err)
{
    *env = NULL;
    if (!sk_spool_id_valid(id))
        return sk_error_set(err, SK_ERR_NOT_FOUND, SK_STEP_NONE, "no message %s", id);
    /* The message file decides whether the message exists: an ID.env
     * outlives it briefly after a removal. */
    int fd = open_msg_file(s, id, SK_SPOOL_BODY_EXT);
    if (fd < 0 && errno == ENOENT)
        return sk_error_set(err, SK_ERR_NOT_FOUND, SK_STEP_NONE, "no message %s in the queue", id);
    sk_err e = fd < 0 ? SK_ERR_IO : SK_OK;
    char name[NAME_MAX + 1];
    snprintf(name, sizeof name, "%s%s", id, SK_SPOOL_ENV_EXT);
    sk_buf b = SK_BUF_INIT(SK_SPOOL_ENVELOPE_MAX_OCTETS);
    if (!e) e = sk_spool_read_file(s->msgdir_fd, name, &b);
    if (!e) {
        e = sk_spool_envelope_parse(b.data ? b.data : "", b.len, env);
        if (!e && strcmp((*env)->id, id)) e = SK_ERR_SYNTAX;
    } else if (e == SK_ERR_NOT_FOUND) {
        e = trailer_envelope(fd, id, env);
        if (e == SK_ERR_NOT_FOUND) e = SK_ERR_SYNTAX; /* a file without its envelope */
    }
    sk_buf_free(&b);
    if (fd >= 0) close(fd);
    if (e) {
        sk_spool_envelope_free(*env);
        *env = NULL;
        return sk_error_set(err, e, SK_STEP_NONE, "cannot read envelope of %s", id);
    }
    return SK_OK;
}

sk_err sk_spool_save(sk_spool *s, const sk_spool_envelope *env, sk_error *err)
{
    if (s->opts.mode != SK_SPOOL_OWNER)
        return sk_error_set(err, SK_ERR_STATE, SK_STEP_NONE, "spool opened read-only");
    if (!sk_spool_id_valid(env->id))
        return sk_error_set(err, SK_ERR_INVAL, SK_STEP_NONE, "bad queue ID");
    sk_buf b = SK_BUF_INIT(SK_SPOOL_ENVELOPE_MAX_OCTETS);
    sk_err e = sk_spool_envelope_serialize(env, &b);
    char name[NAME_MAX + 1];
    snprintf(name, sizeof name, "%s%s", env->id, SK_SPOOL_ENV_EXT);
    if (!e) e = sk_spool_write_file(s->msgdir_fd, name, b.data, b.len, 1);
    sk_buf_free(&b);
    if (e)
        return sk_error_set(err, e, SK_STEP_NONE, "cannot save envelope of %s: %s", env->id,
                            sk_strerror(e));
    return SK_OK;
}

/* Take a removed message's file out of its name: renamed to ID.free,
 * which joins the reuse pool while there is room (*pooled), else is
 * unlinked after the barrier. The name ID.msg is gone at once (crash
 * semantics as for unlink), and ID.free tells recovery that a record of
 * the message still in the journal is of a removed message, not of one
 * whose file a crash lost (replay_record). -1 with errno on failure. */
static int drop_file(sk_spool *s, const char *id, int *pooled)
{
    char name[NAME_MAX + 1], free_name[NAME_MAX + 1];
    snprintf(name, sizeof name, "%s%s", id, SK_SPOOL_BODY_EXT);
    snprintf(free_name, sizeof free_name, "%s%s", id, SPOOL_REUSE_EXT);
    *pooled = 0;
    if (renameat2(s->msgdir_fd, name, s->msgdir_fd, free_name, RENAME_NOREPLACE)) {
        if (errno == ENOENT) return -1;
        /* EEXIST cannot happen with unique IDs; anything else: unlink. */
        return unlinkat(s->msgdir_fd, name, 0);
    }
    pthread_mutex_lock(&s->mu);
    if (s->nreuse + s->nfreed < SPOOL_REUSE_MAX) {
        memcpy(s->freed[s->nfreed++], id, SK_SPOOL_ID_SIZE);
        *pooled = 1;
    }
    pthread_mutex_unlock(&s->mu);
    return 0;
}

sk_err sk_spool_remove(sk_spool *s, const char *id, sk_error *err)
{
    if (s->opts.mode != SK_SPOOL_OWNER)
        return sk_error_set(err, SK_ERR_STATE, SK_STEP_NONE, "spool opened read-only");
    if (!sk_spool_id_valid(id))
        return sk_error_set(err, SK_ERR_NOT_FOUND, SK_STEP_NONE, "no message %s", id);
    /* The message file first: it holds an envelope of its own, while an
     * ID.env left alone by a crash is removed by recovery, so a crash in
     * between leaves nothing deliverable. */
    int pooled;
    if (drop_file(s, id, &pooled)) {
        if (errno == ENOENT)
            return sk_error_set(err, SK_ERR_NOT_FOUND, SK_STEP_NONE, "no message %s in the queue",
                                id);
        return sk_error_set(err, SK_ERR_IO, SK_STEP_NONE, "cannot remove %s%s: %s", id,
                            SK_SPOOL_BODY_EXT, strerror(errno));
    }
    if (s->thread_started) {
        /* The committer syncs the directory with its next group, so the
         * loop thread does not wait for the disk, and unlinks ID.env after
         * that. Losing the removal in a crash only brings back a message
         * whose recipients are done (with its last saved envelope). */
        pthread_mutex_lock(&s->mu);
        if (s->norphans == s->orphans_cap) {
            size_t cap = s->orphans_cap ? 2 * s->orphans_cap : 64;
            void *p = sk_realloc(s->orphans, cap * sizeof *s->orphans);
            if (p) {
                s->orphans = p;
                s->orphans_cap = cap;
            }
        }
        /* Out of memory: the ID.env (and ID.free) stay until recovery
         * removes them. */
        if (s->norphans < s->orphans_cap) {
            memcpy(s->orphans[s->norphans].id, id, SK_SPOOL_ID_SIZE);
            s->orphans[s->norphans++].pooled = pooled;
        }
        if (!s->dir_dirty) s->dir_dirty_since_ms = sk_now_ms();
        s->dir_dirty = 1;
        int failed = s->remove_sync_failed;
        s->remove_sync_failed = 0;
        pthread_cond_signal(&s->cv);
        pthread_mutex_unlock(&s->mu);
        if (failed)
            sk_log(&s->opts.log, SK_LOG_ERR,
                   "- spool remove-sync-failed (an earlier removal may come back after a crash)");
        return SK_OK;
    }
    /* With the journal, a checkpoint: the message's record goes too. */
    sk_err e = s->opts.sync == SK_SPOOL_SYNC_LOG ? checkpoint(s)
                                                 : sk_spool_sync_dir(&s->hooks, s->msgdir_fd);
    if (e) return sk_error_set(err, e, SK_STEP_NONE, "cannot make the removal durable");
    freed_to_reuse(s, s->nfreed); /* no other thread: mu not needed */
    unlink_at(s, id, SK_SPOOL_ENV_EXT);
    if (!pooled) unlink_at(s, id, SPOOL_REUSE_EXT);
    return SK_OK;
}

/* The body is the first env->body_octets octets of this file. */
sk_err sk_spool_body_path(const sk_spool *s, const char *id, sk_buf *out)
{
    if (!sk_spool_id_valid(id)) return SK_ERR_INVAL;
    return sk_buf_printf(out, "%s/%s%s", s->msgdir, id, SK_SPOOL_BODY_EXT);
}

/* The length of the header block at the start of the n octets at d,
 * without the empty line that ends it (RFC 5322 2.1); all of them when
 * none is seen. memmem, not strstr: DATA may carry a NUL, which must not
 * hide that line (the captured copy, capture_headers, does not stop there
 * either). */
static size_t header_block_len(const char *d, size_t n)
{
    if (!d) return 0;
    if (n >= 2 && d[0] == '\r' && d[1] == '\n') return 0;
    const char *blank = memmem(d, n, "\r\n\r\n", 4);
    return blank ? (size_t)(blank - d) + 2 : n;
}

sk_err sk_spool_read_headers(sk_spool *s, const char *id, sk_buf *out, sk_error *err)
{
    if (!sk_spool_id_valid(id))
        return sk_error_set(err, SK_ERR_NOT_FOUND, SK_STEP_NONE, "no message %s", id);
    const sk_spool_msg *f = s->finishing;
    if (f && strcmp(f->id, id) == 0 && f->wbuf.len == f->octets) {
        /* The whole body is still in memory (a journaled message's file
         * may not be written yet). */
        size_t want = f->octets < SK_SPOOL_HEADERS_MAX_OCTETS ? (size_t)f->octets
                                                              : SK_SPOOL_HEADERS_MAX_OCTETS;
        sk_err e = sk_buf_append(out, f->wbuf.data ? f->wbuf.data : "",
                                 header_block_len(f->wbuf.data, want));
        return e ? sk_error_set(err, e, SK_STEP_NONE, "headers too long") : SK_OK;
    }
    if (f && strcmp(f->id, id) == 0) {
        /* Just committed: the same answer as the file gives below, when
         * the capture saw the header block's end or the whole body. */
        size_t hlen = f->hdr_end >= 0 ? (size_t)f->hdr_end : f->hdr.len;
        if (f->hdr_end >= 0 || f->hdr.len == f->octets) {
            sk_err e = sk_buf_append(out, f->hdr.data ? f->hdr.data : "", hlen);
            return e ? sk_error_set(err, e, SK_STEP_NONE, "headers too long") : SK_OK;
        }
    }
    /* The header block is near the start: read a bounded prefix of the
     * body, which ends where the envelope records (the file goes on with
     * the envelope). */
    int fd = open_msg_file(s, id, SK_SPOOL_BODY_EXT);
    if (fd < 0)
        return sk_error_set(err, errno == ENOENT ? SK_ERR_NOT_FOUND : SK_ERR_IO, SK_STEP_NONE,
                            "no message %s in the queue", id);
    sk_spool_envelope *env;
    sk_err e = sk_spool_load(s, id, &env, err);
    if (e) {
        close(fd);
        return e;
    }
    uint64_t want = env->body_octets;
    sk_spool_envelope_free(env);
    if (want > SK_SPOOL_HEADERS_MAX_OCTETS) want = SK_SPOOL_HEADERS_MAX_OCTETS;
    sk_buf b = SK_BUF_INIT(SK_SPOOL_HEADERS_MAX_OCTETS + 1);
    e = sk_buf_reserve(&b, want);
    if (!e) e = sk_spool_pread_all(fd, b.data, (size_t)want, 0);
    if (e == SK_ERR_NOT_FOUND) e = SK_ERR_IO; /* shorter than its envelope says */
    /* A removed message's file may be reused for a new message (docs/
     * queue.md "Reused files"), but only after its name is gone: if the
     * name still leads to this file now, what was read is this message. */
    struct stat a, n;
    char name[NAME_MAX + 1];
    snprintf(name, sizeof name, "%s%s", id, SK_SPOOL_BODY_EXT);
    if (!e && (fstat(fd, &a) || fstatat(s->msgdir_fd, name, &n, 0) || a.st_ino != n.st_ino ||
               a.st_dev != n.st_dev))
        e = SK_ERR_NOT_FOUND;
    close(fd);
    if (e) {
        sk_buf_free(&b);
        return sk_error_set(err, e, SK_STEP_NONE, "cannot read message %s", id);
    }
    b.len = (size_t)want;
    b.data[b.len] = '\0';
    const char *d = sk_buf_cstr(&b);
    e = sk_buf_append(out, d, header_block_len(d, b.len));
    sk_buf_free(&b);
    return e ? sk_error_set(err, e, SK_STEP_NONE, "headers too long") : SK_OK;
}
