/* Fuzz target: log lines taken apart (sk_log_record_parse), and values
 * escaped as the library logs them coming back unchanged. */
#include <smtpkit/util.h>

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bool is_key_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '-' || c == '.';
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    sk_log_record *r = malloc(sizeof *r);
    if (!r) return 0;
    /* The input as a line (up to its first NUL). */
    char *line = malloc(size + 1);
    if (!line) {
        free(r);
        return 0;
    }
    memcpy(line, data, size);
    line[size] = '\0';
    size_t len = strlen(line);
    sk_err e = sk_log_record_parse(line, r);
    if ((e != SK_OK) != (len > SK_LOG_LINE_MAX_OCTETS)) abort();
    if (e == SK_OK) {
        if (r->n_fields > SK_LOG_FIELDS_MAX) abort();
        if (strlen(r->id) > len || strlen(r->module) > len || strlen(r->event) > len ||
            strlen(r->text) > len || strchr(r->id, ' ') || strchr(r->module, ' ') ||
            strchr(r->event, ' '))
            abort();
        for (size_t i = 0; i < r->n_fields; i++) {
            const sk_log_field *f = &r->fields[i];
            if (!f->key[0] || f->value_len > len || f->value[f->value_len] != '\0') abort();
            for (const char *k = f->key; *k; k++)
                if (!is_key_char(*k)) abort();
        }
    }

    /* Any octets, escaped as the library logs a peer's string, read back
     * the same, quoted and between angle brackets. */
    sk_buf esc = SK_BUF_INIT(4 * SK_LOG_LINE_MAX_OCTETS);
    if (size <= 400 && sk_log_escape(&esc, (const char *)data, size) == SK_OK) {
        sk_buf l = SK_BUF_INIT(SK_LOG_LINE_MAX_OCTETS);
        if (sk_buf_printf(&l, "- fuzz value a=\"%s\" b=<%s> c=1", sk_buf_cstr(&esc),
                          sk_buf_cstr(&esc)) == SK_OK) {
            bool angle_ok = !memchr(data, '>', size);
            if (sk_log_record_parse(sk_buf_cstr(&l), r) != SK_OK || r->n_fields < 2 ||
                strcmp(r->event, "value") || (angle_ok && (r->n_fields != 3 || r->text[0])))
                abort();
            const sk_log_field *a = &r->fields[0], *b = &r->fields[1];
            if (strcmp(a->key, "a") || a->value_len != size ||
                (size && memcmp(a->value, data, size)))
                abort();
            /* '>' is not escaped: "<a> b>" cannot be told from "<a>" and
             * "b>" (paths have it only in quoted local parts, tested in
             * test_util). */
            if (angle_ok &&
                (strcmp(b->key, "b") || b->value_len != size + 2 || b->value[0] != '<' ||
                 (size && memcmp(b->value + 1, data, size)) || b->value[size + 1] != '>'))
                abort();
            if (angle_ok && (strcmp(r->fields[2].key, "c") || strcmp(r->fields[2].value, "1")))
                abort();
        }
        sk_buf_free(&l);
    }
    sk_buf_free(&esc);
    free(line);
    free(r);
    return 0;
}
