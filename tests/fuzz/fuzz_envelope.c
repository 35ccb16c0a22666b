/* Fuzz target: the spool's envelope text form (docs/queue.md). What the
 * parser accepts must serialize, read back and serialize to the same text. */
#include <smtpkit/spool.h>

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    sk_spool_envelope *env = NULL;
    sk_err e = sk_spool_envelope_parse((const char *)data, size, &env);
    if (e != SK_OK) {
        if (env) abort();
        if (e != SK_ERR_SYNTAX && e != SK_ERR_NOMEM) abort();
        return 0;
    }
    if (!env || !sk_spool_id_valid(env->id) || !env->sender) abort();
    if ((unsigned)env->state >= SK_SPOOL_STATE__COUNT || (env->nrcpts && !env->rcpts)) abort();
    for (size_t i = 0; i < env->nrcpts; i++)
        if (!env->rcpts[i].addr || (unsigned)env->rcpts[i].state >= SK_RCPT_STATE__COUNT ||
            env->rcpts[i].notify > 15)
            abort();
    if (env->mail.priority < -9 || env->mail.priority > 9) abort();
    (void)sk_spool_envelope_protocol(env);

    sk_buf one = SK_BUF_INIT(4 * size + 4096), two = SK_BUF_INIT(4 * size + 4096);
    if (sk_spool_envelope_serialize(env, &one) != SK_OK) abort();
    sk_spool_envelope *back = NULL;
    if (sk_spool_envelope_parse(one.data, one.len, &back) != SK_OK) abort();
    if (sk_spool_envelope_serialize(back, &two) != SK_OK) abort();
    if (one.len != two.len || memcmp(one.data, two.data, one.len) != 0) abort();

    /* A copy serializes the same too. */
    sk_spool_envelope *copy = sk_spool_envelope_dup(back);
    if (copy) {
        sk_buf_reset(&two);
        if (sk_spool_envelope_serialize(copy, &two) != SK_OK) abort();
        if (one.len != two.len || memcmp(one.data, two.data, one.len) != 0) abort();
    }
    sk_spool_envelope_free(copy);
    sk_spool_envelope_free(back);
    sk_spool_envelope_free(env);
    sk_buf_free(&one);
    sk_buf_free(&two);
    return 0;
}
