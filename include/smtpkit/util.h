/* Building blocks shared by every module: errors, the bounded growable
 * buffer, logging, allocation and base64. */
#ifndef SMTPKIT_UTIL_H
#define SMTPKIT_UTIL_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "limits.h"

#ifdef __cplusplus
extern "C" {
#endif

#define SK_NODISCARD    __attribute__((warn_unused_result))
#define SK_PRINTF(f, a) __attribute__((format(printf, f, a)))

/* One error enum for the whole library; SK_OK is 0. */
typedef enum sk_err {
    SK_OK = 0,
    SK_ERR_NOMEM,       /* allocation failed */
    SK_ERR_INVAL,       /* bad argument (includes CR/LF in a header value) */
    SK_ERR_TOO_LONG,    /* a limit was exceeded */
    SK_ERR_SYNTAX,      /* malformed input */
    SK_ERR_IO,          /* read/write/fsync failed */
    SK_ERR_NOSPACE,     /* disk full or quota */
    SK_ERR_NOT_FOUND,   /* no such file, message, user */
    SK_ERR_DNS,         /* name did not resolve */
    SK_ERR_CONNECT,     /* connection refused or unreachable */
    SK_ERR_TIMEOUT,     /* peer did not answer in time */
    SK_ERR_CLOSED,      /* peer closed the connection */
    SK_ERR_PROTOCOL,    /* peer's answers cannot be used (not SMTP) */
    SK_ERR_TLS,         /* TLS handshake or I/O failed */
    SK_ERR_TLS_VERIFY,  /* certificate not trusted, or for another name */
    SK_ERR_UNSUPPORTED, /* the peer does not offer what is needed */
    SK_ERR_AUTH,        /* authentication failed */
    SK_ERR_TEMPFAIL,    /* the peer answered 4xx */
    SK_ERR_PERMFAIL,    /* the peer answered 5xx */
    SK_ERR_CONFIG,      /* configuration error */
    SK_ERR_STATE,       /* call not valid in the current state */
    SK_ERR__COUNT
} sk_err;

/* The step of an SMTP exchange an error happened at. */
typedef enum sk_step {
    SK_STEP_NONE = 0,
    SK_STEP_COMPOSE,
    SK_STEP_DNS,
    SK_STEP_CONNECT,
    SK_STEP_GREETING,
    SK_STEP_EHLO,
    SK_STEP_TLS,
    SK_STEP_AUTH,
    SK_STEP_MAIL,
    SK_STEP_RCPT,
    SK_STEP_DATA,
    SK_STEP_RSET,
    SK_STEP_QUIT,
    SK_STEP__COUNT
} sk_step;

/* Detail for an error: filled by functions that take an sk_error *. */
typedef struct sk_error {
    sk_err err;
    sk_step step;
    int code;                            /* SMTP reply code, 0 when there was none */
    char enhanced[16];                   /* RFC 3463 status ("5.1.1"), "" when none */
    int transient;                       /* 1: trying again later may work */
    char text[SK_REPLY_TEXT_MAX_OCTETS]; /* server text or our description */
    const char *hint;                    /* one line for people; static storage, may be NULL */
} sk_error;

const char *sk_strerror(sk_err e);
const char *sk_step_name(sk_step s);

/* Clear e (if non-NULL). */
void sk_error_clear(sk_error *e);
/* Set e (if non-NULL) to err at step with a formatted description; returns
 * err so callers can write `return sk_error_set(...)`. */
sk_err sk_error_set(sk_error *e, sk_err err, sk_step step, const char *fmt, ...) SK_PRINTF(4, 5);
/* The reason a record or header parser refuses its input: fmt into why
 * (when why is not NULL and size > 0); returns SK_ERR_SYNTAX so parsers
 * can write `return sk_syntax_why(...)`. */
sk_err sk_syntax_why(char *why, size_t size, const char *fmt, ...) SK_PRINTF(3, 4);

/* The sk_err for errno value e after a failed file operation: ENOSPC and
 * EDQUOT are SK_ERR_NOSPACE (a full disk or quota, which passes); ENOENT is
 * SK_ERR_NOT_FOUND when op reads (what was asked for may be absent), and
 * SK_ERR_IO when op makes or writes a file (its directory went missing);
 * any other value is SK_ERR_IO. */
typedef enum sk_file_op { SK_FILE_READ, SK_FILE_WRITE } sk_file_op;
sk_err sk_err_from_errno(int e, sk_file_op op);

/* Allocation. The allocator is process-wide, like curl_global_init_mem:
 * set it once before any other call (tests use it to fail allocations). */
typedef struct sk_allocator {
    void *(*malloc_fn)(size_t);
    void *(*realloc_fn)(void *, size_t);
    void (*free_fn)(void *);
} sk_allocator;
void sk_set_allocator(const sk_allocator *a); /* NULL restores libc's */
void *sk_malloc(size_t n);
void *sk_calloc(size_t n, size_t size);
void *sk_realloc(void *p, size_t n);
void sk_free(void *p);
char *sk_strdup(const char *s);
char *sk_strndup(const char *s, size_t n);

/* The one way an array grows. arrayp is the address of the array's
 * pointer (T **, the pointer NULL at first), *cap the elements it has room
 * for, elem the octets of one. Makes room for need elements: nothing is
 * done when there is room; else the room doubles (from about
 * SK_ARRAY_FIRST_OCTETS) until need fits, but never past max elements.
 * SK_ERR_TOO_LONG when need is over max, SK_ERR_NOMEM when the octets
 * would overflow size_t or the allocation fails, SK_ERR_INVAL for elem 0;
 * on an error the array and *cap are as they were. max is the array's
 * limit (from limits.h or a setting), or SK_ARRAY_UNBOUNDED for an array
 * that only what fills it bounds (input already bounded, rows of a query,
 * files of a directory). */
#define SK_ARRAY_FIRST_OCTETS 64
#define SK_ARRAY_UNBOUNDED    SIZE_MAX
SK_NODISCARD sk_err sk_array_grow(void *arrayp, size_t *cap, size_t need, size_t elem, size_t max);

/* The one growable buffer type. A maximum is required: growing past it
 * fails with SK_ERR_TOO_LONG, never truncates. data is always
 * NUL-terminated after a successful append (the NUL is not counted). */
typedef struct sk_buf {
    char *data;
    size_t len;
    size_t cap;
    size_t max;
} sk_buf;

#define SK_BUF_INIT(maxlen)                                                                        \
    {                                                                                              \
        NULL, 0, 0, (maxlen)                                                                       \
    }
void sk_buf_init(sk_buf *b, size_t max);
void sk_buf_free(sk_buf *b);  /* releases storage; b can be reused after init */
void sk_buf_reset(sk_buf *b); /* len = 0, keeps storage */
/* Cut b back to its first len octets, as when what was appended since is
 * taken back; keeps storage. A len over b->len changes nothing. */
void sk_buf_truncate(sk_buf *b, size_t len);
SK_NODISCARD sk_err sk_buf_reserve(sk_buf *b, size_t extra);
SK_NODISCARD sk_err sk_buf_append(sk_buf *b, const void *p, size_t n);
SK_NODISCARD sk_err sk_buf_puts(sk_buf *b, const char *s);
SK_NODISCARD sk_err sk_buf_putc(sk_buf *b, char c);
SK_NODISCARD sk_err sk_buf_printf(sk_buf *b, const char *fmt, ...) SK_PRINTF(2, 3);
SK_NODISCARD sk_err sk_buf_vprintf(sk_buf *b, const char *fmt, va_list ap) SK_PRINTF(2, 0);
/* Drop the first n bytes. */
void sk_buf_consume(sk_buf *b, size_t n);
/* Hand the storage to the caller (free with sk_free); b is left empty. */
char *sk_buf_detach(sk_buf *b, size_t *len);
/* Always a valid C string, "" when empty. */
const char *sk_buf_cstr(const sk_buf *b);
/* Append what fd reads: up to the end of the file (octets
 * SK_BUF_READ_ALL), or exactly octets octets. SK_ERR_TOO_LONG past b's
 * maximum, SK_ERR_IO on a read error (errno says which; EINTR is retried)
 * or when the file ends short of octets; b is as it was on an error. */
#define SK_BUF_READ_ALL UINT64_MAX
SK_NODISCARD sk_err sk_buf_read_fd(sk_buf *b, int fd, uint64_t octets);

/* Logging: the library never prints; it calls the logger it is given. One
 * line per event: "<id> <module> <event> key=value ...". */
typedef enum sk_log_level { SK_LOG_ERR, SK_LOG_WARN, SK_LOG_INFO, SK_LOG_DEBUG } sk_log_level;
typedef void (*sk_log_fn)(void *ctx, sk_log_level level, const char *line);
typedef struct sk_logger {
    sk_log_fn fn; /* NULL: logging off */
    void *ctx;
    sk_log_level max_level; /* events above this level are not formatted */
    /* Optional: write out the lines fn has buffered. A logger that writes
     * each line with its own system call can instead buffer them and let
     * the daemon call this once a burst of events has been handled (at the
     * end of each event-loop pass), which turns many small writes into one
     * without delaying a line past that pass (docs/serve.md "Logs"). */
    void (*flush)(void *ctx);
} sk_logger;
void sk_log(const sk_logger *l, sk_log_level level, const char *fmt, ...) SK_PRINTF(3, 4);
/* The level's name: "error", "warning", "info" or "debug"; and back
 * (SK_ERR_SYNTAX for any other word). */
const char *sk_log_level_name(sk_log_level level);
SK_NODISCARD sk_err sk_log_level_parse(const char *name, sk_log_level *out);
/* A log line taken apart (for structured output such as JSON):
 * "<id> <module> <event> key=value key=\"quoted\" key=<path> word ...".
 * Quoted and <...> values are unescaped (the escapes of sk_log_escape; a
 * <...> value keeps its brackets and ends at a '>' before a space or the
 * end that is not inside an escaped quoted local part), others are taken
 * as they are. Words that are not key=value, and fields beyond
 * SK_LOG_FIELDS_MAX, are kept in text, one space apart. Every string points
 * into the record; "" when absent. */
typedef struct sk_log_field {
    const char *key;
    const char *value;
    size_t value_len; /* an unescaped value may hold a NUL octet */
} sk_log_field;
typedef struct sk_log_record {
    const char *id, *module, *event;
    sk_log_field fields[SK_LOG_FIELDS_MAX];
    size_t n_fields;
    const char *text;
    char store[SK_LOG_LINE_MAX_OCTETS + 1];
    char text_store[SK_LOG_LINE_MAX_OCTETS + 1];
} sk_log_record;
/* SK_ERR_TOO_LONG for a line over SK_LOG_LINE_MAX_OCTETS. */
SK_NODISCARD sk_err sk_log_record_parse(const char *line, sk_log_record *out);
/* Append s (n octets, from a peer) to b with control and non-ASCII octets
 * escaped as \xHH and '"' and '\\' backslash-escaped. */
SK_NODISCARD sk_err sk_log_escape(sk_buf *b, const char *s, size_t n);

/* ASCII characters the same in every locale (<ctype.h>'s follow it), for
 * parsers that ask per octet: the classes of RFC 5234 B.1 (WSP, ALPHA,
 * DIGIT, and ALPHA / DIGIT), RFC 5322 3.2.3 atext, and a letter in lower
 * case (other octets as they are). */
static inline bool sk_is_wsp(int c)
{
    return c == ' ' || c == '\t';
}
static inline bool sk_is_alpha(int c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}
static inline bool sk_is_digit(int c)
{
    return c >= '0' && c <= '9';
}
static inline bool sk_is_alnum(int c)
{
    return sk_is_alpha(c) || sk_is_digit(c);
}
static inline bool sk_is_atext(int c)
{
    return sk_is_alnum(c) || (c > 0 && c < 0x80 && strchr("!#$%&'*+-/=?^_`{|}~", c));
}
static inline int sk_to_lower(int c)
{
    return c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c;
}

/* Hexadecimal: the value of the digit c (0-9, A-F or a-f), -1 when c is
 * none; and the n octets at in as 2 * n digits at out (upper or lower
 * case), followed by a NUL (out holds 2 * n + 1 chars). */
int sk_hex_value(int c);
void sk_hex_encode(char *out, const void *in, size_t n, bool upper);

/* Base64 (RFC 4648 section 4), no line breaks. */
SK_NODISCARD sk_err sk_base64_encode(sk_buf *out, const void *in, size_t n);
/* Decoding rejects characters outside the alphabet and bad padding
 * (SK_ERR_SYNTAX). */
SK_NODISCARD sk_err sk_base64_decode(sk_buf *out, const char *in, size_t n);

/* Monotonic milliseconds, and wall-clock time as RFC 3339 / RFC 5322. */
uint64_t sk_now_ms(void);
void sk_time_rfc3339(int64_t unix_seconds, char out[32]);
void sk_time_rfc5322(int64_t unix_seconds, char out[40]);

/* Strings. */
int sk_strcaseprefix(const char *s, const char *prefix); /* 1 if s starts with prefix */
/* s[0..n) with its ASCII letters in lower case (names that compare
 * without case: domains, hosts, keys). */
void sk_ascii_lower(char *s, size_t n);
/* Is s[0..n) a word of letters, digits and '-' that starts and ends with a
 * letter or digit (RFC 5321 4.1.2 Let-dig [Ldh-str]: a Keyword, a domain
 * label)? */
bool sk_is_ldh_word(const char *s, size_t n);
/* Parse a decimal size or duration, e.g. "10M", "5d", "250ms". */
SK_NODISCARD sk_err sk_parse_size(const char *s, uint64_t *out);
SK_NODISCARD sk_err sk_parse_duration_ms(const char *s, uint64_t *out);
/* The name in the NULL-terminated names nearest to word, for "did you
 * mean" messages: at most a third of word's octets (and at least one) edited
 * (inserted, deleted, replaced, or swapped with its neighbour), or word is
 * a prefix (3 octets or more) of the name. NULL when none is that close,
 * or word is over SK_NEAREST_MAX_OCTETS. */
const char *sk_nearest(const char *word, const char *const *names);
/* Random bytes from the OS (getrandom). */
SK_NODISCARD sk_err sk_random(void *out, size_t n);

#ifdef __cplusplus
}
#endif
#endif
