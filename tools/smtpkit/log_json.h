/* A library log line as one JSON object (smtpkit serve --log-format json). */
#ifndef SMTPKIT_CLI_LOG_JSON_H
#define SMTPKIT_CLI_LOG_JSON_H

#include <smtpkit/util.h>

/* {"time": ts, "level", "id", "module", "event", then each key=value field
 * of the line as a member of its own (values are strings), and "text" for
 * the words that are not key=value (and a field whose key is taken)}. A
 * value that is not UTF-8 keeps the line's \xHH escapes. Returns one line
 * without a line end, to free(); NULL when out of memory. */
char *cli_log_json(sk_log_level level, const char *line, const char *ts);

#endif
