/* Fuzz target: the mime module's parsers (mailbox, address list, prepared
 * message envelope and preparation, encoded words) and the round trip of
 * a display name and subject through the composer and the address parser. */
#include <smtpkit/message.h>
#include "mime/mime_int.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void mailbox_roundtrip(const char *name, const char *subject)
{
    /* Whatever name the composer accepts, its From field reads back as it. */
    sk_message *m = sk_message_new();
    if (!m) return;
    sk_buf from = SK_BUF_INIT(1 << 16), out = SK_BUF_INIT(1 << 20);
    sk_mailbox mb = {(char *)name, (char *)"fuzz@example.org"};
    sk_hdr_writer w;
    sk_hdr_begin(&w, &from, "From");
    sk_hdr_mailbox(&w, &mb, "");
    if (sk_hdr_end(&w) == SK_OK && sk_message_set_from(m, "fuzz@example.org", NULL) == SK_OK &&
        sk_message_set_subject(m, subject, NULL) == SK_OK &&
        sk_message_render(m, &out, NULL) == SK_OK) {
        sk_address_list l;
        /* "From:" and the final CRLF are not part of the value. */
        if (sk_address_list_parse(from.data + 5, from.len - 7, &l, NULL) != SK_OK) abort();
        if (l.count != 1 || strcmp(l.items[0].addr, "fuzz@example.org") != 0) abort();
        sk_address_list_clear(&l);
        sk_message_envelope env;
        if (sk_message_parse_envelope(out.data, out.len, &env, NULL) != SK_OK) abort();
        sk_message_envelope_clear(&env);
    }
    sk_buf_free(&from);
    sk_buf_free(&out);
    sk_message_free(m);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 1);
    if (!s) return 0;
    memcpy(s, data, size);
    s[size] = '\0';

    sk_mailbox mb;
    if (sk_mailbox_parse(s, &mb, NULL) == SK_OK) {
        sk_mailbox again;
        if (sk_mailbox_parse(mb.addr, &again, NULL) != SK_OK || strcmp(again.addr, mb.addr) != 0)
            abort();
        sk_mailbox_clear(&again);
        sk_mailbox_clear(&mb);
    }
    sk_address_list l;
    if (sk_address_list_parse(s, size, &l, NULL) == SK_OK) sk_address_list_clear(&l);
    sk_message_envelope env;
    if (sk_message_parse_envelope(s, size, &env, NULL) == SK_OK) sk_message_envelope_clear(&env);
    sk_buf out = SK_BUF_INIT(1 << 20);
    if (sk_message_prepare_raw(s, size, &out, NULL) == SK_OK) {
        /* Only CRLF line ends, each line within 998 octets. */
        size_t col = 0;
        for (size_t i = 0; i < out.len; i++) {
            if (out.data[i] == '\n') abort();
            if (out.data[i] == '\r') {
                if (i + 1 >= out.len || out.data[i + 1] != '\n') abort();
                i++;
                col = 0;
            } else if (++col > SK_MIME_LINE_MAX_OCTETS) {
                abort();
            }
        }
    }
    sk_buf_reset(&out);
    if (sk_mime_decode_words(&out, s, size) == SK_ERR_SYNTAX) abort();
    sk_buf_free(&out);

    if (strlen(s) == size && sk_mime_utf8_valid(s, size) && !strpbrk(s, "\r\n")) {
        char *mid = s + size / 2;
        while (mid > s && ((unsigned char)*mid & 0xc0) == 0x80) mid--;
        char *subject = strdup(mid);
        if (subject) {
            *mid = '\0';
            mailbox_roundtrip(s, subject);
            free(subject);
        }
    }
    free(s);
    return 0;
}
