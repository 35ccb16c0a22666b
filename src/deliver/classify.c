/* Reply classification rules: a small line format users extend, compiled
 * once (POSIX regex) and matched first-match-wins on code, enhanced status
 * and text. The built-in set is etc/smtpkit-rules.conf. */
#include <smtpkit/classify.h>
#include <smtpkit/reply.h>

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *const class_names[] = {
    [SK_CLASS_OTHER] = "other",
    [SK_CLASS_BAD_MAILBOX] = "bad-mailbox",
    [SK_CLASS_MAILBOX_FULL] = "mailbox-full",
    [SK_CLASS_DOMAIN_NOT_FOUND] = "domain-not-found",
    [SK_CLASS_POLICY] = "policy",
    [SK_CLASS_TLS_REQUIRED] = "tls-required",
    [SK_CLASS_THROTTLED] = "throttled",
    [SK_CLASS_MESSAGE_TOO_BIG] = "message-too-big",
    [SK_CLASS_AUTH] = "auth",
};
_Static_assert(sizeof class_names / sizeof class_names[0] == SK_CLASS__COUNT, "class_names");

const char *sk_class_name(sk_class c)
{
    return (unsigned)c < SK_CLASS__COUNT ? class_names[c] : "unknown";
}

int sk_class_parse(const char *name)
{
    for (int i = 0; name && i < SK_CLASS__COUNT; i++)
        if (strcmp(name, class_names[i]) == 0) return i;
    return -1;
}

typedef struct rule {
    size_t line;
    sk_class cls;
    char code[4];    /* "550", "5xx", "" = any */
    char status[16]; /* "5.1.1", "5.7." (prefix from "5.7.*"), "" = any */
    int status_prefix;
    int has_regex;
    regex_t re;
    sk_traffic_action action;
} rule;

struct sk_rules {
    rule *r;
    size_t n;
};

/* The same text as etc/smtpkit-rules.conf (test_classify checks it). */
static const char default_rules[] =
    "# SMTPKit reply classification rules (the built-in default set).\n"
    "#\n"
    "# One rule per line: key=value conditions and a result. The first rule\n"
    "# that matches a reply wins, so specific rules come before general ones.\n"
    "#   code=550 | code=5xx | code=45x    reply code, exact or with x wildcards\n"
    "#   status=5.1.1 | status=5.7.*        enhanced status, exact or prefix\n"
    "#   text=/REGEX/ or text=/REGEX/i      POSIX extended regex on the reply text\n"
    "#   class=NAME                         bad-mailbox, mailbox-full,\n"
    "#                                      domain-not-found, policy, tls-required,\n"
    "#                                      throttled, message-too-big, auth, other\n"
    "#   action=suspend:DURATION            stop sending to the destination a while\n"
    "#   action=rate:N/UNIT for DURATION    at most N messages per s|m|h|d\n"
    "# Copy this file, edit it, and point the server at it to change the rules.\n"
    "\n"
    "# Greylisting is a plain \"try again later\": retry on the normal schedule.\n"
    "class=other code=4xx text=/grey ?list/i\n"
    "\n"
    "# Encryption and authentication (checked before the 5.7.* policy rules).\n"
    "class=tls-required status=5.7.10\n"
    "class=tls-required code=530 text=/starttls|tls|encrypt/i\n"
    "class=tls-required text=/must issue a starttls|tls (is )?required|encryption required/i\n"
    "class=auth status=5.7.8\n"
    "class=auth status=5.7.9\n"
    "class=auth status=5.7.11\n"
    "class=auth code=535\n"
    "class=auth code=530 text=/auth/i\n"
    "class=auth status=5.7.0 text=/authenticat/i\n"
    "\n"
    "# Slow down: the peer limits connections or messages.\n"
    "class=throttled status=4.7.28 action=rate:1/m for 1h\n"
    "class=throttled code=421 text=/too many (connections|messages)|rate|throttl|try again later/i "
    "action=suspend:10m\n"
    "class=throttled code=4xx text=/rate limit|too many (connections|messages)|throttl|exceeded "
    ".*limit/i action=rate:10/m for 30m\n"
    "class=throttled code=421 action=suspend:2m\n"
    "\n"
    "# Message size.\n"
    "class=message-too-big status=5.3.4\n"
    "class=message-too-big status=5.2.3\n"
    "class=message-too-big code=552 text=/size|too (big|large)/i\n"
    "\n"
    "# Mailbox full (permanent or temporary).\n"
    "class=mailbox-full status=5.2.2\n"
    "class=mailbox-full status=4.2.2\n"
    "class=mailbox-full text=/(mailbox|quota|storage).*(full|exceeded)|over ?quota|insufficient "
    "(storage|disk)/i\n"
    "\n"
    "# The address does not exist or no longer takes mail.\n"
    "class=bad-mailbox status=5.1.1\n"
    "class=bad-mailbox status=5.1.6\n"
    "class=bad-mailbox status=5.2.1\n"
    "class=bad-mailbox code=5xx text=/(no such|unknown|invalid) "
    "(user|recipient|mailbox|address)|user unknown|(address|mailbox|user|recipient) does not "
    "exist|mailbox unavailable|recipient (address )?rejected/i\n"
    "\n"
    "# The domain has no route.\n"
    "class=domain-not-found status=5.1.2\n"
    "class=domain-not-found status=5.1.10\n"
    "class=domain-not-found status=5.4.4\n"
    "class=domain-not-found text=/(host|domain) (not found|unknown)|no such domain|domain does not "
    "exist|null mx/i\n"
    "\n"
    "# Spam and reputation blocks, and other policy refusals.\n"
    "class=policy text=/spam|blocked|block ?list|black ?list|reputation|dnsbl|rbl|spamhaus/i\n"
    "class=policy status=5.7.*\n"
    "class=policy status=4.7.*\n"
    "class=policy code=554\n";

const char *sk_rules_default_text(void)
{
    return default_rules;
}

size_t sk_rules_count(const sk_rules *r)
{
    return r ? r->n : 0;
}

void sk_rules_free(sk_rules *r)
{
    if (!r) return;
    for (size_t i = 0; i < r->n; i++)
        if (r->r[i].has_regex) regfree(&r->r[i].re);
    sk_free(r->r);
    sk_free(r);
}

/* "550", "5xx", "45x": three characters, digits or x, first 2-5. */
static int code_pattern_ok(const char *v)
{
    if (strlen(v) != 3 || v[0] < '2' || v[0] > '5') return 0;
    for (int i = 1; i < 3; i++)
        if (!isdigit((unsigned char)v[i]) && v[i] != 'x') return 0;
    return 1;
}

/* "5.1.1" exact, or "5.7.*" / "5.*" prefix (RFC 3463 class.subject.detail). */
static int status_pattern(const char *v, rule *out)
{
    size_t n = strlen(v);
    if (n >= sizeof out->status) return 0;
    if (n >= 2 && v[n - 1] == '*' && v[n - 2] == '.') {
        /* The part before ".*" must be a valid class or class.subject. */
        char probe[24];
        snprintf(probe, sizeof probe, "%.*s%s", (int)(n - 2), v, n == 3 ? ".0.0" : ".0");
        if (!sk_enhanced_valid(probe, 0) || (n != 3 && strchr(v, '.') == v + n - 2)) return 0;
        memcpy(out->status, v, n - 1); /* keep the final '.' so "5.7." never matches "5.70.1" */
        out->status[n - 1] = '\0';
        out->status_prefix = 1;
        return 1;
    }
    if (!sk_enhanced_valid(v, 0)) return 0;
    memcpy(out->status, v, n + 1);
    return 1;
}

/* "suspend:10m" or "rate:N/UNIT" (the "for DURATION" part is given apart). */
static const char *parse_action(const char *v, const char *for_dur, sk_traffic_action *a)
{
    if (strncmp(v, "suspend:", 8) == 0) {
        if (for_dur) return "suspend takes no \"for\"";
        a->kind = SK_TRAFFIC_SUSPEND;
        if (sk_parse_duration_ms(v + 8, &a->duration_ms) || !a->duration_ms)
            return "bad suspend duration (want e.g. suspend:10m)";
        return NULL;
    }
    if (strncmp(v, "rate:", 5) == 0) {
        a->kind = SK_TRAFFIC_RATE;
        char *end;
        errno = 0;
        unsigned long n = strtoul(v + 5, &end, 10);
        if (end == v + 5 || errno || n == 0 || n > 1000000 || *end != '/')
            return "bad rate (want rate:N/UNIT for DURATION)";
        static const struct {
            const char *unit;
            uint64_t ms;
        } units[] = {{"s", 1000}, {"m", 60000}, {"h", 3600000}, {"d", 86400000}};
        size_t k = 0;
        while (k < 4 && strcmp(end + 1, units[k].unit) != 0) k++;
        if (k == 4) return "bad rate unit (want s, m, h or d)";
        a->rate_count = (unsigned)n;
        a->rate_per_ms = units[k].ms;
        if (!for_dur) return "a rate needs \"for DURATION\"";
        if (sk_parse_duration_ms(for_dur, &a->duration_ms) || !a->duration_ms)
            return "bad duration after \"for\"";
        return NULL;
    }
    return "unknown action (want suspend:DURATION or rate:N/UNIT for DURATION)";
}

/* glibc's regcomp copies a sub-expression for each repetition it unrolls
 * ("a+" becomes "aa*", "a{3}" becomes "aaa"), so repetitions that nest or
 * follow one another ("u+++++...", "((a*)+)+") grow its tree
 * exponentially; when the repeated part can match the empty string
 * ("(()+)+"), the closures it computes over that tree grow with the
 * square. A 50-octet rule can take seconds and gigabytes. Estimate that
 * work first and refuse what is past SK_RULES_REGEX_COST_MAX. (POSIX
 * 9.4.6 leaves adjacent duplication symbols undefined anyway.) The scan
 * follows the ERE grammar loosely; regcomp still reports syntax errors. */
typedef struct re_cost {
    uint64_t cost; /* nodes once unrolled, capped just past the maximum */
    int empty;     /* can match the empty string */
    int depth;     /* repetitions inside repetitions (SK_RULES_REGEX_REPEAT_DEPTH_MAX) */
} re_cost;

typedef struct re_scan {
    const char *p;
    int depth;
} re_scan;

static uint64_t re_cap(uint64_t v)
{
    return v > SK_RULES_REGEX_COST_MAX ? SK_RULES_REGEX_COST_MAX + 1 : v;
}

static re_cost re_alternation(re_scan *s);

/* One atom: a group, a bracket expression, an anchor, an octet. */
static re_cost re_atom(re_scan *s)
{
    char c = *s->p;
    if (c == '(') {
        s->p++;
        /* Bound the recursion: deeper groups are refused outright. */
        if (++s->depth > 32) return (re_cost){SK_RULES_REGEX_COST_MAX + 1, 0, 0};
        re_cost g = re_alternation(s);
        s->depth--;
        if (*s->p == ')') s->p++;
        g.cost = re_cap(g.cost + 1);
        return g;
    }
    if (c == '[') {
        s->p++;
        if (*s->p == '^') s->p++;
        if (*s->p == ']') s->p++;
        while (*s->p && *s->p != ']') {
            /* "[:alpha:]", "[.x.]", "[=e=]" may hold a ']'. */
            if (s->p[0] == '[' && s->p[1] && strchr(":.=", s->p[1])) {
                char end = s->p[1];
                s->p += 2;
                while (*s->p && !(s->p[0] == end && s->p[1] == ']')) s->p++;
                if (*s->p) s->p += 2;
            } else {
                s->p++;
            }
        }
        if (*s->p) s->p++;
        return (re_cost){1, 0, 0};
    }
    if (c == '\\' && s->p[1]) s->p++;
    s->p++;
    return (re_cost){1, c == '^' || c == '$', 0};
}

/* Copies of the atom a repetition operator at s->p makes, and whether the
 * result can be empty; 0 when there is no operator. */
static uint64_t re_repeat(re_scan *s, int *empty)
{
    char c = *s->p;
    if (c == '*' || c == '?' || c == '+') {
        s->p++;
        if (c != '+') *empty = 1;
        return 2;
    }
    if (c != '{' || !isdigit((unsigned char)s->p[1])) return 0;
    /* {m}, {m,} and {m,n}: up to max(m, n) + 1 copies. */
    char *end;
    unsigned long m = strtoul(s->p + 1, &end, 10), n = m;
    if (*end == ',') {
        end++;
        if (isdigit((unsigned char)*end)) n = strtoul(end, &end, 10);
    }
    if (*end != '}') return 0;
    s->p = end + 1;
    if (m == 0) *empty = 1;
    unsigned long most = m > n ? m : n;
    return most >= SK_RULES_REGEX_COST_MAX ? SK_RULES_REGEX_COST_MAX + 1 : (uint64_t)most + 1;
}

/* A branch: pieces (an atom and its repetitions) one after another. */
static re_cost re_branch(re_scan *s)
{
    re_cost b = {0, 1, 0};
    while (*s->p && *s->p != '|' && *s->p != ')') {
        re_cost a = re_atom(s);
        uint64_t k;
        int empty = a.empty, ops = 0;
        while ((k = re_repeat(s, &empty)) != 0) {
            /* Repeating what can be empty costs the square (closures). */
            a.cost = re_cap(a.cost * (a.empty ? k * k : k));
            a.empty = empty;
            /* One level per repetition; a second operator right after the
             * first ("a**", "a+?") is refused outright. */
            a.depth = ops++ ? SK_RULES_REGEX_REPEAT_DEPTH_MAX + 1 : a.depth + 1;
        }
        b.cost = re_cap(b.cost + a.cost);
        b.empty &= a.empty;
        if (a.depth > b.depth) b.depth = a.depth;
    }
    return b;
}

static re_cost re_alternation(re_scan *s)
{
    re_cost t = re_branch(s);
    while (*s->p == '|') {
        s->p++;
        re_cost b = re_branch(s);
        t.cost = re_cap(t.cost + b.cost);
        t.empty |= b.empty;
        if (b.depth > t.depth) t.depth = b.depth;
    }
    return t;
}

/* 1 when the regex is cheap enough to compile. */
static int re_affordable(const char *re)
{
    re_scan s = {re, 0};
    uint64_t total = 0;
    int depth = 0;
    while (*s.p) {
        re_cost c = re_alternation(&s);
        total = re_cap(total + c.cost);
        if (c.depth > depth) depth = c.depth;
        if (*s.p == ')') s.p++; /* unbalanced: regcomp will say so */
    }
    return total <= SK_RULES_REGEX_COST_MAX && depth <= SK_RULES_REGEX_REPEAT_DEPTH_MAX;
}

/* One rule line into out; returns NULL or what is wrong. buf is the line
 * (modified in place). */
static const char *parse_rule(char *p, rule *out, char *regerr, size_t regerr_size)
{
    int have_class = 0, have_code = 0, have_status = 0, have_action = 0;
    while (*p) {
        while (isspace((unsigned char)*p)) p++;
        if (!*p) break;
        char *key = p;
        while (*p && *p != '=' && !isspace((unsigned char)*p)) p++;
        if (*p != '=') return "expected key=value";
        *p++ = '\0';
        char *val = p;
        if (strcmp(key, "text") == 0) {
            if (out->has_regex) return "text given twice";
            if (*val != '/') return "text must be /REGEX/ or /REGEX/i";
            char *q = val + 1;
            while (*q && *q != '/') q += (*q == '\\' && q[1]) ? 2 : 1;
            if (*q != '/') return "text regex has no closing /";
            *q++ = '\0';
            int flags = REG_EXTENDED | REG_NOSUB;
            while (*q && !isspace((unsigned char)*q)) {
                if (*q != 'i') return "unknown regex flag (only i)";
                flags |= REG_ICASE;
                q++;
            }
            /* "\/" stands for "/" inside the delimiters. */
            char *w = val + 1;
            for (char *r = val + 1; *r; r++) {
                if (r[0] == '\\' && r[1] == '/') r++;
                *w++ = *r;
            }
            *w = '\0';
            if (!re_affordable(val + 1))
                return "text regex too complex (nested or stacked repetition)";
            int rc = regcomp(&out->re, val + 1, flags);
            if (rc) {
                regerror(rc, &out->re, regerr, regerr_size);
                return regerr;
            }
            out->has_regex = 1;
            p = q;
            continue;
        }
        while (*p && !isspace((unsigned char)*p)) p++;
        if (*p) *p++ = '\0';
        if (strcmp(key, "class") == 0) {
            int c = sk_class_parse(val);
            if (have_class++) return "class given twice";
            if (c < 0) return "unknown class";
            out->cls = (sk_class)c;
        } else if (strcmp(key, "code") == 0) {
            if (have_code++) return "code given twice";
            if (!code_pattern_ok(val)) return "bad code (want e.g. 550, 5xx, 45x)";
            memcpy(out->code, val, 4);
        } else if (strcmp(key, "status") == 0) {
            if (have_status++) return "status given twice";
            if (!status_pattern(val, out)) return "bad status (want e.g. 5.1.1 or 5.7.*)";
        } else if (strcmp(key, "action") == 0) {
            if (have_action++) return "action given twice";
            /* "rate:N/UNIT for DURATION": take the two words that follow. */
            char *for_dur = NULL;
            char *q = p;
            while (isspace((unsigned char)*q)) q++;
            if (strncmp(q, "for", 3) == 0 && isspace((unsigned char)q[3])) {
                q += 3;
                while (isspace((unsigned char)*q)) q++;
                for_dur = q;
                while (*q && !isspace((unsigned char)*q)) q++;
                if (*q) *q++ = '\0';
                p = q;
            }
            const char *why = parse_action(val, for_dur, &out->action);
            if (why) return why;
        } else {
            return "unknown key (want class, code, status, text, action)";
        }
    }
    if (!have_class) return "no class=";
    if (!have_code && !have_status && !out->has_regex)
        return "a rule needs at least one of code=, status=, text=";
    return NULL;
}

sk_err sk_rules_parse(const char *text, size_t len, const char *origin, sk_rules **out,
                      sk_error *err)
{
    *out = NULL;
    sk_rules *rs = sk_calloc(1, sizeof *rs);
    if (!rs) return sk_error_set(err, SK_ERR_NOMEM, SK_STEP_NONE, "out of memory");
    size_t pos = 0, lineno = 0, cap = 0;
    while (pos < len) {
        const char *nl = memchr(text + pos, '\n', len - pos);
        size_t end = nl ? (size_t)(nl - text) : len;
        size_t n = end - pos;
        lineno++;
        char line[SK_RULES_LINE_MAX_OCTETS + 1];
        const char *why = NULL;
        char regerr[160];
        if (n > SK_RULES_LINE_MAX_OCTETS) {
            why = "line too long";
        } else {
            memcpy(line, text + pos, n);
            line[n] = '\0';
            if (n && line[n - 1] == '\r') line[n - 1] = '\0';
        }
        pos = nl ? end + 1 : len;
        if (!why) {
            char *p = line;
            while (isspace((unsigned char)*p)) p++;
            if (!*p || *p == '#') continue;
            sk_err ge = sk_array_grow(&rs->r, &cap, rs->n + 1, sizeof *rs->r, SK_RULES_MAX);
            if (ge) {
                sk_rules_free(rs);
                return sk_error_set(err, ge, SK_STEP_NONE, "%s:%zu: too many rules", origin,
                                    lineno);
            }
            rule *r = &rs->r[rs->n];
            memset(r, 0, sizeof *r);
            r->line = lineno;
            why = parse_rule(p, r, regerr, sizeof regerr);
            if (!why)
                rs->n++;
            else if (r->has_regex)
                regfree(&r->re);
        }
        if (why) {
            sk_rules_free(rs);
            return sk_error_set(err, SK_ERR_CONFIG, SK_STEP_NONE, "%s:%zu: %s", origin, lineno,
                                why);
        }
    }
    *out = rs;
    return SK_OK;
}

sk_err sk_rules_load(const char *path, sk_rules **out, sk_error *err)
{
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return sk_error_set(err, SK_ERR_IO, SK_STEP_NONE, "%s: %s", path, strerror(errno));
    sk_buf b = SK_BUF_INIT((size_t)SK_RULES_MAX * SK_RULES_LINE_MAX_OCTETS);
    sk_err e = sk_buf_read_fd(&b, fd, SK_BUF_READ_ALL);
    close(fd);
    if (e) {
        sk_buf_free(&b);
        return sk_error_set(err, e, SK_STEP_NONE, "%s: cannot read%s", path,
                            e == SK_ERR_TOO_LONG ? " (too large)" : "");
    }
    e = sk_rules_parse(sk_buf_cstr(&b), b.len, path, out, err);
    sk_buf_free(&b);
    return e;
}

sk_err sk_rules_default(sk_rules **out, sk_error *err)
{
    return sk_rules_parse(default_rules, sizeof default_rules - 1, "built-in rules", out, err);
}

static int code_matches(const char *pat, int code)
{
    if (!pat[0]) return 1;
    char c[4];
    if (code < 0 || code > 999) return 0;
    snprintf(c, sizeof c, "%03u", (unsigned)code);
    for (int i = 0; i < 3; i++)
        if (pat[i] != 'x' && pat[i] != c[i]) return 0;
    return 1;
}

static int status_matches(const rule *r, const char *enhanced)
{
    if (!r->status[0]) return 1;
    if (!enhanced || !enhanced[0]) return 0;
    if (r->status_prefix) return strncmp(enhanced, r->status, strlen(r->status)) == 0;
    return strcmp(enhanced, r->status) == 0;
}

sk_rule_match sk_rules_match(const sk_rules *rs, int code, const char *enhanced, const char *text)
{
    sk_rule_match m = {0};
    for (size_t i = 0; rs && i < rs->n; i++) {
        const rule *r = &rs->r[i];
        if (!code_matches(r->code, code) || !status_matches(r, enhanced)) continue;
        if (r->has_regex && regexec(&r->re, text ? text : "", 0, NULL, 0) != 0) continue;
        m.matched = 1;
        m.cls = r->cls;
        m.action = r->action;
        m.line = r->line;
        return m;
    }
    return m;
}
