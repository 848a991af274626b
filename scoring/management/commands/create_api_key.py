from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from scoring.models import ApiKey


class Command(BaseCommand):
    help = "Create an API key for a caller; prints the key once (only its hash is stored)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name", help="Who the key is for, e.g. 'acquirer-eu'")

    def handle(self, *args: Any, name: str, **options: Any) -> None:
        key, raw = ApiKey.issue(name=name)
        self.stderr.write(f"Created API key {key.name!r} (id {key.id}); it is shown once, store it now:")
        self.stdout.write(raw)
