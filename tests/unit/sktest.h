/* Helpers shared by the unit tests (tests/unit/test_*.c, linked with
 * sktest.c): table sizes, temporary directories and files, the allocator of
 * the allocation-failure sweeps, an injected clock and a logger that keeps
 * what it is given. Include it after <cmocka.h>: the file helpers fail the
 * running test when the file system says no. */
#ifndef SKTEST_H
#define SKTEST_H

#include <smtpkit/util.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The number of entries of a table of cases. */
#define SKT_N(table) (sizeof(table) / sizeof((table)[0]))

/* ---- files ---- */

/* A new directory /tmp/sk-TAG-XXXXXX; the path is malloc'ed (free it). */
char *skt_tmpdir(const char *tag);
/* Remove dir and everything under it; a missing dir is no error. */
void skt_rmtree(const char *dir);
/* A whole file, NUL-terminated (malloc'ed); its length in *len when len
 * is not NULL. */
char *skt_read_file(const char *path, size_t *len);
/* Create or replace path with len octets of data. */
void skt_write_file(const char *path, const void *data, size_t len);
/* A new file /tmp/sk-TAG-XXXXXX holding len octets of data; the path is
 * malloc'ed (unlink and free it). */
char *skt_tmpfile(const char *tag, const void *data, size_t len);
/* Entries of dir whose names do not start with '.'; 0 when it is missing. */
int skt_count_files(const char *dir);

/* ---- allocation failures ---- */

/* Install an allocator (sk_set_allocator) that fails allocation number n,
 * counted from 0 at this call: only that one (fail_at) or that one and
 * every later one (fail_from). n < 0 never fails. Each call starts the
 * counts again. */
void skt_alloc_fail_at(long n);
void skt_alloc_fail_from(long n);
/* Put libc's allocator back. */
void skt_alloc_end(void);
/* Since the last skt_alloc_fail_*: whether an allocation was made to
 * fail, and how many blocks were allocated and not yet freed (a leak
 * check that works without sanitizers). */
bool skt_alloc_failed(void);
long skt_alloc_live(void);

/* ---- clock ---- */

/* A clock hook (int64_t (*)(void *ctx)) for code that takes one: ctx
 * points to an int64_t holding the time in milliseconds, which the test
 * sets and advances. */
int64_t skt_clock_ms(void *ctx);

/* ---- DNS ---- */

/* tests/integration/dns_server.py (found through SK_SOURCE_DIR) serving
 * the zone given as JSON (the format of its docstring) on loopback; addr
 * receives "127.0.0.1:PORT". Returns its process ID for skt_dns_stop. */
int skt_dns_start(const char *zone_json, char *addr, size_t size);
void skt_dns_stop(int pid);

/* ---- logging ---- */

/* A log that keeps every line it is given: pass skt_log_line as an
 * sk_logger's fn with a skt_log as its ctx; skt_log_free when done. */
typedef struct skt_log {
    struct skt_log_line *lines;
    size_t n, cap;
} skt_log;
void skt_log_line(void *ctx, sk_log_level level, const char *line);
/* Lines at level (or any level when level < 0) that contain needle. */
size_t skt_log_count(const skt_log *log, int level, const char *needle);
void skt_log_free(skt_log *log);

#endif
