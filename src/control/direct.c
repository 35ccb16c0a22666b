/* Control operations straight on the spool, for when no daemon holds it:
 * the same filter and the same changes as the running queue makes
 * (sk_queue_filter_match, sk_queue_op_changes), with the spool lock held. */
#include "control/control_int.h"

#include <string.h>

sk_err sk_control_direct(sk_spool *s, const sk_control_request *r, sk_control_result *res,
                         sk_error *err)
{
    sk_error_clear(err);
    memset(res, 0, sizeof *res);
    res->direct = 1;
    const sk_queue_filter *f = &r->filter;
    if ((unsigned)r->op > SK_QUEUE_OP_DELETE || sk_queue_filter_empty(f))
        return sk_error_set(err, SK_ERR_INVAL, SK_STEP_NONE, "an operation needs a filter");
    char **ids = NULL, *one[1] = {(char *)f->id};
    size_t n = 1;
    if (!f->id[0]) {
        sk_err e = sk_spool_list(s, &ids, &n, err);
        if (e) return e;
    }
    /* A message that cannot be read or written is left as it is; the
     * others are still done, and the first failure is reported. */
    sk_error first = {0};
    size_t failed = 0;
    for (size_t i = 0; i < n; i++) {
        const char *id = ids ? ids[i] : one[0];
        sk_spool_envelope *env = NULL;
        sk_error e2;
        sk_err e = sk_spool_load(s, id, &env, &e2);
        if (e == SK_ERR_NOT_FOUND) continue; /* gone meanwhile */
        if (!e && !sk_queue_filter_match(f, env)) {
            sk_spool_envelope_free(env);
            continue;
        }
        if (!e) {
            res->matched++;
            if (r->op == SK_QUEUE_OP_DELETE) {
                e = sk_spool_remove(s, id, &e2);
                if (!e) res->changed++;
            } else if (sk_queue_op_changes(r->op, env->state)) {
                env->state = SK_SPOOL_ACTIVE;
                env->next_attempt = 0;
                e = sk_spool_save(s, env, &e2);
                if (!e) res->changed++;
            }
        }
        sk_spool_envelope_free(env);
        if (e && !failed++) first = e2;
    }
    if (ids) sk_spool_ids_free(ids, n);
    if (failed)
        return sk_error_set(err, first.err, SK_STEP_NONE, "%s (%zu message%s left as %s)",
                            first.text, failed, failed == 1 ? "" : "s",
                            failed == 1 ? "it was" : "they were");
    if (f->id[0] && !res->matched)
        return sk_error_set(err, SK_ERR_NOT_FOUND, SK_STEP_NONE, "no message %s in the queue",
                            f->id);
    return SK_OK;
}
