"""Authentication, permission and throttling for the API (imported by DRF's settings)."""

from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.contrib.auth import get_user_model
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.throttling import SimpleRateThrottle
from rest_framework_simplejwt.authentication import JWTAuthentication
from rest_framework_simplejwt.exceptions import InvalidToken
from rest_framework_simplejwt.serializers import (
    TokenObtainPairSerializer,
    TokenRefreshSerializer,
)
from rest_framework_simplejwt.tokens import Token

from config.problems import ProblemError

from .accounts import company_for_user
from .models import CompanyMember

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
        except InvalidToken:
            raise
        except (get_user_model().DoesNotExist, AuthenticationFailed):
            raise InvalidToken(STALE_REFRESH_TOKEN) from None


class CompanyJWTAuthentication(JWTAuthentication):
    """JWT bearer auth that also loads the user's company (one extra query)."""

    def get_user(self, validated_token: Token) -> Any:
        user: Any = super().get_user(validated_token)
        membership = CompanyMember.objects.select_related("company").filter(user=user).first()
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
