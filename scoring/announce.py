"""Where committed changes are announced: `settings.BROADCASTER` names the module that pushes them to the
dashboards, so the pipeline and the case functions end with it without the scoring app importing the
dashboards app (which is built on scoring, not the other way round)."""

from __future__ import annotations

from functools import cache
from importlib import import_module
from types import ModuleType

from django.conf import settings


@cache
def broadcaster() -> ModuleType:
    """The module with `transactions(events)` (async) and `case_changed_on_commit(event)`."""
    return import_module(settings.BROADCASTER)
