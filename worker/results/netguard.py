"""Where a download may connect: the address policy and a requests transport that enforces it.

``AllowList`` decides whether an address may be fetched (only global addresses, unless the host or
network is allowed by ``KIE_DOWNLOAD_ALLOW_HOSTS``).  ``CheckedAdapter`` / ``download_session`` give
requests connections that resolve the host again at connect time, check every address, and connect
only to a checked one (so DNS rebinding between the check and the connection gains nothing).
This relies on urllib3 2.x's connection classes (``_new_conn``, ``_dns_host``).
The download rules themselves (schemes, redirects, size, type) live in ``worker.results.fetching``.
"""

from __future__ import annotations

import dataclasses
import functools
import ipaddress
import re
import socket
from typing import Iterable

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, NameResolutionError, NewConnectionError
from urllib3.util import connection as urllib3_connection

from ..errors import ConfigError

_NAT64 = ipaddress.ip_network("64:ff9b::/96")


class Refused(Exception):
    """A rule refused the download; the text is the reason (no URL, no secret)."""


# --- address policy -------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class AllowList:
    """Hosts (lower-case names) and networks that may be fetched even though they are not global."""

    hosts: frozenset = frozenset()
    networks: frozenset = frozenset()

    @classmethod
    def parse(cls, entries: Iterable[str]) -> "AllowList":
        """Parse ``KIE_DOWNLOAD_ALLOW_HOSTS`` entries: ``127.0.0.1``, ``10.0.0.0/8``, ``::1``, ``kiesim.local``."""
        if isinstance(entries, str):
            entries = entries.split(",")
        hosts, networks = set(), set()
        for raw in entries:
            entry = str(raw).strip()
            if not entry:
                continue
            try:
                networks.add(ipaddress.ip_network(entry.strip("[]"), strict=False))
                continue
            except ValueError:
                pass
            if "/" in entry or not re.match(r"^[A-Za-z0-9_.-]+$", _norm_host(entry)):
                raise ConfigError("KIE_DOWNLOAD_ALLOW_HOSTS",
                                  f"expected host names, IP addresses or CIDRs like 127.0.0.0/8, got {entry!r}")
            hosts.add(_norm_host(entry))
        return cls(frozenset(hosts), frozenset(networks))

    def refusal(self, host: str, address: str) -> str | None:
        """Why ``address`` (one address ``host`` resolved to) may not be fetched, or None if it may."""
        ip = ipaddress.ip_address(address)
        if _norm_host(host) in self.hosts:
            return None
        candidates = [ip, *_embedded_ipv4(ip)]
        if any(c in net for c in candidates for net in self.networks):
            return None
        for c in reversed(candidates):  # an embedded IPv4 address says most about where we would connect
            kind = _non_global_kind(c)
            if kind:
                return (f"address {address} of host {host!r} is {kind}; "
                        f"add it to KIE_DOWNLOAD_ALLOW_HOSTS to permit it")
        return None


def _norm_host(host: str) -> str:
    host = host.strip().strip("[]").rstrip(".").lower()
    try:
        return host.encode("idna").decode("ascii") if not host.isascii() else host
    except UnicodeError:
        return host


def _embedded_ipv4(ip) -> list:
    """IPv4 addresses an IPv6 address carries (mapped ``::ffff:a.b.c.d``, 6to4, NAT64)."""
    if ip.version != 6:
        return []
    found = [v4 for v4 in (ip.ipv4_mapped, ip.sixtofour) if v4 is not None]
    if ip in _NAT64:
        found.append(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
    return found


def _non_global_kind(ip) -> str | None:
    for attr, kind in (("is_unspecified", "unspecified"), ("is_loopback", "loopback"),
                       ("is_link_local", "link-local"), ("is_multicast", "multicast"),
                       ("is_reserved", "reserved"), ("is_private", "private")):
        if getattr(ip, attr):
            return kind
    if not ip.is_global:
        return "not globally routable"
    return None


def _resolve(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to for a TCP connection, in resolver order, without duplicates."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(info[4][0] for info in infos))


def checked_addresses(host: str, port: int, allow: AllowList) -> list[str]:
    """Resolve ``host``; raise ``Refused`` unless every address is allowed; return the addresses."""
    try:
        addresses = _resolve(host, port)
    except (socket.gaierror, UnicodeError) as e:
        raise Refused(f"cannot resolve host {host!r}: {e}") from None
    if not addresses:
        raise Refused(f"host {host!r} has no address")
    for address in addresses:
        reason = allow.refusal(host, address)
        if reason:
            raise Refused(reason)
    return addresses


# --- transport: connections that connect only to checked addresses --------------------------------

class _CheckedConnectionMixin:
    """Resolve, check every address against the allow-list, and connect only to a checked address."""

    def __init__(self, *args, allow_list: AllowList, **kwargs):
        self._allow_list = allow_list
        super().__init__(*args, **kwargs)

    def _new_conn(self) -> socket.socket:
        dns_host = getattr(self, "_dns_host", self.host)
        try:
            addresses = _resolve(dns_host, self.port)
        except socket.gaierror as e:
            raise NameResolutionError(self.host, self, e) from e
        for address in addresses:  # all of them first: refuse if any is not allowed
            reason = self._allow_list.refusal(self.host, address)
            if reason:
                raise Refused(reason)
        last_error: OSError | None = None
        for address in addresses:
            try:
                return urllib3_connection.create_connection(
                    (address, self.port), self.timeout, source_address=self.source_address,
                    socket_options=self.socket_options)
            except socket.timeout as e:
                raise ConnectTimeoutError(self, f"Connection to {self.host} timed out") from e
            except OSError as e:
                last_error = e
        raise NewConnectionError(self, f"Failed to establish a new connection: {last_error}")


class _CheckedHTTPConnection(_CheckedConnectionMixin, HTTPConnection):
    pass


class _CheckedHTTPSConnection(_CheckedConnectionMixin, HTTPSConnection):
    pass


class _CheckedHTTPConnectionPool(HTTPConnectionPool):
    ConnectionCls = _CheckedHTTPConnection


class _CheckedHTTPSConnectionPool(HTTPSConnectionPool):
    ConnectionCls = _CheckedHTTPSConnection


class CheckedAdapter(HTTPAdapter):
    """A requests adapter whose connections enforce ``allow_list`` and never use a proxy."""

    def __init__(self, allow_list: AllowList, **kwargs):
        self.allow_list = allow_list  # before super().__init__, which builds the pool manager
        super().__init__(**kwargs)

    def init_poolmanager(self, *args, **kwargs):
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {
            "http": functools.partial(_CheckedHTTPConnectionPool, allow_list=self.allow_list),
            "https": functools.partial(_CheckedHTTPSConnectionPool, allow_list=self.allow_list),
        }

    def send(self, request, **kwargs):
        kwargs["proxies"] = {}
        return super().send(request, **kwargs)


def download_session(*, allow_hosts: Iterable[str] = ()) -> requests.Session:
    """A session for ``fetch_to_storage(session=...)``: reuses connections across downloads.

    Its adapters enforce ``allow_hosts``; it ignores environment proxies and ``.netrc``.
    """
    session = requests.Session()
    session.trust_env = False
    adapter = CheckedAdapter(AllowList.parse(allow_hosts))
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session
