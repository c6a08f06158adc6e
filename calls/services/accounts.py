"""The first admin account of a fresh install (scripts/dev.sh)."""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from django.contrib.auth import get_user_model
from django.db import transaction


@dataclass(frozen=True, slots=True)
class AdminAccount:
    username: str
    created: bool
    password_file: Path


@transaction.atomic
def admin_user_ensure(*, username: str, password_file: Path) -> AdminAccount:
    """Create `username` as a superuser with a random password unless a superuser exists.

    The password goes to a 0600 file, never to a log; an existing account is left alone.
    """
    users = get_user_model().objects
    if users.filter(is_superuser=True).exists():
        return AdminAccount(username=username, created=False, password_file=password_file)
    password = secrets.token_urlsafe(12)
    users.create_superuser(username=username, email="", password=password)
    password_file.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(password_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(password + "\n")
    return AdminAccount(username=username, created=True, password_file=password_file)
