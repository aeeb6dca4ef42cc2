"""The framework ceiling: Django + DRF + simplejwt + PostgreSQL doing one INSERT (POST /insert)
or one SELECT by pk (GET /get/<id>) per request and nothing else. The hot-path figures of
``make bench`` are ratios against it, run with the same gunicorn settings (the Procfile's).

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/ceiling python bench/ceiling.py [ROWS]
        # creates the table, a user and ROWS rows; prints: TOKEN FIRST_ROW_ID
    DATABASE_URL=... gunicorn --pythonpath bench ceiling:application ...   # the Procfile's flags

It is honest on purpose: JWT authentication (the user is read from the database, as simplejwt
does), IsAuthenticated, DRF's JSON parser and renderer, one query, a persistent connection.
"""

import os
import sys
from urllib.parse import urlparse

import django
from django.conf import settings

url = urlparse(os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/ceiling"))
settings.configure(
    DEBUG=False,
    SECRET_KEY="x" * 50,
    ALLOWED_HOSTS=["*"],
    ROOT_URLCONF=__name__,
    INSTALLED_APPS=[
        "django.contrib.contenttypes",
        "django.contrib.auth",
        "rest_framework",
        "ceiling_app",
    ],
    DATABASES={
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": url.path[1:],
            "USER": url.username,
            "PASSWORD": url.password or "",
            "HOST": url.hostname,
            "PORT": url.port or 5432,
            "CONN_MAX_AGE": 600,
        }
    },
    MIDDLEWARE=["django.middleware.common.CommonMiddleware"],
    REST_FRAMEWORK={
        "DEFAULT_AUTHENTICATION_CLASSES": [
            "rest_framework_simplejwt.authentication.JWTAuthentication"
        ],
        "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
        "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    },
    USE_TZ=True,
    DEFAULT_AUTO_FIELD="django.db.models.BigAutoField",
)
sys.modules.setdefault("ceiling_app", sys.modules[__name__])
django.setup()

from django.core.wsgi import get_wsgi_application  # noqa: E402
from django.db import models  # noqa: E402
from django.urls import path  # noqa: E402
from rest_framework.request import Request  # noqa: E402
from rest_framework.response import Response  # noqa: E402
from rest_framework.views import APIView  # noqa: E402


class Row(models.Model):
    payload = models.JSONField(default=dict)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        app_label = "ceiling_app"

    def __str__(self) -> str:
        return str(self.pk)


class Insert(APIView):
    def post(self, request: Request) -> Response:
        r = Row.objects.create(payload=request.data)
        return Response({"id": r.id, "created_at": r.created_at}, status=201)


class Get(APIView):
    def get(self, request: Request, pk: int) -> Response:
        r = Row.objects.get(pk=pk)
        return Response({"id": r.id, "payload": r.payload, "created_at": r.created_at})


urlpatterns = [path("insert", Insert.as_view()), path("get/<int:pk>", Get.as_view())]

application = get_wsgi_application()


def setup(rows: int) -> tuple[str, int]:
    """Create the table, a user, ``rows`` rows; return a 10-hour token and the first row's id."""
    from datetime import timedelta

    from django.contrib.auth.models import User
    from django.core.management import call_command
    from django.db import connection
    from rest_framework_simplejwt.tokens import AccessToken

    call_command("migrate", "auth", verbosity=0)
    if Row._meta.db_table not in connection.introspection.table_names():
        with connection.schema_editor() as editor:
            editor.create_model(Row)
    user, _ = User.objects.get_or_create(username="bench")
    created = Row.objects.bulk_create([Row(payload={"a": i}) for i in range(max(rows, 1))])
    token = AccessToken.for_user(user)
    token.set_exp(lifetime=timedelta(hours=10))
    return str(token), int(created[0].pk)


def _main(argv: list[str]) -> None:
    token, first = setup(int(argv[1]) if len(argv) > 1 else 1)
    print(token, first)


if __name__ == "__main__":
    _main(sys.argv)
