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

# The other MTAs cannot be installed beside Postfix (each would be the
# machine's MTA), so their Debian packages are fetched and unpacked without
# installing them, into $MTA_CACHE/NAME, and the tests run those binaries
# with configurations of their own. They run as the users the packages are
# built for, created here as the packages' installations would. Needs the
# mirror, so it is done here (as root) and not in the tests; idempotent.
# MTA_CACHE may be set to unpack elsewhere (the tests' SK_EXIM_DIR,
# SK_SENDMAIL_DIR, SK_OPENSMTPD_DIR and SK_COURIER_DIR then point there).
MTA_CACHE=${MTA_CACHE:-/var/cache/smtpkit-test/mta}

# unpack_debs NAME CHECK_PATH PACKAGE...: download the packages into
# $MTA_CACHE/debs and unpack them, in that order, into $MTA_CACHE/NAME,
# unless $MTA_CACHE/NAME/CHECK_PATH is already an executable.
unpack_debs() {
    dir=$MTA_CACHE/$1
    check=$2
    shift 2
    if [ -x "$dir/$check" ]; then
        return 0
    fi
    mkdir -p "$MTA_CACHE/debs"
    (cd "$MTA_CACHE/debs" && apt-get download -q "$@" >/dev/null 2>&1)
    for pkg in "$@"; do
        for deb in "$MTA_CACHE"/debs/"$pkg"_*.deb; do
            dpkg-deb -x "$deb" "$dir"
        done
    done
}

# system_user NAME HOME: the system user NAME, in a system group of the
# same name, with HOME as its home (not created), unless it exists.
# --allow-bad-names: Debian's Exim user is Debian-exim.
system_user() {
    if getent passwd "$1" >/dev/null; then
        return 0
    fi
    getent group "$1" >/dev/null || addgroup --system --quiet --allow-bad-names "$1"
    adduser --system --quiet --allow-bad-names --no-create-home --disabled-password \
        --home "$2" --ingroup "$1" "$1"
}

if [ "$(id -u)" -eq 0 ]; then
    # Exim (test_bounce_exim.py): Debian's exim4-daemon-light, as the
    # Debian-exim user.
    unpack_debs exim usr/sbin/exim4 exim4-daemon-light exim4-base
    system_user Debian-exim "$MTA_CACHE/exim"
    # Sendmail: sendmail-bin's binary and sendmail-cf's m4 macros, from
    # which test_bounce_sendmail.py makes its own configuration (m4 above;
    # libwrap0 is the binary's library).
    unpack_debs sendmail usr/libexec/sendmail/sendmail sendmail-bin sendmail-cf
    # OpenSMTPD: test_bounce_opensmtpd.py runs the unpacked smtpd in a mount
    # namespace of its own, with private directories bound over /var/spool,
    # /var/lib and /run, where the paths built into it are (the spool
    # /var/spool/smtpd, the chroot /var/lib/opensmtpd/empty, the control
    # socket /run/smtpd.sock). Its libraries (libdb5.3 ... libcrypt1 in PKGS)
    # do not conflict with Postfix. Debian builds it to run as the opensmtpd
    # and opensmtpq users (upstream's _smtpd and _smtpq).
    unpack_debs opensmtpd usr/sbin/smtpd opensmtpd
    system_user opensmtpd /var/lib/opensmtpd/empty
    system_user opensmtpq /var/lib/opensmtpd/empty
    # Courier (courier-mta conflicts with every other mail transport agent):
    # courier-base's and courier-mta's programs, which test_bounce_courier.py
    # runs in a mount namespace of its own where overlays put the unpacked
    # tree at the paths Courier is built for (/usr/lib/courier, /etc/courier,
    # /var/lib/courier). Its libraries are installed above; its queue and
    # modules run as the courier user.
    unpack_debs courier usr/lib/courier/courier/courierd courier-base courier-mta
    system_user courier /var/lib/courier
fi
