# The operator's kit: man pages and bash completion made from the built
# program's --help (cmake/helpdoc.py), the systemd unit with the sysusers.d
# and tmpfiles.d files it relies on, the example configuration and the
# documentation. All of it is installed by `make install`; the tests are
# under tests/install/.

option(SK_DOCS "Make man pages and bash completion from smtpkit --help (needs help2man)" ON)
set(SK_SERVICE_USER "smtpkit" CACHE STRING "User the systemd unit runs smtpkit serve as (--user)")
set(SK_STATE_DIR "/var/lib/smtpkit" CACHE PATH "Data directory of the systemd unit (--data-dir)")
# Relative paths are under the install prefix. systemd reads units,
# sysusers.d and tmpfiles.d from /usr/local/lib as well as /usr/lib, so the
# default prefix works; packages for /usr may want /lib on older systems.
set(SK_SYSTEMD_UNITDIR "lib/systemd/system" CACHE STRING "Where the systemd unit is installed")
set(SK_SYSUSERSDIR "lib/sysusers.d" CACHE STRING "Where the sysusers.d file is installed")
set(SK_TMPFILESDIR "lib/tmpfiles.d" CACHE STRING "Where the tmpfiles.d file is installed")
set(SK_BASH_COMPLETIONDIR "${CMAKE_INSTALL_DATADIR}/bash-completion/completions"
    CACHE STRING "Where the bash completion is installed")

set(SK_FULL_BINDIR "${CMAKE_INSTALL_FULL_BINDIR}")
set(SK_CONFDIR "${CMAKE_INSTALL_FULL_SYSCONFDIR}/smtpkit")
foreach(var SK_SYSTEMD_UNITDIR SK_SYSUSERSDIR SK_TMPFILESDIR)
  if(IS_ABSOLUTE "${${var}}")
    set(${var}_FULL "${${var}}")
  else()
    set(${var}_FULL "${CMAKE_INSTALL_PREFIX}/${${var}}")
  endif()
endforeach()

# --- systemd ------------------------------------------------------------------
set(SK_SYSTEMD_DIR ${PROJECT_BINARY_DIR}/systemd)
configure_file(${PROJECT_SOURCE_DIR}/etc/smtpkit.service.in ${SK_SYSTEMD_DIR}/smtpkit.service @ONLY)
configure_file(${PROJECT_SOURCE_DIR}/etc/smtpkit.sysusers.in ${SK_SYSTEMD_DIR}/smtpkit.sysusers
               @ONLY)
configure_file(${PROJECT_SOURCE_DIR}/etc/smtpkit.tmpfiles.in ${SK_SYSTEMD_DIR}/smtpkit.tmpfiles
               @ONLY)
install(FILES ${SK_SYSTEMD_DIR}/smtpkit.service DESTINATION ${SK_SYSTEMD_UNITDIR})
install(FILES ${SK_SYSTEMD_DIR}/smtpkit.sysusers DESTINATION ${SK_SYSUSERSDIR}
        RENAME smtpkit.conf)
install(FILES ${SK_SYSTEMD_DIR}/smtpkit.tmpfiles DESTINATION ${SK_TMPFILESDIR}
        RENAME smtpkit.conf)

# --- configuration and documentation -----------------------------------------
# The configuration the unit reads: installed only where there is none yet,
# so that `make install` never overwrites an operator's settings.
install(CODE "
  set(conf \"\$ENV{DESTDIR}${SK_CONFDIR}/smtpkit.conf\")
  if(EXISTS \"\${conf}\")
    message(STATUS \"Keeping: \${conf}\")
  else()
    # file(INSTALL) puts DESTDIR in front by itself.
    file(INSTALL DESTINATION \"${SK_CONFDIR}\" TYPE FILE
         FILES \"${PROJECT_SOURCE_DIR}/etc/smtpkit.conf\")
  endif()")
install(FILES ${PROJECT_SOURCE_DIR}/etc/smtpkit.conf ${PROJECT_SOURCE_DIR}/etc/smtpkit-rules.conf
        DESTINATION ${CMAKE_INSTALL_DOCDIR}/examples)
file(GLOB SK_DOC_FILES CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/docs/*.md)
install(FILES ${PROJECT_SOURCE_DIR}/README.md ${SK_DOC_FILES} DESTINATION ${CMAKE_INSTALL_DOCDIR})

# --- man pages and bash completion -------------------------------------------
# Both run the program just built (a cross build sets SK_DOCS=OFF).
if(SK_DOCS)
  find_program(SK_HELP2MAN help2man)
  if(NOT SK_HELP2MAN)
    message(FATAL_ERROR "help2man is missing (scripts/deps.sh installs it; or -DSK_DOCS=OFF)")
  endif()
  find_package(Python3 REQUIRED COMPONENTS Interpreter)
  set(SK_HELPDOC ${PROJECT_SOURCE_DIR}/cmake/helpdoc.py)
  set(SK_MAN_DIR ${PROJECT_BINARY_DIR}/man)
  set(SK_COMPLETION ${PROJECT_BINARY_DIR}/bash-completion/smtpkit)
  file(GLOB SK_MAN_INCLUDES CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/man/*.h2m)
  add_custom_command(
    OUTPUT ${SK_MAN_DIR}/pages.txt
    COMMAND ${Python3_EXECUTABLE} ${SK_HELPDOC} man $<TARGET_FILE:smtpkit_cli>
            --version ${PROJECT_VERSION} --includes ${PROJECT_SOURCE_DIR}/man --out ${SK_MAN_DIR}
            --subst DOCDIR=${CMAKE_INSTALL_FULL_DOCDIR} --subst CONFDIR=${SK_CONFDIR}
            --subst UNITDIR=${SK_SYSTEMD_UNITDIR_FULL}
    DEPENDS smtpkit_cli ${SK_HELPDOC} ${SK_MAN_INCLUDES}
    COMMENT "Man pages from smtpkit --help (help2man)"
    VERBATIM)
  add_custom_command(
    OUTPUT ${SK_COMPLETION}
    COMMAND ${CMAKE_COMMAND} -E make_directory ${PROJECT_BINARY_DIR}/bash-completion
    COMMAND ${Python3_EXECUTABLE} ${SK_HELPDOC} completion $<TARGET_FILE:smtpkit_cli>
            --template ${PROJECT_SOURCE_DIR}/etc/bash-completion/smtpkit.in --out ${SK_COMPLETION}
    DEPENDS smtpkit_cli ${SK_HELPDOC} ${PROJECT_SOURCE_DIR}/etc/bash-completion/smtpkit.in
    COMMENT "Bash completion from smtpkit --help"
    VERBATIM)
  add_custom_target(smtpkit_docs ALL DEPENDS ${SK_MAN_DIR}/pages.txt ${SK_COMPLETION})
  # The pages are the commands `smtpkit --help` lists: the set is known once
  # the program runs, so the whole folder is installed.
  install(DIRECTORY ${SK_MAN_DIR}/ DESTINATION ${CMAKE_INSTALL_MANDIR}/man1
          FILES_MATCHING PATTERN "*.1")
  install(FILES ${SK_COMPLETION} DESTINATION ${SK_BASH_COMPLETIONDIR})
endif()

# --- tests ------------------------------------------------------------------
if(SK_TESTS)
  file(GLOB SK_INSTALL_TESTS CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/tests/install/test_*.py)
  foreach(script ${SK_INSTALL_TESTS})
    get_filename_component(name ${script} NAME_WE)
    add_test(NAME install/${name} COMMAND /usr/bin/python3 ${script})
    # One at a time: each install writes the build's install_manifest.txt.
    set_tests_properties(install/${name} PROPERTIES LABELS install TIMEOUT 300 RESOURCE_LOCK sk_install
      SKIP_RETURN_CODE 77
      ENVIRONMENT "SMTPKIT=$<TARGET_FILE:smtpkit_cli>;SK_SOURCE_DIR=${PROJECT_SOURCE_DIR};SK_BUILD_DIR=${PROJECT_BINARY_DIR};CMAKE_COMMAND=${CMAKE_COMMAND};SK_INSTALL_PREFIX=${CMAKE_INSTALL_PREFIX};SK_DOCS=$<BOOL:${SK_DOCS}>;PYTHONDONTWRITEBYTECODE=1;SK_CC=${CMAKE_C_COMPILER}")
    # A program built against the install links as the library was built
    # (the sanitizer runtime in `make asan`).
    get_directory_property(sk_link_options DIRECTORY ${PROJECT_SOURCE_DIR} LINK_OPTIONS)
    list(JOIN sk_link_options " " sk_link_options)
    set_property(TEST install/${name} APPEND PROPERTY ENVIRONMENT "SK_LINK_OPTIONS=${sk_link_options}")
  endforeach()
endif()
