/* The library's error enum, step names, sk_error filling and the one errno
 * mapping. */
#include <smtpkit/util.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>

static const char *const err_names[] = {
    [SK_OK] = "success",
    [SK_ERR_NOMEM] = "out of memory",
    [SK_ERR_INVAL] = "invalid argument",
    [SK_ERR_TOO_LONG] = "limit exceeded",
    [SK_ERR_SYNTAX] = "syntax error",
    [SK_ERR_IO] = "input/output error",
    [SK_ERR_NOSPACE] = "no space left",
    [SK_ERR_NOT_FOUND] = "not found",
    [SK_ERR_DNS] = "name resolution failed",
    [SK_ERR_CONNECT] = "connection failed",
    [SK_ERR_TIMEOUT] = "timed out",
    [SK_ERR_CLOSED] = "connection closed by peer",
    [SK_ERR_PROTOCOL] = "protocol error",
    [SK_ERR_TLS] = "TLS error",
    [SK_ERR_TLS_VERIFY] = "certificate verification failed",
    [SK_ERR_UNSUPPORTED] = "not supported by the peer",
    [SK_ERR_AUTH] = "authentication failed",
    [SK_ERR_TEMPFAIL] = "temporary failure",
    [SK_ERR_PERMFAIL] = "permanent failure",
    [SK_ERR_CONFIG] = "configuration error",
    [SK_ERR_STATE] = "invalid state",
};
_Static_assert(sizeof err_names / sizeof err_names[0] == SK_ERR__COUNT, "err_names");

static const char *const step_names[] = {
    [SK_STEP_NONE] = "none",       [SK_STEP_COMPOSE] = "compose",   [SK_STEP_DNS] = "DNS",
    [SK_STEP_CONNECT] = "connect", [SK_STEP_GREETING] = "greeting", [SK_STEP_EHLO] = "EHLO",
    [SK_STEP_TLS] = "TLS",         [SK_STEP_AUTH] = "AUTH",         [SK_STEP_MAIL] = "MAIL",
    [SK_STEP_RCPT] = "RCPT",       [SK_STEP_DATA] = "DATA",         [SK_STEP_RSET] = "RSET",
    [SK_STEP_QUIT] = "QUIT",
};
_Static_assert(sizeof step_names / sizeof step_names[0] == SK_STEP__COUNT, "step_names");

const char *sk_strerror(sk_err e)
{
    if ((unsigned)e >= SK_ERR__COUNT) return "unknown error";
    return err_names[e];
}

const char *sk_step_name(sk_step s)
{
    if ((unsigned)s >= SK_STEP__COUNT) return "unknown";
    return step_names[s];
}

void sk_error_clear(sk_error *e)
{
    if (e) memset(e, 0, sizeof *e);
}

sk_err sk_error_set(sk_error *e, sk_err err, sk_step step, const char *fmt, ...)
{
    if (!e) return err;
    sk_error_clear(e);
    e->err = err;
    e->step = step;
    e->transient = err == SK_ERR_TEMPFAIL || err == SK_ERR_TIMEOUT || err == SK_ERR_CONNECT ||
                   err == SK_ERR_CLOSED || err == SK_ERR_DNS;
    if (fmt) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(e->text, sizeof e->text, fmt, ap);
        va_end(ap);
    }
    return err;
}

sk_err sk_syntax_why(char *why, size_t size, const char *fmt, ...)
{
    if (why && size) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(why, size, fmt, ap);
        va_end(ap);
    }
    return SK_ERR_SYNTAX;
}

sk_err sk_err_from_errno(int e, sk_file_op op)
{
    if (e == ENOSPC || e == EDQUOT) return SK_ERR_NOSPACE;
    if (e == ENOENT && op == SK_FILE_READ) return SK_ERR_NOT_FOUND;
    return SK_ERR_IO;
}
