"""Push results straight from the accounting data service (seed 001), at one URL per company.

The sender is configured once with a company's ingest URL (``/api/v1/push-ingest/{company}/``)
and cannot name a Jobtrail job. It signs every webhook with a secret the company shares with
Jobtrail (``Railz-Signature: t=<ms>,v=<hex HMAC-SHA256 of "<t>.<body>">``, the scheme that
sender uses). A push finds its job by a correlation the integration registered on the job when
it started the push: the push's ``pushCommunicationId`` or its ``requestId``. A push that comes
first is kept as an ``UnmatchedPush`` (staff see it in the admin) and recorded on its job when
the registration arrives. Recording is ``services.push_result_record`` either way: the same
``push_result`` event, the same counts on the job row, in the same transaction.

Matching and registering take the company's row lock, so a push and the registration that
matches it cannot pass each other unseen (each sees the other's committed row).
"""

import hashlib
import hmac
import secrets
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from config.transactions import atomic_service

from .errors import IngestSignatureInvalid, PushCorrelationTaken
from .models import (
    Company,
    PushCorrelation,
    PushCorrelationKind,
    PushIngestKey,
    PushResult,
    UnmatchedPush,
)
from .services import PushResultData, lock_job, push_result_check_size, push_result_record

SIGNATURE_HEADER = "Railz-Signature"
SECRET_OVERLAP = timedelta(hours=24)  # the previous secret keeps verifying this long
MILLISECONDS = 10**11  # a ``t=`` above this is in milliseconds (the sender's), else seconds


# --- the secret -------------------------------------------------------------------------------


def generate_ingest_secret() -> str:
    return "pish_" + secrets.token_urlsafe(32)


@transaction.atomic
def ingest_secret_set(*, company: Company, secret: str | None = None) -> tuple[PushIngestKey, str]:
    """Set (or rotate to) ``secret``, or a generated one; return the key and the new secret.

    The previous secret keeps verifying for ``SECRET_OVERLAP``; rotating twice drops it at once.
    """
    new = secret or generate_ingest_secret()
    key = PushIngestKey.objects.select_for_update().filter(company=company).first()
    if key is None:
        key = PushIngestKey.objects.create(company=company, secret=new)
        return key, new
    key.previous_secret = key.secret
    key.previous_secret_expires_at = timezone.now() + SECRET_OVERLAP
    key.secret = new
    key.save()
    return key, new


def _secrets_in_use(key: PushIngestKey, now: datetime) -> list[str]:
    in_use = [key.secret]
    if (
        key.previous_secret
        and key.previous_secret_expires_at
        and key.previous_secret_expires_at > now
    ):
        in_use.append(key.previous_secret)
    return in_use


def signature(secret: str, *, timestamp: str, body: bytes) -> str:
    """The hex HMAC-SHA256 the sender puts in ``v=``: of ``"<t>." + body``."""
    return hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def _parse_header(header: str) -> tuple[str, list[str]]:
    timestamp, signatures = "", []
    for element in header.split(","):
        name, _, value = element.strip().partition("=")
        if name == "t":
            timestamp = value.strip()
        elif name in ("v", "v1"):
            signatures.append(value.strip().lower())
    return timestamp, signatures


def ingest_verify(*, company_id: Any, body: bytes, header: str | None) -> Company:
    """The company whose ingest secret signed ``body``; ``IngestSignatureInvalid`` otherwise.

    The timestamp must be within ``JOBTRAIL_PUSH_INGEST_TOLERANCE`` seconds of now (a captured
    request cannot be replayed later). An unknown company answers the same as a bad signature.
    """
    now = timezone.now()
    refused = IngestSignatureInvalid(
        f"A valid {SIGNATURE_HEADER} header is required: t=<timestamp>,v=<hex HMAC-SHA256 of "
        "'<t>.<body>' with your company's push ingest secret>."
    )
    if not header:
        raise refused
    timestamp, signatures = _parse_header(header)
    # ASCII digits only ("²".isdigit() is true), at most milliseconds' worth of them
    if not (timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= 16):
        raise refused
    signatures = [given for given in signatures if given.isascii()]  # compare_digest: ASCII
    if not signatures:
        raise refused
    sent = int(timestamp)
    sent_seconds = sent / 1000 if sent > MILLISECONDS else sent
    if abs(now.timestamp() - sent_seconds) > settings.JOBTRAIL_PUSH_INGEST_TOLERANCE:
        raise IngestSignatureInvalid(
            f"The {SIGNATURE_HEADER} timestamp is more than "
            f"{settings.JOBTRAIL_PUSH_INGEST_TOLERANCE} s away from now."
        )
    try:
        key = PushIngestKey.objects.select_related("company").get(company_id=company_id)
    except (PushIngestKey.DoesNotExist, ValueError, TypeError):
        raise refused from None
    for secret in _secrets_in_use(key, now):
        expected = signature(secret, timestamp=timestamp, body=body)
        if any(hmac.compare_digest(expected, given) for given in signatures):
            return key.company
    raise refused


# --- pushes and their jobs --------------------------------------------------------------------


def push_data_to_json(data: PushResultData) -> dict[str, Any]:
    values = asdict(data)
    for name in ("requested_on", "completed_on"):
        if values[name] is not None:
            values[name] = values[name].isoformat()
    return values


def push_data_from_json(values: dict[str, Any]) -> PushResultData:
    values = dict(values)
    for name in ("requested_on", "completed_on"):
        if values.get(name):
            values[name] = parse_datetime(values[name])
    return PushResultData(**values)


@dataclass(frozen=True)
class Ingested:
    """What became of a push at the ingest URL."""

    outcome: str  # "attached", "duplicate" (already recorded on its job) or "unmatched"
    job_id: Any = None
    result: PushResult | None = None


def _lock_company(company: Company) -> None:
    """Serialise this company's ingests and registrations (see the module docstring)."""
    list(Company.objects.select_for_update().filter(pk=company.pk).values_list("pk"))


def _correlated_job(company: Company, data: PushResultData) -> Any:
    """The job a push belongs to: its pushCommunicationId's, else its requestId's."""
    wanted = Q(kind=PushCorrelationKind.PUSH_COMMUNICATION_ID, value=data.push_communication_id)
    if data.request_id:
        wanted |= Q(kind=PushCorrelationKind.REQUEST_ID, value=data.request_id)
    found = dict(
        PushCorrelation.objects.filter(wanted, company=company).values_list("kind", "job_id")
    )
    return found.get(PushCorrelationKind.PUSH_COMMUNICATION_ID) or found.get(
        PushCorrelationKind.REQUEST_ID
    )


@atomic_service
def push_ingest(*, company: Company, data: PushResultData) -> Ingested:
    """Record a push on its correlated job, or keep it unmatched until its job registers.

    A repeat is idempotent: the same push on a job is not recorded twice, and an unmatched
    push is kept once.
    """
    push_result_check_size(data)
    _lock_company(company)
    job_id = _correlated_job(company, data)
    if job_id is not None:
        result, created = push_result_record(job_id=job_id, data=data, company=company)
        return Ingested("attached" if created else "duplicate", job_id=job_id, result=result)
    UnmatchedPush.objects.get_or_create(
        company=company,
        push_communication_id=data.push_communication_id,
        defaults={
            "request_id": data.request_id,
            "status": data.status,
            "data": push_data_to_json(data),
        },
    )
    return Ingested("unmatched")


@atomic_service
def push_correlation_register(
    *,
    job_id: Any,
    company: Company,
    push_communication_id: str = "",
    request_id: str = "",
) -> tuple[list[PushCorrelation], int]:
    """Register the ids of a push the integration started on the job; attach what waits.

    Registering an id the job has already is a no-op; an id of another job of the company is
    ``PushCorrelationTaken``. Returns the job's correlations for these ids and how many
    unmatched pushes were recorded on the job now.
    """
    _lock_company(company)
    job = lock_job(job_id, company=company)  # JobNotFound for another company's job
    wanted = [
        (kind, value)
        for kind, value in (
            (PushCorrelationKind.PUSH_COMMUNICATION_ID, push_communication_id),
            (PushCorrelationKind.REQUEST_ID, request_id),
        )
        if value
    ]
    correlations = []
    for kind, value in wanted:
        existing = PushCorrelation.objects.filter(company=company, kind=kind, value=value).first()
        if existing is not None and existing.job_id != job.pk:
            raise PushCorrelationTaken(
                f"{kind} '{value}' is registered on another job of your company.", field=kind
            )
        if existing is None:
            try:
                with transaction.atomic():
                    existing = PushCorrelation.objects.create(
                        company=company, job=job, kind=kind, value=value
                    )
            except IntegrityError:  # pragma: no cover - the company lock serialises these
                raise PushCorrelationTaken(f"{kind} '{value}' is already registered.") from None
        correlations.append(existing)
    waiting = Q(pk__in=[])  # nothing, unless an id below names it
    if push_communication_id:
        waiting |= Q(push_communication_id=push_communication_id)
    if request_id:
        waiting |= Q(request_id=request_id)
    attached = 0
    pushes = UnmatchedPush.objects.filter(waiting, company=company, attached_at__isnull=True)
    for push in pushes.order_by("id"):
        push_result_record(job_id=job.pk, data=push_data_from_json(push.data), company=company)
        push.job_id, push.attached_at = job.pk, timezone.now()
        push.save(update_fields=["job", "attached_at"])
        attached += 1
    return correlations, attached
