"""Requests generated from the API's own OpenAPI document, sent to a real server, with every check schemathesis
has: no 500, every answer's status, headers and body as documented, every schema-invalid request refused and
every schema-valid one accepted (in both directions the document says exactly what the validator does).

The rules a JSON Schema cannot state (time's bounds, what is already stored) are kept inside by the hooks in
tests/e2e/schemathesis_hooks.py. The seed is fixed. A guard, not proof: a fuzzer finds what it happens to try.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_generated_requests_find_nothing_the_document_and_the_server_disagree_on(
    daphne_server, api_key, tmp_path: Path
) -> None:
    command = [
        str(Path(sys.executable).with_name("schemathesis")),
        "run",
        f"{daphne_server}/api/v1/openapi.json",
        "--header",
        f"Authorization: Bearer {api_key}",
        "--checks",
        "all",
        "--max-examples",
        "100",
        "--seed",
        "2",
        "--workers",
        "1",
        "--generation-database",
        "none",
        "--no-color",
    ]

    hooks = {"SCHEMATHESIS_HOOKS": "tests.e2e.schemathesis_hooks", "PYTHONPATH": str(Path(__file__).parents[2])}
    run = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300, env=os.environ | hooks)

    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
    generated = re.search(r"(\d+) generated", run.stdout)
    assert generated and int(generated.group(1)) > 100, run.stdout[-2000:]
