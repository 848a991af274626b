"""A real daphne process and real WebSocket clients: a POSTed transaction arrives on the dashboard."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shlex
import shutil
import socket
import subprocess
import time
import urllib.request
from collections import Counter

import orjson
import pytest
import websockets
from django.conf import settings

from tests.conftest import tx_body
from tests.e2e.conftest import ROOT, free_port, post, server_process

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def get_text(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.read().decode()


async def wait_for_transaction(ws, external_id: str, timeout: float = 10) -> dict:
    async with asyncio.timeout(timeout):
        async for raw in ws:
            message = orjson.loads(raw)
            if message["type"] == "transactions":
                for item in message["items"]:
                    if item["external_id"] == external_id:
                        return item
    raise AssertionError("socket closed before the transaction arrived")


def ws_url(base: str) -> str:
    return base.replace("http://", "ws://") + "/ws/dashboard/"


async def test_posted_transaction_arrives_on_a_real_dashboard_socket(daphne_server, api_key, session_cookie):
    headers = {"Origin": daphne_server, "Cookie": session_cookie}
    async with websockets.connect(ws_url(daphne_server), additional_headers=headers) as ws:
        status, body = await asyncio.to_thread(
            post, daphne_server, "/api/v1/transactions", tx_body(external_id="e2e-1"), api_key
        )
        item = await wait_for_transaction(ws, "e2e-1")

    assert status == 201
    assert item["id"] == body["id"]
    assert item["score"] == body["score"]


async def test_real_server_refuses_an_anonymous_socket(daphne_server):
    with pytest.raises(websockets.exceptions.InvalidStatus):
        async with websockets.connect(ws_url(daphne_server), additional_headers={"Origin": daphne_server}):
            pass


async def test_reconnecting_socket_resumes_what_it_missed(daphne_server, api_key, session_cookie):
    headers = {"Origin": daphne_server, "Cookie": session_cookie}
    _, seen = await asyncio.to_thread(post, daphne_server, "/api/v1/transactions", tx_body(external_id="r-0"), api_key)
    for i in (1, 2):  # sent while no dashboard is connected
        await asyncio.to_thread(post, daphne_server, "/api/v1/transactions", tx_body(external_id=f"r-{i}"), api_key)

    async with websockets.connect(ws_url(daphne_server), additional_headers=headers) as ws:
        await ws.send(orjson.dumps({"type": "resume", "after_id": seen["id"]}).decode())
        replayed = await wait_for_transaction(ws, "r-2")

    assert replayed["external_id"] == "r-2"


@pytest.mark.skipif(not settings.REDIS_URL, reason="sharing groups across processes needs Redis (REDIS_URL)")
async def test_two_processes_share_the_dashboard_group_through_redis(daphne_server, api_key, session_cookie, tmp_path):
    headers = {"Origin": daphne_server, "Cookie": session_cookie}
    with server_process(port=free_port(), log_path=tmp_path / "second.log") as second:
        async with websockets.connect(ws_url(daphne_server), additional_headers=headers) as ws:
            status, _ = await asyncio.to_thread(
                post, second, "/api/v1/transactions", tx_body(external_id="cross-1"), api_key
            )
            item = await wait_for_transaction(ws, "cross-1")

    assert status == 201
    assert item["external_id"] == "cross-1"


def get_json(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def test_a_redis_outage_never_loses_a_transaction(transactional_db, model_version, api_key, tmp_path):
    from scoring.models import Transaction

    dead_redis = {"REDIS_URL": "redis://127.0.0.1:1/0", "BROADCAST_TIMEOUT_SECONDS": "0.5"}
    with server_process(port=free_port(), log_path=tmp_path / "server.log", env=dead_redis) as base:
        status, body = post(base, "/api/v1/transactions", tx_body(external_id="during-outage"), api_key)
        health_status, health = get_json(f"{base}/readyz")

    assert status == 201
    assert Transaction.objects.filter(pk=body["id"], external_id="during-outage").exists()
    assert health_status == 503
    assert health["channel_layer"] == "down"
    assert health["database"] == "ok"


REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"


def start_redis(port: int) -> subprocess.Popen:
    """A Redis of the test's own on `port` (the machine's stays up for the rest of the suite)."""
    proc = subprocess.Popen(
        [REDIS_SERVER, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return proc
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("redis-server did not start") from None
            time.sleep(0.05)


async def received_until(ws, wanted: set[str], timeout: float) -> Counter:
    """How often each transaction arrived on `ws`, read until all of `wanted` have or `timeout` passes."""
    seen: Counter = Counter()
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout):
            async for raw in ws:
                message = orjson.loads(raw)
                if message["type"] == "transactions":
                    seen.update(item["external_id"] for item in message["items"])
                if wanted <= seen.keys():
                    break
    return seen


@pytest.mark.skipif(not os.access(REDIS_SERVER, os.X_OK), reason="needs redis-server")
async def test_dashboards_get_every_transaction_stored_while_redis_restarts_once(
    transactional_db, model_version, api_key, session_cookie, tmp_path
):
    port = free_port()
    redis = start_redis(port)
    env = {"REDIS_URL": f"redis://127.0.0.1:{port}/0", "BROADCAST_TIMEOUT_SECONDS": "0.5"}
    try:
        with server_process(port=free_port(), log_path=tmp_path / "server.log", env=env) as base:
            headers = {"Origin": base, "Cookie": session_cookie}
            async with websockets.connect(ws_url(base), additional_headers=headers) as ws:

                async def send(i: int) -> int:
                    body = tx_body(external_id=f"rr-{i}")
                    return (await asyncio.to_thread(post, base, "/api/v1/transactions", body, api_key))[0]

                statuses = [await send(i) for i in range(3)]
                redis.terminate()
                redis.wait(timeout=10)
                statuses += [await send(i) for i in range(3, 6)]  # stored; their broadcasts fail
                redis = start_redis(port)
                statuses += [await send(i) for i in range(6, 9)]
                wanted = {f"rr-{i}" for i in range(9)}
                seen = await received_until(ws, wanted, timeout=20)
    finally:
        redis.terminate()
        redis.wait(timeout=10)

    assert statuses == [201] * 9
    assert seen.keys() == wanted
    assert set(seen.values()) == {1}  # each once
    assert "never came through the channel layer" in (tmp_path / "server.log").read_text()


def test_every_process_switches_to_a_newly_activated_model_without_a_restart(
    transactional_db, model_version, api_key, tiny_artifact, tmp_path
):
    import time

    from scoring.features import FEATURES
    from scoring.models import ModelVersion

    with (
        server_process(port=free_port(), log_path=tmp_path / "one.log") as one,
        server_process(port=free_port(), log_path=tmp_path / "two.log") as two,
    ):
        before = [
            post(base, "/api/v1/transactions", tx_body(external_id=f"before-{i}"), api_key)[1]
            for i, base in enumerate((one, two))
        ]
        newer = ModelVersion.objects.create(version="v-newer", artifact=tiny_artifact, features=FEATURES)
        newer.activate()
        deadline, seen = time.monotonic() + 10, {}
        while time.monotonic() < deadline and set(seen.values()) != {"v-newer"}:
            for i, base in enumerate((one, two)):
                n = len(seen) + int(time.monotonic() * 1000)
                seen[base] = post(base, "/api/v1/transactions", tx_body(external_id=f"after-{i}-{n}"), api_key)[1][
                    "model_version"
                ]
            time.sleep(0.2)

    assert {b["model_version"] for b in before} == {model_version.version}
    assert set(seen.values()) == {"v-newer"}


async def test_a_stalled_dashboard_is_dropped_while_ingest_and_other_dashboards_go_on(
    transactional_db, model_version, api_key, session_cookie, tmp_path
):
    stall = {"DASHBOARD_STALL_SECONDS": "1"}
    with server_process(port=free_port(), log_path=tmp_path / "server.log", env=stall) as base:
        headers = {"Origin": base, "Cookie": session_cookie}
        async with (
            websockets.connect(ws_url(base), additional_headers=headers, max_queue=1) as stalled,
            websockets.connect(ws_url(base), additional_headers=headers) as healthy,
        ):
            await asyncio.to_thread(post, base, "/api/v1/transactions", tx_body(external_id="st-0"), api_key)
            await wait_for_transaction(healthy, "st-0")
            first = orjson.loads(await stalled.recv())
            await stalled.send(orjson.dumps({"type": "ack", "seq": first["seq"]}).decode())
            # From here the stalled page reads nothing and acknowledges nothing, like a frozen tab.
            statuses = []
            for burst in range(30):  # more frames than MAX_UNACKED (20)
                batch = {"transactions": [tx_body(external_id=f"st-{burst}-{i}") for i in range(5)]}
                status, _ = await asyncio.to_thread(post, base, "/api/v1/transactions/batch", batch, api_key)
                statuses.append(status)
                await asyncio.sleep(0.1)
            last = await wait_for_transaction(healthy, "st-29-4")

            frames = []
            with pytest.raises(websockets.exceptions.ConnectionClosed) as closed:
                async with asyncio.timeout(10):
                    async for raw in stalled:
                        frames.append(orjson.loads(raw))

    assert statuses == [201] * 30
    assert last["external_id"] == "st-29-4"
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4408
    pushed = [i["external_id"] for f in frames if f["type"] == "transactions" for i in f["items"]]
    assert "st-29-4" not in pushed  # held back, not queued without bound: it resumes by id on reconnect
    assert "acknowledged nothing" in (tmp_path / "server.log").read_text()


async def test_concurrent_retries_on_two_ingest_threads_store_each_transaction_once(
    transactional_db, model_version, api_key, tmp_path
):
    from scoring.models import Transaction

    with server_process(port=free_port(), log_path=tmp_path / "server.log", env={"INGEST_THREADS": "2"}) as base:
        # Every transaction is sent twice at the same time, singly or in batches, by 24 concurrent callers.
        singles = [("/api/v1/transactions", tx_body(external_id=f"cc-{i}")) for i in range(120)]
        batches = [
            ("/api/v1/transactions/batch", {"transactions": [tx_body(external_id=f"cb-{b}-{i}") for i in range(20)]})
            for b in range(6)
        ]
        calls = (singles + batches) * 2
        gate = asyncio.Semaphore(24)

        async def call(path: str, body: dict) -> tuple[int, dict]:
            async with gate:
                return await asyncio.to_thread(post, base, path, body, api_key)

        answers = await asyncio.gather(*(call(path, body) for path, body in calls))

    results: dict[str, list[tuple[int, int]]] = {}
    for (path, body), (status, answer) in zip(calls, answers, strict=True):
        items = answer["results"] if path.endswith("batch") else [answer]
        sent = body["transactions"] if path.endswith("batch") else [body]
        assert status in (200, 201), answer
        for item, tx in zip(items, sent, strict=True):
            results.setdefault(tx["external_id"], []).append((status, item["id"]))
    stored = await asyncio.to_thread(lambda: dict(Transaction.objects.values_list("external_id", "id")))
    assert len(stored) == 120 + 6 * 20
    for external_id, seen in results.items():
        assert {pk for _, pk in seen} == {stored[external_id]}  # both answers name the one stored row
    single_statuses = sorted(status for ext, seen in results.items() if ext.startswith("cc-") for status, _ in seen)
    assert single_statuses == [200] * 120 + [201] * 120  # one 201 for the first, one 200 for the retry


async def test_the_procfiles_web_command_serves_ingest_and_dashboards(
    transactional_db, model_version, api_key, session_cookie, tmp_path
):
    (line,) = [line for line in (ROOT / "Procfile").read_text().splitlines() if line.startswith("web:")]
    port = free_port()
    command = shlex.split(line.removeprefix("web:").replace("$PORT", str(port)))
    with server_process(port=port, log_path=tmp_path / "server.log", command=command) as base:
        headers = {"Origin": base, "Cookie": session_cookie}
        async with websockets.connect(ws_url(base), additional_headers=headers) as ws:
            status, body = await asyncio.to_thread(
                post, base, "/api/v1/transactions", tx_body(external_id="procfile-1"), api_key
            )
            item = await wait_for_transaction(ws, "procfile-1")
        login_page = await asyncio.to_thread(get_text, base + "/accounts/login/")

    assert status == 201
    assert item["id"] == body["id"]
    assert 'name="password"' in login_page


def trickle(base: str, request: bytes, *, hold: int, give_up: float = 10) -> tuple[float, bytes]:
    """Send `request`'s first `hold` bytes at once and the rest one byte a second, as a slow (or malicious)
    client does; the seconds until the server closed the connection (`give_up` at most), and what it answered."""
    host, port = base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.settimeout(1.0)
        started, answer = time.monotonic(), b""
        sock.sendall(request[:hold])
        for byte in request[hold:]:
            if time.monotonic() - started > give_up:
                break
            try:
                sock.sendall(bytes([byte]))
                chunk = sock.recv(65536)
            except TimeoutError:
                continue
            except (BrokenPipeError, ConnectionResetError):
                break
            answer += chunk
            if not chunk:
                break
        return time.monotonic() - started, answer


def test_the_procfiles_server_closes_a_connection_whose_headers_or_body_trickle_in(
    transactional_db, model_version, api_key, tmp_path
):
    (line,) = [line for line in (ROOT / "Procfile").read_text().splitlines() if line.startswith("web:")]
    port = free_port()
    command = shlex.split(line.removeprefix("web:").replace("$PORT", str(port)))
    env = {"REQUEST_HEADER_TIMEOUT_SECONDS": "2", "REQUEST_BODY_TIMEOUT_SECONDS": "2"}
    body = json.dumps(tx_body(external_id="slow-1")).encode()
    ingest = (
        f"POST /api/v1/transactions HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {api_key}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    login = f"POST /accounts/login/ HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 100\r\n\r\n".encode()
    with server_process(port=port, log_path=tmp_path / "server.log", env=env, command=command) as base:
        slow_headers = trickle(base, ingest + body, hold=10)
        slow_ingest_body = trickle(base, ingest + body, hold=len(ingest) + 1)
        slow_page_body = trickle(base, login + b"x" * 100, hold=len(login))
        status, _ = post(base, "/api/v1/transactions", tx_body(external_id="fast-1"), api_key)

    seconds, answer = slow_headers
    # The bound, plus at most a second: the client sends once a second, and the body deadline is checked so often.
    assert seconds < 2 + 2 and answer == b""  # closed without a word: there is no request to answer
    for seconds, answer in (slow_ingest_body, slow_page_body):
        assert seconds < 2 + 2
        assert answer.startswith(b"HTTP/1.1 408 ")
    assert status == 201  # everyone else is served as before
