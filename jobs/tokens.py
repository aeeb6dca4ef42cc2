"""Token revocation: a password change, deactivation or removal from the company ends every
access and refresh token issued before it.

Every token carries ``tv``, its user's company membership and that membership's
``token_version`` (``"<membership id>.<version>"``). Authentication (``jobs.auth``) reads the
user and the membership in its one query anyway, so checking the claim costs no query:
``token_revoked`` is the whole check, for access tokens and for refresh alike.

- A password change or an ``is_active`` change (any code path that saves the user: the admin,
  ``changepassword``, ``create_api_client --password``, ``set_password`` + ``save``) bumps the
  version, in the same transaction as the save (``revoke_on_credential_change``).
- Removing the user from its company deletes the membership: no membership, no valid token; a
  new membership has a new id, so the old tokens stay dead when the user is added back.
- A membership row given to another user or company (the console's company page can re-point
  a member row) bumps its version too (``revoke_on_member_change``): without it the row's
  first user, given the row back later, would find its old tokens valid again.
"""

from typing import Any

from django.db.models import F

from .models import CompanyMember

TOKEN_VERSION_CLAIM = "tv"
_CREDENTIALS = "_jobtrail_credentials"


def token_version(membership: CompanyMember) -> str:
    """The ``tv`` claim of tokens issued now to the member."""
    return f"{membership.pk}.{membership.token_version}"


def token_revoked(claims: Any, membership: CompanyMember | None) -> bool:
    """Whether a token (its claims: a simplejwt ``Token`` or a mapping) was issued before a
    revocation. No query: ``membership`` comes with the user."""
    return membership is None or claims.get(TOKEN_VERSION_CLAIM) != token_version(membership)


def tokens_revoke(*, user_id: Any) -> int:
    """End every token issued so far to the user (one UPDATE); return the rows changed."""
    return CompanyMember.objects.filter(user_id=user_id).update(
        token_version=F("token_version") + 1
    )


# --- the user model's signals, connected in JobsConfig.ready() ---------------------------------


def _credentials(user: Any) -> tuple[Any, Any] | None:
    """The user's password hash and active flag as loaded, or None if one was deferred.

    Read from ``__dict__``: touching a deferred field would cost a query per instance.
    """
    loaded = user.__dict__
    if "password" not in loaded or "is_active" not in loaded:
        return None
    return (loaded["password"], loaded["is_active"])


def remember_credentials(sender: Any, instance: Any, **kwargs: Any) -> None:
    """post_init: keep what the row said, to notice a change when it is saved."""
    setattr(instance, _CREDENTIALS, _credentials(instance))


def revoke_on_credential_change(sender: Any, instance: Any, **kwargs: Any) -> None:
    """pre_save: a changed password or active flag revokes the user's tokens."""
    if instance.pk is None:
        return
    before = getattr(instance, _CREDENTIALS, None)
    now = _credentials(instance)
    if before is not None and now is not None and now != before:
        tokens_revoke(user_id=instance.pk)
        # a membership already loaded with this user must not mint tokens of the old version
        cached = instance._state.fields_cache.get("company_membership")
        if cached is not None:
            cached.refresh_from_db(fields=["token_version"])
    setattr(instance, _CREDENTIALS, now)


def revoke_on_member_change(sender: Any, instance: CompanyMember, **kwargs: Any) -> None:
    """pre_save of a membership: another user or company on an existing row revokes the tokens
    issued for the row so far (one query, only when a membership is saved)."""
    if instance.pk is None:
        return
    stored = (
        CompanyMember.objects.filter(pk=instance.pk)
        .values_list("user_id", "company_id", "token_version")
        .first()
    )
    if stored is not None and stored[:2] != (instance.user_id, instance.company_id):
        instance.token_version = max(instance.token_version, stored[2]) + 1
