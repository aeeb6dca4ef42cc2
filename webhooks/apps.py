from django.apps import AppConfig
from django.db.models.signals import post_migrate


class WebhooksConfig(AppConfig):
    name = "webhooks"
    verbose_name = "Webhooks"

    def ready(self) -> None:
        from config.periodic import register_periodic_tasks

        from . import checks  # noqa: F401  (registers the deployment checks)

        # After django_celery_beat's tables exist: webhooks migrates after it.
        post_migrate.connect(register_periodic_tasks, sender=self, dispatch_uid="jobtrail-periodic")
