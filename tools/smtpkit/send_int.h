/* Inside `smtpkit send`, shared by its files: the arguments, the session
 * and the command (send.c), the message composed from the options or taken
 * as given (send_compose.c), and the report, the transcript and the
 * progress line (send_report.c). */
#ifndef SK_TOOLS_SEND_INT_H
#define SK_TOOLS_SEND_INT_H

#include "cli.h"

/* The subcommand's name in messages. */
#define CMD "send"

/* The progress line: for messages this large (smaller ones go out in a
 * blink), redrawn at most this often. */
#define SEND_PROGRESS_MIN_OCTETS  (256u * 1024)
#define SEND_PROGRESS_INTERVAL_MS 250

/* A repeatable option's values (room for one per argument). */
typedef struct str_list {
    const char **v;
    size_t n;
} str_list;

/* The options, as given. */
typedef struct send_args {
    const char *server;
    sk_tls_mode tls;
    const char *ca_file;
    int insecure;
    const char *tls_name;
    const char *helo;
    uint64_t timeout_ms;
    const char *user;
    const char *password_file;
    const char *oauth_token_file;
    const char *auth;
    int allow_plaintext_auth;
    const char *from;
    str_list to, cc, bcc, attach, inline_parts, headers;
    const char *subject;
    const char *text;
    const char *html;
    const char *message;
    int has_priority;
    int priority;
    const char *dsn_notify;
    const char *dsn_ret;
    const char *envid;
    int verbose;
    int quiet;
    int json;
} send_args;

/* The progress line's state (stderr is a terminal). */
typedef struct progress {
    uint64_t start_ms, last_ms;
    int open; /* a line is on the screen without its line end */
} progress;

/* What happened, for the report: filled as far as the attempt got. */
typedef struct outcome {
    int exit_code;
    const char *bad_arg; /* the argument a usage/data error is about */
    sk_error err;        /* err.err == SK_OK: no error */
    char server[300];
    sk_client *client;
    sk_send_result res;
    int have_res;
    const char *const *rcpts; /* the envelope recipients */
    size_t nrcpt;
    char message_id[256];
    progress prog;
} outcome;

/* The bytes to send and the envelope. */
typedef struct prepared {
    sk_buf data;
    sk_message_envelope env;
    char *from_addr; /* envelope sender from --from, when given */
} prepared;

/* ---- the report (send_report.c) ---- */

/* Multi-line replies on one line, to f. */
void sn_print_flat(FILE *f, const char *s);
/* What went wrong (e) at the step `what`, for people, on stderr. */
void sn_print_error_block(const outcome *o, const char *what, const sk_error *e);
/* The outcome as one JSON object on stdout (--json). */
void sn_json_report(const outcome *o);
/* A usage (64), data (65) or configuration (78) error found before
 * connecting: one line naming the argument, and the JSON object if asked. */
int sn_fail_early(outcome *o, const send_args *a, int code, const char *arg, sk_step step,
                  const char *fmt, ...) SK_PRINTF(6, 7);
/* --verbose: the session's lines on stderr. */
void sn_transcript(void *ctx, char dir, const char *line, size_t len);
/* A size for people, in decimal units. */
void sn_human_size(uint64_t n, char *out, size_t size);
/* The progress line (the library's progress callback; ctx the
 * outcome's progress) and its end. */
void sn_show_progress(void *ctx, uint64_t sent, uint64_t total);
void sn_progress_end(outcome *o);

/* ---- the message (send_compose.c); each returns -1 to go on, or the
 * exit code after reporting the error ---- */

/* The message from --from, --to, --subject, --text and the others. */
int sn_compose(outcome *o, const send_args *a, prepared *p);
/* The message of --message, as given. */
int sn_prepare_raw(outcome *o, const send_args *a, prepared *p);
/* The envelope addresses given on the command line. */
int sn_flag_envelope(outcome *o, const send_args *a, prepared *p);

#endif
