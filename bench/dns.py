"""A loopback DNS server for the bench (`python -m bench.dns`): bench.test's MX is 127.0.0.1.

The queue runner and `smtptut send` look up the recipient domain's MX as
they would for real mail; this server answers them on 127.0.0.1 (UDP and
TCP, one free port, printed as the first line of standard output), so that
nothing asks the system's resolver.  It serves until SIGTERM, or at most
C{--limit} seconds.
"""

from __future__ import annotations

import argparse
import sys

DOMAIN = "bench.test"
MX_HOST = "mx.bench.test"


def main(argv: list[str] | None = None) -> int:
    """
    Serve bench.test (MX 10 mx.bench.test, A 127.0.0.1) and print
    C{127.0.0.1:PORT}, the C{SMTPTUT_NAMESERVER} value.
    """
    parser = argparse.ArgumentParser(prog="python -m bench.dns", description=__doc__)
    parser.add_argument("--limit", type=float, default=1800.0, help="seconds")
    args = parser.parse_args(argv)

    from twisted.internet import reactor

    from smtptut.testing import a, mx, startDNSServer

    server = startDNSServer(
        reactor,
        DOMAIN,
        {DOMAIN: [mx(10, MX_HOST)], MX_HOST: [a("127.0.0.1")]},
    )
    print(server.nameserver, flush=True)
    reactor.callLater(args.limit, reactor.stop)
    reactor.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
