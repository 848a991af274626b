"""Sends valid transactions to the ingest API in batches, open loop at a fixed rate, and counts the answers."""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aiohttp

CARDS = 300
MERCHANTS = 200
PRIME_ROWS = 20
MAX_IN_FLIGHT = 16  # open loop up to this many outstanding batches; past it the sender falls behind
CURRENCIES = ["EUR", "USD", "GBP"]
COUNTRIES = ["NL", "DE", "FR", "GB", "US", "ES", "IT", "BR"]
CHANNELS = ["pos", "ecom", "atm"]
MCCS = ["5411", "5812", "5999", "4111", "5732", "6011", "7995", "5912"]


@dataclass
class LoadResult:
    """What the ingest API acknowledged during the load."""

    acked: int = 0
    sent: int = 0
    errors: int = 0
    error_kinds: Counter[str] = field(default_factory=Counter)
    batch_ms: list[float] = field(default_factory=list)
    max_id: int = 0
    elapsed_s: float = 0.0
    sender_late_ms: float = 0.0


def tx_body(*, external_id: str, rnd: random.Random) -> dict[str, Any]:
    """One valid transaction (API.md) stamped now, on one of a few hundred cards and merchants."""
    return {
        "external_id": external_id,
        "card_id": f"card-{rnd.randrange(CARDS):03d}",
        "merchant_id": f"merch-{rnd.randrange(MERCHANTS):03d}",
        "amount": f"{min(rnd.lognormvariate(3.6, 1.3), 50_000.0) + 0.01:.2f}",
        "currency": rnd.choice(CURRENCIES),
        "timestamp": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "country": rnd.choice(COUNTRIES),
        "channel": rnd.choice(CHANNELS),
        "mcc": rnd.choice(MCCS),
    }


async def post_batch(session: aiohttp.ClientSession, *, url: str, bodies: list[dict], result: LoadResult) -> None:
    """POST one batch and count what it acknowledged (or why it failed)."""
    started = time.perf_counter()
    result.sent += len(bodies)
    try:
        async with session.post(url, json={"transactions": bodies}) as response:
            payload = await response.json(content_type=None)
            if 200 <= response.status < 300:
                result.acked += len(payload["results"])
                result.max_id = max([result.max_id, *(item["id"] for item in payload["results"])])
            else:
                result.errors += 1
                result.error_kinds[f"{response.status} {str(payload.get('error', ''))[:60]}"] += 1
    except (aiohttp.ClientError, TimeoutError, ValueError, KeyError) as exc:
        result.errors += 1
        result.error_kinds[type(exc).__name__] += 1
    result.batch_ms.append((time.perf_counter() - started) * 1000)


def session_for(key: str) -> aiohttp.ClientSession:
    """An HTTP session that carries the ingest key and allows MAX_IN_FLIGHT connections."""
    return aiohttp.ClientSession(
        headers={"Authorization": f"Bearer {key}"},
        timeout=aiohttp.ClientTimeout(total=60),
        connector=aiohttp.TCPConnector(limit=MAX_IN_FLIGHT),
    )


async def prime(*, base: str, key: str, run_id: str) -> LoadResult:
    """Post a small batch before measuring, so there are rows to wait for and the socket is proven."""
    result = LoadResult()
    rnd = random.Random(f"{run_id}-prime")
    bodies = [tx_body(external_id=f"{run_id}-prime-{n:03d}", rnd=rnd) for n in range(PRIME_ROWS)]
    async with session_for(key) as session:
        await post_batch(session, url=f"{base}/api/v1/transactions/batch", bodies=bodies, result=result)
    return result


async def load(*, base: str, key: str, run_id: str, rate: int, duration: float, batch: int) -> LoadResult:
    """Open-loop load: a batch every batch/rate seconds for `duration`, at most MAX_IN_FLIGHT outstanding."""
    result = LoadResult()
    rnd = random.Random(run_id)
    url = f"{base}/api/v1/transactions/batch"
    interval = batch / rate
    slots = asyncio.Semaphore(MAX_IN_FLIGHT)
    tasks: list[asyncio.Task[None]] = []

    async def send(bodies: list[dict]) -> None:
        try:
            await post_batch(session, url=url, bodies=bodies, result=result)
        finally:
            slots.release()

    async with session_for(key) as session:
        start = time.perf_counter()
        for i in range(max(1, round(duration / interval))):
            due = start + i * interval
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            await slots.acquire()
            result.sender_late_ms = max(result.sender_late_ms, (time.perf_counter() - due) * 1000)
            bodies = [tx_body(external_id=f"{run_id}-{i * batch + n:07d}", rnd=rnd) for n in range(batch)]
            tasks.append(asyncio.create_task(send(bodies)))
        await asyncio.gather(*tasks)
        # Each batch stands for one interval of the schedule, so an on-time run measures exactly the target.
        result.elapsed_s = max(time.perf_counter() - start, len(tasks) * interval)
    return result
