"""Test-wide fixtures: a tiny model trained once per session, API keys, analysts."""

from __future__ import annotations

import asyncio
import gc
from datetime import UTC, datetime, timedelta

import numpy as np
import orjson
import pytest
import xgboost as xgb

from dashboards.stats import forget_recent
from scoring import keys
from scoring.aggregates import window_cache
from scoring.challenger import challenger_model
from scoring.classifier import active_model, version_name
from scoring.features import FEATURE_INDEX, FEATURES
from scoring.lists import lists
from scoring.live_rules import live_rules
from scoring.thresholds import forget_figures


@pytest.fixture(scope="session")
def tiny_artifact() -> bytes:
    """A small booster on synthetic rows where amounts above ~1,000 are fraud (and small ones never are)."""
    rng = np.random.default_rng(7)
    x = rng.normal(size=(2000, len(FEATURES))).astype(np.float32)
    x[:, FEATURE_INDEX["amount"]] = rng.lognormal(4.0, 2.0, size=2000)
    y = (x[:, FEATURE_INDEX["amount"]] > 1000).astype(int)
    booster = xgb.train(
        {"max_depth": 3, "eta": 0.3, "objective": "binary:logistic", "nthread": 1, "seed": 7},
        xgb.DMatrix(x, label=y, feature_names=FEATURES),
        num_boost_round=20,
    )
    return bytes(booster.save_raw("ubj"))


@pytest.fixture(scope="session")
def inverse_artifact() -> bytes:
    """A booster that says the opposite of the tiny model (small amounts are fraud, large ones are not): a
    challenger whose every decision can be told from the active model's."""
    rng = np.random.default_rng(11)
    x = rng.normal(size=(2000, len(FEATURES))).astype(np.float32)
    x[:, FEATURE_INDEX["amount"]] = rng.lognormal(4.0, 2.0, size=2000)
    y = (x[:, FEATURE_INDEX["amount"]] < 20).astype(int)
    booster = xgb.train(
        {"max_depth": 3, "eta": 0.3, "objective": "binary:logistic", "nthread": 1, "seed": 11},
        xgb.DMatrix(x, label=y, feature_names=FEATURES),
        num_boost_round=20,
    )
    return bytes(booster.save_raw("ubj"))


@pytest.fixture(scope="session", autouse=True)
def _close_connections_left_by_in_process_requests(django_db_setup):
    """Close what in-process requests leave connected before the test databases are dropped (else
    PostgreSQL refuses: "being accessed by other users", and the next run starts by recreating them).

    Async tests run their sync database code on asgiref's one sync thread, whose connection stays open.
    (Requests through the whole ASGI application used to leave one more each, out of the pool, until the
    `api` fixture began to let the application finish; a full suite then ran out of connections.)
    """
    yield
    from asgiref.sync import sync_to_async
    from django.db import connections

    from dashboards.hub import query_thread

    asyncio.run(sync_to_async(connections.close_all)())
    query_thread().submit(connections.close_all).result()  # the dashboard hubs' background queries
    gc.collect()


@pytest.fixture(autouse=True)
def _ingest_in_the_tests_thread(settings):
    """In-process tests store batches in Django's thread-sensitive executor: a test's database transaction
    is visible only to its own thread. Real server processes (tests/e2e) run with the default threads."""
    settings.INGEST_THREADS = 1


@pytest.fixture(autouse=True)
def _no_background_catch_up(settings):
    """In-process tests store rows that are never broadcast (history, resumes): the hub's catch-up would push
    them seconds later. Its own tests call it; real server processes (tests/e2e) run it as configured."""
    settings.DASHBOARD_RECONCILE_SECONDS = 0


@pytest.fixture(autouse=True)
def _fresh_process_caches():
    """Each test sees the database as it is: no scorer, list or merchant window cached from another test."""
    active_model.reset()
    challenger_model.reset()
    lists.reset()
    live_rules.reset()
    keys.reset()
    forget_recent()
    window_cache.clear()
    forget_figures()
    yield
    active_model.reset()
    challenger_model.reset()
    lists.reset()
    live_rules.reset()
    keys.reset()
    window_cache.clear()


@pytest.fixture
def model_version(db, tiny_artifact):
    from scoring.models import ModelVersion

    mv = ModelVersion.objects.create(
        version=version_name(tiny_artifact),
        artifact=tiny_artifact,
        features=FEATURES,
        review_threshold=0.5,
        block_threshold=0.9,
    )
    mv.activate()
    return mv


@pytest.fixture
def api_key(db) -> str:
    from scoring.models import ApiKey

    _, raw = ApiKey.issue(name="tests")
    return raw


# One instant for every body that does not set its own: a retry of the same body is the same content.
SENT_AT = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()


def tx_body(**overrides) -> dict:
    """A valid transaction body (API.md), with fields overridden or removed (value None removes)."""
    body = {
        "external_id": "ext-1",
        "card_id": "card-1",
        "merchant_id": "merch-1",
        "amount": "42.50",
        "currency": "EUR",
        "timestamp": SENT_AT,
        "country": "NL",
        "channel": "ecom",
        "mcc": "5411",
    }
    body.update(overrides)
    return {k: v for k, v in body.items() if v is not None}


class AsgiResponse:
    """What a test needs of an answer from the whole ASGI application."""

    def __init__(self, message: dict) -> None:
        self.status_code = message["status"]
        self.content = message["body"]
        self.headers = {k.decode().lower(): v.decode() for k, v in message.get("headers", [])}

    def json(self):
        return orjson.loads(self.content)


@pytest.fixture
def api(api_key):
    """A client of the API with a valid key, through the full ASGI application (as servers run it)."""
    from channels.testing import HttpCommunicator

    from fraudsite.asgi import application

    class Api:
        headers = {"Authorization": f"Bearer {api_key}"}

        async def request(
            self,
            method: str,
            path: str,
            body: bytes,
            headers: dict[str, str],
            *,
            content_type: str = "application/json",
        ) -> AsgiResponse:
            raw = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
            raw += [(b"content-type", content_type.encode()), (b"content-length", str(len(body)).encode())]
            raw += [(b"host", b"testserver")]
            communicator = HttpCommunicator(application, method, path, body=body, headers=raw)
            response = AsgiResponse(await communicator.get_response(timeout=10))
            # Let the application finish as a server lets it: Django closes the request's database
            # connection after the response is sent. Left pending, every request kept one out of the pool.
            await communicator.wait(timeout=10)
            return response

        async def post(self, path: str, body, *, headers: dict[str, str] | None = None) -> AsgiResponse:
            data = body.encode() if isinstance(body, str) else body if isinstance(body, bytes) else orjson.dumps(body)
            return await self.request("POST", path, data, self.headers if headers is None else headers)

        async def get(self, path: str, *, headers: dict[str, str] | None = None) -> AsgiResponse:
            return await self.request("GET", path, b"", self.headers if headers is None else headers)

    return Api()


@pytest.fixture
def analyst(db):
    from django.contrib.auth import get_user_model

    from scoring.roles import ensure_roles, make_analyst

    ensure_roles()
    user = get_user_model().objects.create_user("alice", password="pw-alice-123")
    make_analyst(user)
    return user


@pytest.fixture
def lead(db):
    from django.contrib.auth import get_user_model

    return get_user_model().objects.create_superuser("lead", password="pw-lead-123")
