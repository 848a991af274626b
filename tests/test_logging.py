"""Logs an operator can search: JSON lines (LOG_FORMAT=json) for the events worth keeping, each with the request id
that the API returned in its X-Request-ID header; none for a transaction stored as asked."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from django.conf import settings
from django.test import Client
from django.utils.module_loading import import_string

from fraudsite import request_id
from fraudsite.logs import RequestIdFilter
from scoring import lists
from scoring.batcher import MicroBatcher
from scoring.features import FEATURES
from scoring.ingest import Outcome
from scoring.models import ModelVersion
from tests.conftest import tx_body
from tests.dashboards.conftest import make_case

SINGLE, BATCH = "/api/v1/transactions", "/api/v1/transactions/batch"
ROOT = Path(__file__).resolve().parents[1]
Lines = Callable[[], list[dict]]


@pytest.fixture
def json_lines() -> Iterator[Lines]:
    """What the settings' JSON formatter writes while the test runs, each line parsed (every one must parse)."""
    config = dict(settings.LOGGING["formatters"]["json"])
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(import_string(config.pop("()"))(**config))
    handler.addFilter(RequestIdFilter())
    logging.getLogger().addHandler(handler)
    yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    logging.getLogger().removeHandler(handler)


def ours(lines: list[dict]) -> list[dict]:
    return [line for line in lines if line["logger"].startswith(("scoring", "dashboards", "fraudsite"))]


# --- the header ---------------------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
async def test_every_ingest_answer_returns_the_callers_request_id(api, model_version):
    def sent(rid: str) -> dict[str, str]:
        return {**api.headers, "X-Request-ID": rid}

    created = await api.post(SINGLE, tx_body(external_id="h-1"), headers=sent("req-created"))
    invalid = await api.post(SINGLE, tx_body(amount="-1"), headers=sent("req-invalid"))
    no_key = await api.post(SINGLE, tx_body(), headers={"X-Request-ID": "req-no-key"})
    batch = await api.post(BATCH, {"transactions": [tx_body(external_id="h-2")]}, headers=sent("req-batch"))

    assert [r.status_code for r in (created, invalid, no_key, batch)] == [201, 422, 401, 201]
    said = [r.headers["x-request-id"] for r in (created, invalid, no_key, batch)]
    assert said == ["req-created", "req-invalid", "req-no-key", "req-batch"]


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("sent", [None, "", "has spaces", "x" * 200, "line\\nbreak", "-starts-with-a-dash"])
async def test_a_missing_or_malformed_request_id_is_replaced_by_a_new_one(api, model_version, sent):
    headers = {**api.headers, **({"X-Request-ID": sent} if sent is not None else {})}

    response = await api.post(SINGLE, tx_body(amount="-1"), headers=headers)

    made = response.headers["x-request-id"]
    assert made != sent and len(made) == 32 and int(made, 16) >= 0


@pytest.mark.django_db(transaction=True)
async def test_the_api_document_declares_the_header_on_every_ingest_answer(api):
    document = (await api.get("/api/v1/openapi.json")).json()

    operations = [document["paths"][SINGLE]["post"], document["paths"][SINGLE]["get"], document["paths"][BATCH]["post"]]
    declared = [answer["headers"]["X-Request-ID"] for op in operations for answer in op["responses"].values()]
    assert len(declared) >= 20 and all(header["required"] for header in declared)


@pytest.mark.django_db(transaction=True)
def test_django_answers_carry_the_request_id_too(analyst):
    client = Client()
    client.force_login(analyst)

    response = client.get("/cases/", HTTP_X_REQUEST_ID="desk-page-1")

    assert response.status_code == 200
    assert response["X-Request-ID"] == "desk-page-1"


# --- the lines ----------------------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
async def test_a_refused_ingest_request_is_one_json_line_with_its_request_id(api, model_version, json_lines):
    await api.post(SINGLE, tx_body(amount="-1"), headers={**api.headers, "X-Request-ID": "req-refused"})

    (line,) = ours(json_lines())
    assert line["request_id"] == "req-refused"
    assert line["status"] == 422 and line["level"] == "INFO" and line["logger"] == "scoring.endpoint"
    assert "amount" in line["message"] and line["time"].endswith("+00:00")


@pytest.mark.django_db(transaction=True)
async def test_a_transaction_stored_as_asked_writes_no_line(api, model_version, json_lines):
    await api.post(SINGLE, tx_body(external_id="quiet-0"))  # the first loads the model, which is worth a line
    loaded = len(ours(json_lines()))

    for n in range(1, 4):
        assert (await api.post(SINGLE, tx_body(external_id=f"quiet-{n}"))).status_code == 201
    await api.post(BATCH, {"transactions": [tx_body(external_id=f"quiet-b{n}") for n in range(5)]})

    assert len(ours(json_lines())) == loaded


@pytest.mark.django_db(transaction=True)
async def test_a_batch_of_several_requests_names_every_request_in_its_lines(json_lines, settings):
    settings.INGEST_THREADS = 1
    seen: list[tuple[str, ...]] = []

    def store(items: list[str]) -> tuple[list[Outcome], list[dict]]:
        seen.append(request_id.current())  # in the thread that stores the batch
        if len(items) > 1:
            raise ValueError("a combined batch fails")
        return [Outcome(result={}, created=False)], []

    async def nothing(events: list[dict]) -> None:
        return None

    batcher = MicroBatcher(store, after_commit=nothing)

    async def send(rid: str) -> None:
        request_id.REQUEST_IDS.set((rid,))
        await batcher.submit([rid])

    # Two batches run at once; the two requests that arrive meanwhile wait and go together.
    await asyncio.gather(*(send(f"r{n}") for n in range(1, 5)))

    assert seen == [("r1",), ("r2",), ("r3", "r4"), ("r3",), ("r4",)]
    (line,) = [line for line in json_lines() if line["logger"] == "scoring.batcher"]
    assert line["request_ids"] == ["r3", "r4"] and "storing them one by one" in line["message"]


@pytest.mark.django_db(transaction=True)
async def test_djangos_own_line_about_a_refused_answer_carries_the_request_id(api, json_lines, settings):
    settings.METRICS_TOKEN = "metrics-token-for-the-tests"

    response = await api.get("/metrics", headers={"X-Request-ID": "scrape-1"})

    assert response.status_code == 401 and response.headers["x-request-id"] == "scrape-1"
    (line,) = [line for line in json_lines() if line["logger"] == "django.request"]
    assert line["request_id"] == "scrape-1" and line["status_code"] == 401


@pytest.mark.django_db(transaction=True)
def test_a_case_change_is_a_line_after_its_commit_with_the_desk_requests_id(analyst, json_lines):
    case = make_case()
    client = Client()
    client.force_login(analyst)

    response = client.post(f"/cases/{case.id}/claim", HTTP_X_REQUEST_ID="desk-claim-1")

    assert response.status_code == 302 and response["X-Request-ID"] == "desk-claim-1"
    (line,) = [line for line in json_lines() if line["logger"] == "scoring.cases"]
    assert line["request_id"] == "desk-claim-1"
    assert (line["case_id"], line["action"], line["actor"], line["case_status"]) == (
        case.id,
        "claimed",
        "alice",
        "open",
    )


@pytest.mark.django_db(transaction=True)
def test_list_changes_and_model_activations_are_lines(lead, tiny_artifact, json_lines):
    lists.add_entry(user=lead, kind="block", entity="card", value="card-9", reason="stolen", expires_at=None)
    ModelVersion.objects.create(version="v-log", artifact=tiny_artifact, features=FEATURES).activate()

    listed, activated = [line for line in json_lines() if line["logger"].startswith("scoring.")]
    assert (listed["list_action"], listed["list"], listed["entity"], listed["value"]) == (
        "added",
        "block",
        "card",
        "card-9",
    )
    assert listed["actor"] == "lead" and "card card-9 added on the block list" in listed["message"]
    assert activated["model_version"] == "v-log" and activated["message"] == "model v-log activated"


# --- the format, as a process starts with it ----------------------------------------------------------------


def started_with(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """A fresh process with `env` that sets Django up and logs one warning."""
    code = "import django; django.setup(); import logging; logging.getLogger('scoring.x').warning('hello')"
    clean = {k: v for k, v in os.environ.items() if k not in {"LOG_FORMAT", "PRODUCTION", "METRICS_TOKEN", "DEBUG"}}
    clean |= {"DJANGO_SETTINGS_MODULE": "fraudsite.settings", "SECRET_KEY": "k" * 20 + "0123456789" * 4}
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=clean | env, capture_output=True, text=True)


def test_logs_are_json_in_production_and_plain_in_development_unless_log_format_says():
    production = {"PRODUCTION": "1", "ALLOWED_HOSTS": "fraud.example.com"}

    assert json.loads(started_with(production).stderr)["message"] == "hello"
    assert started_with({}).stderr.strip().endswith("WARNING scoring.x: hello")
    assert json.loads(started_with({"LOG_FORMAT": "json"}).stderr)["level"] == "WARNING"
    assert started_with(production | {"LOG_FORMAT": "plain"}).stderr.strip().endswith("scoring.x: hello")


def test_a_bad_log_format_or_a_short_metrics_token_stops_start_up():
    assert "LOG_FORMAT='xml': use json or plain" in started_with({"LOG_FORMAT": "xml"}).stderr
    assert "METRICS_TOKEN is too short" in started_with({"METRICS_TOKEN": "secret"}).stderr
