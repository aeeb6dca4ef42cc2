"""Refuse webhook targets that point into our own network (SSRF guard).

Checked at registration and again at send time against the addresses the host resolves to; the
sender then connects to the checked address (no second lookup an attacker could rebind).
"""

import ipaddress
import re
import socket
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import URLValidator

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

METADATA_ADDRESSES = {
    ipaddress.ip_address("169.254.169.254"),  # AWS, GCP, Azure, OpenStack
    ipaddress.ip_address("169.254.170.2"),  # AWS ECS task metadata
    ipaddress.ip_address("100.100.100.200"),  # Alibaba Cloud
    ipaddress.ip_address("fd00:ec2::254"),  # AWS IPv6
    ipaddress.ip_address("168.63.129.16"),  # Azure's platform (wire server, DNS, health probes)
}


class UnsafeTarget(ValueError):
    """The URL may not be used as a webhook target; the message says why."""


@dataclass(frozen=True)
class Target:
    scheme: str
    host: str
    port: int
    path: str
    addresses: list[str]


def private_targets_allowed() -> bool:
    return bool(settings.JOBTRAIL_WEBHOOK_ALLOW_PRIVATE_TARGETS)


def forbidden_reason(address: IPAddress) -> str | None:
    if isinstance(address, ipaddress.IPv6Address):
        # IPv4 addresses carried inside IPv6 (mapped, 6to4, Teredo) are judged as IPv4
        embedded = [address.ipv4_mapped, address.sixtofour, *(address.teredo or ())]
        for inner in embedded:
            if inner is not None:
                reason = forbidden_reason(inner)
                if reason:
                    return reason
    if address in METADATA_ADDRESSES:
        return "a cloud metadata address"
    checks = [
        ("loopback", address.is_loopback),
        ("link-local", address.is_link_local),
        ("private", address.is_private),
        # deprecated IPv6 site-local (fec0::/10): Python marks it neither private nor non-global
        ("site-local", isinstance(address, ipaddress.IPv6Address) and address.is_site_local),
        ("multicast", address.is_multicast),
        ("reserved", address.is_reserved),
        ("unspecified", address.is_unspecified),
        ("shared (carrier-grade NAT)", address in ipaddress.ip_network("100.64.0.0/10")),
    ]
    for name, hit in checks:
        if hit:
            return f"a {name} address"
    if not address.is_global:
        return "not a public address"
    return None


# Lookups for registrations (API requests, admin forms) run here, so one that hangs (a slow or
# dead DNS server) costs the request JOBTRAIL_WEBHOOK_DNS_TIMEOUT at most, and at most this
# many threads wait on such lookups. The sender bounds its own lookups by its attempt deadline
# (webhooks.sending), apart from these.
_resolver = ThreadPoolExecutor(max_workers=8, thread_name_prefix="webhook-dns")


def resolve(host: str, port: int, *, timeout: float | None = None) -> list[str]:
    """The addresses of ``host``; with a ``timeout``, a slower lookup is refused."""
    if timeout is None:
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError) as exc:
            raise UnsafeTarget(not_public(host)) from exc
        return list(dict.fromkeys(str(info[4][0]) for info in infos))
    lookup = _resolver.submit(socket.getaddrinfo, host, port, type=socket.SOCK_STREAM)
    try:
        infos = lookup.result(timeout=timeout)
    except FutureTimeout as exc:
        lookup.cancel()  # still queued behind hung lookups: never runs
        raise UnsafeTarget(
            f"The host '{host}' did not resolve within {timeout:g} s; try again later."
        ) from exc
    except (socket.gaierror, UnicodeError) as exc:
        raise UnsafeTarget(not_public(host)) from exc
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def not_public(host: str) -> str:
    """Why a host name is refused, whether it does not resolve or resolves into a private
    network: one message, naming no address, so a client cannot map our internal names (which
    exist, what they resolve to) through registrations or its delivery log."""
    if private_targets_allowed():  # a local run: nothing to hide, say what happened
        return f"The host '{host}' does not resolve."
    return f"The host '{host}' does not resolve to a public address."


def _address(text: str) -> IPAddress:
    """The address ``text`` writes, its IPv6 zone (``%eth0``) left out; ValueError if none."""
    return ipaddress.ip_address(text.split("%")[0])


def _is_address(host: str) -> bool:
    try:
        _address(host)
    except ValueError:
        return False
    return True


# Characters RFC 3986 never allows in a URL (they must be percent-encoded), quotes included:
# a target URL with them could split a header or a log line, or break out of an attribute.
UNSAFE_URL_CHARACTERS = re.compile(r"[\x00-\x20\x7f\"'<>\\^`{|}]")
_url_validator = URLValidator(schemes=["http", "https"])
# Django compiles the validator's regular expression at its first use: compile it on import,
# before the worker forks its pool, instead of in every pool process's first attempt (~0.2 s).
_url_validator("https://example.com/")


def check_url(url: str, *, own_lookup_timeout: bool = True) -> Target:
    """Parse, resolve and check ``url``; raise ``UnsafeTarget`` with a clear reason.

    The one rule of the API and the admin: an absolute http(s) URL (Django's ``URLValidator``)
    without characters a URL may not hold, whose host resolves to public addresses only. The
    lookup takes at most JOBTRAIL_WEBHOOK_DNS_TIMEOUT unless ``own_lookup_timeout`` is off
    (the sender, whose attempt deadline bounds the whole check).
    """
    bad = UNSAFE_URL_CHARACTERS.search(url)
    if bad:
        raise UnsafeTarget(
            f"The URL contains {bad.group()!r}, which a URL may not hold (percent-encode it)."
        )
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UnsafeTarget(f"Not a valid URL: {exc}.") from exc
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise UnsafeTarget("The URL must start with https:// (or http:// in development).")
    if scheme == "http" and not (settings.DEBUG or private_targets_allowed()):
        raise UnsafeTarget("Webhook URLs must use https.")
    if parts.username or parts.password:
        raise UnsafeTarget("Credentials in the URL are not allowed.")
    host = parts.hostname
    if not host:
        raise UnsafeTarget("The URL has no host.")
    port = port or (443 if scheme == "https" else 80)
    timeout = float(settings.JOBTRAIL_WEBHOOK_DNS_TIMEOUT) if own_lookup_timeout else None
    addresses = resolve(host, port, timeout=timeout)
    if not private_targets_allowed():
        for address in addresses:
            reason = forbidden_reason(_address(address))
            if reason:
                if _is_address(host):  # the client wrote the address: say what it is
                    raise UnsafeTarget(f"The address {host} is {reason}.")
                raise UnsafeTarget(not_public(host))
    # Last, so an address in any of the forms the guard knows is refused with its reason.
    try:
        _url_validator(url)
    except ValidationError as exc:
        raise UnsafeTarget("Not a valid URL.") from exc
    path = parts.path or "/"
    if parts.query:
        path = f"{path}?{parts.query}"
    return Target(scheme=scheme, host=host, port=port, path=path, addresses=addresses)
