/* Shared declarations of the smtpkit CLI: subcommands and small helpers. */
#ifndef SMTPKIT_CLI_H
#define SMTPKIT_CLI_H

#include <jansson.h>
#include <smtpkit/smtpkit.h>
#include <stdio.h>
#include <sysexits.h>

/* Each subcommand lives in its own file: argv[0] is the subcommand name. */
int cmd_send(int argc, char **argv);
int cmd_serve(int argc, char **argv);
int cmd_queue(int argc, char **argv);
int cmd_track(int argc, char **argv);
int cmd_stats(int argc, char **argv);
int cmd_suppress(int argc, char **argv);
int cmd_passwd(int argc, char **argv);
int cmd_probe(int argc, char **argv);
int cmd_dmarc(int argc, char **argv);
int cmd_dkim(int argc, char **argv);
int cmd_spf(int argc, char **argv);
int cmd_arc(int argc, char **argv);
int cmd_check(int argc, char **argv);
int cmd_apikey(int argc, char **argv);
int cmd_bounce(int argc, char **argv);

/* Print "smtpkit CMD: message" to stderr and return EX_USAGE (64). */
int cli_usage_error(const char *cmd, const char *fmt, ...) SK_PRINTF(2, 3);
/* Print "smtpkit CMD: message" to stderr. */
void cli_warn(const char *cmd, const char *fmt, ...) SK_PRINTF(2, 3);

/* The closest of the NULL-terminated names to word, or NULL when none is
 * close: the library's sk_nearest, so that the CLI and the daemon's config
 * file suggest alike. */
const char *cli_nearest(const char *word, const char *const *names);
/* "smtpkit CMD: unknown option '--x' (did you mean '--y'?)" on stderr, for
 * every subcommand in one format; names is NULL-terminated, without the
 * leading "--". Returns EX_USAGE. */
int cli_unknown_option(const char *cmd, const char *arg, const char *const *names);
/* The arguments of a subcommand made of words and options (`smtpkit
 * suppress add ADDR --for 30d`): -h/--help prints usage to stdout; each of
 * the nvalued options ("--name" in valued[i]) stores its value in
 * *slots[i]; --json sets *json; the other arguments are words, at most
 * max_words. Returns -1 when the command goes on, else the exit code
 * (EX_OK after --help, EX_USAGE with the reason on stderr). */
#define CLI_WORD_OPTIONS_MAX 8
int cli_parse_words(const char *cmd, int argc, char **argv, const char *const *valued,
                    const char **const *slots, size_t nvalued, int *json, const char **words,
                    size_t max_words, void (*usage)(FILE *));
/* The library's hints (sk_client_hint, sk_client_probe) in our options'
 * words; send adds --allow-plaintext-auth, which probe does not have. */
extern const sk_option_names cli_option_names;
/* The same from a getopt_long table (names are the table's long options). */
struct option;
int cli_unknown_long_option(const char *cmd, const char *arg, const struct option *opts);
/* What getopt_long's ':' (a value missing) or '?' (an unknown option) says
 * for the option just read, argv[optind - 1]. Returns EX_USAGE. */
int cli_getopt_error(const char *cmd, int opt, char **argv, const struct option *opts);
/* Whether -h or --help stands anywhere in the arguments: it wins before any
 * other argument is looked at. */
int cli_help_asked(int argc, char **argv);
/* The --domain and --selector of a DKIM or ARC signature that ACTION of CMD
 * needs: EX_OK, or EX_USAGE with a message naming the argument. */
int cli_dkim_names(const char *cmd, const char *action, const char *domain, const char *selector);

/* The data directory of the operator commands (queue, track, stats,
 * suppress) and of serve, chosen in one order, first found wins:
 * --data-dir, then the data-dir key of --config FILE (the daemon's config
 * file), then $SMTPKIT_DATA_DIR, then ./var (serve's embedded default). */
#define CLI_DATA_DIR_ENV     "SMTPKIT_DATA_DIR"
#define CLI_DATA_DIR_DEFAULT "./var"
typedef enum cli_data_dir_source {
    CLI_DATA_DIR_FLAG,
    CLI_DATA_DIR_CONFIG,
    CLI_DATA_DIR_ENV_VAR,
    CLI_DATA_DIR_BUILT_IN,
} cli_data_dir_source;
typedef struct cli_data_dir {
    char *path; /* sk_free (cli_data_dir_clear) */
    cli_data_dir_source source;
    char how[512]; /* how it was chosen, for messages: "the default; set ..." */
} cli_data_dir;
/* Resolve the data directory from flag (--data-dir, or NULL) and
 * config_path (--config, or NULL; read only when there is no flag).
 * Returns EX_OK, or prints why not and returns the exit code: EX_CONFIG
 * for a config file that cannot be read or has a mistake and for an empty
 * SMTPKIT_DATA_DIR, EX_OSERR when out of memory. */
int cli_data_dir_resolve(const char *cmd, const char *flag, const char *config_path,
                         cli_data_dir *out);
void cli_data_dir_clear(cli_data_dir *d);

/* Map a library error to a sysexits.h exit code (DESIGN.md contract). */
int cli_exit_code(const sk_error *e);

/* Read the first line of a file (without its line end), e.g. a password
 * file. Returns a string to free with sk_free, or NULL (errno set). */
char *cli_read_first_line(const char *path);
/* Read a whole file (or "-" for stdin); NULL on error. */
char *cli_read_file(const char *path, size_t *len);

/* A message for the authentication commands (dkim, arc), read whole from
 * a file or standard input (path NULL or "-"). One with LF line ends (no
 * CRLF at all) is fed to the library as CRLF, as a server would get it. */
typedef struct cli_message {
    char *raw; /* as read; free() */
    size_t len;
    int lf;
} cli_message;
/* EX_OK, or a message naming the file (prefixed "smtpkit CMD:") and
 * EX_NOINPUT. */
int cli_message_read(const char *cmd, const char *path, cli_message *m);
/* The message to fn in pieces of at most CLI_MESSAGE_CHUNK_OCTETS (LF
 * turned into CRLF when m->lf): the first error fn returns. */
#define CLI_MESSAGE_CHUNK_OCTETS (64 * 1024)
typedef sk_err (*cli_feed_fn)(void *obj, const void *p, size_t n);
sk_err cli_message_feed(const cli_message *m, cli_feed_fn fn, void *obj);
/* The header block (its fields with their line ends, not the empty line
 * after them; the whole message when it has none) in CRLF, appended to
 * out. */
sk_err cli_message_head(const cli_message *m, sk_buf *out);
/* Write fields (CRLF line ends, from the library) in m's line ends. */
void cli_message_put_fields(const cli_message *m, const char *fields, size_t len, FILE *f);

/* --json output: a jansson value built whole, then dumped once by
 * cli_json_print (compact, keys in the order they were set, a newline;
 * the value is freed). Out of memory ends the program (EX_OSERR). A
 * string: NULL gives null; text that is not UTF-8 keeps the log's \xHH
 * escapes. cli_jset and cli_jpush take v over. */
json_t *cli_jstr(const char *s);
json_t *cli_jstrn(const char *s, size_t n);
json_t *cli_jnull(void);
json_t *cli_jint(long long n);
json_t *cli_jbool(int b);
json_t *cli_jobj(void);
json_t *cli_jarr(void);
void cli_jset(json_t *obj, const char *key, json_t *v);
void cli_jpush(json_t *arr, json_t *v);
void cli_json_print(json_t *v);

#endif
