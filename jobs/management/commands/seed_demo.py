from django.core.management.base import BaseCommand, CommandParser
from django.db.models import Count

from jobs.demo import DEMO_COMPANY, OTHER_COMPANY, demo_is_seeded, seed_demo
from jobs.models import Job


class Command(BaseCommand):
    help = "Create a demo company, its API client 'demo' and a few dozen jobs in every state."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--jobs", type=int, default=40)

    def handle(self, *args: object, **options: int) -> None:
        if demo_is_seeded():
            self.stdout.write(f"Demo data already present ({DEMO_COMPANY}); nothing to do.")
            return
        creds = seed_demo(jobs=options["jobs"])
        per_company = ", ".join(
            f"{count} for '{name}'"
            for name, count in Job.objects.filter(company__name__in=[DEMO_COMPANY, OTHER_COMPANY])
            .values_list("company__name")
            .annotate(count=Count("pk"))
            .order_by("-count", "company__name")
        )
        self.stdout.write(
            f"Seeded {options['jobs']} demo jobs" + (f": {per_company}." if per_company else ".")
        )
        self.stdout.write(
            f"Demo API client: username demo / password {creds.password} "
            "(printed only now; reset with: manage.py create_api_client "
            f"'{DEMO_COMPANY}' demo --password NEW)"
        )
