"""The project's only settings module: everything that varies comes from the environment.

Without DATABASE_URL and REDIS_URL the embedded defaults serve (SQLite, the in-memory channel
layer); with them, PostgreSQL (pooled through psycopg 3) and Redis. The README lists every variable.
"""

from __future__ import annotations

import os
from pathlib import Path

import dj_database_url
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


DEBUG = env_bool("DEBUG", default=False)
SECRET_KEY = env_str("SECRET_KEY")
if not SECRET_KEY:
    if not DEBUG and env_bool("PRODUCTION", default=False):
        raise ImproperlyConfigured("SECRET_KEY must be set in production (PRODUCTION=1)")
    SECRET_KEY = "dev-only-insecure-key-set-SECRET_KEY-in-production"

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", default=[])

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
    "django_htmx",
    "template_partials",
    "ninja",
    "scoring",
    "dashboards",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
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
VAR_DIR = BASE_DIR / "var"  # local state of the embedded defaults (SQLite files); git-ignored
VAR_DIR.mkdir(exist_ok=True)
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

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {
        "django.channels.server": {"level": "WARNING"},
        "daphne": {"level": "WARNING"},
    },
}
