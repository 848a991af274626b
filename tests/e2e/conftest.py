"""Real server processes for end-to-end tests: daphne serving fraudsite.asgi on the test database."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
from django.conf import settings
from django.db import connection
from playwright.sync_api import Browser, BrowserContext, Page, expect, sync_playwright

from tests.conftest import tx_body

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_database_url() -> str:
    """DATABASE_URL of the database this test session created, for a server process to share."""
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{db['NAME']}"
    auth = db["USER"] + (f":{db['PASSWORD']}" if db["PASSWORD"] else "")
    return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


@contextmanager
def server_process(
    *, port: int, log_path: Path, env: dict[str, str] | None = None, command: list[str] | None = None
) -> Iterator[str]:
    """Start `daphne fraudsite.asgi:application` (or `command`, whose program is looked up beside this
    Python) on `port`; yield its base URL; stop it afterwards."""
    server_env = {
        **os.environ,
        "DATABASE_URL": test_database_url(),
        # The key this session signs with (its login cookies), whether it came from the environment or var/.
        "SECRET_KEY": settings.SECRET_KEY,
        "MODEL_REFRESH_SECONDS": "0.5",
        "PYTHONUNBUFFERED": "1",
    }
    if settings.REDIS_URL:
        server_env["REDIS_URL"] = settings.REDIS_URL
        server_env["CHANNEL_PREFIX"] = settings.CHANNEL_LAYERS["default"]["CONFIG"]["prefix"]
    server_env.update(env or {})
    program, *args = command or ["daphne", "-b", "127.0.0.1", "-p", str(port), "fraudsite.asgi:application"]
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [str(Path(sys.executable).with_name(program)), *args],
            cwd=ROOT,
            env=server_env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited early:\n{log_path.read_text()}")
            try:
                with urllib.request.urlopen(f"{base}/healthz", timeout=3):
                    break
            except urllib.error.HTTPError:  # answering, though something it depends on is down
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"server did not answer in 30 s:\n{log_path.read_text()}") from None
                time.sleep(0.2)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture
def daphne_server(transactional_db, model_version, tmp_path) -> Iterator[str]:
    with server_process(port=free_port(), log_path=tmp_path / "server.log") as base:
        yield base


@pytest.fixture
def session_cookie(transactional_db, analyst) -> str:
    """A logged-in analyst's session cookie, stored in the shared database."""
    from django.test import Client

    client = Client()
    client.force_login(analyst)
    return f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}"


def post(base: str, path: str, body: dict, key: str) -> tuple[int, dict]:
    """POST `body` as JSON with the API key to a real server: its status and JSON answer."""
    request = urllib.request.Request(
        base + path,
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {key}"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


# --- the desk in Debian's chromium (tests/e2e/test_browser*.py) ------------------------------------

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
WAIT_MS = 10_000  # Playwright's auto-waiting bound for anything that crosses the socket
SCREENSHOTS = ROOT / "test-artifacts" / "screenshots"
ALICE = ("alice", "pw-alice-123")
LEAD = ("lead", "pw-lead-123")
NOBODY = ("nobody", "pw-nobody-123")  # logged in, but neither an analyst nor a lead
FLAGGED_AMOUNT = "9000.00"
T = TypeVar("T")


@dataclass
class Desk:
    """The running service, a browser on it, and the ingest API key."""

    base: str
    browser: Browser
    api_key: str

    def context(self, *, width: int = 1440) -> BrowserContext:
        return self.browser.new_context(base_url=self.base, viewport={"width": width, "height": 900})

    def login(self, context: BrowserContext, user: tuple[str, str]) -> Page:
        """Sign in through the real login form and land on the live page."""
        page = context.new_page()
        page.goto("/accounts/login/")
        page.fill("input[name=username]", user[0])
        page.fill("input[name=password]", user[1])
        page.click("#login-form button[type=submit]")
        page.wait_for_url(f"{self.base}/", timeout=WAIT_MS)
        return page

    def post(self, **overrides: Any) -> dict[str, Any]:
        """POST one transaction to the ingest API, as a payment system would."""
        status, body = post(self.base, "/api/v1/transactions", tx_body(**overrides), self.api_key)
        assert status == 201, body
        return body


@pytest.fixture(scope="session")
def screenshot_dir(request: pytest.FixtureRequest) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    # Said once, after pytest's summary line (a cleanup, not a fixture finalizer, so it is not captured away).
    request.config.add_cleanup(lambda: print(f"browser screenshots saved in {SCREENSHOTS}"))
    return SCREENSHOTS


@pytest.fixture
def desk(daphne_server: str, api_key: str, analyst, lead) -> Iterator[Desk]:
    # Playwright's sync API marks its event loop as running between calls, so Django refuses ORM calls
    # while it is up: every database fixture is set up before it starts, and torn down after it stops.
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            yield Desk(base=daphne_server, browser=browser, api_key=api_key)
        finally:
            browser.close()


@pytest.fixture
def nobody(transactional_db):
    """An account without a role (ask for it before `desk`: no ORM call once the browser runs)."""
    from django.contrib.auth import get_user_model

    return get_user_model().objects.create_user(NOBODY[0], password=NOBODY[1])


def outside_the_browser_loop(query: Callable[[], T]) -> T:
    """Run an ORM query in a thread of its own (no event loop there), closing its connection afterwards."""

    def run() -> T:
        from django.db import connections

        try:
            return query()
        finally:
            connections.close_all()

    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(run).result()


def wait_until_live(page: Page) -> None:
    expect(page.locator("#conn-status")).to_have_attribute("data-state", "live", timeout=WAIT_MS)
