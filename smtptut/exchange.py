"""Find the mail exchanges for a domain with dnspython (RFC 5321 §5.1, RFC 7505)."""

from __future__ import annotations

import ipaddress
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import dns.exception
import dns.name
import dns.nameserver
import dns.rdatatype
import dns.resolver
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorThreads
from twisted.internet.threads import deferToThreadPool

from smtptut.config import literalAddress

#: How long one whole lookup (all retries, all servers) may take, in seconds.
DEFAULT_LIFETIME = 10.0

#: How many CNAMEs in a row are followed before giving up.
MAX_CNAME_CHAIN = 8


@dataclass(frozen=True)
class MailExchange:
    """
    One host that takes mail for a domain, with the addresses to try in turn.
    """

    preference: int
    host: str
    addresses: tuple[str, ...]
    implicit: bool = False
    port: int | None = None

    def __str__(self) -> str:
        return self.host


class ExchangeLookupError(Exception):
    """
    The exchanges of a domain could not be found.

    @ivar permanent: C{True} when retrying cannot help (NXDOMAIN, null MX, no
        address at all); C{False} for SERVFAIL, timeouts and the like.
    """

    def __init__(self, domain: str, reason: str, permanent: bool) -> None:
        super().__init__(domain, reason, permanent)
        self.domain = domain
        self.reason = reason
        self.permanent = permanent

    def __str__(self) -> str:
        return f"{self.domain}: {self.reason}"


def makeResolver(
    nameservers: Sequence[tuple[str, int]] = (),
    lifetime: float = DEFAULT_LIFETIME,
    resolvConf: str = "/etc/resolv.conf",
) -> dns.resolver.Resolver:
    """
    A dnspython resolver that asks C{nameservers} (C{(IP address, port)}
    pairs, see L{smtptut.config.parseNameserver}: nothing is looked up here),
    or the system's configured servers when none are given.

    @raise ValueError: a nameserver is not an IP address.
    """
    if nameservers:
        resolver = dns.resolver.Resolver(configure=False)
        resolver.nameservers = [
            dns.nameserver.Do53Nameserver(str(ipaddress.ip_address(host)), port)
            for host, port in nameservers
        ]
    else:
        resolver = dns.resolver.Resolver(configure=False)
        try:
            resolver.read_resolv_conf(resolvConf)
        except dns.resolver.NoResolverConfiguration:
            # Mail to localhost and address literals needs no DNS; anything
            # else is deferred with a line saying so (see lookupExchanges).
            resolver.nameservers = []
    resolver.lifetime = lifetime
    resolver.timeout = min(resolver.timeout, lifetime)
    return resolver


def toALabel(domain: str) -> str:
    """
    The ASCII (A-label) form of a domain, without the trailing dot.
    """
    try:
        return dns.name.from_text(domain).to_text(omit_final_dot=True)
    except (dns.exception.DNSException, UnicodeError) as e:
        raise ExchangeLookupError(domain, f"not a valid domain name ({e})", True) from e


def lookupExchanges(
    domain: str,
    resolver: dns.resolver.Resolver,
    shuffle: Callable[[list[MailExchange]], None] = random.shuffle,
) -> list[MailExchange]:
    """
    Blocking: the exchanges of C{domain} in the order to try them.

    MX records by preference, equal preferences in random order; a domain
    without MX records is its own exchange (implicit MX); C{localhost} and
    address literals need no DNS at all.
    """
    literal = literalAddress(domain)
    if literal is not None:
        return [MailExchange(0, literal, (literal,), implicit=True)]
    if domain.rstrip(".").lower() == "localhost":
        return [MailExchange(0, "localhost", ("127.0.0.1", "::1"), implicit=True)]

    name = toALabel(domain)
    if not resolver.nameservers:
        raise ExchangeLookupError(
            domain,
            "no DNS server is configured (none in /etc/resolv.conf);"
            " give one with SMTPTUT_NAMESERVER or --nameserver",
            False,
        )
    for _ in range(MAX_CNAME_CHAIN):
        try:
            answer = resolver.resolve(name, dns.rdatatype.MX, search=False)
            break
        except dns.resolver.NoAnswer:
            # A server that does not chase the CNAME itself (twisted.names'
            # authority, for one) answers with the alias alone: follow it.
            target = _cnameTarget(name, resolver)
            if target is not None:
                name = target
                continue
            addresses = _addresses(name, resolver)
            if not addresses:
                raise ExchangeLookupError(
                    domain, "no MX record and no address record", True
                ) from None
            return [MailExchange(0, name, addresses, implicit=True)]
        except dns.exception.DNSException as e:
            raise _lookupError(domain, "MX", e) from e
    else:
        raise ExchangeLookupError(domain, "CNAME chain too long", True)

    records = sorted(answer, key=lambda mx: mx.preference)
    if any(mx.exchange == dns.name.root for mx in records):
        # RFC 7505: a null MX says the domain accepts no mail at all.
        raise ExchangeLookupError(
            domain, "the domain accepts no mail (null MX, RFC 7505)", True
        )

    exchanges: list[MailExchange] = []
    lastError: Exception | None = None
    for preference in sorted({mx.preference for mx in records}):
        group = []
        for mx in records:
            if mx.preference != preference:
                continue
            host = mx.exchange.to_text(omit_final_dot=True)
            try:
                addresses = _addresses(host, resolver)
            except ExchangeLookupError as e:
                lastError = e
                continue
            if addresses:
                group.append(MailExchange(preference, host, addresses))
        shuffle(group)
        exchanges.extend(group)
    if not exchanges:
        if isinstance(lastError, ExchangeLookupError) and not lastError.permanent:
            raise ExchangeLookupError(domain, lastError.reason, False)
        raise ExchangeLookupError(domain, "no exchange has an address", True)
    return exchanges


def _cnameTarget(name: str, resolver: dns.resolver.Resolver) -> str | None:
    try:
        answer = resolver.resolve(name, dns.rdatatype.CNAME, search=False)
    except dns.exception.DNSException:
        return None
    return str(answer[0].target.to_text(omit_final_dot=True))


def _addresses(host: str, resolver: dns.resolver.Resolver) -> tuple[str, ...]:
    """
    The IPv4 then IPv6 addresses of C{host}; empty when it has none.
    """
    found: list[str] = []
    for rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA):
        try:
            answer = resolver.resolve(host, rdtype, search=False)
        except (dns.resolver.NoAnswer, dns.resolver.NXDOMAIN):
            continue
        except dns.exception.DNSException as e:
            raise _lookupError(host, rdtype.name, e) from e
        found.extend(rr.address for rr in answer)
    return tuple(found)


def _lookupError(domain: str, what: str, e: Exception) -> ExchangeLookupError:
    if isinstance(e, dns.resolver.NXDOMAIN):
        return ExchangeLookupError(domain, "the domain does not exist (NXDOMAIN)", True)
    if isinstance(e, dns.exception.Timeout):
        return ExchangeLookupError(domain, f"DNS timeout looking up {what}", False)
    if isinstance(e, dns.resolver.NoNameservers):
        return ExchangeLookupError(
            domain, f"DNS server failure looking up {what} (SERVFAIL)", False
        )
    if isinstance(e, dns.resolver.NoResolverConfiguration):
        return ExchangeLookupError(domain, "no DNS server is configured", False)
    return ExchangeLookupError(domain, f"DNS error looking up {what}: {e}", False)


def relayExchange(relay: tuple[str, int]) -> MailExchange:
    """
    The smarthost of C{SMTPTUT_RELAY} as the only exchange; its name is
    resolved when connecting, not looked up for MX records.
    """
    host, port = relay
    literal = literalAddress(host) or host
    return MailExchange(0, literal, (literal,), implicit=True, port=port)


def getMailExchange(
    reactor: IReactorThreads,
    domain: str,
    resolver: dns.resolver.Resolver,
    relay: tuple[str, int] | None = None,
) -> Deferred[list[MailExchange]]:
    """
    The tutorial's C{getMailExchange}: a L{Deferred} that fires with the
    exchanges of C{domain} in the order to try them, or fails with
    L{ExchangeLookupError}.  With a C{relay} (host, port), that is the only
    exchange, whatever the domain.

    dnspython blocks, so the lookup runs in the reactor's thread pool; the
    resolver's lifetime bounds how long it can take.
    """
    if relay is not None:
        return succeed([relayExchange(relay)])
    return deferToThreadPool(
        reactor,
        reactor.getThreadPool(),
        lookupExchanges,
        domain,
        resolver,
    )
