/* DMARC (RFC 7489): policy records, the organizational domain (the Public
 * Suffix List through libpsl), identifier alignment, and the policy result
 * and disposition of a message. The inputs are plain data (the From domain,
 * the SPF result and its domain, the DKIM results and their d= domains), so
 * this module does not depend on how SPF and DKIM were evaluated. DNS goes
 * through the asynchronous resolver (dns.h); a blocking form serves the
 * CLI. docs/authentication.md "DMARC" explains the decisions. */
#ifndef SMTPKIT_DMARC_H
#define SMTPKIT_DMARC_H

#include "dns.h"
#include "util.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- Records (RFC 7489 6.3, RFC 9091 np) ------------------------------ */

typedef enum sk_dmarc_policy {
    SK_DMARC_POLICY_NONE = 0,
    SK_DMARC_POLICY_QUARANTINE,
    SK_DMARC_POLICY_REJECT,
} sk_dmarc_policy;
/* "none", "quarantine", "reject". */
const char *sk_dmarc_policy_name(sk_dmarc_policy p);

typedef enum sk_dmarc_align { SK_DMARC_ALIGN_RELAXED = 0, SK_DMARC_ALIGN_STRICT } sk_dmarc_align;

/* fo= options (RFC 7489 6.3), bits. */
enum { SK_DMARC_FO_0 = 1, SK_DMARC_FO_1 = 2, SK_DMARC_FO_D = 4, SK_DMARC_FO_S = 8 };
/* rf= formats, bits: afrf (RFC 6591) is the one defined. */
enum { SK_DMARC_RF_AFRF = 1 };

/* A reporting URI with its optional size limit ("!10m"). */
typedef struct sk_dmarc_uri {
    char *uri;
    uint64_t max_octets; /* 0: no limit given */
} sk_dmarc_uri;

/* What was wrong in a record that could still be used, bits: for
 * `smtpkit check` and logs. Invalid optional values fall back to their
 * defaults (RFC 7489 6.3: "syntax errors in the remainder of the record
 * SHOULD be discarded in favor of default values"). */
enum {
    SK_DMARC_REC_P_INVALID = 1 << 0,    /* p= missing or invalid: treated as p=none (6.6.3) */
    SK_DMARC_REC_P_NOT_SECOND = 1 << 1, /* p= present but not right after v= (6.4) */
    SK_DMARC_REC_SP_INVALID = 1 << 2,   /* sp= invalid: the record is treated as p=none (6.6.3) */
    SK_DMARC_REC_NP_INVALID = 1 << 3,   /* np= invalid: ignored */
    SK_DMARC_REC_ADKIM_INVALID = 1 << 4,
    SK_DMARC_REC_ASPF_INVALID = 1 << 5,
    SK_DMARC_REC_PCT_INVALID = 1 << 6,
    SK_DMARC_REC_RI_INVALID = 1 << 7,
    SK_DMARC_REC_FO_INVALID = 1 << 8,
    SK_DMARC_REC_RF_INVALID = 1 << 9,
    SK_DMARC_REC_RUA_INVALID = 1 << 10, /* a rua URI was dropped */
    SK_DMARC_REC_RUF_INVALID = 1 << 11, /* a ruf URI was dropped */
    SK_DMARC_REC_UNKNOWN_TAG = 1 << 12, /* ignored (6.3: unknown tags MUST be ignored) */
};

typedef struct sk_dmarc_record {
    sk_dmarc_policy p;
    sk_dmarc_policy sp; /* p when absent */
    sk_dmarc_policy np; /* sp when absent (RFC 9091 4.1) */
    int has_sp, has_np;
    sk_dmarc_align adkim, aspf; /* relaxed when absent */
    unsigned pct;               /* 0..100, 100 when absent */
    unsigned fo;                /* SK_DMARC_FO_*, SK_DMARC_FO_0 when absent */
    unsigned rf;                /* SK_DMARC_RF_*, afrf when absent */
    uint32_t ri;                /* seconds, SK_DMARC_RI_DEFAULT_S when absent */
    sk_dmarc_uri rua[SK_DMARC_URIS_MAX], ruf[SK_DMARC_URIS_MAX];
    size_t n_rua, n_ruf;
    unsigned problems; /* SK_DMARC_REC_* */
} sk_dmarc_record;

/* 1 when txt (one TXT record's strings joined) is a DMARC record at all:
 * it starts with the version tag "v=DMARC1" (white space allowed around
 * '=', "DMARC1" case-sensitive per the ABNF) followed by ';', white space
 * or the end. Other TXT records at _dmarc are discarded (6.6.3 step 3). */
int sk_dmarc_is_record(const char *txt, size_t len);

/* Parse a DMARC record strictly (RFC 7489 6.3 and 6.4, and the DKIM
 * tag-list syntax it uses): tags and keywords are case-insensitive, a tag
 * given twice or a malformed tag makes the record unusable, unknown tags
 * are ignored. p= must come right after v=; without a valid p= (or with an
 * invalid sp=) the record counts as p=none when rua= has at least one valid
 * URI, and is unusable otherwise (6.6.3). SK_OK with *out filled (release
 * with sk_dmarc_record_clear); SK_ERR_SYNTAX with why (may be NULL; static
 * text) when the record is unusable; SK_ERR_TOO_LONG past
 * SK_DMARC_RECORD_MAX_OCTETS; SK_ERR_NOMEM. */
SK_NODISCARD sk_err sk_dmarc_record_parse(const char *txt, size_t len, sk_dmarc_record *out,
                                          const char **why);
void sk_dmarc_record_clear(sk_dmarc_record *r);

/* ---- Domains ---------------------------------------------------------- */

/* A domain as DMARC compares it: U-labels converted to A-labels (IDNA 2008
 * through libidn2), lower case, no final dot. SK_ERR_SYNTAX for a name that
 * is not a valid domain (empty label, address literal, over 253 octets, a
 * label over 63); out has SK_SMTP_DOMAIN_MAX_OCTETS + 1 octets. */
SK_NODISCARD sk_err sk_dmarc_domain_normalize(const char *domain,
                                              char out[SK_SMTP_DOMAIN_MAX_OCTETS + 1]);

/* The organizational domain (RFC 7489 3.2) of a normalized domain: the
 * public suffix plus one label, from the Public Suffix List (its ICANN and
 * private sections, wildcards and exceptions, as libpsl reads them). A
 * domain that is itself a public suffix is its own organizational domain.
 * The list is the system's (Debian's publicsuffix package, loaded once per
 * process), or libpsl's built-in copy when that file is missing. */
SK_NODISCARD sk_err sk_dmarc_org_domain(const char *domain,
                                        char out[SK_SMTP_DOMAIN_MAX_OCTETS + 1]);
/* Where the list came from: the file's path, or "libpsl built-in list"
 * (static storage); NULL when libpsl could not load any list. */
const char *sk_dmarc_psl_source(void);

/* 1 when the authenticated domain aligns with the From domain (both
 * normalized): strict needs the same name, relaxed the same organizational
 * domain (RFC 7489 3.1). */
int sk_dmarc_aligned(const char *from_domain, const char *auth_domain, sk_dmarc_align mode);

/* The RFC5322.From domain of a header block (RFC 7489 6.6.1): exactly one
 * From field whose mailboxes (usually one) all have the same domain.
 * SK_OK with the normalized domain in out; SK_ERR_NOT_FOUND without a From
 * field; SK_ERR_SYNTAX for several From fields, an address that does not
 * parse or has no domain name (an address literal), or mailboxes of
 * different domains; why (may be NULL) gets static text. The checker
 * reports these as permerror (docs/authentication.md says why). */
SK_NODISCARD sk_err sk_dmarc_from_domain(const char *headers, size_t len,
                                         char out[SK_SMTP_DOMAIN_MAX_OCTETS + 1], const char **why);

/* ---- Evaluation -------------------------------------------------------- */

/* What SPF or one DKIM signature concluded, as DMARC weighs it: only pass
 * counts, temperror can turn a failure into temperror (see below). */
typedef enum sk_dmarc_auth {
    SK_DMARC_AUTH_NONE = 0,  /* not evaluated, no signature, SPF none */
    SK_DMARC_AUTH_PASS,      /* SPF pass, DKIM pass */
    SK_DMARC_AUTH_FAIL,      /* any other final result (fail, softfail, neutral, permerror) */
    SK_DMARC_AUTH_TEMPERROR, /* a DNS failure kept it from a final result */
} sk_dmarc_auth;

typedef struct sk_dmarc_auth_id {
    sk_dmarc_auth result;
    const char
        *domain; /* SPF: the MAIL FROM domain (HELO's when MAIL FROM was <>, 4.1); DKIM: d= */
} sk_dmarc_auth_id;

typedef struct sk_dmarc_input {
    /* The From domain; NULL to take it from headers. */
    const char *from_domain;
    const char *headers; /* the message's header block, when from_domain is NULL */
    size_t headers_len;
    sk_dmarc_auth_id spf;
    const sk_dmarc_auth_id *dkim; /* one per signature; at most SK_DMARC_DKIM_MAX are weighed */
    size_t n_dkim;
} sk_dmarc_input;

typedef enum sk_dmarc_status {
    SK_DMARC_NONE = 0,  /* no usable policy: no record, several records */
    SK_DMARC_PASS,      /* an aligned identifier passed */
    SK_DMARC_FAIL,      /* a policy exists and no aligned identifier passed */
    SK_DMARC_TEMPERROR, /* a DNS failure; try again later, never a permanent refusal */
    SK_DMARC_PERMERROR, /* an unusable record, or a From field DMARC cannot evaluate */
    SK_DMARC__COUNT
} sk_dmarc_status;
/* The RFC 8601 result keyword: "none", "pass", "fail", "temperror", "permerror". */
const char *sk_dmarc_status_name(sk_dmarc_status s);

typedef struct sk_dmarc_result {
    sk_dmarc_status status;
    /* The policy requested for this message (p, sp or np as applies), and
     * what to do: the policy when the message failed and was sampled, the
     * next lower policy when pct= left it out (RFC 7489 6.6.4), none
     * otherwise (pass, none, errors). */
    sk_dmarc_policy policy;
    sk_dmarc_policy disposition;
    const char *policy_tag; /* "p", "sp", "np"; "" without a record */
    int sampled_out;        /* 1: pct= left this failing message out */
    int spf_aligned;        /* 1: SPF passed with an aligned domain */
    int dkim_aligned;       /* 1: a DKIM signature passed with an aligned d= */
    char from_domain[SK_SMTP_DOMAIN_MAX_OCTETS + 1];
    char org_domain[SK_SMTP_DOMAIN_MAX_OCTETS + 1];
    char record_domain[SK_SMTP_DOMAIN_MAX_OCTETS + 1]; /* where the record was found */
    char dkim_domain[SK_SMTP_DOMAIN_MAX_OCTETS + 1];   /* the aligned d= that passed */
    int has_record;
    sk_dmarc_record record; /* when has_record; owned, sk_dmarc_result_clear */
    char reason[SK_DMARC_REASON_OCTETS];
} sk_dmarc_result;
void sk_dmarc_result_clear(sk_dmarc_result *r);

/* pct= sampling: a number in [0, n) (sk_rand_fn of dns.h); NULL is the
 * OS's random numbers. Tests inject their own. */
typedef struct sk_dmarc_opts {
    sk_rand_fn rnd;
    void *rnd_ctx;
    const sk_logger *log; /* may be NULL */
} sk_dmarc_opts;

/* Called once per check with the result (valid during the call; copy what
 * is kept, or take the record with a memcpy and zero it in the result). */
typedef void (*sk_dmarc_cb)(void *ctx, const sk_dmarc_result *res);

/* Checks run on a resolver's loop. Free the checker after the resolver
 * (sk_resolver_free calls no more callbacks; the checker then releases
 * what was in flight), or when no check is in flight. */
typedef struct sk_dmarc_checker sk_dmarc_checker;
typedef struct sk_dmarc_job sk_dmarc_job;
sk_dmarc_checker *sk_dmarc_checker_new(sk_resolver *r, const sk_dmarc_opts *o);
void sk_dmarc_checker_free(sk_dmarc_checker *c);
/* Start a check; in is copied. The lookups: TXT _dmarc.FROM, then TXT
 * _dmarc.ORG when FROM has no record (6.6.3), and, only when the message
 * failed under a record with np= found at ORG, A, AAAA and MX of FROM to
 * see whether it exists (RFC 9091 2.1). cb may run before this returns
 * when no lookup is needed (a From field that cannot be evaluated). *job
 * (job may be NULL) lets the caller cancel: sk_dmarc_cancel, after which cb
 * is not called. SK_ERR_NOMEM, or SK_ERR_INVAL without a From. */
SK_NODISCARD sk_err sk_dmarc_check(sk_dmarc_checker *c, const sk_dmarc_input *in, sk_dmarc_cb cb,
                                   void *ctx, sk_dmarc_job **job);
void sk_dmarc_cancel(sk_dmarc_job *job);

/* Blocking form for programs without a loop (the CLI): runs the same
 * check with sk_dns_lookup_sync. SK_OK with *out filled (release with
 * sk_dmarc_result_clear); a DNS failure is a temperror result, not an
 * error; err describes SK_ERR_CONFIG (bad resolver settings) and the like. */
SK_NODISCARD sk_err sk_dmarc_check_sync(const sk_resolver_opts *ro, const sk_dmarc_opts *o,
                                        const sk_dmarc_input *in, sk_dmarc_result *out,
                                        sk_error *err);

#ifdef __cplusplus
}
#endif
#endif
