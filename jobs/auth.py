"""Authentication, permission and throttling for the API (imported by DRF's settings)."""

import logging
import threading
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.contrib.auth.backends import ModelBackend
from django.core.signals import setting_changed
from django.utils.translation import gettext_lazy as _
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.throttling import SimpleRateThrottle
from rest_framework_simplejwt.authentication import JWTAuthentication
from rest_framework_simplejwt.exceptions import ExpiredTokenError, InvalidToken, TokenError
from rest_framework_simplejwt.serializers import (
    TokenObtainPairSerializer,
    TokenRefreshSerializer,
)
from rest_framework_simplejwt.settings import api_settings as jwt_settings
from rest_framework_simplejwt.tokens import Token
from rest_framework_simplejwt.utils import get_md5_hash_password

from config.client_ip import client_ip
from config.outage import Pause, first_line
from config.problems import (
    ACCESS_TOKEN_EXPIRED,
    REFRESH_TOKEN_EXPIRED,
    ProblemError,
    TokenExpired,
    TokenRevoked,
)

from .accounts import company_for_user
from .selectors import api_user_get
from .serializers import RefusesUnknownFields, StrictCharField
from .tokens import TOKEN_VERSION_CLAIM, token_revoked, token_version

if TYPE_CHECKING:
    from rest_framework.views import APIView


logger = logging.getLogger(__name__)


class CompanyTokenObtainPairSerializer(RefusesUnknownFields, TokenObtainPairSerializer):
    """Issue tokens only to API clients of a company; they carry company_id and ``tv``.

    A wrong password and the right password of a user who may not use the API (inactive, or a
    staff user without a company) get the same 401, so the endpoint confirms no password. The
    password is checked by ``ModelBackend`` itself, not through ``authenticate()``: django-axes
    (the admin's lockout) then neither records nor locks API logins, which have their own
    per-client throttle.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # strings only, as the document says: simplejwt's fields take 5 as "5" (then a 401)
        self.fields[self.username_field] = StrictCharField(write_only=True)
        # trimmed, as simplejwt's PasswordField does (a secret read from a file keeps its
        # trailing newline)
        self.fields["password"] = StrictCharField(write_only=True, style={"input_type": "password"})

    @classmethod
    def get_token(cls, user: Any) -> Token:
        token = super().get_token(user)
        membership = getattr(user, "company_membership", None)
        token["company_id"] = str(membership.company_id) if membership else None
        if membership is not None:
            token[TOKEN_VERSION_CLAIM] = token_version(membership)
        return token

    def validate(self, attrs: dict[str, Any]) -> dict[str, str]:
        user = ModelBackend().authenticate(
            self.context.get("request"),
            username=attrs[self.username_field],
            password=attrs["password"],
        )
        if user is None or company_for_user(user) is None:
            raise AuthenticationFailed(
                self.error_messages["no_active_account"], "no_active_account"
            )
        self.user = user
        refresh = self.get_token(user)
        return {"refresh": str(refresh), "access": str(refresh.access_token)}  # type: ignore[attr-defined]


STALE_REFRESH_TOKEN = "No active account found for the given token; get a new one."
# What simplejwt's claim checks raise on a signed token whose times no date can hold (``exp``
# of 1e20: "timestamp out of range"); such a token is refused, not answered with a 500.
UNREADABLE_CLAIMS = (OverflowError, OSError, ValueError)
UNREADABLE_TOKEN = "The token's claims are out of range."


class CompanyTokenRefreshSerializer(RefusesUnknownFields, TokenRefreshSerializer):
    """A new access token for a refresh token that bearer authentication would still accept.

    The user, its membership and its company are read and checked exactly as for an access
    token (``CompanyJWTAuthentication.get_user``: one query): a deleted or deactivated user is
    a 401 ``invalid_token``, a revoked token (password changed, deactivated, removed from the
    company) a 401 ``token_revoked``.
    """

    refresh = StrictCharField()  # a string only, as the document says (not 5 read as "5")

    def validate(self, attrs: dict[str, Any]) -> dict[str, str]:
        try:
            refresh = self.token_class(attrs["refresh"])
        except ExpiredTokenError:
            raise TokenExpired(REFRESH_TOKEN_EXPIRED) from None
        except UNREADABLE_CLAIMS:
            raise InvalidToken(UNREADABLE_TOKEN) from None
        try:
            CompanyJWTAuthentication().get_user(refresh)
        except InvalidToken:
            raise
        except AuthenticationFailed:
            raise InvalidToken(STALE_REFRESH_TOKEN) from None
        return {"access": str(refresh.access_token)}


# The configured schemes ("Bearer") by their lower-case spelling.
SCHEMES = {
    scheme.encode().lower(): scheme.encode()
    for scheme in (
        jwt_settings.AUTH_HEADER_TYPES
        if isinstance(jwt_settings.AUTH_HEADER_TYPES, list | tuple)
        else (jwt_settings.AUTH_HEADER_TYPES,)
    )
}


class VerifiedTokens:
    """Access tokens this process has verified, by their exact encoded string (bounded LRU).

    PyJWT's decode (base64 alphabet checks, the HMAC, the claim checks) is about a sixth of a
    hot request's CPU, and an integration sends the same access token for its whole lifetime.
    A token is remembered only after simplejwt verified it completely, and only its claims
    are kept: a hit is honoured while ``now < exp`` (PyJWT refuses a token once
    ``exp <= now - leeway``, so the cache never outlives what decoding would accept); a
    token at or past its ``exp`` is dropped and goes through full verification again, which
    refuses it exactly as before (401 ``token_expired``). Any other string, a tampered copy
    included, is not a key and is verified in full. Revocation is unaffected: ``tv``, the
    user's active flag and company are checked against the row read per request
    (``CompanyJWTAuthentication.get_user``). At most ``size`` tokens are kept (the least
    recently used goes first); a change of settings (``SIMPLE_JWT``, ``SECRET_KEY``) empties it.
    """

    def __init__(self, size: int = 1024) -> None:
        self.size = size
        self._tokens: dict[bytes, tuple[int, dict[str, Any]]] = {}
        self._lock = threading.Lock()

    def get(self, raw_token: bytes) -> dict[str, Any] | None:
        """The claims of a verified token that has not expired, else None."""
        with self._lock:
            found = self._tokens.pop(raw_token, None)
            if found is None:
                return None
            if found[0] <= time.time():
                return None  # expired: dropped, full verification answers it
            self._tokens[raw_token] = found  # most recently used last
        return dict(found[1])

    def put(self, raw_token: bytes, payload: dict[str, Any]) -> None:
        try:
            exp = int(payload["exp"])
        except (KeyError, ValueError, TypeError, OverflowError):
            return
        with self._lock:
            self._tokens.pop(raw_token, None)
            while len(self._tokens) >= self.size:
                del self._tokens[next(iter(self._tokens))]
            self._tokens[raw_token] = (exp, dict(payload))

    def clear(self) -> None:
        with self._lock:
            self._tokens.clear()

    def __len__(self) -> int:
        return len(self._tokens)


VERIFIED_TOKENS = VerifiedTokens(size=1024)


def _forget_verified_tokens(*, setting: str, **kwargs: Any) -> None:
    if setting in ("SIMPLE_JWT", "SECRET_KEY"):
        VERIFIED_TOKENS.clear()


setting_changed.connect(_forget_verified_tokens)


def _cached_token(token_class: type[Token], raw_token: bytes, payload: dict[str, Any]) -> Token:
    """A ``token_class`` holding claims verified earlier (no decoding)."""
    token = token_class.__new__(token_class)
    token.token = raw_token  # type: ignore[assignment]
    token.current_time = datetime.now(UTC)  # as simplejwt's aware_utcnow()
    token.payload = payload
    return token


class CompanyJWTAuthentication(JWTAuthentication):
    """JWT bearer auth: the user, its membership and its company in one query.

    simplejwt's checks are kept (unknown user, inactive user, its own revoke claim when
    CHECK_REVOKE_TOKEN is on), read from the same row, so a deactivated user or a user moved to
    another company is refused on the next request; a token issued before its user's last
    password change, deactivation or removal from the company is refused
    (``jobs.tokens.token_revoked``: the membership row read in the same statement, no query of
    its own), and so is a token whose ``company_id`` claim is not the user's company.

    A view that reads one job (``job_read_with_client``: a poll) has that job read in the same
    statement (``selectors.api_user_get``): a poll costs one query.
    """

    job: tuple[str, Any] | None = None

    def authenticate(self, request: Request) -> tuple[Any, Token] | None:
        context = getattr(request, "parser_context", None) or {}
        view = context.get("view")
        read_job = getattr(view, "job_read_with_client", None)
        if read_job is not None:
            self.job = read_job(request)
        return super().authenticate(request)

    def get_raw_token(self, header: bytes) -> bytes | None:
        """simplejwt's, with the scheme matched in any case (RFC 9110 §11.1): ``bearer`` too.

        simplejwt compares the scheme byte for byte, so seed 002's own example
        (``Authorization: bearer <token>``) read as no credentials at all.
        """
        scheme, _, rest = header.lstrip().partition(b" ")
        canonical = SCHEMES.get(scheme.lower())
        if canonical is not None:
            header = canonical + b" " + rest
        return super().get_raw_token(header)

    def get_validated_token(self, raw_token: bytes) -> Token:
        """simplejwt's, but a genuine token past its ``exp`` answers 401 ``token_expired``.

        simplejwt answers "Given token not valid for any token type" to it, as to garbage.
        A token verified before by this process is not decoded again (``VerifiedTokens``).
        """
        token_classes = jwt_settings.AUTH_TOKEN_CLASSES
        key = bytes(raw_token)
        if len(token_classes) == 1:
            cached = VERIFIED_TOKENS.get(key)
            if cached is not None:
                return _cached_token(token_classes[0], raw_token, cached)
        try:
            token = super().get_validated_token(raw_token)
        except UNREADABLE_CLAIMS:
            raise InvalidToken(UNREADABLE_TOKEN) from None
        except InvalidToken:
            for token_class in jwt_settings.AUTH_TOKEN_CLASSES:
                try:
                    token_class(raw_token)
                except ExpiredTokenError:  # signed by us, only its exp has passed
                    raise TokenExpired(ACCESS_TOKEN_EXPIRED) from None
                except TokenError:
                    continue
            raise
        if len(token_classes) == 1:
            VERIFIED_TOKENS.put(key, token.payload)
        return token

    def get_user(self, validated_token: Token) -> Any:
        try:
            user_id = validated_token[jwt_settings.USER_ID_CLAIM]
        except KeyError as exc:
            raise InvalidToken(
                str(_("Token contained no recognizable user identification"))
            ) from exc
        if isinstance(user_id, bool) or not isinstance(user_id, int | str):
            # true or 1.5 would read as user 1 (an issued token carries an integer or a string)
            raise InvalidToken(str(_("Token contained no recognizable user identification")))
        user: Any = api_user_get(user_id, job=self.job)
        if user is None:
            raise AuthenticationFailed(_("User not found"), code="user_not_found")
        if jwt_settings.CHECK_USER_IS_ACTIVE and not user.is_active:
            raise AuthenticationFailed(_("User is inactive"), code="user_inactive")
        if jwt_settings.CHECK_REVOKE_TOKEN and validated_token.get(
            jwt_settings.REVOKE_TOKEN_CLAIM
        ) != get_md5_hash_password(user.password):
            raise AuthenticationFailed(
                _("The user's password has been changed."), code="password_changed"
            )
        membership = getattr(user, "company_membership", None)
        if token_revoked(validated_token, membership):  # jobs.tokens: no query of its own
            raise TokenRevoked()
        claimed = validated_token.get("company_id")
        if membership is not None and claimed and claimed != str(membership.company_id):
            raise InvalidToken("The token was issued for another company.")
        user.jobtrail_company = membership.company if membership else None
        return user


class IsCompanyClient(BasePermission):
    def has_permission(self, request: Request, view: "APIView") -> bool:
        user = request.user
        if not (user and user.is_authenticated):
            return False
        if getattr(user, "jobtrail_company", None) is None:
            raise ProblemError(
                "This user is not an API client of any company.",
                status_code=403,
                code="no_company",
            )
        return True


class CacheOutageOpen:
    """A rate limit lets requests through while its cache (Redis, ``CACHE_URL``) is unreachable:
    the limit guards the API, it must not take it down (every request answered 500, or after
    the cache's socket timeout, while Redis restarts). After a failure the cache is not asked
    again for ``CACHE_RETRY_AFTER`` seconds; the outage is logged once per such pause."""

    def allow_request(self, request: Request, view: "APIView") -> bool:
        if cache_pause.active():
            return True
        try:
            return super().allow_request(request, view)  # type: ignore[misc]
        except Exception as exc:  # what the cache backend raises when it cannot be reached
            cache_pause.start()
            logger.warning(
                "rate limits not applied for %.0f s: the cache is unavailable (%s)",
                CACHE_RETRY_AFTER,
                first_line(exc),
            )
            return True


CACHE_RETRY_AFTER = 5.0
cache_pause = Pause(CACHE_RETRY_AFTER)


class ClientRateThrottle(CacheOutageOpen, SimpleRateThrottle):
    """Per API client (per address before authentication), rate from JOBTRAIL_API_RATE_LIMIT.

    The address is ``config.client_ip`` (X-Forwarded-For only past JOBTRAIL_TRUSTED_PROXIES).
    """

    scope = "client"

    def get_ident(self, request: Request) -> str:
        return client_ip(request)

    def get_rate(self) -> str:
        return settings.JOBTRAIL_API_RATE_LIMIT

    def get_cache_key(self, request: Request, view: "APIView") -> str:
        if request.user and request.user.is_authenticated:
            return f"throttle:client:{request.user.pk}"
        return f"throttle:anon:{self.get_ident(request)}"


class AuthRateThrottle(CacheOutageOpen, SimpleRateThrottle):
    """Token endpoints, per client address (``config.client_ip``), JOBTRAIL_AUTH_RATE_LIMIT."""

    scope = "auth"

    def get_ident(self, request: Request) -> str:
        return client_ip(request)

    def get_rate(self) -> str:
        return settings.JOBTRAIL_AUTH_RATE_LIMIT

    def get_cache_key(self, request: Request, view: "APIView") -> str:
        return f"throttle:auth:{self.get_ident(request)}"
