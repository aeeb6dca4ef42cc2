"""Seed 001's two example push webhooks, as the seed prints them, and the sender's signature.

The success example carries a trailing comma after ``serviceAccountRef`` (a typo in the
document: the sender's JSON is valid), so ``SUCCESS`` is that text with the one comma removed
and ``SUCCESS_AS_PRINTED`` the text itself. ``FAILED`` is printed valid (it spells the ids'
field ``sourceObjectId``).
"""

import hashlib
import hmac
import time

SUCCESS_AS_PRINTED = (
    "{\n"
    '"data": {\n'
    '"event": "push",\n'
    '"connectionId": "CON-0a4e97aa-7a77-bbbb-00aa-b1b1001aa00",\n'
    '"businessName": "BIZ-d6b1c7d3-fe41-4447-ae72-3814b78b5142",\n'
    '"serviceName": "quickbooks",\n'
    '"dataType": "invoices",\n'
    '"pushCommunicationId": "60473b57f0cdd1683ca71f60",\n'
    '"sourceObjectIds": ["354"],\n'
    '"requestedOn": "2021-03-09T19:56:03.952Z",\n'
    '"completedOn": "2021-03-09T19:56:03.952Z",\n'
    '"status": "success",\n'
    '"responseCode": 200,\n'
    '"serviceAccountRef": {\n'
    '"id": "DEV",\n'
    '"entityRef": {\n'
    '"id": "100"\n'
    "}\n"
    "},\n"
    "},\n"
    '"requestId": "a3b4fc83-3e24-41aa-ba99-13cab09b0b7a"\n'
    "}"
)
SUCCESS = SUCCESS_AS_PRINTED.replace('}\n},\n},\n"requestId"', '}\n}\n},\n"requestId"')
FAILED = (
    "{\n"
    '"data": {\n'
    '"event": "push",\n'
    '"connectionId": "CON-0a4e97aa-7a77-bbbb-00aa-b1b1001aa00",\n'
    '"businessName": "BIZ-d6b1c7d3-fe41-4447-ae72-3814b78b5142",\n'
    '"serviceName": "quickbooks",\n'
    '"dataType": "invoices",\n'
    '"pushCommunicationId": "60473b57f0cdd1683ca71f60",\n'
    '"sourceObjectId": ["354"],\n'
    '"requestedOn": "2021-03-09T19:56:03.952Z",\n'
    '"completedOn": "2021-03-09T19:56:03.952Z",\n'
    '"status": "failed",\n'
    '"responseCode": 400,\n'
    '"serviceAccountRef": {\n'
    '"id": "DEV",\n'
    '"entityRef": {\n'
    '"id": "100"\n'
    "}\n"
    "},\n"
    '"validation": {\n'
    '"errors": [\n'
    "{\n"
    '"field": "currencyRef",\n'
    '"message": "Business Validation Error: Multi Currency should be enabled to perform '
    'this operation."\n'
    "}\n"
    "]\n"
    "}\n"
    "},\n"
    '"requestId": "a3b4fc83-3e24-41aa-ba99-13cab09b0b7a"\n'
    "}"
)
PUSH_COMMUNICATION_ID = "60473b57f0cdd1683ca71f60"
REQUEST_ID = "a3b4fc83-3e24-41aa-ba99-13cab09b0b7a"


def railz_signature(secret: str, body: bytes, *, at: float | None = None) -> str:
    """``Railz-Signature`` as the accounting data service sends it: t in ms, hex HMAC-SHA256."""
    t = str(int((time.time() if at is None else at) * 1000))
    digest = hmac.new(secret.encode(), t.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"t={t},v={digest}"
