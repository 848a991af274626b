"""The project's only settings module: everything that varies comes from the environment.

Without DATABASE_URL and REDIS_URL the embedded defaults serve (SQLite, the in-memory channel
layer); with them, PostgreSQL (pooled through psycopg 3) and Redis. The README lists every variable.
"""

from __future__ import annotations

import os
import re
import secrets
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

import dj_database_url
from csp.constants import NONE, SELF, UNSAFE_INLINE
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


def env_str(name: str, default: str = "") -> str:
    """A string variable, or the default when unset or empty."""
    return os.environ.get(name, "").strip() or default


def env_bool(name: str, *, default: bool) -> bool:
    """A boolean variable; anything but the usual spellings is an error, not a silent False."""
    raw = os.environ.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in {"1", "true", "yes", "on"}:
        return True
    if raw in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name}={raw!r} is not a boolean (use 1/0, true/false, yes/no)")


def env_float(name: str, *, default: float) -> float:
    """A number variable; a malformed value stops start-up with the variable's name."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        return float(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={raw!r} is not a number") from None


def env_list(name: str, *, default: list[str]) -> list[str]:
    """A comma-separated list variable."""
    raw = os.environ.get(name, "").strip()
    return [item.strip() for item in raw.split(",") if item.strip()] if raw else default


def env_int(name: str, *, default: int) -> int:
    """A whole-number variable; "1.5" or "ten" stops start-up rather than being rounded or ignored."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={raw!r} is not a whole number") from None


def env_header(name: str) -> tuple[str, str] | None:
    """A header and the value that marks a request, written `X-Forwarded-Proto: https`, as Django's META
    pair (SECURE_PROXY_SSL_HEADER's shape); None when unset."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return None
    header, _, value = (part.strip() for part in raw.partition(":"))
    if not re.fullmatch(r"[A-Za-z0-9-]+", header) or not value:
        raise ImproperlyConfigured(f"{name}={raw!r} is not a header and its value, e.g. 'X-Forwarded-Proto: https'")
    return "HTTP_" + header.upper().replace("-", "_"), value


def env_origins(name: str) -> list[str]:
    """A comma-separated list of exact origins (scheme://host[:port]); a path, a wildcard or another scheme
    stops start-up, since the socket's origin check compares these to the letter."""
    origins = env_list(name, default=[])
    for origin in origins:
        parts = urlsplit(origin)
        if parts.scheme not in {"http", "https"} or not parts.hostname or parts.path or parts.query or "*" in origin:
            raise ImproperlyConfigured(f"{name}: {origin!r} is not an origin like https://fraud.example.com")
    return origins


def strong_secret_key(key: str) -> bool:
    """What Django's deploy check (security.W009) asks of a key: long, varied, not a generated placeholder."""
    return len(key) >= 50 and len(set(key)) >= 5 and not key.startswith("django-insecure-")


def local_secret_key(path: Path) -> str:
    """This checkout's own random key, made on first use (git-ignored var/), so that development, the tests
    and the demo sign with a key nobody else has, and no key is ever committed.

    Made beside the file and linked into place: processes starting at once (a test and the servers it
    starts) all read the one that was linked first."""
    if not path.exists():
        draft = path.with_name(f".{path.name}.{os.getpid()}")
        descriptor = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as file:
            file.write(secrets.token_urlsafe(64))
        try:
            os.link(draft, path)
        except FileExistsError:
            pass
        finally:
            draft.unlink()
    return path.read_text().strip()


DEBUG = env_bool("DEBUG", default=False)
# PRODUCTION=1: a SECRET_KEY must be given, and every protection of "HTTPS and browsers" below defaults on.
PRODUCTION = env_bool("PRODUCTION", default=False)
VAR_DIR = BASE_DIR / "var"  # local state of the embedded defaults (SQLite files, the local key); git-ignored
VAR_DIR.mkdir(exist_ok=True)

SECRET_KEY = env_str("SECRET_KEY")
if not SECRET_KEY and PRODUCTION:
    # Every process behind the load balancer must sign sessions and reset links with the same key.
    raise ImproperlyConfigured("SECRET_KEY must be set in production (PRODUCTION=1)")
SECRET_KEY = SECRET_KEY or local_secret_key(VAR_DIR / "secret-key")
if not DEBUG and not strong_secret_key(SECRET_KEY):
    raise ImproperlyConfigured("SECRET_KEY is too weak: 50 or more varied characters, not 'django-insecure-...'")

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", default=[])
# The dashboard socket accepts these origins only; unset, the origin it is served on (fraudsite/origins.py).
ALLOWED_ORIGINS = env_origins("ALLOWED_ORIGINS")

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "channels",
    "axes",
    "csp",
    "django_htmx",
    "template_partials",
    "ninja",
    "django_tasks",
    "django_tasks_db",
    "scoring",
    "dashboards",
]

MIDDLEWARE = [
    # First: every later middleware's log lines and every answer carry the request id.
    "fraudsite.request_id.RequestIdMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    # Last, as django-axes asks: it turns a locked-out login into its lockout answer.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "fraudsite.urls"
ASGI_APPLICATION = "fraudsite.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "fraudsite" / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "dashboards.context_processors.roles",
            ],
        },
    },
]

# --- database -------------------------------------------------------------------------------
DATABASE_URL = env_str("DATABASE_URL", f"sqlite:///{VAR_DIR / 'db.sqlite3'}")
_db = dj_database_url.parse(DATABASE_URL, conn_max_age=0)
# PostgreSQL behind a pooler that lends a server connection for one transaction at a time (PgBouncer in
# transaction mode): nothing may outlive a transaction, since a prepared statement or a held cursor
# (QuerySet.iterator(), as train_model reads) can be asked for on another server connection, which never had it.
DB_TRANSACTION_POOLING = env_bool("DB_TRANSACTION_POOLING", default=False)
if _db["ENGINE"] == "django.db.backends.postgresql":
    # CONN_MAX_AGE > 0 leaks connections under ASGI (a new thread per request); the pool reuses them.
    # A request waits at most DB_POOL_TIMEOUT for a connection, then gets a 503: with PostgreSQL down the pool
    # has none to give, and psycopg's default (30 s) held every request that long before answering.
    _db["OPTIONS"] = {
        "pool": {
            "min_size": 2,
            "max_size": int(env_float("DB_POOL_SIZE", default=10)),
            "timeout": env_float("DB_POOL_TIMEOUT", default=2),
        }
    }
    # Django turns psycopg's prepared statements off (None): nothing would be prepared, not even on request.
    # This number keeps them off except where asked for (scoring/sql.py, binary_cursor(prepared=True)): ingest's
    # batch write, unless DB_TRANSACTION_POOLING says not to.
    _db["OPTIONS"]["prepare_threshold"] = 2**31 - 1
    _db["DISABLE_SERVER_SIDE_CURSORS"] = DB_TRANSACTION_POOLING
elif _db["ENGINE"] == "django.db.backends.sqlite3":
    # WAL + IMMEDIATE transactions: concurrent writers queue instead of failing with "database is locked".
    _db["OPTIONS"] = {
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    # A file, not shared-cache memory: concurrent writers then wait for the lock instead of failing,
    # and end-to-end tests can point a real server process at the same database.
    _db["TEST"] = {"NAME": str(VAR_DIR / f"test-{os.getpid()}.sqlite3")}
    # The card-history index's INCLUDE columns make it covering on PostgreSQL; SQLite builds it without
    # them, which is all it needs, and says so (models.W040) at every migrate, `make demo`'s included.
    SILENCED_SYSTEM_CHECKS = ["models.W040"]
DATABASES = {"default": _db}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- channel layer --------------------------------------------------------------------------
REDIS_URL = env_str("REDIS_URL")
if REDIS_URL:
    # Pub/sub layer: one PUBLISH per group message, O(1) in the number of dashboards.
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
            "CONFIG": {"hosts": [REDIS_URL], "prefix": env_str("CHANNEL_PREFIX", "fraud")},
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

# --- auth, sessions, i18n --------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]
LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/accounts/login/"

# Login throttling (django-axes): after LOGIN_FAILURE_LIMIT wrong passwords the login is refused, even with
# the right one, for LOGIN_LOCKOUT_MINUTES. Every failure and lockout is kept in the admin ("Axes") and logged.
AUTHENTICATION_BACKENDS = ["axes.backends.AxesStandaloneBackend", "django.contrib.auth.backends.ModelBackend"]
AXES_FAILURE_LIMIT = env_int("LOGIN_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = timedelta(minutes=env_float("LOGIN_LOCKOUT_MINUTES", default=15))
# "username+ip_address" (the default) locks that account from that address only, so that nobody can lock an
# analyst out from elsewhere; "username" locks the account wherever the attempts come from.
AXES_LOCKOUT_PARAMETERS = [item.split("+") for item in env_list("LOGIN_LOCKOUT_BY", default=["username+ip_address"])]
if not {part for item in AXES_LOCKOUT_PARAMETERS for part in item} <= {"username", "ip_address", "user_agent"}:
    raise ImproperlyConfigured("LOGIN_LOCKOUT_BY: combine username, ip_address, user_agent with + and ,")
AXES_RESET_ON_SUCCESS = True
AXES_SENSITIVE_PARAMETERS: list[str] = []  # the log names the account and address locked out (never a password)
AXES_ENABLE_ACCESS_FAILURE_LOG = True
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"

# Password reset mails a link: console (printed by the server) by default in development, SMTP when EMAIL_HOST
# is set; in production without EMAIL_HOST it is not offered, rather than saying "sent" when nothing can be.
_EMAIL_BACKENDS = {
    "console": "django.core.mail.backends.console.EmailBackend",
    "smtp": "django.core.mail.backends.smtp.EmailBackend",
    "none": "",
}
EMAIL_HOST = env_str("EMAIL_HOST")
_email = env_str("EMAIL_BACKEND", "smtp" if EMAIL_HOST else "none" if PRODUCTION else "console")
if _email not in _EMAIL_BACKENDS:
    raise ImproperlyConfigured(f"EMAIL_BACKEND={_email!r}: use one of {', '.join(_EMAIL_BACKENDS)}")
EMAIL_BACKEND = _EMAIL_BACKENDS[_email] or _EMAIL_BACKENDS["console"]
PASSWORD_RESET_OFFERED = bool(_EMAIL_BACKENDS[_email])
EMAIL_PORT = env_int("EMAIL_PORT", default=587)
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER")
EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", default=True)
EMAIL_TIMEOUT = env_float("EMAIL_TIMEOUT", default=10)
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "Fraud Desk <fraud-desk@localhost>")

# --- HTTPS and browsers ------------------------------------------------------------------------
# Each setting `manage.py check --deploy` asks for, from the environment; PRODUCTION=1 turns them on.
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", default=PRODUCTION)
# Load balancers probe these over plain HTTP.
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$"]
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", default=31_536_000 if PRODUCTION else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=PRODUCTION)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", default=PRODUCTION)
SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", default=PRODUCTION)
CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", default=PRODUCTION)
SECURE_CONTENT_TYPE_NOSNIFF = env_bool("SECURE_CONTENT_TYPE_NOSNIFF", default=True)
SECURE_REFERRER_POLICY = env_str("SECURE_REFERRER_POLICY", "same-origin")
SECURE_CROSS_ORIGIN_OPENER_POLICY = env_str("SECURE_CROSS_ORIGIN_OPENER_POLICY", "same-origin")
# Behind a proxy that terminates TLS and says so in a header, e.g. "X-Forwarded-Proto: https"; set it only
# when the proxy overwrites that header (a client could send it too).
SECURE_PROXY_SSL_HEADER = env_header("SECURE_PROXY_SSL_HEADER")

# No inline script anywhere: scripts, styles and fonts come from the site itself; the socket is the page's own
# origin, which 'self' covers for ws:// and wss:// alike.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF, UNSAFE_INLINE],
        "img-src": [SELF, "data:"],
        "connect-src": [SELF],
        "object-src": [NONE],
        "base-uri": [SELF],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
    }
}

# A client that sends its request slowly holds a connection and the memory behind it: the headers must have
# arrived within the first bound (the Procfile's server, fraudsite/middleware.py), the body within the second.
REQUEST_HEADER_TIMEOUT_SECONDS = env_float("REQUEST_HEADER_TIMEOUT_SECONDS", default=10)
REQUEST_BODY_TIMEOUT_SECONDS = env_float("REQUEST_BODY_TIMEOUT_SECONDS", default=30)

LANGUAGE_CODE = "en-us"
TIME_ZONE = env_str("TIME_ZONE", "UTC")
USE_I18N = False
USE_TZ = True

STATIC_URL = "/static/"
STATIC_ROOT = BASE_DIR / "staticfiles"

# --- API and scoring -------------------------------------------------------------------------
# Requests above this many bytes are refused with 413 (a batch of 1,000 items fits in ~300 kB).
DATA_UPLOAD_MAX_MEMORY_SIZE = int(env_float("MAX_BODY_BYTES", default=2_000_000))
NINJA_PAGINATION_PER_PAGE = 50

# Labels of fraud become usable for merchant-risk features only after this delay (chargeback lag).
FRAUD_LABEL_DELAY_DAYS = env_float("FRAUD_LABEL_DELAY_DAYS", default=7)
# How long a server process reuses the merchant window counts it read (scoring/aggregates.py, WindowCache):
# labels, imports and late transactions written by other processes reach its features within this many seconds
# (its own at once). 0 reads them for every batch.
MERCHANT_WINDOWS_CACHE_SECONDS = env_float("MERCHANT_WINDOWS_CACHE_SECONDS", default=60)
# How often a server process checks which model version is active (seconds).
MODEL_REFRESH_SECONDS = env_float("MODEL_REFRESH_SECONDS", default=5)
# How often a server process checks the live rules (active and shadow) for a change (seconds); the rule book's own
# changes reach the process that made them at once.
RULES_REFRESH_SECONDS = env_float("RULES_REFRESH_SECONDS", default=5)
# Broadcasting never holds up ingest longer than this; a slower layer is logged as down.
# The module that pushes committed changes to the dashboards (scoring calls it; see scoring/announce.py).
BROADCASTER = "dashboards.broadcast"
BROADCAST_TIMEOUT_SECONDS = env_float("BROADCAST_TIMEOUT_SECONDS", default=1.0)
# A dashboard that has acknowledged no frame for this long is closed; it reconnects and resumes by id.
DASHBOARD_STALL_SECONDS = env_float("DASHBOARD_STALL_SECONDS", default=10)
# Every this many seconds each process delivers to its dashboards what the database stored (2 s earlier or more)
# that never came through the channel layer: lost across a Redis reconnect, a broadcast past its timeout. 0: never.
DASHBOARD_RECONCILE_SECONDS = env_float("DASHBOARD_RECONCILE_SECONDS", default=1)
# Ingest batches stored at once per process (scoring/batcher.py): while one waits for PostgreSQL, another
# computes; two run at once, a third when FULL_BATCH (32) items wait. SQLite has one writer at a time, so 1 there.
INGEST_THREADS = int(env_float("INGEST_THREADS", default=3 if _db["ENGINE"] == "django.db.backends.postgresql" else 1))

# Webhooks (scoring/webhooks.py), sent by the worker: each request's connection and each of its reads wait at most
# WEBHOOK_TIMEOUT_SECONDS; a delivery that gets no answer, a 5xx or a 429 is tried again after
# WEBHOOK_RETRY_BASE_SECONDS, doubling each time up to an hour (with jitter, never sooner than a Retry-After), for
# WEBHOOK_RETRY_HOURS, then marked failed. A worker process sends WEBHOOK_CONCURRENCY deliveries at once at most.
WEBHOOK_TIMEOUT_SECONDS = env_float("WEBHOOK_TIMEOUT_SECONDS", default=10)
WEBHOOK_RETRY_BASE_SECONDS = env_float("WEBHOOK_RETRY_BASE_SECONDS", default=10)
WEBHOOK_RETRY_HOURS = env_float("WEBHOOK_RETRY_HOURS", default=24)
WEBHOOK_CONCURRENCY = env_int("WEBHOOK_CONCURRENCY", default=8)

# The review desk's deadlines: a case is due this many hours after it opens, by its decision (a block joining a
# review case brings the due time forward); a claim with no activity for CLAIM_TIMEOUT_MINUTES returns the case
# to the queue.
CASE_DUE_HOURS = {
    "block": env_float("CASE_DUE_HOURS_BLOCK", default=4),
    "review": env_float("CASE_DUE_HOURS_REVIEW", default=24),
}
CLAIM_TIMEOUT_MINUTES = env_float("CLAIM_TIMEOUT_MINUTES", default=30)

# --- the worker (`manage.py worker`, the Procfile's worker) --------------------------------------
# Background jobs are django-tasks tasks kept in the database (django-tasks-db): the same tables on SQLite and
# PostgreSQL, committed with the change that asks for them, run by the worker.
TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend"}}
# Functions the worker calls every WORKER_TICK_SECONDS, each on its own: one failing never stops the others.
# Idle claims back to the queue; the retrain falling due; jobs whose worker died under them.
WORKER_DUTIES = [
    "scoring.cases.lapse_idle_claims",
    "scoring.jobs.schedule_retrain",
    "scoring.jobs.expire_silent",
    "scoring.webhooks.sweep",  # the webhook outbox: fan-out and delivery
]
WORKER_TICK_SECONDS = env_float("WORKER_TICK_SECONDS", default=5)
# A retrain is queued when the newest model version (or retrain) is this many days old; 0: never.
RETRAIN_EVERY_DAYS = env_float("RETRAIN_EVERY_DAYS", default=7)
# The largest CSV a lead may upload for a history import (kept in the database until the import ends);
# larger files go through `manage.py import_transactions`.
IMPORT_MAX_BYTES = env_int("IMPORT_MAX_BYTES", default=25_000_000)

# --- metrics and logs ------------------------------------------------------------------------
# GET /metrics answers a scraper that sends `Authorization: Bearer <METRICS_TOKEN>`; unset, the route answers 404.
METRICS_TOKEN = env_str("METRICS_TOKEN")
if METRICS_TOKEN and len(METRICS_TOKEN) < 16:
    raise ImproperlyConfigured("METRICS_TOKEN is too short: use 16 or more random characters (secrets.token_urlsafe)")
# json: one JSON object a line, for log search (fraudsite/logs.py); plain: readable lines, for development.
LOG_FORMAT = env_str("LOG_FORMAT", "json" if PRODUCTION else "plain")
if LOG_FORMAT not in {"json", "plain"}:
    raise ImproperlyConfigured(f"LOG_FORMAT={LOG_FORMAT!r}: use json or plain")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "json": {
            "()": "fraudsite.logs.JsonFormatter",
            "fmt": ["levelname", "name", "message"],
            "rename_fields": {"levelname": "level", "name": "logger"},
            "timestamp": "time",  # ISO 8601 in UTC, to the microsecond
        },
        "plain": {"()": "fraudsite.logs.PlainFormatter", "fmt": "%(asctime)s %(levelname)s %(name)s: %(message)s"},
    },
    "filters": {"request_id": {"()": "fraudsite.logs.RequestIdFilter"}},
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT, "filters": ["request_id"]},
    },
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {
        # uvicorn (the Procfile's server) set up its own handlers before loading the app: its lines go the same way.
        # Not its parent "uvicorn": configuring that would turn on the access log the Procfile turns off.
        "uvicorn.error": {"handlers": ["console"], "propagate": False},
        "django.channels.server": {"level": "WARNING"},
        "daphne": {"level": "WARNING"},
        "axes.apps": {"level": "WARNING"},  # its start-up line, in every process and command
    },
}
