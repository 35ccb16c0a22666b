/* The queue runner's internal API: its structures (messages, jobs,
 * destinations, route keys, DSNs in flight) and what its files offer each
 * other. */
#ifndef SK_QUEUE_INT_H
#define SK_QUEUE_INT_H

#include <smtpkit/dsn.h>
#include <smtpkit/queue.h>

#include <sys/queue.h>

#include "deliver/deliver.h"

struct event;

/* Buckets of the destination and route key tables. */
#define QUEUE_HASH_SIZE 1024
/* RFC 6710 2: priorities run from -9 to 9; a destination keeps one FIFO
 * level for each. */
#define SK_QUEUE_PRIORITY_MIN    (-9)
#define SK_QUEUE_PRIORITY_MAX    9
#define SK_QUEUE_PRIORITY_LEVELS (SK_QUEUE_PRIORITY_MAX - SK_QUEUE_PRIORITY_MIN + 1)

/* A token bucket as a "theoretical arrival time" (GCRA): every message
 * moves tat on by per_ms/count milliseconds; a message may go while tat is
 * no more than burst-1 intervals ahead of now. Kept in units of
 * 1/count ms so that intervals like 1000/3 ms stay exact. */
typedef struct sk_bucket {
    sk_queue_rate rate;
    int64_t tat; /* in ms * rate.count */
} sk_bucket;

/* How a destination is paced (src/queue/ratelimit.c): its configured
 * rate, a slower rate a rule imposed for a while, and a suspension. Times
 * in ms. */
typedef struct sk_pace {
    int unpaced;      /* local delivery: only a suspension holds it */
    sk_bucket bucket; /* the configured rate */
    int overridden;   /* bucket has a per-domain rate */
    sk_bucket slow;   /* a rate a rule imposed, until slow_until */
    int64_t slow_until;
    int64_t suspended_until;
} sk_pace;

/* The retry schedule and the lifetime of messages (src/queue/retry.c),
 * copied from the options with their defaults. */
typedef struct sk_retry {
    uint64_t *delay_ms; /* waits after the 1st, 2nd, ... failed attempt; the last repeats */
    size_t n;
    uint64_t lifetime_ms; /* then the pending recipients expire */
    uint64_t warning_ms;  /* then a delay notice is due; 0 = never */
} sk_retry;

/* What an attempt ended for one recipient, for the DSN about it. */
typedef enum qrcpt_outcome {
    QRCPT_NONE = 0,  /* nothing: still pending, or taken by a next hop that reports itself */
    QRCPT_FAILED,    /* failed permanently */
    QRCPT_EXPIRED,   /* still pending at the end of the queue lifetime */
    QRCPT_DELIVERED, /* delivered by us (RFC 3461 5.2.3) */
    QRCPT_RELAYED,   /* handed to a next hop without DSN (RFC 3461 5.2.2) */
} qrcpt_outcome;

/* One recipient in the attempt in progress. Its reply is kept as data from
 * the transport to the DSN; the envelope keeps the text form for the disk
 * (sk_reply_to_line), which is read back only for a reply of an earlier
 * attempt. */
typedef struct qrcpt {
    qrcpt_outcome outcome;
    sk_reply *reply; /* its answer in this attempt, NULL until its job reports */
    char *remote;    /* the host that gave it, NULL when local or unknown */
} qrcpt;

/* Where a message stands in the queue (in memory; its envelope's state,
 * active, deferred or hold, is what the disk keeps). */
typedef enum qmsg_state {
    QMSG_WAITING = 0, /* for its next attempt (envelope's next_attempt) */
    QMSG_HELD,        /* in the hold queue until released */
    QMSG_READY,       /* due: on the list of messages due now */
    QMSG_DELIVERING,  /* its attempt's jobs are out */
    /* Deleted while jobs were out: off the table; it is freed, and its
     * spool file removed, when the last one reports, since a transport may
     * still be reading the file and a removed file is soon reused for
     * another message (docs/queue.md). */
    QMSG_DELETED,
    QMSG_REMOVED, /* left the queue; being freed */
    QMSG_STATE__COUNT
} qmsg_state;

typedef struct qmsg qmsg;
typedef struct qjob qjob;
typedef struct qdest qdest;
typedef struct qroute qroute;
typedef struct qdsn qdsn;
TAILQ_HEAD(qjob_list, qjob);

struct qmsg {
    sk_spool_envelope *env;
    int maybe_delivered; /* loaded at start: a crash may have hidden a delivery */
    qmsg_state state;    /* changed by sk_queue_msg_set_state only */
    unsigned jobs_out;   /* jobs of the attempt not yet reported (+1 while it is set up) */
    int priority;
    /* Arrival order: stored messages in ID order at start, then commits as
     * they come (IDs alone do not order messages of the same millisecond). */
    uint64_t seq;
    LIST_HEAD(, qjob) jobs; /* this attempt's: waiting for a route, queued or running */
    /* This attempt, one per envelope recipient; NULL between attempts (and
     * when there was no memory for it: then no DSN tells of the attempt). */
    qrcpt *rcpts;
    TAILQ_ENTRY(qmsg) link;  /* in q->msgs */
    TAILQ_ENTRY(qmsg) rlink; /* in q->ready while QMSG_READY */
};

typedef enum job_state { JOB_ROUTING = 0, JOB_QUEUED, JOB_RUNNING } job_state;

/* One message to the recipients it has at one domain. */
struct qjob {
    sk_queue *q;
    qmsg *m;
    job_state state;
    qdest *d;      /* once routed */
    qroute *route; /* while waiting for a route key */
    sk_transport *t;
    sk_delivery job;
    sk_delivery_rcpt *rcpts;
    char *domain;
    sk_buf body_path;
    char *sender;           /* VERP sender, NULL when the message's own is used */
    TAILQ_ENTRY(qjob) link; /* in the running list, a destination level or a route's waiters */
    LIST_ENTRY(qjob) mlink; /* in the message's jobs */
};

/* A destination: a domain, or with provider grouping every domain with the
 * same route key. Its limits hold for all of them together. */
struct qdest {
    char *key;
    int local;
    sk_pace pace;
    unsigned in_flight;
    size_t queued;
    struct qjob_list level[SK_QUEUE_PRIORITY_LEVELS]; /* queued jobs, FIFO per priority */
    int active;               /* on the list of destinations with queued jobs */
    TAILQ_ENTRY(qdest) alink; /* in q->active while active */
    qdest *hnext;
};

/* A domain's route key, as the remote transport found it. */
struct qroute {
    sk_queue *q;
    char *domain;
    char *key;
    int64_t expires_ms;
    int pending;
    struct qjob_list waiting; /* jobs waiting for the key */
    qroute *hnext;
};

/* A DSN being committed: its event is sent once it is on disk. */
struct qdsn {
    sk_queue *q; /* NULL once the queue is gone */
    sk_spool_envelope *env;
    int priority;
    char **rcpts; /* whose final outcome it reports (SK_QUEUE_EV_DSN) */
    size_t nrcpts;
    LIST_ENTRY(qdsn) link; /* in q->dsns */
};

struct sk_queue {
    sk_spool *spool;
    sk_queue_opts opts;
    sk_retry retry;
    sk_rules *own_rules; /* the built-in rules when opts.rules is NULL */
    struct event_base *base;
    struct event *kick_ev;  /* coalesced "look for due work" */
    struct event *timer_ev; /* next retry time */
    struct event *disp_ev;  /* next time a limited destination may send */
    /* The spool's recovery after a start: a batch of old messages taken
     * in per loop pass while new mail is accepted (load.c). */
    struct event *load_ev;
    bool loading;
    uint64_t load_seq;       /* arrival numbers of recovered messages: 1..N */
    TAILQ_HEAD(, qmsg) msgs; /* all messages, oldest first */
    size_t count;
    /* Messages due now, in the order they became due: commits, releases
     * and flushes add here directly; the timer adds deferred ones whose
     * time has come. Only the timer scans the whole queue. */
    TAILQ_HEAD(, qmsg) ready;
    int64_t timer_at; /* unix seconds the timer is set for */
    int64_t disp_at;  /* ms the dispatch timer is set for, 0 = not set */
    struct qjob_list running;
    size_t in_flight;
    size_t dests_in_flight; /* destinations with a job in flight */
    uint64_t seq;           /* last arrival number given */
    qdest *dests[QUEUE_HASH_SIZE];
    qroute *routes[QUEUE_HASH_SIZE];
    TAILQ_HEAD(, qdest) active;
    LIST_HEAD(, qdsn) dsns; /* being committed */
};

/* ---- queue.c: the runner (its loop events, options and entry points) ---- */

/* The queue's clock: opts.now_ms, else the real time. */
int64_t sk_queue_now_ms(const sk_queue *q);
int64_t sk_queue_now_s(const sk_queue *q);
/* Log an event and pass it to opts.on_event; a message event (queued,
 * removed). */
void sk_queue_emit(sk_queue *q, sk_queue_event *ev);
void sk_queue_emit_msg(sk_queue *q, sk_queue_event_type type, const qmsg *m);
/* Look for due work on the next loop pass (coalesced). */
void sk_queue_kick(sk_queue *q);
/* Make the retry timer fire at unix time at (or now, if that has passed). */
void sk_queue_arm_retry(sk_queue *q, int64_t at);
/* The rule a reply matches (NULL: no reply); nothing matched without rules. */
sk_rule_match sk_queue_classify(const sk_queue *q, const sk_reply *r);
/* Look for due messages and start what the limits allow, now (tests that
 * move an injected clock call this instead of waiting for the timers). */
void sk_queue_poke(sk_queue *q);

/* ---- message.c: the message table ---- */

/* Append a message (env is taken); the table stays in arrival order. NULL
 * when out of memory. */
qmsg *sk_queue_msg_add(sk_queue *q, sk_spool_envelope *env, int maybe_delivered);
qmsg *sk_queue_msg_find(sk_queue *q, const char *id);
/* The one place a message's state changes: logged (debug), and the list
 * of messages due now kept to match. */
void sk_queue_msg_set_state(sk_queue *q, qmsg *m, qmsg_state to);
/* A waiting message is due now: on the list of messages due now. */
void sk_queue_msg_ready(sk_queue *q, qmsg *m);
/* Due now, saved as such (flush, release): active, next attempt 0. */
void sk_queue_msg_due_now(sk_queue *q, qmsg *m);
/* Into the hold queue, saved as such (not while delivering). */
void sk_queue_msg_hold(sk_queue *q, qmsg *m);
/* Save its envelope (a failure is logged). */
void sk_queue_msg_save(sk_queue *q, qmsg *m);
/* The message leaves the queue (done, or deleted): its jobs not started
 * are dropped; with jobs running it is freed when the last reports. */
void sk_queue_msg_remove(sk_queue *q, qmsg *m);
/* A deleted message whose last job has reported (or was cancelled). */
void sk_queue_msg_free_deleted(sk_queue *q, qmsg *m);
void sk_queue_msg_free(qmsg *m);

/* ---- attempt.c: delivery attempts ---- */

/* One delivery attempt for m: a job per destination domain, each routed
 * to the queue of its destination. */
void sk_queue_attempt_start(sk_queue *q, qmsg *m);
/* Every job of m's attempt counts here once it has reported or was
 * dropped; the last one ends the attempt (or frees a deleted message). */
void sk_queue_attempt_release(sk_queue *q, qmsg *m);
/* Forget the attempt's recipient table. */
void sk_queue_attempt_clear(qmsg *m);
/* Recipient i's last reply: this attempt's, else the one the envelope kept
 * from an earlier attempt, read from its text form into *scratch; NULL
 * when there is none. */
const sk_reply *sk_queue_last_reply(const qmsg *m, size_t i, sk_reply *scratch);
/* Hand a job that dispatch started to its transport. */
void sk_queue_job_deliver(sk_queue *q, qjob *j);
/* Take j off its message's list of jobs; free it. */
void sk_queue_job_unlink(qjob *j);
void sk_queue_job_free(qjob *j);

/* ---- dispatch.c: destinations and dispatch ---- */

/* Send j to its destination's queue, finding the route key first when
 * domains are grouped by provider. */
void sk_queue_route_job(sk_queue *q, qjob *j);
/* Drop the jobs of m that have not started (it is being removed). */
void sk_queue_cancel_waiting(qmsg *m);
/* Start queued jobs as far as the limits allow; wake again when a paced
 * destination may go on. */
void sk_queue_dispatch(sk_queue *q);
/* A running job has reported: it no longer counts against the limits. */
void sk_queue_job_ended(sk_queue *q, qjob *j);
/* Forget destinations and route keys with nothing left to remember. */
void sk_queue_collect(sk_queue *q);
/* The destination queue recipients at domain go to, when one exists
 * (their route key known, or the domain's own); NULL otherwise. */
const qdest *sk_queue_dest_of(const sk_queue *q, const char *domain);
/* Free every destination and route key, with the jobs waiting in them. */
void sk_queue_dests_free(sk_queue *q);

/* ---- ratelimit.c: throttling and rates ---- */

/* 0 when a message may go at now_ms, else how many ms until one may. */
uint64_t sk_bucket_wait(const sk_bucket *b, int64_t now_ms);
/* Take one message's worth (call when sk_bucket_wait said 0). */
void sk_bucket_take(sk_bucket *b, int64_t now_ms);
/* The rate for a destination containing domain: the first rule naming it,
 * else the default. */
sk_queue_rate sk_queue_rate_for(const sk_queue_opts *o, const char *domain, int *overridden);
/* A domain's job comes to a destination (fresh: the destination is new):
 * a new one takes the domain's rate; an existing one the rate of the first
 * domain that has a rule of its own. */
void sk_pace_join(sk_pace *p, const sk_queue_opts *o, const char *domain, int fresh);
/* How many ms the destination must wait before its next job (0: none). */
int64_t sk_pace_wait(const sk_pace *p, int64_t now_ms);
/* A job starts (after sk_pace_wait said 0). */
void sk_pace_take(sk_pace *p, int64_t now_ms);
/* Nothing to remember: no suspension, no imposed rate, an idle bucket. */
int sk_pace_idle(const sk_pace *p, int64_t now_ms);
/* A failure reply from the destination: suspend or slow it when the rule
 * that matched the reply says so, or on 421 (RFC 5321 4.2.3: the service
 * is closing the channel) and 4.7.x (RFC 3463 3.8, which large receivers
 * use for rate limits) for default_suspend_ms, unless a rule classed the
 * reply as "other" (the built-in greylisting rule: 451 4.7.1 there wants
 * the normal retry schedule). 1 and *for_ms when it did. */
int sk_pace_throttle(sk_pace *p, const sk_reply *r, const sk_rule_match *mt,
                     uint64_t default_suspend_ms, int64_t now_ms, uint64_t *for_ms);

/* ---- retry.c: the retry schedule ---- */

SK_NODISCARD sk_err sk_retry_init(sk_retry *r, const sk_queue_opts *o);
void sk_retry_free(sk_retry *r);
/* Unix time of the next attempt, after `attempts` attempts, the last of
 * which ended at now_s. */
int64_t sk_retry_next(const sk_retry *r, unsigned attempts, int64_t now_ms);
/* Has a message that arrived at arrival (unix seconds) outlived the queue
 * lifetime at now_s? One that arrived in the future (the clock was set
 * back) never expires early. */
int sk_retry_expired(const sk_retry *r, int64_t arrival, int64_t now_s);
/* Has it waited long enough for a delay notice (RFC 3461 5.2.5)? */
int sk_retry_warn_due(const sk_retry *r, int64_t arrival, int64_t now_s);
/* When we give up on it (RFC 3464 2.3.9 Will-Retry-Until), unix seconds. */
int64_t sk_retry_until(const sk_retry *r, int64_t arrival);

/* ---- priority.c: priorities ---- */

/* The level of a priority in a destination's queue: 0 for the lowest. */
int sk_queue_priority_level(int priority);

/* ---- dsn.c: the queue's DSNs ---- */

/* m's attempt has ended (expired recipients marked): spool one DSN to the
 * sender about every recipient whose outcome it reports and whose NOTIFY
 * asks for it, and about those still pending when delay_due. */
void sk_queue_dsn_attempt(sk_queue *q, qmsg *m, int delay_due, int64_t now);

#endif
