/* The DATA/BDAT message stream decoder: end-of-data detection, dot
 * un-stuffing, line-end and NUL checks (RFC 5321 2.3.8, 4.1.1.4, 4.5.2;
 * RFC 2045 2.7, 2.8). */
#include <smtpkit/proto.h>

/* Where we are in a line. A CR is held back until we know whether an LF
 * follows; a dot at the start of a line until we know what follows it. */
enum { D_BOL, D_MID, D_CR, D_DOT, D_DOTCR };

void sk_data_decoder_init(sk_data_decoder *d, int bdat)
{
    d->state = D_BOL;
    d->bdat = bdat;
    d->bad = 0;
}

size_t sk_data_decode(sk_data_decoder *d, const char *in, size_t n, char *out, size_t *out_len,
                      int *end)
{
    size_t o = 0, i = 0;
    *end = 0;
    for (; i < n; i++) {
        char c = in[i];
        switch (d->state) {
        case D_DOT:
            if (c == '\r') {
                d->state = D_DOTCR;
                continue;
            }
            /* A stuffed dot (RFC 5321 4.5.2): drop it, the line goes on. */
            d->state = D_MID;
            goto mid;
        case D_DOTCR:
            if (c == '\n') {
                *end = 1;
                *out_len = o;
                return i + 1;
            }
            d->bad |= SK_DATA_BARE_CR;
            out[o++] = '\r';
            d->state = D_MID;
            goto mid;
        case D_CR:
            if (c == '\n') {
                out[o++] = '\r';
                out[o++] = '\n';
                d->state = D_BOL;
                continue;
            }
            d->bad |= SK_DATA_BARE_CR;
            out[o++] = '\r';
            d->state = D_MID;
            goto mid;
        case D_BOL:
            if (c == '.' && !d->bdat) {
                d->state = D_DOT;
                continue;
            }
            d->state = D_MID;
            /* fall through */
        case D_MID:
        mid:
            if (c == '\r') {
                d->state = D_CR;
                continue;
            }
            /* A bare LF does not start a line: "\n.\n" cannot end DATA. */
            if (c == '\n') d->bad |= SK_DATA_BARE_LF;
            /* Every octet that is not CR or LF passes here, wherever it is
             * in the line: a NUL next to a dot line too ("\r\n\0.\r\n",
             * "\r\n.\0\r\n"), which a receiver that drops NULs would
             * read as the end of data. */
            if (c == '\0') d->bad |= SK_DATA_NUL;
            out[o++] = c;
            continue;
        }
    }
    *out_len = o;
    return i;
}

void sk_data_decoder_finish(sk_data_decoder *d, char *out, size_t *out_len)
{
    *out_len = 0;
    if (d->state == D_CR || d->state == D_DOTCR) {
        d->bad |= SK_DATA_BARE_CR;
        out[(*out_len)++] = '\r';
    }
    d->state = D_BOL;
}
