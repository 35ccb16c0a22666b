/* Fetching an MTA-STS policy (RFC 8461 3.3) with a libcurl easy handle:
 * HTTPS only, the certificate verified for mta-sts.DOMAIN, no redirects,
 * bounded in time and size. */
#include "mtasts_int.h"

#include <curl/curl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#define POLICY_PATH "/.well-known/mta-sts.txt"
#define HTTPS_PORT  443
/* "mta-sts.DOMAIN:443:" and a list of addresses for CURLOPT_RESOLVE. */
#define RESOLVE_OCTETS 4096

const char *sk_mtasts_fetch_status_name(sk_mtasts_fetch_status s)
{
    static const char *const names[] = {"ok",   "dns",        "connect", "tls",  "timeout",
                                        "http", "media-type", "too-big", "other"};
    _Static_assert(sizeof names / sizeof names[0] == SK_MTASTS_FETCH__COUNT, "one name a status");
    return (unsigned)s < SK_MTASTS_FETCH__COUNT ? names[s] : "?";
}

void sk_mtasts_fetch_result_clear(sk_mtasts_fetch_result *r)
{
    if (!r) return;
    sk_free(r->body);
    memset(r, 0, sizeof *r);
}

typedef struct body {
    sk_buf buf;   /* one octet more than limit: room for the NUL */
    size_t limit; /* octets of body allowed */
    int too_big, nomem;
} body;

static size_t on_data(char *p, size_t size, size_t n, void *ctx)
{
    body *b = ctx;
    size_t len = size * n;
    if (len > b->limit - b->buf.len) {
        b->too_big = 1;
        return 0; /* libcurl stops with CURLE_WRITE_ERROR */
    }
    if (sk_buf_append(&b->buf, p, len) != SK_OK) {
        b->nomem = 1;
        return 0;
    }
    return len;
}

/* 3.2: the media type must be text/plain; parameters are ignored. */
static int is_text_plain(const char *ct)
{
    static const char want[] = "text/plain";
    if (!ct || strncasecmp(ct, want, sizeof want - 1)) return 0;
    ct += sizeof want - 1;
    while (*ct == ' ' || *ct == '\t') ct++;
    return *ct == '\0' || *ct == ';';
}

/* "HOST:PORT" with a port of digits and a HOST without ':' unless in brackets. */
static int connect_to_valid(const char *s)
{
    const char *colon = strrchr(s, ':');
    if (!colon || colon == s || !colon[1] || strlen(colon + 1) > 5) return 0;
    for (const char *p = colon + 1; *p; p++)
        if (*p < '0' || *p > '9') return 0;
    if (s[0] == '[') return colon[-1] == ']' && colon - s > 2;
    return memchr(s, ':', (size_t)(colon - s)) == NULL;
}

static void set_error(sk_mtasts_fetch_result *r, sk_mtasts_fetch_status st, const char *fmt, ...)
    SK_PRINTF(3, 4);
static void set_error(sk_mtasts_fetch_result *r, sk_mtasts_fetch_status st, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->error, sizeof r->error, fmt, ap);
    va_end(ap);
    r->status = st;
}

static sk_mtasts_fetch_status status_of(CURLcode c)
{
    switch (c) {
    case CURLE_COULDNT_RESOLVE_HOST:
        return SK_MTASTS_FETCH_DNS;
    case CURLE_COULDNT_CONNECT:
        return SK_MTASTS_FETCH_CONNECT;
    case CURLE_OPERATION_TIMEDOUT:
        return SK_MTASTS_FETCH_TIMEOUT;
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_INVALIDCERTSTATUS:
        return SK_MTASTS_FETCH_TLS;
    case CURLE_FILESIZE_EXCEEDED:
        return SK_MTASTS_FETCH_TOO_BIG;
    default:
        return SK_MTASTS_FETCH_OTHER;
    }
}

sk_err sk_mtasts_fetch(const sk_mtasts_fetch_opts *o, sk_mtasts_fetch_result *out, sk_error *err)
{
    memset(out, 0, sizeof *out);
    if (!o || !o->domain)
        return sk_error_set(err, SK_ERR_INVAL, SK_STEP_NONE, "no policy domain to fetch for");
    size_t dn = strlen(o->domain);
    if (dn && o->domain[dn - 1] == '.') dn--;
    if (dn > SK_SMTP_DOMAIN_MAX_OCTETS - 2 - 8 || !mts_domain_valid(o->domain, dn))
        return sk_error_set(err, SK_ERR_INVAL, SK_STEP_NONE, "\"%.253s\" is not a domain name",
                            o->domain);
    if (o->connect_to && !connect_to_valid(o->connect_to))
        return sk_error_set(err, SK_ERR_INVAL, SK_STEP_NONE,
                            "\"%.200s\" is not HOST:PORT (an IPv6 HOST in brackets)",
                            o->connect_to);
    char host[SK_SMTP_DOMAIN_MAX_OCTETS + 1];
    snprintf(host, sizeof host, "mta-sts.%.*s", (int)dn, o->domain);
    snprintf(out->url, sizeof out->url, "https://%s%s", host, POLICY_PATH);

    size_t max = o->max_octets ? o->max_octets : SK_MTASTS_POLICY_MAX_OCTETS;
    long timeout = o->timeout_ms > 0 ? o->timeout_ms : SK_MTASTS_FETCH_TIMEOUT_MS_DEFAULT;
    long connect_timeout =
        timeout < SK_MTASTS_CONNECT_TIMEOUT_MS ? timeout : SK_MTASTS_CONNECT_TIMEOUT_MS;
    body b = {.buf = SK_BUF_INIT(max + 1), .limit = max};
    struct curl_slist *resolve = NULL, *connect_to = NULL;
    char errbuf[CURL_ERROR_SIZE] = "";
    sk_err e = SK_OK;

    CURL *h = curl_easy_init();
    if (!h) return sk_error_set(err, SK_ERR_NOMEM, SK_STEP_NONE, "libcurl could not start");
    if (o->connect_to) {
        char line[SK_SMTP_DOMAIN_MAX_OCTETS + 300];
        snprintf(line, sizeof line, "%s:%d:%s", host, HTTPS_PORT, o->connect_to);
        connect_to = curl_slist_append(NULL, line);
        if (!connect_to) e = SK_ERR_NOMEM;
    } else if (o->addresses && o->n_addresses) {
        sk_buf line = SK_BUF_INIT(RESOLVE_OCTETS);
        sk_err be = sk_buf_printf(&line, "%s:%d:", host, HTTPS_PORT);
        for (size_t i = 0; i < o->n_addresses && !be; i++)
            be = sk_buf_printf(&line, strchr(o->addresses[i], ':') ? "%s[%s]" : "%s%s",
                               i ? "," : "", o->addresses[i]);
        if (be == SK_ERR_NOMEM)
            e = SK_ERR_NOMEM;
        else if (be)
            e = sk_error_set(err, SK_ERR_INVAL, SK_STEP_NONE, "too many addresses for %s", host);
        if (!e && !(resolve = curl_slist_append(NULL, line.data))) e = SK_ERR_NOMEM;
        sk_buf_free(&line);
    }
    if (e) {
        curl_easy_cleanup(h);
        curl_slist_free_all(connect_to);
        curl_slist_free_all(resolve);
        return e == SK_ERR_NOMEM ? sk_error_set(err, e, SK_STEP_NONE, "out of memory") : e;
    }

    CURLcode c = CURLE_OK;
#define SET(opt, val)                                                                              \
    if (c == CURLE_OK) c = curl_easy_setopt(h, opt, val)
    SET(CURLOPT_URL, out->url);
    SET(CURLOPT_PROTOCOLS_STR, "https"); /* 3.3: the policy comes over HTTPS only */
    SET(CURLOPT_FOLLOWLOCATION, 0L);     /* 3.3: redirects MUST NOT be followed */
    SET(CURLOPT_SSL_VERIFYPEER, 1L);
    SET(CURLOPT_SSL_VERIFYHOST, 2L); /* the name mta-sts.DOMAIN (RFC 6125) */
    SET(CURLOPT_NOSIGNAL, 1L);
    SET(CURLOPT_TIMEOUT_MS, timeout);
    SET(CURLOPT_CONNECTTIMEOUT_MS, connect_timeout);
    SET(CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)max);
    SET(CURLOPT_WRITEFUNCTION, on_data);
    SET(CURLOPT_WRITEDATA, &b);
    SET(CURLOPT_ERRORBUFFER, errbuf);
    SET(CURLOPT_USERAGENT, "smtpkit");
    if (o->ca_file) SET(CURLOPT_CAINFO, o->ca_file);
    if (connect_to) {
        SET(CURLOPT_CONNECT_TO, connect_to);
        SET(CURLOPT_PROXY, ""); /* the connection goes where it was told */
    }
    if (resolve) SET(CURLOPT_RESOLVE, resolve);
#undef SET
    if (c != CURLE_OK) {
        e = sk_error_set(err, c == CURLE_OUT_OF_MEMORY ? SK_ERR_NOMEM : SK_ERR_CONFIG, SK_STEP_NONE,
                         "libcurl refused an option: %s", curl_easy_strerror(c));
        goto out;
    }

    c = curl_easy_perform(h);
    const char *ct = NULL;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &out->http_status);
    if (curl_easy_getinfo(h, CURLINFO_CONTENT_TYPE, &ct) == CURLE_OK && ct)
        snprintf(out->content_type, sizeof out->content_type, "%s", ct);
    const char *what = errbuf[0] ? errbuf : curl_easy_strerror(c);
    if (c == CURLE_SSL_CACERT_BADFILE) {
        e = sk_error_set(err, SK_ERR_CONFIG, SK_STEP_TLS, "cannot use the CA file %.200s: %.200s",
                         o->ca_file ? o->ca_file : "(system)", what);
        goto out;
    }
    if (c == CURLE_OUT_OF_MEMORY || (c == CURLE_WRITE_ERROR && b.nomem)) {
        e = sk_error_set(err, SK_ERR_NOMEM, SK_STEP_NONE, "out of memory");
        goto out;
    }
    if ((c == CURLE_WRITE_ERROR && b.too_big) || c == CURLE_FILESIZE_EXCEEDED) {
        set_error(out, SK_MTASTS_FETCH_TOO_BIG, "%s: the policy is over %zu octets", out->url, max);
    } else if (c != CURLE_OK) {
        set_error(out, status_of(c), "%s: %s", out->url, what);
    } else if (out->http_status != 200) {
        const char *loc = NULL;
        if (curl_easy_getinfo(h, CURLINFO_REDIRECT_URL, &loc) == CURLE_OK && loc)
            snprintf(out->location, sizeof out->location, "%s", loc);
        if (out->location[0])
            set_error(out, SK_MTASTS_FETCH_HTTP,
                      "%s: HTTP %ld, a redirect to %.300s (not followed: RFC 8461 3.3)", out->url,
                      out->http_status, out->location);
        else
            set_error(out, SK_MTASTS_FETCH_HTTP, "%s: HTTP %ld (want 200)", out->url,
                      out->http_status);
    } else if (!is_text_plain(out->content_type)) {
        set_error(out, SK_MTASTS_FETCH_MEDIA_TYPE,
                  "%s: Content-Type %s%.100s%s, not text/plain (RFC 8461 3.2)", out->url,
                  out->content_type[0] ? "\"" : "",
                  out->content_type[0] ? out->content_type : "none",
                  out->content_type[0] ? "\"" : "");
    } else {
        if (sk_buf_reserve(&b.buf, 1) != SK_OK) {
            e = sk_error_set(err, SK_ERR_NOMEM, SK_STEP_NONE, "out of memory");
            goto out;
        }
        out->body_len = b.buf.len;
        out->body = sk_buf_detach(&b.buf, NULL);
        out->body[out->body_len] = '\0';
        out->status = SK_MTASTS_FETCH_OK;
    }
out:
    sk_buf_free(&b.buf);
    curl_easy_cleanup(h);
    curl_slist_free_all(connect_to);
    curl_slist_free_all(resolve);
    return e;
}
