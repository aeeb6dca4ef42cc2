"""Example answers, by the component they are an instance of.

``config.schema.postprocess_schema`` gives every successful answer without an example of its
own the one of its component (a list page: a page of one). tests/api/test_schema.py validates
every example of the document against its schema, so an example that stops matching fails.
"""

from typing import Any

JOB_ID = "0b6f3c52-5a1e-4f53-9d8e-5f0a3e1c2b7d"
COMPANY_ID = "aff00be6-f734-4094-a8ae-62874485dac0"
ENDPOINT_ID = "4f0d3c1e-8a2b-4c6d-9e7f-1a2b3c4d5e6f"
DELIVERY_ID = "9c8b7a6f-5e4d-4c3b-8a29-1f0e2d3c4b5a"
T0 = "2026-11-22T10:21:30.000000Z"
T1 = "2026-11-22T10:25:02.000000Z"

JOB: dict[str, Any] = {
    "id": JOB_ID,
    "code": "JOB-7F3K2Q9A",
    "type": "export",
    "company_id": COMPANY_ID,
    "status": "processing",
    "failure_reason": None,
    "message": "Export started",
    "total_records": 773,
    "effected_records": 120,
    "push_results": {"success": 119, "failed": 1},
    "start_time": "2026-11-22T10:21:31.000000Z",
    "end_time": None,
    "expires_at": "2026-11-23T10:25:02.000000Z",
    "report": {"status": "none", "url": None},
    "metadata": {"batch": "2026-11"},
    "created_at": T0,
    "updated_at": T1,
}
JOB_EVENT: dict[str, Any] = {
    "job_id": JOB_ID,
    "sequence": 2,
    "status": "started",
    "failure_reason": None,
    "message": "Export started",
    "data": {},
    "source": "api",
    "actor": "erp-integration",
    "created_at": "2026-11-22T10:21:31.000000Z",
}
PUSH_RESULT: dict[str, Any] = {
    "job_id": JOB_ID,
    "push_communication_id": "60473b57f0cdd1683ca71f60",
    "status": "failed",
    "response_code": 400,
    "connection_id": "CON-0a4e97aa-7a77-bbbb-00aa-b1b1001aa00",
    "business_name": "BIZ-d6b1c7d3-fe41-4447-ae72-3814b78b5142",
    "service_name": "quickbooks",
    "data_type": "invoices",
    "source_object_ids": ["354"],
    "requested_on": "2021-03-09T19:56:03.952000Z",
    "completed_on": "2021-03-09T19:56:04.120000Z",
    "validation_errors": [
        {
            "field": "currencyRef",
            "message": "Business Validation Error: Multi Currency should be enabled.",
        }
    ],
    "service_account_ref": {"id": "DEV", "entityRef": {"id": "100"}},
    "request_id": "a3b4fc83-3e24-41aa-ba99-13cab09b0b7a",
    "received_at": "2026-11-22T10:24:00.000000Z",
}
ENDPOINT: dict[str, Any] = {
    "id": ENDPOINT_ID,
    "url": "https://erp.example.com/jobtrail/webhooks",
    "role": "subscriber",
    "events": ["jobs.completed", "jobs.failed"],
    "description": "ERP sync",
    "is_active": True,
    "disabled_reason": "",
    "created_at": T0,
    "updated_at": T0,
}
DELIVERY: dict[str, Any] = {
    "id": DELIVERY_ID,
    "endpoint_id": ENDPOINT_ID,
    "event_id": "msg_5b2d8e0f3c1a4b7e9d6f2a1c3e5b7d9f",
    "events_id": "jobs.completed",
    "object_id": JOB_ID,
    "handoff": False,
    "status": "delivered",
    "attempts": 1,
    "next_attempt_at": None,
    "last_status_code": 200,
    "last_error": "",
    "delivered_at": "2026-11-22T10:30:01.000000Z",
    "created_at": "2026-11-22T10:30:00.000000Z",
    "updated_at": "2026-11-22T10:30:01.000000Z",
}
PUSH_INGEST: dict[str, Any] = {
    "url": f"https://jobtrail.example.com/api/v1/push-ingest/{COMPANY_ID}/",
    "signature_header": "Railz-Signature",
    "secret_configured": True,
    "previous_secret_expires_at": None,
}
PUSH_CORRELATION: dict[str, Any] = {
    "kind": "push_communication_id",
    "value": "60473b57f0cdd1683ca71f60",
    "created_at": T0,
}

BY_COMPONENT: dict[str, Any] = {
    "Job": JOB,
    "JobEvent": JOB_EVENT,
    "JobEventCreated": {**JOB_EVENT, "job": {**JOB, "effected_records": 0}},
    "PushResult": PUSH_RESULT,
    "PushRecorded": {**PUSH_RESULT, "ignored_fields": []},
    "Endpoint": ENDPOINT,
    "EndpointWithSecret": {**ENDPOINT, "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"},
    "Delivery": DELIVERY,
    "DeliveryDetail": {
        **DELIVERY,
        "payload": {
            "event": {
                "dt": "2026-11-22T10:30:00.000000+00:00",
                "events_id": "jobs.completed",
                "object_id": JOB_ID,
            },
            "data": {**JOB, "status": "completed"},
        },
        "attempt_log": [
            {
                "number": 1,
                "trigger": "scheduled",
                "started_at": "2026-11-22T10:30:00.500000Z",
                "duration_ms": 120,
                "status_code": 200,
                "response_body": "ok",
                "error": "",
            }
        ],
    },
    "Redelivered": {"redelivered": 3},
    "EventType": {"id": "jobs.completed", "description": "A job completed."},
    "PushIngest": PUSH_INGEST,
    "PushIngestWithSecret": {**PUSH_INGEST, "secret": "generated-secret-shown-once-1f2e3d"},
    "Ingested": {
        "status": "attached",
        "job_id": JOB_ID,
        "push_communication_id": "60473b57f0cdd1683ca71f60",
        "push_result": PUSH_RESULT,
        "ignored_fields": [],
    },
    "PushCorrelation": PUSH_CORRELATION,
    "PushCorrelationsRegistered": {
        "job_id": JOB_ID,
        "correlations": [PUSH_CORRELATION],
        "attached": 0,
    },
    "ExportJobEventOutput": {
        "jobId": JOB_ID,
        "jobCode": "JOB-7F3K2Q9A",
        "event": "started",
        "failureReason": None,
        "message": "",
        "sequence": 2,
        "status": "processing",
        "createdAt": "2026-11-22T10:21:31.000000Z",
    },
    "ExportJobStatusOutput": {
        "successful": True,
        "message": "Export started",
        "errors": [],
        "warnings": [],
        "status": "RUNNING",
        "filePath": None,
    },
    "ApiJobOutput": {
        "id": JOB_ID,
        "type": "export",
        "company_id": COMPANY_ID,
        "start_time": "2026-11-22T10:21:31.000000Z",
        "end_time": None,
        "status": "processing",
        "message": "Export started",
        "total_records": 773,
        "effected_records": 120,
        "created_at": T0,
        "updated_at": T1,
    },
    "TokenPair": {"access": "eyJhbGciOiJIUzI1NiIs...", "refresh": "eyJhbGciOiJIUzI1NiIs..."},
    "AccessToken": {"access": "eyJhbGciOiJIUzI1NiIs..."},
}
NEXT_PAGE = "https://jobtrail.example.com/api/v1/jobs/?cursor=cD0yMDI2LTExLTIy&page_size=1"
