/* Queue IDs: Crockford base32 of the arrival time in milliseconds and 30
 * random bits (docs/queue.md "On-disk layout"), unique within a spool. */
#include "spool/id.h"

#include <string.h>
#include <time.h>

/* Crockford's base32: no I, L, O, U, so IDs are easy to read aloud. */
static const char id_alphabet[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";
/* The time part: 10 characters (50 bits), big end first, so IDs sort by
 * time; the random part: 6 characters (30 bits). */
#define ID_TIME_CHARS 10

static uint64_t now_ms_realtime(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

sk_err sk_spool_id_new(char out[SK_SPOOL_ID_SIZE], uint64_t now_ms)
{
    if (!now_ms) now_ms = now_ms_realtime();
    uint32_t rnd;
    sk_err e = sk_random(&rnd, sizeof rnd);
    if (e) return e;
    uint64_t t = now_ms & ((1ull << 50) - 1);
    for (int i = ID_TIME_CHARS - 1; i >= 0; i--) {
        out[i] = id_alphabet[t & 31];
        t >>= 5;
    }
    for (int i = SK_SPOOL_ID_LEN - 1; i >= ID_TIME_CHARS; i--) {
        out[i] = id_alphabet[rnd & 31];
        rnd >>= 5;
    }
    out[SK_SPOOL_ID_LEN] = '\0';
    return SK_OK;
}

int sk_spool_id_valid(const char *s)
{
    if (!s || strlen(s) != SK_SPOOL_ID_LEN) return 0;
    for (size_t i = 0; i < SK_SPOOL_ID_LEN; i++)
        if (!strchr(id_alphabet, s[i]) || s[i] == '\0') return 0;
    return 1;
}

/* The milliseconds of a valid ID's time part. */
static uint64_t id_time_ms(const char *id)
{
    uint64_t t = 0;
    for (int i = 0; i < ID_TIME_CHARS; i++)
        t = t << 5 | (uint64_t)(strchr(id_alphabet, id[i]) - id_alphabet);
    return t;
}

/* The time part never goes back (a clock stepped back, or IDs of messages
 * recovered at open that are ahead of it), and the random part is drawn
 * again when it repeats one of the same millisecond. A journaled message's
 * file is made after its 250, when a name collision could no longer fail
 * the commit, so IDs must be unique before (O_EXCL still guards the
 * files). */
sk_err sk_spool_id_unique(sk_spool_idgen *g, char id[SK_SPOOL_ID_SIZE])
{
    uint64_t now = now_ms_realtime();
    if (now < g->ms) now = g->ms;
    if (now == g->ms && g->nrecent == SK_SPOOL_RECENT_IDS) now++;
    if (now != g->ms) {
        g->ms = now;
        g->nrecent = 0;
    }
    for (;;) {
        sk_err e = sk_spool_id_new(id, now);
        if (e) return e;
        size_t i = 0;
        while (i < g->nrecent && strcmp(g->recent[i], id)) i++;
        if (i == g->nrecent) break;
    }
    memcpy(g->recent[g->nrecent++], id, SK_SPOOL_ID_SIZE);
    return SK_OK;
}

void sk_spool_id_after(sk_spool_idgen *g, const char *id)
{
    g->ms = id_time_ms(id) + 1;
}
