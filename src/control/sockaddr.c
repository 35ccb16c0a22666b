/* Where the control socket is: its address for bind(2) and connect(2). */
#include "control/control_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int sk_control_sockaddr(const char *spool_dir, struct sockaddr_un *sa, socklen_t *len, int *dir_fd)
{
    *dir_fd = -1;
    memset(sa, 0, sizeof *sa);
    sa->sun_family = AF_UNIX;
    int n = snprintf(sa->sun_path, sizeof sa->sun_path, "%s/%s", spool_dir, SK_CONTROL_SOCKET_NAME);
    if (n < 0) return -1;
    if ((size_t)n >= sizeof sa->sun_path) {
        /* A deep data directory: sun_path holds 108 octets, a path may be
         * 4096. The directory opened here stands for its path. */
        *dir_fd = open(spool_dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (*dir_fd < 0) return -1;
        n = snprintf(sa->sun_path, sizeof sa->sun_path, "/proc/self/fd/%d/%s", *dir_fd,
                     SK_CONTROL_SOCKET_NAME);
    }
    *len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + (size_t)n + 1);
    return 0;
}
