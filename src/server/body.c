/* The message of a session: DATA and BDAT read through the sans-I/O decoder
 * (src/proto/data.c) into the on_data hooks, and the reply at its end. */
#include "server/session_int.h"

#include <event2/buffer.h>
#include <string.h>
#include <strings.h>

static void envelope_fill(const sk_session *s, sk_envelope *env)
{
    memset(env, 0, sizeof *env);
    env->from = *s->from;
    env->params = *s->mp;
    env->rcpts = s->rcpts;
    env->nrcpts = s->nrcpts;
    env->session_id = s->id;
    env->helo = s->helo ? s->helo : "";
    env->peer_addr = s->peer;
    /* Received's "with" (RFC 3848; RFC 6531 3.7.3 for the UTF8 ones). */
    static const char *const protos[2][2][2] = {
        {{"ESMTP", "ESMTPA"}, {"ESMTPS", "ESMTPSA"}},
        {{"UTF8SMTP", "UTF8SMTPA"}, {"UTF8SMTPS", "UTF8SMTPSA"}}};
    env->protocol = s->esmtp ? protos[s->mp->smtputf8 != 0][s->tls][s->auth_user != NULL] : "SMTP";
    env->tls = s->tls;
    env->tls_version = s->tls_version;
    env->tls_cipher = s->tls_cipher;
    env->auth_user = s->auth_user ? s->auth_user : "";
    env->kind = s->kind;
    env->bdat = s->bdat_mode;
    env->server_name = s->cfg->hostname;
    env->peer_port = s->port;
}

/* BDAT: the chunk is read all the same and refused at its end (RFC 3030 2),
 * with r, or with 451 when r is NULL (a reply was sent already) or memory
 * is short. */
static void refuse_later(sk_session *s, const sk_reply *r)
{
    s->msg = MSG_REFUSED;
    s->bdat_mode = 1;
    s->refusal = r ? sk_malloc(sizeof *s->refusal) : NULL;
    if (s->refusal) *s->refusal = *r;
}

/* A message needs a transaction with a recipient: 0 and why when not
 * (RFC 2920 3.1: 554 when every RCPT was refused). */
static int tx_ready(const sk_session *s, sk_reply *why)
{
    if (!in_tx(s)) {
        *why = sk_reply_make(503, "5.5.1", "Need MAIL command");
        return 0;
    }
    if (!s->nrcpts) {
        *why = sk_reply_make(554, "5.5.1", "No valid recipients");
        return 0;
    }
    return 1;
}

/* Open the message with the program. 0 and a reply sent (or kept, for
 * BDAT) when refused. */
static int msg_open(sk_session *s, int bdat)
{
    sk_server *srv = s->srv;
    s->bdat_mode = bdat;
    s->msg_size = 0;
    sk_data_decoder_init(&s->dec, bdat);
    sk_reply r;
    if (!srv->on_data_start || !srv->on_data_chunk || !srv->on_data_end) {
        r = sk_reply_make(554, "5.3.2", "Not accepting messages");
    } else {
        sk_envelope env;
        envelope_fill(s, &env);
        s->msg_ctx = NULL;
        r = srv->on_data_start(s, &env, &s->msg_ctx, srv->on_data_ctx);
        reply_check(&r);
    }
    if (sk_reply_class_of(r.code) >= SK_REPLY_TRANSIENT) {
        sk_log(logger(s), SK_LOG_INFO, "%s server data-refused reply=%d", s->id, r.code);
        if (bdat) {
            refuse_later(s, &r);
            return 1;
        }
        sk_sess_reply_r(s, &r);
        return 0;
    }
    if (sk_buf_reserve(&s->chunk, SK_SERVER_CHUNK_OCTETS) != SK_OK) {
        srv->on_data_end(s, s->msg_ctx, 0, srv->on_data_ctx);
        s->msg_ctx = NULL;
        sk_sess_reply(s, 451, "4.3.0", "Out of memory");
        return 0;
    }
    s->msg_started = 1;
    s->msg = MSG_OPEN;
    return 1;
}

void sk_sess_msg_abort(sk_session *s)
{
    sk_server *srv = s->srv;
    if (s->msg_started && srv->on_data_end) srv->on_data_end(s, s->msg_ctx, 0, srv->on_data_ctx);
    s->msg_started = 0;
    s->msg_ctx = NULL;
    s->msg = MSG_NONE;
    s->bdat_mode = 0;
    s->data_started_ms = s->data_octets = 0;
    sk_free(s->refusal);
    s->refusal = NULL;
    sk_buf_free(&s->chunk);
}

static void chunk_flush(sk_session *s)
{
    if (s->msg == MSG_OPEN && s->chunk.len) {
        sk_server *srv = s->srv;
        if (srv->on_data_chunk(s, s->msg_ctx, s->chunk.data, s->chunk.len, srv->on_data_ctx)) {
            sk_log(logger(s), SK_LOG_WARN, "%s server data-chunk-failed", s->id);
            s->msg = MSG_FAILED;
        }
    }
    s->chunk.len = 0;
}

/* Body octets, already decoded. */
static void emit(sk_session *s, const char *p, size_t n)
{
    if (s->msg != MSG_OPEN || !n) return;
    s->msg_size += n;
    if (s->msg_size > s->cfg->max_message_size) {
        s->msg = MSG_TOO_BIG;
        return;
    }
    while (n) {
        if (s->chunk.len == SK_SERVER_CHUNK_OCTETS) chunk_flush(s);
        if (s->msg != MSG_OPEN) return;
        size_t room = SK_SERVER_CHUNK_OCTETS - s->chunk.len;
        size_t k = n < room ? n : room;
        memcpy(s->chunk.data + s->chunk.len, p, k);
        s->chunk.len += k;
        p += k;
        n -= k;
    }
}

/* A bare CR or LF or a NUL marks the whole message bad; it is refused at
 * its end, and nothing more of it reaches the program. */
static void check_octets(sk_session *s)
{
    if (!s->dec.bad || s->msg != MSG_OPEN) return;
    if (s->dec.bad & SK_DATA_NUL) {
        s->msg = MSG_BAD_NUL;
        sk_log(logger(s), SK_LOG_INFO, "%s server bad-octet peer=%s kind=nul", s->id, s->peer);
        return;
    }
    s->msg = MSG_BAD_EOL;
    sk_log(logger(s), SK_LOG_INFO, "%s server bad-eol peer=%s kind=%s", s->id, s->peer,
           s->dec.bad & SK_DATA_BARE_LF ? "bare-lf" : "bare-cr");
}

/* Feed up to limit octets of input to the decoder. Returns the octets
 * consumed; *end when DATA's end marker was among them. */
static size_t decode_input(sk_session *s, struct evbuffer *in, size_t limit, int *end)
{
    struct evbuffer_iovec v[8];
    int n = evbuffer_peek(in, -1, NULL, v, 8);
    if (n > 8) n = 8; /* peek tells how many it would need */
    size_t used = 0;
    char out[4096 + 1];
    *end = 0;
    for (int i = 0; i < n && !*end && used < limit; i++) {
        const char *p = v[i].iov_base;
        size_t len = v[i].iov_len;
        if (len > limit - used) len = limit - used;
        while (len && !*end) {
            size_t olen, take = len < sizeof out - 1 ? len : sizeof out - 1;
            size_t k = sk_data_decode(&s->dec, p, take, out, &olen, end);
            emit(s, out, olen);
            p += k;
            len -= k;
            used += k;
        }
    }
    evbuffer_drain(in, used);
    check_octets(s);
    return used;
}

void sk_sess_msg_done(sk_session *s, const sk_reply *r)
{
    sk_sess_reply_r(s, r);
    sk_log(logger(s), SK_LOG_INFO, "%s server message size=%llu rcpts=%zu reply=%d", s->id,
           (unsigned long long)s->msg_size, s->nrcpts, r->code);
    if (sk_reply_class_of(r->code) == SK_REPLY_SUCCESS) s->idle = 0;
    s->msg_started = 0;
    sk_sess_tx_reset(s);
    sk_sess_set_state(s, rest_state(s)); /* SS_CONNECTED: a BDAT refused before EHLO */
    sk_sess_maybe_stop(s);
}

/* The message has ended (or, for BDAT, failed): answer it. */
static void msg_finish(sk_session *s)
{
    sk_server *srv = s->srv;
    chunk_flush(s);
    sk_reply r;
    switch (s->msg) {
    case MSG_OPEN:
        sk_buf_free(&s->chunk);
        r = srv->on_data_end(s, s->msg_ctx, 1, srv->on_data_ctx);
        if (r.code == 0) {
            sk_sess_wait(s);
            return;
        }
        reply_check(&r);
        if (r.code == 250 && !strcmp(r.enhanced, "2.0.0") && !strcmp(r.text, "Ok"))
            r = sk_reply_make(250, "2.0.0", "Ok: message accepted");
        break;
    case MSG_BAD_EOL:
        r = sk_reply_make(554, "5.6.0", "Message contains bare CR or LF (RFC 5321 2.3.8)");
        break;
    case MSG_BAD_NUL:
        r = sk_reply_make(554, "5.6.0", "Message contains a NUL octet (RFC 2045 2.8)");
        break;
    case MSG_TOO_BIG:
        r = sk_reply_make(552, "5.3.4", "Message size exceeds fixed maximum message size");
        break;
    case MSG_REFUSED:
        r = s->refusal ? *s->refusal : sk_reply_make(451, "4.3.0", "Internal error");
        break;
    default:
        r = sk_reply_make(451, "4.3.0", "Local error in processing");
        break;
    }
    if (s->msg != MSG_OPEN) sk_sess_msg_abort(s);
    sk_sess_msg_done(s, &r);
}

/* The message has come in slower than SK_SERVER_DATA_MIN_OCTETS_PER_S
 * since its start, for longer than a data block's timeout: a client
 * trickling octets in would otherwise hold the session for ever. */
static int too_slow(const sk_session *s, uint64_t now)
{
    uint64_t ms = now - s->data_started_ms;
    return ms > s->cfg->data_timeout_ms &&
           s->data_octets * 1000 / ms < SK_SERVER_DATA_MIN_OCTETS_PER_S;
}

/* All of the input that could be peeked was decoded: look again when more
 * is buffered, else wait for the client, handing the program what it has. */
static int look_again(sk_session *s, struct evbuffer *in)
{
    if (evbuffer_get_length(in)) return 1;
    chunk_flush(s);
    return 0;
}

/* DATA: consume input up to the end marker CRLF "." CRLF (RFC 5321 4.1.1.4,
 * 4.5.2). A bare CR or LF never ends a line here (RFC 5321 2.3.8); it marks
 * the message bad, and the whole message is refused at its end: so
 * "\n.\n" or "\r\n.\n" cannot end the message and smuggle commands. A
 * NUL does the same, so that "\r\n\0.\r\n" cannot end it for a receiver
 * further on that drops NULs.
 * Returns 1 when the caller should look at the input again. */
int sk_sess_data_consume(sk_session *s, struct evbuffer *in)
{
    int end;
    size_t before = evbuffer_get_length(in);
    uint64_t now = sk_now_ms();
    if (!s->data_started_ms) s->data_started_ms = now;
    decode_input(s, in, SIZE_MAX, &end);
    s->data_octets += before - evbuffer_get_length(in);
    if (end) {
        s->data_started_ms = s->data_octets = 0;
        msg_finish(s);
        return 1;
    }
    if (too_slow(s, now)) {
        sk_sess_too_slow(s, "data");
        return 0;
    }
    return look_again(s, in);
}

/* BDAT: exactly the announced octets (RFC 3030 2); no dot-stuffing, but
 * line ends must still be CRLF and NUL is refused (no BINARYMIME). */
int sk_sess_bdat_consume(sk_session *s, struct evbuffer *in)
{
    int end;
    uint64_t want = s->bdat_left, now = sk_now_ms();
    /* The rate is over the whole message, from its first BDAT: one chunk
     * trickling in and many tiny chunks are the same slowloris as DATA. */
    if (!s->data_started_ms) s->data_started_ms = now;
    size_t got = decode_input(s, in, want < SIZE_MAX ? (size_t)want : SIZE_MAX, &end);
    s->bdat_left -= got;
    s->data_octets += got;
    if ((s->bdat_left || !s->bdat_last) && too_slow(s, now)) {
        sk_sess_too_slow(s, "bdat");
        return 0;
    }
    if (s->bdat_left) return look_again(s, in);
    if (s->bdat_last) {
        char out[1];
        size_t olen;
        sk_data_decoder_finish(&s->dec, out, &olen);
        emit(s, out, olen);
        check_octets(s);
        msg_finish(s);
        return 1;
    }
    chunk_flush(s);
    sk_sess_set_state(s, SS_MAIL);
    if (s->msg == MSG_OPEN)
        sk_sess_reply(s, 250, "2.0.0", "%llu octets received", (unsigned long long)s->msg_size);
    else
        msg_finish(s); /* the rest of the message is refused the same way */
    return 1;
}

void sk_sess_cmd_data(sk_session *s, const char *args)
{
    sk_reply why;
    if (!sk_sess_no_args(s, args)) return;
    if (!tx_ready(s, &why)) {
        sk_sess_reply_r(s, &why);
        return;
    }
    if (!msg_open(s, 0)) return;
    sk_sess_reply(s, 354, NULL, "End data with <CR><LF>.<CR><LF>");
    sk_sess_set_state(s, SS_DATA);
}

void sk_sess_bdat_start(sk_session *s, const char *args, const sk_reply *refuse)
{
    /* RFC 3030 2: BDAT chunk-size [ SP "LAST" ]. */
    const char *p = args;
    uint64_t size = 0;
    int digits = 0, overflow = 0;
    while (*p >= '0' && *p <= '9') {
        unsigned d = (unsigned)(*p++ - '0');
        /* A size past 64 bits would wrap to a wrong chunk length. */
        if (size > (UINT64_MAX - d) / 10) overflow = 1;
        size = size * 10 + d;
        digits++;
    }
    int last = 0;
    if (*p == ' ' && !strcasecmp(p + 1, "LAST")) last = 1, p += 5;
    if (!digits || overflow || *p) {
        /* The chunk's length is unknown, so its octets cannot be told
         * from commands: the session cannot go on. */
        sk_sess_end(s, 501, "5.5.4", "Syntax: BDAT size [LAST]; closing");
        return;
    }
    s->bdat_left = size;
    s->bdat_last = last;
    if (!s->bdat_mode) { /* the message's first chunk */
        sk_reply why;
        if (refuse)
            refuse_later(s, refuse);
        else if (!tx_ready(s, &why))
            refuse_later(s, &why);
        else if (!msg_open(s, 1))
            refuse_later(s, NULL); /* out of memory, said already: drop the chunk */
    }
    sk_sess_set_state(s, SS_BDAT);
    if (!size) sk_sess_bdat_consume(s, bufferevent_get_input(s->bev));
}

void sk_sess_cmd_bdat(sk_session *s, const char *args)
{
    sk_sess_bdat_start(s, args, NULL);
}
