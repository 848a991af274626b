"""Micro-batching: concurrent requests share one store call; one bad request never fails the others."""

from __future__ import annotations

import asyncio
import threading

import pytest

from scoring.batcher import FULL_BATCH, MAX_ITEMS, MicroBatcher
from tests.conftest import tx_body

pytestmark = pytest.mark.django_db(transaction=True)


def items(*ids: str):
    from scoring.schemas import TransactionIn

    return [TransactionIn(**tx_body(external_id=i)) for i in ids]


class RecordingStore:
    """Stands in for ingest.store: records each call's external_ids, slowly enough for others to queue."""

    def __init__(self, *, fail_on: str | None = None, hold: int = 2) -> None:
        self.calls: list[list[str]] = []
        self.fail_on = fail_on
        self.hold = hold
        self.release = threading.Event()

    def __call__(self, batch):
        ids = [i.external_id for i in batch]
        self.calls.append(ids)
        if len(self.calls) <= self.hold:
            self.release.wait(2)  # hold the in-flight batches so that the next requests queue up
        if self.fail_on in ids:
            raise ValueError(f"cannot store {self.fail_on}")
        return [f"stored {i}" for i in ids], []


async def _nothing(events) -> None:
    pass


async def test_the_after_commit_callback_gets_each_stored_batchs_events_once_it_is_stored():
    announced = []

    async def after_commit(events) -> None:
        announced.append(events)

    def store(batch):
        return [f"stored {i.external_id}" for i in batch], [{"id": i.external_id} for i in batch]

    result = await asyncio.wait_for(MicroBatcher(store, after_commit=after_commit).submit(items("a", "b")), 1)

    assert result == ["stored a", "stored b"]
    assert announced == [[{"id": "a"}, {"id": "b"}]]


async def test_a_lone_request_is_stored_at_once():
    store = RecordingStore()
    store.release.set()  # nothing held: the request goes straight through

    result = await asyncio.wait_for(MicroBatcher(store, after_commit=_nothing).submit(items("alone")), 1)

    assert result == ["stored alone"]
    assert store.calls == [["alone"]]


async def test_requests_arriving_while_a_batch_is_in_flight_are_stored_together():
    store = RecordingStore()
    batcher = MicroBatcher(store, after_commit=_nothing)
    first = asyncio.create_task(batcher.submit(items("a")))
    await asyncio.sleep(0.05)
    second = asyncio.create_task(batcher.submit(items("b")))  # starts the second in-flight batch
    await asyncio.sleep(0.05)
    queued = [asyncio.create_task(batcher.submit(items(f"q{i}"))) for i in range(5)]
    await asyncio.sleep(0.05)
    store.release.set()

    results = await asyncio.gather(first, second, *queued)

    assert results[0] == ["stored a"]
    assert [r[0] for r in results[2:]] == [f"stored q{i}" for i in range(5)]
    assert ["q0", "q1", "q2", "q3", "q4"] in store.calls


async def test_one_failing_request_does_not_fail_the_others_of_its_batch():
    store = RecordingStore(fail_on="bad")
    batcher = MicroBatcher(store, after_commit=_nothing)
    blockers = [asyncio.create_task(batcher.submit(items(f"hold{i}"))) for i in range(2)]
    await asyncio.sleep(0.05)
    good = asyncio.create_task(batcher.submit(items("good")))
    bad = asyncio.create_task(batcher.submit(items("bad")))
    await asyncio.sleep(0.05)
    store.release.set()

    await asyncio.gather(*blockers)
    assert await good == ["stored good"]
    with pytest.raises(ValueError, match="cannot store bad"):
        await bad


async def test_a_batch_never_exceeds_the_item_bound():
    store = RecordingStore()
    batcher = MicroBatcher(store, after_commit=_nothing)
    blockers = [asyncio.create_task(batcher.submit(items(f"hold{i}"))) for i in range(2)]
    await asyncio.sleep(0.05)
    many = [asyncio.create_task(batcher.submit(items(*[f"r{r}-{i}" for i in range(100)]))) for r in range(4)]
    await asyncio.sleep(0.05)
    store.release.set()

    await asyncio.gather(*blockers, *many)

    assert max(len(call) for call in store.calls) <= MAX_ITEMS


@pytest.mark.parametrize(("waiting", "started"), [(FULL_BATCH, 3), (FULL_BATCH - 1, 2)])
async def test_a_full_batch_of_waiting_items_starts_a_third_batch_and_less_waits(settings, waiting, started):
    settings.INGEST_THREADS = 3  # as on PostgreSQL: three batches can be stored at once
    store = RecordingStore()
    batcher = MicroBatcher(store, after_commit=_nothing)
    blockers = [asyncio.create_task(batcher.submit(items(f"hold{i}"))) for i in range(2)]
    await asyncio.sleep(0.05)
    waiting_ids = [f"w{i}" for i in range(waiting)]
    queued = asyncio.create_task(batcher.submit(items(*waiting_ids)))
    await asyncio.sleep(0.1)

    assert len(store.calls) == started  # while the first two are still held
    store.release.set()
    await asyncio.gather(*blockers)
    assert await queued == [f"stored {i}" for i in waiting_ids]
    assert store.calls[2] == waiting_ids


async def test_never_more_than_three_batches_are_in_flight(settings):
    settings.INGEST_THREADS = 4
    store = RecordingStore(hold=3)
    batcher = MicroBatcher(store, after_commit=_nothing)
    blockers = [asyncio.create_task(batcher.submit(items(f"hold{i}"))) for i in range(2)]
    await asyncio.sleep(0.05)
    third = asyncio.create_task(batcher.submit(items(*[f"a{i}" for i in range(FULL_BATCH)])))
    await asyncio.sleep(0.05)
    fourth = asyncio.create_task(batcher.submit(items(*[f"b{i}" for i in range(FULL_BATCH)])))
    await asyncio.sleep(0.1)

    assert len(store.calls) == 3
    store.release.set()
    await asyncio.gather(*blockers, third, fourth)
    assert len(store.calls) == 4


class UnreachableDatabase:
    """Stands in for ingest.store while the database is down: each call waits for a pooled connection that
    never comes (DB_POOL_TIMEOUT), then fails."""

    def __init__(self, *, wait: float) -> None:
        self.wait = wait
        self.calls = 0

    def __call__(self, batch):
        from django.db import OperationalError

        self.calls += 1
        threading.Event().wait(self.wait)
        raise OperationalError("couldn't get a connection after the pool timeout")


@pytest.mark.parametrize("threads", [1, 3])
async def test_during_a_database_outage_every_queued_request_fails_within_one_pool_timeout(settings, threads):
    from django.db import OperationalError

    settings.INGEST_THREADS = threads
    store = UnreachableDatabase(wait=0.3)
    batcher = MicroBatcher(store, after_commit=_nothing)
    started = asyncio.get_running_loop().time()

    async def timed(request_items) -> float:
        with pytest.raises(OperationalError):
            await batcher.submit(request_items)
        return asyncio.get_running_loop().time() - started

    waits = await asyncio.gather(*[timed(items(f"r{i}", f"s{i}")) for i in range(12)])

    # Before, the queued requests waited their turn, a pool timeout each, and then one more each alone.
    assert max(waits) < 0.3 + 0.25
    assert store.calls <= 3


async def test_a_request_arriving_after_an_outage_was_met_still_gets_its_own_attempt():
    from django.db import OperationalError

    store = UnreachableDatabase(wait=0.05)
    batcher = MicroBatcher(store, after_commit=_nothing)
    with pytest.raises(OperationalError):
        await batcher.submit(items("early"))
    batcher.store = RecordingStore(hold=0)  # the database is back

    assert await asyncio.wait_for(batcher.submit(items("later")), 1) == ["stored later"]
