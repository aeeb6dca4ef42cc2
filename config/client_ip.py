"""The client's address as every throttle and the admin lockout see it.

``X-Forwarded-For`` is written by whoever sends the request, so it is believed only as far as
``JOBTRAIL_TRUSTED_PROXIES`` says: with N proxies in front of the web process (each appending
the address it was connected from), the client is the N-th address from the right. With the
default, 0, the header is ignored and the client is the peer of the TCP connection
(``REMOTE_ADDR``). DRF's throttles (``NUM_PROXIES``), the token endpoints' throttle and
django-axes (``AXES_CLIENT_IP_CALLABLE``) all use this one function, so no header can give one
client a fresh identity.
"""

import ipaddress
from typing import Any

from django.conf import settings


def client_ip(request: Any) -> str:
    """The address of the client of ``request`` (a Django or DRF request)."""
    meta = request.META
    remote = str(meta.get("REMOTE_ADDR") or "")
    trusted = int(getattr(settings, "JOBTRAIL_TRUSTED_PROXIES", 0))
    if trusted <= 0:
        return remote
    forwarded = [part.strip() for part in str(meta.get("HTTP_X_FORWARDED_FOR", "")).split(",")]
    forwarded = [part for part in forwarded if part]
    if len(forwarded) < trusted:
        # The request did not come through every trusted proxy: nothing in the header is
        # vouched for, so the connection's peer is the client.
        return remote
    candidate = forwarded[-trusted]
    try:
        return str(ipaddress.ip_address(candidate))
    except ValueError:
        return remote
