"""The one place that talks to the channel layer: group names, event types, and the sends.

Every send happens after the database commit. A channel layer that is down or slow is logged and
skipped: the rows are stored, and dashboards catch up with `resume` when they reconnect.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from typing import Any

import orjson
import redis.asyncio as redis
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import transaction

from scoring import metrics

log = logging.getLogger(__name__)

DASHBOARD_GROUP = "dashboard"
# Channel-layer event types (mapped to consumer methods by Channels: "." becomes "_").
TRANSACTIONS_EVENT = "dashboard.transactions"
CASE_EVENT = "dashboard.case"
# Message types on the socket, as in API.md.
MSG_TRANSACTIONS = "transactions"
MSG_STATS = "stats"
MSG_CASE = "case"
MSG_RESUME = "resume"
MSG_ACK = "ack"


async def transactions(events: list[dict[str, Any]]) -> None:
    """Push newly stored transactions (already committed) to every dashboard, in one group message."""
    if events:
        await _send({"type": TRANSACTIONS_EVENT, "items": [pack(event) for event in events]})


def pack(event: dict[str, Any]) -> list[Any]:
    """A pushed transaction as [id, score, decision, amount, its JSON, currency]: every dashboard socket of a
    process gets (and with Redis, decodes) the group message, so the JSON is encoded once here, not once per
    socket, and decoding it is cheap; the socket needs only the id to order and the rest to count."""
    return [event["id"], event["score"], event["decision"], event["amount"], orjson.dumps(event), event["currency"]]


PACKED_ID, PACKED_JSON = 0, 4  # where a packed transaction keeps its id and its JSON


def packed_figures(items: list[list[Any]]) -> Iterator[tuple[float, str, str, str]]:
    """(score, decision, amount, currency) of packed transactions, what the live figures count."""
    return ((score, decision, amount, currency) for _, score, decision, amount, _, currency in items)


async def case_changed(event: dict[str, Any]) -> None:
    """Tell every dashboard that a review case was opened, claimed, released or resolved."""
    await _send({"type": CASE_EVENT, "case": event})


def case_changed_on_commit(event: dict[str, Any]) -> None:
    """From synchronous code inside a transaction: send `case_changed` once the commit is done."""
    transaction.on_commit(lambda: async_to_sync(case_changed)(event))


async def _send(message: dict[str, Any]) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    started = time.perf_counter()
    try:
        await asyncio.wait_for(layer.group_send(DASHBOARD_GROUP, message), settings.BROADCAST_TIMEOUT_SECONDS)
    except Exception as exc:
        metrics.PUSH_FAILURES.labels(message["type"]).inc()
        log.warning(
            "broadcast of %s failed (%s: %s); dashboards will resume from the database",
            message["type"],
            type(exc).__name__,
            exc,
        )
        return
    metrics.PUSH_SECONDS.labels(message["type"]).observe(time.perf_counter() - started)


async def layer_ok() -> bool:
    """Whether the channel layer answers (health check): Redis must answer PING; in-memory always does."""
    if not settings.REDIS_URL:
        return get_channel_layer() is not None
    client = redis.from_url(settings.REDIS_URL, socket_connect_timeout=1, socket_timeout=1)
    try:
        return bool(await client.ping())
    except Exception:
        return False
    finally:
        await client.aclose()
