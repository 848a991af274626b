"""Which pages may open the dashboard socket: the same origin, to the scheme, host and port.

Browsers send any page's socket to any site with that site's cookies; only the Origin header tells the
server which page asked. Channels' AllowedHostsOriginValidator compares the host alone, so a page on another
port of an allowed host (another service, a developer's tool) could read every analyst's feed.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import ParseResult, urlparse

from channels.security.websocket import OriginValidator, WebsocketDenier
from django.conf import settings
from django.http.request import split_domain_port, validate_host

Scope = dict[str, Any]


class SameOriginValidator(OriginValidator):
    """Channels' OriginValidator whose allowed origins are ALLOWED_ORIGINS or, when that is empty, the origin
    the socket itself was served on (when its host is in ALLOWED_HOSTS)."""

    def __init__(self, application: Any) -> None:
        super().__init__(application, list(settings.ALLOWED_ORIGINS))

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        origin = _header(scope, b"origin")
        allowed = self.allowed_origins or served_origins(scope)
        parsed = urlparse(origin) if origin else None
        if parsed is not None and any(self.match_allowed_origin(parsed, pattern) for pattern in allowed):
            return await self.application(scope, receive, send)
        return await WebsocketDenier()(scope, receive, send)

    def match_allowed_origin(self, parsed_origin: ParseResult, pattern: str) -> bool:
        # The parent matches a pattern without a scheme on the host alone; ours always have one, so it compares
        # scheme, host and port (default ports filled in).
        return "://" in pattern and super().match_allowed_origin(parsed_origin, pattern)


def served_origins(scope: Scope) -> list[str]:
    """The origin of the page that this socket's own host serves: [] when the host is not one we serve.

    A host in ALLOWED_HOSTS only: a page on an attacker's name that resolves here (DNS rebinding) would
    otherwise be its own "same origin"."""
    host = _header(scope, b"host")
    domain, _ = split_domain_port(host)
    if not domain or not validate_host(domain, settings.ALLOWED_HOSTS):
        return []
    return [f"{'https' if _secure(scope) else 'http'}://{host}"]


def _secure(scope: Scope) -> bool:
    """Served over TLS, here or (SECURE_PROXY_SSL_HEADER) at the proxy in front, as Django decides for pages."""
    if scope.get("scheme") in {"wss", "https"}:
        return True
    proxy = settings.SECURE_PROXY_SSL_HEADER
    if proxy is None:
        return False
    header, value = proxy
    sent = _header(scope, header.removeprefix("HTTP_").replace("_", "-").lower().encode())
    return sent.split(",", 1)[0].strip() == value  # the proxy's own hop comes first


def _header(scope: Scope, name: bytes) -> str:
    for key, value in scope.get("headers", []):
        if key == name:
            return value.decode("latin-1")
    return ""
