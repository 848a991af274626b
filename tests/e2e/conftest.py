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
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

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
