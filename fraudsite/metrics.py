"""GET /metrics: this process's Prometheus metrics (scoring/metrics.py counts them), for a scraper that sends
`Authorization: Bearer <METRICS_TOKEN>`.

Without METRICS_TOKEN the route answers 404 saying how to turn it on, as password reset does without a mail
server: it is not served in that configuration. A missing or wrong token is a 401. Besides what the process
counted, a scrape reads what is cheap to read then: open cases (one count), the webhook deliveries by status
and the queue of those waiting, and this process's database pool.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Iterator

from django.conf import settings
from django.db import DatabaseError, connections
from django.db.models import Count
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils import timezone
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from scoring.models import Case
from scoring.models.webhooks import DeliveryStatus, WebhookDelivery

log = logging.getLogger(__name__)
NOT_ENABLED = "metrics are not enabled on this server: set METRICS_TOKEN and scrape with Authorization: Bearer <token>"
UNAUTHORIZED = "send the metrics token as Authorization: Bearer <token>"


@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    """Every metric of this process, in Prometheus' text format."""
    token = settings.METRICS_TOKEN
    if not token:
        return JsonResponse({"error": NOT_ENABLED}, status=404)
    scheme, _, sent = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(sent.strip().encode(), token.encode()):
        response = JsonResponse({"error": UNAUTHORIZED}, status=401)
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    return HttpResponse(generate_latest(REGISTRY), content_type=CONTENT_TYPE_LATEST)


class ScrapeReadings(Collector):
    """What a scrape reads from the database and the pool, rather than counting it as it happens."""

    def collect(self) -> Iterator[GaugeMetricFamily]:
        try:
            yield GaugeMetricFamily("fraud_open_cases", OPEN_CASES, value=Case.objects.open().count())
            yield from webhook_readings()
        except DatabaseError as exc:  # the scrape still gives what the process counted
            log.warning("metrics: could not read the database: %s", exc)
        yield from pool_readings()

    def describe(self) -> Iterator[GaugeMetricFamily]:
        # Registering a collector without describe() would run collect(), queries included, at import.
        for name, text in NAMES.items():
            yield GaugeMetricFamily(name, text)


OPEN_CASES = "Review cases open now (the whole desk's, not this process's)"
DELIVERIES = "Webhook deliveries by status (the whole service's)"
WEBHOOK_QUEUE = "Webhook deliveries waiting to be sent now: pending and due, to an enabled endpoint"
POOL = "This process's PostgreSQL pool connections, in use (lent to a thread) or idle"
POOL_MAX = "The most connections this process's pool opens (DB_POOL_SIZE)"
POOL_WAITING = "Threads waiting now for a connection from this process's pool"
NAMES = {
    "fraud_open_cases": OPEN_CASES,
    "fraud_webhook_deliveries": DELIVERIES,
    "fraud_webhook_queue_depth": WEBHOOK_QUEUE,
    "fraud_db_pool_connections": POOL,
    "fraud_db_pool_max_connections": POOL_MAX,
    "fraud_db_pool_waiting": POOL_WAITING,
}


def webhook_readings() -> Iterator[GaugeMetricFamily]:
    """Webhook deliveries by status, and how many wait to be sent."""
    by_status = dict(WebhookDelivery.objects.values_list("status").annotate(n=Count("id")).order_by())
    deliveries = GaugeMetricFamily("fraud_webhook_deliveries", DELIVERIES, labels=["status"])
    for status in DeliveryStatus.values:
        deliveries.add_metric([status], by_status.get(status, 0))
    yield deliveries
    due = WebhookDelivery.objects.due(now=timezone.now()).filter(endpoint__is_enabled=True).count()  # as sent
    yield GaugeMetricFamily("fraud_webhook_queue_depth", WEBHOOK_QUEUE, value=due)


def pool_readings() -> Iterator[GaugeMetricFamily]:
    """This process's PostgreSQL pool (psycopg's own figures); nothing on SQLite, which has no pool."""
    connection = connections["default"]
    if connection.vendor != "postgresql" or not connection.settings_dict["OPTIONS"].get("pool"):
        return
    stats = connection.pool.get_stats()
    size, idle = stats.get("pool_size", 0), stats.get("pool_available", 0)
    pool = GaugeMetricFamily("fraud_db_pool_connections", POOL, labels=["state"])
    pool.add_metric(["in_use"], size - idle)
    pool.add_metric(["idle"], idle)
    yield pool
    yield GaugeMetricFamily("fraud_db_pool_max_connections", POOL_MAX, value=stats.get("pool_max", 0))
    yield GaugeMetricFamily("fraud_db_pool_waiting", POOL_WAITING, value=stats.get("requests_waiting", 0))


REGISTRY.register(ScrapeReadings())
