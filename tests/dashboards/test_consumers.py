"""The dashboard socket: who may connect, what is pushed, and resume after a reconnect."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AnonymousUser

from dashboards import broadcast, consumers
from fraudsite.asgi import application
from scoring.models import Case, Transaction
from scoring.results import reason_summary
from tests.conftest import tx_body
from tests.dashboards.conftest import ORIGIN, drain, next_of_type, socket, store_plain_rows

pytestmark = pytest.mark.django_db(transaction=True)


async def test_anonymous_socket_is_closed(db):
    communicator = WebsocketCommunicator(application, "/ws/dashboard/", headers=[ORIGIN, (b"host", b"127.0.0.1")])
    communicator.scope["user"] = AnonymousUser()

    connected, _ = await communicator.connect()

    assert not connected
    await communicator.disconnect()


async def test_socket_without_a_session_is_closed(db):
    communicator = WebsocketCommunicator(application, "/ws/dashboard/", headers=[ORIGIN, (b"host", b"127.0.0.1")])

    connected, _ = await communicator.connect()

    assert not connected
    await communicator.disconnect()


async def test_socket_from_a_foreign_origin_is_refused(analyst_user):
    async with socket(analyst_user, origin=(b"origin", b"http://evil.example")) as communicator:
        connected, _ = await communicator.connect()

        assert not connected


async def test_logged_in_analyst_receives_a_posted_transaction(api, model_version, analyst_user):
    async with socket(analyst_user) as communicator:
        connected, _ = await communicator.connect()
        assert connected

        created = (await api.post("/api/v1/transactions", tx_body(external_id="live-1"))).json()
        message = await next_of_type(communicator, "transactions")

    (item,) = message["items"]
    assert item["id"] == created["id"]
    assert item["external_id"] == "live-1"
    assert item["decision"] == created["decision"]
    assert item["reasons"] == created["reasons"]
    assert item["reason_text"] == reason_summary(created["reasons"])  # worded by the server, not the browser
    assert set(item) == {
        "id",
        "external_id",
        "card_id",
        "merchant_id",
        "amount",
        "currency",
        "timestamp",
        "score",
        "decision",
        "reasons",
        "rules",
        "reason_text",
        "case_id",
        "case_state",
    }


JUNK = [
    "not json",
    "[1, 2]",
    '"resume"',
    '{"type": "resume", "after_id": -1}',
    '{"type": "resume", "after_id": "12"}',
    '{"type": "resume", "after_id": 100000000000000000000000000000}',
    '{"type": "ack", "seq": 99999999999}',
    '{"type": "ack", "seq": true}',
    '{"type": "nonsense"}',
]


async def test_junk_from_a_dashboard_is_ignored_and_the_socket_goes_on(api, model_version, analyst_user):
    async with socket(analyst_user) as communicator:
        await communicator.connect()
        for text in JUNK:
            await communicator.send_to(text_data=text)
        await communicator.send_to(bytes_data=b"\xff\xfe")
        created = (await api.post("/api/v1/transactions", tx_body(external_id="after-junk"))).json()
        message = await next_of_type(communicator, "transactions")

    assert [item["id"] for item in message["items"]] == [created["id"]]


async def test_a_retried_transaction_is_not_broadcast_twice(api, model_version, analyst_user):
    async with socket(analyst_user) as communicator:
        await communicator.connect()
        await api.post("/api/v1/transactions", tx_body(external_id="once"))
        await api.post("/api/v1/transactions", tx_body(external_id="once"))
        later = await drain(communicator, 0.6)

    pushed = [i["external_id"] for m in later if m["type"] == "transactions" for i in m["items"]]
    assert pushed == ["once"]


async def test_a_batch_arrives_in_id_order_each_once(api, model_version, analyst_user):
    items = [tx_body(external_id=f"b-{i}") for i in range(30)]
    async with socket(analyst_user) as communicator:
        await communicator.connect()
        await api.post("/api/v1/transactions/batch", {"transactions": items})
        received: list[dict] = []
        while len(received) < 30:
            received += (await next_of_type(communicator, "transactions"))["items"]

    ids = [i["id"] for i in received]
    assert ids == sorted(ids)
    assert len(set(ids)) == 30


async def test_resume_replays_what_was_missed_in_id_order(api, model_version, analyst_user):
    first = (await api.post("/api/v1/transactions", tx_body(external_id="seen"))).json()
    for i in range(3):
        await api.post("/api/v1/transactions", tx_body(external_id=f"missed-{i}"))

    async with socket(analyst_user) as communicator:
        await communicator.connect()
        await communicator.send_json_to({"type": "resume", "after_id": first["id"]})
        message = await next_of_type(communicator, "transactions")

    assert [i["external_id"] for i in message["items"]] == ["missed-0", "missed-1", "missed-2"]
    assert message["replay"] is True


async def test_resume_does_not_replay_imported_history(api, model_version, analyst_user):
    first = (await api.post("/api/v1/transactions", tx_body(external_id="seen"))).json()
    await database_sync_to_async(store_plain_rows)(2, model_version="imported:bank-a")
    await api.post("/api/v1/transactions", tx_body(external_id="missed"))

    async with socket(analyst_user) as communicator:
        await communicator.connect()
        await communicator.send_json_to({"type": "resume", "after_id": first["id"]})
        message = await next_of_type(communicator, "transactions")

    assert [i["external_id"] for i in message["items"]] == ["missed"]


async def test_resume_is_bounded_to_the_newest_500(model_version, analyst_user):
    await database_sync_to_async(store_plain_rows)(520)

    async with socket(analyst_user) as communicator:
        await communicator.connect()
        await communicator.send_json_to({"type": "resume", "after_id": 0})
        message = await next_of_type(communicator, "transactions")

    ids = [i["id"] for i in message["items"]]
    assert len(ids) == 500
    assert ids == sorted(ids)
    assert ids[-1] == await Transaction.objects.order_by("-id").values_list("id", flat=True).afirst()


async def test_stats_arrive_every_second_with_the_live_figures(api, model_version, analyst_user):
    async with socket(analyst_user) as communicator:
        await communicator.connect()
        await api.post("/api/v1/transactions", tx_body(external_id="s-1", amount="9000.00"))
        stats = await next_of_type(communicator, "stats", timeout=3)

    assert stats["count_15m"] == 1
    assert stats["blocked_count"] + (stats["flagged_share"] > 0) >= 1
    assert len(stats["histogram"]) == 10
    assert len(stats["volume"]) == 15
    assert stats["open_cases"] == 1
    assert 0 < time.time() - stats["open_cases_at"] < 10  # when that count's query started


async def test_a_slow_open_case_count_never_holds_up_transaction_frames(api, model_version, analyst_user, monkeypatch):
    from dashboards import hub

    counted, release = [], threading.Event()

    def slow_count() -> int:
        counted.append(1)
        release.wait(10)
        return 7

    monkeypatch.setattr(hub, "open_cases", slow_count)
    async with socket(analyst_user) as one, socket(analyst_user) as two:
        await one.connect()
        await two.connect()
        await asyncio.sleep(1.3)  # past both sockets' first stats tick: the count is stuck in the database
        await api.post("/api/v1/transactions", tx_body(external_id="slow-1"))
        try:
            frames = [await next_of_type(one, "transactions"), await next_of_type(two, "transactions")]
        finally:
            release.set()
        stats = await next_of_type(one, "stats")

    assert [frame["items"][0]["external_id"] for frame in frames] == ["slow-1", "slow-1"]
    assert stats["open_cases"] == 7
    assert len(counted) == 1  # one query for the process, not one per socket


async def test_case_changes_reach_every_dashboard(api, model_version, analyst_user, lead):
    from scoring import cases

    created = (await api.post("/api/v1/transactions", tx_body(external_id="c-1", amount="9000.00"))).json()
    async with socket(analyst_user) as one, socket(lead) as two:
        await one.connect()
        await two.connect()
        await database_sync_to_async(cases.claim)(created["case_id"], user=analyst_user)
        seen_by_one = await next_of_type(one, "case")
        seen_by_two = await next_of_type(two, "case")

    assert seen_by_one["id"] == seen_by_two["id"] == created["case_id"]
    assert seen_by_two["assignee"] == "watcher"
    assert seen_by_two["status"] == "open"


async def test_a_chargeback_that_settles_a_case_reaches_every_dashboard(api, model_version, analyst_user):
    created = (await api.post("/api/v1/transactions", tx_body(external_id="cb-live", amount="9000.00"))).json()
    async with socket(analyst_user) as communicator:
        await communicator.connect()
        await api.post("/api/v1/labels", {"external_id": "cb-live", "is_fraud": True})
        seen = await next_of_type(communicator, "case")

    assert (seen["id"], seen["status"], seen["resolved_by"]) == (created["case_id"], "fraud", None)


async def test_an_account_without_a_role_is_refused_the_socket(db):
    nobody = await database_sync_to_async(get_user_model().objects.create_user)("nobody", password="pw-nobody-1")
    async with socket(nobody) as communicator:
        connected, code = await communicator.connect()

    assert not connected
    assert code == consumers.CLOSE_NO_ROLE


async def test_ingest_still_answers_201_and_stores_when_the_channel_layer_is_down(api, model_version, monkeypatch):
    class BrokenLayer:
        async def group_send(self, group, message):
            raise ConnectionError("redis is down")

    monkeypatch.setattr(broadcast, "get_channel_layer", lambda: BrokenLayer())

    response = await api.post("/api/v1/transactions", tx_body(external_id="stored-anyway", amount="9000.00"))

    assert response.status_code == 201
    assert await Transaction.objects.filter(external_id="stored-anyway").aexists()
    assert await Case.objects.filter(alerts__external_id="stored-anyway").aexists()


async def test_a_hanging_channel_layer_does_not_hold_ingest(api, model_version, monkeypatch, settings):
    settings.BROADCAST_TIMEOUT_SECONDS = 0.2

    class HangingLayer:
        async def group_send(self, group, message):
            await asyncio.sleep(60)

    monkeypatch.setattr(broadcast, "get_channel_layer", lambda: HangingLayer())

    response = await asyncio.wait_for(api.post("/api/v1/transactions", tx_body()), timeout=5)

    assert response.status_code == 201
