"""The analyst pages: the live feed, the review queue, the layout and error pages."""

from __future__ import annotations

import re
import time
from decimal import Decimal
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.template import loader
from django.test import Client

from scoring.models import CaseEvent, CaseStatus, traffic
from tests.dashboards.conftest import HTMX, make_case, make_tx

pytestmark = pytest.mark.django_db


# --- live page ----------------------------------------------------------------------------------


def test_live_page_requires_login(client: Client) -> None:
    response = client.get("/")

    assert response.status_code == 302
    assert response["Location"] == "/accounts/login/?next=/"


def test_live_page_shows_the_newest_fifty_transactions(alice_client: Client) -> None:
    txs = [make_tx() for _ in range(55)]

    body = alice_client.get("/").content.decode()

    assert f'id="tx-{txs[-1].id}"' in body
    assert txs[-1].external_id in body
    assert f'id="tx-{txs[5].id}"' in body
    assert f'id="tx-{txs[4].id}"' not in body


def test_live_page_leaves_imported_history_out_of_the_feed(alice_client: Client) -> None:
    live = make_tx()
    imported = make_tx(model_version="imported:bank-a", score=0.0, reasons=[])  # stored after the live one

    body = alice_client.get("/").content.decode()

    assert f'id="tx-{live.id}"' in body
    assert f'id="tx-{imported.id}"' not in body


def test_live_feed_looks_back_over_the_newest_ids_only(alice_client: Client, monkeypatch) -> None:
    monkeypatch.setattr(traffic, "FEED_LOOKBACK", 3)  # 100,000 in production
    before = make_tx()
    for _ in range(3):  # an import after it, no traffic since
        make_tx(model_version="imported:bank-a")

    body = alice_client.get("/").content.decode()
    after = make_tx()  # traffic again
    later = alice_client.get("/").content.decode()

    assert f'id="tx-{before.id}"' not in body
    assert f'id="tx-{after.id}"' in later


def test_live_page_rows_link_to_their_case(alice_client: Client) -> None:
    case = make_case()

    body = alice_client.get("/").content.decode()

    assert f'href="/cases/{case.id}/"' in body


def test_live_page_has_a_row_template_with_the_same_markup(alice_client: Client) -> None:
    make_tx()

    body = alice_client.get("/").content.decode()

    template = body.split('<template id="tx-row-template">', 1)[1].split("</template>", 1)[0]
    for field in ("timestamp", "external_id", "card_id", "merchant_id", "amount", "score", "decision", "case"):
        assert f'data-field="{field}"' in template
    assert 'id="feed"' in body


def test_live_page_renders_the_figures_and_the_socket_config(alice_client: Client) -> None:
    make_tx(decision="block", score=0.97, amount=Decimal("120.00"))
    make_tx()

    response = alice_client.get("/")

    assert response.context["figures"]["count_15m"] == 2
    assert response.context["figures"]["blocked_count"] == 1
    body = response.content.decode()
    assert 'id="figures"' in body
    assert 'id="initial-stats"' in body
    assert 'id="feed-config"' in body
    assert "/static/django_htmx/htmx-2.min.js" in body


def test_live_page_lists_open_cases_riskiest_first(alice_client: Client) -> None:
    low = make_case(score=0.6, decision="review")
    high = make_case(score=0.99)
    resolved = make_case(score=0.999)
    resolved.status = CaseStatus.FRAUD
    resolved.save()

    body = alice_client.get("/").content.decode()

    assert body.index(f'id="open-case-{high.id}"') < body.index(f'id="open-case-{low.id}"')
    assert f'id="open-case-{resolved.id}"' not in body


def test_open_cases_panel_renders_alone_for_htmx(alice_client: Client) -> None:
    case = make_case()

    response = alice_client.get("/cases/top/", **HTMX)

    body = response.content.decode()
    assert body.lstrip().startswith('<section id="open-cases"')
    assert f'id="open-case-{case.id}"' in body
    assert "<html" not in body
    # The count and when it was taken: live.js lets the freshest count (this or the socket's) win.
    assert 'data-open-count="1"' in body
    assert abs(float(re.search(r'data-counted-at="([0-9.]+)"', body).group(1)) - time.time()) < 60


def test_live_page_says_when_there_is_nothing_yet(alice_client: Client) -> None:
    body = alice_client.get("/").content.decode()

    assert "No transactions yet" in body
    assert "Queue is clear" in body


# --- review queue -------------------------------------------------------------------------------


def test_queue_lists_open_cases_riskiest_first(alice_client: Client) -> None:
    low = make_case(score=0.55, decision="review")
    high = make_case(score=0.98)

    body = alice_client.get("/cases/").content.decode()

    assert body.index(f'id="case-{high.id}"') < body.index(f'id="case-{low.id}"')


def test_queue_leaves_out_resolved_cases(alice_client: Client) -> None:
    case = make_case()
    case.status = CaseStatus.LEGITIMATE
    case.save()

    body = alice_client.get("/cases/").content.decode()

    assert f'id="case-{case.id}"' not in body
    assert "Nothing to review" in body


def test_queue_shows_who_claimed_a_case(alice_client: Client, bob: User) -> None:
    claimed = make_case()
    claimed.assignee = bob
    claimed.save()
    free = make_case()

    response = alice_client.get("/cases/")

    rows = _rows(response.content.decode())
    assert "claimed by bob" in rows[claimed.id]
    assert ">Claim<" not in rows[claimed.id]
    assert "unclaimed" in rows[free.id]
    assert ">Claim<" in rows[free.id]


def test_queue_row_shows_the_cards_total_transactions_and_decision(alice_client: Client) -> None:
    case = make_case(card_id="card-xyz", merchant_id="shop-abc", amount=Decimal("99.50"))

    row = _rows(alice_client.get("/cases/").content.decode())[case.id]

    assert "card-xyz" in row
    assert "99.50 EUR" in row
    assert '<dd class="alert-count">1</dd>' in row
    assert "badge-block" in row


# --- layout and error pages ---------------------------------------------------------------------


def test_login_page_renders_without_a_session(client: Client) -> None:
    response = client.get("/accounts/login/?next=/cases/")

    assert response.status_code == 200
    body = response.content.decode()
    assert 'name="username"' in body
    assert 'value="/cases/"' in body


def test_login_takes_the_analyst_to_the_live_page(client: Client, alice: User, settings: Any) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    alice.set_password("pw-alice-123")
    alice.save()

    response = client.post("/accounts/login/", {"username": "alice", "password": "pw-alice-123"})

    assert response.status_code == 302
    assert response["Location"] == "/"


def test_logout_is_a_post_form_in_the_navigation(alice_client: Client) -> None:
    body = alice_client.get("/").content.decode()

    assert 'action="/accounts/logout/"' in body
    assert alice_client.post("/accounts/logout/").status_code == 302
    assert alice_client.get("/").status_code == 302


def test_body_carries_the_csrf_token_for_htmx(alice_client: Client) -> None:
    body = alice_client.get("/cases/").content.decode()

    assert 'hx-headers=\'{"X-CSRFToken": "' in body


def test_server_error_page_renders_without_context() -> None:
    html = loader.get_template("500.html").render()

    assert "Something went wrong" in html


def test_unknown_page_uses_the_site_layout(alice_client: Client) -> None:
    response = alice_client.get("/no-such-page/")

    assert response.status_code == 404
    assert "Review queue" in response.content.decode()


def _rows(body: str) -> dict[int, str]:
    """The queue's case rows by case id."""
    rows = {}
    for chunk in body.split('<article id="case-')[1:]:
        case_id, _, rest = chunk.partition('"')
        rows[int(case_id)] = rest.split("</article>", 1)[0]
    return rows


# --- Content-Security-Policy: script-src 'self' -------------------------------------------------------

INLINE_SCRIPT = re.compile(r"<script\b(?![^>]*\bsrc=)(?![^>]*type=\"application/json\")[^>]*>", re.IGNORECASE)
HANDLER_ATTRIBUTE = re.compile(r"<[^>]*\s(?:on[a-z]+|hx-on[:\w-]*)\s*=", re.IGNORECASE)


def test_pages_run_no_inline_script_so_a_self_only_script_policy_holds(alice_client: Client, alice: User) -> None:
    case = make_case()
    CaseEvent.objects.create(case=case, actor=alice, action="note", note="<script>alert(1)</script>")
    pages = ["/", "/cases/", "/cases/?overturned=1", f"/cases/{case.id}/", f"/cases/{case.id}/row", "/nowhere/"]

    bodies = {path: alice_client.get(path).content.decode() for path in pages}
    bodies["login"] = Client().get("/accounts/login/").content.decode()

    for path, body in bodies.items():
        assert INLINE_SCRIPT.findall(body) == [], path
        assert HANDLER_ATTRIBUTE.findall(body) == [], path
