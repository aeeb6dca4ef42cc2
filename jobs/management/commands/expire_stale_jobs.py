from django.core.management.base import BaseCommand

from jobs.services import jobs_expire_stale


class Command(BaseCommand):
    help = "Fail every active job that has been silent longer than its expires_after (job_expired)."

    def handle(self, *args: object, **options: object) -> None:
        expired = jobs_expire_stale()
        self.stdout.write(f"Expired {expired} stale job{'s' if expired != 1 else ''}.")
