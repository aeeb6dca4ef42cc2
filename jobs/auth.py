"""Authentication, permission and throttling for the API (imported by DRF's settings)."""

from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.contrib.auth import get_user_model
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

from config.problems import (
    ACCESS_TOKEN_EXPIRED,
    REFRESH_TOKEN_EXPIRED,
    ProblemError,
    TokenExpired,
)

from .accounts import company_for_user
from .selectors import api_user_get

if TYPE_CHECKING:
    from rest_framework.views import APIView


class CompanyTokenObtainPairSerializer(TokenObtainPairSerializer):
    """Issue tokens only to API clients of a company; the access token carries company_id."""

    @classmethod
    def get_token(cls, user: Any) -> Token:
        token = super().get_token(user)
        company = company_for_user(user)
        token["company_id"] = str(company.pk) if company else None
        return token

    def validate(self, attrs: dict[str, Any]) -> dict[str, str]:
        data = super().validate(attrs)
        if company_for_user(self.user) is None:
            raise ProblemError(
                "This user is not an API client of any company; create one with "
                "`manage.py create_api_client`.",
                status_code=403,
                code="no_company",
            )
        return data


STALE_REFRESH_TOKEN = "No active account found for the given token; get a new one."


class CompanyTokenRefreshSerializer(TokenRefreshSerializer):
    """simplejwt's refresh, but a token whose user was deleted or deactivated is a 401.

    simplejwt 5.5.1 looks the user up with ``objects.get`` and lets ``DoesNotExist`` escape
    (a 500), and refuses an inactive user with ``AuthenticationFailed``; both are answered as
    the stale token they are: 401 ``invalid_token``.
    """

    def validate(self, attrs: dict[str, Any]) -> dict[str, str]:
        try:
            return super().validate(attrs)
        except ExpiredTokenError:
            raise TokenExpired(REFRESH_TOKEN_EXPIRED) from None
        except InvalidToken:
            raise
        except (get_user_model().DoesNotExist, AuthenticationFailed):
            raise InvalidToken(STALE_REFRESH_TOKEN) from None


# The configured schemes ("Bearer") by their lower-case spelling.
SCHEMES = {
    scheme.encode().lower(): scheme.encode()
    for scheme in (
        jwt_settings.AUTH_HEADER_TYPES
        if isinstance(jwt_settings.AUTH_HEADER_TYPES, list | tuple)
        else (jwt_settings.AUTH_HEADER_TYPES,)
    )
}


class CompanyJWTAuthentication(JWTAuthentication):
    """JWT bearer auth: the user, its membership and its company in one query.

    simplejwt's checks are kept (unknown user, inactive user, revoked token), read from the same
    row, so a deactivated user or a user moved to another company is refused on the next
    request; a token whose ``company_id`` claim is not the user's company is refused.

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
        """
        try:
            return super().get_validated_token(raw_token)
        except InvalidToken:
            for token_class in jwt_settings.AUTH_TOKEN_CLASSES:
                try:
                    token_class(raw_token)
                except ExpiredTokenError:  # signed by us, only its exp has passed
                    raise TokenExpired(ACCESS_TOKEN_EXPIRED) from None
                except TokenError:
                    continue
            raise

    def get_user(self, validated_token: Token) -> Any:
        try:
            user_id = validated_token[jwt_settings.USER_ID_CLAIM]
        except KeyError as exc:
            raise InvalidToken(
                str(_("Token contained no recognizable user identification"))
            ) from exc
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


class ClientRateThrottle(SimpleRateThrottle):
    """Per API client (per IP before authentication), rate from JOBTRAIL_API_RATE_LIMIT."""

    scope = "client"

    def get_rate(self) -> str:
        return settings.JOBTRAIL_API_RATE_LIMIT

    def get_cache_key(self, request: Request, view: "APIView") -> str:
        if request.user and request.user.is_authenticated:
            return f"throttle:client:{request.user.pk}"
        return f"throttle:anon:{self.get_ident(request)}"


class AuthRateThrottle(SimpleRateThrottle):
    """Token endpoints, per IP, rate from JOBTRAIL_AUTH_RATE_LIMIT."""

    scope = "auth"

    def get_rate(self) -> str:
        return settings.JOBTRAIL_AUTH_RATE_LIMIT

    def get_cache_key(self, request: Request, view: "APIView") -> str:
        return f"throttle:auth:{self.get_ident(request)}"
