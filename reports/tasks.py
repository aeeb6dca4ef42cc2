import logging
from datetime import datetime
from typing import Any

from celery import shared_task

from . import services

logger = logging.getLogger(__name__)


@shared_task(name="reports.queue_pending_reports", ignore_result=True)
def queue_pending_reports() -> int:
    """Queue the builds that were lost (broker outage while the job finished)."""
    return services.reports_queue_pending()


@shared_task(
    name="reports.build_job_report",
    bind=True,
    acks_late=True,
    ignore_result=True,
    max_retries=3,
    default_retry_delay=30,
)
def build_job_report(self: Any, job_id: str, held: str | None = None) -> None:
    """Build a finished job's CSV report: retried on failure; the last try's failure marks the
    report failed, unless it was requested again meanwhile (that request's build decides). A
    try that could not even claim the report (the database away) leaves it pending: the sweep
    queues it again. A try that could not give its claim back hands it to the retry (``held``:
    the lease's end, ``services.ClaimKept``)."""
    last_try = self.request.retries >= self.max_retries
    try:
        services.report_build(
            job_id=job_id,
            last_try=last_try,
            held=datetime.fromisoformat(held) if held else None,
        )
    except Exception as exc:
        if last_try:
            logger.exception("report for job %s failed", job_id)
            return
        # the claim this try kept, or the one it was handed and could not take (the database
        # still away): a token that no longer matches takes nothing
        token = exc.held.isoformat() if isinstance(exc, services.ClaimKept) else held
        kwargs = {"held": token} if token else {}
        raise self.retry(exc=exc, args=(job_id,), kwargs=kwargs) from exc
