from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from scoring.history import ImportRefused, import_csv

SHOWN_ERRORS = 20


class Command(BaseCommand):
    help = (
        "Import labeled transaction history from a CSV file (the API's fields plus an optional is_fraud "
        "0/1 column). One invalid row stores nothing, unless --skip-invalid; importing again is harmless."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", type=Path, help="CSV file with a header row")
        parser.add_argument("--source", default="csv", help="Recorded as model_version 'imported:SOURCE'")
        parser.add_argument("--skip-invalid", action="store_true", help="Store the valid rows, report the rest")
        parser.add_argument("--batch-size", type=int, default=5000, help="Rows sent to the database at a time")

    def handle(self, *args: Any, file: Path, source: str, skip_invalid: bool, batch_size: int, **options: Any) -> None:
        if not file.is_file():
            raise CommandError(f"{file}: no such file")
        if batch_size < 1:
            raise CommandError("--batch-size must be at least 1")
        try:
            report = import_csv(
                file, source=source, skip_invalid=skip_invalid, batch_size=batch_size, progress=self.stdout.write
            )
        except UnicodeDecodeError as exc:
            raise CommandError(
                f"{file} is not UTF-8 text ({exc.reason}); nothing was stored. Save it as UTF-8."
            ) from None
        except csv.Error as exc:
            raise CommandError(f"{file} is not a readable CSV file ({exc}); nothing was stored") from None
        except ImportRefused as refused:
            self._errors(refused.report.errors, total=refused.report.invalid)
            raise CommandError(
                f"{refused.report.invalid:,} invalid row(s) in {file}; nothing was stored "
                "(fix them, or pass --skip-invalid to store the valid rows)"
            ) from None
        self._errors(report.errors, total=report.invalid)
        self.stdout.write(self.style.SUCCESS(report.summary()))

    def _errors(self, errors: list[tuple[int, str]], *, total: int) -> None:
        for line, reason in errors[:SHOWN_ERRORS]:
            self.stderr.write(f"line {line}: {reason}")
        if total > SHOWN_ERRORS:
            self.stderr.write(f"... and {total - SHOWN_ERRORS:,} more invalid row(s)")
