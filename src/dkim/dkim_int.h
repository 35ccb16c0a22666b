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
    char *mem; /* the strings above */
    size_t mem_used, mem_cap;
} dkim_sig;

/* Parse and check a DKIM-Signature value (what follows the colon): the
 * tags RFC 6376 3.5 requires, their syntax, v=1, a known a= and c=,
 * q=dns/txt, i= within d=, From in h=, x= after t=. SK_ERR_SYNTAX with why
 * when the field must be ignored (PERMFAIL, RFC 6376 6.1.1). The properties
 * known so far are in out even then (for reports); dkim_sig_clear after. */
SK_NODISCARD sk_err dkim_sig_parse(const char *value, size_t n, dkim_sig *out, char *why,
                                   size_t whylen);
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
void dkim_msg_init(dkim_msg *m);
SK_NODISCARD sk_err dkim_msg_feed(dkim_msg *m, const char *p, size_t n);
/* End of message: a message without an empty line is all header. */
SK_NODISCARD sk_err dkim_msg_end(dkim_msg *m);
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

/* ---- public-key operations ---- */

/* Sign / verify the digest of the header data: RSASSA-PKCS1-v1_5 over it
 * for rsa-*, Ed25519 over the SHA-256 digest itself (RFC 8463 3). */
SK_NODISCARD sk_err dkim_sign_digest(EVP_PKEY *key, sk_dkim_algo a, const unsigned char *digest,
                                     size_t dlen, sk_buf *sig);
int dkim_verify_digest(EVP_PKEY *key, sk_dkim_algo a, const unsigned char *digest, size_t dlen,
                       const unsigned char *sig, size_t slen);
EVP_PKEY *dkim_key_pkey(const sk_dkim_key *k);

/* Domain-name checks shared with ARC. */
int dkim_domain_valid(const char *s, size_t n);
/* sub equals parent or ends in "." parent, ignoring case. */
int dkim_domain_within(const char *sub, size_t sn, const char *parent, size_t pn);

#endif
