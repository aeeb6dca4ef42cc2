from django.apps import AppConfig


class JobsConfig(AppConfig):
    name = "jobs"
    verbose_name = "Jobs"

    def ready(self) -> None:
        from webhooks import hooks

        from . import (
            handoff,
            schema,  # noqa: F401 - registers the OpenAPI auth extension
        )

        # a job's hand-off that fails for good fails the job while it is pending (seed 000)
        hooks.on_handoff_failed(handoff.fail_pending_jobs)
