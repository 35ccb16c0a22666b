/* MTA-STS (RFC 8461) and SMTP TLS Reporting (RFC 8460): the _mta-sts TXT
 * record, the policy file and its mx patterns, the policy fetched over
 * HTTPS with libcurl, and the _smtp._tls TXT record. The parsers are pure
 * functions; the fetch blocks (for the CLI). docs/authentication.md
 * ("Checking a domain") says how `smtpkit check` uses them. */
#ifndef SMTPKIT_MTASTS_H
#define SMTPKIT_MTASTS_H

#include "util.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- the _mta-sts TXT record (RFC 8461 3.1) ---- */

typedef struct sk_mtasts_record {
    char id[SK_MTASTS_ID_MAX_OCTETS + 1]; /* id=: 1 to 32 letters and digits */
    unsigned extensions;                  /* other fields (ignored, as 3.1 says) */
} sk_mtasts_record;

/* 1 when a TXT record (its strings joined) begins with "v=STSv1" *WSP ";":
 * the records that count at _mta-sts.DOMAIN (3.1: others are discarded;
 * more than one that counts means no policy). */
int sk_mtasts_is_record(const char *txt, size_t len);
/* Parse a record by the ABNF of 3.1, strictly: "v=STSv1" first, exactly
 * one id=, fields separated by *WSP ";" *WSP, extension names and values of
 * the characters the ABNF allows. SK_OK with *out filled, or SK_ERR_SYNTAX
 * with why (one line naming the field; may be NULL). */
SK_NODISCARD sk_err sk_mtasts_record_parse(const char *txt, size_t len, sk_mtasts_record *out,
                                           char *why, size_t why_size);

/* ---- the policy file (RFC 8461 3.2) ---- */

typedef enum sk_mtasts_mode {
    SK_MTASTS_MODE_NONE = 0, /* the policy is withdrawn: senders treat the domain as without one */
    SK_MTASTS_MODE_TESTING,  /* senders report failures (TLS-RPT) and deliver anyway */
    SK_MTASTS_MODE_ENFORCE,  /* senders deliver only to matching MX hosts over verified TLS */
} sk_mtasts_mode;
/* "none", "testing", "enforce". */
const char *sk_mtasts_mode_name(sk_mtasts_mode m);

typedef struct sk_mtasts_policy {
    sk_mtasts_mode mode;
    uint32_t max_age_s; /* 0..SK_MTASTS_MAX_AGE_MAX_S */
    size_t n_mx;
    char **mx;           /* the patterns in order, lower case: "mx1.example.org", "*.example.org" */
    unsigned extensions; /* fields of other names (ignored) */
} sk_mtasts_policy;

/* Parse a policy body by the ABNF of 3.2, strictly: lines ended by LF or
 * CRLF (the last one's end optional), each "name:" *WSP value *WSP with no
 * white space before the colon; version (STSv1), mode and max_age exactly
 * once; mx at least once unless the mode is none, each a domain name or
 * "*." and one, without a final dot; extension fields of the ABNF's names
 * and values. A repeated version, mode or max_age, a max_age over
 * SK_MTASTS_MAX_AGE_MAX_S or of more than 10 digits, an empty line, or
 * more than SK_MTASTS_MX_MAX patterns is an error. SK_OK with *out filled
 * (release with sk_mtasts_policy_clear), SK_ERR_SYNTAX with why ("line 3:
 * ..."; may be NULL), SK_ERR_NOMEM. */
SK_NODISCARD sk_err sk_mtasts_policy_parse(const char *text, size_t len, sk_mtasts_policy *out,
                                           char *why, size_t why_size);
void sk_mtasts_policy_clear(sk_mtasts_policy *p);

/* 1 when the MX host name matches the pattern (RFC 8461 4.1): the same
 * name, or for "*.rest" one label followed by ".rest" (the wildcard stands
 * for exactly one leftmost label); without regard to ASCII case, a final
 * dot on host ignored. */
int sk_mtasts_mx_match(const char *pattern, const char *host);
/* The first of the policy's patterns that host matches, or NULL. */
const char *sk_mtasts_policy_match(const sk_mtasts_policy *p, const char *host);

/* ---- fetching the policy (RFC 8461 3.3) ---- */

typedef struct sk_mtasts_fetch_opts {
    const char *domain;  /* the policy domain: https://mta-sts.DOMAIN/.well-known/mta-sts.txt */
    const char *ca_file; /* PEM CA certificates to trust; NULL = the system's store */
    /* The addresses of mta-sts.DOMAIN, found by the caller's resolver (so
     * that the fetch asks the same DNS as everything else); NULL or none =
     * libcurl resolves the name itself. */
    const char *const *addresses;
    size_t n_addresses;
    /* "HOST:PORT" (an IPv6 HOST in brackets): connect there instead of
     * mta-sts.DOMAIN:443, still sending and verifying the name
     * mta-sts.DOMAIN (as curl's --connect-to); for tests and troubleshooting.
     * No proxy is used then. NULL = the real host. */
    const char *connect_to;
    int timeout_ms;    /* the whole transfer; 0 = SK_MTASTS_FETCH_TIMEOUT_MS_DEFAULT */
    size_t max_octets; /* body limit; 0 = SK_MTASTS_POLICY_MAX_OCTETS */
} sk_mtasts_fetch_opts;

typedef enum sk_mtasts_fetch_status {
    SK_MTASTS_FETCH_OK = 0,  /* 200 with a text/plain body within the limit */
    SK_MTASTS_FETCH_DNS,     /* the host name did not resolve */
    SK_MTASTS_FETCH_CONNECT, /* no connection (refused, unreachable) */
    SK_MTASTS_FETCH_TLS,     /* TLS failed, or the certificate is not trusted or for another name */
    SK_MTASTS_FETCH_TIMEOUT, /* the transfer did not finish in time */
    SK_MTASTS_FETCH_HTTP,    /* a status other than 200 (a redirect is not followed, 3.3) */
    SK_MTASTS_FETCH_MEDIA_TYPE, /* the Content-Type is not text/plain (3.2) */
    SK_MTASTS_FETCH_TOO_BIG,    /* the body is over the limit */
    SK_MTASTS_FETCH_OTHER,      /* anything else libcurl reports (error says what) */
    SK_MTASTS_FETCH__COUNT
} sk_mtasts_fetch_status;
/* "ok", "dns", "connect", "tls", "timeout", "http", "media-type", "too-big", "other". */
const char *sk_mtasts_fetch_status_name(sk_mtasts_fetch_status s);

typedef struct sk_mtasts_fetch_result {
    sk_mtasts_fetch_status status;
    char url[SK_SMTP_DOMAIN_MAX_OCTETS + 64];
    long http_status;                   /* 0 when no response came */
    char content_type[128];             /* as sent, "" without one */
    char location[512];                 /* a redirect's target (not followed), "" otherwise */
    char error[SK_MTASTS_ERROR_OCTETS]; /* one line for people when status is not OK */
    char *body; /* NUL-terminated; status OK only (sk_mtasts_fetch_result_clear) */
    size_t body_len;
} sk_mtasts_fetch_result;

/* Fetch the policy over HTTPS (libcurl): HTTPS only, the certificate
 * verified for mta-sts.DOMAIN, no redirects followed and no HTTP cache
 * (3.3), bounded in time and size. Blocks: for the CLI and programs
 * without a loop. SK_OK when a fetch was tried (*out says how it went),
 * SK_ERR_INVAL for a domain that is not a host name or a bad connect_to,
 * SK_ERR_CONFIG when ca_file cannot be used, SK_ERR_NOMEM; err says why.
 * libcurl initialises itself on first use (curl_global_init). */
SK_NODISCARD sk_err sk_mtasts_fetch(const sk_mtasts_fetch_opts *o, sk_mtasts_fetch_result *out,
                                    sk_error *err);
void sk_mtasts_fetch_result_clear(sk_mtasts_fetch_result *r);

/* ---- the _smtp._tls TXT record (RFC 8460 3) ---- */

typedef enum sk_tlsrpt_scheme {
    SK_TLSRPT_MAILTO = 0, /* reports by mail */
    SK_TLSRPT_HTTPS,      /* reports POSTed over HTTPS */
    SK_TLSRPT_OTHER,      /* a scheme RFC 8460 does not define: senders will not use it */
} sk_tlsrpt_scheme;

typedef struct sk_tlsrpt_uri {
    char *uri;
    sk_tlsrpt_scheme scheme;
} sk_tlsrpt_uri;

typedef struct sk_tlsrpt_record {
    size_t n_rua;
    sk_tlsrpt_uri rua[SK_TLSRPT_URIS_MAX];
    unsigned extensions; /* other fields (ignored) */
} sk_tlsrpt_record;

/* 1 when a TXT record begins with "v=TLSRPTv1" *WSP ";" (3: others are
 * discarded; more than one that counts means no reporting). */
int sk_tlsrpt_is_record(const char *txt, size_t len);
/* Parse a record by the ABNF of RFC 8460 3, strictly: "v=TLSRPTv1" first,
 * exactly one rua= of URIs separated by "," (with white space around),
 * each an absolute URI (RFC 3986 characters, "," and "!" encoded);
 * mailto: needs an address, https: a host. SK_OK with *out filled
 * (release with sk_tlsrpt_record_clear), SK_ERR_SYNTAX with why, SK_ERR_NOMEM. */
SK_NODISCARD sk_err sk_tlsrpt_record_parse(const char *txt, size_t len, sk_tlsrpt_record *out,
                                           char *why, size_t why_size);
void sk_tlsrpt_record_clear(sk_tlsrpt_record *r);

#ifdef __cplusplus
}
#endif
#endif
