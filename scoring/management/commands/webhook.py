"""Webhook endpoints from the shell: `webhook add URL --events E1,E2` (prints the secret on its last line), `list`,
`enable ID`, `disable ID`, `replay DELIVERY_ID`, and `send` (one sweep of the outbox, waiting for its deliveries)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from scoring import webhooks
from scoring.models import EventType, WebhookDelivery, WebhookEndpoint


class Command(BaseCommand):
    help = "Register, list, enable or disable webhook endpoints; replay a delivery; send what is due now."

    def add_arguments(self, parser: CommandParser) -> None:
        actions = parser.add_subparsers(dest="action", required=True)
        add = actions.add_parser("add", help="register an endpoint; prints its secret (shown once) last")
        add.add_argument("url")
        add.add_argument("--events", required=True, help=f"comma-separated, of: {', '.join(EventType.values)}")
        add.add_argument("--description", default="")
        add.add_argument("--disabled", action="store_true", help="registered, but sent nothing until enabled")
        actions.add_parser("list", help="every endpoint, with what it wants and whether it is enabled")
        for name in ("enable", "disable"):
            actions.add_parser(name, help=f"{name} an endpoint").add_argument("endpoint_id", type=int)
        replay = actions.add_parser("replay", help="send a delivery again (same event id and body)")
        replay.add_argument("delivery_id", type=int)
        actions.add_parser("send", help="fan out new events and send the due deliveries, then exit")

    def handle(self, *args: Any, action: str, **options: Any) -> None:
        try:
            getattr(self, f"do_{action}")(**options)
        except (ValueError, WebhookEndpoint.DoesNotExist, WebhookDelivery.DoesNotExist) as refused:
            raise CommandError(str(refused)) from None

    def do_add(self, *, url: str, events: str, description: str, disabled: bool, **_: Any) -> None:
        wanted = [event.strip() for event in events.split(",") if event.strip()]
        endpoint = webhooks.register_endpoint(
            url, events=wanted, description=description, enabled=not disabled, user=None
        )
        self.stderr.write(
            f"Registered endpoint {endpoint.id} for {', '.join(endpoint.events)}; its secret, shown once:"
        )
        self.stdout.write(endpoint.secret)

    def do_list(self, **_: Any) -> None:
        for endpoint in WebhookEndpoint.objects.all():
            state = "enabled" if endpoint.is_enabled else "disabled"
            self.stdout.write(f"{endpoint.id}\t{state}\t{endpoint.url}\t{','.join(endpoint.events)}")

    def do_enable(self, *, endpoint_id: int, **_: Any) -> None:
        webhooks.set_enabled(endpoint_id, enabled=True, user=None)
        self.stdout.write(f"endpoint {endpoint_id} enabled")

    def do_disable(self, *, endpoint_id: int, **_: Any) -> None:
        webhooks.set_enabled(endpoint_id, enabled=False, user=None)
        self.stdout.write(f"endpoint {endpoint_id} disabled")

    def do_replay(self, *, delivery_id: int, **_: Any) -> None:
        delivery = webhooks.replay(delivery_id, user=None)
        self.stdout.write(f"delivery {delivery.id} of {delivery.event_id} is due again")

    def do_send(self, **_: Any) -> None:
        self.stdout.write(webhooks.sweep(wait=True) or "nothing to send")
