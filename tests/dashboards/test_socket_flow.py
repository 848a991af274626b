"""The dashboard socket under pressure: slow and stalled clients, one subscription a process, lost pushes."""

from __future__ import annotations

import asyncio

import orjson
import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator

from dashboards import broadcast, consumers
from scoring.models import Transaction
from scoring.results import transaction_event
from tests.conftest import tx_body
from tests.dashboards.conftest import drain, next_of_type, socket, store_plain_rows

pytestmark = pytest.mark.django_db(transaction=True)


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
        await database_sync_to_async(store_plain_rows)(3)
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
        await database_sync_to_async(store_plain_rows)(2)
        message = await next_of_type(communicator, "transactions", timeout=5)

    assert [i["external_id"] for i in message["items"]] == ["p-0", "p-1"]
