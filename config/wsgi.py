"""The WSGI application gunicorn serves (``config.wsgi:application``)."""

import os
from typing import Any

import django
from django.core.handlers.wsgi import WSGIHandler, WSGIRequest

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")


class Request(WSGIRequest):
    """Django's request, minus one crash.

    A ``charset`` that Python knows but that is no text encoding (``rot13``, ``base64``) makes
    Django decode the query string with it while it builds the request, before any middleware
    runs, so the client got a 500. Such a charset is dropped here (UTF-8 stays the encoding);
    ``ApiProblemMiddleware`` then answers the API's 415 problem naming it. Likewise a
    Content-Type whose RFC 2231 parameter names an unknown encoding, which Django cannot parse
    at all: the request has no content type, and the API answers 415.
    """

    def _set_content_type_params(self, meta: Any) -> None:
        try:
            super()._set_content_type_params(meta)  # type: ignore[misc]
        except LookupError:  # raised by the query-string decode inside Django's encoding setter
            self._encoding = None
        except ValueError:  # an RFC 2231 parameter in an unknown encoding (charset*=x'y'z)
            self.content_type, self.content_params = "", {}  # unreadable: no type at all
            self._encoding = None


class Handler(WSGIHandler):
    request_class = Request


def get_application() -> Handler:
    django.setup(set_prefix=False)
    return Handler()


application = get_application()
