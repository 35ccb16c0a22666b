/* Private parts of the control channel shared by its client and server. */
#ifndef SK_CONTROL_INT_H
#define SK_CONTROL_INT_H

#include <smtpkit/control.h>

#include <sys/socket.h>
#include <sys/un.h>

/* The address of the socket in spool_dir. A path too long for sun_path
 * (108 octets) is reached through the directory opened as *dir_fd:
 * /proc/self/fd/N/control.sock (Linux); *dir_fd is -1 otherwise, and the
 * caller closes it once it has bound or connected. -1 with errno set. */
int sk_control_sockaddr(const char *spool_dir, struct sockaddr_un *sa, socklen_t *len, int *dir_fd);

/* Connect to the socket in spool_dir: the connected fd, or -1 with errno
 * (client.c). */
int sk_control_connect(const char *spool_dir);

/* Do r directly on s, a spool opened as its owner (no daemon runs). */
SK_NODISCARD sk_err sk_control_direct(sk_spool *s, const sk_control_request *r,
                                      sk_control_result *res, sk_error *err);

#endif
