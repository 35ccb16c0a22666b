/* DKIM (RFC 6376, RFC 8301, RFC 8463): signing and verification of
 * messages as they stream in, keys, and key records. */
#ifndef SMTPKIT_DKIM_H
#define SMTPKIT_DKIM_H

#include "dns.h"
#include "util.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Canonicalization (RFC 6376 3.4). Relaxed is 0: the default. */
typedef enum sk_dkim_canon {
    SK_DKIM_CANON_RELAXED = 0,
    SK_DKIM_CANON_SIMPLE,
    SK_DKIM_CANON__COUNT
} sk_dkim_canon;
/* "relaxed" or "simple". */
const char *sk_dkim_canon_name(sk_dkim_canon c);

/* Signing algorithms (RFC 6376 3.3, RFC 8463). rsa-sha1 is only ever
 * recognised in order to refuse it (RFC 8301 3.1). */
typedef enum sk_dkim_algo {
    SK_DKIM_RSA_SHA256 = 0,
    SK_DKIM_ED25519_SHA256,
    SK_DKIM_RSA_SHA1,
    SK_DKIM_ALGO__COUNT
} sk_dkim_algo;
/* "rsa-sha256", "ed25519-sha256", "rsa-sha1". */
const char *sk_dkim_algo_name(sk_dkim_algo a);

typedef enum sk_dkim_key_type { SK_DKIM_KEY_RSA = 0, SK_DKIM_KEY_ED25519 } sk_dkim_key_type;
/* "rsa" or "ed25519" (the k= value of a key record). */
const char *sk_dkim_key_type_name(sk_dkim_key_type t);
/* "rsa" / "ed25519" to the type; SK_ERR_SYNTAX for anything else. */
SK_NODISCARD sk_err sk_dkim_key_type_parse(const char *name, sk_dkim_key_type *out);

/* A d= domain or s= selector as this module takes them: dot-separated
 * labels of letters, digits, '-' and '_' (A-labels), at most 253 octets.
 * 1 when valid. */
int sk_dkim_name_valid(const char *name);

/* ---- private keys ---- */

/* A signing key: RSA (SK_DKIM_RSA_BITS_MIN bits or more) or Ed25519.
 * Reference-counted: a signer holds its own reference, so a daemon may
 * replace its keys (SIGHUP) while messages are being signed. */
typedef struct sk_dkim_key sk_dkim_key;

/* Load a PEM private key (PKCS#8 "PRIVATE KEY", or traditional "RSA
 * PRIVATE KEY"; unencrypted). Errors name the file: SK_ERR_NOT_FOUND /
 * SK_ERR_IO when it cannot be read, SK_ERR_SYNTAX when it holds no usable
 * key (not PEM, encrypted, another key type, RSA under 1024 bits). */
SK_NODISCARD sk_err sk_dkim_key_load(const char *path, sk_dkim_key **out, sk_error *err);
/* The same from PEM text in memory; name is used in error messages. */
SK_NODISCARD sk_err sk_dkim_key_from_pem(const char *pem, size_t len, const char *name,
                                         sk_dkim_key **out, sk_error *err);
/* A new key: RSA of bits (SK_DKIM_RSA_BITS_MIN..SK_DKIM_RSA_BITS_MAX;
 * 0 = SK_DKIM_RSA_BITS_DEFAULT) or Ed25519 (bits ignored). */
SK_NODISCARD sk_err sk_dkim_key_generate(sk_dkim_key_type type, unsigned bits, sk_dkim_key **out,
                                         sk_error *err);
/* Append the private key as PKCS#8 PEM. Secret: never log it. */
SK_NODISCARD sk_err sk_dkim_key_pem(const sk_dkim_key *k, sk_buf *out);
/* Append the key record to publish (RFC 6376 3.6.1, RFC 8463 4):
 * "v=DKIM1; k=rsa; p=BASE64" (p= is the SubjectPublicKeyInfo for RSA and
 * the raw 32-octet key for Ed25519). */
SK_NODISCARD sk_err sk_dkim_key_record(const sk_dkim_key *k, sk_buf *out);
sk_dkim_key_type sk_dkim_key_type_of(const sk_dkim_key *k);
unsigned sk_dkim_key_bits(const sk_dkim_key *k);
/* Take one more reference; sk_dkim_key_free drops one (NULL accepted). */
sk_dkim_key *sk_dkim_key_ref(sk_dkim_key *k);
void sk_dkim_key_free(sk_dkim_key *k);

/* Split a TXT record value into DNS character-strings of at most
 * SK_DKIM_TXT_STRING_MAX_OCTETS octets (RFC 1035 3.3.14), written as
 * quoted strings separated by spaces: "\"v=DKIM1; ...\" \"...\"". */
SK_NODISCARD sk_err sk_dkim_txt_strings(const char *value, sk_buf *out);

/* ---- published key records ---- */

/* What a key record (the TXT record at SELECTOR._domainkey.DOMAIN) holds,
 * as the verifier reads it (RFC 6376 3.6.1, RFC 8463 4): for checking
 * what a domain publishes (`smtpkit check --selector`). */
typedef struct sk_dkim_key_info {
    sk_dkim_key_type type; /* k= (rsa when absent) */
    unsigned bits;         /* the RSA modulus, 256 for Ed25519; 0 when revoked */
    int revoked;           /* p= is empty: signatures with this key fail */
    int testing;           /* t=y: the domain is testing DKIM */
    int strict;            /* t=s: i= must be exactly d= */
    int sha256_ok;         /* h= absent or listing sha256 (what rsa-sha256 needs) */
} sk_dkim_key_info;

/* Read one key record with the verifier's own parser, strictly. SK_OK with
 * *out filled (a record can parse and still be unusable: see revoked,
 * sha256_ok, and RSA bits under SK_DKIM_RSA_BITS_MIN or over
 * SK_DKIM_RSA_BITS_MAX, which verification refuses); SK_ERR_SYNTAX with
 * why (may be NULL) when a verifier would find a key syntax error;
 * SK_ERR_NOMEM. */
SK_NODISCARD sk_err sk_dkim_key_record_inspect(const char *txt, size_t len, sk_dkim_key_info *out,
                                               char *why, size_t why_size);

/* ---- signing ---- */

/* One signature to make. domain, selector and key are required; the rest
 * has defaults. */
typedef struct sk_dkim_sign_opts {
    const char *domain;                     /* d= */
    const char *selector;                   /* s= */
    sk_dkim_key *key;                       /* its type gives a=; the signer takes a reference */
    const char *identity;                   /* i= (AUID), NULL: none (the verifier then uses "@d");
                                             * its domain must be d= or a subdomain */
    sk_dkim_canon header_canon, body_canon; /* default relaxed/relaxed */
    /* Header fields to sign when present, NULL-terminated; NULL: the
     * default list (sk_dkim_default_headers). Each is signed as many
     * times as it occurs; From must be in the list. */
    const char *const *headers;
    /* Fields listed once more than they occur, so that adding one breaks
     * the signature (RFC 6376 8.15); NULL: "From" only. An empty list
     * (first entry NULL) over-signs nothing. */
    const char *const *oversign;
    /* t= (signing time, Unix seconds): 0 = now; -1 = no t= tag. */
    int64_t timestamp;
    /* x= = signing time + this many seconds; 0 = no x= tag. */
    uint64_t expire_s;
} sk_dkim_sign_opts;

/* The default header list: NULL-terminated. */
const char *const *sk_dkim_default_headers(void);

/* A signer makes one or more signatures over one message in one pass:
 * feed it the message as it arrives (header and body, CRLF line ends, no
 * dot-stuffing: what sk_server's on_data_chunk gets), in chunks of any
 * size, then finish. The body is canonicalized and hashed as it streams
 * (one hash per body canonicalization used); only the header block is
 * kept, up to SK_DKIM_HEADER_BLOCK_MAX_OCTETS. No l= tag is ever made. */
typedef struct sk_dkim_signer sk_dkim_signer;
/* opts[0..n-1], n <= SK_DKIM_SIGN_MAX. NULL with err set (SK_ERR_INVAL
 * naming what is wrong in which signature) when an option is unusable. */
sk_dkim_signer *sk_dkim_signer_new(const sk_dkim_sign_opts *opts, size_t n, sk_error *err);
/* SK_ERR_TOO_LONG when the header block grows past its limit (the
 * signer is then unusable). */
SK_NODISCARD sk_err sk_dkim_signer_feed(sk_dkim_signer *s, const void *bytes, size_t len);
/* Append the DKIM-Signature header fields to out, in the order of opts,
 * each folded (SK_MIME_LINE_SOFT_OCTETS) and ending in CRLF: prepend them
 * to the message. SK_ERR_SYNTAX when the message has no From field
 * (RFC 6376 5.4: From must be signed). */
SK_NODISCARD sk_err sk_dkim_signer_finish(sk_dkim_signer *s, sk_buf *out, sk_error *err);
void sk_dkim_signer_free(sk_dkim_signer *s);

/* One call for a whole message in memory. */
SK_NODISCARD sk_err sk_dkim_sign(const sk_dkim_sign_opts *opts, size_t n, const void *msg,
                                 size_t len, sk_buf *out, sk_error *err);

/* ---- verification ---- */

/* Results, named as in Authentication-Results (RFC 8601 2.7.1). What
 * leads to which is in docs/authentication.md ("DKIM"). */
typedef enum sk_dkim_status {
    SK_DKIM_NONE = 0,  /* no signature */
    SK_DKIM_PASS,      /* verified */
    SK_DKIM_FAIL,      /* did not verify, or may not be accepted (RFC 8301) */
    SK_DKIM_NEUTRAL,   /* the DKIM-Signature field cannot be used (syntax) */
    SK_DKIM_POLICY,    /* verified, but refused by our rules (l= shorter than the body,
                        * time stamp in the future) */
    SK_DKIM_TEMPERROR, /* the key could not be fetched now (DNS) */
    SK_DKIM_PERMERROR, /* no usable key: none published, malformed, revoked, unsuitable */
    SK_DKIM_STATUS__COUNT
} sk_dkim_status;
const char *sk_dkim_status_name(sk_dkim_status s);

/* One signature's result, with the properties Authentication-Results
 * reports (RFC 8601 2.7.1, RFC 6008). Strings are "" when the signature
 * did not get as far as saying them. */
typedef struct sk_dkim_result {
    sk_dkim_status status;
    char reason[SK_DKIM_REASON_OCTETS];             /* one line for people */
    char domain[SK_SMTP_DOMAIN_MAX_OCTETS + 1];     /* header.d */
    char identity[SK_DKIM_IDENTITY_MAX_OCTETS + 1]; /* header.i: i=, or "@" d= */
    char selector[SK_SMTP_DOMAIN_MAX_OCTETS + 1];   /* header.s */
    char algorithm[16];                             /* header.a: "rsa-sha256", ... */
    /* header.b: the first SK_DKIM_B_PREFIX_MIN_OCTETS characters of b=, more
     * when another signature of the message starts alike (RFC 6008 4). */
    char b[SK_DKIM_B_PREFIX_MAX_OCTETS + 1];
    sk_dkim_canon header_canon, body_canon;
    int64_t t, x;         /* t= and x=, 0 when absent */
    int has_l;            /* l= present ... */
    uint64_t l;           /* ... its value */
    uint64_t body_octets; /* the canonicalized body's length */
    sk_dkim_key_type key_type;
    unsigned key_bits; /* 0 when no key was found */
    int testing;       /* the key record says t=y (RFC 6376 3.6.1) */
} sk_dkim_result;

typedef struct sk_dkim_verify_opts {
    int64_t now;           /* Unix seconds for t= and x=; 0 = the clock */
    size_t max_signatures; /* 0 = SK_DKIM_VERIFY_SIGNATURES_MAX (the most allowed) */
} sk_dkim_verify_opts;

/* A verifier reads one message like a signer (feed, finish), then needs
 * the key of each signature (selector._domainkey.domain TXT): through a
 * resolver (sk_dkim_verifier_resolve, asynchronous on the resolver's loop,
 * or _resolve_sync for programs without a loop), or answered by the
 * caller (next_query / answer: sans I/O). Results are then read with
 * sk_dkim_verifier_result. */
typedef struct sk_dkim_verifier sk_dkim_verifier;
sk_dkim_verifier *sk_dkim_verifier_new(const sk_dkim_verify_opts *opts, sk_error *err);
/* SK_ERR_TOO_LONG when the header block grows past its limit: the
 * verifier then has no result (finish fails the same way). */
SK_NODISCARD sk_err sk_dkim_verifier_feed(sk_dkim_verifier *v, const void *bytes, size_t len);
/* The message is complete: body hashes and header hashes are computed;
 * what needs no key has its result now. */
SK_NODISCARD sk_err sk_dkim_verifier_finish(sk_dkim_verifier *v, sk_error *err);

/* Key queries still unanswered: the DNS name of one (lower case, no final
 * dot), NULL when none is left. */
const char *sk_dkim_verifier_next_query(const sk_dkim_verifier *v);
/* The answer to the TXT query for name: status and the record strings
 * (each record's strings already joined), as sk_dns_result gives them. */
SK_NODISCARD sk_err sk_dkim_verifier_answer(sk_dkim_verifier *v, const char *name,
                                            sk_dns_status status, const char *const *records,
                                            size_t n);

/* Look every key up through r; done is called once, from r's loop, when
 * all are answered (at once, before this returns, when none is needed).
 * The verifier may be freed with lookups in flight: their answers are
 * then dropped. */
typedef void (*sk_dkim_done_fn)(void *ctx, sk_dkim_verifier *v);
SK_NODISCARD sk_err sk_dkim_verifier_resolve(sk_dkim_verifier *v, sk_resolver *r,
                                             sk_dkim_done_fn done, void *ctx);
/* Blocking: a private loop and resolver (o: as sk_dns_lookup_sync; NULL =
 * the system's), for the CLI and programs without a loop. */
SK_NODISCARD sk_err sk_dkim_verifier_resolve_sync(sk_dkim_verifier *v, const sk_resolver_opts *o,
                                                  sk_error *err);

/* Results, one per DKIM-Signature field from the top, up to the limit. */
size_t sk_dkim_verifier_count(const sk_dkim_verifier *v);
const sk_dkim_result *sk_dkim_verifier_result(const sk_dkim_verifier *v, size_t i);
/* DKIM-Signature fields beyond the limit, not evaluated. */
size_t sk_dkim_verifier_skipped(const sk_dkim_verifier *v);
/* The message's overall DKIM result: pass when one signature passed, else
 * the first of temperror, fail, policy, permerror, neutral found, else none. */
sk_dkim_status sk_dkim_verifier_summary(const sk_dkim_verifier *v);
void sk_dkim_verifier_free(sk_dkim_verifier *v);

#ifdef __cplusplus
}
#endif
#endif
