"""Heartbeats of the background processes (beat and worker); outstanding wake-ups; staff
users' time zones."""

from django.conf import settings
from django.db import models


class Heartbeat(models.Model):
    name = models.CharField(max_length=32, primary_key=True, help_text="beat or worker")
    beat_at = models.DateTimeField()
    hostname = models.CharField(max_length=255, blank=True, default="")

    def __str__(self) -> str:
        return f"{self.name} at {self.beat_at:%Y-%m-%d %H:%M:%S}"


class StaffTimeZone(models.Model):
    """The time zone a staff user reads the console in (UTC when the user has none)."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        primary_key=True,
        related_name="+",
    )
    time_zone = models.CharField(max_length=64, help_text="An IANA zone name: Europe/Paris.")
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.user_id}: {self.time_zone}"


class Wakeup(models.Model):
    """Whether a wake-up message for a task is outstanding: published, not yet started on.

    ``config.outbox.publish_wakeup`` sets it and publishes only when none is; the task clears it
    when it starts (``config.outbox.wakeup_consumed``).
    """

    task = models.CharField(max_length=100, primary_key=True)
    pending_since = models.DateTimeField(null=True, blank=True)
    unanswered = models.PositiveIntegerField(
        default=0, help_text="Wake-ups published since a worker last started on one."
    )

    def __str__(self) -> str:
        since = self.pending_since
        return f"{self.task}: wake-up outstanding since {since}" if since else f"{self.task}: none"
