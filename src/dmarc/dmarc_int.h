/* The DMARC check as a state machine without I/O: it names the next DNS
 * query and is fed the answer, so the evented checker, the blocking one and
 * the unit tests (with answers from a table) drive the same code. */
#ifndef SMTPKIT_DMARC_INT_H
#define SMTPKIT_DMARC_INT_H

#include <smtpkit/dmarc.h>

typedef enum dm_step {
    DM_FROM_TXT, /* TXT _dmarc.FROM */
    DM_ORG_TXT,  /* TXT _dmarc.ORG */
    DM_EXIST_A,  /* does FROM exist? (np=, RFC 9091 2.1) */
    DM_EXIST_AAAA,
    DM_EXIST_MX,
    DM_DONE,
} dm_step;

typedef struct dm_auth {
    sk_dmarc_auth result;
    int valid; /* the domain normalized */
    char domain[SK_SMTP_DOMAIN_MAX_OCTETS + 1];
} dm_auth;

typedef struct dm_state {
    dm_step step;
    dm_auth spf;
    dm_auth dkim[SK_DMARC_DKIM_MAX];
    size_t n_dkim;
    sk_rand_fn rnd;
    void *rnd_ctx;
    char qname[SK_SMTP_DOMAIN_MAX_OCTETS + 16];
    sk_dmarc_result res;
} dm_state;

/* Set up from the input; SK_ERR_NOMEM only (a From that cannot be
 * evaluated ends the check at once with permerror). */
SK_NODISCARD sk_err dm_start(dm_state *s, const sk_dmarc_input *in, sk_rand_fn rnd, void *rnd_ctx);
/* The next query (its name and type), or NULL when the result is ready. */
const char *dm_next(dm_state *s, sk_dns_type *type);
/* The answer to the query dm_next named. */
void dm_feed(dm_state *s, const sk_dns_result *r);
/* The result, moved out (s->res is left empty). */
void dm_take(dm_state *s, sk_dmarc_result *out);

#endif
