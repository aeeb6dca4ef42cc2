"""Jobtrail settings, read from the environment (see README "Configuration").

The defaults run everything on one machine with nothing else installed: a SQLite file (WAL,
immediate transactions, busy timeout) and kombu's filesystem broker, both under ``var/``.
"""

import os
import secrets
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

import environ
from django.core.exceptions import ImproperlyConfigured

from config import metrics_dir

CONFIG_DIR = Path(__file__).resolve().parent
# The local files (.env, var/, staticfiles/) live in the source tree; an installed package
# (`pip install .`) keeps them in the working directory instead of site-packages.
BASE_DIR = CONFIG_DIR.parent if (CONFIG_DIR.parent / "manage.py").is_file() else Path.cwd()
VAR_DIR = BASE_DIR / "var"

env = environ.Env()
# The local .env (written by `make run`: DEBUG on, a generated key, private webhook targets) is
# development configuration. It is read only when the process environment has no
# DJANGO_SECRET_KEY: a deployed process always carries its key in the environment (without one,
# settings refuse to start with DEBUG off), so a .env left in the code folder can never switch
# it into debug mode or lift its SSRF guard. JOBTRAIL_READ_DOTENV=0 (the systemd units set it)
# never reads it.
DOTENV_FILE = BASE_DIR / ".env"
if env.bool("JOBTRAIL_READ_DOTENV", default=True) and "DJANGO_SECRET_KEY" not in os.environ:
    environ.Env.read_env(DOTENV_FILE)

# Before anything imports prometheus-client: the folder where this host's processes share their
# metrics (default var/prometheus; README "Metrics").
PROMETHEUS_MULTIPROC_DIR = metrics_dir.configure()

DEBUG = env.bool("DJANGO_DEBUG", default=False)


def _weak_secret_key(key: str) -> str | None:
    """Why ``key`` must not sign production sessions and tokens, or None.

    Django's own rule (check security.W009) plus the example file's placeholder.
    """
    if len(key) < 50 or len(set(key)) < 5:
        return "shorter than 50 characters or fewer than 5 different ones"
    if key.startswith("django-insecure") or "change-me" in key:
        return "a placeholder or public default"
    return None


def _development_secret_key() -> str:
    """A key generated once for this checkout (var/dev-secret-key), never a public constant."""
    path = VAR_DIR / "dev-secret-key"
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(50)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process wrote it first
        return path.read_text().strip()
    with os.fdopen(fd, "w") as out:
        out.write(key)
    return key


SECRET_KEY = env.str("DJANGO_SECRET_KEY", default="")
if not DEBUG:
    if not SECRET_KEY:
        raise ImproperlyConfigured(
            "DJANGO_SECRET_KEY is required when DJANGO_DEBUG is off (production). "
            "For a local run set DJANGO_DEBUG=1, as `make run` does."
        )
    if weakness := _weak_secret_key(SECRET_KEY):
        raise ImproperlyConfigured(
            f"DJANGO_SECRET_KEY is {weakness}: it would let anyone forge sessions, tokens and "
            "report links. Generate one with: "
            "python3 -c 'import secrets; print(secrets.token_urlsafe(50))'"
        )
elif not SECRET_KEY:
    SECRET_KEY = _development_secret_key()

ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "config.admin.JobtrailAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework_simplejwt",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_celery_beat",
    "axes",
    "csp",
    "jobs",
    "webhooks",
    "reports",
    "ops",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "config.middleware.ApiNoStoreMiddleware",  # every API answer below it: no-store
    "config.middleware.SitePolicyCSPMiddleware",  # django-csp's, the policy built once
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "config.metrics.RequestMetricsMiddleware",  # what Django answers (static files are not)
    "config.middleware.BodySizeLimitMiddleware",
    "config.middleware.NulQueryMiddleware",
    "config.middleware.ApiProblemMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "config.middleware.StaffTimeZoneMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # last: turns an admin login refused by django-axes into the lockout page
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        # Project-wide overrides (the admin's index and change forms) ship inside the package.
        "DIRS": [CONFIG_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database -------------------------------------------------------------------------------
DATABASES = {
    "default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'jobtrail.sqlite3'}"),
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Web, worker and beat write to one file at once: WAL lets readers and a writer overlap,
    # IMMEDIATE takes the write lock at BEGIN (no upgrade deadlocks), and the busy timeout
    # makes a writer wait for the lock instead of failing with "database is locked".
    DATABASES["default"]["OPTIONS"] = {
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 30,
    }
else:
    DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("DJANGO_CONN_MAX_AGE", default=60))
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
    if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
        # the same backend, checking a persistent connection only after it idled a while
        DATABASES["default"]["ENGINE"] = "config.postgresql"
        # A database host that vanishes (not a clean restart: a failover, a dead network) must
        # fail requests and the worker's queries within a minute instead of the kernel's TCP
        # retry time (about 15 min): libpq's connect timeout, keepalives on idle connections
        # and a limit on unacknowledged data. Each can be changed in DATABASE_URL's query
        # string (?connect_timeout=10).
        _options = DATABASES["default"].setdefault("OPTIONS", {})
        for _name, _value in {
            "connect_timeout": 5,
            "keepalives": 1,
            "keepalives_idle": 30,
            "keepalives_interval": 10,
            "keepalives_count": 3,
            "tcp_user_timeout": 60_000,  # ms
        }.items():
            _options.setdefault(_name, _value)
        # psycopg's automatic prepared statements for the hot path's fixed statements (sent
        # with server-side parameters, config.rows.hot_cursor): one run this many times on a
        # connection is parsed and planned once (a third to a half of PostgreSQL's CPU per API
        # request, bench/run.py). Other queries keep Django's client-side binding. "none":
        # nothing prepared (PgBouncer in transaction mode without max_prepared_statements).
        _prepare = env.str("JOBTRAIL_DB_PREPARE_THRESHOLD", default="5").strip().lower()
        if _prepare not in ("", "none"):
            DATABASES["default"].setdefault("OPTIONS", {})["prepare_threshold"] = int(_prepare)
# A persistent connection released in good health less than this many seconds ago is reused
# without its `SELECT 1` health check (config/postgresql/base.py).
JOBTRAIL_DB_HEALTH_CHECK_AFTER = env.float("JOBTRAIL_DB_HEALTH_CHECK_AFTER", default=1.0)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
MEDIA_ROOT = env.path("JOBTRAIL_MEDIA_ROOT", default=VAR_DIR / "media")
STORAGES = {
    # Reports. With workers on several hosts use shared storage (e.g. django-storages' S3).
    "default": {
        "BACKEND": env.str(
            "JOBTRAIL_FILE_STORAGE", default="django.core.files.storage.FileSystemStorage"
        )
    },
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}
if DEBUG:
    STORAGES["staticfiles"] = {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"}

# --- Transport security (README "Security") -------------------------------------------------
# How many reverse proxies in front of the web process append to X-Forwarded-For (and may be
# believed about the client's address and scheme). 0: the header is ignored (config.client_ip).
JOBTRAIL_TRUSTED_PROXIES = env.int("JOBTRAIL_TRUSTED_PROXIES", default=0)
if env.bool("DJANGO_SECURE_PROXY_SSL_HEADER", default=JOBTRAIL_TRUSTED_PROXIES > 0):
    # The proxy terminates TLS and says so; it must overwrite a client's X-Forwarded-Proto.
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
if not DEBUG:
    SECURE_SSL_REDIRECT = env.bool("DJANGO_SECURE_SSL_REDIRECT", default=True)
    # a load balancer's health checks may come over plain HTTP
    SECURE_REDIRECT_EXEMPT = [r"^healthz(?:/|$)"]
    SECURE_HSTS_SECONDS = env.int("DJANGO_SECURE_HSTS_SECONDS", default=365 * 24 * 3600)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS", default=True)
    SECURE_HSTS_PRELOAD = env.bool("DJANGO_SECURE_HSTS_PRELOAD", default=True)
    SESSION_COOKIE_SECURE = env.bool("DJANGO_SECURE_COOKIES", default=True)
    CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE

# Content-Security-Policy on every answer (django-csp): only this origin's scripts, styles and
# fonts (the admin's and Swagger UI's are static files), images from here or data: URLs, no
# plugins, no framing, forms post only here.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:"],
        "font-src": ["'self'"],
        "connect-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'none'"],
        "frame-ancestors": ["'none'"],
        "form-action": ["'self'"],
    }
}

# --- Admin login lockout (django-axes) ------------------------------------------------------
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",  # first: refuses a locked-out login
    "django.contrib.auth.backends.ModelBackend",
]
AXES_ONLY_ADMIN_SITE = True  # the API's token endpoints have their own throttle
AXES_FAILURE_LIMIT = env.int("JOBTRAIL_ADMIN_LOGIN_FAILURES", default=5)
_lockout_minutes = env.int("JOBTRAIL_ADMIN_LOCKOUT_MINUTES", default=15)
# 0: locked until staff lift it
AXES_COOLOFF_TIME = timedelta(minutes=_lockout_minutes) if _lockout_minutes > 0 else None
# "ip_address,username": failures from one address lock that address, failures for one username
# (from anywhere) lock that username; "username+ip_address" locks only the pair.
AXES_LOCKOUT_PARAMETERS = [
    item.split("+") if "+" in item else item
    for item in env.list("JOBTRAIL_ADMIN_LOCKOUT_BY", default=["ip_address", "username"])
]
AXES_RESET_ON_SUCCESS = True
AXES_VERBOSE = False  # no banner in every process and command
AXES_CLIENT_IP_CALLABLE = "config.client_ip.client_ip"  # the throttles' client identity
AXES_LOCKOUT_TEMPLATE = "admin/lockout.html"
# masked in the stored attempts' form data (the password always is)
AXES_SENSITIVE_PARAMETERS = ["username", "ip_address", "csrfmiddlewaretoken"]

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    # signed report links in a message (django.request names a 4xx's path) lose their token
    "filters": {"redact_report_links": {"()": "config.access_log.RedactReportLinks"}},
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "plain",
            "filters": ["redact_report_links"],
        }
    },
    "root": {"handlers": ["console"], "level": env.str("JOBTRAIL_LOG_LEVEL", default="INFO")},
    # loggers to log at DEBUG whatever the root's level (Celery sets the root's from its
    # --loglevel): JOBTRAIL_DEBUG_LOGGERS=ops.scheduler logs each sweep beat runs
    "loggers": {
        name: {"level": "DEBUG"} for name in env.list("JOBTRAIL_DEBUG_LOGGERS", default=[])
    },
}

# --- REST API -------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "jobs.auth.CompanyJWTAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "config.schema.AutoSchema",
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["config.parsers.StrictJSONParser"],
    "DEFAULT_CONTENT_NEGOTIATION_CLASS": "config.negotiation.CommonContentNegotiation",
    "DEFAULT_THROTTLE_CLASSES": ["jobs.auth.ClientRateThrottle"],
    "NUM_PROXIES": JOBTRAIL_TRUSTED_PROXIES,
    "EXCEPTION_HANDLER": "config.problems.exception_handler",
}
SIMPLE_JWT = {
    "ACCESS_TOKEN_LIFETIME": timedelta(
        seconds=env.int("JOBTRAIL_ACCESS_TOKEN_LIFETIME", default=15 * 60)
    ),
    "REFRESH_TOKEN_LIFETIME": timedelta(
        seconds=env.int("JOBTRAIL_REFRESH_TOKEN_LIFETIME", default=24 * 3600)
    ),
    "UPDATE_LAST_LOGIN": False,
    "TOKEN_OBTAIN_SERIALIZER": "jobs.auth.CompanyTokenObtainPairSerializer",
    "TOKEN_REFRESH_SERIALIZER": "jobs.auth.CompanyTokenRefreshSerializer",
}
API_DESCRIPTION = """Track asynchronous export and bulk jobs: create a job, report its lifecycle \
events and push results, poll it or receive signed webhooks, download its CSV report.

## Authentication

Every `/api/v1/` operation except the two token ones takes a JWT bearer token:
`Authorization: Bearer <access>`. Get `{access, refresh}` with `POST /api/v1/auth/token/`
(`{"username", "password"}` of an API client of your company). The access token lasts
JOBTRAIL_ACCESS_TOKEN_LIFETIME (15 minutes), the refresh token JOBTRAIL_REFRESH_TOKEN_LIFETIME
(24 hours). An expired access token answers 401 `token_expired`: exchange the refresh token with
`POST /api/v1/auth/token/refresh/` for a new access token (or log in again). A token that is
malformed or forged answers 401 `invalid_token`; one revoked (password changed, user deactivated
or removed from the company) 401 `token_revoked`. A user who is no API client of a company gets
403 `no_company`. Tokens carry the company: you only ever see your company's data (another
company's job is a 404, never a 403).

## Idempotency

Every `POST` that creates or changes something takes an optional `Idempotency-Key` header (1 to
255 characters; use a UUID per distinct request). Repeating the request with the same key and
body replays the first answer (with `Idempotent-Replayed: true`) and changes nothing; the same
key with another body answers 422 `idempotency_key_reused`; a repeat while the first is still
running answers 409 `idempotency_request_in_progress`. Keys are kept 48 hours.

## Pagination

Lists are cursor pages: `{"next": url|null, "previous": url|null, "results": [...]}`. Follow
`next` as it is (it keeps your filters); `page_size` is 1 to 500 (default 50) and any other
value answers 400. A cursor is opaque: take it from `next`/`previous`, never build one.

## Errors

Every error is an RFC 9457 problem document, `Content-Type: application/problem+json`:
`{"type": "/problems/<code>", "title", "status", "detail", "code", "errors"?}`. `code` is stable
and meant for programs; `errors` lists `{field, message}` for a 400 `validation_error` (a nested
field is dotted: `data.responseCode`). Types you can meet: `validation_error`, `malformed_json`,
`body_too_large`, `unsupported_media_type`, `unsupported_charset`, `not_acceptable`,
`length_required`, `invalid_content_length`, `invalid_counts`, `invalid_failure_reason`,
`invalid_idempotency_key`, `not_authenticated`, `invalid_token`, `token_expired`,
`token_revoked`, `authentication_failed`, `no_company`, `not_found`, `job_finished`,
`invalid_transition`, `job_code_taken`, `report_not_ready`, `idempotency_key_reused`,
`idempotency_request_in_progress`, `push_result_too_large`, `push_correlation_taken`,
`invalid_endpoint`, `integration_endpoint_exists`, `webhook_endpoint_limit`,
`delivery_pending`, `invalid_signature`, `rate_limited`, `database_unavailable`, and before
the request is read `malformed_chunked_body`, `malformed_request` (400), `uri_too_long` (414),
`headers_too_large` (431), `expectation_failed` (417), `not_implemented` (501, a
`Transfer-Encoding` other than chunked). A bad request
changes nothing. Strings never contain U+0000 (refused with 400). Request bodies are JSON
objects (UTF-8, at most 1 MiB); unknown fields are refused (400), except inside a push result's
`data`, where they are accepted and listed back as `ignored_fields`. The seed-compatible
operations (tag `seed-compatible`) keep the seed's own shapes.

## Rate limits

Each API client may make JOBTRAIL_API_RATE_LIMIT requests (1200 a minute), the token operations
JOBTRAIL_AUTH_RATE_LIMIT (60 a minute). Over the limit the answer is 429 `rate_limited` with
`Retry-After` (seconds): wait that long. A 503 `database_unavailable` also carries
`Retry-After`; nothing was changed, retry after it.

## Polling

`GET /api/v1/jobs/{job_id}/` answers the job; while it is not finished the answer carries
`Retry-After` (JOBTRAIL_POLL_INTERVAL seconds, 30): poll no sooner. A finished job (completed,
completed_with_errors, failed) has no `Retry-After`. Rather than poll, subscribe a webhook
endpoint.

## Webhooks

Jobtrail `POST`s each subscribed event to your endpoints, signed as
[Standard Webhooks](https://www.standardwebhooks.com/) (`webhook-id`, `webhook-timestamp`,
`webhook-signature`); the `webhooks` section of this document has one payload schema per event
id and says how to verify a delivery.
"""

SPECTACULAR_SETTINGS = {
    "TITLE": "Jobtrail API",
    "DESCRIPTION": API_DESCRIPTION,
    "VERSION": "1.0.0",
    # 3.1: JSON Schema 2020-12 (if/then rules between fields) and the `webhooks` section
    "OAS_VERSION": "3.1.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # config/converters.py: a UUID in either letter case, documented as a plain uuid
    "PATH_CONVERTER_OVERRIDES": {"uuid_ci": {"type": "string", "format": "uuid"}},
    # one payload schema per event id the sender emits (webhooks/schema.py)
    "WEBHOOKS": "webhooks.schema.WEBHOOKS",
    # Swagger UI's assets come from the drf-spectacular-sidecar package, not a CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "config.schema.postprocess_schema",
        "webhooks.schema.postprocess_webhooks",
    ],
    "ENUM_NAME_OVERRIDES": {
        "JobStatusEnum": "jobs.models.JobStatus",
        "FailureReasonEnum": "jobs.models.FailureReason",
        "EventStatusEnum": "jobs.models.EventStatus",
        "EventSourceEnum": "jobs.models.EventSource",
        "PushStatusEnum": "jobs.models.PushStatus",
        "ReportableEventEnum": "jobs.serializers.REPORTABLE_EVENTS",
        "ExportJobStatusEnum": ["SCHEDULED", "RUNNING", "SUCCESSFUL", "FAILED", "CANCELLED"],
        "ApiJobStatusEnum": ["pending", "processing", "completed", "failed"],
        "PushEventEnum": ["push"],
        "DeliveryStatusEnum": "webhooks.models.DeliveryStatus",
    },
}

# --- Celery ---------------------------------------------------------------------------------
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="filesystem://")
# Default limits (reports, expiry); the webhook tasks set their own from JOBTRAIL_WEBHOOK_TIMEOUT
# (see below). Time limits are enforced by the prefork pool (the default), not by --pool threads.
CELERY_TASK_TIME_LIMIT = env.int("JOBTRAIL_TASK_TIME_LIMIT", default=300)
CELERY_TASK_SOFT_TIME_LIMIT = CELERY_TASK_TIME_LIMIT - 30
# Seconds one retention run (old deliveries, idempotency keys) deletes for, well inside the
# time limit; a bigger backlog is worked off by runs queued one after the other.
JOBTRAIL_PURGE_BUDGET = min(60.0, CELERY_TASK_SOFT_TIME_LIMIT / 2)
# The longest countdown a task is queued with (reports retry after 30 s). Webhook retries are
# rows due at their time that the batch sender takes, never broker messages; other long waits are
# rows the dispatcher queues when due. tests/ops/test_deploy.py checks it.
JOBTRAIL_LONGEST_COUNTDOWN = 300
JOBTRAIL_BROKER_VISIBILITY_TIMEOUT = env.int("JOBTRAIL_BROKER_VISIBILITY_TIMEOUT", default=3600)
if JOBTRAIL_BROKER_VISIBILITY_TIMEOUT <= JOBTRAIL_LONGEST_COUNTDOWN + CELERY_TASK_TIME_LIMIT:
    raise ImproperlyConfigured(
        "JOBTRAIL_BROKER_VISIBILITY_TIMEOUT must exceed the longest countdown "
        f"({JOBTRAIL_LONGEST_COUNTDOWN} s) plus JOBTRAIL_TASK_TIME_LIMIT "
        f"({CELERY_TASK_TIME_LIMIT} s), or Redis redelivers tasks that are still held."
    )
if CELERY_BROKER_URL.startswith("filesystem://"):
    # The filesystem transport ignores the host, but kombu warns "No hostname was supplied"
    # at every start when the URL has none.
    if not urlsplit(CELERY_BROKER_URL).netloc:
        CELERY_BROKER_URL = urlsplit(CELERY_BROKER_URL)._replace(netloc="localhost").geturl()
    BROKER_DIR = VAR_DIR / "broker"
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(BROKER_DIR / "queue"),
        "data_folder_out": str(BROKER_DIR / "queue"),
        "control_folder": str(BROKER_DIR / "control"),
        "store_processed": False,
    }
    for folder in ("queue", "control"):
        (BROKER_DIR / folder).mkdir(parents=True, exist_ok=True)
else:
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        # Redis: a message a worker took but has not acknowledged (acks_late: until the task
        # ends; a countdown task: until it is due and has run) goes back to the queue after
        # this long. It must exceed the longest countdown plus the task time limit, or Redis
        # hands the task to a second worker while the first still holds it. RabbitMQ ignores it.
        "visibility_timeout": JOBTRAIL_BROKER_VISIBILITY_TIMEOUT,
        # Publishing (on commit, from a web request) gives up fast when the broker is down:
        # the outbox row stays and the dispatcher queues it once the broker is back.
        "max_retries": 1,
        "interval_start": 0,
        "interval_step": 0.2,
        "interval_max": 0.2,
        "socket_connect_timeout": 2,
        "socket_timeout": 10,
    }
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = "UTC"
CELERY_ENABLE_UTC = True
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# A worker that loses the broker reconnects forever (the operations view shows the stall)
# instead of exiting after 100 attempts.
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BROKER_CONNECTION_RETRY = True
CELERY_BROKER_CONNECTION_MAX_RETRIES = None
CELERY_BEAT_SCHEDULER = "ops.scheduler:HeartbeatScheduler"  # the database scheduler + a heartbeat
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
# Celery's Django fix-up closes the database connections before and after every task: a new
# PostgreSQL backend per task (about 20 a second at 10 job changes/s, each a fork and a cold
# catalog cache). With this it force-closes them only every this many tasks, and
# config.celery_app applies Django's rule between tasks instead, as between requests: a
# connection is kept for CONN_MAX_AGE unless it is broken (SQLite: closed after each task).
CELERY_DB_REUSE_MAX = env.int("JOBTRAIL_WORKER_DB_REUSE_MAX", default=1000)
# The wide lane's wake-ups go to its own queue, consumed by the Procfile's `wide` worker
# (webhooks/lanes.py); every other task goes to the default queue, the Procfile's `worker`.
CELERY_TASK_ROUTES = {
    "jobs.relay_events.wide": {"queue": "wide"},
    "webhooks.send_due_deliveries.wide": {"queue": "wide"},
    "ops.heartbeat.wide": {"queue": "wide"},
}

# --- Jobtrail -------------------------------------------------------------------------------
JOBTRAIL_JOB_EXPIRES_AFTER = env.int("JOBTRAIL_JOB_EXPIRES_AFTER", default=24 * 3600)
JOBTRAIL_POLL_INTERVAL = env.int("JOBTRAIL_POLL_INTERVAL", default=30)
JOBTRAIL_WEBHOOK_RETRY_SCHEDULE = [
    int(s)
    for s in env.list(
        "JOBTRAIL_WEBHOOK_RETRY_SCHEDULE",
        default=["5", "300", "1800", "7200", "18000", "36000", "36000"],
    )
]
# A job's hand-off (jobs.create to its company's integration endpoint, seed 000) is retried
# after these seconds; then its job, if still pending, fails with the seed's reason
# (jobs/handoff.py). Five attempts over about 12.5 minutes: a job waits pending for it.
JOBTRAIL_HANDOFF_RETRY_SCHEDULE = [
    int(s) for s in env.list("JOBTRAIL_HANDOFF_RETRY_SCHEDULE", default=["5", "30", "120", "600"])
]
# An integration that answers 401 or 403 refuses us: its hand-off is final after this many
# attempts (the second one, 5 s later, rides out a receiver restarting with a new config).
JOBTRAIL_HANDOFF_AUTH_ATTEMPTS = env.int("JOBTRAIL_HANDOFF_AUTH_ATTEMPTS", default=2)
if JOBTRAIL_HANDOFF_AUTH_ATTEMPTS < 1:
    raise ImproperlyConfigured("JOBTRAIL_HANDOFF_AUTH_ATTEMPTS must be at least 1.")
# One webhook attempt (DNS and SSRF check, connect, TLS, send, status line, headers, body) ends
# at this hard deadline, however slowly the receiver drips its answer.
JOBTRAIL_WEBHOOK_TIMEOUT = env.float("JOBTRAIL_WEBHOOK_TIMEOUT", default=15.0)
# How the webhook timings fit together (D = JOBTRAIL_WEBHOOK_TIMEOUT, counted from the claim):
#   send deadline D  <  send task soft limit D + 5  <  hard limit D + 10  <  claim lease D + 15
# A claimed delivery's HTTP exchange is over by D (the sender shuts its socket down then); the
# soft limit only fires if something else hangs (it still records the attempt), the hard limit
# (prefork pool) kills the process; the lease outlives all of them, so a claim never lapses while
# its send can still run and one webhook-id is never in flight twice. A killed worker's delivery
# is taken again once the lease ends, at the next dispatcher run.
JOBTRAIL_WEBHOOK_LEASE = JOBTRAIL_WEBHOOK_TIMEOUT + 15
JOBTRAIL_WEBHOOK_SEND_TIME_LIMITS = (JOBTRAIL_WEBHOOK_TIMEOUT + 5, JOBTRAIL_WEBHOOK_TIMEOUT + 10)
# The batch sender (webhooks.send_due_deliveries) claims for this long with this many threads
# per worker process; a claim it has not started within LEASE - D - 5 s (or by the end of the
# round) is given back unsent, so its last sends end by ROUND + D: its limits are ROUND + D + 10
# (soft) and ROUND + D + 20. While the database is unavailable the round tries its records and
# give-backs again while their leases last, until RECORD_MARGIN (3 s) before its soft limit
# (webhooks.sending); a send task's record likewise stops 3 s before the task's soft limit.
JOBTRAIL_WEBHOOK_ROUND_SECONDS = env.float("JOBTRAIL_WEBHOOK_ROUND_SECONDS", default=30.0)
JOBTRAIL_WEBHOOK_SENDERS = env.int("JOBTRAIL_WEBHOOK_SENDERS", default=8)
JOBTRAIL_WEBHOOK_ROUND_TIME_LIMITS = (
    JOBTRAIL_WEBHOOK_ROUND_SECONDS + JOBTRAIL_WEBHOOK_TIMEOUT + 10,
    JOBTRAIL_WEBHOOK_ROUND_SECONDS + JOBTRAIL_WEBHOOK_TIMEOUT + 20,
)
JOBTRAIL_WEBHOOK_ALLOW_PRIVATE_TARGETS = env.bool(
    "JOBTRAIL_WEBHOOK_ALLOW_PRIVATE_TARGETS", default=False
)
# A push webhook at a company's ingest URL must be signed within this many seconds of now.
JOBTRAIL_PUSH_INGEST_TOLERANCE = env.int("JOBTRAIL_PUSH_INGEST_TOLERANCE", default=300)
JOBTRAIL_MAX_BODY_BYTES = 1024 * 1024
# Per-company limits (README "Security"): a client past one gets a 4xx problem, nothing stored.
JOBTRAIL_MAX_WEBHOOK_ENDPOINTS = env.int("JOBTRAIL_MAX_WEBHOOK_ENDPOINTS", default=16)
JOBTRAIL_MAX_ENDPOINT_EVENTS = env.int("JOBTRAIL_MAX_ENDPOINT_EVENTS", default=16)
JOBTRAIL_MAX_METADATA_BYTES = env.int("JOBTRAIL_MAX_METADATA_BYTES", default=16 * 1024)
JOBTRAIL_MAX_PUSH_RESULT_BYTES = env.int("JOBTRAIL_MAX_PUSH_RESULT_BYTES", default=64 * 1024)
# An answer larger than this is not kept under its Idempotency-Key (a replay says so instead).
JOBTRAIL_IDEMPOTENCY_MAX_STORED_BYTES = env.int(
    "JOBTRAIL_IDEMPOTENCY_MAX_STORED_BYTES", default=64 * 1024
)
# Seconds a webhook host's name lookup may take when an endpoint is registered or changed.
JOBTRAIL_WEBHOOK_DNS_TIMEOUT = env.float("JOBTRAIL_WEBHOOK_DNS_TIMEOUT", default=3.0)
DATA_UPLOAD_MAX_MEMORY_SIZE = JOBTRAIL_MAX_BODY_BYTES
JOBTRAIL_IDEMPOTENCY_TTL = env.int("JOBTRAIL_IDEMPOTENCY_TTL", default=48 * 3600)
JOBTRAIL_API_RATE_LIMIT = env.str("JOBTRAIL_API_RATE_LIMIT", default="1200/minute")
JOBTRAIL_AUTH_RATE_LIMIT = env.str("JOBTRAIL_AUTH_RATE_LIMIT", default="60/minute")

CACHES = {"default": env.cache("CACHE_URL", default="locmemcache://")}
if CACHES["default"]["BACKEND"].endswith(".RedisCache"):
    # the API's rate limits read the cache on every request: a Redis that stopped answering
    # delays a request by these at most, once (jobs.auth.CacheOutageOpen lets requests through
    # for a few seconds after a failure), instead of redis-py's default of no timeout
    CACHES["default"].setdefault("OPTIONS", {}).update(
        socket_connect_timeout=0.5, socket_timeout=0.5
    )
JOBTRAIL_WEBHOOK_RETENTION_DAYS = env.int("JOBTRAIL_WEBHOOK_RETENTION_DAYS", default=30)
# Failed deliveries are kept longer, to be redelivered; 0 keeps them for ever.
JOBTRAIL_WEBHOOK_FAILED_RETENTION_DAYS = env.int(
    "JOBTRAIL_WEBHOOK_FAILED_RETENTION_DAYS", default=90
)
# Wake-ups to the worker are coalesced per process over this many seconds (config/outbox.py).
JOBTRAIL_WAKEUP_WINDOW = env.float("JOBTRAIL_WAKEUP_WINDOW", default=0.02)
# How long (seconds) a relay batch waits for a row lock before it relays its companies apart
# (jobs/relay.py): an endpoint being deleted holds its row while the DELETE removes its
# deliveries, and a fan-out to it waits at commit; its company is then held back a few
# seconds, the others go on. 0: wait as long as it takes (PostgreSQL only).
JOBTRAIL_RELAY_LOCK_TIMEOUT = env.float("JOBTRAIL_RELAY_LOCK_TIMEOUT", default=2.0)
# The Celery worker's CPU scheduling (config/celery_app.py): "normal" (the default) leaves it
# alone; "idle" runs it, on Linux, under SCHED_IDLE: it gets every cycle nothing else on the host
# wants, and an API request waking up takes the core from it at once (a higher nice value does
# not do that: the kernel lets the running worker thread finish its slice). Measured on 2 shared
# cores: the API's tail latency beside a webhook burst falls, the worker's own latency rises
# when the web keeps the cores busy (README "Performance").
JOBTRAIL_WORKER_CPU = env.str("JOBTRAIL_WORKER_CPU", default="normal")
if JOBTRAIL_WORKER_CPU not in ("idle", "normal"):
    raise ImproperlyConfigured(
        f"JOBTRAIL_WORKER_CPU must be 'idle' or 'normal', not {JOBTRAIL_WORKER_CPU!r}."
    )
# How much the Celery worker raises its nice value (lowers its priority) at start, under
# JOBTRAIL_WORKER_CPU=normal
# (SCHED_IDLE has no nice levels). 0 (the default) leaves it alone.
JOBTRAIL_WORKER_NICE = env.int("JOBTRAIL_WORKER_NICE", default=0)
JOBTRAIL_WEBHOOK_DISPATCH_INTERVAL = env.int("JOBTRAIL_WEBHOOK_DISPATCH_INTERVAL", default=5)
# The wide lane (webhooks/lanes.py): companies with 50 active endpoints or more have their events
# relayed and their webhooks sent by the Procfile's `wide` worker, under its own CPU policy
# (JOBTRAIL_WIDE_LANE_CPU, "idle" by default: SCHED_IDLE, as JOBTRAIL_WORKER_CPU), so that their
# bursts do not delay the other companies. The `worker` takes a wide company's work too once it
# has waited JOBTRAIL_WIDE_LANE_TAKEOVER seconds (the `wide` worker down or behind).
# JOBTRAIL_WIDE_LANE=false: one lane, the `worker` does everything (the `wide` worker idles).
JOBTRAIL_WIDE_LANE = env.bool("JOBTRAIL_WIDE_LANE", default=True)
JOBTRAIL_WIDE_LANE_TAKEOVER = env.float("JOBTRAIL_WIDE_LANE_TAKEOVER", default=30.0)
if JOBTRAIL_WIDE_LANE_TAKEOVER < 1:
    raise ImproperlyConfigured("JOBTRAIL_WIDE_LANE_TAKEOVER must be at least 1 (seconds).")
JOBTRAIL_WIDE_LANE_CPU = env.str("JOBTRAIL_WIDE_LANE_CPU", default="idle")
if JOBTRAIL_WIDE_LANE_CPU not in ("idle", "normal"):
    raise ImproperlyConfigured(
        f"JOBTRAIL_WIDE_LANE_CPU must be 'idle' or 'normal', not {JOBTRAIL_WIDE_LANE_CPU!r}."
    )
# Fairness between companies: the fan-out spaces one company's deliveries this many seconds
# apart on the ``fair_at`` clock that claims are taken in (webhooks/services.py).
JOBTRAIL_WEBHOOK_FAIR_SPACING = env.float("JOBTRAIL_WEBHOOK_FAIR_SPACING", default=0.01)
JOBTRAIL_EXPIRY_INTERVAL = env.int("JOBTRAIL_EXPIRY_INTERVAL", default=60)
JOBTRAIL_PUBLIC_URL = env.str("JOBTRAIL_PUBLIC_URL", default="http://127.0.0.1:8000")
JOBTRAIL_REPORT_LINK_TTL = env.int("JOBTRAIL_REPORT_LINK_TTL", default=3600)
JOBTRAIL_STUCK_AFTER = env.int("JOBTRAIL_STUCK_AFTER", default=3600)

# --- Operations (GET /healthz/operations) ---------------------------------------------------
JOBTRAIL_HEARTBEAT_INTERVAL = env.int("JOBTRAIL_HEARTBEAT_INTERVAL", default=15)
JOBTRAIL_OPS_HEARTBEAT_MAX_AGE = env.int("JOBTRAIL_OPS_HEARTBEAT_MAX_AGE", default=60)
JOBTRAIL_OPS_MAX_DELIVERY_LAG = env.int("JOBTRAIL_OPS_MAX_DELIVERY_LAG", default=300)
JOBTRAIL_OPS_MAX_REPORT_LAG = env.int("JOBTRAIL_OPS_MAX_REPORT_LAG", default=900)
# The staff console's dashboard and job page poll this often (seconds) while something is moving.
JOBTRAIL_ADMIN_REFRESH_SECONDS = env.int("JOBTRAIL_ADMIN_REFRESH_SECONDS", default=5)
# When set, the operations view wants "Authorization: Bearer <token>"; empty leaves it open.
JOBTRAIL_OPS_TOKEN = env.str("JOBTRAIL_OPS_TOKEN", default="")
# GET /metrics: staff signed in to the admin, or "Authorization: Bearer <token>" with this token
# (Prometheus' scrape config) or the operations token; nobody else (401).
JOBTRAIL_METRICS_TOKEN = env.str("JOBTRAIL_METRICS_TOKEN", default="")
