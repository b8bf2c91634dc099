"""Which addresses a workflow may reach.

Link-local addresses, where cloud metadata services live (169.254.169.254, fd00:ec2::254),
hand out credentials to anything on the machine that asks; a workflow that can be talked into
requesting them (a URL from a response, a redirect) leaks them. So they are refused unless the
workflow says `network: {allowLinkLocal: true}`. The check is made on every address a host
resolves to, after redirects too; loopback and private ranges stay allowed.
"""

from __future__ import annotations

import ipaddress

BLOCKED_NETWORKS = tuple(
    ipaddress.ip_network(n) for n in ("169.254.0.0/16", "fe80::/10", "fd00:ec2::254/128")
)


class BlockedAddress(OSError):
    """Raised at connection time for an address the policy refuses (never retried)."""


def is_blocked(address: str) -> bool:
    """True for link-local and metadata addresses, including IPv4-mapped IPv6 forms."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0].strip("[]"))
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip in network for network in BLOCKED_NETWORKS)


def refusal(host: str, address: str) -> BlockedAddress:
    shown = host if host == address else f"{host} ({address})"
    return BlockedAddress(
        f"refused to connect to {shown}: a link-local / cloud metadata address; "
        "set network: {allowLinkLocal: true} in the workflow to allow it"
    )
