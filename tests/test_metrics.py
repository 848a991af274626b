"""GET /metrics: refused without the token, and its figures, as Prometheus' own parser reads them, match what the
test sent. Every figure is compared before and after (the process's metrics outlive a test)."""

from __future__ import annotations

import threading
from collections import Counter
from datetime import timedelta

import pytest
from channels.db import database_sync_to_async
from django.db import connection
from django.utils import timezone
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from scoring import metrics
from scoring.models import Case
from scoring.models.webhooks import DeliveryStatus, WebhookDelivery, WebhookEndpoint, WebhookEvent
from tests.conftest import tx_body
from tests.dashboards.conftest import next_of_type, socket

pytestmark = pytest.mark.django_db(transaction=True)
TOKEN = "metrics-token-for-the-tests"
SINGLE, BATCH = "/api/v1/transactions", "/api/v1/transactions/batch"
Figures = dict[tuple[str, frozenset[tuple[str, str]]], float]


@pytest.fixture(autouse=True)
def _token(settings):
    settings.METRICS_TOKEN = TOKEN


async def scrape(api) -> Figures:
    """Every sample of /metrics, by name and labels, read by the Prometheus client's parser."""
    response = await api.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200, response.content
    assert response.headers["content-type"].startswith("text/plain")
    families = text_string_to_metric_families(response.content.decode())
    return {(s.name, frozenset(s.labels.items())): s.value for family in families for s in family.samples}


def figure(figures: Figures, name: str, **labels: str) -> float:
    return figures.get((name, frozenset(labels.items())), 0.0)


def grew(before: Figures, after: Figures, name: str, **labels: str) -> float:
    return figure(after, name, **labels) - figure(before, name, **labels)


async def test_metrics_is_not_served_without_a_configured_token(api, settings):
    settings.METRICS_TOKEN = ""

    response = await api.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})

    assert response.status_code == 404
    assert "METRICS_TOKEN" in response.json()["error"]


@pytest.mark.parametrize("authorization", [None, "Bearer wrong-token-of-some-length", f"Basic {TOKEN}", TOKEN])
async def test_metrics_refuses_a_missing_or_wrong_token(api, authorization):
    response = await api.get("/metrics", headers={"Authorization": authorization} if authorization else {})

    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert "fraud_" not in response.content.decode()


async def test_metrics_accepts_the_token_and_speaks_prometheus_text(api, model_version):
    figures = await scrape(api)

    assert ("fraud_open_cases", frozenset()) in figures


async def test_ingest_requests_decisions_scores_and_batch_sizes_match_what_was_sent(api, model_version):
    before = await scrape(api)
    answers = [await api.post(SINGLE, tx_body(external_id=f"m-{n}", amount=amount)) for n, amount in enumerate(AMOUNTS)]
    answers.append(await api.post(SINGLE, tx_body(external_id="m-0", amount=AMOUNTS[0])))  # a retry: 200
    refused = [await api.post(SINGLE, tx_body(external_id=f"bad-{n}", amount="-1")) for n in range(2)]
    unknown_key = await api.post(SINGLE, tx_body(external_id="m-x"), headers={"Authorization": "Bearer fk_nope"})
    batch = await api.post(BATCH, {"transactions": [tx_body(external_id=f"b-{n}", amount="5000") for n in range(5)]})
    after = await scrape(api)

    assert [a.status_code for a in answers] == [201, 201, 201, 200]
    assert [r.status_code for r in [*refused, unknown_key, batch]] == [422, 422, 401, 201]
    posts = {"route": "transactions", "method": "POST"}
    assert grew(before, after, "fraud_ingest_requests_total", **posts, code="201") == 3
    assert grew(before, after, "fraud_ingest_requests_total", **posts, code="200") == 1
    assert grew(before, after, "fraud_ingest_requests_total", **posts, code="422") == 2
    assert grew(before, after, "fraud_ingest_requests_total", **posts, code="401") == 1
    assert grew(before, after, "fraud_ingest_requests_total", route="batch", method="POST", code="201") == 1
    assert grew(before, after, "fraud_ingest_request_duration_seconds_count", **posts) == 7
    new = [a.json() for a in answers[:3]] + batch.json()["results"]
    for decision, count in Counter(result["decision"] for result in new).items():
        assert grew(before, after, "fraud_decisions_total", decision=decision) == count
    assert grew(before, after, "fraud_score_count") == 8
    assert grew(before, after, "fraud_score_sum") == pytest.approx(sum(result["score"] for result in new))
    # Sent one after the other, each request was a batch of its own: four of 1 (the retry too) and one of 5.
    assert grew(before, after, "fraud_ingest_batch_items_count") == 5
    assert grew(before, after, "fraud_ingest_batch_items_sum") == 9
    assert grew(before, after, "fraud_ingest_batch_items_bucket", le="1.0") == 4
    assert grew(before, after, "fraud_ingest_batch_items_bucket", le="4.0") == 4
    assert grew(before, after, "fraud_ingest_batch_items_bucket", le="8.0") == 5
    assert figure(after, "fraud_model_info", version=model_version.version) == 1


AMOUNTS = ["12.00", "2500.00", "40.00"]  # the tiny model flags amounts above ~1,000


async def test_open_cases_are_counted_at_scrape_time(api, model_version):
    await api.post(
        BATCH, {"transactions": [tx_body(external_id=f"o-{n}", card_id=f"c-{n}", amount="5000") for n in range(3)]}
    )

    figures = await scrape(api)

    assert figure(figures, "fraud_open_cases") == await database_sync_to_async(Case.objects.open().count)() == 3


async def test_open_sockets_and_pushes_are_counted(api, model_version, analyst):
    before = await scrape(api)
    async with socket(analyst) as first, socket(analyst) as second:
        assert (await first.connect())[0] and (await second.connect())[0]
        during = await scrape(api)
        await api.post(SINGLE, tx_body(external_id="s-1"))
        await next_of_type(first, "transactions")  # the push is done
        pushed = await scrape(api)
    after = await scrape(api)

    assert grew(before, during, "fraud_dashboard_sockets") == 2
    assert grew(before, after, "fraud_dashboard_sockets") == 0
    assert grew(during, pushed, "fraud_push_duration_seconds_count", event="dashboard.transactions") == 1


async def test_the_database_pool_is_read_on_postgresql_only(api, model_version):
    figures = await scrape(api)

    pool = {labels: value for (name, labels), value in figures.items() if name == "fraud_db_pool_connections"}
    if connection.vendor == "postgresql":
        assert set(pool) == {frozenset({("state", "in_use")}), frozenset({("state", "idle")})}
        assert figure(figures, "fraud_db_pool_max_connections") >= 1
        assert figure(figures, "fraud_db_pool_connections", state="in_use") >= 1  # the scrape's own
    else:
        assert pool == {}


async def test_webhook_deliveries_and_the_queue_are_read_at_scrape_time(api, model_version):
    await database_sync_to_async(_deliveries)(pending_due=2, pending_later=1, succeeded=1, failed=1)

    figures = await scrape(api)

    assert figure(figures, "fraud_webhook_deliveries", status="pending") == 3
    assert figure(figures, "fraud_webhook_deliveries", status="succeeded") == 1
    assert figure(figures, "fraud_webhook_deliveries", status="failed") == 1
    assert figure(figures, "fraud_webhook_queue_depth") == 2  # pending and due; the retry waits for its time


def _deliveries(**counts: int) -> None:
    endpoint = WebhookEndpoint.objects.create(url="http://127.0.0.1:9/hook", events=["case.resolved"])
    later = timezone.now() + timedelta(hours=1)
    states = {
        "pending_due": {},
        "pending_later": {"next_attempt_at": later},
        "succeeded": {"status": DeliveryStatus.SUCCEEDED},
        "failed": {"status": DeliveryStatus.FAILED},
    }
    for state, count in counts.items():
        for _ in range(count):
            event = WebhookEvent.objects.create(type="case.resolved", payload={})
            WebhookDelivery.objects.create(event=event, endpoint=endpoint, **states[state])


def test_counts_from_many_threads_at_once_add_up_exactly():
    sample = ("fraud_ingest_requests_total", {"route": "threads", "method": "POST", "code": "201"})
    before_requests = REGISTRY.get_sample_value(*sample) or 0
    histogram = metrics.BatchHistogram("fraud_test_scores", "scores", buckets=[0.5, 1.0])

    def work() -> None:
        for _ in range(500):
            metrics.count_request(route="threads", method="POST", status=201, seconds=0.01)
            histogram.observe_many([0.25, 0.75])

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert REGISTRY.get_sample_value(*sample) - before_requests == 4000
    (family,) = histogram.collect()
    buckets = {s.labels["le"]: s.value for s in family.samples if s.name.endswith("_bucket")}
    assert buckets == {"0.5": 4000, "1.0": 8000, "+Inf": 8000}
