/* `smtpkit serve` before it serves: the data directory checked (and given
 * to --user) before any port opens, and the switch to --user once the
 * ports are bound. */
#include "daemon_impl.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Can files be made in dir? An unnamed file (O_TMPFILE) leaves nothing
 * behind; where the file system has no such files, a named one is made
 * and removed. Returns 0 or an errno value. */
static int probe_writable(const char *dir)
{
    int fd = open(dir, O_TMPFILE | O_WRONLY | O_CLOEXEC, 0600);
    if (fd >= 0) {
        close(fd);
        return 0;
    }
    if (errno != EOPNOTSUPP && errno != EISDIR && errno != EINVAL) return errno;
    char name[PATH_MAX];
    if ((size_t)snprintf(name, sizeof name, "%s/.smtpkit-write-test.%ld", dir, (long)getpid()) >=
        sizeof name)
        return ENAMETOOLONG;
    fd = open(name, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0600);
    if (fd < 0) return errno;
    close(fd);
    unlink(name);
    return 0;
}

/* The directories the daemon writes in, below the data directory; those
 * that do not exist yet are made later, in one that was found writable. */
static const char *const data_subdirs[] = {"", "/spool", "/spool/msg", "/mailboxes"};

static sk_err check_writable(const char *data_dir, const char *as_user, sk_error *err)
{
    for (size_t i = 0; i < sizeof data_subdirs / sizeof data_subdirs[0]; i++) {
        char path[PATH_MAX];
        if ((size_t)snprintf(path, sizeof path, "%s%s", data_dir, data_subdirs[i]) >= sizeof path)
            return sk_error_set(err, SK_ERR_CONFIG, SK_STEP_NONE, "data-dir %s: path too long",
                                data_dir);
        struct stat st;
        if (stat(path, &st) != 0) {
            if (errno == ENOENT && i > 0) continue;
            return sk_error_set(err, SK_ERR_CONFIG, SK_STEP_NONE, "data-dir %s: %s: %s", data_dir,
                                path, strerror(errno));
        }
        if (!S_ISDIR(st.st_mode))
            return sk_error_set(err, SK_ERR_CONFIG, SK_STEP_NONE,
                                "data-dir %s: %s is not a directory", data_dir,
                                i ? data_subdirs[i] + 1 : "it");
        int why = probe_writable(path);
        if (why)
            return sk_error_set(err, SK_ERR_CONFIG, SK_STEP_NONE,
                                "data-dir %s: cannot write in %s%s%s: %s", data_dir,
                                i ? data_subdirs[i] + 1 : "it", as_user ? " as user " : "",
                                as_user ? as_user : "", strerror(why));
    }
    return SK_OK;
}

/* Run check_writable with the effective user and groups of pw, then be
 * root again (nothing runs in other threads yet). */
static sk_err check_writable_as(const char *data_dir, const struct passwd *pw, sk_error *err)
{
    int nsaved = getgroups(0, NULL);
    gid_t *saved = nsaved >= 0 ? sk_calloc((size_t)nsaved + 1, sizeof *saved) : NULL;
    if (!saved) return sk_error_set(err, SK_ERR_NOMEM, SK_STEP_NONE, "out of memory");
    nsaved = getgroups(nsaved, saved);
    gid_t egid = getegid();
    if (nsaved < 0 || initgroups(pw->pw_name, pw->pw_gid) != 0 || setegid(pw->pw_gid) != 0 ||
        seteuid(pw->pw_uid) != 0) {
        sk_free(saved);
        return sk_error_set(err, SK_ERR_CONFIG, SK_STEP_NONE,
                            "user: cannot take the identity of %s to check %s: %s", pw->pw_name,
                            data_dir, strerror(errno));
    }
    sk_err e = check_writable(data_dir, pw->pw_name, err);
    int back = seteuid(0) == 0 && setegid(egid) == 0 && setgroups((size_t)nsaved, saved) == 0;
    sk_free(saved);
    if (!back)
        return sk_error_set(err, SK_ERR_CONFIG, SK_STEP_NONE,
                            "cannot become root again after checking %s: %s", data_dir,
                            strerror(errno));
    return e;
}

/* The data directory, before any port opens: created when missing (given
 * to --user when we start as root and switch to it), a directory, and
 * writable by the user the daemon will run as, with the spool and mailbox
 * directories already in it. What is wrong with it is configuration
 * (exit 78), said with the directory and the reason (docs/serve.md). */
sk_err sk_daemon_check_data_dir(sk_daemon *d, sk_error *err)
{
    const char *dir = d->cfg->data_dir;
    if (mkdir(dir, 0750) != 0 && errno != EEXIST)
        return sk_error_set(err, SK_ERR_CONFIG, SK_STEP_NONE, "data-dir %s: cannot create it: %s%s",
                            dir, strerror(errno),
                            errno == ENOENT ? " (its parent directory does not exist)" : "");
    struct stat st;
    if (stat(dir, &st) != 0)
        return sk_error_set(err, SK_ERR_CONFIG, SK_STEP_NONE, "data-dir %s: %s", dir,
                            strerror(errno));
    if (!S_ISDIR(st.st_mode))
        return sk_error_set(err, SK_ERR_CONFIG, SK_STEP_NONE, "data-dir %s: not a directory", dir);
    const char *name = d->cfg->user;
    if (!name || geteuid() != 0) return check_writable(dir, NULL, err);
    struct passwd *pw = getpwnam(name);
    if (!pw) return sk_error_set(err, SK_ERR_CONFIG, SK_STEP_NONE, "user: no user %s", name);
    /* The data directory belongs to the user we run as. */
    if (chown(dir, pw->pw_uid, pw->pw_gid) != 0)
        return sk_error_set(err, SK_ERR_CONFIG, SK_STEP_NONE, "data-dir %s: cannot chown it: %s",
                            dir, strerror(errno));
    return check_writable_as(dir, pw, err);
}

/* Drop root for the named user once the listeners are bound (the data
 * directory was given to it by sk_daemon_check_data_dir). */
sk_err sk_daemon_drop_privileges(sk_daemon *d, sk_error *err)
{
    const char *name = d->cfg->user;
    if (!name) return SK_OK;
    struct passwd *pw = getpwnam(name);
    if (!pw) return sk_error_set(err, SK_ERR_CONFIG, SK_STEP_NONE, "user: no user %s", name);
    if (geteuid() != 0) {
        if (geteuid() == pw->pw_uid) return SK_OK;
        return sk_error_set(err, SK_ERR_CONFIG, SK_STEP_NONE,
                            "user: switching to %s needs to be started as root", name);
    }
    if (initgroups(pw->pw_name, pw->pw_gid) != 0 || setgid(pw->pw_gid) != 0 ||
        setuid(pw->pw_uid) != 0)
        return sk_error_set(err, SK_ERR_CONFIG, SK_STEP_NONE, "cannot switch to user %s: %s", name,
                            strerror(errno));
    /* Make sure there is no way back. */
    if (setuid(0) == 0)
        return sk_error_set(err, SK_ERR_CONFIG, SK_STEP_NONE, "privileges could not be dropped");
    sk_log(&d->log, SK_LOG_INFO, "- daemon privileges-dropped user=%s uid=%u", name,
           (unsigned)pw->pw_uid);
    return SK_OK;
}
