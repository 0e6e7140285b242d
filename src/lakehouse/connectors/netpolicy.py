"""Where connection code may reach: an admin-set allow-list of networks and host names (egress), and
the folders a SQLite source may live in.

Both checks run before any socket or file is opened. A host name is resolved once, every address it
resolves to must be allowed, and the caller connects to one of those checked addresses (never
resolving the name again), so a name cannot pass the check and then point elsewhere. An allow-list
entry that is a host name (``hooks.example.com``, ``*.example.com``) trusts that name whatever it
resolves to: the admin vouched for the name, not for its addresses.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from lakehouse.connectors.errors import SourceError

_NAME_RE = re.compile(r"^(\*\.)?[a-z0-9_]([a-z0-9_-]{0,62})(\.[a-z0-9_]([a-z0-9_-]{0,62}))*\.?$")

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class EgressDenied(SourceError):
    """The target is outside the egress allow-list, or cannot be resolved: nothing was sent to it."""


class PathDenied(SourceError):
    """The file is outside the folders a SQLite source may use: it was not opened."""


@dataclass(frozen=True)
class Target:
    """A checked destination: connect to ``address`` (or another of ``addresses``), name it ``host``."""

    host: str
    port: int
    addresses: tuple[str, ...]

    @property
    def address(self) -> str:
        return self.addresses[0]


def _ip(text: str) -> IPAddress | None:
    try:
        ip = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


@dataclass(frozen=True)
class EgressPolicy:
    """The allow-list: networks (CIDR or single addresses) and host names (exact or ``*.domain``)."""

    networks: tuple[IPNetwork, ...]
    names: tuple[str, ...]

    @classmethod
    def parse(cls, entries: Iterable[str]) -> EgressPolicy:
        networks: list[IPNetwork] = []
        names: list[str] = []
        for raw in entries:
            entry = str(raw).strip().lower()
            if not entry:
                continue
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
                continue
            except ValueError:
                pass
            if not _NAME_RE.match(entry):
                raise EgressDenied(f"egress allow-list entry {raw!r} is neither a network, an address nor a host "
                                   "name (LAKEHOUSE_EGRESS_ALLOW)")
            names.append(entry.rstrip("."))
        return cls(tuple(networks), tuple(names))

    def name_allowed(self, host: str) -> bool:
        h = host.lower().rstrip(".")
        for name in self.names:
            if name.startswith("*."):
                if h.endswith(name[1:]) and len(h) > len(name) - 1:
                    return True
            elif h == name:
                return True
        return False

    def address_allowed(self, address: str) -> bool:
        ip = _ip(address)
        return ip is not None and any(ip.version == net.version and ip in net for net in self.networks)

    def check(self, host: str, port: int) -> Target:
        """Resolve ``host`` and return the checked target; raise :class:`EgressDenied` otherwise.
        Nothing is sent to the host (resolving a name asks the system resolver only)."""
        name = host.strip()
        if name.startswith("[") and name.endswith("]"):
            name = name[1:-1]
        if not name:
            raise EgressDenied("the connection names no host")
        if name.startswith("/"):
            raise EgressDenied(f"{name} is a local socket; only network hosts in the egress allow-list may be used")
        if _ip(name) is None and not _NAME_RE.match(name.lower()):
            raise EgressDenied(f"{name!r} is not a host name or address")
        try:
            infos = socket.getaddrinfo(name, port, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError):
            raise EgressDenied(f"cannot resolve host {name}") from None
        addresses = tuple(dict.fromkeys(str(info[4][0]) for info in infos))
        if not addresses:
            raise EgressDenied(f"cannot resolve host {name}")
        if not self.name_allowed(name) and not all(self.address_allowed(a) for a in addresses):
            raise EgressDenied(f"host {name} is outside the egress allow-list: an admin can add it to "
                               "LAKEHOUSE_EGRESS_ALLOW")
        return Target(name, port, addresses)


def check_sqlite_path(path: str, allowed_dirs: Sequence[Path]) -> Path:
    """The real path of ``path`` (symlinks and ``..`` resolved) if it lies inside one of
    ``allowed_dirs``; raise :class:`PathDenied` otherwise."""
    given = Path(path).expanduser()
    if not given.is_absolute():
        raise PathDenied(f"the SQLite path {path!r} must be absolute")
    real = given.resolve()
    roots = [Path(d).expanduser().resolve() for d in allowed_dirs]
    if not any(real == root or real.is_relative_to(root) for root in roots):
        where = ", ".join(str(r) for r in roots) or "none configured"
        raise PathDenied(f"the SQLite path {path} is outside the folders SQLite sources may use ({where}; "
                         "LAKEHOUSE_SQLITE_SOURCE_DIRS)")
    return real
