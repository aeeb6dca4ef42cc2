"""`make run` on another port hands out links on that port (config/run_procfile.py)."""

from pathlib import Path

import pytest

from config.run_procfile import local_public_url


@pytest.mark.parametrize(
    ("environ", "dotenv", "expected"),
    [
        ({"JOBTRAIL_PORT": "8001"}, "", "http://127.0.0.1:8001"),
        ({}, "", None),  # no port given: the settings' default
        (
            {"JOBTRAIL_PORT": "8001", "JOBTRAIL_PUBLIC_URL": "https://jobs.example"},
            "",
            "https://jobs.example",
        ),
        ({"JOBTRAIL_PORT": "8001"}, "JOBTRAIL_PUBLIC_URL=https://mine.example\n", None),
    ],
    ids=["port", "no-port", "set-in-the-environment", "set-in-the-dotenv"],
)
def test_links_follow_the_port_unless_a_public_url_is_set(
    tmp_path: Path, environ: dict[str, str], dotenv: str, expected: str | None
) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("DJANGO_DEBUG=1\n" + dotenv)

    local_public_url(environ, env_file)

    assert environ.get("JOBTRAIL_PUBLIC_URL") == expected
