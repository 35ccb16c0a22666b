/* The message table: every message the queue knows, oldest first, with
 * the list of those due now; adding, finding, saving and removing them. */
#include <string.h>

#include "queue/queue_int.h"

static const char *const state_names[] = {
    [QMSG_WAITING] = "waiting",       [QMSG_HELD] = "held",       [QMSG_READY] = "ready",
    [QMSG_DELIVERING] = "delivering", [QMSG_DELETED] = "deleted", [QMSG_REMOVED] = "removed",
};
_Static_assert(sizeof state_names / sizeof state_names[0] == QMSG_STATE__COUNT, "state_names");

void sk_queue_msg_set_state(sk_queue *q, qmsg *m, qmsg_state to)
{
    if (m->state == to) return;
    sk_log(&q->opts.log, SK_LOG_DEBUG, "%s queue state from=%s to=%s", m->env->id,
           state_names[m->state], state_names[to]);
    if (m->state == QMSG_READY) TAILQ_REMOVE(&q->ready, m, rlink);
    if (to == QMSG_READY) TAILQ_INSERT_TAIL(&q->ready, m, rlink);
    m->state = to;
}

void sk_queue_msg_ready(sk_queue *q, qmsg *m)
{
    if (m->state == QMSG_WAITING) sk_queue_msg_set_state(q, m, QMSG_READY);
}

void sk_queue_msg_due_now(sk_queue *q, qmsg *m)
{
    m->env->state = SK_SPOOL_ACTIVE;
    m->env->next_attempt = 0;
    sk_queue_msg_save(q, m);
    sk_queue_msg_set_state(q, m, QMSG_READY);
}

void sk_queue_msg_hold(sk_queue *q, qmsg *m)
{
    m->env->state = SK_SPOOL_HOLD;
    sk_queue_msg_save(q, m);
    sk_queue_msg_set_state(q, m, QMSG_HELD);
}

qmsg *sk_queue_msg_find(sk_queue *q, const char *id)
{
    for (qmsg *m = TAILQ_FIRST(&q->msgs); m; m = TAILQ_NEXT(m, link))
        if (!strcmp(m->env->id, id)) return m;
    return NULL;
}

static void unlink_msg(sk_queue *q, qmsg *m)
{
    TAILQ_REMOVE(&q->msgs, m, link);
    q->count--;
}

void sk_queue_msg_free(qmsg *m)
{
    sk_queue_attempt_clear(m);
    sk_spool_envelope_free(m->env);
    sk_free(m);
}

/* Append: the list stays in arrival order, oldest first. NULL when out
 * of memory. */
qmsg *sk_queue_msg_add(sk_queue *q, sk_spool_envelope *env, int maybe_delivered)
{
    qmsg *m = sk_calloc(1, sizeof *m);
    if (!m) return NULL;
    m->env = env;
    m->state = env->state == SK_SPOOL_HOLD ? QMSG_HELD : QMSG_WAITING;
    m->maybe_delivered = maybe_delivered;
    m->seq = ++q->seq;
    m->priority = sk_queue_priority_of(env, q->opts.priority_rules, q->opts.npriority_rules);
    TAILQ_INSERT_TAIL(&q->msgs, m, link);
    q->count++;
    return m;
}

void sk_queue_msg_save(sk_queue *q, qmsg *m)
{
    sk_error err;
    if (sk_spool_save(q->spool, m->env, &err))
        sk_log(&q->opts.log, SK_LOG_ERR, "%s queue save-failed error=\"%s\"", m->env->id, err.text);
}

/* Remove the message's files (already gone is no error). */
static void spool_remove(sk_queue *q, const char *id)
{
    sk_error err;
    if (sk_spool_remove(q->spool, id, &err) && err.err != SK_ERR_NOT_FOUND)
        sk_log(&q->opts.log, SK_LOG_ERR, "%s queue remove-failed error=\"%s\"", id, err.text);
}

/* A deleted message whose last job has reported (or was cancelled). */
void sk_queue_msg_free_deleted(sk_queue *q, qmsg *m)
{
    spool_remove(q, m->env->id);
    sk_queue_msg_set_state(q, m, QMSG_REMOVED);
    sk_queue_msg_free(m);
}

void sk_queue_msg_remove(sk_queue *q, qmsg *m)
{
    sk_queue_emit_msg(q, SK_QUEUE_EV_REMOVED, m);
    unlink_msg(q, m);
    sk_queue_cancel_waiting(m);
    if (m->jobs_out) {
        sk_queue_msg_set_state(q, m, QMSG_DELETED);
    } else {
        sk_queue_msg_set_state(q, m, QMSG_REMOVED);
        spool_remove(q, m->env->id);
        sk_queue_msg_free(m);
    }
}
