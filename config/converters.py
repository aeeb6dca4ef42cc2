"""URL path converters.

``uuid_ci``: a UUID in either letter case. Django's ``uuid`` converter matches lower case only,
so a client that writes UUIDs in upper case (Swift's ``UUID().uuidString``, .NET's ``"B"``/``"D"``
formats upper-cased, a spreadsheet) got 404 for a job that exists; RFC 9562 §4 has UUIDs
compared case-insensitively. Reversed URLs stay lower case.
"""

import uuid

from django.urls import register_converter

HEX = "[0-9a-fA-F]"


class CaseInsensitiveUUIDConverter:
    regex = f"{HEX}{{8}}-{HEX}{{4}}-{HEX}{{4}}-{HEX}{{4}}-{HEX}{{12}}"

    def to_python(self, value: str) -> uuid.UUID:
        return uuid.UUID(value)

    def to_url(self, value: uuid.UUID | str) -> str:
        return str(uuid.UUID(str(value)))


register_converter(CaseInsensitiveUUIDConverter, "uuid_ci")
