"""A staff user's display time zone: every console timestamp is shown in it (UTC by default)."""

import zoneinfo
from functools import cache
from typing import Any

from .models import StaffTimeZone

DEFAULT = "UTC"


class UnknownTimeZone(ValueError):
    """Not an IANA time zone name this system knows."""


@cache
def time_zone_names() -> tuple[str, ...]:
    """Every IANA zone name available here, sorted (the choices of the console's form)."""
    return tuple(sorted(zoneinfo.available_timezones() | {DEFAULT}))


def zone(name: str) -> zoneinfo.ZoneInfo:
    """The zone called ``name``; ``UnknownTimeZone`` for anything else (paths, typos)."""
    if name not in time_zone_names():
        raise UnknownTimeZone(f"Unknown time zone: {name!r} (an IANA name such as Europe/Paris).")
    return zoneinfo.ZoneInfo(name)


def staff_time_zone(*, user_id: Any) -> str:
    """The zone name the user chose, or ``DEFAULT`` (one primary-key lookup)."""
    name = StaffTimeZone.objects.filter(user_id=user_id).values_list("time_zone", flat=True).first()
    return name or DEFAULT


def staff_time_zone_set(*, user_id: Any, name: str) -> str:
    """Remember ``name`` as the user's zone (validated: ``UnknownTimeZone``); the name kept."""
    zone(name)
    StaffTimeZone.objects.update_or_create(user_id=user_id, defaults={"time_zone": name})
    return name
