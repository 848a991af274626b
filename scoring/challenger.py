"""The challenger model: scored on every live transaction in the shadow of the active one, deciding nothing."""

from __future__ import annotations

from typing import Any

from scoring.storage import NewRow


def score_challenger(rows: list[NewRow], *, features: Any) -> None:
    """Set each row's challenger score and version when a version is marked as the challenger. (Being written.)"""
