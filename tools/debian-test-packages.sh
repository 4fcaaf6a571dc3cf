#!/bin/sh
# Install the Debian packages the tests need, when missing (needs root and apt).
# One list for everyone: add a package here, not a step of its own.
#   libmail-dkim-perl  Mail::DKIM verifies smtptut's DKIM signatures (tests/test_dkim.py)
#   libnet-dns-perl    Net::DNS, which Mail::DKIM resolves with (pointed at the tests' DNS)
#   (Debian 12's Mail::DKIM 1.20230212 has no ed25519-sha256: that one is checked with dkimpy)
set -eu

PACKAGES="libmail-dkim-perl libnet-dns-perl"

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
# shellcheck disable=SC2086
apt-get $wait install -y -qq --no-install-recommends $missing >/dev/null
