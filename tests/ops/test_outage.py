"""config.outage.Outage: a loop waiting out an unreachable database says so once."""

import logging

import pytest
from django.db import OperationalError

from config.outage import Outage


def test_an_outage_is_logged_once_and_waits_longer_each_try(
    caplog: pytest.LogCaptureFixture,
) -> None:
    outage = Outage(
        logging.getLogger("tests.outage"),
        down="down (%s)",
        back="back",
        first=0.25,
        most=2.0,
    )
    assert not outage.down
    outage.ok()  # no outage: nothing said

    with caplog.at_level(logging.WARNING, logger="tests.outage"):
        waits = [outage.failed(OperationalError("connection refused\nDETAIL: x")) for _ in range(6)]
        assert outage.down
        outage.ok()
        outage.ok()

    assert waits == [0.25, 0.5, 1.0, 2.0, 2.0, 2.0]
    assert [r.getMessage() for r in caplog.records] == ["down (connection refused)", "back"]
    assert not outage.down
    assert outage.failed(OperationalError("again")) == 0.25  # a new outage starts over
