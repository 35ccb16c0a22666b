/* The DKIM module's internal API: the pieces a signer and a verifier are
 * made of, offered to ARC (RFC 8617), which signs and verifies with the
 * same canonicalization, header selection, tag lists, key records and
 * public-key operations. */
#ifndef SMTPKIT_DKIM_INT_H
#define SMTPKIT_DKIM_INT_H

#include <smtpkit/dkim.h>

#include <openssl/evp.h>

/* ---- tag lists (RFC 6376 3.2) ---- */

typedef struct dkim_tag {
    const char *name;
    size_t name_len;
    const char *value; /* leading and trailing FWS removed; inner FWS kept */
    size_t value_len;
    /* The value's region in the list, from just after '=' to the ';' or
     * the end: what "the value of the b= tag (including all surrounding
     * whitespace)" (RFC 6376 3.7) is when it is deleted. */
    size_t region_start, region_end;
} dkim_tag;

typedef struct dkim_tags {
    dkim_tag tag[SK_DKIM_TAGS_MAX];
    size_t n;
} dkim_tags;

/* Parse s[0..n) strictly: tag-spec *(";" tag-spec) [";"], names ALPHA
 * *(ALPHA / DIGIT / "_"), values of VALCHAR (and UTF-8, RFC 8616)
 * separated by FWS, no duplicate names (case-sensitive, 3.2). SK_ERR_SYNTAX
 * with a reason in why. */
SK_NODISCARD sk_err dkim_tags_parse(const char *s, size_t n, dkim_tags *out, char *why,
                                    size_t whylen);
const dkim_tag *dkim_tags_get(const dkim_tags *t, const char *name);

/* ---- signatures (RFC 6376 3.5) ---- */

/* The fields that share DKIM-Signature's tag grammar: DKIM itself, and
 * ARC's ARC-Message-Signature and ARC-Seal (RFC 8617 4.1.2, 4.1.3). */
typedef enum dkim_sig_kind {
    DKIM_SIG_DKIM = 0,
    DKIM_SIG_AMS, /* no v= (ignored), i= is the ARC instance, no AUID */
    DKIM_SIG_AS,  /* i=, cv=, no h= and no body hash; relaxed headers */
} dkim_sig_kind;

typedef struct dkim_sig {
    sk_dkim_algo algo;
    sk_dkim_canon hcanon, bcanon;
    const char *domain;                        /* d= as written */
    const char *selector;                      /* s= */
    const char *identity;                      /* i=, or "@" d= */
    const char *b64;                           /* b= without FWS */
    const char *h[SK_DKIM_SIGNED_HEADERS_MAX]; /* h= names */
    size_t nh;
    unsigned char bh[EVP_MAX_MD_SIZE];
    size_t bh_len;
    unsigned char *b;
    size_t b_len;
    int has_l, has_t, has_x;
    uint64_t l;
    int64_t t, x;
    unsigned instance; /* ARC: i= (1..SK_ARC_INSTANCE_MAX) */
    const char *cv;    /* ARC-Seal: cv= ("none", "pass" or "fail") */
    char *mem;         /* the strings above */
    size_t mem_used, mem_cap;
} dkim_sig;

/* Parse and check a DKIM-Signature value (what follows the colon): the
 * tags RFC 6376 3.5 requires, their syntax, v=1, a known a= and c=,
 * q=dns/txt, i= within d=, From in h=, x= after t=. SK_ERR_SYNTAX with why
 * when the field must be ignored (PERMFAIL, RFC 6376 6.1.1). The properties
 * known so far are in out even then (for reports); dkim_sig_clear after. */
SK_NODISCARD sk_err dkim_sig_parse(const char *value, size_t n, dkim_sig *out, char *why,
                                   size_t whylen);
/* The same for any kind. ARC-Message-Signature: the DKIM rules without v=
 * and with i= the instance (RFC 8617 4.1.2, 4.2.1), ARC-Seal not in h=.
 * ARC-Seal: a=, b=, cv=, d=, i=, s= required, t= optional, h= refused
 * (RFC 8617 4.1.3); identity is NULL for both. */
SK_NODISCARD sk_err dkim_sig_parse_kind(dkim_sig_kind kind, const char *value, size_t n,
                                        dkim_sig *out, char *why, size_t whylen);
void dkim_sig_clear(dkim_sig *s);
/* SHA-256 or SHA-1 for an algorithm. */
const EVP_MD *dkim_algo_md(sk_dkim_algo a);

/* ---- key records (RFC 6376 3.6.1, RFC 8463 4) ---- */

typedef struct dkim_key_record {
    sk_dkim_key_type type;  /* k=, default rsa */
    int revoked;            /* p= empty: pkey is NULL */
    int testing;            /* t=y */
    int strict;             /* t=s: i= must be in d= itself */
    int sha1_ok, sha256_ok; /* h=, default both */
    EVP_PKEY *pkey;
    unsigned bits;
} dkim_key_record;

/* Parse one TXT record strictly: a valid tag list, v=DKIM1 first when
 * present, a known k=, p= decoding to a key of that type, s= naming email
 * (or "*"). SK_ERR_SYNTAX with why otherwise (RFC 6376 6.1.2: "key syntax
 * error"). */
SK_NODISCARD sk_err dkim_key_record_parse(const char *txt, size_t n, dkim_key_record *out,
                                          char *why, size_t whylen);
void dkim_key_record_clear(dkim_key_record *k);

/* ---- canonicalization (RFC 6376 3.4) ---- */

/* Append the canonical form of one header field (raw, with its folding
 * and its final CRLF if it has one) to out: simple keeps it as it is,
 * relaxed gives "name:value\r\n" (3.4.2). */
SK_NODISCARD sk_err dkim_canon_header(sk_dkim_canon c, const char *field, size_t len, sk_buf *out);

/* The body: canonicalized as it streams in, any chunk boundaries, into a
 * hash of its first `limit` canonical octets (l=; UINT64_MAX = all).
 * Trailing empty lines are held back until non-empty content follows
 * (3.4.3, 3.4.4). */
#define DKIM_BODY_STAGE_OCTETS 4096
typedef struct dkim_body_hash {
    sk_dkim_canon canon;
    const EVP_MD *md;
    EVP_MD_CTX *ctx;
    uint64_t limit;
    uint64_t total;      /* canonical octets produced */
    uint64_t crlfs_held; /* line ends not yet written: empty lines at the end so far */
    int cr_held;         /* a CR ended the last chunk */
    int wsp_held;        /* relaxed: whitespace not yet written */
    int content;         /* something other than line ends was written */
    int failed;          /* a digest call failed */
    /* Canonical octets gathered for one digest call: relaxed output comes
     * a word at a time. */
    size_t staged;
    char stage[DKIM_BODY_STAGE_OCTETS];
} dkim_body_hash;
SK_NODISCARD sk_err dkim_body_hash_init(dkim_body_hash *h, sk_dkim_canon c, const EVP_MD *md,
                                        uint64_t limit);
void dkim_body_hash_feed(dkim_body_hash *h, const char *p, size_t n);
/* Write the digest (EVP_MAX_MD_SIZE room) and its length. */
SK_NODISCARD sk_err dkim_body_hash_final(dkim_body_hash *h, unsigned char *out, size_t *len);
void dkim_body_hash_clear(dkim_body_hash *h);

/* ---- the message: header block and body ---- */

typedef struct dkim_field {
    size_t off, len; /* in the block, with the field's final CRLF */
    size_t name_len; /* the name without whitespace before the colon; 0: no colon */
    int used;        /* scratch for selection */
} dkim_field;

typedef void (*dkim_body_fn)(void *ctx, const char *p, size_t n);

/* Splits a streamed message into its header block (kept, bounded) and its
 * body (passed to body_fn as it comes). */
typedef struct dkim_msg {
    sk_buf head;
    int in_body;
    int eol; /* header state: 0 in a line, 1 CR seen, 2 CRLF seen, 3 CRLF CR seen */
    sk_err err;
    dkim_field *fields;
    size_t nfields;
    int parsed;
    dkim_body_fn body_fn; /* set when the header block is complete, or before */
    void *body_ctx;
    /* Called once when the header block is complete (before any body). */
    sk_err (*head_fn)(void *ctx, struct dkim_msg *m);
    void *head_ctx;
} dkim_msg;
/* The hooks may be NULL (body_fn may also be set later, in head_fn). */
void dkim_msg_init(dkim_msg *m, sk_err (*head_fn)(void *ctx, dkim_msg *m), void *head_ctx,
                   dkim_body_fn body_fn, void *body_ctx);
SK_NODISCARD sk_err dkim_msg_feed(dkim_msg *m, const char *p, size_t n);
/* End of message: a message without an empty line is all header. */
SK_NODISCARD sk_err dkim_msg_end(dkim_msg *m);
/* dkim_msg_end with what went wrong said in err. */
SK_NODISCARD sk_err dkim_msg_finish(dkim_msg *m, sk_error *err);
/* err says what e (from dkim_msg_feed or dkim_msg_end) means; returns e. */
sk_err dkim_msg_error(sk_err e, sk_error *err);
void dkim_msg_clear(dkim_msg *m);
/* The field's name matches name (case-insensitive, RFC 6376 6.1.3). */
int dkim_field_is(const dkim_msg *m, const dkim_field *f, const char *name, size_t nlen);

/* Hash the header fields named in names (each picking the last unused
 * instance, from the bottom up; RFC 6376 5.4.2) in canonical form c,
 * then sig_field (the signature's own field with its b= value deleted)
 * canonicalized and without its final CRLF (3.7). */
SK_NODISCARD sk_err dkim_hash_headers(EVP_MD_CTX *md, dkim_msg *m, const char *const *names,
                                      size_t nnames, sk_dkim_canon c, const char *sig_field,
                                      size_t sig_len);

/* The signature field raw[0..len) (name, colon, value; its final CRLF or
 * not) with the value of its b= tag deleted (RFC 6376 3.7), appended to
 * out. SK_ERR_SYNTAX when the value is no tag list with a b=. */
SK_NODISCARD sk_err dkim_field_strip_b(const char *raw, size_t len, sk_buf *out);
/* The header hash of a signature over the fields it names (h=) and its
 * own field raw[0..len) with b= deleted, in its c= header
 * canonicalization, with its algorithm's digest: into out (EVP_MAX_MD_SIZE
 * room), its length into *out_len. */
SK_NODISCARD sk_err dkim_sig_header_hash(dkim_msg *m, const dkim_sig *sig, const char *raw,
                                         size_t len, unsigned char *out, size_t *out_len);

/* ---- verification steps shared with ARC ---- */

/* The key's DNS name, selector._domainkey.domain in lower case, into
 * out[cap]. 0, or -1 when it does not fit. */
int dkim_key_name(const dkim_sig *sig, char *out, size_t cap);
/* What needs no key (RFC 8301 3.1, RFC 6376 3.5 x= and t=): SK_DKIM_NONE
 * when the signature may go on to its key, else its result, with the
 * reason in r->reason. */
sk_dkim_status dkim_sig_precheck(const dkim_sig *sig, int64_t now, sk_dkim_result *r);
/* RFC 6376 6.1.2 and 6.1.3 once the key record is in: the answer to the
 * TXT query qname (status, records), the header hash hh, whether the body
 * hash matched (1 for a signature without one) and the canonical body's
 * length. Sets r->status and r->reason, and key_type, key_bits, testing
 * when a key was read. */
void dkim_sig_evaluate(const dkim_sig *sig, const char *qname, sk_dns_status st,
                       const char *const *records, size_t n, const unsigned char *hh, size_t hh_len,
                       int bh_ok, uint64_t body_octets, sk_dkim_result *r);

/* dst[cap] gets src (NULL: empty), cut to fit. */
void dkim_copy_str(char *dst, size_t cap, const char *src);

/* The body hashes a verifier's signatures ask for: one per body
 * canonicalization, digest and l=, shared by the signatures that ask for
 * the same, fed as the body streams (dkim_body_checks_feed is a
 * dkim_body_fn; its ctx is the set), then finished once. */
typedef struct dkim_body_check {
    dkim_body_hash h;
    unsigned char digest[EVP_MAX_MD_SIZE]; /* after dkim_body_checks_final */
    size_t digest_len;
} dkim_body_check;
typedef struct dkim_body_checks {
    dkim_body_check *c;
    size_t n, cap;
} dkim_body_checks;
/* Room for cap different hashes (one per signature is always enough). */
SK_NODISCARD sk_err dkim_body_checks_init(dkim_body_checks *s, size_t cap);
/* The hash sig's body hash is checked against, added when new; NULL when
 * out of memory or room. */
dkim_body_check *dkim_body_checks_for(dkim_body_checks *s, const dkim_sig *sig);
void dkim_body_checks_feed(void *ctx, const char *p, size_t n);
SK_NODISCARD sk_err dkim_body_checks_final(dkim_body_checks *s);
/* After dkim_body_checks_final: sig's bh= is c's digest. */
int dkim_body_check_matches(const dkim_body_check *c, const dkim_sig *sig);
void dkim_body_checks_clear(dkim_body_checks *s);

/* The key lookups of a verifier (DKIM's or ARC's) through the resolver.
 * The owner numbers its signatures 0..count-1; name gives the key name a
 * signature still waits for (NULL when it waits for none), apply hands an
 * answer to every signature waiting for that name (which then waits for
 * none). Each name is asked once; done runs when every answer is in. */
typedef const char *(*dkim_lookup_name_fn)(void *owner, size_t i);
typedef void (*dkim_lookup_apply_fn)(void *owner, const char *name, sk_dns_status st,
                                     const char *const *records, size_t n);
typedef struct dkim_lookup dkim_lookup;
typedef struct dkim_lookups {
    void *owner;
    dkim_lookup_name_fn name;
    dkim_lookup_apply_fn apply;
    dkim_lookup *queries; /* in flight */
    size_t inflight;
    int issuing;
    void (*done)(void *ctx);
    void *done_ctx;
} dkim_lookups;
void dkim_lookups_init(dkim_lookups *l, void *owner, dkim_lookup_name_fn name,
                       dkim_lookup_apply_fn apply);
/* Lookups are being issued or are in flight. */
int dkim_lookups_busy(const dkim_lookups *l);
/* Ask for every key name signatures 0..count-1 wait for. A name the
 * resolver refuses at once is a temporary failure for its signatures.
 * done(ctx) runs when all are in (at once when none was needed), and not
 * after an error. SK_ERR_STATE while busy. */
SK_NODISCARD sk_err dkim_lookups_resolve(dkim_lookups *l, sk_resolver *r, size_t count,
                                         void (*done)(void *ctx), void *ctx);
/* The same on an event loop and resolver of its own, waiting until every
 * answer is in (for the CLI and tests). */
SK_NODISCARD sk_err dkim_lookups_resolve_sync(dkim_lookups *l, size_t count,
                                              const sk_resolver_opts *o, sk_error *err);
/* The owner goes away: answers still to come are dropped. */
void dkim_lookups_detach(dkim_lookups *l);

/* ---- signing steps shared with ARC ---- */

/* Folding a signature field: tags go on while the line stays within
 * SK_MIME_LINE_SOFT_OCTETS, then a new line starts with a TAB. col is the
 * current line's length (set it after writing the field name). */
typedef struct dkim_folder {
    sk_buf *b;
    size_t col;
} dkim_folder;
/* Start the field "name:" in b. */
SK_NODISCARD sk_err dkim_fold_start(dkim_folder *f, sk_buf *b, const char *name);
/* Append piece; sep (" " or "") goes before it unless it starts a line. */
SK_NODISCARD sk_err dkim_fold_put(dkim_folder *f, const char *sep, const char *piece, size_t n);
/* " name=value;" */
SK_NODISCARD sk_err dkim_fold_tag(dkim_folder *f, const char *name, const char *value);
/* " name=value;" with a decimal value */
SK_NODISCARD sk_err dkim_fold_num(dkim_folder *f, const char *name, long long value);
/* After "b=" (put with dkim_fold_put, then hashed): the signature
 * sig[0..len) in base64 as its value, folded anywhere (FWS inside b= is
 * left out of every hash), then CRLF. */
SK_NODISCARD sk_err dkim_fold_b(dkim_folder *f, const unsigned char *sig, size_t len);

/* What a signature covers, added to md: the fields it signs, then its own
 * field[0..len) as it stands (b= empty) in the signature's canonical form. */
typedef sk_err (*dkim_sign_hash_fn)(void *ctx, EVP_MD_CTX *md, const char *field, size_t len);
/* End the signature field being folded in f: " b=", the hash of what it
 * covers (hash) with the key's algorithm's digest, signed with key, as the
 * folded b= value, then CRLF (dkim_fold_b). The one place a DKIM-Signature,
 * an ARC-Message-Signature and an ARC-Seal get their b=. */
SK_NODISCARD sk_err dkim_fold_sign(dkim_folder *f, sk_dkim_key *key, dkim_sign_hash_fn hash,
                                   void *ctx);

/* A header field name a signer may list: printable ASCII but ':', at
 * least one octet (RFC 5322 2.2). */
int dkim_header_name_valid(const char *s);
/* The fields signed once more than they occur unless the caller says
 * otherwise: From (RFC 6376 8.15). NULL-terminated. */
extern const char *const dkim_default_oversign[];

/* One signature field over the header fields of m (selected as RFC 6376
 * 5.4.2 says) and a body hash already in base64. */
typedef struct dkim_sign_spec {
    const char *field; /* "DKIM-Signature" or "ARC-Message-Signature" */
    unsigned instance; /* 0: DKIM (v=1, i= the identity); else ARC's i= */
    sk_dkim_key *key;
    const char *domain, *selector;
    const char *identity; /* DKIM only; NULL: none */
    sk_dkim_canon hcanon, bcanon;
    const char *const *headers;  /* NULL-terminated, each signed as often as it occurs */
    const char *const *oversign; /* NULL-terminated, once more than they occur */
    int64_t timestamp;           /* 0 = now, -1 = no t= */
    uint64_t expire_s;           /* x= = t= + this; 0 = none */
} dkim_sign_spec;
/* Append the field, folded, ending in CRLF. */
SK_NODISCARD sk_err dkim_sign_field(dkim_msg *m, const dkim_sign_spec *spec, const char *bh64,
                                    sk_buf *out, sk_error *err);
/* The algorithm a key signs with (its type gives it). */
sk_dkim_algo dkim_key_algo(const sk_dkim_key *k);

/* ---- public-key operations ---- */

/* Sign / verify the digest of the header data: RSASSA-PKCS1-v1_5 over it
 * for rsa-*, Ed25519 over the SHA-256 digest itself (RFC 8463 3). */
SK_NODISCARD sk_err dkim_sign_digest(const sk_dkim_key *key, sk_dkim_algo a,
                                     const unsigned char *digest, size_t dlen, sk_buf *sig);
int dkim_verify_digest(EVP_PKEY *key, sk_dkim_algo a, const unsigned char *digest, size_t dlen,
                       const unsigned char *sig, size_t slen);
EVP_PKEY *dkim_key_pkey(const sk_dkim_key *k);
/* SHA-256, fetched once for the key: for the hashes of what it signs. */
const EVP_MD *dkim_key_sha256(const sk_dkim_key *k);

/* Domain-name checks shared with ARC. */
int dkim_domain_valid(const char *s, size_t n);
/* sub equals parent or ends in "." parent, ignoring case. */
int dkim_domain_within(const char *sub, size_t sn, const char *parent, size_t pn);

#endif
