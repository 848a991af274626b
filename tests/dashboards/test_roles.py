"""Who may do what in the analyst UI: anonymous users are kept out, analysts work cases, leads take over."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group, User
from django.test import Client

from scoring.models import Case
from scoring.roles import LEADS, ensure_roles
from tests.dashboards.conftest import analyst_named, logged_in, make_case

pytestmark = pytest.mark.django_db
HTMX = {"HTTP_HX_REQUEST": "true", "HTTP_HX_CURRENT_URL": "http://testserver/cases/?show=all"}


@pytest.fixture
def case() -> Case:
    return make_case()


@pytest.fixture
def analyst(django_user_model: type[User]) -> User:
    return analyst_named(django_user_model, "alice")


@pytest.fixture
def other_analyst(django_user_model: type[User]) -> User:
    return analyst_named(django_user_model, "bob")


@pytest.fixture
def supervisor(django_user_model: type[User]) -> User:
    """A lead: may take over cases that someone else holds."""
    ensure_roles()
    user = django_user_model.objects.create_user(username="sam", is_staff=True)
    user.groups.add(Group.objects.get(name=LEADS))
    return user


@pytest.mark.parametrize("path", ["/", "/cases/", "/cases/{id}/"])
def test_anonymous_users_are_sent_to_login_for_pages(client: Client, case: Case, path: str) -> None:
    url = path.format(id=case.id)

    response = client.get(url)

    assert response.status_code == 302
    assert response["Location"].startswith(f"/accounts/login/?next={url}")


@pytest.mark.parametrize("action", ["claim", "release", "resolve"])
def test_anonymous_posts_are_forbidden(client: Client, case: Case, action: str) -> None:
    response = client.post(f"/cases/{case.id}/{action}", {"verdict": "fraud"})

    assert response.status_code == 403
    case.refresh_from_db()
    assert case.is_open
    assert case.assignee is None


def test_anonymous_htmx_calls_get_403_and_a_way_back_to_login(client: Client, case: Case) -> None:
    response = client.post(f"/cases/{case.id}/claim", **HTMX)

    assert response.status_code == 403
    assert response["HX-Redirect"] == "/accounts/login/?next=/cases/%3Fshow%3Dall"


@pytest.mark.parametrize("path", ["/cases/top/", "/cases/{id}/row"])
def test_anonymous_htmx_fragments_are_forbidden(client: Client, case: Case, path: str) -> None:
    response = client.get(path.format(id=case.id), **HTMX)

    assert response.status_code == 403


def test_staff_see_the_admin_link(supervisor: User) -> None:
    body = logged_in(supervisor).get("/").content.decode()

    assert 'id="nav-admin"' in body
    assert 'href="/admin/"' in body


def test_analysts_admin_offers_cases_and_transactions_only(analyst: User) -> None:
    body = logged_in(analyst).get("/admin/").content.decode()

    assert "/admin/scoring/case/" in body
    assert "/admin/scoring/transaction/" in body
    for staff_only in (
        "/admin/scoring/modelversion/",
        "/admin/scoring/apikey/",
        "/admin/scoring/listentry/",
        "/admin/auth/user/",
    ):
        assert staff_only not in body


def test_users_without_admin_access_do_not_see_the_admin_link(django_user_model: type[User]) -> None:
    viewer = django_user_model.objects.create_user(username="viewer")

    body = logged_in(viewer).get("/").content.decode()

    assert 'id="nav-admin"' not in body


def test_navigation_names_the_logged_in_analyst(analyst: User) -> None:
    body = logged_in(analyst).get("/cases/").content.decode()

    assert 'id="nav-user"' in body
    assert "alice" in body


def test_every_analyst_can_claim_and_resolve(analyst: User, case: Case) -> None:
    client = logged_in(analyst)

    assert client.post(f"/cases/{case.id}/claim", HTTP_HX_REQUEST="true").status_code == 200
    assert (
        client.post(f"/cases/{case.id}/resolve", {"verdict": "legitimate"}, HTTP_HX_REQUEST="true").status_code == 200
    )


def test_analyst_cannot_release_someone_elses_case(analyst: User, other_analyst: User, case: Case) -> None:
    case.assignee = other_analyst
    case.save()

    response = logged_in(analyst).post(f"/cases/{case.id}/release", HTTP_HX_REQUEST="true")

    assert response.status_code == 409
    case.refresh_from_db()
    assert case.assignee == other_analyst


def test_analyst_sees_no_buttons_on_a_case_held_by_someone_else(analyst: User, other_analyst: User, case: Case) -> None:
    case.assignee = other_analyst
    case.save()

    body = logged_in(analyst).get(f"/cases/{case.id}/row").content.decode()

    assert "claimed by bob" in body
    for label in (">Claim<", ">Release<", ">Fraud<", ">Legitimate<"):
        assert label not in body


def test_lead_can_release_a_case_held_by_someone_else(supervisor: User, other_analyst: User, case: Case) -> None:
    case.assignee = other_analyst
    case.save()
    client = logged_in(supervisor)

    assert ">Release<" in client.get(f"/cases/{case.id}/row").content.decode()
    response = client.post(f"/cases/{case.id}/release", HTTP_HX_REQUEST="true")

    assert response.status_code == 200
    case.refresh_from_db()
    assert case.assignee is None
