/* SMTPKit: compose and send email, and build SMTP servers. */
#ifndef SMTPKIT_H
#define SMTPKIT_H

#include "limits.h"
#include "util.h"
#include "worker.h"
#include "reply.h"
#include "spool.h"
#include "queue.h"
#include "control.h"
#include "client.h"
#include "tls.h"
#include "sasl.h"
#include "proto.h"
#include "server.h"
#include "auth.h"
#include "message.h"
#include "daemon.h"
#include "dns.h"
#include "dkim.h"
#include "spf.h"
#include "classify.h"
#include "dsn.h"
#include "track.h"
#include "suppress.h"
#include "dmarc.h"
#include "authres.h"
#include "arc.h"
#include "mtasts.h"
#include "http.h"

#endif
