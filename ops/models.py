"""Heartbeats of the background processes (beat and worker), one row each."""

from django.db import models


class Heartbeat(models.Model):
    name = models.CharField(max_length=32, primary_key=True, help_text="beat or worker")
    beat_at = models.DateTimeField()
    hostname = models.CharField(max_length=255, blank=True, default="")

    def __str__(self) -> str:
        return f"{self.name} at {self.beat_at:%Y-%m-%d %H:%M:%S}"
