"""A real server behind a real PgBouncer in transaction mode, as many PostgreSQL deployments run it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg
import pytest
from django.db import connection

from tests.conftest import tx_body
from tests.e2e.conftest import ROOT, free_port, post, server_process

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

PGBOUNCER = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"


class PgBouncer:
    """PgBouncer in front of the test database, lending two server connections a transaction at a time, in turn
    (round robin: whatever a transaction leaves on its server connection is missing from the next). Started as
    the PostgreSQL user when run as root (it refuses root); stopped and started again on the same port to play
    a database that goes away and comes back."""

    def __init__(self, folder: Path, log_path: Path) -> None:
        db = connection.settings_dict
        self.port, user = free_port(), db["USER"]
        self.ini, users, self.log_path = folder / "pgbouncer.ini", folder / "users.txt", log_path
        users.write_text(f'"{user}" "{db["PASSWORD"] or ""}"\n')
        self.ini.write_text(
            f"[databases]\n* = host={db['HOST'] or '127.0.0.1'} port={db['PORT'] or 5432}\n"
            f"[pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = {self.port}\nunix_socket_dir =\n"
            f"auth_type = trust\nauth_file = {users}\npool_mode = transaction\ndefault_pool_size = 2\n"
            "min_pool_size = 2\nserver_round_robin = 1\n"
            "ignore_startup_parameters = extra_float_digits,options\n"
        )
        for path in (self.ini, users):
            path.chmod(0o644)
        self.url = f"postgres://{user}@127.0.0.1:{self.port}/{db['NAME']}"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        as_user = ["-u", "postgres"] if os.geteuid() == 0 else []
        with open(self.log_path, "a") as log:
            self.proc = subprocess.Popen([PGBOUNCER, *as_user, str(self.ini)], stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while True:
            try:
                psycopg.connect(self.url, connect_timeout=2).close()
                return
            except psycopg.OperationalError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"PgBouncer did not start:\n{self.log_path.read_text()}") from None
                time.sleep(0.1)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)


@pytest.fixture
def pgbouncer(transactional_db, tmp_path) -> Iterator[PgBouncer]:
    if connection.vendor != "postgresql":
        pytest.skip("PgBouncer pools PostgreSQL connections")
    if not os.access(PGBOUNCER, os.X_OK):
        pytest.skip("PgBouncer is not installed (make test installs Debian's)")
    with tempfile.TemporaryDirectory() as folder:
        os.chmod(folder, 0o755)  # readable by the user it switches to
        bouncer = PgBouncer(Path(folder), tmp_path / "pgbouncer.log")
        bouncer.start()
        try:
            yield bouncer
        finally:
            bouncer.stop()


def read_training_rows(database_url: str, log_path: Path) -> subprocess.Popen:
    """train_model's read of every stored row (QuerySet.iterator()), in a process of its own through `database_url`."""
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "DB_TRANSACTION_POOLING": "1",
        "DJANGO_SETTINGS_MODULE": "fraudsite.settings",
    }
    code = "import django; django.setup(); from scoring.training import labeled_frame; print(len(labeled_frame()))"
    with open(log_path, "w") as log:
        return subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)


def test_ingest_and_training_behind_pgbouncer_in_transaction_mode_never_lose_a_statement(
    pgbouncer, model_version, api_key, tmp_path
):
    from scoring.models import Transaction

    env = {"DATABASE_URL": pgbouncer.url, "DB_TRANSACTION_POOLING": "1"}
    with server_process(port=free_port(), log_path=tmp_path / "server.log", env=env) as base:
        # Concurrent requests: the server stores up to three batches at once on its pooled connections, which
        # PgBouncer runs over its two server connections, a transaction at a time; training reads meanwhile.
        batches = [
            {"transactions": [tx_body(external_id=f"pgb-{b}-{i}", card_id=f"card-{i % 7}") for i in range(10)]}
            for b in range(24)
        ]
        with ThreadPoolExecutor(max_workers=8) as pool:
            answers = list(pool.map(lambda body: post(base, "/api/v1/transactions/batch", body, api_key), batches[:12]))
            training = read_training_rows(pgbouncer.url, tmp_path / "training.log")
            answers += list(
                pool.map(lambda body: post(base, "/api/v1/transactions/batch", body, api_key), batches[12:])
            )
            singles = list(
                pool.map(
                    lambda i: post(base, "/api/v1/transactions", tx_body(external_id=f"pgb-s-{i}"), api_key), range(40)
                )
            )
            training.wait(timeout=60)

    assert [status for status, _ in answers] == [201] * 24
    assert [status for status, _ in singles] == [201] * 40
    assert Transaction.objects.filter(external_id__startswith="pgb-").count() == 24 * 10 + 40
    assert "prepared statement" not in (tmp_path / "server.log").read_text()
    assert training.returncode == 0, (tmp_path / "training.log").read_text()


def test_a_database_that_goes_away_gets_prompt_503s_that_store_nothing_and_ingest_resumes_when_it_returns(
    pgbouncer, model_version, api_key, tmp_path
):
    from scoring.models import Transaction

    env = {"DATABASE_URL": pgbouncer.url, "DB_TRANSACTION_POOLING": "1", "DB_POOL_TIMEOUT": "1"}
    with server_process(port=free_port(), log_path=tmp_path / "server.log", env=env) as base:
        before = post(base, "/api/v1/transactions", tx_body(external_id="out-before"), api_key)[0]
        pgbouncer.stop()
        # post() gives up after 10 s: psycopg's pool default held each request 30 s once its connections were gone.
        during = [post(base, "/api/v1/transactions", tx_body(external_id=f"out-{i}"), api_key) for i in range(6)]
        pgbouncer.start()
        deadline, after = time.monotonic() + 30, 0
        while after != 201 and time.monotonic() < deadline:
            after = post(base, "/api/v1/transactions", tx_body(external_id="out-after"), api_key)[0]
            time.sleep(0.2)

    assert before == 201
    assert [status for status, _ in during] == [503] * 6
    assert {body["error"] for _, body in during} == {"the database is unavailable; nothing was stored, retry later"}
    assert after == 201
    stored = set(Transaction.objects.filter(external_id__startswith="out-").values_list("external_id", flat=True))
    assert stored == {"out-before", "out-after"}
