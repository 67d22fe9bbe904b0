"""Tongxin settings: one file, read from the environment (SPEC.md §3).

With no variables set, the app runs in the embedded shape: SQLite file,
in-memory channel layer, console e-mail, DEBUG on.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import dj_database_url
from django.core.exceptions import ImproperlyConfigured
from django.utils.translation import gettext_lazy as _

from config.env import (
    env_bool,
    env_float,
    env_list,
    env_rate,
    env_str,
    parse_email_url,
    url_origin,
)

BASE_DIR = Path(__file__).resolve().parent.parent

DEBUG = env_bool("DEBUG", True)
SECRET_KEY = env_str("SECRET_KEY", "")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("SECRET_KEY is required when DEBUG=0")
    SECRET_KEY = "django-insecure-tongxin-development-key-do-not-use-in-production"  # noqa: S105

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "localhost,127.0.0.1")
SITE_URL = env_str("SITE_URL", "http://localhost:8000").rstrip("/")

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    # Sign-in throttling (config/signin.py).
    "axes",
    # Background work: the Tasks API and its database queue (events/worker.py).
    "django_tasks",
    "django_tasks_db",
    "events",
    "streaming",
    "attendance",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "config.middleware.PersonalPagesMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Turns a throttled sign-in into the lockout page (config/signin.py).
    "axes.middleware.AxesMiddleware",
    "config.middleware.DatabaseUnavailableMiddleware",
]

ROOT_URLCONF = "config.urls"
ASGI_APPLICATION = "config.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.template.context_processors.i18n",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# Database ---------------------------------------------------------------

DATABASES = {
    "default": dj_database_url.parse(
        env_str("DATABASE_URL", f"sqlite:///{BASE_DIR / 'db.sqlite3'}"),
        conn_max_age=0,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # IMMEDIATE transactions take SQLite's write lock at BEGIN, so the
    # capacity check and the insert that follows it cannot interleave.
    DATABASES["default"].setdefault("OPTIONS", {}).update(transaction_mode="IMMEDIATE", timeout=30)
    # Opening a SQLite file is cheap but not free: a crowd joining a room
    # would open and close one connection per database call. Each thread
    # keeps its own.
    DATABASES["default"]["CONN_MAX_AGE"] = None
    # A file, not memory, so that a server started by a test sees the data.
    DATABASES["default"]["TEST"] = {
        "NAME": env_str("TONGXIN_TEST_DB", str(BASE_DIR / "test-db.sqlite3"))
    }

if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # A pool per process: opening a PostgreSQL connection for every query
    # costs ~20 ms, and Channels runs a process's database work on one
    # thread, so a crowd joining a room would queue behind the connects.
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
        "min_size": 2,
        "max_size": int(env_str("DATABASE_POOL_SIZE", "10")),
        # How long a request waits for a connection: under load, its turn;
        # with the database unreachable, the time before it answers 503.
        "timeout": env_float("DATABASE_POOL_TIMEOUT", 10.0, minimum=0.5, maximum=60.0),
    }
    # pytest-django's database; a name of its own lets test runs share a server.
    if test_name := env_str("TONGXIN_TEST_DB", ""):
        DATABASES["default"]["TEST"] = {"NAME": test_name}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Channels -----------------------------------------------------------------

REDIS_URL = env_str("REDIS_URL", "")
if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {
                "hosts": [
                    {
                        "address": REDIS_URL,
                        # redis-py 8 caps an asyncio pool at 100 connections and
                        # times sockets out after 5 s, the same as channels_redis's
                        # blocking receive: both break busy or idle rooms.
                        "max_connections": 10_000,
                        "socket_timeout": None,
                        # But a Redis that cannot be reached must fail a
                        # publish quickly, not after the kernel gives up.
                        "socket_connect_timeout": 5,
                    }
                ],
                "capacity": 1_000,
                "expiry": 30,
            },
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

# Registration -------------------------------------------------------------

#: Registrations and lost-link requests per client address, cancellations
#: per personal link (SPEC.md §3, events/limits.py): a limit no person meets,
#: which a script filling the seats or inventing identities meets at once. ``0`` turns it off (benchmarks, a
#: trusted kiosk).
REGISTRATION_RATE = env_rate("REGISTRATION_RATE", "30/10m")
#: E-mails the public forms may cause to one address, of each kind (the
#: registrant's own updates; link e-mails): enough for a person, too few to
#: flood an inbox.
EMAIL_RATE = env_rate("EMAIL_RATE", "5/h")

# Attendance ----------------------------------------------------------------

#: How often each process writes its viewers' open watch intervals: the most
#: watch time a killed process can lose (SPEC.md §7 allows 60 s).
ATTENDANCE_FLUSH_SECONDS = env_float("ATTENDANCE_FLUSH_SECONDS", 15.0, minimum=0.5, maximum=45.0)
# Live-room joins that need the database (a browser without a room pass, a
# signed-in organiser), under way at once per process; more are told to
# come back (4503, streaming/admission.py).
ROOM_DATABASE_JOINS = int(env_float("ROOM_DATABASE_JOINS", 32, minimum=0, maximum=10_000))

# Background work ------------------------------------------------------------

# Tasks wait in the database every process shares, so that the worker needs
# nothing more than the web processes do, in both shapes; a task recorded in
# a transaction exists exactly when the change it belongs to does.
TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend"}}
#: How often each worker says it is alive, and how long a silent one is
#: given before what it held (mail it was sending, a bulk change) goes to
#: the others (docs/operations.md).
WORKER_BEAT_SECONDS = env_float("WORKER_BEAT_SECONDS", 5.0, minimum=0.2, maximum=60.0)
WORKER_LOST_SECONDS = env_float("WORKER_LOST_SECONDS", 30.0, minimum=1.0, maximum=3600.0)
if WORKER_LOST_SECONDS <= 2 * WORKER_BEAT_SECONDS:
    raise ImproperlyConfigured("WORKER_LOST_SECONDS must be more than two WORKER_BEAT_SECONDS")
#: How often a worker looks for work that is due: reminders, retries, rooms
#: that should go live or end.
WORKER_TICK_SECONDS = env_float("WORKER_TICK_SECONDS", 15.0, minimum=0.2, maximum=60.0)

# Auth ---------------------------------------------------------------------

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# Throttled sign-in first: it refuses before a password is even checked.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
# Failed sign-ins per account, per address and per both, counted in the
# database that every process shares; see config/signin.py for the figures.
AXES_HANDLER = "config.signin.SignInThrottle"
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"], "ip_address", "username"]
#: Failures allowed within the cool-off for each of the parameters above,
#: in order: one account from one address, one address, one account.
SIGNIN_FAILURE_ALLOWANCES = [5, 20, 30]
if len(SIGNIN_FAILURE_ALLOWANCES) != len(AXES_LOCKOUT_PARAMETERS):
    raise ImproperlyConfigured("SIGNIN_FAILURE_ALLOWANCES needs one figure per lockout parameter")
AXES_FAILURE_LIMIT = "config.signin.failure_limit"
# A lock lifts this long after the last failure that made it.
AXES_COOLOFF_TIME = timedelta(minutes=15)
# Failures while refused do not restart the cool-off: hammering a locked
# form must not keep a real organiser out for longer.
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False
# A success does not wipe the failures: it would wipe its address's failures
# on every account, so a guesser with an account of their own could sign in
# to it now and then and never reach the per-address allowance.
AXES_RESET_ON_SUCCESS = False
AXES_LOCKOUT_CALLABLE = "config.signin.lockout_response"
# REMOTE_ADDR only (never a client's X-Forwarded-For): see config/signin.py.
AXES_CLIENT_IP_CALLABLE = "config.signin.client_address"
# No record of every successful sign-in; failures are enough.
AXES_DISABLE_ACCESS_LOG = True
AXES_VERBOSE = False
LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/manage/"
LOGOUT_REDIRECT_URL = "/"

# Language and time ----------------------------------------------------------

LANGUAGE_CODE = "zh-hans"
LANGUAGES = [("zh-hans", _("Simplified Chinese")), ("en", _("English"))]
LOCALE_PATHS = [BASE_DIR / "locale"]
USE_I18N = True
USE_TZ = True
TIME_ZONE = "UTC"
DEFAULT_EVENT_TIME_ZONE = "Asia/Shanghai"
ZoneInfo(DEFAULT_EVENT_TIME_ZONE)  # fail at start-up if tzdata is missing

# Files ----------------------------------------------------------------------

STATIC_URL = "/static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS: list = [BASE_DIR / "static"]
# Browser libraries from the npm registry (package.json), installed by
# scripts/setup when npm is there; never committed.
HLS_PLAYER_DIR = BASE_DIR / "node_modules" / "hls.js" / "dist"
if HLS_PLAYER_DIR.is_dir():
    STATICFILES_DIRS.append(("vendor/hls.js", HLS_PLAYER_DIR))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    # Hashed, compressed copies made by collectstatic (scripts/setup runs it);
    # with DEBUG on, URLs point at the plain files, found by WhiteNoise.
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = DEBUG
MEDIA_URL = "/media/"
MEDIA_ROOT = Path(env_str("MEDIA_ROOT", str(BASE_DIR / "media")))

# Live room ------------------------------------------------------------------

# The HLS player script for browsers without native HLS: the hls.js that
# scripts/setup installed, or any URL given here; with neither, the room
# plays natively where it can and otherwise links to the stream.
HLS_PLAYER_URL = env_str(
    "HLS_PLAYER_URL",
    STATIC_URL + "vendor/hls.js/hls.min.js" if HLS_PLAYER_DIR.is_dir() else "",
)

# E-mail ---------------------------------------------------------------------

_email = parse_email_url(env_str("EMAIL_URL", "console:"))
globals().update(_email)
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "Tongxin <noreply@localhost>")

# Security -------------------------------------------------------------------

# Other keys whose signatures (sessions, organiser sign-ins, messages,
# password-reset links) are accepted during a rotation: the coming key, then
# the retired one (docs/deployment.md). Everything new is signed with
# SECRET_KEY.
SECRET_KEY_FALLBACKS = env_list("SECRET_KEY_FALLBACKS", "")
SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = False  # the live room reads it for its fetch() calls
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
if not DEBUG:
    CSRF_TRUSTED_ORIGINS = [SITE_URL]
    # Behind the reverse proxy (deploy/), which terminates TLS.
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    if SITE_URL.startswith("https://"):
        SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = True
        SECURE_SSL_REDIRECT = True
        SECURE_HSTS_SECONDS = int(env_str("SECURE_HSTS_SECONDS", "31536000"))
        # Set either to 0 for a domain whose subdomains are not all on HTTPS.
        SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", True)
        SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", True)

# Content-Security-Policy (django-csp) on every response: pages run only this
# site's scripts and styles, so text that slipped past escaping stays inert.
# Next to SecurityMiddleware, so that pages other middleware answers with
# (the CSRF refusal, the database-unavailable page) carry it too.
MIDDLEWARE.insert(
    MIDDLEWARE.index("django.middleware.security.SecurityMiddleware") + 1,
    "csp.middleware.CSPMiddleware",
)
# Each session names its own stream host (streaming/, SPEC.md §6) and may
# change it mid-session, so the room allows any HTTPS host for the stream. A
# site on plain HTTP (the embedded shape, a local test stream) allows HTTP
# streams too; a site on HTTPS refuses them in the session form, since
# browsers block them there anyway.
_STREAM_HOSTS = ["https:"] if SITE_URL.startswith("https://") else ["https:", "http:"]
_hls_origin = url_origin("HLS_PLAYER_URL", HLS_PLAYER_URL) if HLS_PLAYER_URL else None
# The room's websocket (ws: for http, wss: for https): CSP3 browsers count it
# as 'self', older ones (Safari before 15.4) need it named.
_site_origin = url_origin("SITE_URL", SITE_URL)
_socket_origins = [_site_origin.replace("http", "ws", 1)] if _site_origin else []
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        # hls.js may come from another origin (HLS_PLAYER_URL).
        "script-src": ["'self'", *([_hls_origin] if _hls_origin else [])],
        "style-src": ["'self'"],
        # data: for the select arrow drawn in app.css.
        "img-src": ["'self'", "data:"],
        # blob: is the MediaSource hls.js plays through; the stream itself
        # (video file, HLS playlist and segments) comes from its host.
        "media-src": ["'self'", "blob:", *_STREAM_HOSTS],
        "connect-src": ["'self'", *_socket_origins, *_STREAM_HOSTS],
        # hls.js demuxes in a worker it builds from a blob.
        "worker-src": ["'self'", "blob:"],
        # Embedded players ("embed" streams).
        "frame-src": _STREAM_HOSTS,
        "object-src": ["'none'"],
        "base-uri": ["'none'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    }
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    # No personal link is written out whole (config/logs.py).
    "filters": {"mask_personal_links": {"()": "config.logs.MaskPersonalLinks"}},
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "plain",
            "filters": ["mask_personal_links"],
        }
    },
    "root": {"handlers": ["console"], "level": "INFO"},
    "loggers": {
        # Django's own handlers (a console one while DEBUG is on, mail to
        # ADMINS) would write request paths unmasked: its records go to the
        # root's handler instead.
        "django": {"handlers": [], "level": "INFO", "propagate": True},
        "django.server": {"handlers": [], "level": "INFO", "propagate": True},
        "django.db.backends": {"level": "WARNING"},
        # Two lines per task at INFO; a failed task is still logged.
        "django_tasks": {"level": "WARNING"},
    },
}

# Sessions -------------------------------------------------------------------

# Database sessions that never send a forged cookie's value to the database
# (config/sessions.py): such a visitor is anonymous, not an error 500.
SESSION_ENGINE = "config.sessions"
