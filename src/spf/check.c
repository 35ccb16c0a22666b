/* check_host() (RFC 7208 4-6) as a state machine on the resolver's loop:
 * each step asks DNS and the evaluation goes on in the answer's callback;
 * the limits of 4.6.4 and a total time limit bound the work. */
#include "spf_int.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <event2/event.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

static const char *const result_names[SK_SPF__COUNT] = {
    [SK_SPF_NONE] = "none",           [SK_SPF_NEUTRAL] = "neutral",
    [SK_SPF_PASS] = "pass",           [SK_SPF_FAIL] = "fail",
    [SK_SPF_SOFTFAIL] = "softfail",   [SK_SPF_TEMPERROR] = "temperror",
    [SK_SPF_PERMERROR] = "permerror",
};

const char *sk_spf_result_name(sk_spf_result r)
{
    return (unsigned)r < SK_SPF__COUNT ? result_names[r] : "?";
}

/* A check_host() in progress: the top-level one, an include's, or a
 * redirect's (which takes the place of the one that redirected). Each
 * include costs a lookup, so 10 of them at most are nested. */
#define FRAMES_MAX (SK_SPF_DNS_LOOKUPS_MAX + 2)
/* Lookups in flight at once: the addresses of the MX or PTR names. */
#define SLOTS_MAX                                                                                  \
    (SK_SPF_MX_NAMES_MAX > SK_SPF_PTR_NAMES_MAX ? SK_SPF_MX_NAMES_MAX : SK_SPF_PTR_NAMES_MAX)

typedef enum via { VIA_TOP, VIA_INCLUDE, VIA_REDIRECT } via;

typedef struct frame {
    char *domain;
    sk_spf_record *rec;
    size_t next; /* the next term */
    via via;
} frame;

/* What the DNS answers in flight are for. */
typedef enum step {
    ST_IDLE,
    ST_RECORD,    /* TXT of a frame's domain */
    ST_A,         /* a: A or AAAA of the target */
    ST_EXISTS,    /* exists: A of the target */
    ST_MX,        /* mx: MX of the target */
    ST_MX_ADDRS,  /* mx: addresses of each MX name (slots) */
    ST_PTR,       /* ptr, %{p}: PTR of the client */
    ST_PTR_ADDRS, /* ptr, %{p}: addresses of each PTR name (slots) */
    ST_EXP,       /* exp=: TXT of the explanation */
} step;

/* What to go on with once the PTR names are validated. */
typedef enum after { AFTER_TERM, AFTER_REDIRECT, AFTER_EXP, AFTER_EXP_TEXT } after;

typedef enum eval { EV_WAIT, EV_NOMATCH, EV_MATCH } eval;

typedef struct slot {
    sk_spf_check *c;
    sk_dns_query *q; /* in flight; NULL once answered */
    sk_dns_status status;
    int matched;
    char *name;
} slot;

struct sk_spf_check {
    sk_resolver *r;
    sk_spf_cb cb;
    void *ctx;
    sk_logger log;
    spf_ip ip;
    char ip_text[INET6_ADDRSTRLEN];
    char *sender, *local, *sender_domain, *helo, *receiver;
    int64_t now_s;
    unsigned void_max;
    frame frames[FRAMES_MAX];
    size_t depth;
    step step;
    sk_dns_query *q; /* the one lookup of ST_RECORD, ST_A, ST_EXISTS, ST_MX, ST_PTR, ST_EXP */
    slot slots[SLOTS_MAX];
    size_t nslots, pending;
    const sk_spf_term *term; /* the term being evaluated */
    char target[SK_SPF_DOMAIN_MAX_OCTETS + 1];
    /* 5.5: the client's validated names, made once per check. */
    int ptr_done, ptr_for_mech;
    after after;
    char **ptr_names;
    size_t nptr;
    char *exp_text; /* an explanation waiting for the PTR names */
    int decided;    /* the result is known; the explanation is being fetched */
    sk_spf_outcome *out;
    struct event *timer, *done_ev;
    int done;
};

/* ---- small helpers ---- */

static frame *top(sk_spf_check *c)
{
    return &c->frames[c->depth - 1];
}

static void trace(sk_spf_check *c, const char *fmt, ...) SK_PRINTF(2, 3);
static void trace(sk_spf_check *c, const char *fmt, ...)
{
    sk_spf_outcome *o = c->out;
    if (o->ntrace >= SK_SPF_TRACE_LINES_MAX) return;
    sk_buf b = SK_BUF_INIT(SK_LOG_LINE_MAX_OCTETS);
    sk_err e;
    if (o->ntrace == SK_SPF_TRACE_LINES_MAX - 1) {
        e = sk_buf_puts(&b, "... (trace cut)");
    } else {
        va_list ap;
        va_start(ap, fmt);
        e = sk_buf_vprintf(&b, fmt, ap);
        va_end(ap);
    }
    /* An out-of-memory trace line is left out, never the evaluation. */
    char **lines = e ? NULL : sk_realloc(o->trace, (o->ntrace + 1) * sizeof *lines);
    if (lines) {
        o->trace = lines;
        o->trace[o->ntrace++] = sk_buf_detach(&b, NULL);
    }
    sk_buf_free(&b);
}

static void cancel_lookups(sk_spf_check *c)
{
    sk_dns_query_cancel(c->q);
    c->q = NULL;
    for (size_t i = 0; i < c->nslots; i++) {
        sk_dns_query_cancel(c->slots[i].q);
        c->slots[i].q = NULL;
        sk_free(c->slots[i].name);
        c->slots[i].name = NULL;
    }
    c->nslots = c->pending = 0;
}

/* The end: the result (unless already decided) and its reason; the
 * callback runs on the loop's next turn. */
static void finish(sk_spf_check *c, sk_spf_result res, const char *fmt, ...) SK_PRINTF(3, 4);
static void finish(sk_spf_check *c, sk_spf_result res, const char *fmt, ...)
{
    if (c->done) return;
    c->done = 1;
    /* The reason first: its arguments may live in what is released next. */
    if (!c->decided) {
        c->out->result = res;
        sk_buf b = SK_BUF_INIT(SK_LOG_LINE_MAX_OCTETS);
        va_list ap;
        va_start(ap, fmt);
        sk_err e = sk_buf_vprintf(&b, fmt, ap);
        va_end(ap);
        sk_free(c->out->reason);
        c->out->reason = e ? NULL : sk_buf_detach(&b, NULL);
        sk_buf_free(&b);
    }
    cancel_lookups(c);
    evtimer_del(c->timer);
    event_active(c->done_ev, 0, 0);
}

/* RFC 1035 2.3.4 / RFC 7208 4.3: labels of 1 to 63 octets, 253 in all. */
static int name_ok(const char *name, size_t len)
{
    if (!len || len > SK_SPF_DOMAIN_MAX_OCTETS) return 0;
    size_t label = 0;
    for (size_t i = 0; i < len; i++) {
        if (name[i] == '.') {
            if (!label) return 0;
            label = 0;
        } else if (++label > SK_SPF_LABEL_MAX_OCTETS) {
            return 0;
        }
    }
    return label > 0;
}

/* 5.5 / 7.3 %{p}: the validated name to use for domain. */
static const char *ptr_for(const sk_spf_check *c, const char *domain)
{
    if (!c->ptr_done || !c->nptr) return NULL;
    size_t dl = strlen(domain);
    for (size_t i = 0; i < c->nptr; i++)
        if (!strcasecmp(c->ptr_names[i], domain)) return c->ptr_names[i];
    for (size_t i = 0; i < c->nptr; i++) {
        size_t nl = strlen(c->ptr_names[i]);
        if (nl > dl && c->ptr_names[i][nl - dl - 1] == '.' &&
            !strcasecmp(c->ptr_names[i] + nl - dl, domain))
            return c->ptr_names[i];
    }
    return c->ptr_names[0];
}

static void vars_for(const sk_spf_check *c, const char *domain, sk_spf_macro_vars *v)
{
    *v = (sk_spf_macro_vars){.sender = c->sender,
                             .local = c->local,
                             .sender_domain = c->sender_domain,
                             .domain = domain,
                             .ip = c->ip_text,
                             .ptr_name = ptr_for(c, domain),
                             .helo = c->helo,
                             .receiver = c->receiver,
                             .now_s = c->now_s};
}

typedef enum target { TARGET_OK, TARGET_BAD, TARGET_ERR } target;

/* 4.8, 7.3: the <target-name> of a domain-spec (the frame's domain when
 * absent) in c->target: macros expanded, a final dot dropped, cut from the
 * left to 253 octets. TARGET_BAD when the result is no domain name DNS can
 * ask for (an empty or too long label). */
static target make_target(sk_spf_check *c, const char *spec, const char *domain)
{
    sk_buf b = SK_BUF_INIT(SK_SPF_EXPAND_MAX_OCTETS);
    sk_err e;
    if (!spec) {
        e = sk_buf_puts(&b, domain);
    } else {
        sk_spf_macro_vars v;
        vars_for(c, domain, &v);
        e = sk_spf_macro_expand(spec, strlen(spec), SK_SPF_MACRO_DOMAIN, &v, &b);
    }
    if (e) {
        sk_buf_free(&b);
        return TARGET_ERR;
    }
    const char *s = sk_buf_cstr(&b);
    size_t len = b.len;
    if (len && s[len - 1] == '.') len--;
    while (len > SK_SPF_DOMAIN_MAX_OCTETS) {
        const char *dot = memchr(s, '.', len);
        if (!dot) break;
        len -= (size_t)(dot + 1 - s);
        s = dot + 1;
    }
    target t = name_ok(s, len) && !memchr(s, '\0', len) ? TARGET_OK : TARGET_BAD;
    size_t keep = len < sizeof c->target - 1 ? len : sizeof c->target - 1;
    memcpy(c->target, s, keep);
    c->target[keep] = '\0';
    sk_buf_free(&b);
    return t;
}

static int addr_matches(const sk_spf_check *c, const char *value, int cidr4, int cidr6)
{
    unsigned char a[16];
    if (c->ip.family == 4)
        return inet_pton(AF_INET, value, a) == 1 && spf_prefix_match(a, c->ip.a, cidr4);
    return inet_pton(AF_INET6, value, a) == 1 && spf_prefix_match(a, c->ip.a, cidr6);
}

static sk_dns_type addr_type(const sk_spf_check *c)
{
    return c->ip.family == 4 ? SK_DNS_A : SK_DNS_AAAA;
}

static const char *type_name(sk_dns_type t)
{
    switch (t) {
    case SK_DNS_A:
        return "A";
    case SK_DNS_AAAA:
        return "AAAA";
    case SK_DNS_MX:
        return "MX";
    case SK_DNS_PTR:
        return "PTR";
    default:
        return "TXT";
    }
}

static void on_answer(void *ctx, const sk_dns_result *res);
static void on_slot(void *ctx, const sk_dns_result *res);

static void ask(sk_spf_check *c, step st, const char *name, sk_dns_type type)
{
    c->step = st;
    if (sk_resolver_query(c->r, name, type, 0, on_answer, c, &c->q))
        finish(c, SK_SPF_TEMPERROR, "cannot look up %s %s", type_name(type), name);
}

/* Look up the addresses of names[] at once, one slot each. */
static void ask_addresses(sk_spf_check *c, step st, char **names, size_t n)
{
    c->step = st;
    c->nslots = c->pending = 0;
    for (size_t i = 0; i < n; i++) {
        slot *s = &c->slots[c->nslots++];
        *s = (slot){.c = c, .status = SK_DNS_TEMPFAIL, .name = names[i]};
        names[i] = NULL;
    }
    /* Count them all first: none answers before the loop's next turn, but
     * the count must not reach 0 half way. */
    c->pending = c->nslots;
    for (size_t i = 0; i < c->nslots; i++) {
        slot *s = &c->slots[i];
        if (sk_resolver_query(c->r, s->name, addr_type(c), 0, on_slot, s, &s->q)) {
            finish(c, SK_SPF_TEMPERROR, "cannot look up %s %s", type_name(addr_type(c)), s->name);
            return;
        }
    }
}

/* 4.6.4: one more term that causes DNS lookups; 0 (and permerror) past 10. */
static int count_lookup(sk_spf_check *c, const char *what)
{
    if (++c->out->lookups <= SK_SPF_DNS_LOOKUPS_MAX) return 1;
    finish(c, SK_SPF_PERMERROR, "more than %d DNS lookups (at %s in %s)", SK_SPF_DNS_LOOKUPS_MAX,
           what, top(c)->domain);
    return 0;
}

/* 4.6.4: a void lookup (NXDOMAIN or no answer); 0 (and permerror) past the
 * limit. */
static int count_void(sk_spf_check *c, const char *name)
{
    if (++c->out->void_lookups <= c->void_max) return 1;
    finish(c, SK_SPF_PERMERROR, "more than %u void DNS lookups (the last for %s)", c->void_max,
           name);
    return 0;
}

/* ---- frames ---- */

static void start_record(sk_spf_check *c);
static void run(sk_spf_check *c);
static void matched(sk_spf_check *c, const sk_spf_term *t);
static void need_ptr(sk_spf_check *c, after then, int for_mech);
static void exp_go(sk_spf_check *c);

static void free_frame(frame *f)
{
    sk_free(f->domain);
    sk_spf_record_free(f->rec);
    memset(f, 0, sizeof *f);
}

static void push_frame(sk_spf_check *c, const char *domain, via v)
{
    if (c->depth == FRAMES_MAX) {
        finish(c, SK_SPF_PERMERROR, "includes nested too deep at %s", domain);
        return;
    }
    frame *f = &c->frames[c->depth];
    memset(f, 0, sizeof *f);
    f->domain = sk_strdup(domain);
    if (!f->domain) {
        finish(c, SK_SPF_TEMPERROR, "out of memory");
        return;
    }
    f->via = v;
    c->depth++;
    start_record(c);
}

/* 4.3, 4.4: the domain, then its TXT records. */
static void start_record(sk_spf_check *c)
{
    frame *f = top(c);
    size_t len = strlen(f->domain);
    if (len && f->domain[len - 1] == '.') f->domain[--len] = '\0';
    /* 4.3: malformed, not multi-label, or an address literal: "none" at
     * the top; an include or redirect then gives permerror (5.2, 6.1). */
    if (!name_ok(f->domain, len) || !strchr(f->domain, '.') || f->domain[0] == '[') {
        if (f->via == VIA_TOP)
            finish(c, SK_SPF_NONE, "\"%s\" is not a domain name that can have SPF (RFC 7208 4.3)",
                   f->domain);
        else
            finish(c, SK_SPF_PERMERROR, "%s target \"%s\" is not a valid domain name",
                   f->via == VIA_INCLUDE ? "include" : "redirect", f->domain);
        return;
    }
    ask(c, ST_RECORD, f->domain, SK_DNS_TXT);
}

static void no_record(sk_spf_check *c, const char *why)
{
    frame *f = top(c);
    if (f->via == VIA_TOP)
        finish(c, SK_SPF_NONE, "%s", why);
    else /* 5.2: include of none; 6.1: redirect to none */
        finish(c, SK_SPF_PERMERROR, "%s=%s: %s", f->via == VIA_INCLUDE ? "include" : "redirect",
               f->domain, why);
}

/* 4.4, 4.5: exactly one "v=spf1" record among the TXT records. */
static void got_record(sk_spf_check *c, const sk_dns_result *res)
{
    frame *f = top(c);
    char why[256];
    if (res->status == SK_DNS_TEMPFAIL) {
        finish(c, SK_SPF_TEMPERROR, "DNS lookup of TXT for %s failed (timeout or server failure)",
               f->domain);
        return;
    }
    if (res->status == SK_DNS_NXDOMAIN) {
        snprintf(why, sizeof why, "%s does not exist", f->domain);
        no_record(c, why);
        return;
    }
    if (res->truncated) {
        finish(c, SK_SPF_PERMERROR, "more than %d TXT records at %s", SK_DNS_RECORDS_MAX,
               f->domain);
        return;
    }
    size_t n = 0, which = 0;
    for (size_t i = 0; i < res->count; i++)
        if (sk_spf_is_record(res->values[i], res->lengths[i])) {
            n++;
            which = i;
        }
    if (!n) {
        snprintf(why, sizeof why, "no SPF record at %s", f->domain);
        no_record(c, why);
        return;
    }
    if (n > 1) {
        finish(c, SK_SPF_PERMERROR, "%zu SPF records at %s (RFC 7208 4.5 allows one)", n,
               f->domain);
        return;
    }
    sk_err e =
        sk_spf_record_parse(res->values[which], res->lengths[which], &f->rec, why, sizeof why);
    if (e) {
        finish(c, e == SK_ERR_NOMEM ? SK_SPF_TEMPERROR : SK_SPF_PERMERROR, "SPF record of %s: %s",
               f->domain, e == SK_ERR_NOMEM ? "out of memory" : why);
        return;
    }
    trace(c, "%s: \"%.*s\"", f->domain,
          (int)(res->lengths[which] < 300 ? res->lengths[which] : 300), res->values[which]);
    run(c);
}

/* The result of the frame on top (a mechanism matched, or the default). */
static void frame_result(sk_spf_check *c, sk_spf_result res, const sk_spf_term *t)
{
    frame *f = top(c);
    if (c->depth == 1) {
        sk_spf_outcome *o = c->out;
        o->result = res;
        sk_buf b = SK_BUF_INIT(SK_LOG_LINE_MAX_OCTETS);
        sk_err e;
        if (t) {
            o->mechanism = sk_strdup(t->text);
            o->mechanism_domain = sk_strdup(f->domain);
            e = sk_buf_printf(&b, "%s matched in %s", t->text, f->domain);
        } else {
            e = sk_buf_printf(&b, "no mechanism matched in %s (default neutral)", f->domain);
        }
        sk_free(o->reason);
        o->reason = e ? NULL : sk_buf_detach(&b, NULL);
        sk_buf_free(&b);
        c->decided = 1;
        /* 6.2: an explanation for a fail from this record's mechanism. */
        if (res == SK_SPF_FAIL && t && f->rec->exp) {
            exp_go(c);
            return;
        }
        finish(c, res, "%s", o->reason ? o->reason : "");
        return;
    }
    /* 5.2: the result of an include. */
    free_frame(f);
    c->depth--;
    frame *parent = top(c);
    const sk_spf_term *inc = &parent->rec->terms[parent->next - 1];
    c->term = inc;
    if (res == SK_SPF_PASS) {
        matched(c, inc);
        return;
    }
    trace(c, "%s: %s -> no match (included %s)", parent->domain, inc->text,
          sk_spf_result_name(res));
    run(c);
}

static void matched(sk_spf_check *c, const sk_spf_term *t)
{
    trace(c, "%s: %s -> match (%s)", top(c)->domain, t->text, sk_spf_result_name(t->qualifier));
    frame_result(c, t->qualifier, t);
}

/* ---- redirect= and the end of a record ---- */

static void redirect_go(sk_spf_check *c)
{
    frame *f = top(c);
    const char *spec = f->rec->redirect;
    if (sk_spf_macro_uses_p(spec, strlen(spec)) && !c->ptr_done) {
        need_ptr(c, AFTER_REDIRECT, 0);
        return;
    }
    target t = make_target(c, spec, f->domain);
    if (t != TARGET_OK) {
        finish(c, SK_SPF_PERMERROR, "redirect=%s: \"%s\" is not a valid domain name", spec,
               c->target);
        return;
    }
    trace(c, "%s: redirect=%s", f->domain, c->target);
    /* 6.1: the new check_host() takes the place of this one; its record's
     * exp= is the one used (6.2). */
    char *domain = sk_strdup(c->target);
    if (!domain) {
        finish(c, SK_SPF_TEMPERROR, "out of memory");
        return;
    }
    free_frame(f);
    f->domain = domain;
    f->via = VIA_REDIRECT;
    start_record(c);
}

static void end_of_record(sk_spf_check *c)
{
    frame *f = top(c);
    /* 6.1: redirect is used when nothing matched, and never next to "all". */
    if (f->rec->redirect && !f->rec->has_all) {
        if (!count_lookup(c, "redirect")) return;
        redirect_go(c);
        return;
    }
    frame_result(c, SK_SPF_NEUTRAL, NULL); /* 4.7 */
}

/* ---- mechanisms ---- */

static eval ptr_names_match(sk_spf_check *c)
{
    size_t tl = strlen(c->target);
    for (size_t i = 0; i < c->nptr; i++) {
        const char *n = c->ptr_names[i];
        size_t nl = strlen(n);
        if (!strcasecmp(n, c->target) ||
            (nl > tl && n[nl - tl - 1] == '.' && !strcasecmp(n + nl - tl, c->target)))
            return EV_MATCH;
    }
    return EV_NOMATCH;
}

/* The DNS-querying mechanisms (its lookup already counted). */
static eval eval_dns_term(sk_spf_check *c)
{
    const sk_spf_term *t = c->term;
    frame *f = top(c);
    if (t->domain_spec && sk_spf_macro_uses_p(t->domain_spec, strlen(t->domain_spec)) &&
        !c->ptr_done) {
        need_ptr(c, AFTER_TERM, 0);
        return EV_WAIT;
    }
    target tg = make_target(c, t->domain_spec, f->domain);
    if (tg == TARGET_ERR) {
        finish(c, SK_SPF_PERMERROR, "%s: macro expansion failed", t->text);
        return EV_WAIT;
    }
    if (tg == TARGET_BAD && t->mech == SK_SPF_INCLUDE) {
        finish(c, SK_SPF_PERMERROR, "%s: \"%s\" is not a valid domain name", t->text, c->target);
        return EV_WAIT;
    }
    if (tg == TARGET_BAD) {
        /* A name no DNS query can carry (4.3, 4.8): nothing to match. */
        trace(c, "%s: %s -> no match (\"%s\" is not a valid domain name)", f->domain, t->text,
              c->target);
        return EV_NOMATCH;
    }
    switch (t->mech) {
    case SK_SPF_INCLUDE:
        trace(c, "%s: %s", f->domain, t->text);
        push_frame(c, c->target, VIA_INCLUDE);
        return EV_WAIT;
    case SK_SPF_A:
        ask(c, ST_A, c->target, addr_type(c));
        return EV_WAIT;
    case SK_SPF_EXISTS:
        /* 5.7: an A lookup whatever the client's address family. */
        ask(c, ST_EXISTS, c->target, SK_DNS_A);
        return EV_WAIT;
    case SK_SPF_MX:
        ask(c, ST_MX, c->target, SK_DNS_MX);
        return EV_WAIT;
    case SK_SPF_PTR:
        if (!c->ptr_done) {
            need_ptr(c, AFTER_TERM, 1);
            return EV_WAIT;
        }
        return ptr_names_match(c);
    default:
        return EV_NOMATCH;
    }
}

/* Evaluate terms until one needs DNS, one matches, or the record ends. */
static void run(sk_spf_check *c)
{
    while (!c->done) {
        frame *f = top(c);
        if (f->next >= f->rec->nterms) {
            end_of_record(c);
            return;
        }
        const sk_spf_term *t = &f->rec->terms[f->next++];
        c->term = t;
        eval r;
        switch (t->mech) {
        case SK_SPF_ALL:
            r = EV_MATCH;
            break;
        case SK_SPF_IP4:
            r = c->ip.family == 4 && spf_prefix_match(t->addr, c->ip.a, t->cidr4) ? EV_MATCH
                                                                                  : EV_NOMATCH;
            break;
        case SK_SPF_IP6:
            r = c->ip.family == 6 && spf_prefix_match(t->addr, c->ip.a, t->cidr6) ? EV_MATCH
                                                                                  : EV_NOMATCH;
            break;
        default:
            if (!count_lookup(c, t->text)) return;
            r = eval_dns_term(c);
            break;
        }
        if (r == EV_WAIT) return;
        if (r == EV_MATCH) {
            matched(c, t);
            return;
        }
        trace(c, "%s: %s -> no match", f->domain, t->text);
    }
}

static void no_match(sk_spf_check *c, const char *why)
{
    trace(c, "%s: %s -> no match (%s)", top(c)->domain, c->term->text, why);
    run(c);
}

/* a, exists: the answer for the target. */
static void got_address(sk_spf_check *c, const sk_dns_result *res)
{
    const sk_spf_term *t = c->term;
    if (res->status == SK_DNS_TEMPFAIL) {
        finish(c, SK_SPF_TEMPERROR, "%s: DNS lookup of %s for %s failed", t->text,
               type_name(res->type), res->name);
        return;
    }
    if (res->status != SK_DNS_OK) {
        if (count_void(c, res->name)) no_match(c, sk_dns_status_name(res->status));
        return;
    }
    if (c->step == ST_EXISTS) {
        matched(c, t);
        return;
    }
    for (size_t i = 0; i < res->count; i++)
        if (addr_matches(c, res->values[i], t->cidr4, t->cidr6)) {
            matched(c, t);
            return;
        }
    no_match(c, "no address matched");
}

/* mx: the MX names, then their addresses. */
static void got_mx(sk_spf_check *c, const sk_dns_result *res)
{
    const sk_spf_term *t = c->term;
    if (res->status == SK_DNS_TEMPFAIL) {
        finish(c, SK_SPF_TEMPERROR, "%s: DNS lookup of MX for %s failed", t->text, res->name);
        return;
    }
    if (res->status != SK_DNS_OK) {
        if (count_void(c, res->name)) no_match(c, sk_dns_status_name(res->status));
        return;
    }
    /* 4.6.4: more than 10 MX names is a permerror. */
    if (res->count > SK_SPF_MX_NAMES_MAX || res->truncated) {
        finish(c, SK_SPF_PERMERROR, "%s: %s has more than %d MX names", t->text, res->name,
               SK_SPF_MX_NAMES_MAX);
        return;
    }
    char *names[SK_SPF_MX_NAMES_MAX];
    size_t n = 0;
    for (size_t i = 0; i < res->count; i++) {
        const char *host = strchr(res->values[i], ' ');
        host = host ? host + 1 : "";
        /* 5.4: no implicit MX; the null MX (RFC 7505) names no host. */
        if (!host[0] || !strcmp(host, ".")) continue;
        names[n] = sk_strdup(host);
        if (!names[n]) {
            for (size_t k = 0; k < n; k++) sk_free(names[k]);
            finish(c, SK_SPF_TEMPERROR, "out of memory");
            return;
        }
        n++;
    }
    if (!n) {
        no_match(c, "no MX host");
        return;
    }
    ask_addresses(c, ST_MX_ADDRS, names, n);
}

/* mx: every MX name's addresses are in; the first in MX order decides. */
static void mx_done(sk_spf_check *c)
{
    const sk_spf_term *t = c->term;
    for (size_t i = 0; i < c->nslots; i++) {
        slot *s = &c->slots[i];
        if (s->status == SK_DNS_TEMPFAIL) {
            finish(c, SK_SPF_TEMPERROR, "%s: DNS lookup of %s for %s failed", t->text,
                   type_name(addr_type(c)), s->name);
            return;
        }
        if (s->matched) {
            cancel_lookups(c);
            matched(c, t);
            return;
        }
    }
    cancel_lookups(c);
    no_match(c, "no MX address matched");
}

/* ---- the client's validated names (5.5), for ptr and %{p} ---- */

static void resume(sk_spf_check *c);

static void need_ptr(sk_spf_check *c, after then, int for_mech)
{
    c->after = then;
    c->ptr_for_mech = for_mech;
    char name[SK_DNS_REVERSE_NAME_OCTETS];
    if (sk_dns_reverse_name(c->ip_text, name, sizeof name)) {
        finish(c, SK_SPF_TEMPERROR, "cannot make the reverse name of %s", c->ip_text);
        return;
    }
    ask(c, ST_PTR, name, SK_DNS_PTR);
}

static void ptr_finished(sk_spf_check *c)
{
    c->ptr_done = 1;
    resume(c);
}

static void got_ptr(sk_spf_check *c, const sk_dns_result *res)
{
    /* 5.5: a DNS error on the PTR lookup: the mechanism does not match,
     * %{p} is "unknown". */
    if (res->status != SK_DNS_OK) {
        if (res->status != SK_DNS_TEMPFAIL && c->ptr_for_mech && !count_void(c, res->name)) return;
        ptr_finished(c);
        return;
    }
    /* 4.6.4: only the first 10 names are looked at. */
    size_t n = res->count < SK_SPF_PTR_NAMES_MAX ? res->count : SK_SPF_PTR_NAMES_MAX;
    if (res->count > n)
        trace(c, "%s: %zu PTR names, the first %d checked", c->ip_text, res->count,
              SK_SPF_PTR_NAMES_MAX);
    char *names[SK_SPF_PTR_NAMES_MAX];
    for (size_t i = 0; i < n; i++) {
        names[i] = sk_strdup(res->values[i]);
        if (!names[i]) {
            for (size_t k = 0; k < i; k++) sk_free(names[k]);
            finish(c, SK_SPF_TEMPERROR, "out of memory");
            return;
        }
    }
    if (!n) {
        ptr_finished(c);
        return;
    }
    ask_addresses(c, ST_PTR_ADDRS, names, n);
}

/* A name is validated when one of its addresses is the client's; a DNS
 * error skips the name (5.5). */
static void ptr_addrs_done(sk_spf_check *c)
{
    c->ptr_names = sk_calloc(c->nslots, sizeof *c->ptr_names);
    if (!c->ptr_names) {
        finish(c, SK_SPF_TEMPERROR, "out of memory");
        return;
    }
    for (size_t i = 0; i < c->nslots; i++) {
        slot *s = &c->slots[i];
        if (s->matched) {
            c->ptr_names[c->nptr++] = s->name;
            s->name = NULL;
        }
    }
    cancel_lookups(c);
    ptr_finished(c);
}

/* ---- exp= (6.2) ---- */

static void exp_expand(sk_spf_check *c)
{
    if (sk_spf_macro_uses_p(c->exp_text, strlen(c->exp_text)) && !c->ptr_done) {
        need_ptr(c, AFTER_EXP_TEXT, 0);
        return;
    }
    sk_spf_macro_vars v;
    vars_for(c, top(c)->domain, &v);
    sk_buf b = SK_BUF_INIT(SK_SPF_EXPAND_MAX_OCTETS);
    if (!sk_spf_macro_expand(c->exp_text, strlen(c->exp_text), SK_SPF_MACRO_EXPLAIN, &v, &b))
        c->out->explanation = sk_buf_detach(&b, NULL);
    else
        trace(c, "%s: explanation ignored (not a valid explanation string)", top(c)->domain);
    sk_buf_free(&b);
    finish(c, c->out->result, "%s", c->out->reason ? c->out->reason : "");
}

static void exp_go(sk_spf_check *c)
{
    frame *f = top(c);
    const char *spec = f->rec->exp;
    if (sk_spf_macro_uses_p(spec, strlen(spec)) && !c->ptr_done) {
        need_ptr(c, AFTER_EXP, 0);
        return;
    }
    /* Problems with the explanation only lose it (6.2). */
    if (make_target(c, spec, f->domain) != TARGET_OK) {
        finish(c, c->out->result, "%s", c->out->reason ? c->out->reason : "");
        return;
    }
    ask(c, ST_EXP, c->target, SK_DNS_TXT);
}

static void got_exp(sk_spf_check *c, const sk_dns_result *res)
{
    /* 6.2: exactly one TXT record, else as if there were no exp=. An
     * explanation is printable ASCII: a NUL in it is a syntax error. */
    if (res->status != SK_DNS_OK || res->count != 1 || strlen(res->values[0]) != res->lengths[0]) {
        trace(c, "%s: explanation at %s ignored (%s, %zu records)", top(c)->domain, res->name,
              sk_dns_status_name(res->status), res->count);
        finish(c, c->out->result, "%s", c->out->reason ? c->out->reason : "");
        return;
    }
    c->exp_text = sk_strdup(res->values[0]);
    if (!c->exp_text) {
        finish(c, c->out->result, "%s", c->out->reason ? c->out->reason : "");
        return;
    }
    exp_expand(c);
}

static void resume(sk_spf_check *c)
{
    switch (c->after) {
    case AFTER_TERM: {
        eval r = eval_dns_term(c);
        if (r == EV_MATCH)
            matched(c, c->term);
        else if (r == EV_NOMATCH)
            no_match(c, "no validated name");
        break;
    }
    case AFTER_REDIRECT:
        redirect_go(c);
        break;
    case AFTER_EXP:
        exp_go(c);
        break;
    case AFTER_EXP_TEXT:
        exp_expand(c);
        break;
    }
}

/* ---- DNS callbacks ---- */

static void on_answer(void *ctx, const sk_dns_result *res)
{
    sk_spf_check *c = ctx;
    c->q = NULL;
    switch (c->step) {
    case ST_RECORD:
        got_record(c, res);
        break;
    case ST_A:
    case ST_EXISTS:
        got_address(c, res);
        break;
    case ST_MX:
        got_mx(c, res);
        break;
    case ST_PTR:
        got_ptr(c, res);
        break;
    case ST_EXP:
        got_exp(c, res);
        break;
    default:
        break;
    }
}

static void on_slot(void *ctx, const sk_dns_result *res)
{
    slot *s = ctx;
    sk_spf_check *c = s->c;
    s->q = NULL;
    s->status = res->status;
    const sk_spf_term *t = c->term;
    /* PTR names are validated by the exact address; MX hosts match within
     * the mechanism's prefix lengths. */
    int cidr4 = c->step == ST_MX_ADDRS ? t->cidr4 : 32;
    int cidr6 = c->step == ST_MX_ADDRS ? t->cidr6 : 128;
    for (size_t i = 0; i < res->count && !s->matched; i++)
        s->matched = addr_matches(c, res->values[i], cidr4, cidr6);
    if (--c->pending > 0) return;
    if (c->step == ST_MX_ADDRS)
        mx_done(c);
    else
        ptr_addrs_done(c);
}

/* ---- the check as a whole ---- */

void sk_spf_outcome_free(sk_spf_outcome *o)
{
    if (!o) return;
    sk_free(o->domain);
    sk_free(o->sender);
    sk_free(o->reason);
    sk_free(o->explanation);
    sk_free(o->mechanism);
    sk_free(o->mechanism_domain);
    sk_free(o->property_value);
    for (size_t i = 0; i < o->ntrace; i++) sk_free(o->trace[i]);
    sk_free(o->trace);
    sk_free(o);
}

static void check_free(sk_spf_check *c)
{
    cancel_lookups(c);
    for (size_t i = 0; i < c->depth; i++) free_frame(&c->frames[i]);
    for (size_t i = 0; i < c->nptr; i++) sk_free(c->ptr_names[i]);
    sk_free(c->ptr_names);
    sk_free(c->exp_text);
    sk_free(c->sender);
    sk_free(c->local);
    sk_free(c->sender_domain);
    sk_free(c->helo);
    sk_free(c->receiver);
    sk_spf_outcome_free(c->out);
    if (c->timer) event_free(c->timer);
    if (c->done_ev) event_free(c->done_ev);
    sk_free(c);
}

static void on_done(evutil_socket_t fd, short what, void *arg)
{
    sk_spf_check *c = arg;
    sk_spf_outcome *o = c->out;
    c->out = NULL;
    /* The domain comes from the peer (MAIL FROM, HELO): escaped. */
    sk_buf domain = SK_BUF_INIT(SK_LOG_LINE_MAX_OCTETS);
    const char *shown = o->domain && !sk_log_escape(&domain, o->domain, strlen(o->domain))
                            ? sk_buf_cstr(&domain)
                            : "?";
    sk_log(&c->log, SK_LOG_DEBUG, "- spf result=%s domain=\"%s\" lookups=%u voids=%u",
           sk_spf_result_name(o->result), shown, o->lookups, o->void_lookups);
    sk_buf_free(&domain);
    sk_spf_cb cb = c->cb;
    void *ctx = c->ctx;
    check_free(c);
    cb(ctx, o);
}

static void on_timeout(evutil_socket_t fd, short what, void *arg)
{
    sk_spf_check *c = arg;
    /* A result already known keeps; only its explanation is lost. */
    finish(c, SK_SPF_TEMPERROR, "the evaluation took longer than the limit (RFC 7208 4.6.4)");
}

void sk_spf_check_cancel(sk_spf_check *c)
{
    if (c) check_free(c);
}

/* 2.3, 2.4, 4.3: <sender> and <domain> from the identity. */
static sk_err set_identity(sk_spf_check *c, const sk_spf_request *req)
{
    const char *mf = req->mail_from;
    const char *domain;
    if (req->identity == SK_SPF_MAILFROM && mf && mf[0]) {
        const char *at = strrchr(mf, '@');
        domain = at ? at + 1 : mf;
        c->local = at && at > mf ? sk_strndup(mf, (size_t)(at - mf)) : sk_strdup("postmaster");
    } else {
        domain = req->helo;
        c->local = sk_strdup("postmaster");
    }
    c->sender_domain = sk_strdup(domain);
    if (!c->local || !c->sender_domain) return SK_ERR_NOMEM;
    sk_buf b = SK_BUF_INIT(SK_SPF_EXPAND_MAX_OCTETS);
    if (sk_buf_printf(&b, "%s@%s", c->local, c->sender_domain)) {
        sk_buf_free(&b);
        return SK_ERR_NOMEM;
    }
    c->sender = sk_buf_detach(&b, NULL);
    sk_spf_outcome *o = c->out;
    o->identity = req->identity;
    o->domain = sk_strdup(domain);
    o->sender = sk_strdup(c->sender);
    o->property = req->identity == SK_SPF_HELO ? "smtp.helo" : "smtp.mailfrom";
    o->property_value = sk_strdup(req->identity == SK_SPF_HELO ? req->helo : c->sender);
    if (!c->sender || !o->domain || !o->sender || !o->property_value) return SK_ERR_NOMEM;
    return SK_OK;
}

sk_err sk_spf_check_start(sk_resolver *r, const sk_spf_request *req, const sk_spf_opts *o,
                          sk_spf_cb cb, void *ctx, sk_spf_check **handle)
{
    if (handle) *handle = NULL;
    if (!r || !req || !cb || !req->ip) return SK_ERR_INVAL;
    int null_sender = !req->mail_from || !req->mail_from[0];
    if ((req->identity == SK_SPF_HELO || null_sender) && (!req->helo || !req->helo[0]))
        return SK_ERR_INVAL;
    sk_spf_check *c = sk_calloc(1, sizeof *c);
    if (!c) return SK_ERR_NOMEM;
    sk_spf_opts dflt = {0};
    if (!o) o = &dflt;
    c->r = r;
    c->cb = cb;
    c->ctx = ctx;
    if (o->log) c->log = *o->log;
    c->void_max = SK_SPF_VOID_LOOKUPS_MAX;
    c->now_s = o->now_s ? o->now_s : (int64_t)time(NULL);
    if (spf_ip_parse(req->ip, &c->ip)) {
        sk_free(c);
        return SK_ERR_INVAL;
    }
    inet_ntop(c->ip.family == 4 ? AF_INET : AF_INET6, c->ip.a, c->ip_text, sizeof c->ip_text);
    struct event_base *base = sk_resolver_base(r);
    c->out = sk_calloc(1, sizeof *c->out);
    c->helo = sk_strdup(req->helo ? req->helo : "");
    c->receiver = sk_strdup(o->receiver ? o->receiver : "unknown");
    c->timer = evtimer_new(base, on_timeout, c);
    c->done_ev = event_new(base, -1, 0, on_done, c);
    if (!c->out || !c->helo || !c->receiver || !c->timer || !c->done_ev || set_identity(c, req)) {
        check_free(c);
        return SK_ERR_NOMEM;
    }
    int ms = o->timeout_ms > 0 ? o->timeout_ms : SK_SPF_TIMEOUT_MS_DEFAULT;
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    evtimer_add(c->timer, &tv);
    if (handle) *handle = c;
    push_frame(c, c->out->domain, VIA_TOP);
    return SK_OK;
}

/* ---- blocking ---- */

typedef struct sync_state {
    sk_spf_outcome *out;
} sync_state;

static void sync_done(void *ctx, sk_spf_outcome *o)
{
    sync_state *s = ctx;
    s->out = o;
}

sk_err sk_spf_check_sync(const sk_resolver_opts *ro, const sk_spf_request *req,
                         const sk_spf_opts *o, sk_spf_outcome **out, sk_error *err)
{
    *out = NULL;
    sk_resolver_opts dflt = {0};
    struct event_base *base = event_base_new();
    if (!base) return sk_error_set(err, SK_ERR_NOMEM, SK_STEP_DNS, "no event loop");
    sk_resolver *r = sk_resolver_new_opts(base, ro ? ro : &dflt, err);
    if (!r) {
        event_base_free(base);
        return err ? err->err : SK_ERR_CONFIG;
    }
    sync_state s = {0};
    sk_err e = sk_spf_check_start(r, req, o, sync_done, &s, NULL);
    if (!e) event_base_dispatch(base);
    sk_resolver_free(r);
    event_base_free(base);
    if (e)
        return sk_error_set(err, e, SK_STEP_NONE, "cannot check SPF: %s",
                            e == SK_ERR_INVAL ? "need an IP address, and a HELO name for the "
                                                "HELO identity or the null sender"
                                              : sk_strerror(e));
    if (!s.out) return sk_error_set(err, SK_ERR_STATE, SK_STEP_NONE, "SPF check did not finish");
    *out = s.out;
    return SK_OK;
}
