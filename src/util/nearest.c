/* The nearest of a set of names to a mistyped word (edit distance), for
 * "did you mean" suggestions: CLI options and commands, config keys. */
#include <smtpkit/util.h>

#include <stdint.h>
#include <string.h>

/* Edit distance where swapping two neighbours is one edit, like an
 * insertion, deletion or substitution ("sned" is one from "send"): the
 * optimal string alignment distance. SIZE_MAX when a word is longer than
 * the limit. */
static size_t edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la > SK_NEAREST_MAX_OCTETS || lb > SK_NEAREST_MAX_OCTETS) return SIZE_MAX;
    /* d[i][j]: distance between a's first i octets and b's first j. */
    unsigned char d[SK_NEAREST_MAX_OCTETS + 1][SK_NEAREST_MAX_OCTETS + 1];
    for (size_t i = 0; i <= la; i++) d[i][0] = (unsigned char)i;
    for (size_t j = 0; j <= lb; j++) d[0][j] = (unsigned char)j;
    for (size_t i = 1; i <= la; i++) {
        for (size_t j = 1; j <= lb; j++) {
            unsigned best = d[i - 1][j - 1] + (a[i - 1] != b[j - 1]);
            if (d[i - 1][j] + 1u < best) best = d[i - 1][j] + 1u;
            if (d[i][j - 1] + 1u < best) best = d[i][j - 1] + 1u;
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] &&
                d[i - 2][j - 2] + 1u < best)
                best = d[i - 2][j - 2] + 1u;
            d[i][j] = (unsigned char)best;
        }
    }
    return d[la][lb];
}

const char *sk_nearest(const char *word, const char *const *names)
{
    const char *best = NULL;
    size_t best_d = SIZE_MAX;
    size_t wl = strlen(word);
    /* A third of the word may be wrong (one edit at least): "lsiten" is
     * "listen", but "ab" is not "at". */
    size_t allowed = wl / 3;
    if (allowed < 1) allowed = 1;
    for (size_t i = 0; names && names[i]; i++) {
        size_t d = edit_distance(word, names[i]);
        /* A prefix of a longer name ("data" for "data-dir") is close too. */
        if (d > allowed && wl >= 3 && !strncmp(names[i], word, wl)) d = allowed;
        if (d < best_d) {
            best_d = d;
            best = names[i];
        }
    }
    return best_d <= allowed ? best : NULL;
}
