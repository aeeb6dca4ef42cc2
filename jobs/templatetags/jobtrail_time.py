"""``{{ value|exact_time }}``: a timestamp to the second in UTC, the time from now beside it."""

from datetime import datetime

from django import template
from django.utils.safestring import SafeString

from config.admin import exact_time as _exact_time

register = template.Library()


@register.filter
def exact_time(value: datetime | None) -> SafeString | str:
    return _exact_time(value)
