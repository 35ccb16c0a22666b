/* Fuzz target: reading the spool's journal at recovery (src/spool/journal.c)
 * from a damaged file. The input is the journal file itself. Properties:
 * no crash or read out of bounds; every record handed over has a valid
 * queue ID and lies within the file; the records end where the reader
 * says the tail is. */
#include "spool/journal.h"
#include "spool/spool_int.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct seen {
    uint64_t octets;
    size_t n;
} seen;

static sk_err on_record(void *ctx, const char *id, const char *content, size_t n)
{
    seen *s = ctx;
    if (!sk_spool_id_valid(id)) abort();
    if (n && !content) abort();
    /* Touch every octet: an over-read shows under ASan. */
    volatile char sum = 0;
    for (size_t i = 0; i < n; i++) sum ^= content[i];
    (void)sum;
    s->octets += SK_JOURNAL_RECORD_OCTETS + n;
    s->n++;
    return SK_OK;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int dfd = -1;
    if (dfd < 0) {
        char tmpl[] = "/tmp/sk-fuzz-journal-XXXXXX";
        if (!mkdtemp(tmpl)) abort();
        dfd = open(tmpl, O_RDONLY | O_DIRECTORY);
        if (dfd < 0) abort();
    }
    int fd = openat(dfd, SK_JOURNAL_FILE, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0 || write(fd, data, size) != (ssize_t)size) abort();
    close(fd);
    sk_journal j = {.fd = -1};
    if (sk_journal_open(&j, dfd, 0) != SK_OK) abort();
    if (j.fd < 0 || j.size != size) abort();
    seen s = {0, 0};
    size_t n = 0;
    sk_err e = sk_journal_replay(&j, on_record, &s, &n);
    if (e != SK_OK) abort();
    if (n != s.n) abort();
    if (j.tail != SK_JOURNAL_HEAD_OCTETS + s.octets) abort();
    if (s.n && j.tail > size) abort();
    sk_journal_close(&j);
    return 0;
}
