/* The inside of the ARC module: the chain of ARC sets found in a header
 * block, which the verifier checks and the sealer extends, and the seal's
 * hash over it (RFC 8617 5.1.1). */
#ifndef SMTPKIT_ARC_INT_H
#define SMTPKIT_ARC_INT_H

#include <smtpkit/arc.h>

#include "dkim/dkim_int.h"

enum { ARC_AAR = 0, ARC_AMS, ARC_AS, ARC_KINDS };

/* The three field names, in the order of a set in the seal's hash. */
extern const char *const arc_field_names[ARC_KINDS];

/* One instance: the fields (index into the message's fields + 1; 0 when
 * absent) and the parsed signatures (NULL until parsed). */
typedef struct arc_set {
    size_t field[ARC_KINDS];
    dkim_sig *ams, *as;
} arc_set;

typedef struct arc_chain {
    size_t nfields; /* ARC fields of any kind found */
    unsigned n;     /* the highest instance found (valid i= only) */
    arc_set *sets;  /* [0..SK_ARC_INSTANCE_MAX], index = instance; NULL when nfields is 0 */
    int shape_ok;   /* every instance 1..n has one of each field, all parsed */
    char why[SK_ARC_REASON_OCTETS]; /* what is wrong with the shape */
} arc_chain;

/* Collect the ARC fields of m's header block into c by instance, parsing
 * the AMS and AS of each (RFC 8617 5.2 steps 1 and 3.1-3.2). A field
 * without a usable instance, a second field of a kind for an instance, a
 * signature that does not parse, or a missing field make shape_ok 0 with
 * the first such problem in why. SK_ERR_NOMEM only. */
SK_NODISCARD sk_err arc_chain_collect(arc_chain *c, const dkim_msg *m);
void arc_chain_clear(arc_chain *c);
/* The cv= of an instance's seal (SK_ARC_FAIL when it has none). */
sk_arc_status arc_chain_cv(const arc_chain *c, unsigned instance);

/* The instance of an ARC-Authentication-Results value (RFC 8617 4.1.1:
 * "i=" 1*2DIGIT, then ';'): 1..SK_ARC_INSTANCE_MAX, or 0 when it has none. */
unsigned arc_aar_instance(const char *value, size_t n);

/* Add one field (raw, with or without its final CRLF) to the seal's hash:
 * relaxed canonicalization, and for the seal itself (last) no CRLF. */
SK_NODISCARD sk_err arc_seal_hash_field(EVP_MD_CTX *md, const char *raw, size_t len, int last,
                                        sk_buf *scratch);
/* Add the sets 1..upto of c (whole fields) to the seal's hash. */
SK_NODISCARD sk_err arc_seal_hash_sets(EVP_MD_CTX *md, const arc_chain *c, const dkim_msg *m,
                                       unsigned upto, sk_buf *scratch);

#endif
