# libsmtpkit's modules: one OBJECT library per folder under src/, with the
# modules it uses (DEPS), the outside packages it uses (PACKAGES), the private
# headers it offers other modules as its internal API (INTERNAL_API) and its
# public headers (PUBLIC, under include/smtpkit/). Dependencies point
# downwards only; scripts/check-modules.py (a test in `make check`) fails when
# an #include disagrees with what is stated here.
set(SK_MODULES "")
set(SK_MODULE_MANIFEST "")

function(sk_module name)
  cmake_parse_arguments(M "" "" "DEPS;PACKAGES;INTERNAL_API;PUBLIC" ${ARGN})
  file(GLOB srcs CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/src/${name}/*.c)
  add_library(sk_${name} OBJECT ${srcs})
  target_include_directories(sk_${name} PUBLIC ${PROJECT_SOURCE_DIR}/include
                                        PRIVATE ${PROJECT_SOURCE_DIR}/src)
  foreach(pkg ${M_PACKAGES})
    target_link_libraries(sk_${name} PRIVATE PkgConfig::${pkg})
  endforeach()
  # A module builds after the modules it uses (no link step of its own).
  foreach(dep ${M_DEPS})
    add_dependencies(sk_${name} sk_${dep})
  endforeach()
  string(JOIN " " deps ${M_DEPS})
  string(JOIN " " pkgs ${M_PACKAGES})
  string(JOIN " " api ${M_INTERNAL_API})
  string(JOIN " " pub ${M_PUBLIC})
  set(SK_MODULES ${SK_MODULES} ${name} PARENT_SCOPE)
  set(SK_MODULE_MANIFEST "${SK_MODULE_MANIFEST}${name}|${deps}|${pkgs}|${api}|${pub}\n" PARENT_SCOPE)
endfunction()

sk_module(util PUBLIC util.h limits.h worker.h)
sk_module(proto DEPS util PUBLIC reply.h proto.h)
sk_module(metrics DEPS util PUBLIC metrics.h)
sk_module(mime DEPS util proto PUBLIC message.h)
sk_module(tls DEPS util PACKAGES OPENSSL INTERNAL_API tls_int.h tls_server.h PUBLIC tls.h)
sk_module(sasl DEPS util tls PACKAGES OPENSSL CRYPT INTERNAL_API sasl_server.h
          PUBLIC sasl.h auth.h)
sk_module(client DEPS util proto mime tls sasl PACKAGES OPENSSL PUBLIC client.h probe.h)
sk_module(server DEPS util proto tls sasl PACKAGES OPENSSL LIBEVENT PUBLIC server.h)
sk_module(dns DEPS util PACKAGES CARES LIBEVENT PUBLIC dns.h)
sk_module(dkim DEPS util dns PACKAGES OPENSSL LIBEVENT INTERNAL_API dkim_int.h PUBLIC dkim.h)
sk_module(spf DEPS util dns PACKAGES LIBEVENT PUBLIC spf.h)
sk_module(spool DEPS util proto PACKAGES LIBEVENT INTERNAL_API spool_int.h PUBLIC spool.h)
sk_module(deliver DEPS util proto mime tls client dns spool PACKAGES LIBEVENT PCRE2
          INTERNAL_API deliver.h PUBLIC dsn.h classify.h)
sk_module(track DEPS util deliver bounce PACKAGES SQLITE LIBEVENT PUBLIC track.h suppress.h outbox.h)
sk_module(queue DEPS util proto spool deliver PACKAGES LIBEVENT JANSSON PUBLIC queue.h)
sk_module(dmarc DEPS util mime dns PACKAGES PSL IDN2 INTERNAL_API dmarc_int.h PUBLIC dmarc.h)
sk_module(authres DEPS util mime PUBLIC authres.h)
# The control channel (`smtpkit queue` to a running daemon, or straight on
# the spool) is a layer on top of the queue's public API: it may not use
# the queue's private header, and the queue knows nothing of it.
sk_module(control DEPS util proto spool deliver queue PACKAGES LIBEVENT PUBLIC control.h)
sk_module(arc DEPS util dns dkim authres PACKAGES OPENSSL LIBEVENT PUBLIC arc.h)
sk_module(mtasts DEPS util PACKAGES CURL PUBLIC mtasts.h)
# Reading bounces: standard reports and the text formats of MTAs and
# providers, one detector per family, classified by the deliver rules.
sk_module(bounce DEPS util proto mime deliver queue PUBLIC bounce.h)
sk_module(webhook DEPS util deliver track PACKAGES SQLITE CURL LIBEVENT OPENSSL JANSSON PUBLIC webhook.h)
# The HTTP API (listener, API keys, routes) on the spool, queue and
# tracking store as the CLI uses them, the webhooks' endpoints and the
# metrics' exposition.
sk_module(http DEPS util proto mime spool deliver queue track webhook metrics
          PACKAGES OPENSSL LIBEVENT JANSSON SQLITE PUBLIC http.h)
sk_module(daemon DEPS util proto mime tls sasl server dns spool track deliver queue control dkim spf dmarc authres arc bounce
          http metrics webhook
          PACKAGES LIBEVENT INIH PUBLIC daemon.h)

file(WRITE ${PROJECT_BINARY_DIR}/modules.txt "${SK_MODULE_MANIFEST}")
set(SK_MODULE_OBJECTS "")
foreach(m ${SK_MODULES})
  list(APPEND SK_MODULE_OBJECTS $<TARGET_OBJECTS:sk_${m}>)
endforeach()
