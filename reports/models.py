"""The CSV result report of a finished job."""

from django.db import models
from django.db.models import Q

from jobs.models import Job


class ReportStatus(models.TextChoices):
    PENDING = "pending"
    READY = "ready"
    FAILED = "failed"


class Report(models.Model):
    job = models.OneToOneField(Job, on_delete=models.CASCADE, related_name="report")
    status = models.CharField(
        max_length=16, choices=ReportStatus.choices, default=ReportStatus.PENDING
    )
    file = models.FileField(upload_to="reports/%Y/%m/", blank=True, max_length=300)
    row_count = models.PositiveIntegerField(null=True, blank=True)
    # The job's push-result count the build read before writing its rows: a ready report whose
    # job counts more now misses a late result (``reports.links.report_outdated``).
    push_count = models.PositiveIntegerField(null=True, blank=True)
    size_bytes = models.PositiveBigIntegerField(null=True, blank=True)
    error = models.TextField(blank=True, default="")
    # The build writing the file holds the report until then (``config.leases``: a build that
    # died frees it when it passes; a new request ends it).
    locked_until = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    ready_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            # Pending reports are few among millions: the sweep and the operations view
            # find the oldest ones through this small partial index.
            models.Index(
                fields=["updated_at"], name="report_pending", condition=Q(status="pending")
            ),
            # The console's list, newest first: a page of a million reports without a sort.
            models.Index(fields=["-created_at", "-id"], name="report_created"),
        ]

    def __str__(self) -> str:
        return f"Report of {self.job_id} ({self.status})"
