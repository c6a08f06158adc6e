"""Test settings: pin the environment, then take the project settings.

DATABASE_URL and REDIS_URL pass through on purpose: .ci/run runs the same suite a second
time against PostgreSQL and Redis by setting them.
"""

import atexit
import os
import shutil
import tempfile

os.environ["VOICECALL_DOTENV"] = "off"
# A metrics directory of this test session's own (calls/metrics.py): a run never adds up
# samples with a server or another run sharing the checkout's data dir.
os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="voicecall-metrics-")
os.environ["VOICECALL_CONFIG"] = ""
os.environ.pop("VOICECALL_API_TOKEN", None)

from voicecall_project.settings import *  # noqa: F403

atexit.register(shutil.rmtree, os.environ["PROMETHEUS_MULTIPROC_DIR"], ignore_errors=True)

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
CELERY_TASK_ALWAYS_EAGER = True
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":  # noqa: F405
    # On disk (not :memory:) so threads in transactional tests lock like the real server;
    # one file per run so parallel runs don't share a database.
    DATABASES["default"]["TEST"] = {  # noqa: F405
        "NAME": str(DATA_DIR / f"test-{os.getpid()}.sqlite3")  # noqa: F405
    }
