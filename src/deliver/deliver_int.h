/* Declarations shared by the files of src/deliver and its unit tests, not
 * offered to other modules (that is deliver.h): the Received: builder both
 * transports use, and the pieces of the Maildir transport under test. */
#ifndef SK_DELIVER_INT_H
#define SK_DELIVER_INT_H

#include "deliver/deliver.h"

/* Append our Received: header (RFC 5321 4.4) for a message that came in
 * with env: from its HELO name and client address, by our host name by,
 * with its protocol (RFC 3848) and TLS, id our queue ID, for rcpt (NULL:
 * no "for" clause), dated now (unix seconds), each line ended by eol
 * ("\n" in Maildir files, "\r\n" on the wire). */
SK_NODISCARD sk_err sk_deliver_received(const sk_spool_envelope *env, const char *id,
                                        const char *by, const char *rcpt, int64_t now,
                                        const char *eol, sk_buf *out);
/* Append the header fields the server added at acceptance (env->prepend:
 * its DKIM-Signature, Authentication-Results), each line ended by eol.
 * Both transports put them right below their Received:. Nothing when
 * there are none. */
SK_NODISCARD sk_err sk_deliver_added_fields(const sk_spool_envelope *env, const char *eol,
                                            sk_buf *out);

/* Pieces of the Maildir transport, exposed for unit tests. */
/* Directory name for a local part: lower-cased, '/' and NUL refused, a
 * leading '.' refused (SK_ERR_INVAL). */
sk_err sk_maildir_folder_name(const char *local_part, sk_buf *out);
/* The deterministic file name of recipient index of message queue_id:
 * "ARRIVAL.MQUEUEIDRINDEX.HOSTNAME" (hostname with '/' and ':' escaped as
 * in the Maildir convention). */
sk_err sk_maildir_file_name(const sk_spool_envelope *env, size_t index, const char *hostname,
                            sk_buf *out);
/* The trace headers put at the top: Return-Path: and Received:, then the
 * fields added at acceptance (LF line ends, as the whole file). */
sk_err sk_maildir_trace_headers(const sk_spool_envelope *env, const char *rcpt,
                                const char *hostname, int64_t now, sk_buf *out);

#endif
