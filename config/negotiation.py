"""DRF content negotiation with the common answers worked out once per process.

Nearly every API request sends no ``Accept`` header, ``*/*`` or ``application/json``, and no
``?format=``. For those (a fixed set, so nothing a client sends is kept) the renderer and media
type DRF's ``DefaultContentNegotiation`` chooses are remembered per list of renderer classes;
any other request is negotiated by DRF as before (a 406 included).
"""

from collections.abc import Iterable

from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.renderers import BaseRenderer
from rest_framework.request import Request

COMMON_ACCEPT = frozenset({"*/*", "application/json"})
_ABSENT = "*/*"  # what DRF reads when the header is absent


class CommonContentNegotiation(DefaultContentNegotiation):
    _answers: dict[tuple[str, tuple[type, ...]], tuple[int, str]] = {}

    def select_renderer(
        self,
        request: Request,
        renderers: Iterable[BaseRenderer],
        format_suffix: str | None = None,
    ) -> tuple[BaseRenderer, str]:
        renderers = list(renderers)
        accept = request.META.get("HTTP_ACCEPT", _ABSENT)
        if (
            format_suffix
            or accept not in COMMON_ACCEPT
            or self.settings.URL_FORMAT_OVERRIDE in request.query_params
        ):
            return super().select_renderer(request, renderers, format_suffix)
        key = (accept, tuple(type(renderer) for renderer in renderers))
        answer = self._answers.get(key)
        if answer is None:
            renderer, media_type = super().select_renderer(request, renderers, format_suffix)
            answer = self._answers[key] = (renderers.index(renderer), media_type)
        return renderers[answer[0]], answer[1]
