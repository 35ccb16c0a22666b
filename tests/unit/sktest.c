/* Helpers shared by the unit tests: see sktest.h. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "sktest.h"

#include <dirent.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

/* ---- files ---- */

char *skt_tmpdir(const char *tag)
{
    char tmpl[256];
    snprintf(tmpl, sizeof tmpl, "/tmp/sk-%s-XXXXXX", tag);
    assert_non_null(mkdtemp(tmpl));
    char *dir = strdup(tmpl);
    assert_non_null(dir);
    return dir;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    return remove(path);
}

void skt_rmtree(const char *dir)
{
    nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

char *skt_read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) fail_msg("cannot open %s", path);
    assert_int_equal(fseek(f, 0, SEEK_END), 0);
    long n = ftell(f);
    assert_true(n >= 0);
    assert_int_equal(fseek(f, 0, SEEK_SET), 0);
    char *p = malloc((size_t)n + 1);
    assert_non_null(p);
    assert_int_equal(fread(p, 1, (size_t)n, f), (size_t)n);
    p[n] = '\0';
    fclose(f);
    if (len) *len = (size_t)n;
    return p;
}

void skt_write_file(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    if (!f) fail_msg("cannot create %s", path);
    assert_int_equal(fwrite(data, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
}

char *skt_tmpfile(const char *tag, const void *data, size_t len)
{
    char tmpl[256];
    snprintf(tmpl, sizeof tmpl, "/tmp/sk-%s-XXXXXX", tag);
    int fd = mkstemp(tmpl);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, data, len), (ssize_t)len);
    assert_int_equal(close(fd), 0);
    char *path = strdup(tmpl);
    assert_non_null(path);
    return path;
}

int skt_count_files(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d) return 0;
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)))
        if (de->d_name[0] != '.') n++;
    closedir(d);
    return n;
}

/* ---- allocation failures ---- */

static struct {
    long count;   /* allocations since the last skt_alloc_fail_* */
    long fail_at; /* the first to fail; < 0: none */
    bool from;    /* and every later one */
    bool failed;
    long live;
} alloc;

static bool alloc_fails(void)
{
    long i = alloc.count++;
    if (alloc.fail_at < 0 || i < alloc.fail_at || (i > alloc.fail_at && !alloc.from)) return false;
    alloc.failed = true;
    return true;
}

static void *skt_malloc(size_t n)
{
    if (alloc_fails()) return NULL;
    void *p = malloc(n);
    if (p) alloc.live++;
    return p;
}

static void *skt_realloc(void *p, size_t n)
{
    if (alloc_fails()) return NULL;
    void *q = realloc(p, n);
    if (q && !p) alloc.live++;
    return q;
}

static void skt_free(void *p)
{
    if (p) alloc.live--;
    free(p);
}

static void alloc_start(long n, bool from)
{
    static const sk_allocator failing = {skt_malloc, skt_realloc, skt_free};
    alloc.count = 0;
    alloc.fail_at = n;
    alloc.from = from;
    alloc.failed = false;
    alloc.live = 0;
    sk_set_allocator(&failing);
}

void skt_alloc_fail_at(long n)
{
    alloc_start(n, false);
}

void skt_alloc_fail_from(long n)
{
    alloc_start(n, true);
}

void skt_alloc_end(void)
{
    sk_set_allocator(NULL);
}

bool skt_alloc_failed(void)
{
    return alloc.failed;
}

long skt_alloc_live(void)
{
    return alloc.live;
}

/* ---- clock ---- */

int64_t skt_clock_ms(void *ctx)
{
    return *(const int64_t *)ctx;
}

/* ---- DNS ---- */

int skt_dns_start(const char *zone_json, char *addr, size_t size)
{
    const char *src = getenv("SK_SOURCE_DIR");
    assert_non_null(src);
    char prog[4096];
    snprintf(prog, sizeof prog, "%s/tests/integration/dns_server.py", src);
    char *zpath = skt_tmpfile("zone", zone_json, strlen(zone_json));
    int p[2];
    assert_int_equal(pipe(p), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        dup2(p[1], 1);
        close(p[0]);
        execl("/usr/bin/python3", "python3", prog, zpath, (char *)NULL);
        _exit(127);
    }
    close(p[1]);
    /* The server prints its port once it listens (or exits on failure). */
    char line[32] = "";
    size_t n = 0;
    while (n < sizeof line - 1 && read(p[0], line + n, 1) == 1 && line[n] != '\n') n++;
    line[n] = '\0';
    close(p[0]);
    unlink(zpath);
    free(zpath);
    if (atoi(line) <= 0) {
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        fail_msg("dns_server.py did not start");
    }
    snprintf(addr, size, "127.0.0.1:%d", atoi(line));
    return (int)pid;
}

void skt_dns_stop(int pid)
{
    kill((pid_t)pid, SIGTERM);
    waitpid((pid_t)pid, NULL, 0);
}

/* ---- logging ---- */

struct skt_log_line {
    sk_log_level level;
    char *text;
};

void skt_log_line(void *ctx, sk_log_level level, const char *line)
{
    skt_log *log = ctx;
    if (log->n == log->cap) {
        log->cap = log->cap ? 2 * log->cap : 16;
        log->lines = realloc(log->lines, log->cap * sizeof *log->lines);
        assert_non_null(log->lines);
    }
    log->lines[log->n].level = level;
    log->lines[log->n].text = strdup(line);
    assert_non_null(log->lines[log->n].text);
    log->n++;
}

size_t skt_log_count(const skt_log *log, int level, const char *needle)
{
    size_t n = 0;
    for (size_t i = 0; i < log->n; i++)
        if ((level < 0 || (int)log->lines[i].level == level) && strstr(log->lines[i].text, needle))
            n++;
    return n;
}

void skt_log_free(skt_log *log)
{
    for (size_t i = 0; i < log->n; i++) free(log->lines[i].text);
    free(log->lines);
    *log = (skt_log){0};
}
