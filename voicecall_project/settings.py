"""Django settings; the only module that reads the environment (django-environ)."""

from __future__ import annotations

import os
from pathlib import Path

import environ
from celery.schedules import crontab
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
if env.str("VOICECALL_DOTENV", default="on") != "off":
    env.read_env(BASE_DIR / ".env")

DATA_DIR = Path(env.str("VOICECALL_DATA_DIR", default=str(BASE_DIR / "var")))

SECRET_KEY = env.str("SECRET_KEY", default="voicecall-embedded-development-key-change-me")
DEBUG = env.bool("DEBUG", default=False)
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["*"])

# The plugin config file (JSON or JSON5) in the seed's shape; unset = mock carrier, defaults.
VOICECALL_CONFIG = env.str("VOICECALL_CONFIG", default="")
# A static API token accepted besides the hashed tokens in the database.
VOICECALL_API_TOKEN = env.str("VOICECALL_API_TOKEN", default="")
OPENAI_API_KEY = env.str("OPENAI_API_KEY", default="")

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "channels",
    "calls",
]

# Every MiddlewareMixin costs a thread hop per request under ASGI (docs/performance.md,
# "Middleware hops"). Carrier webhooks skip this stack altogether when served
# (calls/web/webhook_views.py, WebhookEndpoint); RPC is csrf-exempt and token-authenticated.
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "voicecall_project.urls"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]
WSGI_APPLICATION = "voicecall_project.wsgi.application"
ASGI_APPLICATION = "voicecall_project.asgi.application"

# Database
DATABASES = {
    "default": env.db_url("DATABASE_URL", default=f"sqlite:///{DATA_DIR / 'voicecall.sqlite3'}")
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    Path(DATABASES["default"]["NAME"]).parent.mkdir(parents=True, exist_ok=True)
    # The embedded server writes from request threads and the sweep thread at once:
    # WAL lets readers run beside the writer, IMMEDIATE takes the write lock up front
    # so two writers queue on `timeout` instead of failing with "database is locked".
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 20,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
elif DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # A pool, not persistent connections: under ASGI every request may run on a fresh
    # thread, and CONN_MAX_AGE connections then pile up until PostgreSQL refuses clients
    # (seen in bench/webhook_throughput.py). Closing a pooled connection returns it.
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
        "min_size": 1,
        "max_size": env.int("DATABASE_POOL_SIZE", default=10),
        "timeout": 10,
    }
    # Parameters bound by the server, not spliced into the SQL text in Python: psycopg
    # then prepares a statement a pooled connection runs often, and the reply path's dozen
    # statements cost 4–5 ms less (docs/performance.md, "Reply latency"). Off behind a
    # pooler that cannot keep prepared statements (PgBouncer in transaction mode < 1.21).
    DATABASES["default"]["OPTIONS"]["server_side_binding"] = env.bool(
        "DATABASE_SERVER_SIDE_BINDING", default=True
    )
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
# Reused threads that run carrier webhooks' database work, at most this many at once
# (calls/db_threads.py; docs/performance.md, "Webhook path").
VOICECALL_WEBHOOK_WORKERS = env.int("VOICECALL_WEBHOOK_WORKERS", default=8)
# Threads serving the token API (calls/web/api_endpoint.py). A `continue` or a waiting
# `speak` holds one while it waits for the caller, so there are many; idle ones are reused.
VOICECALL_API_WORKERS = env.int("VOICECALL_API_WORKERS", default=64)

# Prometheus metrics (calls/metrics.py; docs/operations.md, "Metrics"). prometheus_client
# chooses multiprocess mode from this variable when it is first imported, so it is put in
# the environment here, before any app code runs, in every process that loads the settings
# (servers, Celery workers, commands) and in the processes they start.
PROMETHEUS_MULTIPROC_DIR = env.str("PROMETHEUS_MULTIPROC_DIR", default=str(DATA_DIR / "metrics"))
os.environ["PROMETHEUS_MULTIPROC_DIR"] = PROMETHEUS_MULTIPROC_DIR
# GET /metrics without the API token (a scraper on a private network).
VOICECALL_METRICS_PUBLIC = env.bool("VOICECALL_METRICS_PUBLIC", default=False)

# Channels
REDIS_URL = env.str("REDIS_URL", default="")
if REDIS_URL:
    # Redis pub/sub: a message is one PUBLISH and reaches its subscriber at once, where the
    # core layer takes four round trips and a blocking pop (a third of the latency per
    # `speak`); the layer carries control messages only, and a `speak` is acknowledged, so
    # at-most-once delivery is enough (docs/performance.md, "Channel layer: control events
    # only"). socket_timeout None: no read of ours may time out while idle
    # (redis/redis-py#4091; docs/performance.md, "channels-redis idle timeout").
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
            "CONFIG": {"hosts": [{"address": REDIS_URL, "socket_timeout": None}]},
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

# Celery: a broker only in production; the embedded server sweeps timers itself.
CELERY_BROKER_URL = REDIS_URL or "memory://"
CELERY_TASK_ALWAYS_EAGER = not REDIS_URL
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_TIME_LIMIT = 120
CELERY_TASK_SOFT_TIME_LIMIT = 100
VOICECALL_SWEEP_INTERVAL_SECONDS = env.float("VOICECALL_SWEEP_INTERVAL_SECONDS", default=1.0)
CELERY_BEAT_SCHEDULE = {
    "voicecall-sweep": {
        "task": "calls.tasks.sweep_timers",
        "schedule": VOICECALL_SWEEP_INTERVAL_SECONDS,
    },
    # `retention` once a day, at a quiet hour (docs/architecture.md, "Retention and
    # redaction").
    "voicecall-retention": {
        "task": "calls.tasks.purge_history",
        "schedule": crontab(hour=3, minute=30),
    },
}

# REST framework
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["calls.api.auth.BearerTokenAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "calls.api.openapi.ApiAutoSchema",
    "DEFAULT_PAGINATION_CLASS": "calls.api.pagination.StrictLimitOffsetPagination",
    # The API takes JSON only: DRF's form parsers read a blank field as "not sent", so a form
    # could get past what the schema says (docs/api-contract.md).
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "PAGE_SIZE": 50,
    "EXCEPTION_HANDLER": "calls.api.errors.exception_handler",
    "UNAUTHENTICATED_USER": None,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "voicecall API",
    "DESCRIPTION": "Phone calls for AI agents: JSON-RPC, REST and the voice_call tool.",
    "VERSION": "0.1.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # Request bodies get their own components, where a required text field has minLength 1
    # (docs/api-contract.md).
    "COMPONENT_SPLIT_REQUEST": True,
    # The schema and docs are under /api/ and so need the token like everything there.
    "SERVE_PERMISSIONS": ["rest_framework.permissions.IsAuthenticated"],
    # A browser has no bearer token: an admin session may read the docs page too.
    "SERVE_AUTHENTICATION": [
        "calls.api.auth.BearerTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    # Swagger UI from our own static files (drf-spectacular-sidecar), not a CDN: the
    # page works offline and runs a pinned version.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
}

AUTH_PASSWORD_VALIDATORS: list[dict[str, str]] = []
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
STATIC_ROOT = DATA_DIR / "static"

LOG_LEVEL = env.str("LOG_LEVEL", default="INFO")
# plain: one readable line; json: one JSON object per line (calls/log_json.py).
LOG_FORMAT = env.str("LOG_FORMAT", default="plain")
if LOG_FORMAT not in ("plain", "json"):
    raise ImproperlyConfigured(f"LOG_FORMAT must be 'plain' or 'json', not {LOG_FORMAT!r}")
# uvicorn's access log under `voicecall serve` (one line per request; off by default).
LOG_ACCESS = env.bool("LOG_ACCESS", default=False)
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
        "json": {"()": "calls.log_json.JsonLogFormatter"},
    },
    "filters": {"redact_numbers": {"()": "calls.log_filters.RedactPhoneNumbers"}},
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": LOG_FORMAT,
            "filters": ["redact_numbers"],
        }
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django.request": {"level": "ERROR"},
        "daphne": {"level": "WARNING"},
        # httpx logs every request at INFO; carrier URLs carry call ids, keep them at debug.
        "httpx": {"level": "WARNING"},
    },
}
