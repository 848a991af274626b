"""What protects the analysts' desk: login throttling, the socket's origin, the page policy, password reset
by mail, and the bound on a request body's arrival."""

from __future__ import annotations

import asyncio
import logging
import re

import pytest
from channels.testing import WebsocketCommunicator
from django.core import mail
from django.urls import include, path

from fraudsite.asgi import application
from fraudsite.middleware import BodyDeadline
from fraudsite.urls import account_routes

# This module is also the URL configuration of the test that runs without password reset.
urlpatterns = [path("accounts/", include(account_routes(reset=False))), path("", include("dashboards.urls"))]


def log_in(client, *, username: str, password: str):
    return client.post("/accounts/login/", {"username": username, "password": password})


# --- login throttling --------------------------------------------------------------------------


def test_after_the_failure_limit_even_the_right_password_is_refused(client, analyst, settings):
    answers = [
        log_in(client, username="alice", password="wrong").status_code for _ in range(settings.AXES_FAILURE_LIMIT)
    ]

    refused = log_in(client, username="alice", password="pw-alice-123")

    assert answers == [200] * (settings.AXES_FAILURE_LIMIT - 1) + [429]  # the form again, then the lockout

    assert refused.status_code == 429
    assert b"Too many wrong passwords" in refused.content
    assert "_auth_user_id" not in client.session


def test_fewer_failures_than_the_limit_still_let_the_right_password_in(client, analyst, settings):
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        log_in(client, username="alice", password="wrong")

    assert log_in(client, username="alice", password="pw-alice-123").status_code == 302
    assert client.session["_auth_user_id"] == str(analyst.pk)


def test_a_lockout_is_recorded_and_logged(client, analyst, settings, caplog):
    from axes.models import AccessAttempt, AccessFailureLog

    with caplog.at_level(logging.WARNING, logger="axes"):
        for _ in range(settings.AXES_FAILURE_LIMIT):
            log_in(client, username="alice", password="wrong")

    attempt = AccessAttempt.objects.get(username="alice")
    assert attempt.failures_since_start == settings.AXES_FAILURE_LIMIT
    assert AccessFailureLog.objects.filter(username="alice", locked_out=True).exists()
    assert any("Locking out" in record.getMessage() for record in caplog.records)


def test_a_lockout_of_one_account_leaves_the_others_alone(client, analyst, lead, settings):
    for _ in range(settings.AXES_FAILURE_LIMIT):
        log_in(client, username="alice", password="wrong")

    assert log_in(client, username="lead", password="pw-lead-123").status_code == 302


# --- the socket's origin -------------------------------------------------------------------------


async def socket_answer(user, *, headers: list[tuple[bytes, bytes]]) -> bool:
    communicator = WebsocketCommunicator(application, "/ws/dashboard/", headers=headers)
    communicator.scope["user"] = user
    try:
        connected, _ = await communicator.connect()
    finally:
        await communicator.disconnect()
    return connected


@pytest.fixture
def watcher(transactional_db):
    from django.contrib.auth import get_user_model

    from scoring.roles import ensure_roles, make_analyst

    ensure_roles()
    user = get_user_model().objects.create_user("watcher", password="pw-watcher-1")
    make_analyst(user)
    return user


HOST = (b"host", b"localhost:8000")


async def test_a_socket_from_the_page_s_own_origin_is_accepted(watcher):
    assert await socket_answer(watcher, headers=[HOST, (b"origin", b"http://localhost:8000")])


@pytest.mark.parametrize(
    "origin",
    [
        b"http://localhost:9999",  # another port of the same host
        b"http://localhost",
        b"https://localhost:8000",  # another scheme
        b"http://127.0.0.1:8000",  # another host
        b"null",
    ],
)
async def test_a_socket_from_another_origin_is_refused(watcher, origin):
    assert not await socket_answer(watcher, headers=[HOST, (b"origin", origin)])


async def test_a_socket_without_an_origin_is_refused(watcher):
    assert not await socket_answer(watcher, headers=[HOST])


async def test_a_socket_on_a_host_not_served_is_refused_even_from_its_own_origin(watcher):
    # DNS rebinding: an attacker's name pointed at this server is its own "same origin".
    headers = [(b"host", b"evil.example:8000"), (b"origin", b"http://evil.example:8000")]

    assert not await socket_answer(watcher, headers=headers)


async def test_behind_a_tls_proxy_the_origin_is_the_https_one(watcher, settings):
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    proxied = [(b"host", b"localhost"), (b"x-forwarded-proto", b"https")]

    assert await socket_answer(watcher, headers=[*proxied, (b"origin", b"https://localhost")])
    assert not await socket_answer(watcher, headers=[*proxied, (b"origin", b"http://localhost")])


async def test_configured_origins_replace_the_served_one(watcher, settings):
    from channels.auth import AuthMiddlewareStack
    from channels.routing import URLRouter

    from dashboards.routing import websocket_urlpatterns
    from fraudsite.origins import SameOriginValidator

    settings.ALLOWED_ORIGINS = ["https://fraud.example.com"]
    app = SameOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns)))  # as asgi.py builds it

    async def answer(origin: bytes) -> bool:
        communicator = WebsocketCommunicator(app, "/ws/dashboard/", headers=[HOST, (b"origin", origin)])
        communicator.scope["user"] = watcher
        connected, _ = await communicator.connect()
        await communicator.disconnect()
        return connected

    assert await answer(b"https://fraud.example.com")
    assert not await answer(b"https://fraud.example.com:8443")
    assert not await answer(b"http://localhost:8000")


# --- Content-Security-Policy ---------------------------------------------------------------------


def policy(response) -> dict[str, list[str]]:
    directives = [d.strip().split() for d in response.headers["Content-Security-Policy"].split(";") if d.strip()]
    return {name: values for name, *values in directives}


def test_pages_carry_a_policy_that_allows_no_inline_script(client):
    directives = policy(client.get("/accounts/login/"))

    assert directives["script-src"] == ["'self'"]
    assert directives["connect-src"] == ["'self'"]  # the page's own ws:// and wss:// too (CSP level 3)
    assert directives["object-src"] == ["'none'"]
    assert directives["frame-ancestors"] == ["'none'"]


def test_the_desk_pages_have_no_inline_script(admin_client):
    # Every <script> must have a src (or be data, not code) for the policy to keep the page working.
    for url in ["/accounts/login/", "/", "/cases/", "/admin/", "/api/v1/docs"]:
        page = admin_client.get(url, follow=True).content.decode()
        inline = [tag for tag in re.findall(r"<script\b[^>]*>", page) if "src=" not in tag and "json" not in tag]
        assert inline == [], url


# --- password reset --------------------------------------------------------------------------------


def test_password_reset_mails_a_link_that_sets_a_new_password(client, analyst):
    analyst.email = "alice@example.com"
    analyst.save()

    sent = client.post("/accounts/password_reset/", {"email": "alice@example.com"})

    assert sent.status_code == 302
    assert len(mail.outbox) == 1
    assert mail.outbox[0].to == ["alice@example.com"]
    link = re.search(r"https?://[^/\s]+(/accounts/reset/\S+)", mail.outbox[0].body).group(1)
    form = client.get(link, follow=True)
    assert b"Choose a new password" in form.content
    done = client.post(form.redirect_chain[-1][0], {"new_password1": "a-new-pw-4567", "new_password2": "a-new-pw-4567"})
    assert done.status_code == 302
    analyst.refresh_from_db()
    assert analyst.check_password("a-new-pw-4567")


def test_the_login_page_offers_password_reset_when_mail_can_be_sent(client):
    assert b'id="forgot-password"' in client.get("/accounts/login/").content


@pytest.mark.urls("tests.test_security")
def test_without_a_mail_backend_password_reset_is_not_offered(client):
    assert client.get("/accounts/password_reset/").status_code == 404
    assert b'id="forgot-password"' not in client.get("/accounts/login/").content


# --- slow bodies -----------------------------------------------------------------------------------


async def test_a_body_that_does_not_arrive_in_time_gets_a_408_and_the_application_stops_waiting(settings, monkeypatch):
    settings.REQUEST_BODY_TIMEOUT_SECONDS = 0.2
    monkeypatch.setattr("fraudsite.middleware.SWEEP_SECONDS", 0.05)
    seen, sent = [], []

    async def app(scope, receive, send) -> None:
        while (message := await receive())["type"] == "http.request" and message["more_body"]:
            seen.append(message["body"])
        seen.append(message["type"])

    async def trickle() -> dict:
        await asyncio.sleep(0.05)
        return {"type": "http.request", "body": b"x", "more_body": True}

    async def send(message: dict) -> None:
        sent.append(message)

    await asyncio.wait_for(BodyDeadline(app)({"type": "http"}, trickle, send), 1)

    assert seen[-1] == "http.disconnect"
    assert 2 <= len(seen) <= 5  # a few bytes, then the deadline
    assert sent[0]["status"] == 408
    assert (b"connection", b"close") in sent[0]["headers"]


async def test_a_body_that_arrives_in_time_is_passed_on_untouched(settings):
    settings.REQUEST_BODY_TIMEOUT_SECONDS = 0.2
    messages = iter([{"type": "http.request", "body": b"{}", "more_body": False}])
    received, sent = [], []

    async def app(scope, receive, send) -> None:
        received.append(await receive())
        await send({"type": "http.response.start", "status": 200})

    async def receive() -> dict:
        return next(messages)

    async def send(message: dict) -> None:
        sent.append(message)

    await BodyDeadline(app)({"type": "http"}, receive, send)
    await asyncio.sleep(0.3)

    assert received == [{"type": "http.request", "body": b"{}", "more_body": False}]
    assert [m["status"] for m in sent] == [200]
