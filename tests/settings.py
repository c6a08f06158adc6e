"""Test settings: pin the environment, then take the project settings.

DATABASE_URL and REDIS_URL pass through on purpose: .ci/run runs the same suite a second
time against PostgreSQL and Redis by setting them.
"""
import os

os.environ["VOICECALL_DOTENV"] = "off"
os.environ["VOICECALL_CONFIG"] = ""
os.environ.pop("VOICECALL_API_TOKEN", None)

from voicecall_project.settings import *  # noqa: E402,F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
CELERY_TASK_ALWAYS_EAGER = True
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":  # noqa: F405
    # pytest-django gives each run its own test database; keep it on disk under var/
    # so transactional tests and subprocesses behave like the real server.
    DATABASES["default"]["TEST"] = {"NAME": str(DATA_DIR / "test.sqlite3")}  # noqa: F405
