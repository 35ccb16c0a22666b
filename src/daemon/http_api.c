/* `smtpkit serve`'s HTTP API: the listener of src/http started on the
 * daemon's loop with its configuration, spool, queue and tracking store. */
#include "daemon_int.h"

#include <smtpkit/http.h>

sk_http *sk_daemon_http_start(const sk_daemon_config *c, const char *hostname,
                              struct event_base *base, const sk_http_deps *deps,
                              const sk_logger *log, sk_error *err)
{
    sk_http_opts o = {
        .listen = c->http,
        .tls = c->http_tls,
        .tls_cert = c->tls_cert,
        .tls_key = c->tls_key,
        .data_dir = c->data_dir,
        .hostname = hostname,
        .hold = c->hold,
        .max_request_octets = c->http_max_request_size,
        .max_header_octets = c->http_max_header_size,
        .request_timeout_ms = c->http_request_timeout_ms,
        .max_requests = c->http_max_requests,
        .queue_limit = c->http_queue_limit,
        .max_message_octets = c->max_message_size,
        .log = *log,
    };
    return sk_http_new(&o, deps, base, err);
}
