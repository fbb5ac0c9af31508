"""The host a request names: Host syntax and the allowed-hosts rule (issue 13). No I/O.

A browser sends the `Host` the page's URL named, and after DNS rebinding an attacker's
page at ``http://evil.example:8000`` talks to a server on 127.0.0.1 with
``Host: evil.example:8000``: the name is the only sign the request was not meant for us.
So a server checks it against the names it serves. The loopback names are always
served: no page can make a browser send them for another site. `WSAPP_ALLOWED_HOSTS`
adds names; left empty, a loopback (or Unix socket) listener serves nothing else, any
other listener serves every Host.

Syntax: RFC 9110 7.2 ``Host = uri-host [ ":" port ]`` with RFC 3986 3.2.2 ``uri-host =
IP-literal / IPv4address / reg-name``. Werkzeug's `host_is_trusted` is stricter than the
RFC in one place (no ``_``, used by container service names) and looser in another
(``[:::]`` passes), and ignores ports, so the grammar is written out here.

Patterns (`WSAPP_ALLOWED_HOSTS`, comma separated): ``name`` (any port), ``name:port``,
``.name`` (the name and every subdomain), ``[v6]`` / ``[v6]:port``, ``*`` (any host).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

__all__ = [
    "LOOPBACK_NAMES",
    "HostError",
    "HostPattern",
    "allowed",
    "effective_patterns",
    "is_local_listener",
    "parse_host",
    "parse_patterns",
]

#: Names always served, with any port (a local proxy in front listens on its own): a
#: rebinding page cannot send these, its URL names its own host.
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "[::1]")

# RFC 3986 3.2.2: reg-name = *( unreserved / pct-encoded / sub-delims ) (empty refused here)
_REG_NAME = re.compile(r"(?:[A-Za-z0-9\-._~!$&'()*+,;=]|%[0-9A-Fa-f]{2})+")
# RFC 3986 3.2.2: IPvFuture = "v" 1*HEXDIG "." 1*( unreserved / sub-delims / ":" )
_IPV_FUTURE = re.compile(r"[vV][0-9A-Fa-f]+\.[A-Za-z0-9\-._~!$&'()*+,;=:]+")
_PORT = re.compile(r"[0-9]{1,5}")


class HostError(ValueError):
    """A Host value (or an allowed-hosts pattern) that is not ``host[:port]``."""


def parse_host(value: str) -> tuple[str, int | None]:
    """``(host, port)`` of a Host value; raises HostError if it is not RFC 9110 syntax.

    The host comes back lower-cased, without a trailing dot (``localhost.`` is
    ``localhost``), IPv6 literals in brackets and compressed (``[0::1]`` is ``[::1]``);
    the port is None when absent or empty (``host:`` is valid syntax)."""
    if value.startswith("["):
        end = value.find("]")
        if end < 0:
            raise HostError("unclosed IPv6 literal")
        literal, rest = value[1:end], value[end + 1 :]
        if _IPV_FUTURE.fullmatch(literal):
            host = f"[{literal.lower()}]"
        else:
            if "%" in literal:  # zone ids are not part of a URI's host (RFC 9110 4.2.1)
                raise HostError("IPv6 zone id in Host")
            try:
                host = f"[{ipaddress.IPv6Address(literal).compressed}]"
            except ValueError:
                raise HostError("malformed IPv6 literal") from None
        if rest and rest[0] != ":":
            raise HostError("text after the IPv6 literal")
        port_text = rest[1:]
    else:
        host, colon, port_text = value.rpartition(":")
        if not colon:
            host, port_text = value, ""
        if not _REG_NAME.fullmatch(host):
            raise HostError("malformed host name")
        host = host.lower()
        if len(host) > 1 and host.endswith("."):
            host = host[:-1]
    if not port_text:
        return host, None
    if not _PORT.fullmatch(port_text) or int(port_text) > 65535:
        raise HostError("malformed port")
    return host, int(port_text)


@dataclass(frozen=True)
class HostPattern:
    """One allowed-hosts entry: `host` (no port: any port), or every host for ``*``."""

    host: str
    port: int | None = None
    subdomains: bool = False
    any_host: bool = False

    def matches(self, host: str, port: int | None) -> bool:
        if self.any_host:
            return True
        if self.port is not None and port != self.port:
            return False
        return host == self.host or (self.subdomains and host.endswith("." + self.host))

    @classmethod
    def parse(cls, text: str) -> HostPattern:
        text = text.strip()
        if text == "*":
            return cls("", any_host=True)
        subdomains = text.startswith(".")
        host, port = parse_host(text[1:] if subdomains else text)
        return cls(host, port, subdomains)


def parse_patterns(items: tuple[str, ...]) -> tuple[HostPattern, ...]:
    """The patterns of a `WSAPP_ALLOWED_HOSTS` list; raises HostError naming a bad one."""
    patterns = []
    for item in items:
        try:
            patterns.append(HostPattern.parse(item))
        except HostError as exc:
            raise HostError(f"{item!r} is not host[:port], .domain or '*' ({exc})") from None
    return tuple(patterns)


def _listener_ip(address: Any) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    if not isinstance(address, tuple) or not address:
        return None
    try:
        ip = ipaddress.ip_address(str(address[0]).split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def is_local_listener(address: Any) -> bool:
    """True for a listening address only this machine reaches: a loopback IP, or a Unix
    socket (a path: only a local proxy connects). ``0.0.0.0`` and ``::`` are not."""
    if isinstance(address, (str, bytes)):
        return True
    ip = _listener_ip(address)
    return ip is not None and ip.is_loopback


def _loopback_patterns(address: Any) -> list[HostPattern]:
    names = list(LOOPBACK_NAMES)
    ip = _listener_ip(address)
    if ip is not None and ip.is_loopback:  # bound to 127.0.0.2: that name too
        names.append(f"[{ip.compressed}]" if ip.version == 6 else ip.compressed)
    return list(parse_patterns(tuple(dict.fromkeys(names))))


@lru_cache(maxsize=64)
def effective_patterns(configured: tuple[str, ...], address: Any) -> tuple[HostPattern, ...]:
    """The hosts served on the listener at `address`: the loopback names (and the loopback
    address it is bound to), then `configured` (`WSAPP_ALLOWED_HOSTS`); with nothing
    configured, any host on a listener others can reach (the start-up warning of
    `admission.public_bind_warning` says so)."""
    patterns = _loopback_patterns(address)
    if configured:
        patterns += parse_patterns(configured)
    elif not is_local_listener(address):
        patterns = [HostPattern("", any_host=True)]
    return tuple(patterns)


def allowed(host: str, port: int | None, configured: tuple[str, ...], listener: Any) -> bool:
    """Whether the parsed `host` / `port` may be served (`effective_patterns`)."""
    return any(p.matches(host, port) for p in effective_patterns(configured, listener))
