"""API clients (integration users) and their companies."""

import secrets
from dataclasses import dataclass

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractUser
from django.db import transaction

from .errors import ApiClientError
from .models import Company, CompanyMember


@dataclass(frozen=True)
class ApiClientCredentials:
    user: AbstractUser
    company: Company
    password: str
    company_created: bool


@transaction.atomic
def api_client_create(
    *, company_name: str, username: str, password: str | None = None
) -> ApiClientCredentials:
    """Create (or re-key) an API user in ``company_name``, creating the company if needed."""
    company, company_created = Company.objects.get_or_create(name=company_name)
    User = get_user_model()
    user = User.objects.filter(username=username).first()
    if user is not None:
        membership = CompanyMember.objects.filter(user=user).select_related("company").first()
        if membership is None or membership.company_id != company.pk:
            raise ApiClientError(
                f"User '{username}' already exists and does not belong to '{company_name}'."
            )
        if password is None:
            raise ApiClientError(
                f"API client '{username}' already exists; pass --password to set a new one."
            )
    else:
        user = User.objects.create(username=username)
        CompanyMember.objects.create(user=user, company=company)
    password = password or secrets.token_urlsafe(18)
    user.set_password(password)
    user.save(update_fields=["password"])
    return ApiClientCredentials(
        user=user, company=company, password=password, company_created=company_created
    )


def company_for_user(user: object) -> Company | None:
    """The company an authenticated user acts for, or None (staff-only or unattached users)."""
    membership = getattr(user, "company_membership", None)
    return membership.company if membership is not None else None
