/* Message priorities: settings per sender or authenticated user, MT-PRIORITY
 * (RFC 6710) from the envelope, and a priority's level in a destination. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "queue/queue_int.h"

sk_err sk_queue_priority_parse(const char *s, sk_queue_priority_rule *out, sk_error *err)
{
    sk_error_clear(err);
    memset(out, 0, sizeof *out);
    const char *eq = s ? strrchr(s, '=') : NULL;
    if (!eq)
        return sk_error_set(err, SK_ERR_SYNTAX, SK_STEP_NONE,
                            "priority: expected SENDER=N or auth:USER=N");
    const char *m = s;
    if (!strncasecmp(m, "auth:", 5)) {
        out->auth = 1;
        m += 5;
    }
    size_t n = (size_t)(eq - m);
    if (!n || n >= sizeof out->match || memchr(m, ' ', n))
        return sk_error_set(err, SK_ERR_SYNTAX, SK_STEP_NONE, "priority: bad match in \"%s\"", s);
    memcpy(out->match, m, n);
    out->match[n] = '\0';
    errno = 0;
    char *end;
    long p = strtol(eq + 1, &end, 10);
    if (errno || end == eq + 1 || *end || p < SK_QUEUE_PRIORITY_MIN || p > SK_QUEUE_PRIORITY_MAX)
        return sk_error_set(err, SK_ERR_SYNTAX, SK_STEP_NONE,
                            "priority: \"%s\": the value must be from -9 to 9", s);
    out->priority = (int)p;
    return SK_OK;
}

static int sender_matches(const char *match, const char *sender)
{
    if (!sender || !*sender) return 0;
    if (strchr(match, '@')) return !strcasecmp(match, sender);
    const char *at = strrchr(sender, '@');
    return at && !strcasecmp(match, at + 1);
}

int sk_queue_priority_of(const sk_spool_envelope *env, const sk_queue_priority_rule *rules,
                         size_t nrules)
{
    for (size_t i = 0; i < nrules; i++) {
        const sk_queue_priority_rule *r = &rules[i];
        int hit = r->auth ? env->auth_user && !strcasecmp(r->match, env->auth_user)
                          : sender_matches(r->match, env->sender);
        if (hit) return r->priority;
    }
    if (env->mail.has_priority && env->mail.priority >= SK_QUEUE_PRIORITY_MIN &&
        env->mail.priority <= SK_QUEUE_PRIORITY_MAX)
        return env->mail.priority;
    return 0;
}

int sk_queue_priority_level(int priority)
{
    int lv = priority - SK_QUEUE_PRIORITY_MIN;
    return lv < 0 ? 0 : lv >= SK_QUEUE_PRIORITY_LEVELS ? SK_QUEUE_PRIORITY_LEVELS - 1 : lv;
}
