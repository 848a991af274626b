"""Thresholds set by a lead reach every serving process within seconds, without a restart (two real processes)."""

from __future__ import annotations

import itertools
import time

import pytest

from tests.conftest import tx_body
from tests.e2e.conftest import FLAGGED_AMOUNT, free_port, post, server_process

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_every_process_decides_with_thresholds_set_while_it_runs(
    transactional_db, model_version, api_key, lead, tmp_path
):
    from scoring.thresholds import set_thresholds

    numbers = itertools.count()

    def decision(base: str) -> str:
        body = tx_body(external_id=f"thr-{next(numbers)}", card_id=f"card-{next(numbers)}", amount=FLAGGED_AMOUNT)
        status, answer = post(base, "/api/v1/transactions", body, api_key)
        assert status == 201, answer
        return answer["decision"]

    with (
        server_process(port=free_port(), log_path=tmp_path / "one.log") as one,
        server_process(port=free_port(), log_path=tmp_path / "two.log") as two,
    ):
        before = {decision(one), decision(two)}
        # Nothing below a score of 1 is flagged any more: the large amount the model flags is approved.
        set_thresholds(model_version.pk, user=lead, review=1.0, block=1.0, note="served-process test")
        deadline, seen = time.monotonic() + 10, {}
        while time.monotonic() < deadline and set(seen.values()) != {"approve"}:
            seen = {base: decision(base) for base in (one, two)}
            time.sleep(0.2)

    assert before <= {"review", "block"} and before
    assert seen == {one: "approve", two: "approve"}
