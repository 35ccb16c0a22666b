/* The message file (docs/queue.md "Message file"): body, envelope, trailer;
 * writing one, and reading and checking one back. */
#include "spool/spool_impl.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* The body CRC is checked in reads of this size. */
#define CRC_CHUNK_OCTETS 65536
/* A file compared with a journal record is read in pieces of this size. */
#define COMPARE_CHUNK_OCTETS 8192

void sk_spool_msgfile_parts(const sk_spool_msg *m, char trailer[SK_SPOOL_TRAILER_OCTETS + 1],
                            struct iovec iov[SK_SPOOL_MSGFILE_PARTS])
{
    /* The trailer is the last thing written: recovery takes a file whose
     * trailer, envelope ("end" line) and body CRC-32C agree as complete. */
    snprintf(trailer, SK_SPOOL_TRAILER_OCTETS + 1, "%s%0*llu\n", SK_SPOOL_TRAILER_TAG,
             SK_SPOOL_TRAILER_DIGITS, (unsigned long long)m->octets);
    iov[0] = (struct iovec){m->wbuf.data, m->wbuf.len};
    iov[1] = (struct iovec){m->envtext.data, m->envtext.len};
    iov[2] = (struct iovec){trailer, SK_SPOOL_TRAILER_OCTETS};
}

sk_err sk_spool_msgfile_write(const sk_spool_msg *m, int fd, int reused)
{
    char trailer[SK_SPOOL_TRAILER_OCTETS + 1];
    struct iovec iov[SK_SPOOL_MSGFILE_PARTS];
    sk_spool_msgfile_parts(m, trailer, iov);
    sk_err e = sk_spool_write_parts(&m->s->hooks, fd, iov, SK_SPOOL_MSGFILE_PARTS);
    /* A reused file is written over, not truncated first (truncating to 0
     * makes ext4 write the file back at close, auto_da_alloc): cut it to
     * the new length before the barrier. */
    off_t total = (off_t)(m->octets + m->envtext.len + SK_SPOOL_TRAILER_OCTETS);
    if (!e && reused && ftruncate(fd, total)) e = sk_err_from_errno(errno, SK_FILE_WRITE);
    return e;
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

/* The text between the body and the trailer. */
sk_err sk_spool_msgfile_envelope(int fd, const char *id, sk_spool_envelope **out)
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

/* The file is the body followed by a trailer that points at the body's
 * end, or (written by a version that kept envelopes only in ID.env) the
 * body alone. */
const char *sk_spool_msgfile_problem(int fd, const sk_spool_envelope *env, int check_crc)
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
    char chunk[CRC_CHUNK_OCTETS];
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

int sk_spool_file_holds(int fd, const char *p, size_t n)
{
    struct stat st;
    if (fstat(fd, &st)) return -1;
    if ((uint64_t)st.st_size != n) return 0;
    char buf[COMPARE_CHUNK_OCTETS];
    for (size_t off = 0; off < n;) {
        size_t k = n - off < sizeof buf ? n - off : sizeof buf;
        sk_err e = sk_spool_pread_all(fd, buf, k, off);
        if (e) return -1;
        if (memcmp(buf, p + off, k)) return 0;
        off += k;
    }
    return 1;
}
