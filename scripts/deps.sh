#!/bin/sh
# Install every Debian package that SMTPKit's build, tests and benchmarks use.
# Idempotent: when everything is present it prints nothing and exits 0.
set -eu

PKGS="build-essential cmake pkg-config clang clang-format libclang-rt-14-dev \
libssl-dev libevent-dev libc-ares-dev libsqlite3-dev libcrypt-dev libcmocka-dev \
libinih-dev libjansson-dev libpsl-dev publicsuffix libidn2-dev \
python3 python3-aiosmtpd python3-dnslib python3-authres python3-spf python3-yaml swaks libnet-ssleay-perl \
libio-socket-ssl-perl msmtp curl postfix openssl dnsutils valgrind hyperfine \
iproute2 procps help2man groff-base man-db systemd python3-seccomp \
python3-dkim python3-nacl libcurl4-openssl-dev prometheus libpcre2-dev python3-jsonschema wrk sqlite3 \
python3-flufl.bounce m4 libwrap0 \
libdb5.3 libevent-2.1-7 libpam0g libssl3 zlib1g libcrypt1 \
courier-authlib libcourier-unicode4"

missing=""
for p in $PKGS; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed'; then
        missing="$missing $p"
    fi
done
if [ -n "$missing" ]; then

if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO=sudo
    else
        echo "deps.sh: missing packages:$missing (run as root to install)" >&2
        exit 1
    fi
else
    SUDO=
fi

echo "deps.sh: installing:$missing" >&2
# help2man makes the man pages at build time; groff-base and man-db render
# and check them in the tests, as systemd's systemd-analyze does the unit;
# python3-seccomp lets a test run the server under the unit's system call filter.
# libpsl-dev and publicsuffix give DMARC the Public Suffix List (libidn2-dev,
# which libpsl-dev needs anyway, its IDN A-labels); python3-authres is the
# Authentication-Results oracle of the unit tests.
# python3-dkim (dkimpy) and python3-nacl (its Ed25519) are the DKIM and ARC
# interop peer (dkimpy's ARC sealer also uses python3-authres) and the
# benchmark's baseline.
# python3-spf ships the RFC 7208 test suite (rfc7208-tests.yml.gz in its
# documentation) that test_spf_suite.py runs; python3-yaml reads it.
# libcurl4-openssl-dev: the HTTPS fetch of MTA-STS policies (smtpkit check)
# and the webhooks' outbound HTTP (smtpkit serve).
# prometheus: only for promtool, which checks `smtpkit stats --metrics`
# (Debian ships promtool in no smaller package); its service is not started.
# libpcre2-dev: the rules' regular expressions, with match and depth limits.
# python3-jsonschema checks the HTTP API's answers against docs/openapi.yaml
# (test_http_openapi.py); wrk drives bench/http_bench.sh.
# python3-flufl.bounce (Mailman's bounce detectors) ships about a hundred
# real bounces from many MTAs with the addresses its detectors must find:
# test_bounce_flufl.py reads them in place as an outside oracle.
# libdb5.3, libevent-2.1-7, libpam0g, libssl3, zlib1g and libcrypt1 are
# the libraries of the unpacked OpenSMTPD (below).
# courier-authlib and libcourier-unicode4 are the libraries of the
# unpacked Courier below (only libraries: no daemon, no conflict).
# Postfix is installed only for its test tools (smtp-source, smtp-sink) and
# the benchmark: no system mail service is configured or started.
echo "postfix postfix/main_mailer_type select No configuration" | $SUDO debconf-set-selections
policy_rc=/usr/sbin/policy-rc.d
created_policy=0
if [ ! -e "$policy_rc" ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy_rc" >/dev/null
    $SUDO chmod 755 "$policy_rc"
    created_policy=1
fi
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null
if [ "$created_policy" = 1 ]; then
    $SUDO rm -f "$policy_rc"
fi
fi

# Exim cannot be installed beside Postfix (each is the machine's MTA), so its
# Debian package is fetched and unpacked without installing it: the tests
# run that binary with a configuration of their own (test_bounce_exim.py)
# to make real Exim bounces. It runs as the Debian-exim user it is built
# for, created here as the package's installation would. Needs the mirror,
# so it is done here (as root) and not in the tests; idempotent.
MTA_CACHE=/var/cache/smtpkit-test/mta
if [ "$(id -u)" -eq 0 ] && [ ! -x "$MTA_CACHE/exim/usr/sbin/exim4" ]; then
    mkdir -p "$MTA_CACHE/debs"
    (cd "$MTA_CACHE/debs" && apt-get download -q exim4-daemon-light exim4-base >/dev/null 2>&1)
    for deb in "$MTA_CACHE"/debs/exim4-daemon-light_*.deb "$MTA_CACHE"/debs/exim4-base_*.deb; do
        dpkg-deb -x "$deb" "$MTA_CACHE/exim"
    done
fi
if [ "$(id -u)" -eq 0 ] && ! getent passwd Debian-exim >/dev/null; then
    adduser --system --group --quiet --allow-bad-names --no-create-home \
        --home "$MTA_CACHE/exim" Debian-exim
fi
# Sendmail, the same way (it too would replace Postfix): sendmail-bin's
# binary and sendmail-cf's m4 macros, from which test_bounce_sendmail.py
# makes its own configuration (m4 above; libwrap0 is the binary's library).
if [ "$(id -u)" -eq 0 ] && [ ! -x "$MTA_CACHE/sendmail/usr/libexec/sendmail/sendmail" ]; then
    mkdir -p "$MTA_CACHE/debs"
    (cd "$MTA_CACHE/debs" && apt-get download -q sendmail-bin sendmail-cf >/dev/null 2>&1)
    for deb in "$MTA_CACHE"/debs/sendmail-bin_*.deb "$MTA_CACHE"/debs/sendmail-cf_*.deb; do
        dpkg-deb -x "$deb" "$MTA_CACHE/sendmail"
    done
fi
# OpenSMTPD, the same way (it too would replace Postfix):
# test_bounce_opensmtpd.py runs the unpacked smtpd in a mount namespace of
# its own, with private directories bound over /var/spool, /var/lib and
# /run, where the paths built into it are (the spool /var/spool/smtpd, the
# chroot /var/lib/opensmtpd/empty, the control socket /run/smtpd.sock).
# Its libraries (libdb5.3 ... libcrypt1 in PKGS) do not conflict with
# Postfix. Debian builds it to run as the opensmtpd and
# opensmtpq users (upstream's _smtpd and _smtpq), created here as the
# package's installation would.
if [ "$(id -u)" -eq 0 ] && [ ! -x "$MTA_CACHE/opensmtpd/usr/sbin/smtpd" ]; then
    mkdir -p "$MTA_CACHE/debs"
    (cd "$MTA_CACHE/debs" && apt-get download -q opensmtpd >/dev/null 2>&1)
    for deb in "$MTA_CACHE"/debs/opensmtpd_*.deb; do
        dpkg-deb -x "$deb" "$MTA_CACHE/opensmtpd"
    done
fi
if [ "$(id -u)" -eq 0 ]; then
    for u in opensmtpd opensmtpq; do
        if ! getent passwd "$u" >/dev/null; then
            getent group "$u" >/dev/null || addgroup --system --quiet "$u"
            adduser --system --quiet --no-create-home --disabled-password \
                --home /var/lib/opensmtpd/empty --ingroup "$u" "$u"
        fi
    done
fi
# Courier, the same way (courier-mta conflicts with every other mail
# transport agent): courier-base's and courier-mta's programs, which
# test_bounce_courier.py runs in a mount namespace of its own where
# overlays put the unpacked tree at the paths Courier is built for
# (/usr/lib/courier, /etc/courier, /var/lib/courier). Its libraries are
# installed above; its queue and modules run as the courier user, created
# here as courier-base's installation would.
if [ "$(id -u)" -eq 0 ] && [ ! -x "$MTA_CACHE/courier/usr/lib/courier/courier/courierd" ]; then
    mkdir -p "$MTA_CACHE/debs"
    (cd "$MTA_CACHE/debs" && apt-get download -q courier-base courier-mta >/dev/null 2>&1)
    for deb in "$MTA_CACHE"/debs/courier-base_*.deb "$MTA_CACHE"/debs/courier-mta_*.deb; do
        dpkg-deb -x "$deb" "$MTA_CACHE/courier"
    done
fi
if [ "$(id -u)" -eq 0 ] && ! getent passwd courier >/dev/null; then
    adduser --system --group --quiet --no-create-home --home /var/lib/courier courier
fi
