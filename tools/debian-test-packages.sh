#!/bin/sh
# Install the Debian packages the tests need, when missing (needs root and apt).
# One list for everyone: add a package here, not a step of its own.
#   libmail-dkim-perl  Mail::DKIM verifies smtptut's DKIM signatures (tests/test_dkim.py)
#   libnet-dns-perl    Net::DNS, which Mail::DKIM resolves with (pointed at the tests' DNS)
#   (Debian 12's Mail::DKIM 1.20230212 has no ed25519-sha256: that one is checked with dkimpy)
#   postfix            a real Postfix smtpd receives a signed, queued message (tests/test_postfix.py,
#                      a throwaway instance of the test's own); the system's mail daemon is never
#                      configured or started
set -eu

PACKAGES="libmail-dkim-perl libnet-dns-perl postfix"

missing=""
for package in $PACKAGES; do
    if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $package"
    fi
done
[ -n "$missing" ] || exit 0

if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "debian-test-packages: missing:$missing (install them as root; the tests that need them fail without)" >&2
    exit 0
fi
echo "debian-test-packages: installing$missing" >&2
export DEBIAN_FRONTEND=noninteractive
# Another apt-get (a parallel make) may hold the lock: wait for it.
wait="-o DPkg::Lock::Timeout=600"
# shellcheck disable=SC2086
apt-get $wait update -qq >/dev/null
case " $missing " in
*" postfix "*)
    # postfix conflicts with every other MTA (Debian's exim4 among them):
    # never replace the machine's mail system for a test.
    # shellcheck disable=SC2086
    removed=$(apt-get $wait install -s -qq --no-install-recommends postfix | sed -n 's/^Remv \([^ ]*\).*/\1/p' | tr '\n' ' ')
    if [ -n "$removed" ]; then
        echo "debian-test-packages: not installing postfix: it would remove ${removed}(tests/test_postfix.py fails without it)" >&2
        missing=$(echo " $missing " | sed 's/ postfix / /')
    fi
    # "No configuration": no /etc/postfix/main.cf, so the package's
    # maintainer scripts start no mail daemon (as bench/setup.sh does).
    echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
    echo "postfix postfix/mailname string localhost" | debconf-set-selections
    ;;
esac
[ -n "$(echo "$missing" | tr -d ' ')" ] || exit 0
# shellcheck disable=SC2086
apt-get $wait install -y -qq --no-install-recommends $missing >/dev/null
