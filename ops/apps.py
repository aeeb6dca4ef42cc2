from django.apps import AppConfig


class OpsConfig(AppConfig):
    name = "ops"
    verbose_name = "Operations"

    def ready(self) -> None:
        from webhooks import hooks

        from .services import lane_at_work

        hooks.on_working(lane_at_work)
