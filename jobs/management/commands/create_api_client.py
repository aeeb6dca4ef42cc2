from django.core.management.base import BaseCommand, CommandError, CommandParser

from jobs.accounts import ApiClientError, api_client_create


class Command(BaseCommand):
    help = "Create an API client (integration user) in a company, creating the company if needed."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("company", help="Company name")
        parser.add_argument("username")
        parser.add_argument("--password", help="Password to set (default: generated)")

    def handle(self, *args: object, **options: str) -> None:
        try:
            creds = api_client_create(
                company_name=options["company"],
                username=options["username"],
                password=options["password"],
            )
        except ApiClientError as exc:
            raise CommandError(str(exc)) from exc
        if creds.company_created:
            self.stdout.write(f"Created company '{creds.company.name}'.")
        self.stdout.write(f"company_id: {creds.company.pk}")
        self.stdout.write(f"username:   {creds.user.get_username()}")
        self.stdout.write(f"password:   {creds.password}")
