"""Take the README's admin screenshots from a running Jobtrail (``make run``).

DJANGO_SUPERUSER_PASSWORD=... .venv/bin/python manage.py ensure_admin
.venv/bin/python docs/make_screenshots.py http://127.0.0.1:8000 admin <password>
"""

import sys
from pathlib import Path

from playwright.sync_api import sync_playwright

OUT = Path(__file__).resolve().parent
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def main(base: str, username: str, password: str) -> None:
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.goto(f"{base}/admin/login/")
        page.fill("#id_username", username)
        page.fill("#id_password", password)
        page.click("input[type=submit]")
        page.wait_for_url(f"{base}/admin/")
        page.screenshot(path=OUT / "admin-dashboard.png", full_page=True)
        page.goto(f"{base}/admin/jobs/job/")
        if page.locator("#nav-sidebar").is_visible():
            page.click("#toggle-nav-sidebar")  # more room for the list (remembered)

        page.goto(f"{base}/admin/jobs/job/")
        page.screenshot(path=OUT / "admin-job-list.png")

        page.goto(f"{base}/admin/jobs/job/?status__exact=completed_with_errors")
        page.locator("#result_list tbody tr th a").first.click()
        page.wait_for_load_state("networkidle")
        page.screenshot(path=OUT / "admin-job-page.png", full_page=True)

        page.goto(f"{base}/admin/jobs/job/?status__exact=processing")
        page.locator("#result_list tbody tr th a").first.click()
        page.click("#cancel-job")
        page.screenshot(path=OUT / "admin-cancel-confirmation.png")
        browser.close()


if __name__ == "__main__":
    main(*sys.argv[1:4])
