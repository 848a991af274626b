"""Turn on (or off) what issue 26's cost is measured with: 20 active rules and a challenger model.

    .venv/bin/python bench/whatif.py on     # 20 active rules, and a second model (another seed) as challenger
    .venv/bin/python bench/whatif.py off    # the rules disabled and the challenger ended

Through the same functions as the rules and models pages, as the `bench` lead. The rules read what real rules
read (amounts, velocities, merchant fraud shares, country, channel, hour, the score, the lists); each hits rarely on
the load's traffic, as most of a team's rules do, so the phases measure what evaluating them costs, not more cases
being opened. (The load's cards pay about once a second: a velocity alone would hit nearly every transaction.)
"""

from __future__ import annotations

import os
import sys
from io import StringIO
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "fraudsite.settings")

import django

django.setup()

from django.contrib.auth import get_user_model  # noqa: E402
from django.core.management import call_command  # noqa: E402

from scoring import challenger, rule_book  # noqa: E402
from scoring.features import FEATURES  # noqa: E402
from scoring.models import ModelVersion, Rule, RuleStatus  # noqa: E402
from scoring.roles import ensure_user  # noqa: E402

CONDITIONS = [
    ("big-and-fast", "amount > 900 && card_count_1h >= 3", "review"),
    ("foreign-ecom", 'country != "PL" && channel == "ecom" && amount > 2000', "review"),
    ("night-cash", 'hour < 5 && channel == "atm" && amount > 400', "review"),
    ("tainted-merchant", "merchant_fraud_share_7d > 0.3 && score > 0.2", "review"),
    ("many-merchants", "card_distinct_merchants_1d >= 8 && amount > 1500", "review"),
    ("spike", "amount_vs_card_avg_30d > 12.0 && card_count_30d >= 5", "review"),
    ("zscore", "amount_zscore_card_30d > 6.0 && amount > 2000", "review"),
    ("rapid", "seconds_since_card_prev < 2.0 && amount > 3000", "review"),
    ("testing", "amount < 1.0 && card_count_1h >= 5", "block"),
    ("blocked-merchant-high", "merchant_blocked && amount > 100", "block"),
    ("blocked-card", "card_blocked", "block"),
    ("allowed-card", "card_allowed && score < 0.95", "approve"),
    ("new-merchant-fraud", "merchant_hours_since_last_fraud_30d < 2.0 && score > 0.5", "review"),
    ("weekend-night", "is_weekend > 0.5 && is_night > 0.5 && amount > 800", "review"),
    ("daily-sum", "card_sum_1d > 5000.0 && amount > 3000", "review"),
    ("weekly-count", "card_count_7d > 60 && amount > 2500", "review"),
    ("mcc-gambling", 'mcc == "7995" && amount > 1000', "review"),
    ("currency-mismatch", 'currency == "USD" && country == "PL" && amount > 600', "review"),
    ("high-score-big", "score > 0.8 && amount > 1500", "block"),
    ("card-prefix", 'card_id.startsWith("card-999") && amount > 50', "review"),
]


def lead() -> object:
    ensure_user("bench-lead", password="bench-lead-pass-1", lead=True)
    return get_user_model().objects.get(username="bench-lead")


def on() -> None:
    user = lead()
    for name, condition, action in CONDITIONS:
        rule = Rule.objects.filter(name=name).first() or rule_book.create_rule(
            user=user, name=name, condition=condition, action=action
        )
        if (rule.condition, rule.action) != (condition, action):  # a database an older list was published on
            rule = rule_book.edit_rule(rule.pk, user=user, condition=condition, action=action)
        rule_book.publish_rule(rule.pk, user=user, status=RuleStatus.ACTIVE, days=1)
    if not ModelVersion.objects.filter(is_challenger=True).exists():
        # The version an earlier `on` trained, when there is one: the passes then compare the same two models.
        earlier = ModelVersion.objects.filter(is_active=False, features=FEATURES).order_by("-created_at").first()
        if earlier is not None:
            challenger.mark_challenger(earlier.pk, user=user)
        else:
            call_command("train_model", "--challenger", "--seed", "1", stdout=StringIO())
    print(
        f"{Rule.objects.filter(status=RuleStatus.ACTIVE).count()} active rules; challenger "
        f"{ModelVersion.objects.get(is_challenger=True).version}"
    )


def off() -> None:
    user = lead()
    for rule in Rule.objects.filter(status=RuleStatus.ACTIVE):
        rule_book.disable_rule(rule.pk, user=user)
    if ModelVersion.objects.filter(is_challenger=True).exists():
        challenger.end_challenger(user=user)
    print("no active rules, no challenger")


if __name__ == "__main__":
    {"on": on, "off": off}[sys.argv[1]]()
