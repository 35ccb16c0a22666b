/* Inside `smtpkit check`, shared by its files: the checklist's items, the
 * text and JSON helpers and the DNS lookups (check_item.c), the checks of
 * a domain (check_dns.c: MX, SPF, DKIM keys, DMARC; check_mtasts.c:
 * MTA-STS and TLS-RPT; check_ip.c: --ip), the checks of a --message
 * (check_message.c), and the command with the output (check.c). */
#ifndef SK_TOOLS_CHECK_INT_H
#define SK_TOOLS_CHECK_INT_H

#include "cli.h"

#include <smtpkit/dns.h>

#include <jansson.h>

/* One line of text (a detail, a fix) or all of an item's extra lines. */
#define CHECK_TEXT_MAX_OCTETS (64 * 1024)

/* An item's verdict, the order of its severity. */
typedef enum verdict { V_OK, V_INFO, V_WARN, V_FAIL } verdict;

/* One line of the checklist. */
typedef struct item {
    const char *check; /* "mx", "spf", "dkim", ... */
    verdict v;
    int temporary; /* a DNS failure kept the check from an answer: try again later */
    char *detail;
    char *fix;
    sk_buf more;  /* further lines, each ending in '\n' */
    json_t *data; /* more members of the item's JSON object */
} item;

/* The checklist of one run: its items, and how the DNS is asked. */
typedef struct run {
    const char *cmd;
    sk_resolver_opts ro;
    int json;
    item *items;
    size_t n, cap;
} run;

/* check DOMAIN: the options, and what the checks leave for later ones. */
typedef struct domain_run {
    run *r;
    const char *domain; /* normalized: A-labels, lower case */
    const char *ip;     /* --ip, or NULL */
    const char *const *selectors;
    size_t n_selectors;
    const char *const *dnsbl;
    size_t n_dnsbl;
    const char *ca_file, *connect_to;
    int timeout_ms;
    /* The MX hosts found (for MTA-STS), and how the MX check went. */
    char **mx;
    size_t n_mx;
    int mx_known; /* 1: mx[] is the domain's whole MX list (possibly implicit) */
    int null_mx;
} domain_run;

/* check --message: the options and the message. */
typedef struct message_run {
    run *r;
    const char *path, *ip, *helo, *mail_from, *authserv_id;
    cli_message msg; /* as read */
    sk_buf head;     /* its header block, CRLF line ends */
} message_run;

/* ---- helpers (check_item.c) ---- */

/* "out of memory" on stderr, and exit EX_OSERR. */
void ck_out_of_memory(void);
void *ck_xcalloc(size_t n, size_t size);
char *ck_xstrdup(const char *s);
/* SK_ERR_NOMEM ends the run (out_of_memory); other results are the caller's. */
void ck_must(sk_err e);
/* Text from outside made safe to print and to put in JSON (sk_free). */
char *ck_printable(const char *s, size_t n);
/* A JSON string of text that is already UTF-8. */
json_t *ck_json_stringn_z(const char *s);
/* A JSON string of text that may come from outside. */
json_t *ck_jstr(const char *s);
/* A JSON string of our own text, or escaped as jstr. */
json_t *ck_jtext(const char *s);
/* A JSON array of the strings, each as jstr. */
json_t *ck_json_strings(char *const *v, size_t n);

/* ---- items (check_item.c) ---- */

/* A new item of the checklist: its check, verdict and detail. */
item *ck_add(run *r, const char *check, verdict v, const char *fmt, ...) SK_PRINTF(4, 5);
/* The item's ck_fix (replaces one given before). */
void ck_fix(item *it, const char *fmt, ...) SK_PRINTF(2, 3);
/* One more line of detail. */
void ck_more(item *it, const char *fmt, ...) SK_PRINTF(2, 3);
/* A member of the item's JSON object (v is taken). */
void ck_jset(item *it, const char *key, json_t *v);
/* A check that a DNS failure kept from an answer. */
item *ck_add_temporary(run *r, const char *check, const char *what, const char *name,
                       const char *type);

/* ---- DNS (check_item.c) ---- */

/* The records of one answer, copied. */
typedef struct answer {
    sk_dns_status status;
    size_t n;
    char **v; /* NUL-terminated copies (TXT values may hold NUL: see len) */
    size_t *len;
} answer;

void ck_answer_free(answer *a);
/* A resolver that cannot be used (a bad --dns-server) ends the run. */
void ck_dns_config_error(run *r, const sk_error *err);
/* The records of TYPE at NAME into a (status SK_DNS_TEMPFAIL when the
 * lookup failed). */
void ck_dns(run *r, const char *name, sk_dns_type type, answer *a);
/* The TXT records at NAME; when the lookup failed for now, the temporary
 * item added (a is freed), NULL when there is an answer. */
item *ck_txt_or_temporary(run *r, const char *name, const char *check, const char *what, answer *a);

/* The addresses (A, then AAAA) of a name; status the better of the two. */
typedef struct addrs {
    sk_dns_status status;
    size_t n;
    char **ip;
} addrs;

void ck_addrs_free(addrs *x);
void ck_lookup_addrs(run *r, const char *name, addrs *out);
/* Two addresses in text form are the same address. */
int ck_same_ip(const char *a, const char *b);

/* ---- the checks of a domain, in the order they run ---- */
void check_mx(domain_run *d);                      /* check_dns.c */
void check_spf(domain_run *d);                     /* check_dns.c */
void check_dkim(domain_run *d);                    /* check_dns.c */
void check_dmarc(domain_run *d);                   /* check_dns.c */
void check_mtasts(domain_run *d);                  /* check_mtasts.c */
void check_tlsrpt(domain_run *d, int have_mtasts); /* check_mtasts.c */
void check_ptr(domain_run *d);                     /* check_ip.c */
void check_dnsbl(domain_run *d);                   /* check_ip.c */

/* ---- check --message (check_message.c) ---- */
/* The checks of m's message as items of m->r, and in header the
 * Authentication-Results field a receiver would add. */
int ck_run_message(message_run *m, sk_buf *header);

#endif
