"""The dashboard socket: who may connect, what is pushed, and resume after a reconnect."""

from __future__ import annotations

import asyncio
import threading
import time
from contextlib import asynccontextmanager

import orjson
import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AnonymousUser

from dashboards import broadcast, consumers
from fraudsite.asgi import application
from scoring.models import Case, Transaction
from scoring.results import reason_summary, transaction_event
from scoring.roles import ensure_roles, make_analyst
from tests.conftest import tx_body

pytestmark = pytest.mark.django_db(transaction=True)
ORIGIN = (b"origin", b"http://127.0.0.1")


@asynccontextmanager
async def socket(user=None, *, origin: tuple[bytes, bytes] = ORIGIN):
    """A dashboard socket through the full ASGI stack (origin check, auth), logged in as `user`."""
    communicator = WebsocketCommunicator(application, "/ws/dashboard/", headers=[origin, (b"host", b"127.0.0.1")])
    if user is not None:
        communicator.scope["user"] = user  # what the session middleware would find
    try:
        yield communicator
    finally:
        await communicator.disconnect()


async def next_of_type(communicator: WebsocketCommunicator, kind: str, timeout: float = 3.0) -> dict:
    """The next message of a type, skipping the others (stats arrive every second)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        remaining = deadline - asyncio.get_running_loop().time()
        message = orjson.loads(await communicator.receive_from(timeout=max(remaining, 0.01)))
        if message["type"] == kind:
            return message


async def drain(communicator: WebsocketCommunicator, seconds: float) -> list[dict]:
    """Every message that arrives within `seconds` (a receive timeout would cancel the consumer)."""
    messages = []
    deadline = asyncio.get_running_loop().time() + seconds
    while asyncio.get_running_loop().time() < deadline:
        if await communicator.receive_nothing(timeout=0.05):
            continue
        messages.append(orjson.loads(await communicator.receive_from()))
    return messages


@pytest.fixture
def analyst_user(db):
    ensure_roles()
    user = get_user_model().objects.create_user("watcher", password="pw-watcher-1")
    make_analyst(user)
    return user


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
    await database_sync_to_async(_store_plain_rows)(2, model_version="imported:bank-a")
    await api.post("/api/v1/transactions", tx_body(external_id="missed"))

    async with socket(analyst_user) as communicator:
        await communicator.connect()
        await communicator.send_json_to({"type": "resume", "after_id": first["id"]})
        message = await next_of_type(communicator, "transactions")

    assert [i["external_id"] for i in message["items"]] == ["missed"]


async def test_resume_is_bounded_to_the_newest_500(model_version, analyst_user):
    await database_sync_to_async(_store_plain_rows)(520)

    async with socket(analyst_user) as communicator:
        await communicator.connect()
        await communicator.send_json_to({"type": "resume", "after_id": 0})
        message = await next_of_type(communicator, "transactions")

    ids = [i["id"] for i in message["items"]]
    assert len(ids) == 500
    assert ids == sorted(ids)
    assert ids[-1] == await Transaction.objects.order_by("-id").values_list("id", flat=True).afirst()


def _store_plain_rows(n: int, *, model_version: str = "t") -> None:
    from django.utils import timezone

    Transaction.objects.bulk_create(
        Transaction(
            external_id=f"p-{i}",
            card_id="c",
            merchant_id="m",
            amount="1.00",
            currency="EUR",
            timestamp=timezone.now(),
            score=0.1,
            decision="approve",
            model_version=model_version,
        )
        for i in range(n)
    )


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
    assert await Case.objects.filter(transaction__external_id="stored-anyway").aexists()


async def test_a_hanging_channel_layer_does_not_hold_ingest(api, model_version, monkeypatch, settings):
    settings.BROADCAST_TIMEOUT_SECONDS = 0.2

    class HangingLayer:
        async def group_send(self, group, message):
            await asyncio.sleep(60)

    monkeypatch.setattr(broadcast, "get_channel_layer", lambda: HangingLayer())

    response = await asyncio.wait_for(api.post("/api/v1/transactions", tx_body()), timeout=5)

    assert response.status_code == 201


async def frames_until_closed(communicator: WebsocketCommunicator, timeout: float) -> tuple[list[dict], int | None]:
    """Every frame the server sends until it closes the socket (with the close code), or until `timeout`."""
    frames: list[dict] = []
    deadline = asyncio.get_running_loop().time() + timeout
    while (remaining := deadline - asyncio.get_running_loop().time()) > 0:
        if await communicator.receive_nothing(timeout=min(remaining, 0.05)):
            continue
        output = await communicator.receive_output()
        if output["type"] == "websocket.close":
            return frames, output.get("code")
        frames.append(orjson.loads(output["text"]))
    return frames, None


async def test_a_dashboard_that_stops_acknowledging_gets_no_more_frames_and_is_closed_to_resume(
    api, model_version, analyst_user, lead, monkeypatch, settings
):
    monkeypatch.setattr(consumers, "MAX_UNACKED", 3)
    settings.DASHBOARD_STALL_SECONDS = 1.0
    async with socket(analyst_user) as stalled, socket(lead) as healthy:
        await stalled.connect()
        await healthy.connect()
        await api.post("/api/v1/transactions", tx_body(external_id="ack-0"))
        first = await next_of_type(stalled, "transactions")
        await stalled.send_json_to({"type": "ack", "seq": first["seq"]})  # then it hangs: no more acks
        for i in range(1, 8):
            await api.post("/api/v1/transactions", tx_body(external_id=f"ack-{i}"))
            await asyncio.sleep(0.08)  # each in its own frame

        frames, code = await frames_until_closed(stalled, timeout=3)
        healthy_items = []
        while len(healthy_items) < 8:
            healthy_items += (await next_of_type(healthy, "transactions"))["items"]

    assert code == consumers.CLOSE_TOO_SLOW
    assert max(f["seq"] for f in frames) - first["seq"] <= 3  # held back once 3 frames were unanswered
    assert [i["external_id"] for i in healthy_items] == [f"ack-{i}" for i in range(8)]


async def test_a_dashboard_that_acknowledges_keeps_receiving_everything(api, model_version, analyst_user, monkeypatch):
    monkeypatch.setattr(consumers, "MAX_UNACKED", 2)
    async with socket(analyst_user) as communicator:
        await communicator.connect()
        received = []
        for i in range(6):
            await api.post("/api/v1/transactions", tx_body(external_id=f"acked-{i}"))
            message = await next_of_type(communicator, "transactions")
            await communicator.send_json_to({"type": "ack", "seq": message["seq"]})
            received += message["items"]

    assert [i["external_id"] for i in received] == [f"acked-{i}" for i in range(6)]


async def test_a_client_that_never_acknowledges_is_not_held_back(api, model_version, analyst_user, monkeypatch):
    # API.md does not ask clients to acknowledge: flow control applies only to those that do.
    monkeypatch.setattr(consumers, "MAX_UNACKED", 2)
    async with socket(analyst_user) as communicator:
        await communicator.connect()
        frames = []
        for i in range(6):
            await api.post("/api/v1/transactions", tx_body(external_id=f"plain-{i}"))
            frames.append(await next_of_type(communicator, "transactions"))

    assert [i["external_id"] for f in frames for i in f["items"]] == [f"plain-{i}" for i in range(6)]
    assert len(frames) == 6


async def test_a_dashboard_too_far_behind_is_closed_before_its_buffer_grows_further(
    api, model_version, analyst_user, lead, monkeypatch, settings
):
    monkeypatch.setattr(consumers, "MAX_UNACKED", 1)
    monkeypatch.setattr(consumers, "MAX_PENDING", 20)
    settings.DASHBOARD_STALL_SECONDS = 60  # the buffer bound acts first
    async with socket(analyst_user) as stalled, socket(lead) as healthy:
        await stalled.connect()
        await healthy.connect()
        await api.post("/api/v1/transactions", tx_body(external_id="far"))
        first = await next_of_type(stalled, "transactions")
        await stalled.send_json_to({"type": "ack", "seq": first["seq"]})
        healthy_items = []
        for burst in range(2):  # each bigger than the bound: the first still goes out, in one frame
            items = [tx_body(external_id=f"far-{burst}-{i}") for i in range(30)]
            await api.post("/api/v1/transactions/batch", {"transactions": items})
            while len(healthy_items) < 1 + 30 * (burst + 1):
                message = await next_of_type(healthy, "transactions")
                await healthy.send_json_to({"type": "ack", "seq": message["seq"]})
                healthy_items += message["items"]

        frames, code = await frames_until_closed(stalled, timeout=3)

    assert code == consumers.CLOSE_TOO_SLOW
    assert [len(f["items"]) for f in frames if f["type"] == "transactions"] == [30]  # the second burst: never sent
    assert len({i["id"] for i in healthy_items}) == 61


async def test_a_process_joins_the_group_once_however_many_dashboards_are_open(
    api, model_version, analyst_user, lead, monkeypatch
):
    from channels.layers import get_channel_layer

    layer = get_channel_layer()
    joins, leaves = [], []
    group_add, group_discard = layer.group_add, layer.group_discard

    async def counted_add(group, channel):
        joins.append(channel)
        await group_add(group, channel)

    async def counted_discard(group, channel):
        leaves.append(channel)
        await group_discard(group, channel)

    monkeypatch.setattr(layer, "group_add", counted_add)
    monkeypatch.setattr(layer, "group_discard", counted_discard)
    async with socket(analyst_user) as one, socket(lead) as two, socket(analyst_user) as three:
        for communicator in (one, two, three):
            await communicator.connect()
        await api.post("/api/v1/transactions", tx_body(external_id="hub-1"))
        received = [await next_of_type(c, "transactions") for c in (one, two, three)]

    assert [m["items"][0]["external_id"] for m in received] == ["hub-1"] * 3
    assert len(joins) == 1  # one subscription for the process, not one per socket
    assert leaves == joins  # and gone once the last dashboard closed


async def test_transactions_the_channel_layer_lost_reach_every_socket_once_from_the_database(analyst_user):
    from datetime import timedelta

    from django.utils import timezone

    from dashboards.hub import hub

    start = timezone.now() - timedelta(seconds=1)
    async with socket(analyst_user) as communicator:
        await communicator.connect()
        # Stored and never broadcast: what a Redis restart or a timed-out broadcast leaves behind.
        await database_sync_to_async(_store_plain_rows)(3)
        stored = [tx async for tx in Transaction.objects.order_by("id")]
        await broadcast.transactions([transaction_event(stored[0], case=None)])  # this one came through the layer
        live = await next_of_type(communicator, "transactions")

        caught_up = await hub().catch_up(start, timezone.now() + timedelta(seconds=1))
        late = await next_of_type(communicator, "transactions")
        again = await hub().catch_up(start, timezone.now() + timedelta(seconds=1))
        await broadcast.transactions([transaction_event(stored[1], case=None)])  # the layer delivers it after all
        after = [m for m in await drain(communicator, 0.3) if m["type"] == "transactions"]

    assert [i["external_id"] for i in live["items"]] == ["p-0"]
    assert caught_up == 2
    assert [i["external_id"] for i in late["items"]] == ["p-1", "p-2"]
    assert again == 0
    assert after == []


async def test_every_process_checks_for_lost_transactions_while_dashboards_are_connected(
    analyst_user, settings, monkeypatch
):
    from dashboards import hub

    settings.DASHBOARD_RECONCILE_SECONDS = 0.05
    monkeypatch.setattr(hub, "SETTLED_SECONDS", 0)
    async with socket(analyst_user) as communicator:
        await communicator.connect()
        await database_sync_to_async(_store_plain_rows)(2)
        message = await next_of_type(communicator, "transactions", timeout=5)

    assert [i["external_id"] for i in message["items"]] == ["p-0", "p-1"]
