"""API keys as the hot path checks them: a short in-process cache in front of the database.

A known key costs no query; a revoked key stops working everywhere within KEY_CACHE_SECONDS. When an
answer expires, the requests that arrive while it is looked up again wait for that one lookup: each
asking the database itself cost one query per concurrent request, queued on the one thread that also
serves Django's sync views.
"""

from __future__ import annotations

import asyncio
import time

from channels.db import database_sync_to_async

from scoring.models import ApiKey, hash_key

KEY_CACHE_SECONDS = 5.0
_MAX_ENTRIES = 10_000
_cache: dict[str, tuple[bool, float]] = {}
_lookups: dict[str, asyncio.Task[bool]] = {}


async def is_valid(raw_key: str) -> bool:
    """Whether `raw_key` is an active key (answers from the cache when it can)."""
    if not raw_key:
        return False
    digest = hash_key(raw_key)
    hit = _cache.get(digest)
    if hit is not None and hit[1] > time.monotonic():
        return hit[0]
    lookup = _lookups.get(digest)
    # a lookup of another event loop (an earlier test's, now closed) cannot be awaited from this one
    if lookup is None or lookup.get_loop() is not asyncio.get_running_loop():
        lookup = _lookups[digest] = asyncio.get_running_loop().create_task(_look_up(raw_key, digest))
        lookup.add_done_callback(lambda done: _lookups.pop(digest, None) if _lookups.get(digest) is done else None)
    # shielded: one caller cancelled (its client gone) does not cancel the others' lookup
    return await asyncio.shield(lookup)


async def _look_up(raw_key: str, digest: str) -> bool:
    valid = await database_sync_to_async(ApiKey.objects.check_key)(raw_key) is not None
    if len(_cache) >= _MAX_ENTRIES:
        _cache.clear()  # unknown keys cannot grow it without bound
    _cache[digest] = (valid, time.monotonic() + KEY_CACHE_SECONDS)
    return valid


def bearer_key(authorization: str) -> str:
    """The key of an `Authorization: Bearer <key>` header, or ''."""
    scheme, _, key = authorization.partition(" ")
    return key.strip() if scheme.lower() == "bearer" else ""


def reset() -> None:
    """Forget every cached answer (tests; and right after revoking a key in this process)."""
    _cache.clear()
    _lookups.clear()
