"""Send one claimed delivery over HTTP: signed, pinned to the checked address, no redirects."""

import json
import time
from typing import Any

import urllib3
from django.conf import settings
from django.utils import timezone

from . import services
from .services import AttemptResult, Claim
from .ssrf import Target, UnsafeTarget, check_url

USER_AGENT = "Jobtrail-Webhooks/1.0"


def _post(target: Target, *, body: bytes, headers: dict[str, str]) -> tuple[int, str, str | None]:
    timeout = float(settings.JOBTRAIL_WEBHOOK_TIMEOUT)
    address = target.addresses[0]
    pool_kwargs: dict[str, Any] = {
        "timeout": urllib3.Timeout(connect=min(timeout, 5.0), read=timeout),
        "retries": False,
        "maxsize": 1,
    }
    pool: urllib3.HTTPConnectionPool
    if target.scheme == "https":
        pool = urllib3.HTTPSConnectionPool(
            address,
            target.port,
            server_hostname=target.host,
            assert_hostname=target.host,
            cert_reqs="CERT_REQUIRED",
            **pool_kwargs,
        )
    else:
        pool = urllib3.HTTPConnectionPool(address, target.port, **pool_kwargs)
    default_port = 443 if target.scheme == "https" else 80
    host = target.host if target.port == default_port else f"{target.host}:{target.port}"
    if ":" in target.host and target.port == default_port:
        host = f"[{target.host}]"
    try:
        response = pool.urlopen(
            "POST",
            target.path,
            body=body,
            headers={**headers, "Host": host},
            redirect=False,
            retries=False,
            preload_content=False,
            assert_same_host=False,
        )
        try:
            content = response.read(services.RESPONSE_BODY_LIMIT, decode_content=True)
        finally:
            response.release_conn()
        text = content.decode("utf-8", errors="replace")
        return response.status, text, response.headers.get("Retry-After")
    finally:
        pool.close()


def deliver(delivery_id: Any) -> None:
    """Make one attempt at a due delivery, if nobody else is making it."""
    claim: Claim | None = services.delivery_claim(delivery_id=delivery_id)
    if claim is None:
        return
    endpoint = claim.endpoint
    if not endpoint.is_active:
        if endpoint.disabled_reason:  # disabled by the receiver (410): give up
            services.delivery_abandon(claim=claim, reason=endpoint.disabled_reason)
        else:  # paused by the client: hold it until the endpoint is active again
            services.delivery_defer(claim=claim)
        return
    delivery = claim.delivery
    body = json.dumps(delivery.payload, separators=(",", ":"), ensure_ascii=False)
    now = timezone.now()
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "webhook-id": delivery.event_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": services.signature_header(
            endpoint, msg_id=delivery.event_id, timestamp=now, body=body
        ),
    }
    started = time.monotonic()
    try:
        target = check_url(endpoint.url)
        status, text, retry_after = _post(target, body=body.encode(), headers=headers)
        result = AttemptResult(
            started_at=now,
            duration_ms=int((time.monotonic() - started) * 1000),
            status_code=status,
            response_body=text,
            retry_after=retry_after,
        )
    except UnsafeTarget as exc:
        result = AttemptResult(
            started_at=now,
            duration_ms=int((time.monotonic() - started) * 1000),
            error=f"Refused by the SSRF guard: {exc}",
        )
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        result = AttemptResult(
            started_at=now,
            duration_ms=int((time.monotonic() - started) * 1000),
            error=f"{type(exc).__name__}: {exc}"[:2000],
        )
    services.delivery_record_attempt(claim=claim, result=result)
