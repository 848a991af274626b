"""A webhook receiver for tests, on 127.0.0.1 in a thread: it answers each request as its script says (a status, or
"hang": it sleeps past the sender's timeout and answers nothing), then 204 to every request after the script; it
verifies every request with the Standard Webhooks library and handles each event once, by its id."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from standardwebhooks import Webhook

HANG = "hang"


@dataclass
class Receiver:
    script: list[int | str] = field(default_factory=list)
    hang_seconds: float = 2.0
    slow_seconds: float = 0.0  # how long a request the receiver accepts takes to answer
    secret: str = ""
    url: str = ""
    requests: list[str] = field(default_factory=list)  # every request's webhook-id, as it arrived
    handled: dict[str, dict[str, Any]] = field(default_factory=dict)  # each event handled once, by id
    repeats: list[str] = field(default_factory=list)  # ids that arrived again after being handled
    unverified: list[str] = field(default_factory=list)
    arrived: threading.Event = field(default_factory=threading.Event)  # set by every request

    def __post_init__(self) -> None:
        self._lock = threading.Lock()

    def answer(self, body: bytes, headers: dict[str, str]) -> int | str:
        """What to do with one request: the script's next step, or accept it (once per id)."""
        with self._lock:
            self.requests.append(headers.get("webhook-id", ""))
            step = self.script.pop(0) if self.script else 204
        self.arrived.set()
        if step != 204:
            return step
        try:
            payload = Webhook(self.secret).verify(body, headers)
        except Exception:
            self.unverified.append(headers.get("webhook-id", ""))
            return 401
        with self._lock:
            if payload["id"] in self.handled:
                self.repeats.append(payload["id"])
            else:
                self.handled[payload["id"]] = payload
        return 204


@contextmanager
def receiving(receiver: Receiver) -> Iterator[Receiver]:
    """Serve `receiver` on a free port of 127.0.0.1 (its `url` set) until the block ends."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            step = receiver.answer(body, {k.lower(): v for k, v in self.headers.items()})
            if step == HANG:
                time.sleep(receiver.hang_seconds)
                return  # the sender gave up before this: nothing to answer
            time.sleep(receiver.slow_seconds)
            self.send_response(int(step))
            reply = json.dumps({"received": step == 204}).encode()
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(reply)))
            if step == 429:
                self.send_header("Retry-After", "0")
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, *args: Any) -> None:
            pass  # quiet

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}/hooks"
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
