"""System checks of the webhook settings (``manage.py check --deploy``)."""

from typing import Any

from django.conf import settings
from django.core import checks


@checks.register(checks.Tags.security, deploy=True)
def private_targets_check(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """``JOBTRAIL_WEBHOOK_ALLOW_PRIVATE_TARGETS`` lifts the SSRF guard (local runs and tests):
    set by mistake in a deployment, any company's endpoint could reach the host's own
    services, so the deployment check says so."""
    if settings.JOBTRAIL_WEBHOOK_ALLOW_PRIVATE_TARGETS and not settings.DEBUG:
        return [
            checks.Warning(
                "JOBTRAIL_WEBHOOK_ALLOW_PRIVATE_TARGETS is on: webhook endpoints may target "
                "loopback, private and link-local addresses (the SSRF guard is lifted).",
                hint="Leave it unset in a deployment; it is for local runs and tests.",
                id="jobtrail.W001",
            )
        ]
    return []
