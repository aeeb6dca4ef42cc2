"""Input serializers reuse their bound fields within a thread (``StrictSerializer``): each
validation still sees its own data, errors and context, and a serializer created while another
of its class is validating builds its own fields."""

import threading
from typing import Any

from jobs.serializers import EventCreateInput, JobProgressInput


def test_the_next_instance_reuses_the_fields_and_validates_its_own_data() -> None:
    first = EventCreateInput(data={"status": "started"})
    assert first.is_valid(), first.errors
    second = EventCreateInput(data={"status": "nope"}, context={"who": "second"})

    assert second.fields is first.fields  # handed on, not deep-copied again
    assert all(field.parent is second for field in second.fields.values())
    assert all(field.context == {"who": "second"} for field in second.fields.values())
    assert not second.is_valid()
    assert "status" in second.errors
    assert dict(first.validated_data) == {"status": "started"}
    third = EventCreateInput(data={"status": "completed", "effected_records": 3})
    assert third.is_valid(), third.errors
    assert dict(third.validated_data)["effected_records"] == 3


def test_an_instance_made_while_another_holds_the_fields_builds_its_own() -> None:
    warm = JobProgressInput(data={"effected_records": 1})
    assert warm.is_valid()
    holding = JobProgressInput(data={"effected_records": 2})
    assert holding.fields is warm.fields

    nested = JobProgressInput(data={"effected_records": -1})

    assert nested.fields is not holding.fields
    assert all(field.parent is holding for field in holding.fields.values())
    assert not nested.is_valid()
    assert holding.is_valid() and holding.validated_data["effected_records"] == 2


def test_threads_never_share_fields() -> None:
    main = EventCreateInput(data={"status": "started"})
    assert main.is_valid()
    seen: dict[str, Any] = {}

    def other_thread() -> None:
        serializer = EventCreateInput(data={"status": "started"})
        seen["fields"] = serializer.fields
        seen["valid"] = serializer.is_valid()

    thread = threading.Thread(target=other_thread)
    thread.start()
    thread.join()

    assert seen["valid"] is True
    assert seen["fields"] is not main.fields
    assert EventCreateInput(data={}).fields is main.fields
