/* Every limit SMTPKit enforces, with where its value comes from. */
#ifndef SMTPKIT_LIMITS_H
#define SMTPKIT_LIMITS_H

/* RFC 5321 4.5.3.1.4: a command line is at most 512 octets with CRLF;
 * extensions may add to it (RFC 1870 SIZE, RFC 3461 DSN, RFC 4954 AUTH=),
 * and we never accept more than a text line of RFC 5321 4.5.3.1.6. */
#define SK_SMTP_COMMAND_LINE_MAX_OCTETS 512
#define SK_SMTP_LINE_MAX_OCTETS         1000
/* RFC 5321 4.5.3.1.5: a reply line is at most 512 octets with CRLF. We
 * accept longer ones from peers (many servers exceed it) up to a text line. */
#define SK_SMTP_REPLY_LINE_MAX_OCTETS 1000
/* A multi-line reply (EHLO lists, banners) as a whole. */
#define SK_SMTP_REPLY_MAX_OCTETS 16384
#define SK_SMTP_REPLY_MAX_LINES  100
/* Text of one reply kept for callers and logs (lines joined by '\n'). */
#define SK_REPLY_TEXT_MAX_OCTETS 1024
/* RFC 5321 4.5.3.1.1-3: local part 64, domain 255, path 256 octets. */
#define SK_SMTP_LOCAL_PART_MAX_OCTETS 64
#define SK_SMTP_DOMAIN_MAX_OCTETS     255
#define SK_SMTP_PATH_MAX_OCTETS       256
/* RFC 5321 4.5.3.1.8 requires at least 100 recipients per message. */
#define SK_SMTP_RECIPIENTS_DEFAULT 100
/* RFC 5322 2.1.1: lines MUST be at most 998 octets, SHOULD be at most 78. */
#define SK_MIME_LINE_MAX_OCTETS  998
#define SK_MIME_LINE_SOFT_OCTETS 78
/* RFC 2045 6.8: base64 lines at most 76 characters. */
#define SK_MIME_BASE64_LINE_OCTETS 76
/* RFC 2045 6.7 (5): quoted-printable lines at most 76 characters. */
#define SK_MIME_QP_LINE_OCTETS 76
/* RFC 2047 2: an encoded word is at most 75 characters. */
#define SK_MIME_ENCODED_WORD_MAX_OCTETS 75
/* A file attached by the composer: larger than what submission servers
 * take (35 MiB is our server's default SIZE), so base64 (4/3) still fits. */
#define SK_MIME_ATTACHMENT_MAX_OCTETS (64u * 1024 * 1024)
/* An unfolded header field read from a prepared message (RFC 5322 2.2.3
 * sets no limit; this bounds parsing). */
#define SK_MIME_HEADER_FIELD_MAX_OCTETS (64u * 1024)

/* Peer certificates kept for diagnosis (sk_tls_info); chains are rarely
 * longer than 4, and RFC 8446 4.4.2 sets no bound, so we keep a few. */
#define SK_TLS_CHAIN_MAX_CERTS 8
/* RFC 4954 4: an AUTH line may exceed 512 octets; we bound a SASL
 * exchange's decoded client response and server challenge at this. */
#define SK_SASL_MAX_OCTETS 12288
/* The AUTH helper channel (docs/SECURITY.md): one check carries a user and a
 * password, each bounded by the SASL exchange, plus a 3-octet header. */
#define SK_AUTHD_REQUEST_MAX_OCTETS (2 * SK_SASL_MAX_OCTETS + 3)
/* Checks waiting for the AUTH helper; past it AUTH answers 454 4.7.0
 * (the helper checks one hash at a time). */
#define SK_AUTHD_PENDING_MAX 256

/* RFC 5321 4.5.3.2 timeouts (client side, and the server's defaults). */
#define SK_TIMEOUT_CONNECT_MS    (30 * 1000)
#define SK_TIMEOUT_GREETING_MS   (5 * 60 * 1000)
#define SK_TIMEOUT_MAIL_MS       (5 * 60 * 1000)
#define SK_TIMEOUT_RCPT_MS       (5 * 60 * 1000)
#define SK_TIMEOUT_DATA_INIT_MS  (2 * 60 * 1000)
#define SK_TIMEOUT_DATA_BLOCK_MS (3 * 60 * 1000)
#define SK_TIMEOUT_DATA_END_MS   (10 * 60 * 1000)
/* RFC 5321 4.5.3.2.7: the server waits at least 5 minutes for a command. */
#define SK_TIMEOUT_SERVER_COMMAND_MS (5 * 60 * 1000)
/* Client peer identification (sk_client_identify): a TLS server answers a
 * ClientHello and a web server a request within milliseconds; 3 s leaves
 * room for a loaded machine. Interactive programs start it after 1 s of
 * silence: a server greets at once, and a greeting paused on purpose
 * (Postfix postscreen, sendmail greet_pause) is still waited for. */
#define SK_CLIENT_IDENTIFY_WAIT_MS  3000
#define SK_CLIENT_IDENTIFY_AFTER_MS 1000
/* The probe checklist (sk_client_probe): the addresses of a name it tries
 * one by one (more than any real MX host publishes), the recipients it
 * tries (a probe, not a mailing), and so its steps: one per address and
 * recipient plus the fixed ones (dns, tls, greeting, two ehlo, auth, mail,
 * rset, a summary) with room to spare. A step's hint is one sentence. */
#define SK_PROBE_ADDRS_MAX       16
#define SK_PROBE_RCPTS_MAX       16
#define SK_PROBE_STEPS_MAX       (SK_PROBE_ADDRS_MAX + SK_PROBE_RCPTS_MAX + 16)
#define SK_PROBE_HINT_MAX_OCTETS 512
/* A client error's hint (sk_client_hint): one sentence of at most about
 * 250 octets of our words with up to three of the caller's setting names,
 * each a short phrase ("--tls implicit", "security: .implicitTLS"). */
#define SK_CLIENT_HINT_NAME_MAX_OCTETS 64
#define SK_CLIENT_HINT_MAX_OCTETS      512

/* Server defaults (settings; these are the values when unset). */
#define SK_SERVER_MAX_MESSAGE_OCTETS_DEFAULT     (35u * 1024 * 1024)
#define SK_SERVER_MAX_CONNECTIONS_DEFAULT        10000
#define SK_SERVER_MAX_CONNECTIONS_PER_IP_DEFAULT 50
/* Commands that make no progress (errors, NOOP, RSET, VRFY, HELP) before
 * the session is closed with 421. */
#define SK_SERVER_MAX_IDLE_COMMANDS_DEFAULT 20
/* RCPTs past the recipient limit get 452 and the client sends them later
 * (RFC 5321 4.5.3.1.10): up to this many per transaction are not errors. */
#define SK_SERVER_RCPT_OVERSHOOT_MAX 1000
/* Slow senders (slowloris): the idle timeouts restart with every octet, so
 * a command line must be complete within the command timeout (RFC 5321
 * 4.5.3.2.7 is the wait for the whole command), and a message that has been
 * arriving for longer than the data timeout must average at least this
 * rate, far below any real link. */
#define SK_SERVER_DATA_MIN_OCTETS_PER_S 256
/* Server command lines (RFC 5321 4.5.3.1.4: 512 octets with CRLF). The
 * extensions we offer add to MAIL and RCPT: RFC 1870 6 SIZE 26, RFC 3461 4
 * DSN 100 (MAIL) and 500 (RCPT), RFC 4954 5 AUTH= 500, RFC 6710 MT-PRIORITY
 * 16, RFC 6152 BODY= and RFC 6531 SMTPUTF8 together 24; the sum is then
 * capped at SK_SMTP_LINE_MAX_OCTETS. */
#define SK_SERVER_MAIL_EXT_OCTETS (26 + 100 + 500 + 16 + 24)
#define SK_SERVER_RCPT_EXT_OCTETS 500
/* Early talkers: how long the server waits before its banner; a client
 * that talks meanwhile is dropped (RFC 5321 4.3.1). 0: no wait. */
#define SK_SERVER_GREETING_DELAY_MS_DEFAULT 0
/* Listeners per server (a daemon has a few: smtp, submission, smtps on v4
 * and v6). */
#define SK_SERVER_LISTENERS_MAX 16
/* After an accept error (out of descriptors) a listener pauses this long. */
#define SK_SERVER_ACCEPT_PAUSE_MS 1000
/* Replies queued for a client that pipelines without reading them: past
 * this the server stops reading its commands until it catches up (RFC 2920
 * 3.1 lets a server wait; this bounds memory). */
#define SK_SERVER_OUTPUT_MAX_OCTETS (64 * 1024)
/* Body octets gathered before they are handed to the program, allocated
 * only while a message is coming in. */
#define SK_SERVER_CHUNK_OCTETS (16 * 1024)
/* Input read while the program has not yet answered a message (pipelined
 * commands after the end of data); more waits in the socket. */
#define SK_SERVER_WAIT_READ_OCTETS 4096
/* Client addresses whose AUTH failures are remembered (oldest forgotten
 * first). */
#define SK_SERVER_AUTH_TRACK_MAX 1024
/* Failed AUTH attempts per client address before AUTH is refused. */
#define SK_SERVER_AUTH_FAILURES_MAX 5
#define SK_SERVER_AUTH_THROTTLE_MS  (60 * 1000)

/* DNS (src/dns). RFC 1035 4.2.1: UDP first, retry; the per-try timeout and
 * tries are the resolver's defaults (resolv.conf(5) uses 5 s and 2). */
#define SK_DNS_TIMEOUT_MS_DEFAULT 5000
#define SK_DNS_TRIES_DEFAULT      2
/* MX hosts tried per domain and addresses kept per host: enough for any
 * sane domain, and a bound against hostile answers (RFC 5321 5.1 lets a
 * client limit the hosts it tries). */
#define SK_DNS_MX_HOSTS_MAX       16
#define SK_DNS_ADDRS_PER_HOST_MAX 16
/* The SMTP transport keeps a domain's route (its MX hosts and their
 * addresses) for the next messages to it instead of three lookups (MX, A,
 * AAAA) before each one. An sk_route carries no TTL, so a fixed minute:
 * a changed MX or address is followed within it, and a busy destination
 * costs one route a minute. Only complete routes are kept, never
 * failures. 4096 domains of a few hundred octets each; the oldest goes
 * first when full. */
#define SK_SMTP_ROUTE_CACHE_MS  (60 * 1000)
#define SK_SMTP_ROUTE_CACHE_MAX 4096
/* Records kept from one plain lookup (TXT, A, AAAA, MX). */
#define SK_DNS_RECORDS_MAX 64
/* A route's one-line explanation (sk_route.text): a domain name (RFC 1035
 * 2.3.4: 255 octets), the servers asked and the reason fit. */
#define SK_DNS_ROUTE_TEXT_OCTETS 512
/* The resolver's cache of plain lookups (TXT, A, AAAA, MX, PTR: what SPF,
 * DKIM and DMARC ask). A positive answer is kept for its TTL but at most an
 * hour, so that a changed SPF or DKIM record is seen within the hour
 * whatever TTL was published (recursive resolvers cap at a day). A negative
 * answer (NXDOMAIN, NODATA) is kept for its SOA's negative TTL (RFC 2308 5;
 * not at all without an SOA) but at most a minute: a record just published
 * is seen soon. Failures are never kept. 4096 answers of a few hundred
 * octets each are about a megabyte; the least recently used goes first. */
#define SK_DNS_CACHE_ENTRIES_DEFAULT    4096
#define SK_DNS_CACHE_TTL_MAX_S          3600
#define SK_DNS_CACHE_NEGATIVE_TTL_MAX_S 60
/* One TXT record (RFC 1035 3.3.14: strings of up to 255 octets in one RR
 * of at most 65535 octets). */
#define SK_DNS_TXT_MAX_OCTETS 65535

/* SPF (src/spf, RFC 7208). 4.6.4: at most 10 terms that cause DNS lookups
 * (include, a, mx, ptr, exists, redirect) per check; at most 10 MX names
 * resolved by one "mx" (more is a permerror) and 10 PTR names validated by
 * one "ptr" or %{p} (the rest are ignored); at most 2 void lookups
 * (NXDOMAIN or no records; the RECOMMENDED default). */
#define SK_SPF_DNS_LOOKUPS_MAX  10
#define SK_SPF_MX_NAMES_MAX     10
#define SK_SPF_PTR_NAMES_MAX    10
#define SK_SPF_VOID_LOOKUPS_MAX 2
/* 4.6.4: "MTAs or other processors SHOULD impose a limit on the maximum
 * amount of elapsed time to evaluate check_host(). Such a limit SHOULD
 * allow at least 20 seconds"; past it the result is temperror. */
#define SK_SPF_TIMEOUT_MS_DEFAULT (20 * 1000)
/* 7.3: a macro-expanded domain name is cut from the left to 253 octets;
 * RFC 1035 2.3.4: a label is at most 63. */
#define SK_SPF_DOMAIN_MAX_OCTETS 253
#define SK_SPF_LABEL_MAX_OCTETS  63
/* A record or explanation after macro expansion: a TXT record's size. */
#define SK_SPF_EXPAND_MAX_OCTETS SK_DNS_TXT_MAX_OCTETS
/* Terms in one record: 10 lookups plus any number of ip4/ip6 could be
 * long, but a TXT record holds at most 65535 octets, so every term of
 * even the longest record fits in this many. */
#define SK_SPF_TERMS_MAX 4096
/* Lines of an evaluation's trace (sk_spf_outcome.trace): each term
 * evaluated, 10 lookups with their includes fit many times over. */
#define SK_SPF_TRACE_LINES_MAX 100

/* DSN and rules (src/deliver). A bounce returns the whole message only up
 * to this size, else its headers (RFC 3461 4.3 lets the MTA cut it): a
 * bounce should not double the traffic of a large message. */
#define SK_DSN_FULL_MAX_OCTETS_DEFAULT (256u * 1024)
/* Header fields a server puts on top of a DSN it sends (smtpkit serve:
 * the DKIM signatures of the DSN's From domain, SK_DKIM_SIGN_MAX at most). */
#define SK_DSN_ADDED_FIELDS_MAX_OCTETS (SK_DKIM_SIGN_MAX * SK_DKIM_SIGNATURE_MAX_OCTETS)
/* Reports we parse (DSN, ARF): bounded input and recipients, and the
 * fields of one block (a recipient's block has about a dozen). */
#define SK_REPORT_MAX_OCTETS     (16u * 1024 * 1024)
#define SK_REPORT_RCPTS_MAX      1000
#define SK_REPORT_MIME_DEPTH_MAX 5
#define SK_REPORT_FIELDS_MAX     (SK_REPORT_RCPTS_MAX * 16)
/* Bounces (src/bounce): the human-readable text the detectors read, from
 * the start of the bounce's text parts. A bounce's own words are a few
 * KiB; what follows is the returned message, and searching all of it for
 * each recipient would make the cost grow with the square of the input. */
#define SK_BOUNCE_TEXT_MAX_OCTETS (256u * 1024)
/* Addresses that are never the failed recipient (the bounce's and the
 * returned message's From, Sender, Return-Path), kept once per bounce. */
#define SK_BOUNCE_NOT_RCPT_MAX 6
/* The longest line kept as the mark that starts a returned message inside
 * a bounce's text ("------ This is a copy of the message, including all
 * the headers. ------"); longer lines are cut, they are only compared. */
#define SK_BOUNCE_MARK_MAX_OCTETS 120
/* How many lines after its failure words (the last place they are said)
 * the last-resort scanner looks for the failed address: the notices it reads name it within a few
 * lines; further down, explanations name addresses of their own. */
#define SK_BOUNCE_SCAN_LINES 12
/* When no line there starts with an address, the scanner takes one from
 * within the words' own line and the few after it only. */
#define SK_BOUNCE_SCAN_NEAR_LINES 4
/* Classification rules file: line length and rule count. */
#define SK_RULES_LINE_MAX_OCTETS 1024
#define SK_RULES_MAX             1000
/* A rule's regex runs on PCRE2 with its limits set, since rules files
 * come from users and reply texts from anyone: backtracking steps per
 * match (PCRE2's default is 10 million; a rule on a reply of a few
 * hundred octets needs thousands), nested backtracking depth, and the
 * heap a match may use (KiB). A match that reaches one is "undecided"
 * and the rule is skipped. Groups may nest this deep in a pattern (PCRE2
 * default 250). */
#define SK_RULES_REGEX_MATCH_LIMIT     100000
#define SK_RULES_REGEX_DEPTH_LIMIT     1000
#define SK_RULES_REGEX_HEAP_LIMIT_KIB  1024
#define SK_RULES_REGEX_PARENS_NEST_MAX 32

/* DKIM (src/dkim). The header block a signer or verifier keeps while the
 * body streams through its hashes (RFC 5322 sets no bound; the spool reads
 * headers up to the same size). */
#define SK_DKIM_HEADER_BLOCK_MAX_OCTETS SK_SPOOL_HEADERS_MAX_OCTETS
/* DKIM-Signature fields evaluated per message: each costs a key lookup and
 * a public-key operation, and a hostile message can carry thousands
 * (RFC 6376 6.1 lets a verifier limit them). The rest are counted. */
#define SK_DKIM_VERIFY_SIGNATURES_MAX 10
/* Signatures one signer makes over one message (e.g. RSA + Ed25519 for
 * the author's domain and for the service's). */
#define SK_DKIM_SIGN_MAX 8
/* Tags in one tag list (RFC 6376 3.2): a signature defines 14 and a key
 * record 7; more is not a real signature, and duplicates are checked
 * pairwise. */
#define SK_DKIM_TAGS_MAX 64
/* Names in h= (RFC 6376 3.5): the default list signs about 30. */
#define SK_DKIM_SIGNED_HEADERS_MAX 256
/* A DKIM-Signature field: a 8192-bit RSA signature is 1366 base64
 * characters, and a long h= a few thousand more. */
#define SK_DKIM_SIGNATURE_MAX_OCTETS (16u * 1024)
/* RFC 8301 3.2: RSA keys of 1024 bits or more (signers and verifiers);
 * keygen makes 2048 by default. Larger than 8192 is refused, bounding the
 * cost of a verification that a sender's key record chooses. */
#define SK_DKIM_RSA_BITS_MIN     1024
#define SK_DKIM_RSA_BITS_DEFAULT 2048
#define SK_DKIM_RSA_BITS_MAX     8192
/* A t= this far in the future is refused (clocks differ a little;
 * RFC 6376 3.5 lets a verifier ignore future time stamps). */
#define SK_DKIM_CLOCK_SKEW_S 300
/* RFC 6008 4: header.b carries at least 8 characters of b=, more when
 * two signatures start alike. */
#define SK_DKIM_B_PREFIX_MIN_OCTETS 8
#define SK_DKIM_B_PREFIX_MAX_OCTETS 64
/* A verification result's reason text. */
#define SK_DKIM_REASON_OCTETS 256
/* i= is a mailbox (RFC 6376 3.5: [Local-part] "@" domain-name). */
#define SK_DKIM_IDENTITY_MAX_OCTETS (SK_SMTP_LOCAL_PART_MAX_OCTETS + 1 + SK_SMTP_DOMAIN_MAX_OCTETS)
/* RFC 1035 3.3.14: a TXT character-string holds at most 255 octets. */
#define SK_DKIM_TXT_STRING_MAX_OCTETS 255
/* A key's DNS name, selector._domainkey.domain (RFC 6376 3.6.2.1): a
 * domain name, at most 253 octets in text form (RFC 1035 2.3.4). */
#define SK_DKIM_KEY_NAME_MAX_OCTETS 253
/* A PEM private key file (an 8192-bit RSA key is about 6.5 KiB). */
#define SK_DKIM_KEY_FILE_MAX_OCTETS (64u * 1024)

/* Tracking store (src/track). Events are batched in memory and written in
 * one transaction: this many, or this long after the first, whichever comes
 * first. Pending events beyond the maximum (the store cannot be written)
 * are dropped and logged: tracking must never stop mail. */
#define SK_TRACK_BATCH_EVENTS_DEFAULT   64
#define SK_TRACK_BATCH_DELAY_MS_DEFAULT 200
#define SK_TRACK_PENDING_MAX_EVENTS     10000
/* How long a writer waits for another (sqlite3_busy_timeout). */
#define SK_TRACK_BUSY_TIMEOUT_MS_DEFAULT 2000
/* How long sk_track_wait waits, at most, for the writer to reach a ticket
 * (an HTTP read of events waits so, on a worker thread): a batch takes
 * milliseconds, and a batch that cannot be written is reported after the
 * busy timeout, so this bound is met only by a writer stuck past both;
 * the read then answers from what is written. */
#define SK_TRACK_WAIT_MAX_MS 5000
/* One field of an event: a reply text is bounded by SK_REPLY_TEXT_MAX_OCTETS,
 * addresses by RFC 5321 4.5.3.1.3, and the Maildir file of a local delivery
 * (in remote_host) by Linux's PATH_MAX, which is the larger. */
#define SK_TRACK_FIELD_MAX_OCTETS 4096
/* Events returned for one message, and domains listed by stats. */
#define SK_TRACK_QUERY_EVENTS_MAX  10000
#define SK_TRACK_STATS_DOMAINS_MAX 50
/* Events on one page of sk_track_events_list: the API's page bound. */
#define SK_TRACK_PAGE_MAX 1000
/* A hard bounce suppresses its recipient this long (a mailbox that does
 * not exist rarely comes back within a month). */
#define SK_SUPPRESS_DURATION_S_DEFAULT (30 * 86400)
/* A suppression mirror (an SMTP server's copy of the list) reads the
 * changes other processes made at least this often: `smtpkit suppress
 * add` is in force at the next RCPT after at most this long. Reading
 * "nothing changed" costs one indexed read (docs/tracking.md). */
#define SK_SUPPRESS_REFRESH_MS_DEFAULT 100
/* The store numbers every change to the suppression list and keeps the
 * last this many numbers; a mirror further behind loads the whole list
 * again. Fixed when the store's triggers are created. */
#define SK_SUPPRESS_LOG_KEEP_ROWS 10000

/* Spool: an envelope file is read whole (a few hundred octets per
 * recipient); `smtpkit queue show` reads at most this much of a message to
 * find its header block (RFC 5322 2.1: it ends at the first empty line). */
#define SK_SPOOL_ENVELOPE_MAX_OCTETS (16u * 1024 * 1024)
#define SK_SPOOL_HEADERS_MAX_OCTETS  (256u * 1024)
/* The spool's journal (docs/queue.md "The journal"): the records of the
 * groups accepted since the last checkpoint. 4 MiB holds about 2,700
 * messages of 1.5 KiB; a checkpoint (one syncfs) is made when it is full,
 * so this bounds both the work of one checkpoint and what recovery
 * replays. */
#define SK_SPOOL_JOURNAL_OCTETS (4u * 1024 * 1024)
/* Stored messages the queue takes in per loop pass after a start, as the
 * spool's recovery checks them (one envelope read each, some 20-50 us
 * warm): about 10-25 ms of the loop, so sessions accepted meanwhile are
 * answered promptly, and 1,000,000 messages take 4,000 passes. After an
 * error of the moment (EIO, no memory) the same message is tried again
 * this many seconds later. */
#define SK_QUEUE_RECOVER_BATCH   256
#define SK_QUEUE_RECOVER_RETRY_S 5

/* Fair shares of the queue's delivery slots (max_in_flight; docs/queue.md
 * "Scheduling"). A delivery holds its slot for as long as the destination
 * takes to answer, so slow destinations at their connection limit could
 * hold every slot. While other destinations have work that could start, a
 * destination takes a new slot only below an equal share of them all;
 * and while more than one destination has deliveries in flight, the last
 * 1/SK_QUEUE_FAIR_RESERVE_DIV of the slots (8 of 32) is kept for
 * destinations holding none, so that a destination that comes after slow
 * ones have filled theirs starts at once instead of waiting for one of
 * their deliveries to end. */
#define SK_QUEUE_FAIR_RESERVE_DIV 4

/* `smtpkit queue summary` lists at most this many recipient domains (the
 * most messages first; how many were left out is said): a domain's entry
 * is at most about 350 octets of JSON (a 255-octet domain, RFC 5321
 * 4.5.3.1.2, and three numbers), so the answer stays well within
 * SK_CONTROL_DATA_MAX_OCTETS. */
#define SK_QUEUE_SUMMARY_DOMAINS_MAX 1000

/* The control socket of `smtpkit serve` (docs/queue.md "Control"). A
 * request is one line; the longest the grammar allows (a verb, an ID,
 * "all", a state, and a domain of RFC 5321 4.5.3.1.2 and a path of
 * 4.5.3.1.3 in xtext, up to 3 octets for each of theirs) is about 1,600
 * octets. Longer is refused, and nothing more is read. */
#define SK_CONTROL_REQUEST_MAX_OCTETS 2048
/* A reply line: two counts, or an error word and a short text. */
#define SK_CONTROL_REPLY_LINE_MAX_OCTETS 512
/* Control clients served at once (requests being read and operations
 * running); one more is answered "busy". An operator runs one command at
 * a time; a few scripts in parallel fit. */
#define SK_CONTROL_CLIENTS_MAX 16
/* A control client has this long from connecting to send its whole
 * request (one that sends nothing is dropped), and to take each reply
 * line off the socket. */
#define SK_CONTROL_IO_TIMEOUT_MS 5000
/* Messages a bulk operation changes per pass of the event loop: a flush
 * or release writes and syncs each envelope (a data and a directory
 * sync, 2-10 ms on a busy disk), so a pass stays within tens of
 * milliseconds and SMTP sessions are served in between (docs/queue.md). */
#define SK_CONTROL_BATCH_MESSAGES 8
/* While the queue is still loading the spool's stored messages after a
 * start, a bulk operation waits for the end of the load, looking again
 * this often (a million messages load in tens of seconds). */
#define SK_CONTROL_LOAD_WAIT_MS 20
/* A bulk operation tells its client how far it got at most this often,
 * so that the client's wait for the next line restarts. */
#define SK_CONTROL_PROGRESS_MS 1000
/* A read request's answer (`smtpkit stats --metrics`: the exposition;
 * the webhooks' state): one block of text, at most this long (the
 * exposition is bounded by SK_METRICS_TEXT_MAX_OCTETS). Read requests a
 * daemon answers: at most this many verbs. */
#define SK_CONTROL_DATA_MAX_OCTETS (1024u * 1024)
#define SK_CONTROL_DATA_VERBS_MAX  4

/* A log line (sk_log) is cut at this many octets; sk_log_record_parse
 * takes it apart into at most SK_LOG_FIELDS_MAX key=value fields (the
 * library's lines have a dozen at most; more are kept as text). */
#define SK_LOG_LINE_MAX_OCTETS 2048
#define SK_LOG_FIELDS_MAX      64

/* "Did you mean" suggestions (sk_nearest) compare short names: options,
 * commands and config keys; a longer word gets no suggestion. */
#define SK_NEAREST_MAX_OCTETS 64
/* A background thread's name (sk_workers, pthread_setname_np): Linux
 * keeps 16 octets with the NUL (TASK_COMM_LEN). */
#define SK_WORKERS_NAME_MAX_OCTETS 15
/* Threads of one background group: more would be a configuration mistake
 * (each has its stack) rather than a need. */
#define SK_WORKERS_THREADS_MAX 1024

/* DMARC (RFC 7489, src/dmarc). A record is one TXT record's strings joined
 * (RFC 7489 6.1); DNS itself bounds a TXT answer to 64 KiB, real records
 * are under 1 KiB, so a longer one is refused rather than parsed. */
#define SK_DMARC_RECORD_MAX_OCTETS 4096
/* Report URIs kept per rua= or ruf= tag: RFC 7489 6.2 lets a receiver
 * limit them if it supports at least two. Further URIs are ignored. */
#define SK_DMARC_URIS_MAX 8
/* DKIM signatures weighed per message (the caller's list of d= domains);
 * the DKIM verifier has its own limit of signatures checked. */
#define SK_DMARC_DKIM_MAX 32
/* A result's reason text (for Authentication-Results and logs): a
 * sentence naming up to two domains of SK_SMTP_DOMAIN_MAX_OCTETS. */
#define SK_DMARC_REASON_OCTETS 768
/* RFC 7489 6.3 ri= default: one report a day. */
#define SK_DMARC_RI_DEFAULT_S 86400

/* MTA-STS (RFC 8461, src/mtasts). 3.3: "a suggested timeout is one minute,
 * and a suggested maximum policy size is 64 kilobytes"; a policy fetch
 * past either fails. 3.2: max_age is at most 31557600 seconds (a year);
 * 3.1: an id is 1 to 32 letters and digits. The mx patterns one policy may
 * hold: far above any real domain's (a few), a bound on what a hostile
 * 64 KiB file makes us keep. The connection itself is bounded too, so
 * that an address that drops packets does not take the whole minute. */
#define SK_MTASTS_FETCH_TIMEOUT_MS_DEFAULT (60 * 1000)
#define SK_MTASTS_CONNECT_TIMEOUT_MS       (10 * 1000)
#define SK_MTASTS_POLICY_MAX_OCTETS        (64u * 1024)
#define SK_MTASTS_MAX_AGE_MAX_S            31557600u
#define SK_MTASTS_ID_MAX_OCTETS            32
#define SK_MTASTS_MX_MAX                   256
/* A policy fetch's one-line explanation: the URL (a 253-octet host name
 * and the well-known path) and libcurl's message fit. */
#define SK_MTASTS_ERROR_OCTETS 768
/* TLS-RPT (RFC 8460 3): report URIs kept from one rua= (the RFC sets no
 * bound; a record names one or two). Further URIs are an error. */
#define SK_TLSRPT_URIS_MAX 16

/* Authentication-Results (RFC 8601, src/authres). Lines of the header we
 * write are folded before this many octets where white space allows
 * (RFC 5322 2.1.1 SHOULD); a header that cannot stay under 998 octets a
 * line is refused. A header we write, or read to find its authserv-id, is
 * bounded like any header field. */
#define SK_AUTHRES_LINE_SOFT_OCTETS  78
#define SK_AUTHRES_HEADER_MAX_OCTETS (64u * 1024)
/* RFC 8617 4.2.1: an ARC instance number is 1 to 50. */
#define SK_ARC_INSTANCE_MAX 50
/* ARC (src/arc): a chain verification's reason text; it names the
 * instance and the signature that failed, and the signature's own reason
 * (SK_DKIM_REASON_OCTETS). */
#define SK_ARC_REASON_OCTETS 384

/* The HTTP API (src/http, docs/http-api.md). Defaults of serve's settings:
 * a request (headers and body) of 10 MiB holds a message near the default
 * --max-message-size once base64 in JSON (4/3) is counted; 16 KiB of
 * header fields is what nginx and Apache take by default; a client that
 * sends nothing for 30 s while a request is due is cut off (and an idle
 * kept-alive connection closed); requests being handled at once are
 * bounded like SMTP sessions. */
#define SK_HTTP_REQUEST_MAX_OCTETS_DEFAULT (10u * 1024 * 1024)
#define SK_HTTP_HEADER_MAX_OCTETS_DEFAULT  (16u * 1024)
#define SK_HTTP_REQUEST_TIMEOUT_MS_DEFAULT (30 * 1000)
#define SK_HTTP_REQUESTS_MAX_DEFAULT       256
#define SK_HTTP_CONNECTIONS_MAX_DEFAULT    1024
/* Failed API-key attempts per client address before 429, and the window
 * they are counted in: SMTP AUTH's (SK_SERVER_AUTH_FAILURES_MAX). The
 * addresses remembered at once (oldest forgotten first). */
#define SK_HTTP_AUTH_FAILURES_MAX SK_SERVER_AUTH_FAILURES_MAX
#define SK_HTTP_AUTH_THROTTLE_MS  SK_SERVER_AUTH_THROTTLE_MS
#define SK_HTTP_AUTH_PEERS_MAX    4096
/* Recipients of one batch request (one message each): a bound on the work
 * and the reply of one request. */
#define SK_HTTP_BATCH_MAX 1000
/* An error's field path ("recipients[12].substitutions.name") and text. */
#define SK_HTTP_FIELD_PATH_OCTETS 128
#define SK_HTTP_ERROR_TEXT_OCTETS 256
/* Idempotency-Key (docs/http-api.md): up to 255 printable octets, as
 * Stripe and the IETF draft allow; answers kept at least 24 h. */
#define SK_HTTP_IDEMPOTENCY_KEY_MAX_OCTETS 255
#define SK_HTTP_IDEMPOTENCY_KEEP_S         (24 * 3600)
/* The seconds a 429 for a full queue asks the client to wait. */
#define SK_HTTP_RETRY_AFTER_S 30
/* The HTTP API's SQLite work (the idempotency store, the tracking store's
 * queries and suppression changes) runs on a group of worker threads,
 * each with connections of its own: two, so that one slow query (stats
 * over a large store) does not hold up the idempotency checks of sends.
 * At shutdown the jobs in flight get this long to finish: above the
 * stores' busy timeouts (http.db 5 s, track.db 2 s), so a write waiting
 * for another process's lock still ends. */
#define SK_HTTP_WORKER_THREADS  2
#define SK_HTTP_WORKERS_STOP_MS 10000
/* API keys: the secret's random octets (256 bits) and a name's length. */
#define SK_APIKEY_SECRET_OCTETS   32
#define SK_APIKEY_NAME_MAX_OCTETS 64
/* A message or text the builder makes when no --max-message-size bounds
 * it: twice the largest attachment the composer takes. */
#define SK_HTTP_BUILD_MAX_OCTETS (2u * SK_MIME_ATTACHMENT_MAX_OCTETS)
/* Rows a list route answers at most per page (events, suppressions), and
 * by default. */
#define SK_HTTP_PAGE_MAX     1000
#define SK_HTTP_PAGE_DEFAULT 100
/* Tags and metadata of a message sent through the API (docs/http-api.md):
 * as many tags as SendGrid's categories (10), each short enough for a
 * label; metadata (string values) as JSON within one tracking field
 * (SK_TRACK_FIELD_MAX_OCTETS), so that every event can carry it. */
#define SK_HTTP_TAGS_MAX            10
#define SK_HTTP_TAG_MAX_OCTETS      64
#define SK_HTTP_METADATA_MAX_OCTETS 2048
/* A request being read (headers and body) is cut off this long after its
 * first octet at the latest (--http-request-timeout); an answer to a
 * refused request (413, 408, 503 over the connection cap) is followed by
 * reading and dropping what the client still sends, for at most this
 * long, so that closing does not reset the connection before the client
 * read the answer (as evhttp's lingering close). */
#define SK_HTTP_LINGER_MS 2000
/* Metrics (src/metrics). Labelled series per family: label values beyond
 * this go to the series "other", so a family's size stays bounded what
 * ever the traffic (Prometheus stores every series it sees). Histogram
 * buckets per family: a fixed list each. The exposition of a running
 * daemon is bounded too (a scrape is one reply of the control socket). */
#define SK_METRICS_SERIES_MAX      64
#define SK_METRICS_BUCKETS_MAX     24
#define SK_METRICS_TEXT_MAX_OCTETS (1024u * 1024)
/* The destinations named in the queue-depth gauge: the busiest this many,
 * the rest summed as "other". */
#define SK_METRICS_DESTINATIONS_TOP 20

/* Webhooks (src/webhook, docs/webhooks.md). A signature header value:
 * "v1," and the base64 of a SHA-256 HMAC (44), with room. The secret's
 * key: Standard Webhooks asks for 24 to 64 random octets. */
#define SK_WEBHOOK_SIGNATURE_OCTETS 64
#define SK_WEBHOOK_KEY_MIN_OCTETS   24
#define SK_WEBHOOK_KEY_MAX_OCTETS   64
#define SK_WEBHOOK_URL_MAX_OCTETS   2048
#define SK_WEBHOOKS_MAX             32
/* Requests in flight per endpoint (HTTP/1.1 connections kept alive to
 * it): enough for thousands of events a second to a near receiver. */
#define SK_WEBHOOK_CONCURRENCY_DEFAULT 32
#define SK_WEBHOOK_CONCURRENCY_MAX     256
/* One request's whole time, connect included; a receiver should answer
 * at once (Standard Webhooks suggests 15 s at most). */
#define SK_WEBHOOK_TIMEOUT_MS 10000
/* Retries: the first after SK_WEBHOOK_RETRY_MIN_MS, doubling up to
 * SK_WEBHOOK_RETRY_MAX_MS, until the event is older than the maximum age
 * (--webhook-max-age, default 3 days, as common providers retry). */
#define SK_WEBHOOK_RETRY_MIN_MS       1000
#define SK_WEBHOOK_RETRY_MAX_MS       (3600u * 1000)
#define SK_WEBHOOK_MAX_AGE_MS_DEFAULT (3ull * 24 * 3600 * 1000)
/* How often an idle sender looks for new events in the outbox (the
 * tracking store writes them in batches every 100 ms or so), and how
 * fresh the backlog counts of the metrics are. */
#define SK_WEBHOOK_POLL_MS    50
#define SK_WEBHOOK_BACKLOG_MS 1000
/* Rows read from the outbox per endpoint in one pass. */
#define SK_WEBHOOK_FETCH_MAX 512
/* An error kept for `smtpkit stats`. */
#define SK_WEBHOOK_ERROR_OCTETS 256

#endif
