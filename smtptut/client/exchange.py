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

from smtptut.addresses import AddressError, literalAddress, toALabel

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
    pairs, see L{smtptut.settings.parseNameserver}: nothing is looked up here),
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


def _aLabel(domain: str) -> str:
    """
    The A-label form of C{domain}; a name that has none is a permanent failure.
    """
    try:
        return toALabel(domain)
    except AddressError as e:
        raise ExchangeLookupError(domain, str(e), True) from e


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

    name = _aLabel(domain)
    if not resolver.nameservers:
        raise ExchangeLookupError(
            domain,
            "no DNS server is configured (none in /etc/resolv.conf);"
            " give one with SMTPTUT_NAMESERVER or --nameserver",
            False,
        )
    seen = {name.lower()}
    for _ in range(MAX_CNAME_CHAIN):
        try:
            answer = resolver.resolve(name, dns.rdatatype.MX, search=False)
            break
        except dns.resolver.NoAnswer:
            # A server that does not chase the CNAME itself (twisted.names'
            # authority, for one) answers with the alias alone: follow it.
            target = _cnameTarget(name, resolver)
            if target is not None:
                if target.lower() in seen:
                    raise _cnameLoop(domain, target) from None
                seen.add(target.lower())
                name = target
                continue
            addresses = _addresses(name, resolver)
            if not addresses:
                raise ExchangeLookupError(
                    domain, "no MX record and no address record", True
                ) from None
            return [MailExchange(0, name, addresses, implicit=True)]
        except dns.resolver.NoNameservers as e:
            # A recursive resolver (unbound, dnsmasq) answers SERVFAIL for a
            # name whose CNAMEs go round in a circle: say so rather than
            # "SERVFAIL", if the chain shows it.
            loop = _findCNAMELoop(name, resolver)
            if loop is not None:
                raise _cnameLoop(domain, loop) from e
            raise _lookupError(domain, "MX", e) from e
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


def _findCNAMELoop(name: str, resolver: dns.resolver.Resolver) -> str | None:
    """
    Follow C{name}'s CNAMEs one query at a time; the name where they come
    back to one already seen, or L{None} when they do not.
    """
    seen = {name.lower()}
    for _ in range(MAX_CNAME_CHAIN):
        target = _cnameTarget(name, resolver)
        if target is None:
            return None
        if target.lower() in seen:
            return target
        seen.add(target.lower())
        name = target
    return None


def _cnameLoop(domain: str, name: str) -> ExchangeLookupError:
    # Deferred, as sendmail does ("DNS failure: CNAME loop"): it is a
    # mistake in the domain's DNS that its owner can mend, like a SERVFAIL.
    return ExchangeLookupError(domain, f"CNAME loop at {name}", False)


def _addresses(host: str, resolver: dns.resolver.Resolver) -> tuple[str, ...]:
    """
    The IPv4 then IPv6 addresses of C{host}; empty when it has none.

    A failed lookup of one family (an AAAA query answered SERVFAIL or not
    at all, as broken servers do) does not throw away the other's
    addresses; it is an error only when no address was found.
    """
    found: list[str] = []
    failure: ExchangeLookupError | None = None
    for rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA):
        try:
            answer = resolver.resolve(host, rdtype, search=False)
        except (dns.resolver.NoAnswer, dns.resolver.NXDOMAIN):
            continue
        except dns.exception.DNSException as e:
            failure = failure or _lookupError(host, rdtype.name, e)
            continue
        found.extend(rr.address for rr in answer)
    if not found and failure is not None:
        raise failure
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


def relayExchange(
    relay: tuple[str, int], resolver: dns.resolver.Resolver | None = None
) -> MailExchange:
    """
    Blocking: the smarthost of C{SMTPTUT_RELAY} as the only exchange.  Its
    name is not looked up for MX records; its A and AAAA records are, with
    C{resolver} (the one of C{SMTPTUT_NAMESERVER}, never the system's
    C{getaddrinfo}), unless it is an address or C{localhost}.

    A relay that cannot be found defers the mail, as Postfix does for its
    C{relayhost}: the mistake is in the sender's settings, not the mail.
    """
    host, port = relay
    literal = literalAddress(host) or _ipAddress(host)
    if literal is not None:
        return MailExchange(0, literal, (literal,), implicit=True, port=port)
    if host.rstrip(".").lower() == "localhost":
        return MailExchange(0, host, ("127.0.0.1", "::1"), implicit=True, port=port)
    if resolver is None or not resolver.nameservers:
        raise ExchangeLookupError(
            host,
            "no DNS server is configured (none in /etc/resolv.conf);"
            " give one with SMTPTUT_NAMESERVER or --nameserver",
            False,
        )
    name = _aLabel(host)
    try:
        addresses = _addresses(name, resolver)
    except ExchangeLookupError as e:
        raise ExchangeLookupError(host, e.reason, False) from e
    if not addresses:
        raise ExchangeLookupError(host, "the relay has no address record", False)
    return MailExchange(0, host, addresses, implicit=True, port=port)


def _ipAddress(host: str) -> str | None:
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return None


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
    exchange, whatever the domain; its name is looked up with C{resolver} too.

    dnspython blocks, so the lookup runs in the reactor's thread pool; the
    resolver's lifetime bounds how long it can take.
    """
    if relay is not None:
        host = relay[0]
        if literalAddress(host) or _ipAddress(host):
            return succeed([relayExchange(relay)])
        return deferToThreadPool(
            reactor,
            reactor.getThreadPool(),
            lambda: [relayExchange(relay, resolver)],
        )
    return deferToThreadPool(
        reactor,
        reactor.getThreadPool(),
        lookupExchanges,
        domain,
        resolver,
    )
