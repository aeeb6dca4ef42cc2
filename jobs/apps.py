from django.apps import AppConfig


class JobsConfig(AppConfig):
    name = "jobs"
    verbose_name = "Jobs"

    def ready(self) -> None:
        from django.contrib.auth import get_user_model
        from django.db.models.signals import post_init, pre_delete, pre_save

        from webhooks import hooks

        from . import (
            audit,
            handoff,
            relay,
            schema,  # noqa: F401 - registers the OpenAPI auth extension
        )
        from .models import CompanyMember
        from .tokens import (
            remember_credentials,
            revoke_on_credential_change,
            revoke_on_member_change,
        )

        # a job's hand-off that fails for good fails the job while it is pending (seed 000)
        hooks.on_handoff_failed(handoff.fail_pending_jobs)
        # a batch sender round relays new events itself (its feeder thread): the relay's own
        # wake-ups can wait behind rounds that hold every worker slot
        hooks.on_relay_batch(relay.relay_batch)
        # Token revocation must follow every code path that changes a password or deactivates
        # a user (the admin, changepassword, set_password + save), hence the model's signals.
        user_model = get_user_model()
        post_init.connect(remember_credentials, sender=user_model, dispatch_uid="jobtrail-tv")
        pre_save.connect(revoke_on_credential_change, sender=user_model, dispatch_uid="jobtrail-tv")
        pre_save.connect(revoke_on_member_change, sender=CompanyMember, dispatch_uid="jobtrail-tv")
        # The admin audit trail outlives staff users: a user whom LogEntry rows name cannot be
        # deleted by any code path (LogEntry.user cascades), hence the model's signal.
        pre_delete.connect(
            audit.refuse_user_with_log_entries, sender=user_model, dispatch_uid="jobtrail-audit"
        )
