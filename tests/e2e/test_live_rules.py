"""Two real server processes: a rule published (and then changed) while they serve is used by both within their
refresh period, without a restart."""

from __future__ import annotations

import itertools
import time

import pytest

from tests.conftest import tx_body
from tests.e2e.conftest import free_port, post, server_process

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]
REFRESH = 2  # seconds: RULES_REFRESH_SECONDS of the servers
_numbers = itertools.count()


def answers_until(bases: tuple[str, ...], api_key: str, *, wanted, within: float) -> dict[str, dict]:
    """Post to each server until each one's latest answer is `wanted` (or `within` seconds pass)."""
    deadline = time.monotonic() + within
    while True:
        latest = {}
        for base in bases:
            body = tx_body(external_id=f"live-{next(_numbers)}", amount="900.00")
            latest[base] = post(base, "/api/v1/transactions", body, api_key)[1]
        if all(wanted(answer) for answer in latest.values()) or time.monotonic() > deadline:
            return latest
        time.sleep(0.2)


def test_a_rule_published_while_two_processes_serve_is_used_by_both_within_seconds(
    transactional_db, model_version, api_key, tmp_path
):
    from scoring.models import Rule, RuleStatus
    from scoring.rules import check

    model_version.review_threshold = model_version.block_threshold = 1.01  # the model flags nothing
    model_version.save()
    env = {"RULES_REFRESH_SECONDS": str(REFRESH)}
    with (
        server_process(port=free_port(), log_path=tmp_path / "one.log", env=env) as one,
        server_process(port=free_port(), log_path=tmp_path / "two.log", env=env) as two,
    ):
        before = answers_until((one, two), api_key, wanted=lambda a: True, within=0)
        rule = Rule.objects.create(
            name="big_amount", condition=check("amount > 500.0").source, action="block", status=RuleStatus.ACTIVE
        )
        published = answers_until((one, two), api_key, wanted=lambda a: a["rules"], within=REFRESH + 8)
        rule.action, rule.version = "review", 2
        rule.save()
        changed = answers_until((one, two), api_key, wanted=lambda a: a["decision"] == "review", within=REFRESH + 8)

    assert [(a["decision"], a["rules"]) for a in before.values()] == [("approve", [])] * 2
    assert [(a["decision"], a["rules"]) for a in published.values()] == [
        ("block", [{"name": "big_amount", "action": "block"}])
    ] * 2
    assert [a["rules"] for a in changed.values()] == [[{"name": "big_amount", "action": "review"}]] * 2
