/* `smtpkit serve --log-format json`: a log line of the library as one JSON
 * object (jansson). */
#include "log_json.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

/* A JSON string member; a value that is not UTF-8 (jansson refuses it)
 * keeps the log line's \xHH escapes. */
static int json_put(json_t *o, const char *key, const char *s, size_t n)
{
    json_t *v = json_stringn(s, n);
    if (!v) {
        sk_buf esc = SK_BUF_INIT(4 * SK_LOG_LINE_MAX_OCTETS);
        if (sk_log_escape(&esc, s, n) == SK_OK) v = json_stringn(sk_buf_cstr(&esc), esc.len);
        sk_buf_free(&esc);
    }
    return v ? json_object_set_new(o, key, v) : -1;
}

char *cli_log_json(sk_log_level level, const char *line, const char *ts)
{
    sk_log_record *r = malloc(sizeof *r);
    json_t *o = json_object();
    int bad = !r || !o;
    bad = bad || json_put(o, "time", ts, strlen(ts));
    bad = bad || json_put(o, "level", sk_log_level_name(level), strlen(sk_log_level_name(level)));
    sk_buf text = SK_BUF_INIT(2 * SK_LOG_LINE_MAX_OCTETS);
    if (!bad && sk_log_record_parse(line, r) == SK_OK) {
        bad = json_put(o, "id", r->id, strlen(r->id)) ||
              json_put(o, "module", r->module, strlen(r->module)) ||
              json_put(o, "event", r->event, strlen(r->event));
        for (size_t i = 0; !bad && i < r->n_fields; i++) {
            const sk_log_field *f = &r->fields[i];
            if (json_object_get(o, f->key) || !strcmp(f->key, "text")) {
                bad = (text.len && sk_buf_putc(&text, ' ')) ||
                      sk_buf_printf(&text, "%s=", f->key) ||
                      sk_log_escape(&text, f->value, f->value_len);
                continue;
            }
            bad = json_put(o, f->key, f->value, f->value_len);
        }
        if (!bad && r->text[0])
            bad = (text.len && sk_buf_putc(&text, ' ')) || sk_buf_puts(&text, r->text);
    } else if (!bad) {
        /* Longer than any line sk_log makes: kept whole. */
        bad = sk_buf_puts(&text, line);
    }
    if (!bad && text.len) bad = json_put(o, "text", text.data, text.len);
    char *out = bad ? NULL : json_dumps(o, JSON_COMPACT);
    sk_buf_free(&text);
    json_decref(o);
    free(r);
    return out;
}
