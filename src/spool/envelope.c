/* The envelope stored with each spooled message: copying, and its
 * line-based text form (docs/queue.md "Envelope file"). */
#include <smtpkit/limits.h>
#include <smtpkit/spool.h>

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <stdbool.h>
#include <string.h>

static const char *const state_names[] = {"active", "deferred", "hold"};
_Static_assert(sizeof state_names / sizeof state_names[0] == SK_SPOOL_STATE__COUNT, "states");
static const char *const rcpt_state_names[] = {"pending", "delivered", "failed"};
_Static_assert(sizeof rcpt_state_names / sizeof rcpt_state_names[0] == SK_RCPT_STATE__COUNT,
               "rcpt states");

const char *sk_spool_state_name(sk_spool_state s)
{
    return (unsigned)s < SK_SPOOL_STATE__COUNT ? state_names[s] : "unknown";
}

const char *sk_rcpt_state_name(sk_rcpt_state s)
{
    return (unsigned)s < SK_RCPT_STATE__COUNT ? rcpt_state_names[s] : "unknown";
}

const char *sk_spool_envelope_protocol(const sk_spool_envelope *env)
{
    /* RFC 3848 (and RFC 5321 4.4 for SMTP/ESMTP). */
    static const char *const names[2][2][2] = {
        {{"SMTP", "SMTPA"}, {"SMTPS", "SMTPSA"}},
        {{"ESMTP", "ESMTPA"}, {"ESMTPS", "ESMTPSA"}},
    };
    return names[env->esmtp ? 1 : 0][env->tls ? 1 : 0][env->auth_user ? 1 : 0];
}

void sk_spool_envelope_free(sk_spool_envelope *env)
{
    if (!env) return;
    sk_free(env->sender);
    for (size_t i = 0; i < env->nrcpts; i++) {
        sk_free(env->rcpts[i].addr);
        sk_free(env->rcpts[i].orcpt);
        sk_free(env->rcpts[i].last_reply);
    }
    sk_free(env->rcpts);
    sk_free(env->helo);
    sk_free(env->peer);
    sk_free(env->peer_name);
    sk_free(env->tls);
    sk_free(env->auth_user);
    sk_free(env->last_reply);
    sk_free(env->prepend);
    sk_free(env);
}

/* Copy *p in place (NULL stays NULL); 0 on allocation failure. */
static int dup_in_place(char **p)
{
    if (!*p) return 1;
    *p = sk_strdup(*p);
    return *p != NULL;
}

sk_spool_envelope *sk_spool_envelope_dup(const sk_spool_envelope *src)
{
    sk_spool_envelope *env = sk_malloc(sizeof *env);
    if (!env) return NULL;
    *env = *src;
    env->rcpts = NULL;
    env->nrcpts = 0;
    /* Copy the strings in place; on failure the ones not yet copied still
     * point into src, so they are cleared before freeing. */
    char **fields[] = {&env->sender, &env->helo,      &env->peer,       &env->peer_name,
                       &env->tls,    &env->auth_user, &env->last_reply, &env->prepend};
    size_t nf = sizeof fields / sizeof fields[0];
    for (size_t i = 0; i < nf; i++) {
        if (!dup_in_place(fields[i])) {
            for (size_t k = i + 1; k < nf; k++) *fields[k] = NULL;
            sk_spool_envelope_free(env);
            return NULL;
        }
    }
    if (src->nrcpts) {
        env->rcpts = sk_calloc(src->nrcpts, sizeof *env->rcpts);
        if (!env->rcpts) {
            sk_spool_envelope_free(env);
            return NULL;
        }
        for (size_t i = 0; i < src->nrcpts; i++) {
            env->rcpts[i] = src->rcpts[i];
            env->rcpts[i].addr = env->rcpts[i].orcpt = env->rcpts[i].last_reply = NULL;
            env->nrcpts = i + 1;
            env->rcpts[i].addr = src->rcpts[i].addr;
            if (!dup_in_place(&env->rcpts[i].addr)) {
                sk_spool_envelope_free(env);
                return NULL;
            }
            env->rcpts[i].orcpt = src->rcpts[i].orcpt;
            if (!dup_in_place(&env->rcpts[i].orcpt)) {
                sk_spool_envelope_free(env);
                return NULL;
            }
            env->rcpts[i].last_reply = src->rcpts[i].last_reply;
            if (!dup_in_place(&env->rcpts[i].last_reply)) {
                sk_spool_envelope_free(env);
                return NULL;
            }
        }
    }
    return env;
}

/* Text form. One "key value" per line, in a fixed order; a string value
 * is "-" for NULL or "=" followed by the string with octets <= 0x20,
 * 0x7f and '%' written as %XX, so every value is one token without
 * spaces and any octet survives the round trip. */
#define ENV_MAGIC "smtpkit-envelope 1"

static int escaped(unsigned char c)
{
    return c <= 0x20 || c == 0x7f || c == '%';
}

static sk_err put_str(sk_buf *b, const char *s)
{
    if (!s) return sk_buf_putc(b, '-');
    sk_err e = sk_buf_putc(b, '=');
    while (!e && *s) {
        /* Octets that stand for themselves go in runs (header fields
         * added at acceptance are long). */
        const char *run = s;
        while (*s && !escaped((unsigned char)*s)) s++;
        if (s > run) e = sk_buf_append(b, run, (size_t)(s - run));
        if (!e && *s) {
            unsigned char c = (unsigned char)*s++;
            char esc[4] = {'%'};
            sk_hex_encode(esc + 1, &c, 1, true);
            e = sk_buf_append(b, esc, 3);
        }
    }
    return e;
}

static sk_err put_kv_str(sk_buf *b, const char *key, const char *s)
{
    sk_err e = sk_buf_puts(b, key);
    if (!e) e = sk_buf_putc(b, ' ');
    if (!e) e = put_str(b, s);
    if (!e) e = sk_buf_putc(b, '\n');
    return e;
}

/* " N" (" -N" when negative) in decimal: written for every message
 * committed, so without the cost of printf. */
static sk_err put_num(sk_buf *b, uint64_t magnitude, bool negative)
{
    char d[22];
    size_t i = sizeof d;
    do {
        d[--i] = (char)('0' + magnitude % 10);
        magnitude /= 10;
    } while (magnitude);
    if (negative) d[--i] = '-';
    d[--i] = ' ';
    return sk_buf_append(b, d + i, sizeof d - i);
}

static sk_err put_u64(sk_buf *b, uint64_t v)
{
    return put_num(b, v, false);
}

static sk_err put_i64(sk_buf *b, int64_t v)
{
    /* The magnitude of INT64_MIN fits in a uint64_t. */
    return v < 0 ? put_num(b, (uint64_t)0 - (uint64_t)v, true) : put_num(b, (uint64_t)v, false);
}

/* "key N\n" */
static sk_err put_kv_u64(sk_buf *b, const char *key, uint64_t v)
{
    sk_err e = sk_buf_puts(b, key);
    if (!e) e = put_u64(b, v);
    if (!e) e = sk_buf_putc(b, '\n');
    return e;
}

static sk_err put_kv_i64(sk_buf *b, const char *key, int64_t v)
{
    sk_err e = sk_buf_puts(b, key);
    if (!e) e = put_i64(b, v);
    if (!e) e = sk_buf_putc(b, '\n');
    return e;
}

sk_err sk_spool_envelope_serialize(const sk_spool_envelope *env, sk_buf *out)
{
    const sk_mail_params *m = &env->mail;
    /* The same text as one printf of the fields would give. */
    sk_err e = sk_buf_puts(out, ENV_MAGIC "\nid ");
    if (!e) e = sk_buf_puts(out, env->id);
    if (!e) e = put_kv_i64(out, "\narrival", env->arrival);
    if (!e) e = sk_buf_puts(out, "state ");
    if (!e) e = sk_buf_puts(out, sk_spool_state_name(env->state));
    if (!e) e = put_kv_u64(out, "\nattempts", env->attempts);
    if (!e) e = put_kv_i64(out, "next-attempt", env->next_attempt);
    if (!e) e = put_kv_u64(out, "body-octets", env->body_octets);
    if (!e) e = sk_buf_puts(out, "size");
    if (!e) e = put_i64(out, m->has_size);
    if (!e) e = put_kv_u64(out, "", m->size);
    if (!e) e = put_kv_i64(out, "body", (int)m->body);
    if (!e) e = put_kv_i64(out, "smtputf8", m->smtputf8);
    if (!e) e = put_kv_i64(out, "ret", (int)m->ret);
    if (!e) e = sk_buf_puts(out, "priority");
    if (!e) e = put_i64(out, m->has_priority);
    if (!e) e = put_kv_i64(out, "", m->priority);
    if (!e) e = put_kv_i64(out, "esmtp", env->esmtp);
    if (!e) e = put_kv_str(out, "envid", m->envid);
    if (!e) e = put_kv_str(out, "auth-param", m->auth);
    if (!e) e = put_kv_str(out, "sender", env->sender);
    if (!e) e = put_kv_str(out, "helo", env->helo);
    if (!e) e = put_kv_str(out, "peer", env->peer);
    if (!e) e = put_kv_str(out, "peer-name", env->peer_name);
    if (!e) e = put_kv_str(out, "tls", env->tls);
    if (!e) e = put_kv_str(out, "auth-user", env->auth_user);
    if (!e) e = put_kv_str(out, "last-reply", env->last_reply);
    for (size_t i = 0; !e && i < env->nrcpts; i++) {
        const sk_spool_rcpt *r = &env->rcpts[i];
        e = sk_buf_puts(out, "rcpt ");
        if (!e) e = sk_buf_puts(out, sk_rcpt_state_name(r->state));
        if (!e) e = put_u64(out, r->notify);
        if (!e) e = sk_buf_putc(out, ' ');
        if (!e) e = put_str(out, r->addr);
        if (!e) e = sk_buf_putc(out, ' ');
        if (!e) e = put_str(out, r->orcpt);
        if (!e) e = sk_buf_putc(out, ' ');
        if (!e) e = put_str(out, r->last_reply);
        if (!e) e = sk_buf_putc(out, '\n');
    }
    if (!e && env->has_body_crc32c)
        e = sk_buf_printf(out, "body-crc32c %08" PRIx32 "\n", env->body_crc32c);
    /* Written only once set, so envelopes without it stay as they were. */
    if (!e && env->delay_dsn_sent) e = sk_buf_puts(out, "delay-dsn 1\n");
    /* Likewise: only messages that had fields added carry the line. */
    if (!e && env->prepend) e = put_kv_str(out, "prepend", env->prepend);
    /* The trailer tells a complete file from a cut one. */
    if (!e) e = sk_buf_puts(out, "end\n");
    return e;
}

/* Decode one string token [p, end); *out NULL for "-". */
static sk_err get_str(const char *p, const char *end, char **out)
{
    *out = NULL;
    if (end - p == 1 && *p == '-') return SK_OK;
    if (p == end || *p != '=') return SK_ERR_SYNTAX;
    p++;
    char *s = sk_malloc((size_t)(end - p) + 1);
    if (!s) return SK_ERR_NOMEM;
    size_t n = 0;
    while (p < end) {
        if (*p == '%') {
            int hi = end - p >= 3 ? sk_hex_value(p[1]) : -1;
            int lo = end - p >= 3 ? sk_hex_value(p[2]) : -1;
            if (hi < 0 || lo < 0 || (hi == 0 && lo == 0)) {
                sk_free(s);
                return SK_ERR_SYNTAX;
            }
            s[n++] = (char)(hi << 4 | lo);
            p += 3;
        } else {
            s[n++] = *p++;
        }
    }
    s[n] = '\0';
    *out = s;
    return SK_OK;
}

/* Copy a decoded string into a fixed field; too long is a syntax error. */
static sk_err get_fixed(const char *p, const char *end, char *dst, size_t size)
{
    char *s;
    sk_err e = get_str(p, end, &s);
    if (e) return e;
    dst[0] = '\0';
    if (s) {
        size_t n = strlen(s);
        if (n >= size)
            e = SK_ERR_SYNTAX;
        else
            memcpy(dst, s, n + 1);
    }
    sk_free(s);
    return e;
}

static int parse_i64(const char *p, const char *end, int64_t *out)
{
    char tmp[32];
    size_t n = (size_t)(end - p);
    if (n == 0 || n >= sizeof tmp) return 0;
    memcpy(tmp, p, n);
    tmp[n] = '\0';
    char *e;
    errno = 0;
    long long v = strtoll(tmp, &e, 10);
    if (errno || *e) return 0;
    *out = v;
    return 1;
}

/* Split [p, end) at spaces into at most max tokens. */
static size_t tokens(const char *p, const char *end, const char **tok, const char **tokend,
                     size_t max)
{
    size_t n = 0;
    while (p < end && n < max) {
        const char *sp = memchr(p, ' ', (size_t)(end - p));
        if (!sp) sp = end;
        tok[n] = p;
        tokend[n] = sp;
        n++;
        p = sp < end ? sp + 1 : end;
    }
    return p < end ? max + 1 : n;
}

static int name_index(const char *p, const char *end, const char *const *names, size_t count)
{
    for (size_t i = 0; i < count; i++)
        if (strlen(names[i]) == (size_t)(end - p) && !memcmp(names[i], p, (size_t)(end - p)))
            return (int)i;
    return -1;
}

static sk_err parse_line(sk_spool_envelope *env, const char *p, const char *end)
{
    const char *tok[8], *te[8];
    size_t n = tokens(p, end, tok, te, 8);
    if (n < 2 || n > 8) return SK_ERR_SYNTAX;
    size_t klen = (size_t)(te[0] - tok[0]);
#define KEY(k) (klen == sizeof(k) - 1 && !memcmp(tok[0], k, klen))
    int64_t v, w;
    sk_mail_params *m = &env->mail;
    if (KEY("id")) {
        if ((size_t)(te[1] - tok[1]) != SK_SPOOL_ID_LEN) return SK_ERR_SYNTAX;
        memcpy(env->id, tok[1], SK_SPOOL_ID_LEN);
        env->id[SK_SPOOL_ID_LEN] = '\0';
        return sk_spool_id_valid(env->id) ? SK_OK : SK_ERR_SYNTAX;
    }
    if (KEY("state")) {
        int i = name_index(tok[1], te[1], state_names, SK_SPOOL_STATE__COUNT);
        if (i < 0) return SK_ERR_SYNTAX;
        env->state = (sk_spool_state)i;
        return SK_OK;
    }
    if (KEY("rcpt")) {
        if (n != 6) return SK_ERR_SYNTAX;
        int st = name_index(tok[1], te[1], rcpt_state_names, SK_RCPT_STATE__COUNT);
        if (st < 0 || !parse_i64(tok[2], te[2], &v) || v < 0 || v > 15) return SK_ERR_SYNTAX;
        sk_spool_rcpt *r = sk_realloc(env->rcpts, (env->nrcpts + 1) * sizeof *r);
        if (!r) return SK_ERR_NOMEM;
        env->rcpts = r;
        r = &env->rcpts[env->nrcpts];
        memset(r, 0, sizeof *r);
        env->nrcpts++;
        r->state = (sk_rcpt_state)st;
        r->notify = (unsigned)v;
        sk_err e = get_str(tok[3], te[3], &r->addr);
        if (!e && !r->addr) e = SK_ERR_SYNTAX;
        if (!e) e = get_str(tok[4], te[4], &r->orcpt);
        if (!e) e = get_str(tok[5], te[5], &r->last_reply);
        return e;
    }
    /* Keys with two numbers. */
    if (KEY("size") || KEY("priority")) {
        if (n != 3 || !parse_i64(tok[1], te[1], &v) || !parse_i64(tok[2], te[2], &w))
            return SK_ERR_SYNTAX;
        if (KEY("size")) {
            if (w < 0) return SK_ERR_SYNTAX;
            m->has_size = v != 0;
            m->size = (uint64_t)w;
        } else {
            if (w < -9 || w > 9) return SK_ERR_SYNTAX;
            m->has_priority = v != 0;
            m->priority = (int)w;
        }
        return SK_OK;
    }
    if (n != 2) return SK_ERR_SYNTAX;
    struct {
        const char *key;
        char **field;
    } strs[] = {
        {"sender", &env->sender},
        {"helo", &env->helo},
        {"peer", &env->peer},
        {"peer-name", &env->peer_name},
        {"tls", &env->tls},
        {"auth-user", &env->auth_user},
        {"last-reply", &env->last_reply},
        {"prepend", &env->prepend},
    };
    for (size_t i = 0; i < sizeof strs / sizeof strs[0]; i++) {
        if (klen == strlen(strs[i].key) && !memcmp(tok[0], strs[i].key, klen)) {
            sk_free(*strs[i].field);
            return get_str(tok[1], te[1], strs[i].field);
        }
    }
    if (KEY("body-crc32c")) {
        /* Exactly 8 lower-case hex digits, as written. */
        if (te[1] - tok[1] != 8) return SK_ERR_SYNTAX;
        uint32_t c = 0;
        for (const char *q = tok[1]; q < te[1]; q++) {
            int d = sk_hex_value(*q);
            if (d < 0 || (*q >= 'A' && *q <= 'F')) return SK_ERR_SYNTAX;
            c = c << 4 | (uint32_t)d;
        }
        env->body_crc32c = c;
        env->has_body_crc32c = 1;
        return SK_OK;
    }
    if (KEY("envid")) return get_fixed(tok[1], te[1], m->envid, sizeof m->envid);
    if (KEY("auth-param")) return get_fixed(tok[1], te[1], m->auth, sizeof m->auth);
    if (!parse_i64(tok[1], te[1], &v)) return SK_ERR_SYNTAX;
    if (KEY("arrival"))
        env->arrival = v;
    else if (KEY("attempts") && v >= 0)
        env->attempts = (unsigned)v;
    else if (KEY("next-attempt"))
        env->next_attempt = v;
    else if (KEY("body-octets") && v >= 0)
        env->body_octets = (uint64_t)v;
    else if (KEY("body") && v >= 0 && v <= SK_BODY_8BITMIME)
        m->body = (sk_body_type)v;
    else if (KEY("smtputf8"))
        m->smtputf8 = v != 0;
    else if (KEY("ret") && v >= 0 && v <= SK_DSN_RET_HDRS)
        m->ret = (sk_dsn_ret)v;
    else if (KEY("esmtp"))
        env->esmtp = v != 0;
    else if (KEY("delay-dsn"))
        env->delay_dsn_sent = v != 0;
    else
        return SK_ERR_SYNTAX;
    return SK_OK;
#undef KEY
}

sk_err sk_spool_envelope_parse(const char *text, size_t len, sk_spool_envelope **out)
{
    *out = NULL;
    size_t mlen = strlen(ENV_MAGIC);
    if (len < mlen + 1 || memcmp(text, ENV_MAGIC "\n", mlen + 1)) return SK_ERR_SYNTAX;
    sk_spool_envelope *env = sk_calloc(1, sizeof *env);
    if (!env) return SK_ERR_NOMEM;
    const char *p = text + mlen + 1, *end = text + len;
    int complete = 0;
    sk_err e = SK_OK;
    while (!e && p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        if (!nl) {
            e = SK_ERR_SYNTAX; /* a cut line */
            break;
        }
        if (nl - p == 3 && !memcmp(p, "end", 3)) {
            complete = nl + 1 == end;
            break;
        }
        e = parse_line(env, p, nl);
        p = nl + 1;
    }
    if (!e && (!complete || !env->id[0] || !env->sender)) e = SK_ERR_SYNTAX;
    if (e) {
        sk_spool_envelope_free(env);
        return e;
    }
    *out = env;
    return SK_OK;
}
