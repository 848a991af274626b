"""Production settings that are safe by default: the secret key, the deploy check, and fail-loud variables.

Each case starts a fresh Python with its own environment, as a server process would start.
"""

from __future__ import annotations

import os
import secrets
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from fraudsite.settings import local_secret_key

ROOT = Path(__file__).resolve().parents[1]
# Variables of the settings this file varies: cleared so that the machine's own never leak into a case.
VARIED = [
    "DEBUG",
    "PRODUCTION",
    "SECRET_KEY",
    "ALLOWED_HOSTS",
    "ALLOWED_ORIGINS",
    "EMAIL_BACKEND",
    "EMAIL_HOST",
    "SECURE_SSL_REDIRECT",
    "SECURE_HSTS_SECONDS",
    "SECURE_HSTS_INCLUDE_SUBDOMAINS",
    "SECURE_HSTS_PRELOAD",
    "SESSION_COOKIE_SECURE",
    "CSRF_COOKIE_SECURE",
    "SECURE_PROXY_SSL_HEADER",
    "LOGIN_FAILURE_LIMIT",
    "LOGIN_LOCKOUT_BY",
]
STRONG_KEY = secrets.token_urlsafe(64)
PRODUCTION = {"PRODUCTION": "1", "SECRET_KEY": STRONG_KEY, "ALLOWED_HOSTS": "fraud.example.com"}


def run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k not in VARIED}
    clean["DJANGO_SETTINGS_MODULE"] = "fraudsite.settings"
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, env={**clean, **env}, capture_output=True, text=True, timeout=120
    )


def setting(name: str, env: dict[str, str]) -> str:
    """The value a process started with `env` gives a setting (its repr), or its start-up error."""
    done = run(["-c", f"from fraudsite import settings; print(repr(settings.{name}))"], env)
    return done.stdout.strip() or done.stderr.strip().splitlines()[-1]


def test_with_debug_off_a_weak_secret_key_stops_start_up():
    assert "SECRET_KEY is too weak" in setting("SECRET_KEY", {"SECRET_KEY": "dev-key"})
    assert "SECRET_KEY is too weak" in setting("SECRET_KEY", {"SECRET_KEY": "django-insecure-" + STRONG_KEY})


def test_with_debug_on_a_weak_secret_key_is_allowed():
    assert setting("SECRET_KEY", {"SECRET_KEY": "dev-key", "DEBUG": "1"}) == "'dev-key'"


def test_production_without_a_secret_key_stops_start_up():
    assert "SECRET_KEY must be set in production" in setting("SECRET_KEY", {"PRODUCTION": "1"})


def test_without_a_secret_key_development_signs_with_this_checkouts_own_generated_key():
    # No key is committed: the one in use is the checkout's var/secret-key, which the servers it starts share.
    key = (ROOT / "var" / "secret-key").read_text().strip()

    assert setting("SECRET_KEY", {}) == repr(key)
    assert key not in (ROOT / "fraudsite" / "settings.py").read_text()


def test_a_generated_key_is_random_private_and_kept(tmp_path):
    first, other = local_secret_key(tmp_path / "a"), local_secret_key(tmp_path / "b")

    assert first != other
    assert len(first) >= 50
    assert local_secret_key(tmp_path / "a") == first
    assert stat.S_IMODE((tmp_path / "a").stat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b"]  # no draft left behind


def test_check_deploy_is_clean_in_production_mode():
    done = run(["manage.py", "check", "--deploy", "--fail-level", "WARNING"], PRODUCTION)

    assert done.returncode == 0, done.stdout + done.stderr
    assert "no issues" in done.stdout


def test_check_deploy_names_what_an_environment_variable_turns_off_in_production():
    done = run(
        ["manage.py", "check", "--deploy", "--fail-level", "WARNING"], {**PRODUCTION, "SECURE_HSTS_SECONDS": "0"}
    )

    assert done.returncode != 0
    assert "security.W004" in done.stderr + done.stdout


@pytest.mark.parametrize(
    ("name", "env", "expected"),
    [
        ("SECURE_SSL_REDIRECT", PRODUCTION, "True"),
        ("SECURE_SSL_REDIRECT", {}, "False"),
        ("SECURE_SSL_REDIRECT", {**PRODUCTION, "SECURE_SSL_REDIRECT": "0"}, "False"),
        ("SESSION_COOKIE_SECURE", PRODUCTION, "True"),
        ("CSRF_COOKIE_SECURE", {}, "False"),
        ("SECURE_HSTS_SECONDS", {"SECURE_HSTS_SECONDS": "600"}, "600"),
        ("SECURE_PROXY_SSL_HEADER", {}, "None"),
        (
            "SECURE_PROXY_SSL_HEADER",
            {"SECURE_PROXY_SSL_HEADER": "X-Forwarded-Proto: https"},
            "('HTTP_X_FORWARDED_PROTO', 'https')",
        ),
        ("ALLOWED_ORIGINS", {"ALLOWED_ORIGINS": "https://fraud.example.com"}, "['https://fraud.example.com']"),
        ("AXES_FAILURE_LIMIT", {"LOGIN_FAILURE_LIMIT": "3"}, "3"),
        ("AXES_LOCKOUT_PARAMETERS", {"LOGIN_LOCKOUT_BY": "username"}, "[['username']]"),
    ],
)
def test_each_protection_is_set_from_the_environment(name, env, expected):
    assert setting(name, env) == expected


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"SECURE_HSTS_SECONDS": "1.5"}, "SECURE_HSTS_SECONDS"),
        ({"SECURE_SSL_REDIRECT": "maybe"}, "SECURE_SSL_REDIRECT"),
        ({"SECURE_PROXY_SSL_HEADER": "https"}, "SECURE_PROXY_SSL_HEADER"),
        ({"ALLOWED_ORIGINS": "*"}, "ALLOWED_ORIGINS"),
        ({"ALLOWED_ORIGINS": "fraud.example.com"}, "ALLOWED_ORIGINS"),
        ({"LOGIN_LOCKOUT_BY": "cookie"}, "LOGIN_LOCKOUT_BY"),
        ({"EMAIL_BACKEND": "pigeon"}, "EMAIL_BACKEND"),
    ],
)
def test_a_malformed_value_stops_start_up_naming_the_variable(env, named):
    error = setting("DEBUG", env)

    assert "ImproperlyConfigured" in error
    assert named in error


@pytest.mark.parametrize(
    ("env", "offered"),
    [
        ({}, "True"),  # development: the console backend prints the mail
        (PRODUCTION, "False"),  # nowhere to send it: not offered
        ({**PRODUCTION, "EMAIL_HOST": "smtp.example.com"}, "True"),
    ],
)
def test_password_reset_is_offered_only_where_a_mail_can_be_sent(env, offered):
    assert setting("PASSWORD_RESET_OFFERED", env) == offered
