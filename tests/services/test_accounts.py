"""The first admin account of a fresh install (calls/services/accounts.py), called directly."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model

from calls.services.accounts import admin_user_ensure

pytestmark = pytest.mark.django_db


def test_a_fresh_install_gets_a_superuser_whose_password_is_only_in_a_private_file(
    tmp_path: Path,
) -> None:
    password_file = tmp_path / "var" / "admin-password"
    account = admin_user_ensure(username="admin", password_file=password_file)
    assert account.created is True and account.password_file == password_file

    password = password_file.read_text().strip()
    assert len(password) >= 16
    assert stat.S_IMODE(password_file.stat().st_mode) == 0o600
    user = get_user_model().objects.get(username="admin")
    assert user.is_superuser and user.check_password(password)


def test_an_existing_superuser_is_left_alone(tmp_path: Path) -> None:
    get_user_model().objects.create_superuser(username="root", email="", password="kept")
    password_file = tmp_path / "admin-password"
    account = admin_user_ensure(username="admin", password_file=password_file)
    assert account.created is False
    assert not password_file.exists()
    assert not get_user_model().objects.filter(username="admin").exists()


def test_running_it_twice_creates_one_account(tmp_path: Path) -> None:
    password_file = tmp_path / "admin-password"
    admin_user_ensure(username="admin", password_file=password_file)
    first = password_file.read_text()
    again = admin_user_ensure(username="admin", password_file=password_file)
    assert again.created is False and password_file.read_text() == first
    assert get_user_model().objects.filter(is_superuser=True).count() == 1
