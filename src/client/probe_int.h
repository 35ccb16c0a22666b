/* Inside the probe checklist (sk_client_probe), shared by its files: the
 * runner, the steps as they are recorded and the results as data
 * (probe.c); DNS and TCP to each address (probe_net.c); the greeting,
 * TLS and what a port that does not greet is (probe_tls.c); EHLO and its
 * extensions, STARTTLS, AUTH and the envelope (probe_smtp.c). */
#ifndef SK_CLIENT_PROBE_INT_H
#define SK_CLIENT_PROBE_INT_H

#include <smtpkit/probe.h>

#include <arpa/inet.h>
#include <sys/socket.h>

#include "client/client_int.h"

struct sk_probe {
    sk_probe_step *steps; /* SK_PROBE_STEPS_MAX of them */
    size_t nsteps;
    int failed; /* index of the failed step, -1 when none */
    /* What steps point at (one of each per probe). */
    char addr_store[SK_PROBE_ADDRS_MAX][INET6_ADDRSTRLEN];
    const char *addrs[SK_PROBE_ADDRS_MAX];
    sk_tls_info tls;
    sk_peer_info peer;
    sk_probe_ext *exts[2]; /* the two EHLO steps' extensions */
    size_t nexts_used;
};

/* A probe in progress: the client, the options and what was found. */
typedef struct run {
    sk_client *c;
    const sk_probe_opts *po;
    sk_option_names names; /* po's, with plain words where unset */
    sk_probe *p;
    struct sockaddr_storage addrs[SK_PROBE_ADDRS_MAX];
    socklen_t addrlens[SK_PROBE_ADDRS_MAX];
    size_t naddrs;
    int reachable; /* index into addrs of the first address that connected */
    char reach_addr[INET6_ADDRSTRLEN];
} run;

/* ---- the steps (probe.c) ---- */
/* A new step of the check, its fields cleared. */
sk_probe_step *pr_step_begin(run *r, sk_probe_check check);
void pr_step_detail(sk_probe_step *s, const char *fmt, ...) SK_PRINTF(2, 3);
void pr_step_hint(sk_probe_step *s, const char *fmt, ...) SK_PRINTF(2, 3);
void pr_step_hint_shared(const run *r, sk_probe_step *s, cl_hint h);
/* The step's reply, explained when it is not a success. */
void pr_step_reply(sk_probe_step *s, const sk_reply *r);
void pr_step_error_reply(sk_probe_step *s, const sk_error *e);
/* The step's verdict, told to the caller's on_step. */
void pr_step_end(run *r, sk_probe_step *s, sk_probe_verdict v);
/* The probe fails at s (returns -1). */
int pr_step_fail(run *r, sk_probe_step *s, const sk_error *e, sk_err kind);

/* ---- the checks, in the order the probe runs them; each returns 0 to
 * go on, -1 when the probe failed there ---- */
int pr_check_dns(run *r);                                               /* probe_net.c */
int pr_check_tcp(run *r);                                               /* probe_net.c */
int pr_check_open(run *r);                                              /* probe_tls.c */
int pr_check_ehlo(run *r, int after_tls, sk_err rc, const sk_error *e); /* probe_smtp.c */
int pr_check_starttls(run *r);                                          /* probe_smtp.c */
int pr_check_auth(run *r);                                              /* probe_smtp.c */
int pr_check_envelope(run *r);                                          /* probe_smtp.c */
/* The TLS session of the client reported at s (probe_tls.c). */
int pr_report_tls(run *r, sk_probe_step *s, const sk_tls_info *ti, sk_err rc, const sk_error *e);

#endif
