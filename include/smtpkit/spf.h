/* SPF (RFC 7208): records, macros and check_host() for the HELO and MAIL
 * FROM identities, evaluated on a libevent loop through sk_resolver (or
 * blocking, for programs without a loop). */
#ifndef SMTPKIT_SPF_H
#define SMTPKIT_SPF_H

#include "dns.h"
#include "util.h"

#ifdef __cplusplus
extern "C" {
#endif

/* RFC 7208 2.6; the names are those of RFC 8601 2.7.2 ("none", "pass", ...). */
typedef enum sk_spf_result {
    SK_SPF_NONE = 0,
    SK_SPF_NEUTRAL,
    SK_SPF_PASS,
    SK_SPF_FAIL,
    SK_SPF_SOFTFAIL,
    SK_SPF_TEMPERROR,
    SK_SPF_PERMERROR,
    SK_SPF__COUNT
} sk_spf_result;
const char *sk_spf_result_name(sk_spf_result r);

/* ---- records (RFC 7208 4.5, 4.6, 5, 6) ---- */

typedef enum sk_spf_mech {
    SK_SPF_ALL = 0,
    SK_SPF_INCLUDE,
    SK_SPF_A,
    SK_SPF_MX,
    SK_SPF_PTR,
    SK_SPF_IP4,
    SK_SPF_IP6,
    SK_SPF_EXISTS,
    SK_SPF_MECH__COUNT
} sk_spf_mech;
const char *sk_spf_mech_name(sk_spf_mech m);

typedef struct sk_spf_term {
    sk_spf_result qualifier; /* PASS "+", FAIL "-", SOFTFAIL "~", NEUTRAL "?" */
    sk_spf_mech mech;
    char *domain_spec; /* include, exists; a, mx, ptr when given; else NULL */
    int cidr4, cidr6;  /* a, mx: prefix lengths (32 and 128 when absent); ip4: cidr4; ip6: cidr6 */
    unsigned char addr[16]; /* ip4: the first 4 octets; ip6: all 16 */
    char *text;             /* the term as written */
} sk_spf_term;

typedef struct sk_spf_record {
    size_t nterms;
    sk_spf_term *terms; /* the mechanisms, in order */
    char *redirect;     /* redirect= domain-spec, or NULL */
    char *exp;          /* exp= domain-spec, or NULL */
    /* Terms that cause DNS lookups (include, a, mx, ptr, exists, and
     * redirect when it would be used): what this record alone adds to the
     * limit of 10 (RFC 7208 4.6.4), not counting its includes. */
    unsigned lookup_terms;
    int has_all; /* an "all" mechanism: redirect is then ignored (6.1) */
} sk_spf_record;

/* 1 when a TXT record is an SPF record: "v=spf1" (any case) followed by a
 * space or the end (RFC 7208 4.5). */
int sk_spf_is_record(const char *txt, size_t len);
/* Parse a whole record, "v=spf1 ...", checking every term (4.6: syntax
 * errors anywhere are found, even after a mechanism that would match).
 * SK_ERR_SYNTAX with why (one line naming the term) when it is not
 * well formed; SK_ERR_NOMEM. *out is released with sk_spf_record_free. */
SK_NODISCARD sk_err sk_spf_record_parse(const char *txt, size_t len, sk_spf_record **out, char *why,
                                        size_t why_size);
void sk_spf_record_free(sk_spf_record *rec);

/* ---- macros (RFC 7208 7) ---- */

typedef struct sk_spf_macro_vars {
    const char *sender;        /* s: <sender>, "local@domain" */
    const char *local;         /* l: its local part */
    const char *sender_domain; /* o: its domain */
    const char *domain;        /* d: <domain> of the check */
    const char *ip;            /* i, c, v: the client's address as text (IPv4-mapped is IPv4) */
    const char *ptr_name;      /* p: the validated name (5.5); NULL = "unknown" */
    const char *helo;          /* h: the HELO/EHLO name */
    const char *receiver;      /* r (explanations only): the checking host; NULL = "unknown" */
    int64_t now_s;             /* t (explanations only): seconds since the epoch */
} sk_spf_macro_vars;

typedef enum sk_spf_macro_mode {
    SK_SPF_MACRO_DOMAIN = 0, /* a domain-spec or modifier value: letters s l o d i p h v */
    SK_SPF_MACRO_EXPLAIN,    /* an explanation string (6.2): also c r t, and spaces */
} sk_spf_macro_mode;

/* Expand len octets of spec and append to out: %{...} with transformers
 * (digits, r) and delimiters, %% %_ %-; uppercase letters URL-escaped
 * (7.3). SK_ERR_SYNTAX for anything the grammar of 7.1 refuses (a letter
 * not allowed in mode, a lone %, a character outside printable ASCII);
 * SK_ERR_TOO_LONG when out would pass its maximum. With v NULL, only
 * checks the syntax. */
SK_NODISCARD sk_err sk_spf_macro_expand(const char *spec, size_t len, sk_spf_macro_mode mode,
                                        const sk_spf_macro_vars *v, sk_buf *out);
/* 1 when spec uses %{p} (its expansion then needs PTR lookups). */
int sk_spf_macro_uses_p(const char *spec, size_t len);

/* ---- check_host() (RFC 7208 4) ---- */

typedef enum sk_spf_identity {
    SK_SPF_MAILFROM = 0, /* 2.4: the MAIL FROM domain (postmaster@HELO for the null sender) */
    SK_SPF_HELO,         /* 2.3: the HELO/EHLO name */
} sk_spf_identity;

typedef struct sk_spf_request {
    sk_spf_identity identity;
    const char *ip;        /* the client: "192.0.2.1", "2001:db8::1", "::ffff:192.0.2.1" */
    const char *mail_from; /* the reverse-path without <>; NULL or "" is the null sender */
    const char *helo; /* the HELO/EHLO argument (%{h}); required for HELO and the null sender */
} sk_spf_request;

typedef struct sk_spf_opts {
    const char *receiver; /* %{r}: this host's name; NULL = "unknown" */
    int timeout_ms;       /* the whole evaluation (4.6.4); 0 = SK_SPF_TIMEOUT_MS_DEFAULT */
    int64_t now_s;        /* %{t}; 0 = the current time */
    const sk_logger *log; /* may be NULL; copied */
} sk_spf_opts;

typedef struct sk_spf_outcome {
    sk_spf_result result;
    sk_spf_identity identity;
    char *domain; /* the domain checked */
    char *sender; /* <sender> as evaluated: "local@domain", "postmaster@..." */
    /* One line for people: what decided ("-all matched in example.org",
     * "no SPF record at example.org", "more than 10 DNS lookups", "DNS
     * lookup of TXT for example.org failed: timeout or server failure"). */
    char *reason;
    /* fail only: the domain's exp= text, macro-expanded (6.2); NULL when
     * there is none (callers then give their own default). */
    char *explanation;
    char *mechanism;        /* the term that matched ("-all"), NULL when none did */
    char *mechanism_domain; /* the domain whose record holds it */
    unsigned lookups;       /* DNS-querying terms evaluated (at most 10 pass) */
    unsigned void_lookups;  /* of them, answered NXDOMAIN or with no record (at most 2 pass) */
    /* Authentication-Results (RFC 8601 2.7.2): "smtp.mailfrom" with the
     * sender, or "smtp.helo" with the HELO name. */
    const char *property;
    char *property_value;
    /* What the evaluation did, one line per step ("example.org: ip4:192.0.2.0/24
     * -> no match"), at most SK_SPF_TRACE_LINES_MAX lines (the last then
     * says the trace was cut). */
    size_t ntrace;
    char **trace;
} sk_spf_outcome;
void sk_spf_outcome_free(sk_spf_outcome *o);

/* An evaluation in flight. */
typedef struct sk_spf_check sk_spf_check;
/* Called once, from the loop (never inside sk_spf_check_start); the
 * outcome is the callback's to release with sk_spf_outcome_free. */
typedef void (*sk_spf_cb)(void *ctx, sk_spf_outcome *outcome);
/* Start check_host() for req on r's loop. *handle (may be NULL) is valid
 * until the callback has run or sk_spf_check_cancel. SK_ERR_INVAL for a
 * missing ip or helo, or an ip that is not an address. Cancel every check
 * before freeing its resolver. */
SK_NODISCARD sk_err sk_spf_check_start(sk_resolver *r, const sk_spf_request *req,
                                       const sk_spf_opts *o, sk_spf_cb cb, void *ctx,
                                       sk_spf_check **handle);
/* Stop an evaluation; its callback is never called. Accepts NULL. */
void sk_spf_check_cancel(sk_spf_check *c);

/* Blocking convenience for programs without an event loop (the CLI): a
 * private loop and resolver (ro: NULL = the system's) until the outcome is
 * in. *out is released with sk_spf_outcome_free. */
SK_NODISCARD sk_err sk_spf_check_sync(const sk_resolver_opts *ro, const sk_spf_request *req,
                                      const sk_spf_opts *o, sk_spf_outcome **out, sk_error *err);

#ifdef __cplusplus
}
#endif
#endif
