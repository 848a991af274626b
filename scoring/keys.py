"""API keys as the hot path checks them: a short in-process cache in front of the database.

A known key costs no query; a revoked key stops working everywhere within KEY_CACHE_SECONDS.
"""

from __future__ import annotations

import time

from channels.db import database_sync_to_async

from scoring.models import ApiKey, hash_key

KEY_CACHE_SECONDS = 5.0
_MAX_ENTRIES = 10_000
_cache: dict[str, tuple[bool, float]] = {}


async def is_valid(raw_key: str) -> bool:
    """Whether `raw_key` is an active key (answers from the cache when it can)."""
    if not raw_key:
        return False
    digest = hash_key(raw_key)
    hit = _cache.get(digest)
    now = time.monotonic()
    if hit is not None and hit[1] > now:
        return hit[0]
    valid = await database_sync_to_async(ApiKey.objects.check_key)(raw_key) is not None
    if len(_cache) >= _MAX_ENTRIES:
        _cache.clear()  # unknown keys cannot grow it without bound
    _cache[digest] = (valid, now + KEY_CACHE_SECONDS)
    return valid


def bearer_key(authorization: str) -> str:
    """The key of an `Authorization: Bearer <key>` header, or ''."""
    scheme, _, key = authorization.partition(" ")
    return key.strip() if scheme.lower() == "bearer" else ""


def reset() -> None:
    """Forget every cached answer (tests; and right after revoking a key in this process)."""
    _cache.clear()
