/* Which messages an operation applies to (sk_queue_filter) and what it
 * changes: shared by the running queue and `smtpkit queue` working on a
 * spool without a daemon, so that both choose the same messages. */
#include <smtpkit/queue.h>

#include <string.h>
#include <strings.h>

static const char *const op_names[] = {"flush", "release", "delete", "hold"};
_Static_assert(sizeof op_names / sizeof op_names[0] == SK_QUEUE_OP_HOLD + 1, "an op without name");

const char *sk_queue_op_name(sk_queue_op op)
{
    return (unsigned)op <= SK_QUEUE_OP_HOLD ? op_names[op] : "?";
}

int sk_queue_op_changes(sk_queue_op op, sk_spool_state s)
{
    switch (op) {
    case SK_QUEUE_OP_FLUSH:
        return s == SK_SPOOL_DEFERRED;
    case SK_QUEUE_OP_RELEASE:
        return s == SK_SPOOL_DEFERRED || s == SK_SPOOL_HOLD;
    case SK_QUEUE_OP_DELETE:
        return 1;
    case SK_QUEUE_OP_HOLD:
        return s == SK_SPOOL_ACTIVE || s == SK_SPOOL_DEFERRED;
    }
    return 0;
}

int sk_queue_filter_empty(const sk_queue_filter *f)
{
    return !f->id[0] && !f->all && !f->destination[0] && !f->has_sender && !f->states;
}

/* The domain of an address: after its last '@' (a quoted local part may
 * hold one, a domain never does); NULL when there is none. */
static const char *domain_of(const char *addr)
{
    const char *at = strrchr(addr, '@');
    return at ? at + 1 : NULL;
}

/* RFC 5321 2.4: the local part is case-sensitive, the domain is not. */
static int same_address(const char *a, const char *b)
{
    const char *da = domain_of(a), *db = domain_of(b);
    if (!da || !db) return !da && !db && !strcmp(a, b);
    return da - a == db - b && !memcmp(a, b, (size_t)(da - a)) && !strcasecmp(da, db);
}

int sk_queue_filter_match(const sk_queue_filter *f, const sk_spool_envelope *env)
{
    if (sk_queue_filter_empty(f)) return 0;
    if (f->id[0] && strcmp(f->id, env->id)) return 0;
    if (f->states &&
        ((unsigned)env->state >= SK_SPOOL_STATE__COUNT || !(f->states & (1u << env->state))))
        return 0;
    if (f->has_sender && !same_address(f->sender, env->sender ? env->sender : "")) return 0;
    if (f->destination[0]) {
        for (size_t i = 0; i < env->nrcpts; i++) {
            const char *d = domain_of(env->rcpts[i].addr);
            if (env->rcpts[i].state == SK_RCPT_PENDING && d && !strcasecmp(d, f->destination))
                return 1;
        }
        return 0;
    }
    return 1;
}
