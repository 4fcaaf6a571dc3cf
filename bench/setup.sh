#!/usr/bin/env bash
# Install what `make bench` needs, idempotently: Postfix's smtp-source and
# smtp-sink (the package only; its daemon is never configured or started),
# taskset (util-linux), timeout (coreutils) and GNU time (peak RSS of a command).  aiosmtpd and aiosmtplib come
# from the project's dev extras, installed in .venv by `make venv`; matplotlib
# (the charts) from its bench extra, installed here.
set -euo pipefail

have_tools() {
    [ -x /usr/sbin/smtp-source ] && [ -x /usr/sbin/smtp-sink ] && [ -x /usr/bin/time ] &&
        command -v taskset >/dev/null && command -v timeout >/dev/null
}

if ! have_tools; then
    if [ "$(id -u)" != 0 ]; then
        echo "bench/setup.sh: run as root to install postfix, or install it yourself" >&2
        exit 1
    fi
    echo "bench/setup.sh: installing postfix (tools only; the daemon is not configured)"
    timeout 300 apt-get update -qq
    # "No configuration": no main.cf, so the package's maintainer scripts start
    # no mail daemon.  policy-rc.d, if present, may refuse the start as well.
    echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
    echo "postfix postfix/mailname string localhost" | debconf-set-selections
    DEBIAN_FRONTEND=noninteractive timeout 300 apt-get install -y -q \
        --no-install-recommends postfix util-linux coreutils time >/dev/null
fi
have_tools || { echo "bench/setup.sh: smtp-source/smtp-sink still missing" >&2; exit 1; }

VENV="${VENV:-.venv}"
if ! "$VENV/bin/python" -c 'import aiosmtpd, aiosmtplib' 2>/dev/null; then
    # Normally present through `make venv` (the project's dev extras).
    timeout 300 "$VENV/bin/python" -m pip install -q aiosmtpd aiosmtplib
fi
# The project's `bench` extra (pyproject.toml): matplotlib for the charts,
# and the profilers; `make venv` and `make test` never need it.
if ! "$VENV/bin/python" -c 'import matplotlib' 2>/dev/null; then
    echo "bench/setup.sh: installing the bench extra into $VENV"
    timeout 600 "$VENV/bin/python" -m pip install -q -e '.[bench]' >"$VENV/pip-bench.log" 2>&1 ||
        { cat "$VENV/pip-bench.log" >&2; exit 1; }
fi
