"""The one mechanism behind each process's caches of what the database says (the active model, the challenger, the
live rules, the lists, the webhook subscriptions): looked up at most once a period, so that ingest asks the
database nothing per request, and a change made in any process reaches this one within that period."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable


class Refreshed:
    """A value `_refresh()` reads from the database again once `seconds()` have passed since the last look (a
    setting read on each use, so that tests and deployments can change it). One thread looks; the others keep the
    value they have meanwhile."""

    def __init__(self, *, seconds: Callable[[], float]) -> None:
        self._seconds = seconds
        self._lock = threading.Lock()
        self._checked = -math.inf

    def look(self) -> None:
        """Call `_refresh()` when the last look is a period old."""
        if time.monotonic() - self._checked < self._seconds():
            return
        with self._lock:
            now = time.monotonic()
            if now - self._checked >= self._seconds():
                self._refresh()
                self._checked = now

    def expire(self) -> None:
        """Look again at the next use: after a change made in this process, and between tests."""
        self._checked = -math.inf

    def _refresh(self) -> None:
        raise NotImplementedError
