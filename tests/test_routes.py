"""Who reaches what: every URL pattern of the project, and the dashboard socket, for each kind of account.

The routes are walked from `get_resolver()` (the admin's and django-ninja's included), not listed by hand, and
each must have its expected answers in ROUTES: adding a route means deciding who may reach it. The ingest
routes are served ahead of Django (fraudsite/asgi.py) and use API keys, not accounts: they are not here.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import AnonymousUser, Group, User
from django.contrib.contenttypes.models import ContentType
from django.db.models import Model
from django.http import HttpResponse
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, resolve
from django.utils import timezone

from dashboards.routing import websocket_urlpatterns
from fraudsite.asgi import application
from scoring.models import ApiKey, Case, ListEntry, ModelVersion, ReasonCode, Rule
from scoring.roles import ensure_roles, make_analyst, make_lead
from tests.dashboards.conftest import make_case

KINDS = ("anonymous", "no role", "analyst", "lead")
LOGIN = "login"  # 302 to the site's login page
ADMIN_LOGIN = "admin login"  # 302 to the admin's login page
SAME = "the same answer"  # whatever it is, the same for every kind of account
# The answers of (anonymous, no role, analyst, lead), as a status code or one of the redirects above.
Answers = tuple[int | str, int | str, int | str, int | str]


def every(answer: int | str) -> Answers:
    return (answer, answer, answer, answer)


DESK: Answers = (LOGIN, 403, 200, 200)  # the analysts' pages: no role gets the no-access page
DESK_ACTION: Answers = (403, 403, 302, 302)  # a plain form post goes back where it came from
LEAD_ONLY_ACTION: Answers = (403, 403, 403, 302)
STAFF: Answers = (ADMIN_LOGIN, ADMIN_LOGIN, 200, 200)
LEAD_ADMIN: Answers = (ADMIN_LOGIN, ADMIN_LOGIN, 403, 200)
NOBODYS_ADMIN: Answers = (ADMIN_LOGIN, ADMIN_LOGIN, 403, 403)  # refused to analysts and leads alike
USERS_ADMIN: Answers = NOBODYS_ADMIN  # accounts are managed by superusers
API_KEY_ONLY: Answers = every(401)  # a session is not an API key
ADMIN_REDIRECT: Answers = (ADMIN_LOGIN, ADMIN_LOGIN, 302, 302)  # on to the change page, which has its own row


def admin_model(path: str, **answers: Answers) -> dict[str, dict[str, Answers]]:
    """The six routes the admin gives every registered model, with the answers for each (its object's bare
    URL redirects to the change page, whatever the account: that page has its own answers)."""
    routes = {
        "changelist": f"admin/{path}/",
        "add": f"admin/{path}/add/",
        "history": f"admin/{path}/<path:object_id>/history/",
        "delete": f"admin/{path}/<path:object_id>/delete/",
        "change": f"admin/{path}/<path:object_id>/change/",
        "object": f"admin/{path}/<path:object_id>/",
    }
    answers.setdefault("object", ADMIN_REDIRECT)
    return {route: {"GET": answers[view]} for view, route in routes.items()}


ROUTES: dict[str, dict[str, Answers]] = {
    # --- the analysts' desk (dashboards/urls.py) ---
    "": {"GET": DESK},
    "feed/": {"GET": DESK},  # the live feed's older matching rows
    "cases/": {"GET": DESK},
    "cases/top/": {"GET": DESK},
    "cases/export/cases.csv": {"GET": DESK},  # what the queue's filters select, as CSV
    "cases/export/transactions.csv": {"GET": DESK},
    "cases/<int:case_id>/": {"GET": DESK},
    "cases/<int:case_id>/row": {"GET": DESK},
    "cases/<int:case_id>/claim": {"POST": DESK_ACTION, "GET": every(405)},
    "cases/<int:case_id>/release": {"POST": DESK_ACTION},
    "cases/<int:case_id>/resolve": {"POST": DESK_ACTION},
    "cases/<int:case_id>/notes": {"POST": DESK_ACTION},
    "lists/entries": {"POST": DESK_ACTION},  # block a card or merchant (leads: allow too), from a case or entity page
    "cards/<path:card_id>/": {"GET": DESK},
    "merchants/<path:merchant_id>/": {"GET": DESK},
    "search": {"GET": DESK},
    "cases/<int:case_id>/reopen": {"POST": LEAD_ONLY_ACTION},
    "team/": {"GET": (LOGIN, 403, 403, 200)},  # a lead's view: analysts get the leads-only page
    # --- the leads' background jobs (dashboards/job_pages.py): analysts get the page's leads-only answer ---
    "jobs/": {"GET": (LOGIN, 403, 403, 200)},
    "jobs/list": {"GET": (LOGIN, 403, 403, 200)},  # what the page polls while a job runs
    "jobs/retrain": {"POST": LEAD_ONLY_ACTION},  # queues a retrain, back to the page
    "jobs/import": {"POST": (403, 403, 403, 400)},  # the lead's empty post has no file
    "jobs/cancel": {"POST": (403, 403, 403, 400)},  # ... and names no job
    # webhooks: leads register endpoints (the route test's form is not one: 422) and read their delivery logs
    "webhooks/": {"GET": (LOGIN, 403, 403, 200), "POST": (403, 403, 403, 422)},
    "webhooks/<int:endpoint_id>/": {"GET": (LOGIN, 403, 403, 200)},
    "webhooks/<int:endpoint_id>/enable": {"POST": LEAD_ONLY_ACTION},
    "webhooks/<int:endpoint_id>/disable": {"POST": LEAD_ONLY_ACTION},
    "webhooks/deliveries/<int:delivery_id>/replay": {"POST": LEAD_ONLY_ACTION},
    # models: everyone on the desk reads the versions and what each threshold would have done; leads set them
    "models/": {"GET": DESK},
    "models/<str:version>/thresholds/": {"GET": DESK},
    "models/<str:version>/thresholds/preview": {"GET": (LOGIN, 403, 403, 200)},  # the lead's form, as typed
    "models/<str:version>/thresholds/set": {"POST": (403, 403, 403, 422), "GET": every(405)},  # no thresholds sent
    # rules: analysts read them and their backtests; leads write, backtest as typed, publish and disable (the route
    # test's form is not a rule: 422; a publish that names no status: 400)
    "rules/": {"GET": DESK},
    "rules/new": {"GET": (LOGIN, 403, 403, 200), "POST": (403, 403, 403, 422)},
    "rules/backtest": {"POST": (403, 403, 403, 422)},
    "rules/<str:ref>/": {"GET": DESK},
    "rules/<int:rule_id>/backtest": {"GET": DESK},
    "rules/<int:rule_id>/publish": {"POST": (403, 403, 403, 400)},
    "rules/<int:rule_id>/disable": {"POST": LEAD_ONLY_ACTION},
    "rules/<str:ref>/edit": {"GET": (LOGIN, 403, 403, 200), "POST": (403, 403, 403, 422)},
    # the challenger model (dashboards/challenger_pages.py): analysts read the comparison, leads change it
    "models/challenger/": {"GET": DESK},
    "models/challenger/promote": {"POST": LEAD_ONLY_ACTION},  # none is marked: back to the page, saying so
    "models/challenger/end": {"POST": LEAD_ONLY_ACTION},
    "models/<str:version>/challenger": {"POST": LEAD_ONLY_ACTION},  # the sample is active: refused, back to the page
    # --- health, for load balancers ---
    "healthz": {"GET": every(200)},
    "readyz": {"GET": every(SAME)},  # 200 or 503 by what is up, never by who asks
    # --- Prometheus: a token from the environment, never a session; without METRICS_TOKEN (as here) not served ---
    "metrics": {"GET": every(404)},
    # --- the JSON API (django-ninja): API keys, not accounts ---
    "api/v1/": {"GET": every(404)},
    "api/v1/openapi.json": {"GET": every(200)},
    "api/v1/docs": {"GET": every(200)},
    "api/v1/transactions/<tx_id>": {"GET": API_KEY_ONLY},
    "api/v1/labels": {"POST": API_KEY_ONLY},
    # --- accounts ---
    "accounts/login/": {"GET": every(200)},
    "accounts/logout/": {"POST": every(LOGIN), "GET": every(405)},
    "accounts/password_change/": {"GET": (LOGIN, 200, 200, 200)},
    "accounts/password_change/done/": {"GET": (LOGIN, 200, 200, 200)},
    "accounts/password_reset/": {"GET": every(200)},
    "accounts/password_reset/done/": {"GET": every(200)},
    "accounts/reset/<uidb64>/<token>/": {"GET": every(200)},
    "accounts/reset/done/": {"GET": every(200)},
    # --- the admin: analysts read cases and transactions, leads also manage models, keys and lists ---
    "admin/": {"GET": STAFF},
    "admin/login/": {"GET": (200, 200, 302, 302)},
    "admin/logout/": {"GET": (302, 302, 405, 405)},  # a POST form; without a staff session, to the admin
    "admin/password_change/": {"GET": STAFF},
    "admin/password_change/done/": {"GET": STAFF},
    "admin/autocomplete/": {"GET": (ADMIN_LOGIN, ADMIN_LOGIN, 403, 403)},
    "admin/jsi18n/": {"GET": STAFF},
    "admin/r/<path:content_type_id>/<path:object_id>/": {"GET": (ADMIN_LOGIN, ADMIN_LOGIN, 404, 404)},
    "admin/(?P<app_label>auth|scoring)/$": {"GET": STAFF},
    "admin/(?P<app_label>auth|axes|scoring)/$": {"GET": STAFF},  # with django-axes' records
    "admin/(?P<app_label>auth|axes|django_tasks_database|scoring)/$": {"GET": STAFF},  # and django-tasks' results
    "admin/(?P<url>.*)$": {"GET": (ADMIN_LOGIN, ADMIN_LOGIN, 404, 404)},
    **admin_model(
        "scoring/case",
        changelist=STAFF,
        add=(ADMIN_LOGIN, ADMIN_LOGIN, 403, 403),  # cases are opened by scoring
        history=STAFF,
        delete=NOBODYS_ADMIN,  # superusers only: a case is its audit trail
        change=STAFF,  # read-only: changes go through the actions
    ),
    **admin_model(
        "scoring/transaction",
        changelist=STAFF,
        add=(ADMIN_LOGIN, ADMIN_LOGIN, 403, 403),
        history=STAFF,
        delete=NOBODYS_ADMIN,
        change=STAFF,
    ),
    **admin_model(
        "scoring/modelversion",
        changelist=LEAD_ADMIN,
        add=NOBODYS_ADMIN,  # versions come from train_model
        history=LEAD_ADMIN,
        delete=NOBODYS_ADMIN,  # the sample is the active version
        change=LEAD_ADMIN,
    ),
    **admin_model(
        "scoring/apikey",
        changelist=LEAD_ADMIN,
        add=LEAD_ADMIN,
        history=LEAD_ADMIN,
        delete=LEAD_ADMIN,
        change=LEAD_ADMIN,
    ),
    **admin_model(
        "scoring/reasoncode",  # the reasons analysts resolve cases with: leads keep the list
        changelist=LEAD_ADMIN,
        add=LEAD_ADMIN,
        history=LEAD_ADMIN,
        delete=LEAD_ADMIN,
        change=LEAD_ADMIN,
    ),
    **admin_model(
        "scoring/listentry",
        changelist=LEAD_ADMIN,
        add=LEAD_ADMIN,
        history=LEAD_ADMIN,
        delete=LEAD_ADMIN,
        change=LEAD_ADMIN,
    ),
    **admin_model(
        "scoring/rule",  # read with its versions; published or disabled by actions through the rule book
        changelist=LEAD_ADMIN,
        add=NOBODYS_ADMIN,  # rules are written on the rules pages or with `manage.py rule`
        history=LEAD_ADMIN,
        delete=NOBODYS_ADMIN,  # disabled, never deleted: the versions are the audit trail
        change=LEAD_ADMIN,
    ),
    **admin_model(
        "scoring/webhookendpoint",  # leads' endpoints: disabled, never deleted, so their delivery log stays
        changelist=LEAD_ADMIN,
        add=LEAD_ADMIN,
        history=LEAD_ADMIN,
        delete=NOBODYS_ADMIN,
        change=LEAD_ADMIN,
    ),
    **admin_model(
        "auth/user",
        changelist=USERS_ADMIN,
        add=USERS_ADMIN,
        history=USERS_ADMIN,
        delete=USERS_ADMIN,
        change=USERS_ADMIN,
    ),
    "admin/auth/user/<id>/password/": {"GET": USERS_ADMIN},
    # django-tasks-db's task results (read-only): what the worker ran, with tracebacks; the jobs page is the leads'.
    **admin_model(
        "django_tasks_database/dbtaskresult",
        changelist=USERS_ADMIN,
        add=USERS_ADMIN,
        history=ADMIN_REDIRECT,  # no task result is sampled: the admin's "no such object" redirect comes first
        delete=USERS_ADMIN,
        change=USERS_ADMIN,
    ),
    # django-axes' login records: who failed, who was locked out; superusers unlock accounts.
    **admin_model(
        "axes/accessattempt",
        changelist=USERS_ADMIN,
        add=USERS_ADMIN,
        history=USERS_ADMIN,
        delete=USERS_ADMIN,
        change=USERS_ADMIN,
    ),
    **admin_model(
        "axes/accesslog",
        changelist=USERS_ADMIN,
        add=USERS_ADMIN,
        history=USERS_ADMIN,
        delete=USERS_ADMIN,
        change=USERS_ADMIN,
    ),
    **admin_model(
        "axes/accessfailurelog",
        changelist=USERS_ADMIN,
        add=USERS_ADMIN,
        history=USERS_ADMIN,
        delete=USERS_ADMIN,
        change=USERS_ADMIN,
    ),
    **admin_model(
        "auth/group",
        changelist=USERS_ADMIN,
        add=USERS_ADMIN,
        history=USERS_ADMIN,
        delete=USERS_ADMIN,
        change=USERS_ADMIN,
    ),
}

# Routes that exist only in some configurations: the table answers for them without requiring them.
OPTIONAL = {
    route
    for route in ROUTES
    # Password reset is served only when a mail can carry its link; the admin's app list names the apps installed.
    if route.startswith(("accounts/password_reset/", "accounts/reset/", "admin/(?P<app_label>"))
}

# Whether the socket opens, for (anonymous, no role, analyst, lead).
SOCKETS: dict[str, tuple[bool, bool, bool, bool]] = {"ws/dashboard/": (False, False, True, True)}


# --- walking the URL configuration -----------------------------------------------------------------


def walk(patterns: list[Any], prefix: str = "") -> Iterator[str]:
    """Every URL pattern under `patterns`, as the route Django resolves it by (ResolverMatch.route: each part
    without its leading ^)."""
    for pattern in patterns:
        route = prefix + str(pattern.pattern).removeprefix("^")
        if isinstance(pattern, URLResolver):
            yield from walk(pattern.url_patterns, route)
        else:
            assert isinstance(pattern, URLPattern)
            yield route


ALL_ROUTES = sorted(set(walk(get_resolver().url_patterns)))


@dataclass
class World:
    """One of everything a route may name, and a logged-in client (or none) for each kind of account."""

    clients: dict[str, Client]
    users: dict[str, User | AnonymousUser]
    samples: dict[str, Model]
    case: Case

    def url(self, route: str) -> str:
        """`route` with sample values for its converters and named groups."""
        values = {
            "case_id": self.case.pk,
            "card_id": self.case.card_id,
            "merchant_id": self.case.alerts.get().merchant_id,
            "tx_id": self.case.alerts.get().id,
            "content_type_id": ContentType.objects.get_for_model(Case).pk,
            "object_id": self._admin_object(route),
            "id": self.users["analyst"].pk,
            "app_label": "scoring",
            "url": "nowhere/",
            "uidb64": "MQ",
            "token": "set-password",
            "endpoint_id": self.samples["scoring.webhookendpoint"].pk,
            "delivery_id": self.samples["scoring.webhookendpoint"].deliveries.get().pk,
            "version": self.samples["scoring.modelversion"].version,
            "rule_id": self.samples["scoring.rule"].pk,
            "ref": self.samples["scoring.rule"].name,
        }
        url = re.sub(r"\(\?P<(\w+)>[^)]*\)", lambda m: str(values[m[1]]), route)
        url = re.sub(r"<(?:\w+:)?(\w+)>", lambda m: str(values[m[1]]), url)
        return "/" + url.replace("$", "")

    def _admin_object(self, route: str) -> Any:
        found = re.match(r"admin/(\w+)/(\w+)/", route)
        sample = self.samples.get(f"{found[1]}.{found[2]}") if found else None
        return sample.pk if sample else self.case.pk


@pytest.fixture
def world(db: None, model_version: ModelVersion, api_key: str) -> World:
    ensure_roles()
    users: dict[str, User | AnonymousUser] = {"anonymous": AnonymousUser()}
    for kind, grant in (("no role", None), ("analyst", make_analyst), ("lead", make_lead)):
        users[kind] = User.objects.create_user(kind.replace(" ", "-"))
        if grant:
            grant(users[kind])
    clients = {kind: Client() for kind in KINDS}
    for kind in KINDS[1:]:
        clients[kind].force_login(users[kind])
    case = _flagged_case()
    samples = {
        "scoring.case": case,
        "scoring.transaction": case.alerts.get(),
        "scoring.modelversion": model_version,
        "scoring.apikey": ApiKey.objects.get(),
        "scoring.reasoncode": ReasonCode.objects.create(code="test-reason", label="Test reason"),
        "scoring.listentry": ListEntry.objects.create(kind="block", entity="card", value="card-x", reason="stolen"),
        "scoring.webhookendpoint": _webhook_delivery().endpoint,
        "scoring.rule": Rule.objects.create(name="route-rule", condition="amount > 1.0", action="review"),
        "auth.user": users["no role"],
        "auth.group": Group.objects.get(name="Analysts"),
        **_login_records(),
    }
    return World(clients=clients, users=users, samples=samples, case=case)


def _login_records() -> dict[str, Model]:
    """One of each record django-axes keeps, for its admin's object pages."""
    from axes.models import AccessAttempt, AccessFailureLog, AccessLog

    seen = {"user_agent": "test", "ip_address": "127.0.0.1", "username": "someone", "http_accept": "*/*"}
    seen |= {"path_info": "/accounts/login/", "attempt_time": timezone.now()}
    return {
        "axes.accessattempt": AccessAttempt.objects.create(**seen, get_data="", post_data="", failures_since_start=1),
        "axes.accesslog": AccessLog.objects.create(**seen),
        "axes.accessfailurelog": AccessFailureLog.objects.create(**seen),
    }


def _webhook_delivery() -> Model:
    """An endpoint with one delivery, for the webhook pages and the endpoint's admin pages."""
    from scoring.models import WebhookDelivery, WebhookEndpoint, WebhookEvent

    endpoint = WebhookEndpoint.objects.create(url="https://hooks.example.com/fraud", events=["case.resolved"])
    event = WebhookEvent.objects.create(type="case.resolved", payload={"type": "case.resolved"})
    return WebhookDelivery.objects.create(event=event, endpoint=endpoint)


def _flagged_case() -> Case:
    return make_case()


def answer(response: HttpResponse) -> int | str:
    if response.status_code == 302 and response["Location"].startswith("/accounts/login/"):
        return LOGIN
    if response.status_code == 302 and response["Location"].startswith("/admin/login/"):
        return ADMIN_LOGIN
    return response.status_code


FORM = {"verdict": "fraud", "text": "a note", "reason": "a reason"}  # what the case actions' forms send


@pytest.mark.parametrize("route", ALL_ROUTES)
def test_every_route_answers_each_kind_of_account_as_the_table_says(world: World, route: str) -> None:
    assert route in ROUTES, f"no expected answers for the route {route!r}: add it to ROUTES (who may reach it?)"
    url = world.url(route)
    assert resolve(url.split("?")[0]).route == route, f"the sample URL {url} does not reach {route!r}"
    for method, expected in ROUTES[route].items():
        answers = []
        for kind in KINDS:
            send = world.clients[kind].get if method == "GET" else world.clients[kind].post
            answers.append(answer(send(url, FORM) if method == "POST" else send(url)))
        said = f"{method} {url}: {dict(zip(KINDS, answers, strict=True))}"
        if expected == every(SAME):
            assert len(set(answers)) == 1 and answers[0] not in (LOGIN, ADMIN_LOGIN), said
        else:
            assert tuple(answers) == expected, said


def test_the_table_names_no_route_that_is_gone() -> None:
    assert sorted(set(ROUTES) - set(ALL_ROUTES) - OPTIONAL) == []


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("route", sorted(str(pattern.pattern) for pattern in websocket_urlpatterns))
async def test_the_socket_opens_for_analysts_and_leads_only(route: str) -> None:
    assert route in SOCKETS, f"no expected answers for the socket route {route!r}: add it to SOCKETS"
    users = await database_sync_to_async(_socket_users)()
    opened = []
    for kind in KINDS:
        communicator = WebsocketCommunicator(
            application, "/" + route, headers=[(b"origin", b"http://127.0.0.1"), (b"host", b"127.0.0.1")]
        )
        communicator.scope["user"] = users[kind]
        connected, _ = await communicator.connect()
        opened.append(connected)
        await communicator.disconnect()

    assert tuple(opened) == SOCKETS[route], dict(zip(KINDS, opened, strict=True))


def _socket_users() -> dict[str, User | AnonymousUser]:
    ensure_roles()
    users: dict[str, User | AnonymousUser] = {"anonymous": AnonymousUser()}
    for kind, grant in (("no role", None), ("analyst", make_analyst), ("lead", make_lead)):
        users[kind] = User.objects.create_user(f"socket-{kind.replace(' ', '-')}")
        if grant:
            grant(users[kind])
    return users
