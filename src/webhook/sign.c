/* Webhook endpoints checked, Standard Webhooks signatures, and the JSON
 * body of an event. */
#include <smtpkit/webhook.h>

#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

/* The key of a "whsec_" secret, decoded into key. */
static sk_err secret_key(const char *secret, sk_buf *key)
{
    size_t pn = strlen(SK_WEBHOOK_SECRET_PREFIX);
    if (!secret || strncmp(secret, SK_WEBHOOK_SECRET_PREFIX, pn)) return SK_ERR_SYNTAX;
    if (sk_base64_decode(key, secret + pn, strlen(secret + pn))) return SK_ERR_SYNTAX;
    if (key->len < SK_WEBHOOK_KEY_MIN_OCTETS || key->len > SK_WEBHOOK_KEY_MAX_OCTETS)
        return SK_ERR_SYNTAX;
    return SK_OK;
}

sk_err sk_webhook_endpoint_check(const sk_webhook_endpoint *ep, sk_error *err)
{
    sk_error_clear(err);
    const char *u = ep->url ? ep->url : "";
    size_t n = strlen(u);
    bool url_ok = n <= SK_WEBHOOK_URL_MAX_OCTETS && ((!strncasecmp(u, "http://", 7) && n > 7) ||
                                                     (!strncasecmp(u, "https://", 8) && n > 8));
    for (size_t i = 0; url_ok && i < n; i++) url_ok = u[i] > 0x20 && u[i] < 0x7f;
    if (!url_ok)
        return sk_error_set(err, SK_ERR_SYNTAX, SK_STEP_NONE,
                            "webhook URL \"%.200s\" is not an http:// or https:// URL", u);
    sk_buf key = SK_BUF_INIT(SK_WEBHOOK_KEY_MAX_OCTETS * 2);
    sk_err e = secret_key(ep->secret, &key);
    OPENSSL_cleanse(key.data, key.cap);
    sk_buf_free(&key);
    if (e)
        return sk_error_set(err, SK_ERR_SYNTAX, SK_STEP_NONE,
                            "webhook %.200s: the secret is not %s followed by the base64 of %d "
                            "to %d octets",
                            u, SK_WEBHOOK_SECRET_PREFIX, SK_WEBHOOK_KEY_MIN_OCTETS,
                            SK_WEBHOOK_KEY_MAX_OCTETS);
    const char *ev = ep->events ? ep->events : "";
    while (*ev) {
        size_t k = strcspn(ev, ",");
        char name[32];
        snprintf(name, sizeof name, "%.*s", (int)(k < 31 ? k : 31), ev);
        if (k >= 31 || sk_track_kind_parse(name) < 0)
            return sk_error_set(err, SK_ERR_SYNTAX, SK_STEP_NONE,
                                "webhook %.200s: \"%.*s\" is not an event name (received, "
                                "queued, deferred, delivered, bounced, expired, suppressed, "
                                "complained)",
                                u, (int)(k > 40 ? 40 : k), ev);
        ev += k + (ev[k] == ',');
    }
    return SK_OK;
}

sk_err sk_webhook_spec_parse(const char *spec, char **buf, sk_webhook_endpoint *ep, sk_error *err)
{
    *ep = (sk_webhook_endpoint){0};
    if (!(*buf = sk_strdup(spec ? spec : "")))
        return sk_error_set(err, SK_ERR_NOMEM, SK_STEP_NONE, "out of memory");
    char *f[4] = {0}, *save = NULL;
    size_t n = 0;
    for (char *t = strtok_r(*buf, " \t", &save); t; t = strtok_r(NULL, " \t", &save)) {
        if (n == 3)
            return sk_error_set(err, SK_ERR_SYNTAX, SK_STEP_NONE,
                                "webhook: more than URL SECRET [EVENTS]");
        f[n++] = t;
    }
    if (n < 2)
        return sk_error_set(err, SK_ERR_SYNTAX, SK_STEP_NONE,
                            "webhook: \"URL SECRET [EVENTS]\" expected");
    *ep = (sk_webhook_endpoint){.url = f[0], .secret = f[1], .events = f[2]};
    return sk_webhook_endpoint_check(ep, err);
}

sk_err sk_webhook_sign(const char *secret, const char *id, int64_t timestamp_s, const char *body,
                       size_t len, char out[SK_WEBHOOK_SIGNATURE_OCTETS])
{
    sk_buf key = SK_BUF_INIT(SK_WEBHOOK_KEY_MAX_OCTETS * 2);
    sk_err e = secret_key(secret, &key);
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned maclen = 0;
    if (!e) {
        /* Standard Webhooks: the signed content is "id.timestamp.body". */
        char head[160];
        int hn = snprintf(head, sizeof head, "%s.%lld.", id, (long long)timestamp_s);
        EVP_MAC *m = EVP_MAC_fetch(NULL, "HMAC", NULL);
        EVP_MAC_CTX *c = m ? EVP_MAC_CTX_new(m) : NULL;
        OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string("digest", "SHA256", 0),
                               OSSL_PARAM_construct_end()};
        size_t ml = 0;
        if (hn < 0 || (size_t)hn >= sizeof head || !c ||
            !EVP_MAC_init(c, (const unsigned char *)key.data, key.len, params) ||
            !EVP_MAC_update(c, (const unsigned char *)head, (size_t)hn) ||
            !EVP_MAC_update(c, (const unsigned char *)body, len) ||
            !EVP_MAC_final(c, mac, &ml, sizeof mac))
            e = SK_ERR_NOMEM;
        maclen = (unsigned)ml;
        EVP_MAC_CTX_free(c);
        EVP_MAC_free(m);
    }
    OPENSSL_cleanse(key.data, key.cap);
    sk_buf_free(&key);
    if (e) return e;
    sk_buf b = SK_BUF_INIT(SK_WEBHOOK_SIGNATURE_OCTETS - 1);
    e = sk_buf_puts(&b, "v1,");
    if (!e) e = sk_base64_encode(&b, mac, maclen);
    if (!e) memcpy(out, b.data, b.len + 1);
    sk_buf_free(&b);
    return e;
}

/* json_stringn, not json_string: the CLI that links this library has a
 * json_string of its own (tools/smtpkit/common.c), which would win. */
static int set_str(json_t *o, const char *k, const char *v)
{
    return json_object_set_new(o, k, v ? json_stringn(v, strlen(v)) : json_null());
}

sk_err sk_webhook_event_json(const sk_track_ev *ev, sk_buf *out)
{
    char type[48], when[32];
    snprintf(type, sizeof type, "message.%s", sk_track_kind_name(ev->kind));
    sk_time_rfc3339(ev->time_ms / 1000, when);
    json_t *data = json_object(), *root = json_object();
    int bad = !data || !root;
    bad = bad || set_str(data, "event", sk_track_kind_name(ev->kind));
    bad = bad || set_str(data, "queue_id", ev->queue_id);
    bad = bad || set_str(data, "message_id", ev->message_id);
    bad = bad || set_str(data, "recipient", ev->recipient);
    bad = bad || json_object_set_new(data, "time_ms", json_integer(ev->time_ms));
    bad = bad || json_object_set_new(data, "attempt",
                                     ev->attempt ? json_integer(ev->attempt) : json_null());
    bad = bad || set_str(data, "remote_host", ev->remote_host);
    bad = bad || set_str(data, "reply", ev->reply);
    bad = bad || set_str(data, "tls", ev->tls);
    bad = bad || set_str(data, "class", ev->cls);
    /* The message's tags and metadata (JSON kept by the tracking store),
     * as the sender gave them. */
    const char *names[] = {"tags", "metadata"}, *texts[] = {ev->tags, ev->metadata};
    for (size_t i = 0; !bad && i < 2; i++) {
        json_t *v = texts[i] ? json_loads(texts[i], JSON_DECODE_ANY, NULL) : NULL;
        if (!v) v = i == 0 ? json_array() : json_object();
        bad = json_object_set_new(data, names[i], v);
    }
    bad = bad || set_str(root, "type", type);
    bad = bad || set_str(root, "timestamp", when);
    if (!bad) {
        bad = json_object_set_new(root, "data", data);
        data = NULL;
    }
    char *s = bad ? NULL : json_dumps(root, JSON_COMPACT | JSON_ENSURE_ASCII);
    json_decref(data);
    json_decref(root);
    if (!s) return SK_ERR_NOMEM;
    sk_err e = sk_buf_puts(out, s);
    free(s);
    return e;
}
