"""A typed client generated from the live /api/schema/ runs the README walkthrough's API calls.

openapi-python-client (a dev dependency) writes the client into a temp dir; the test imports
it and drives a live stack (gunicorn, worker, beat) through it, asserting on the typed models
it returns. A document that disagrees with the server breaks the generated client here.
"""

import importlib
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import requests

from tests.e2e.stack import Stack, wait_until
from tests.factories import ApiClientFactory, CompanyFactory

pytestmark = [pytest.mark.e2e, pytest.mark.postgres, pytest.mark.redis]

GENERATOR = Path(sys.executable).parent / "openapi-python-client"
PACKAGE = "jobtrail_api_client"


@pytest.fixture
def client_package(stack: Stack, tmp_path: Path) -> Iterator[ModuleType]:
    document = tmp_path / "openapi.json"
    response = requests.get(f"{stack.api}/api/schema/", {"format": "json"}, timeout=60)
    assert response.status_code == 200
    document.write_bytes(response.content)
    out = tmp_path / "generated"
    out.mkdir()
    result = subprocess.run(
        [str(GENERATOR), "generate", "--path", str(document), "--meta", "none"],
        cwd=out,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    sys.path.insert(0, str(out))
    try:
        yield importlib.import_module(PACKAGE)
    finally:
        sys.path.remove(str(out))
        for name in [n for n in sys.modules if n == PACKAGE or n.startswith(PACKAGE + ".")]:
            del sys.modules[name]


def _module(name: str) -> Any:
    return importlib.import_module(f"{PACKAGE}.{name}")


def test_the_readme_walkthrough_through_a_generated_typed_client(
    stack: Stack, client_package: ModuleType
) -> None:
    models = _module("models")
    token_create = _module("api.auth.api_v1_auth_token_create")
    jobs_create = _module("api.jobs.api_v1_jobs_create")
    jobs_retrieve = _module("api.jobs.api_v1_jobs_retrieve")
    jobs_list = _module("api.jobs.api_v1_jobs_list")
    events_create = _module("api.jobs.api_v1_jobs_events_create")
    events_list = _module("api.jobs.api_v1_jobs_events_list")
    push_create = _module("api.push_results.api_v1_jobs_push_results_create")
    push_list = _module("api.push_results.api_v1_jobs_push_results_list")
    export_event = _module("api.seed_compatible.api_v1_export_job_events_create")
    export_status = _module("api.seed_compatible.services_rest_v1_export_job_status_create")
    engine_job = _module("api.seed_compatible.engine_api_api_jobs_retrieve")
    endpoint_create = _module("api.webhooks.api_v1_webhook_endpoints_create")
    deliveries_list = _module("api.webhooks.api_v1_webhook_deliveries_list")

    ApiClientFactory(company=CompanyFactory(name="Typed Co"), username="typed-client")
    anonymous = client_package.Client(base_url=stack.api, raise_on_unexpected_status=True)

    # 1. a token
    pair = token_create.sync(
        client=anonymous,
        body=models.CompanyTokenObtainPair(username="typed-client", password="pass-word-123"),
    )
    assert isinstance(pair, models.TokenPair)
    api = client_package.AuthenticatedClient(
        base_url=stack.api, token=pair.access, raise_on_unexpected_status=True
    )

    # 2. create a job, with an Idempotency-Key: a retry answers the same job
    body = models.JobCreateInput(type_="export", code="TYPED-1", total_records=2)
    key = str(uuid.uuid4())
    created = jobs_create.sync_detailed(client=api, body=body, idempotency_key=key)
    assert created.status_code == 201
    job = created.parsed
    assert isinstance(job, models.Job)
    assert job.status == models.JobStatusEnum.PENDING and job.total_records == 2
    replay = jobs_create.sync_detailed(client=api, body=body, idempotency_key=key)
    assert replay.parsed.id == job.id and replay.headers["Idempotent-Replayed"] == "true"

    # 3. the integration starts it
    started = events_create.sync(
        job.id, client=api, body=models.EventCreateInput(status=models.ReportableEventEnum.STARTED)
    )
    assert isinstance(started, models.JobEventCreated)
    assert started.job.status == models.JobStatusEnum.PROCESSING

    # 4. a push result, as the accounting data service sends it (an unknown key is listed back)
    data = models.PushEventData(
        push_communication_id="60473b57f0cdd1683ca71f60",
        status=models.PushStatusEnum.SUCCESS,
        service_name="quickbooks",
        data_type="invoices",
        source_object_ids=["354"],
        response_code=200,
    )
    data.additional_properties["validationErrors"] = []
    recorded = push_create.sync(
        job.id,
        client=api,
        body=models.PushEventInput(data=data, request_id="a3b4fc83-3e24-41aa-ba99-13cab09b0b7a"),
    )
    assert isinstance(recorded, models.PushRecorded)
    assert recorded.status == models.PushStatusEnum.SUCCESS
    assert recorded.ignored_fields == ["validationErrors"]

    # 5. complete it through the seed 000 endpoint
    completed = export_event.sync(
        client=api,
        body=models.ExportJobEventInput(
            job_id=str(job.id), event=models.ReportableEventEnum.COMPLETED
        ),
    )
    assert isinstance(completed, models.ExportJobEventOutput)
    assert completed.status == "completed"

    # 6. poll it: v1, the export job status API, the API jobs API
    polled = jobs_retrieve.sync_detailed(job.id, client=api)
    assert isinstance(polled.parsed, models.Job)
    assert polled.parsed.status == models.JobStatusEnum.COMPLETED
    assert polled.parsed.push_results.success == 1
    assert "Retry-After" not in polled.headers  # finished: nothing to wait for

    def seed_002() -> Any:
        return export_status.sync(client=api, body=models.ExportJobStatusInput(job_code="TYPED-1"))

    # RUNNING until the worker has built the CSV: SUCCESSFUL comes with its link (seed 002)
    successful = models.ExportJobStatusEnum.SUCCESSFUL
    wait_until(lambda: seed_002().status == successful, 30, "seed 002 SUCCESSFUL")
    status = seed_002()
    assert isinstance(status, models.ExportJobStatusOutput)
    assert status.successful and str(status.file_path).startswith("http")
    engine = engine_job.sync(job.id, client=api)
    assert isinstance(engine, models.ApiJobOutput)
    assert engine.status == models.ApiJobStatusEnum.COMPLETED

    # lists: typed pages
    page = jobs_list.sync(client=api, page_size=10)
    assert isinstance(page, models.PaginatedJobList)
    assert [j.code for j in page.results] == ["TYPED-1"] and page.next_ is None
    timeline = events_list.sync(job.id, client=api)
    assert isinstance(timeline, models.PaginatedJobEventList)
    assert [e.status for e in timeline.results] == [
        models.EventStatusEnum.CREATED,
        models.EventStatusEnum.STARTED,
        models.EventStatusEnum.COMPLETED,
    ]
    pushes = push_list.sync(job.id, client=api)
    assert isinstance(pushes, models.PaginatedPushResultList)
    assert [p.push_communication_id for p in pushes.results] == ["60473b57f0cdd1683ca71f60"]

    # a finished job refuses later events: a typed problem document
    refused = events_create.sync_detailed(
        job.id,
        client=api,
        body=models.EventCreateInput(
            status=models.ReportableEventEnum.FAILED,
            failure_reason=models.FailureReasonEnum.SERVICE_TIMEOUT,
        ),
    )
    assert refused.status_code == 409
    assert isinstance(refused.parsed, models.Problem) and refused.parsed.code == "job_finished"

    # 7. an integration endpoint gets every new job's hand-off
    endpoint = endpoint_create.sync(
        client=api,
        body=models.EndpointInput(
            url="http://127.0.0.1:9/jobtrail-jobs", role=models.RoleEnum.INTEGRATION
        ),
    )
    assert isinstance(endpoint, models.EndpointWithSecret)
    assert endpoint.role == models.RoleEnum.INTEGRATION and endpoint.secret.startswith("whsec_")
    job2 = jobs_create.sync(client=api, body=models.JobCreateInput(type_="export", code="TYPED-2"))

    def handed_off() -> bool:
        deliveries = deliveries_list.sync(client=api, object_id=str(job2.id))
        return any(d.handoff for d in deliveries.results)

    wait_until(handed_off, 30, "the hand-off delivery")
    deliveries = deliveries_list.sync(client=api, object_id=str(job2.id))
    assert isinstance(deliveries, models.PaginatedDeliveryList)
    assert deliveries.results[0].events_id == "jobs.create"
