from __future__ import annotations

from typing import Any

from django.http import HttpRequest

from scoring.roles import is_lead


def roles(request: HttpRequest) -> dict[str, Any]:
    """`is_lead` for templates: leads may take over cases that another analyst holds."""
    user = getattr(request, "user", None)
    return {"is_lead": bool(user is not None and is_lead(user))}
