/* What an SMTP reply means and what to do about it: one table by enhanced
 * status (RFC 3463, IANA registry), one by reply code, and text patterns. */
#include <smtpkit/reply.h>

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* The IANA "Enumerated Status Codes" registry (RFC 3463 section 3 and the
 * RFCs that added to it), keyed by subject and detail: the meaning does
 * not depend on the class digit. */
static const struct {
    int subject, detail;
    const char *name;
} status_names[] = {
    {0, 0, "other undefined status"},
    {1, 0, "other address status"},
    {1, 1, "bad destination mailbox address"},
    {1, 2, "bad destination system address"},
    {1, 3, "bad destination mailbox address syntax"},
    {1, 4, "destination mailbox address ambiguous"},
    {1, 5, "destination address valid"},
    {1, 6, "destination mailbox has moved, no forwarding address"},
    {1, 7, "bad sender's mailbox address syntax"},
    {1, 8, "bad sender's system address"},
    {1, 9, "message relayed to non-compliant mailer"}, /* RFC 3886 */
    {1, 10, "recipient address has null MX"},          /* RFC 7505 */
    {2, 0, "other or undefined mailbox status"},
    {2, 1, "mailbox disabled, not accepting messages"},
    {2, 2, "mailbox full"},
    {2, 3, "message length exceeds administrative limit"},
    {2, 4, "mailing list expansion problem"},
    {3, 0, "other or undefined mail system status"},
    {3, 1, "mail system full"},
    {3, 2, "system not accepting network messages"},
    {3, 3, "system not capable of selected features"},
    {3, 4, "message too big for system"},
    {3, 5, "system incorrectly configured"},
    {3, 6, "requested priority was changed"}, /* RFC 6710 */
    {4, 0, "other or undefined network or routing status"},
    {4, 1, "no answer from host"},
    {4, 2, "bad connection"},
    {4, 3, "directory server failure"},
    {4, 4, "unable to route"},
    {4, 5, "mail system congestion"},
    {4, 6, "routing loop detected"},
    {4, 7, "delivery time expired"},
    {5, 0, "other or undefined protocol status"},
    {5, 1, "invalid command"},
    {5, 2, "syntax error"},
    {5, 3, "too many recipients"},
    {5, 4, "invalid command arguments"},
    {5, 5, "wrong protocol version"},
    {5, 6, "authentication exchange line is too long"}, /* RFC 4954 */
    {6, 0, "other or undefined media error"},
    {6, 1, "media not supported"},
    {6, 2, "conversion required and prohibited"},
    {6, 3, "conversion required but not supported"},
    {6, 4, "conversion with loss performed"},
    {6, 5, "conversion failed"},
    {6, 6, "message content not available"},                               /* RFC 4468 */
    {6, 7, "non-ASCII addresses not permitted for that sender/recipient"}, /* RFC 6531 */
    {6, 8, "UTF-8 string reply is required, but not permitted by the client"},
    {6, 9, "UTF-8 header message cannot be transferred to some recipients"},
    {7, 0, "other or undefined security status"},
    {7, 1, "delivery not authorized, message refused"},
    {7, 2, "mailing list expansion prohibited"},
    {7, 3, "security conversion required but not possible"},
    {7, 4, "security features not supported"},
    {7, 5, "cryptographic failure"},
    {7, 6, "cryptographic algorithm not supported"},
    {7, 7, "message integrity failure"},
    {7, 8, "authentication credentials invalid"},                          /* RFC 4954 */
    {7, 9, "authentication mechanism is too weak"},                        /* RFC 4954 */
    {7, 10, "encryption needed"},                                          /* RFC 5248 */
    {7, 11, "encryption required for requested authentication mechanism"}, /* RFC 4954 */
    {7, 12, "a password transition is needed"},                            /* RFC 4954 */
    {7, 13, "user account disabled"},                                      /* RFC 5248 */
    {7, 14, "trust relationship required"},                                /* RFC 5248 */
    {7, 15, "priority level is too low"},                                  /* RFC 6710 */
    {7, 16, "message is too big for the specified priority"},              /* RFC 6710 */
    {7, 17, "mailbox owner has changed"},                                  /* RFC 7293 */
    {7, 18, "domain owner has changed"},                                   /* RFC 7293 */
    {7, 19, "RRVS test cannot be completed"},                              /* RFC 7293 */
    {7, 20, "no passing DKIM signature found"},                            /* RFC 7372 */
    {7, 21, "no acceptable DKIM signature found"},                         /* RFC 7372 */
    {7, 22, "no valid author-matched DKIM signature found"},               /* RFC 7372 */
    {7, 23, "SPF validation failed"},                                      /* RFC 7372 */
    {7, 24, "SPF validation error"},                                       /* RFC 7372 */
    {7, 25, "reverse DNS validation failed"},                              /* RFC 7372 */
    {7, 26, "multiple authentication checks failed"},                      /* RFC 7372 */
    {7, 27, "sender address has null MX"},                                 /* RFC 7505 */
    {7, 29, "ARC validation failure"},                                     /* RFC 8617 */
    {7, 30, "REQUIRETLS support required"},                                /* RFC 8689 */
};

/* Explanations by enhanced status. cls 0 applies to both 4 and 5; an entry
 * with the exact class is preferred, since "try later" and "give up"
 * differ. Each line: what it means, then what to do. */
static const struct {
    int cls, subject, detail;
    const char *text;
} by_status[] = {
    {5, 1, 1,
     "the recipient's mailbox does not exist there: check the address for typos, or "
     "ask the recipient for a working one"},
    {4, 1, 1, "the server cannot check this recipient now: try again later"},
    {0, 1, 2,
     "the recipient's domain does not exist or does not accept mail: check the "
     "part after the @"},
    {0, 1, 3,
     "the recipient address is malformed: check its syntax (user@domain, no "
     "spaces, in angle brackets)"},
    {0, 1, 6,
     "the recipient has moved and left no forwarding address: ask them for the new "
     "one"},
    {0, 1, 7, "the sender address is malformed: use a valid user@domain for --from"},
    {0, 1, 8,
     "the sender's domain was rejected (it has no MX or A record, or is not "
     "allowed here): send from a domain that exists in DNS"},
    {0, 1, 10,
     "the recipient's domain publishes a null MX (RFC 7505): it accepts no mail; "
     "use another address"},
    {0, 2, 1,
     "the recipient's mailbox is disabled: the account is closed or suspended; "
     "contact the recipient another way"},
    {5, 2, 2,
     "the recipient's mailbox is full: the recipient must free space; retrying "
     "later may work"},
    {4, 2, 2,
     "the recipient's mailbox is over quota for now: retry later; the message "
     "stays queued"},
    {0, 2, 3,
     "the message exceeds the recipient's size limit: send a smaller message or "
     "link to large files"},
    {0, 3, 1,
     "the receiving mail system is out of storage: retry later; tell its operator "
     "if it persists"},
    {0, 3, 4,
     "the message is larger than the server accepts (see SIZE in its EHLO): "
     "shrink it or link to large attachments"},
    {0, 3, 2,
     "the server is not accepting mail now (shutting down or in maintenance): "
     "retry later"},
    {0, 4, 1, "no answer from the next host: it is down or unreachable; retry later"},
    {0, 4, 2, "the connection to the next host broke off: retry later"},
    {0, 4, 3,
     "a lookup on the server's side failed (its DNS or directory server): retry "
     "later; tell its operator if it persists"},
    {0, 4, 5, "the mail system is congested: retry later, and send more slowly"},
    {0, 4, 4,
     "the server cannot route mail to that domain (no usable MX or A record): "
     "check the domain's DNS"},
    {0, 4, 7,
     "the message stayed queued too long and expired: the destination was "
     "unreachable; check it and send again"},
    {0, 4, 6,
     "mail for this domain loops between servers: its MX or relay settings point "
     "back at each other"},
    {0, 5, 1,
     "the server does not know or allow this command here: check the command "
     "order (EHLO, MAIL, RCPT, DATA)"},
    {0, 5, 2,
     "the server found a syntax error in the command: check addresses and "
     "parameters"},
    {0, 5, 3, "too many recipients for one message: send in smaller batches"},
    {0, 5, 4,
     "the server rejected a command argument (an ESMTP parameter or address): "
     "check what the EHLO reply offers"},
    {0, 5, 6,
     "the AUTH line is too long for the server: use a shorter credential or "
     "another mechanism"},
    {0, 6, 7,
     "the server does not accept non-ASCII (UTF-8) addresses: it lacks SMTPUTF8; "
     "use an ASCII address"},
    {5, 7, 0,
     "refused for a security or policy reason: the text says which; often "
     "authentication or TLS is required first"},
    {4, 7, 0,
     "temporarily refused by policy (often greylisting or rate limiting): retry "
     "in a few minutes; a real MTA retries by itself"},
    {5, 7, 1,
     "refused by the server's policy: relaying denied (authenticate, or use your "
     "provider's submission server), or sender/IP blocked for reputation"},
    {4, 7, 1,
     "temporarily refused by policy (greylisting, rate limit or a reputation "
     "check): retry later"},
    {0, 7, 8,
     "the username or password was rejected: check both (and any app password "
     "the provider requires)"},
    {0, 7, 9,
     "the chosen AUTH mechanism is too weak for this server: use TLS and another "
     "mechanism (PLAIN over TLS is usual)"},
    {0, 7, 10, "the server requires encryption: connect with --tls starttls or implicit"},
    {0, 7, 11,
     "this AUTH mechanism needs an encrypted connection: use --tls starttls or "
     "implicit before authenticating"},
    {0, 7, 12,
     "the account needs a password change before it can authenticate: log in "
     "to the provider and set a new password"},
    {0, 7, 13, "the sending account is disabled: contact the mail provider"},
    {0, 7, 20,
     "no valid DKIM signature: sign the message with a DKIM key whose public "
     "part is published in DNS"},
    {0, 7, 21,
     "no acceptable DKIM signature: sign with the sender's domain and a strong "
     "key (RSA 2048 or Ed25519)"},
    {0, 7, 22,
     "no DKIM signature matching the From domain: sign with the From "
     "address's domain"},
    {0, 7, 23,
     "SPF failed: the sending IP is not allowed by the sender domain's SPF "
     "record; add it or send through an allowed server"},
    {0, 7, 24,
     "SPF check errored (bad or unreachable SPF record): fix the sender domain's "
     "SPF TXT record"},
    {0, 7, 25,
     "the sending IP has no matching reverse DNS (PTR): set a PTR that resolves "
     "back to the IP"},
    {0, 7, 26,
     "several authentication checks failed (SPF, DKIM, DMARC): align SPF and "
     "DKIM with the From domain"},
    {0, 7, 27,
     "the sender's domain publishes a null MX, so it cannot receive replies: "
     "send from a domain that accepts mail"},
};

/* Explanations by reply code, for replies without an enhanced status. */
static const struct {
    int code;
    const char *text;
} by_code[] = {
    {421, "the server is closing the connection (shutting down, overloaded or limiting "
          "you): retry later"},
    {450, "the mailbox is unavailable for now (busy, or greylisting): retry in a few "
          "minutes"},
    {451, "the server had a local error or is greylisting: retry in a few minutes"},
    {452, "the server is short of storage, or too many recipients in this message: "
          "retry later or send to fewer recipients"},
    {454, "TLS or authentication is temporarily unavailable on the server: retry later; "
          "tell its operator if it persists"},
    {455, "the server cannot accept these parameters now: retry later"},
    {500, "the server did not recognise the command (or the line was too long): is this "
          "an SMTP server, and the right port?"},
    {501, "the server rejected the command's arguments: check addresses and parameters"},
    {502, "the server does not implement this command: it lacks this extension"},
    {503, "bad sequence of commands: a required step was skipped (EHLO, AUTH, STARTTLS "
          "or MAIL first)"},
    {504, "the server does not support this parameter or AUTH mechanism: pick one its "
          "EHLO reply lists"},
    {521, "this host does not accept mail at all: use the domain's real mail server"},
    {530, "the server requires authentication before sending: pass --user and "
          "--password-file"},
    {534, "the AUTH mechanism is too weak for this server: use TLS and another mechanism"},
    {535, "the username or password was rejected: check both (and any app password the "
          "provider requires)"},
    {538, "this AUTH mechanism requires an encrypted connection: use --tls starttls or "
          "implicit"},
    {550, "the mailbox is unavailable or the server refused by policy: check the address; "
          "the text says which"},
    {551, "the recipient is not local to this server and it will not forward: send to "
          "the address it names, or use the domain's MX"},
    {552, "the message exceeds a storage or size limit: send a smaller message"},
    {553, "the mailbox name is not allowed (bad syntax, or a sender you may not use): "
          "check the address"},
    {554, "the transaction failed or the server refuses you (often a blocklisted IP or "
          "content filter): read the text; contact the postmaster"},
    {556, "the recipient's domain does not accept mail (null MX): use another address"},
};

/* Phrases that identify a cause better than its code does; checked first.
 * Phrases are matched case-insensitively anywhere in the text; cls 0 means
 * any failure (4xx or 5xx). */
static const struct {
    int cls;
    const char *phrases[8];
    const char *text;
} by_phrase[] = {
    {0,
     {"greylist", "graylist", "grey-list", "gray-list", NULL},
     "greylisting: the server delays first-time senders; retry in a few minutes (a real "
     "MTA retries by itself)"},
    {0,
     {"spamhaus", "spamcop", "barracuda", "blocklist", "blacklist", "dnsbl", "block list", NULL},
     "your sending IP or domain is on a blocklist: check it on the list's site, request "
     "delisting, or send through a reputable relay"},
    {0,
     {"relay access denied", "relaying denied", "relay not permitted", "unable to relay",
      "not permitted to relay", "relaying not allowed", "relay denied", NULL},
     "the server will not relay for you: authenticate (--user) or send through your own "
     "provider's submission server"},
    {0,
     {"must issue a starttls", "starttls first", "tls required", "encryption required",
      "must use tls", NULL},
     "the server requires TLS first: connect with --tls starttls (or implicit on port 465)"},
    {5,
     {"over quota", "quota exceeded", "mailbox full", "mailbox is full", NULL},
     "the recipient's mailbox is full: the recipient must free space; retrying later may "
     "work"},
    {4,
     {"over quota", "quota exceeded", "mailbox full", "mailbox is full", NULL},
     "the recipient's mailbox is over quota for now: retry later"},
    {0,
     {"rate limit", "too many messages", "too many connections", "throttl", NULL},
     "the server is rate-limiting you: slow down and retry later"},
    {0,
     {"blocked", NULL},
     "the server blocked this sender, IP or message (reputation or content filter): read "
     "the text for the list or rule, and contact the postmaster"},
};

static int contains_nocase(const char *hay, const char *needle)
{
    size_t n = strlen(needle);
    for (; *hay; hay++)
        if (strncasecmp(hay, needle, n) == 0) return 1;
    return 0;
}

/* Split "c.s.d" into its numbers; 0 when it is not a valid status. */
static int parse_status(const char *s, int *cls, int *subject, int *detail)
{
    if (!s || !sk_enhanced_valid(s, 0)) return 0;
    char *end;
    *cls = s[0] - '0';
    *subject = (int)strtol(s + 2, &end, 10);
    *detail = (int)strtol(end + 1, NULL, 10);
    return 1;
}

const char *sk_enhanced_describe(const char *enhanced)
{
    int cls, subject, detail;
    if (!parse_status(enhanced, &cls, &subject, &detail)) return NULL;
    for (size_t i = 0; i < sizeof status_names / sizeof status_names[0]; i++)
        if (status_names[i].subject == subject && status_names[i].detail == detail)
            return status_names[i].name;
    return NULL;
}

static const char *explain_status(const char *enhanced)
{
    int cls, subject, detail;
    if (!parse_status(enhanced, &cls, &subject, &detail) || cls == 2) return NULL;
    const char *any = NULL;
    for (size_t i = 0; i < sizeof by_status / sizeof by_status[0]; i++) {
        if (by_status[i].subject != subject || by_status[i].detail != detail) continue;
        if (by_status[i].cls == cls) return by_status[i].text;
        if (by_status[i].cls == 0) any = by_status[i].text;
    }
    return any;
}

const char *sk_reply_explain(int code, const char *enhanced, const char *text)
{
    /* Without a code, the enhanced status's class stands for it. */
    sk_reply_class rc = code ? sk_reply_class_of(code) : sk_enhanced_class(enhanced);
    if (rc != SK_REPLY_TRANSIENT && rc != SK_REPLY_PERMANENT) return NULL;
    int cls = rc == SK_REPLY_TRANSIENT ? 4 : 5; /* the tables' first digit */
    if (text)
        for (size_t i = 0; i < sizeof by_phrase / sizeof by_phrase[0]; i++) {
            if (by_phrase[i].cls && by_phrase[i].cls != cls) continue;
            for (const char *const *p = by_phrase[i].phrases; *p; p++)
                if (contains_nocase(text, *p)) return by_phrase[i].text;
        }
    /* An enhanced status whose class disagrees with the code is ignored:
     * the code is what clients act on (RFC 3463 2). A status with detail 0
     * ("other or undefined", RFC 3463 3) says less than a known code
     * (530 5.7.0 is "authentication required"), so the code goes first. */
    const char *by_enhanced = NULL;
    if (sk_enhanced_class(enhanced) == rc) {
        by_enhanced = explain_status(enhanced);
        size_t n = strlen(enhanced);
        int undefined = n >= 2 && enhanced[n - 1] == '0' && enhanced[n - 2] == '.';
        if (by_enhanced && !undefined) return by_enhanced;
    }
    for (size_t i = 0; i < sizeof by_code / sizeof by_code[0]; i++)
        if (by_code[i].code == code) return by_code[i].text;
    if (by_enhanced) return by_enhanced;
    return cls == 4 ? "temporary failure: the server may accept this later; retry"
                    : "permanent failure: retrying the same thing will fail the same way; "
                      "read the server's text";
}
