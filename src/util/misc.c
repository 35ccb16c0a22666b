/* Time, string, number and randomness helpers. */
#include <smtpkit/util.h>

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <strings.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

uint64_t sk_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

void sk_time_rfc3339(int64_t unix_seconds, char out[32])
{
    time_t t = (time_t)unix_seconds;
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

void sk_time_rfc5322(int64_t unix_seconds, char out[40])
{
    /* RFC 5322 3.3; English names regardless of locale. */
    static const char *const days[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    static const char *const months[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                         "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    time_t t = (time_t)unix_seconds;
    struct tm tm;
    localtime_r(&t, &tm);
    int off = (int)(tm.tm_gmtoff / 60) % (24 * 60);
    char sign = off < 0 ? '-' : '+';
    if (off < 0) off = -off;
    snprintf(out, 40, "%s, %02d %s %04d %02d:%02d:%02d %c%02d%02d", days[tm.tm_wday % 7],
             tm.tm_mday % 32, months[tm.tm_mon % 12], (tm.tm_year + 1900) % 10000, tm.tm_hour,
             tm.tm_min, tm.tm_sec, sign, off / 60, off % 60);
}

int sk_strcaseprefix(const char *s, const char *prefix)
{
    return strncasecmp(s, prefix, strlen(prefix)) == 0;
}

void sk_ascii_lower(char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) s[i] = (char)sk_to_lower((unsigned char)s[i]);
}

bool sk_is_ldh_word(const char *s, size_t n)
{
    if (n == 0 || !sk_is_alnum(s[0]) || !sk_is_alnum(s[n - 1])) return false;
    for (size_t i = 1; i < n; i++)
        if (!sk_is_alnum(s[i]) && s[i] != '-') return false;
    return true;
}

static sk_err parse_scaled(const char *s, uint64_t *out, const char *const *units,
                           const uint64_t *scales, size_t nunits)
{
    if (!s || !isdigit((unsigned char)*s)) return SK_ERR_SYNTAX;
    errno = 0;
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno) return SK_ERR_SYNTAX;
    for (size_t i = 0; i < nunits; i++) {
        if (strcasecmp(end, units[i]) == 0) {
            if (scales[i] && v > UINT64_MAX / scales[i]) return SK_ERR_TOO_LONG;
            *out = v * scales[i];
            return SK_OK;
        }
    }
    return SK_ERR_SYNTAX;
}

sk_err sk_parse_size(const char *s, uint64_t *out)
{
    static const char *const units[] = {"", "K", "KB", "KiB", "M", "MB", "MiB", "G", "GB", "GiB"};
    static const uint64_t scales[] = {1,       1024,    1024,       1024,       1048576,
                                      1048576, 1048576, 1073741824, 1073741824, 1073741824};
    return parse_scaled(s, out, units, scales, sizeof scales / sizeof scales[0]);
}

sk_err sk_parse_duration_ms(const char *s, uint64_t *out)
{
    /* A bare number is seconds. */
    static const char *const units[] = {"", "ms", "s", "m", "h", "d"};
    static const uint64_t scales[] = {1000, 1, 1000, 60000, 3600000, 86400000};
    return parse_scaled(s, out, units, scales, sizeof scales / sizeof scales[0]);
}

sk_err sk_random(void *out, size_t n)
{
    unsigned char *p = out;
    while (n) {
        ssize_t r = getrandom(p, n, 0);
        if (r < 0) {
            if (errno == EINTR) continue;
            return SK_ERR_IO;
        }
        p += r;
        n -= (size_t)r;
    }
    return SK_OK;
}
