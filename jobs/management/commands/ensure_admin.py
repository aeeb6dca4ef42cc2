import os
import secrets

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandParser


class Command(BaseCommand):
    help = (
        "Create the admin superuser if it does not exist. The password comes from "
        "DJANGO_SUPERUSER_PASSWORD, else it is generated and printed once. With "
        "DJANGO_SUPERUSER_PASSWORD set, an existing admin gets that password."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--username", default=os.environ.get("DJANGO_SUPERUSER_USERNAME", "admin")
        )

    def handle(self, *args: object, **options: str) -> None:
        User = get_user_model()
        username = options["username"]
        password = os.environ.get("DJANGO_SUPERUSER_PASSWORD")
        user = User.objects.filter(username=username).first()
        if user is None:
            generated = not password
            password = password or secrets.token_urlsafe(12)
            User.objects.create_superuser(username=username, email="", password=password)
            shown = password if generated else "(from DJANGO_SUPERUSER_PASSWORD)"
            self.stdout.write(f"Admin user created: {username} / {shown}")
            if generated:
                self.stdout.write("This password is printed only once; keep it.")
        elif password:
            user.set_password(password)
            user.save(update_fields=["password"])
            self.stdout.write(
                f"Admin user {username}: password set from DJANGO_SUPERUSER_PASSWORD."
            )
        else:
            self.stdout.write(
                f"Admin user {username} exists (its password was printed when it was created; "
                "set DJANGO_SUPERUSER_PASSWORD and run again to reset it)."
            )
