/* Reply classification rules: a small line format users extend, compiled
 * once (PCRE2, with match, depth and heap limits: rules files come from
 * users and reply texts from anyone) and matched first-match-wins on code,
 * enhanced status and text. The built-in set is etc/smtpkit-rules.conf. */
#include <smtpkit/classify.h>
#include <smtpkit/reply.h>

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

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
    [SK_CLASS_EXPIRED] = "expired",
    [SK_CLASS_BLOCKED] = "blocked",
    [SK_CLASS_CONTENT] = "content",
    [SK_CLASS_VIRUS] = "virus",
    [SK_CLASS_AUTH_FAILURE] = "auth-failure",
    [SK_CLASS_MAILBOX_DISABLED] = "mailbox-disabled",
    [SK_CLASS_SYSTEM_ERROR] = "system-error",
    [SK_CLASS_UNDETERMINED] = "undetermined",
};
_Static_assert(sizeof class_names / sizeof class_names[0] == SK_CLASS__COUNT, "class_names");

const char *sk_class_name(sk_class c)
{
    return (unsigned)c < SK_CLASS__COUNT ? class_names[c] : "unknown";
}

int sk_class_is_temporary(sk_class c)
{
    /* A slow-down or a give-up after retries says nothing about the
     * address: never a suppression, whatever a rules file says. */
    return c == SK_CLASS_THROTTLED || c == SK_CLASS_EXPIRED;
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
    pcre2_code *re; /* NULL: no text= */
    sk_traffic_action action;
} rule;

struct sk_rules {
    rule *r;
    size_t n;
    /* PCRE2's allocations go through sk_malloc (allocation-failure
     * sweeps); the match context carries the limits. Both are only read
     * once the rules are loaded, so threads may share them. */
    pcre2_general_context *gc;
    pcre2_compile_context *cc;
    pcre2_match_context *mc;
    sk_class_policy policy[SK_CLASS__COUNT]; /* from define lines */
};

/* The same text as etc/smtpkit-rules.conf (test_classify checks it). */
static const char default_rules[] =
    "# SMTPKit reply classification rules (the built-in default set).\n"
    "#\n"
    "# One rule per line: key=value conditions and a result. The first rule\n"
    "# that matches a reply wins, so specific rules come before general ones.\n"
    "#   code=550 | code=5xx | code=45x    reply code, exact or with x wildcards\n"
    "#   status=5.1.1 | status=5.7.*        enhanced status, exact or prefix\n"
    "#   text=/REGEX/ or text=/REGEX/i      PCRE2 regex on the reply text\n"
    "#   class=NAME                         a class named by a define line below\n"
    "#   action=suspend:DURATION            stop sending to the destination a while\n"
    "#   action=rate:N/UNIT for DURATION    at most N messages per s|m|h|d\n"
    "# A define line says what a class means for the recipient:\n"
    "#   define class=NAME suppress=no|DURATION [evidence=strong|any]\n"
    "# A permanent failure of a class with suppress=DURATION puts the recipient\n"
    "# on the suppression list for that long; with evidence=strong (the\n"
    "# default) only when the answer came from the servers of the recipient's\n"
    "# own domain, or the same class came back twice for the address.\n"
    "# Temporary classes (throttled, expired) never suppress.\n"
    "# Copy this file, edit it, and point the server at it to change the rules.\n"
    "\n"
    "define class=bad-mailbox suppress=30d\n"
    "define class=mailbox-disabled suppress=90d\n"
    "define class=domain-not-found suppress=7d\n"
    "define class=mailbox-full suppress=no\n"
    "define class=message-too-big suppress=no\n"
    "define class=throttled suppress=no\n"
    "define class=expired suppress=no\n"
    "define class=policy suppress=no\n"
    "define class=blocked suppress=no\n"
    "define class=content suppress=no\n"
    "define class=virus suppress=no\n"
    "define class=auth-failure suppress=no\n"
    "define class=auth suppress=no\n"
    "define class=tls-required suppress=no\n"
    "define class=system-error suppress=no\n"
    "define class=undetermined suppress=no\n"
    "define class=other suppress=no\n"
    "\n"
    "# Greylisting is a plain \"try again later\": retry on the normal schedule.\n"
    "class=other code=4xx text=/grey ?list/i\n"
    "\n"
    "# Providers whose reply texts say more than their codes (the texts their\n"
    "# postmaster pages publish). Gmail's 4.2.1/5.2.1 rate reply is not a bad\n"
    "# mailbox; its disabled and unknown accounts say so in words.\n"
    "class=throttled text=/receiving mail (at a rate|too quickly)|rate that prevents additional "
    "messages/i action=rate:10/m for 30m\n"
    "class=mailbox-disabled text=/account that you tried to reach (is|has been) "
    "(disabled|inactive)/i\n"
    "class=bad-mailbox text=/account that you tried to reach does not exist/i\n"
    "# Yahoo: \"This user doesn't have a yahoo.com account\" is a bad mailbox\n"
    "# whatever the status; [TS01]..[TSS04] deferrals are volume limits; 5.7.9\n"
    "# \"not accepted for policy reasons\" is policy, not authentication.\n"
    "class=bad-mailbox text=/(doesn.?t|does not) have an? [a-z0-9.-]+ account/i\n"
    "class=throttled code=4xx text=/\\[TSS?0[1-4]\\]|unexpected volume|user complaints/i "
    "action=suspend:30m\n"
    "class=policy status=5.7.9 text=/policy reasons/i\n"
    "# Microsoft: directory-based edge blocking answers 5.4.1 for unknown\n"
    "# recipients; banned sending addresses are reputation blocks.\n"
    "class=bad-mailbox status=5.4.1 text=/recipient address rejected: access denied/i\n"
    "class=blocked text=/banned sending "
    "ip|\\bS3(140|150)\\b|\\b5\\.7\\.(60[6-9]|6[1-4][0-9])\\b/i\n"
    "# Exchange answers 5.1.10 (null MX in RFC 7505) for a recipient its\n"
    "# directory does not know; Domino says the user is not in its directory.\n"
    "class=bad-mailbox text=/RESOLVER\\.ADR\\.Recip(ient)?NotFound|not listed in (the )?(Domino "
    "Directory|public name)/i\n"
    "# A mailing list's moderator refused a post (Mailman's notice, read by\n"
    "# the bounce reader's \"list\" detector): the list's address is fine.\n"
    "class=policy text=/rejected by the list moderator/i\n"
    "\n"
    "# Encryption and authentication (checked before the 5.7.* policy rules).\n"
    "class=tls-required status=5.7.10\n"
    "class=tls-required code=530 text=/starttls|tls|encrypt/i\n"
    "class=tls-required text=/must issue a starttls|tls (is )?required|encryption required/i\n"
    "# The sender's domain failed SPF, DKIM or DMARC (RFC 7372 5.7.23, 5.7.24;\n"
    "# Gmail's 5.7.26).\n"
    "class=auth-failure status=5.7.23\n"
    "class=auth-failure status=5.7.24\n"
    "class=auth-failure status=5.7.26\n"
    "class=auth-failure code=5xx text=/\\b(spf|dkim|dmarc)\\b|unauthenticated "
    "(e-?mail|message)|fails? to pass authentication/i\n"
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
    "# Given up after retries (RFC 3463 X.4.7).\n"
    "class=expired status=4.4.7\n"
    "class=expired status=5.4.7\n"
    "\n"
    "# Mailbox full (permanent or temporary; a temporary one given up is\n"
    "# expired all the same). Before the words of giving up, which say less\n"
    "# than the cause (Exim's own \"mailbox is full: retry timeout exceeded\"),\n"
    "# and before the size rules: X.2.2 is the mailbox's size, not the\n"
    "# message's (\"552 5.2.2 Mailbox size limit exceeded\").\n"
    "class=mailbox-full status=5.2.2\n"
    "class=mailbox-full status=4.2.2\n"
    "class=mailbox-full text=/(mailbox|quota|storage|inbox).{0,20}(full|exceeded)|over "
    "?quota|insufficient (storage|disk)|exceeded (the )?(storage|quota)/i\n"
    "# A mailbox write refused by the system's file size limit (EFBIG, \"File\n"
    "# too large\"): Postfix local(8) and virtual(8) at their mailbox size limit,\n"
    "# \"cannot update mailbox ... error writing message: File too large\".\n"
    "class=mailbox-full text=/mailbox.{0,300}file too large/i\n"
    "\n"
    "# Given up after retries, in the words MTAs use.\n"
    "class=expired text=/retry time(out)? (not reached|exceeded)|delivery time expired|message "
    "expired|could not be delivered for [0-9.]+ (days|hours)/i\n"
    "\n"
    "# Message size.\n"
    "class=message-too-big status=5.3.4\n"
    "class=message-too-big status=5.2.3\n"
    "class=message-too-big code=552 text=/size|too (big|large)/i\n"
    "class=message-too-big text=/message (size )?(exceeds|is too (big|large))|too large for/i\n"
    "\n"
    "# The mailbox exists no more, or takes no mail (RFC 3463 X.2.1).\n"
    "class=mailbox-disabled status=5.2.1\n"
    "class=mailbox-disabled text=/(account|mailbox|user) (is |has been "
    ")?(disabled|deactivated|suspended|inactive|locked)|no longer (active|in use|available)/i\n"
    "\n"
    "# The address does not exist.\n"
    "class=bad-mailbox status=5.1.1\n"
    "class=bad-mailbox status=5.1.6\n"
    "class=bad-mailbox code=5xx text=/(no such|unknown|invalid|non-?existent) "
    "(user|recipient|mailbox|address|account)|user "
    "unknown|(address|mailbox|user|recipient|account) (does not|doesn.?t) exist|mailbox "
    "unavailable|recipient (address )?rejected|no mailbox here|not a valid "
    "(mailbox|recipient)|unknown local part|user not found|no such person/i\n"
    "class=bad-mailbox text=/(benutzer|empf.nger|adresse) (unbekannt|existiert "
    "nicht)|(utilisateur|destinataire|adresse) (inconnu|inexistant)|n.existe "
    "pas|(usuario|destinatario) (desconocido|no existe)|utente sconosciuto|non esiste/i\n"
    "\n"
    "# The domain has no route.\n"
    "class=domain-not-found status=5.1.2\n"
    "class=domain-not-found status=5.1.10\n"
    "class=domain-not-found status=5.4.4\n"
    "class=domain-not-found text=/(host|domain)( name)? (not found|unknown)|no such domain|domain "
    "does not exist|null mx|unrouteable address|couldn.?t find any host|no mx (record|host)|mx "
    "records point to non-?existent hosts/i\n"
    "\n"
    "# Viruses, then spam and reputation blocks, then other policy refusals.\n"
    "class=virus text=/virus|malware|infected|trojan/i\n"
    "class=blocked text=/block ?list|black "
    "?list|reputation|dnsbl|\\brbl\\b|spamhaus|spamcop|barracuda|blocked using|listed "
    "(at|on|in)|poor sender|ip (address )?(is )?blocked/i\n"
    "class=content text=/spam|content (filter|rejected)|message content|phish|suspicious|bulk "
    "mail|not accepted due to content/i\n"
    "class=policy text=/blocked|relay(ing)? (access )?denied|not permitted|refused/i\n"
    "\n"
    "# Local trouble at the receiving side.\n"
    "class=system-error status=5.3.*\n"
    "class=system-error status=5.4.6\n"
    "class=system-error text=/mail loop|loops back|too many hops|routing loop|local (configuration "
    ")?error|internal (server )?error|system (error|failure)/i\n"
    "\n"
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
    for (size_t i = 0; i < r->n; i++) pcre2_code_free(r->r[i].re);
    sk_free(r->r);
    pcre2_match_context_free(r->mc);
    pcre2_compile_context_free(r->cc);
    pcre2_general_context_free(r->gc);
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

static void *pcre_alloc(PCRE2_SIZE n, void *ctx)
{
    (void)ctx;
    return sk_malloc(n);
}

static void pcre_free(void *p, void *ctx)
{
    (void)ctx;
    sk_free(p);
}

/* An empty list with PCRE2's contexts and limits set. */
static sk_rules *rules_new(void)
{
    sk_rules *rs = sk_calloc(1, sizeof *rs);
    if (!rs) return NULL;
    rs->gc = pcre2_general_context_create(pcre_alloc, pcre_free, NULL);
    if (rs->gc) rs->cc = pcre2_compile_context_create(rs->gc);
    if (rs->cc) rs->mc = pcre2_match_context_create(rs->gc);
    if (!rs->mc) {
        sk_rules_free(rs);
        return NULL;
    }
    pcre2_set_parens_nest_limit(rs->cc, SK_RULES_REGEX_PARENS_NEST_MAX);
    pcre2_set_match_limit(rs->mc, SK_RULES_REGEX_MATCH_LIMIT);
    pcre2_set_depth_limit(rs->mc, SK_RULES_REGEX_DEPTH_LIMIT);
    pcre2_set_heap_limit(rs->mc, SK_RULES_REGEX_HEAP_LIMIT_KIB);
    return rs;
}

/* 1 match, 0 no match, -1 not decided (a limit was reached, or no memory
 * for the match data): the rule is skipped, and the caller told. */
static int regex_matches(const sk_rules *rs, const pcre2_code *re, const char *text)
{
    pcre2_match_data *md = pcre2_match_data_create(1, rs->gc);
    if (!md) return -1;
    int rc = pcre2_match(re, (PCRE2_SPTR)text, strlen(text), 0, 0, md, rs->mc);
    pcre2_match_data_free(md);
    if (rc >= 0) return 1;
    return rc == PCRE2_ERROR_NOMATCH ? 0 : -1;
}

/* "define class=NAME suppress=no|DURATION [evidence=strong|any]" (p is
 * after "define"; modified in place) into pol[]; NULL or what is wrong. */
static const char *parse_define(char *p, sk_class_policy *pol)
{
    int cls = -1, have_suppress = 0, have_evidence = 0;
    sk_class_policy d = {.defined = 1};
    while (*p) {
        while (isspace((unsigned char)*p)) p++;
        if (!*p) break;
        char *key = p;
        while (*p && *p != '=' && !isspace((unsigned char)*p)) p++;
        if (*p != '=') return "expected key=value";
        *p++ = '\0';
        char *val = p;
        while (*p && !isspace((unsigned char)*p)) p++;
        if (*p) *p++ = '\0';
        if (strcmp(key, "class") == 0) {
            if (cls >= 0) return "class given twice";
            cls = sk_class_parse(val);
            if (cls < 0) return "unknown class";
        } else if (strcmp(key, "suppress") == 0) {
            if (have_suppress++) return "suppress given twice";
            uint64_t ms = 0;
            if (strcmp(val, "no") != 0) {
                if (sk_parse_duration_ms(val, &ms) || ms < 1000)
                    return "bad suppress (want no or a duration, e.g. suppress=30d)";
                d.suppress = 1;
                d.suppress_s = ms / 1000;
            }
        } else if (strcmp(key, "evidence") == 0) {
            if (have_evidence++) return "evidence given twice";
            if (strcmp(val, "any") == 0)
                d.evidence_any = 1;
            else if (strcmp(val, "strong") != 0)
                return "bad evidence (want strong or any)";
        } else {
            return "unknown key in define (want class, suppress, evidence)";
        }
    }
    if (cls < 0) return "define needs class=";
    if (!have_suppress) return "define needs suppress=";
    if (d.suppress && sk_class_is_temporary((sk_class)cls))
        return "a temporary class never suppresses (want suppress=no)";
    if (pol[cls].defined) return "class defined twice";
    pol[cls] = d;
    return NULL;
}

/* 1 when line p (after leading space) is a define line; p then points
 * past the keyword. */
static int is_define(char **p)
{
    if (strncmp(*p, "define", 6) != 0 || !isspace((unsigned char)(*p)[6])) return 0;
    *p += 6;
    return 1;
}

/* Classes the file does not define take the built-in definitions: a rules
 * file written before define lines existed keeps the suppressions it had. */
static void builtin_policies(sk_class_policy *pol)
{
    const char *t = default_rules;
    while (*t) {
        const char *nl = strchr(t, '\n');
        size_t n = nl ? (size_t)(nl - t) : strlen(t);
        char line[SK_RULES_LINE_MAX_OCTETS + 1];
        if (n < sizeof line) {
            memcpy(line, t, n);
            line[n] = '\0';
            char *p = line;
            sk_class_policy one[SK_CLASS__COUNT] = {0};
            if (is_define(&p) && !parse_define(p, one))
                for (int c = 0; c < SK_CLASS__COUNT; c++)
                    if (one[c].defined && !pol[c].defined) pol[c] = one[c];
        }
        t += n + (nl ? 1 : 0);
    }
}

sk_class_policy sk_rules_class_policy(const sk_rules *r, sk_class c)
{
    if (!r || (unsigned)c >= SK_CLASS__COUNT) return (sk_class_policy){0};
    return r->policy[c];
}

/* parse_rule's answer when memory ran out (SK_ERR_NOMEM, not a mistake
 * in the file). */
static const char out_of_memory[] = "out of memory";

/* One rule line into out; returns NULL or what is wrong. buf is the line
 * (modified in place). */
static const char *parse_rule(char *p, rule *out, pcre2_compile_context *cc, char *regerr,
                              size_t regerr_size)
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
            if (out->re) return "text given twice";
            if (*val != '/') return "text must be /REGEX/ or /REGEX/i";
            char *q = val + 1;
            while (*q && *q != '/') q += (*q == '\\' && q[1]) ? 2 : 1;
            if (*q != '/') return "text regex has no closing /";
            *q++ = '\0';
            uint32_t opts = 0;
            while (*q && !isspace((unsigned char)*q)) {
                if (*q != 'i') return "unknown regex flag (only i)";
                opts |= PCRE2_CASELESS;
                q++;
            }
            /* "\/" stands for "/" inside the delimiters. */
            char *w = val + 1;
            for (char *r = val + 1; *r; r++) {
                if (r[0] == '\\' && r[1] == '/') r++;
                *w++ = *r;
            }
            *w = '\0';
            int rc;
            PCRE2_SIZE off;
            out->re =
                pcre2_compile((PCRE2_SPTR)(val + 1), PCRE2_ZERO_TERMINATED, opts, &rc, &off, cc);
            if (!out->re && (rc == PCRE2_ERROR_HEAP_FAILED || rc == PCRE2_ERROR_NOMEMORY))
                return out_of_memory;
            if (!out->re) {
                char msg[120];
                if (pcre2_get_error_message(rc, (PCRE2_UCHAR *)msg, sizeof msg) < 0)
                    snprintf(msg, sizeof msg, "error %d", rc);
                snprintf(regerr, regerr_size, "text regex: %s at offset %zu", msg, (size_t)off);
                return regerr;
            }
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
    if (!have_code && !have_status && !out->re)
        return "a rule needs at least one of code=, status=, text=";
    return NULL;
}

sk_err sk_rules_parse(const char *text, size_t len, const char *origin, sk_rules **out,
                      sk_error *err)
{
    *out = NULL;
    sk_rules *rs = rules_new();
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
        int defined_line = 0;
        char *p = line;
        if (!why) {
            while (isspace((unsigned char)*p)) p++;
            if (!*p || *p == '#') continue;
            defined_line = is_define(&p);
            if (defined_line) why = parse_define(p, rs->policy);
        }
        if (!why && !defined_line) {
            sk_err ge = sk_array_grow(&rs->r, &cap, rs->n + 1, sizeof *rs->r, SK_RULES_MAX);
            if (ge) {
                sk_rules_free(rs);
                return sk_error_set(err, ge, SK_STEP_NONE, "%s:%zu: too many rules", origin,
                                    lineno);
            }
            rule *r = &rs->r[rs->n];
            memset(r, 0, sizeof *r);
            r->line = lineno;
            why = parse_rule(p, r, rs->cc, regerr, sizeof regerr);
            if (!why)
                rs->n++;
            else
                pcre2_code_free(r->re);
        }
        if (why) {
            sk_rules_free(rs);
            if (why == out_of_memory)
                return sk_error_set(err, SK_ERR_NOMEM, SK_STEP_NONE, "%s:%zu: out of memory",
                                    origin, lineno);
            return sk_error_set(err, SK_ERR_CONFIG, SK_STEP_NONE, "%s:%zu: %s", origin, lineno,
                                why);
        }
    }
    builtin_policies(rs->policy);
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
        if (r->re) {
            int rc = regex_matches(rs, r->re, text ? text : "");
            if (rc < 0) m.undecided++;
            if (rc != 1) continue;
        }
        m.matched = 1;
        m.cls = r->cls;
        m.action = r->action;
        m.line = r->line;
        return m;
    }
    return m;
}
