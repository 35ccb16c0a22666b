/* Record delivery events in a tracking store with the public API, the way
 * the daemon does; hard bounces also suppress their recipient. Used by the
 * tracking CLI tests.
 *
 *   track_inject DATA-DIR [--suppress-for SECONDS] < events
 *
 * One event a line, fields separated by tabs, "-" for an absent field:
 *   AGE  EVENT  QUEUE-ID  MESSAGE-ID  RECIPIENT  ATTEMPT  REMOTE-HOST  REPLY  TLS  CLASS
 * AGE is how many seconds before now the event happened (negative: later).
 */
#include <smtpkit/smtpkit.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FIELDS 10

static const char *field(char *s)
{
    return strcmp(s, "-") ? s : NULL;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: track_inject DATA-DIR [--suppress-for SECONDS] < events\n");
        return 64;
    }
    long long suppress_for = 0;
    if (argc == 4 && !strcmp(argv[2], "--suppress-for")) {
        suppress_for = strtoll(argv[3], NULL, 10);
    } else if (argc != 2) {
        fprintf(stderr, "track_inject: bad arguments\n");
        return 64;
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", argv[1], SK_TRACK_DB_NAME);
    sk_error err;
    sk_track *tr = sk_track_open(path, 0, &err);
    if (!tr) {
        fprintf(stderr, "track_inject: %s\n", err.text);
        return 74;
    }
    sk_rules *rules;
    if (sk_rules_default(&rules, &err)) {
        fprintf(stderr, "track_inject: %s\n", err.text);
        sk_track_free(tr);
        return 70;
    }
    int64_t now_ms = sk_track_now_ms(tr);
    char line[8192];
    int lineno = 0, rc = 0;
    while (!rc && fgets(line, sizeof line, stdin)) {
        lineno++;
        line[strcspn(line, "\r\n")] = '\0';
        if (!line[0] || line[0] == '#') continue;
        char *f[FIELDS];
        size_t n = 0;
        for (char *p = line; n < FIELDS; n++) {
            f[n] = p;
            char *tab = strchr(p, '\t');
            if (!tab) {
                n++;
                break;
            }
            *tab = '\0';
            p = tab + 1;
        }
        int kind = sk_track_kind_parse(f[1]);
        if (n != FIELDS || kind < 0) {
            fprintf(stderr, "track_inject: line %d: %s\n", lineno,
                    n != FIELDS ? "needs 10 tab-separated fields" : "unknown event");
            rc = 65;
            break;
        }
        sk_track_ev ev = {.time_ms = now_ms - strtoll(f[0], NULL, 10) * 1000,
                          .kind = (sk_track_kind)kind,
                          .queue_id = field(f[2]),
                          .message_id = field(f[3]),
                          .recipient = field(f[4]),
                          .attempt = field(f[5]) ? (unsigned)strtoul(f[5], NULL, 10) : 0,
                          .remote_host = field(f[6]),
                          .reply = field(f[7]),
                          .tls = field(f[8]),
                          .cls = field(f[9])};
        int added = 0;
        /* The events stand for our own deliveries to the recipients' MXes:
         * their answers are strong evidence (the recipient's own domain). */
        sk_suppress_evidence how = {
            .rules = rules, .from_recipient_domain = 1, .for_s = suppress_for};
        if (sk_track_event(tr, &ev, &err) ||
            (suppress_for && sk_suppress_after_bounce(tr, &ev, &how, &added, &err))) {
            fprintf(stderr, "track_inject: line %d: %s\n", lineno, err.text);
            rc = 65;
        }
        if (added) printf("suppressed %s\n", ev.recipient);
    }
    if (!rc && sk_track_flush(tr, &err)) {
        fprintf(stderr, "track_inject: %s\n", err.text);
        rc = 74;
    }
    sk_track_free(tr);
    sk_rules_free(rules);
    return rc;
}
