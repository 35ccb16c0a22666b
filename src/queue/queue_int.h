/* Private parts of the queue runner: applying operations, and the control
 * directory through which other processes ask a running daemon for them. */
#ifndef SK_QUEUE_INT_H
#define SK_QUEUE_INT_H

#include <smtpkit/queue.h>

/* Apply op to a running queue (loop thread). */
sk_err sk_queue_apply(sk_queue *q, sk_queue_op op, const char *id);

/* Answer every request waiting in ctl_dir (loop thread). */
void sk_queue_control_poll(sk_queue *q, const char *ctl_dir, const sk_logger *log);

#endif
