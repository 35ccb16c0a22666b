/* Fuzz target: MTA-STS policy files (sk_mtasts_policy_parse, RFC 8461 3.2)
 * and mx pattern matching (sk_mtasts_mx_match, 4.1). Properties: a refusal
 * has a reason and leaves nothing; a policy has a mode in range, max_age
 * within the year, mx patterns (unless mode none) that are lower-case
 * names or "*." and a name, each matching a host made from it; the policy
 * written back in its canonical form parses to the same. The input's first
 * two lines are also tried as a pattern and a host: a match means the host
 * is the pattern or one label in front of its wildcard's rest. */
#include "mtasts/mtasts_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_match(const char *data, size_t size)
{
    const char *nl = memchr(data, '\n', size);
    if (!nl) return;
    const char *rest = nl + 1;
    const char *nl2 = memchr(rest, '\n', size - (size_t)(rest - data));
    size_t pn = (size_t)(nl - data), hn = nl2 ? (size_t)(nl2 - rest) : size - (size_t)(rest - data);
    if (pn > 300 || hn > 300) return;
    char pattern[301], host[301];
    memcpy(pattern, data, pn);
    pattern[pn] = '\0';
    memcpy(host, rest, hn);
    host[hn] = '\0';
    if (strlen(pattern) != pn || strlen(host) != hn) return; /* NUL inside */
    if (!sk_mtasts_mx_match(pattern, host)) return;
    size_t h = hn;
    if (h && host[h - 1] == '.') h--;
    if (pattern[0] == '*' && pattern[1] == '.') {
        const char *dot = memchr(host, '.', h);
        if (!dot || dot == host || strlen(pattern + 2) != h - (size_t)(dot + 1 - host)) abort();
        if (strncasecmp(dot + 1, pattern + 2, strlen(pattern + 2))) abort();
    } else if (pn != h || strncasecmp(pattern, host, h)) {
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > SK_MTASTS_POLICY_MAX_OCTETS) return 0;
    const char *text = (const char *)data;
    check_match(text, size);
    sk_mtasts_policy p;
    char why[200] = "";
    sk_err e = sk_mtasts_policy_parse(text, size, &p, why, sizeof why);
    if (e) {
        if (e != SK_ERR_SYNTAX && e != SK_ERR_NOMEM) abort();
        if (e == SK_ERR_SYNTAX && !why[0]) abort();
        if (p.n_mx || p.mx) abort();
        return 0;
    }
    if (p.mode > SK_MTASTS_MODE_ENFORCE || p.max_age_s > SK_MTASTS_MAX_AGE_MAX_S) abort();
    if (p.n_mx == 0 && p.mode != SK_MTASTS_MODE_NONE) abort();
    if (p.n_mx > SK_MTASTS_MX_MAX) abort();
    sk_buf b = SK_BUF_INIT(SK_MTASTS_POLICY_MAX_OCTETS * 2);
    int ok = sk_buf_printf(&b, "version: STSv1\r\nmode: %s\r\nmax_age: %u\r\n",
                           sk_mtasts_mode_name(p.mode), p.max_age_s) == SK_OK;
    for (size_t i = 0; i < p.n_mx; i++) {
        const char *m = p.mx[i];
        size_t n = strlen(m);
        int wild = m[0] == '*' && m[1] == '.';
        if (!mts_domain_valid(m + (wild ? 2 : 0), n - (wild ? 2 : 0))) abort();
        for (size_t k = 0; k < n; k++)
            if (m[k] >= 'A' && m[k] <= 'Z') abort();
        char host[SK_SMTP_DOMAIN_MAX_OCTETS + 8];
        snprintf(host, sizeof host, "%s%s.", wild ? "x" : "", wild ? m + 1 : m);
        if (!sk_mtasts_mx_match(m, host) || !sk_mtasts_policy_match(&p, host)) abort();
        ok = ok && sk_buf_printf(&b, "mx: %s\r\n", m) == SK_OK;
    }
    if (ok) {
        sk_mtasts_policy q;
        sk_err qe = sk_mtasts_policy_parse(b.data, b.len, &q, why, sizeof why);
        if (qe == SK_OK) {
            if (q.mode != p.mode || q.max_age_s != p.max_age_s || q.n_mx != p.n_mx) abort();
            for (size_t i = 0; i < p.n_mx; i++)
                if (strcmp(q.mx[i], p.mx[i])) abort();
            sk_mtasts_policy_clear(&q);
        } else if (qe != SK_ERR_NOMEM) {
            abort(); /* what was read writes back to a valid policy */
        }
    }
    sk_buf_free(&b);
    sk_mtasts_policy_clear(&p);
    return 0;
}
