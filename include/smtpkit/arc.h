/* ARC (RFC 8617): verifying the Authenticated Received Chain of a message
 * as it streams in, and sealing a message we forward (a new ARC set:
 * ARC-Authentication-Results, ARC-Message-Signature, ARC-Seal). */
#ifndef SMTPKIT_ARC_H
#define SMTPKIT_ARC_H

#include "authres.h"
#include "dkim.h"
#include "dns.h"
#include "util.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The chain validation status (RFC 8617 4.4): what verification gives,
 * what an ARC-Seal's cv= says, and the arc= result of
 * Authentication-Results. */
typedef enum sk_arc_status {
    SK_ARC_NONE = 0, /* no ARC set on the message */
    SK_ARC_PASS,     /* the chain verified */
    SK_ARC_FAIL,     /* it did not (reason says where and why) */
    SK_ARC_STATUS__COUNT
} sk_arc_status;
/* "none", "pass", "fail". */
const char *sk_arc_status_name(sk_arc_status s);

/* One instance of the chain, as far as verification got. */
typedef struct sk_arc_set_info {
    unsigned instance;
    sk_arc_status cv;                                 /* the seal's cv= */
    char ams_domain[SK_SMTP_DOMAIN_MAX_OCTETS + 1];   /* AMS d= */
    char ams_selector[SK_SMTP_DOMAIN_MAX_OCTETS + 1]; /* AMS s= */
    char as_domain[SK_SMTP_DOMAIN_MAX_OCTETS + 1];    /* AS d= */
    char as_selector[SK_SMTP_DOMAIN_MAX_OCTETS + 1];  /* AS s= */
    /* The signatures' results as DKIM names them (pass, fail, permerror,
     * temperror...); SK_DKIM_NONE when not checked. */
    sk_dkim_status ams, as;
    char ams_reason[SK_DKIM_REASON_OCTETS], as_reason[SK_DKIM_REASON_OCTETS];
} sk_arc_set_info;

/* The chain's result, with what Authentication-Results reports
 * (RFC 8617 10.1: arc=, header.oldest-pass, smtp.remote-ip). */
typedef struct sk_arc_result {
    sk_arc_status status;
    char reason[SK_ARC_REASON_OCTETS]; /* one line for people */
    unsigned instances;                /* N, the most recent instance; 0: none */
    /* header.oldest-pass (RFC 8617 5.2 step 5): on pass, the oldest
     * instance from which every ARC-Message-Signature still verifies; 0
     * when all do. */
    unsigned oldest_pass;
    /* A fail that came from a key lookup failing for now (DNS): the same
     * message may pass later. RFC 8617 has no temperror; a server may
     * still answer 4xx when it enforces something that needs arc=pass. */
    int temporary;
    /* The instance the failure was found at; 0 when the chain's shape
     * (instances, duplicates, cv=) is what failed, or on none and pass. */
    unsigned failed_instance;
} sk_arc_result;

typedef struct sk_arc_verify_opts {
    int64_t now; /* Unix seconds for t= and x=; 0 = the clock */
} sk_arc_verify_opts;

/* A verifier reads one message (feed: header and body, CRLF line ends, no
 * dot-stuffing, chunks of any size; what sk_server's on_data_chunk gets),
 * then needs the keys of the signatures it must check: through a resolver
 * (sk_arc_verifier_resolve on the resolver's loop, or _resolve_sync), or
 * answered by the caller (next_query / answer). Then the result.
 * The body is hashed as it streams (one hash per body canonicalization
 * the ARC-Message-Signatures use); only the header block is kept, up to
 * SK_DKIM_HEADER_BLOCK_MAX_OCTETS. */
typedef struct sk_arc_verifier sk_arc_verifier;
sk_arc_verifier *sk_arc_verifier_new(const sk_arc_verify_opts *opts, sk_error *err);
/* SK_ERR_TOO_LONG when the header block grows past its limit. */
SK_NODISCARD sk_err sk_arc_verifier_feed(sk_arc_verifier *v, const void *bytes, size_t len);
/* The message is complete. The chain's shape is checked now: a result
 * that needs no key (none, or a fail of shape) is final at once. */
SK_NODISCARD sk_err sk_arc_verifier_finish(sk_arc_verifier *v, sk_error *err);
/* A key query still unanswered (selector._domainkey.domain, lower case),
 * NULL when none is left. */
const char *sk_arc_verifier_next_query(const sk_arc_verifier *v);
/* The answer to the TXT query for name (as sk_dns_result gives it).
 * SK_ERR_NOT_FOUND when no signature waits for that name. */
SK_NODISCARD sk_err sk_arc_verifier_answer(sk_arc_verifier *v, const char *name,
                                           sk_dns_status status, const char *const *records,
                                           size_t n);
/* Look every key up through r; done is called once, from r's loop, when
 * the result is known (before this returns when no lookup is needed).
 * The verifier may be freed with lookups in flight: their answers are
 * then dropped. */
typedef void (*sk_arc_done_fn)(void *ctx, sk_arc_verifier *v);
SK_NODISCARD sk_err sk_arc_verifier_resolve(sk_arc_verifier *v, sk_resolver *r, sk_arc_done_fn done,
                                            void *ctx);
/* Blocking: a private loop and resolver (o: as sk_dns_lookup_sync; NULL =
 * the system's), for the CLI and programs without a loop. */
SK_NODISCARD sk_err sk_arc_verifier_resolve_sync(sk_arc_verifier *v, const sk_resolver_opts *o,
                                                 sk_error *err);
/* The result: final once next_query is NULL after finish. Before that it
 * says fail with the reason "not finished". */
const sk_arc_result *sk_arc_verifier_result(const sk_arc_verifier *v);
/* The sets found, instance 1..sk_arc_verifier_sets(v); NULL outside. A
 * chain refused for its shape may have instances with nothing found. */
unsigned sk_arc_verifier_sets(const sk_arc_verifier *v);
const sk_arc_set_info *sk_arc_verifier_set(const sk_arc_verifier *v, unsigned instance);
void sk_arc_verifier_free(sk_arc_verifier *v);

/* The arc= entry of Authentication-Results for a result (RFC 8617 10.1):
 * "arc=pass header.oldest-pass=0 smtp.remote-ip=IP" (oldest-pass on pass
 * only, remote-ip when given) with the reason as reason=. Everything it
 * points to lives in out. */
typedef struct sk_arc_authres {
    sk_authres_result result;
    sk_authres_prop props[2];
    char oldest_pass[16];
    char remote_ip[64];
    char reason[SK_ARC_REASON_OCTETS];
} sk_arc_authres;
void sk_arc_authres_result(const sk_arc_result *r, const char *remote_ip, sk_arc_authres *out);

/* ---- sealing ---- */

/* One ARC set to add to a message we forward (RFC 8617 5.1). domain,
 * selector, key, authserv_id, the results and cv are required. */
typedef struct sk_arc_seal_opts {
    const char *domain;   /* d= of the AMS and the AS */
    const char *selector; /* s= */
    sk_dkim_key *key;     /* rsa-sha256 or ed25519-sha256 by its type; a reference is taken */
    /* The ARC-Authentication-Results of this hop: our authserv-id and
     * our results for the message as it came to us, either as data
     * (results[0..n_results), written by sk_authres_build_arc) or as the
     * text of resinfo ("dkim=pass header.d=example.org; spf=pass ...",
     * checked for control characters and folded), used when results is
     * NULL. The results and the strings they point to are the caller's
     * and must stay valid until sk_arc_sealer_finish. */
    const char *authserv_id;
    const sk_authres_result *results;
    size_t n_results;
    const char *results_text;
    /* The chain's status as we verified it (sk_arc_verifier_result):
     * none when there is no chain, pass when it verified, fail when it did
     * not. With fail the seal covers only the new set (RFC 8617 5.1.2),
     * and nobody seals after it. */
    sk_arc_status cv;
    /* Header fields the AMS signs when present, NULL-terminated; NULL:
     * sk_dkim_default_headers plus DKIM-Signature (RFC 8617 4.1.2
     * recommends signing it). ARC-Seal and Authentication-Results may not
     * be listed (RFC 8617 4.1.2: a verifier refuses an AMS signing
     * ARC-Seal; Authentication-Results are removed by later hops). */
    const char *const *headers;
    sk_dkim_canon header_canon, body_canon; /* AMS c=; default relaxed/relaxed */
    /* t= of both (Unix seconds): 0 = now; -1 = no t= tag. */
    int64_t timestamp;
} sk_arc_seal_opts;

/* A sealer reads the message like a verifier (feed, finish) and makes the
 * new set from the chain already on it and opts. */
typedef struct sk_arc_sealer sk_arc_sealer;
/* NULL with err set (SK_ERR_INVAL naming the option) when opts are
 * unusable. */
sk_arc_sealer *sk_arc_sealer_new(const sk_arc_seal_opts *opts, sk_error *err);
/* SK_ERR_TOO_LONG when the header block grows past its limit. */
SK_NODISCARD sk_err sk_arc_sealer_feed(sk_arc_sealer *s, const void *bytes, size_t len);
/* A server that checks the message as it receives it knows its results
 * and the chain's status only at the end: these replace opts' results
 * (as results_text, copied) and cv. Before finish. */
SK_NODISCARD sk_err sk_arc_sealer_set_results(sk_arc_sealer *s, const char *results_text,
                                              sk_arc_status cv, sk_error *err);
/* Append "ARC-Seal: ...", "ARC-Message-Signature: ..." and
 * "ARC-Authentication-Results: ..." (each folded, ending in CRLF; in that
 * order: prepend them to the message as they are). Refused (SK_ERR_STATE,
 * err says why) when the chain on the message ends with cv=fail (RFC 8617
 * 5.1 step 1), already has SK_ARC_INSTANCE_MAX sets, or does not fit cv
 * (none with a chain, pass or fail without one, pass on a chain whose
 * sets are not each there once); SK_ERR_SYNTAX when the message has no
 * From field or its first line continues a field (starts with white
 * space), which the new fields would take in. */
SK_NODISCARD sk_err sk_arc_sealer_finish(sk_arc_sealer *s, sk_buf *out, sk_error *err);
/* The instance the new set has (after finish). */
unsigned sk_arc_sealer_instance(const sk_arc_sealer *s);
void sk_arc_sealer_free(sk_arc_sealer *s);

/* One call for a whole message in memory. */
SK_NODISCARD sk_err sk_arc_seal(const sk_arc_seal_opts *opts, const void *msg, size_t len,
                                sk_buf *out, sk_error *err);

#ifdef __cplusplus
}
#endif
#endif
