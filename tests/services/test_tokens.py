"""API tokens (calls/services/tokens.py), called directly: shown once, stored as a digest,
refused once revoked or expired; the environment's static token also authenticates."""

from __future__ import annotations

import hashlib
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from calls.exceptions import CallNotFound, InvalidRequest
from calls.models import ApiToken
from calls.services.tokens import TOKEN_PREFIX, token_authenticate, token_create, token_revoke

pytestmark = pytest.mark.django_db


def test_a_new_token_stores_only_its_digest(fake_clock: Any) -> None:
    created = token_create(name="  agent one  ")
    row = ApiToken.objects.get()
    assert created.secret.startswith(TOKEN_PREFIX) and len(created.secret) > 40
    assert row.name == "agent one" and row.prefix == created.secret[:10]
    assert row.key_hash == hashlib.sha256(created.secret.encode()).hexdigest()
    assert created.secret not in {row.name, row.prefix, row.key_hash}
    assert row.expires_at is None
    assert token_create(name="two").secret != created.secret


def test_a_token_needs_a_name() -> None:
    with pytest.raises(InvalidRequest, match="token name required"):
        token_create(name="   ")
    assert not ApiToken.objects.exists()


def test_a_ttl_sets_the_expiry(fake_clock: Any) -> None:
    token_create(name="short", ttl=timedelta(hours=1))
    assert ApiToken.objects.get().expires_at == fake_clock.now() + timedelta(hours=1)


def test_the_secret_authenticates_and_marks_the_token_used(fake_clock: Any) -> None:
    created = token_create(name="a")
    assert token_authenticate(created.secret) == created.token
    assert ApiToken.objects.get().last_used_at == fake_clock.now()
    assert token_authenticate(created.secret + "x") is None
    assert token_authenticate(created.token.key_hash) is None  # the digest is not the secret


def test_last_used_is_written_once_a_minute_not_on_every_request(fake_clock: Any) -> None:
    created = token_create(name="a")
    token_authenticate(created.secret)
    first = fake_clock.now()

    fake_clock.advance(seconds=30)
    with CaptureQueriesContext(connection) as within_a_minute:
        assert token_authenticate(created.secret) == created.token
    fake_clock.advance(seconds=30)
    token_authenticate(created.secret)

    assert len(within_a_minute.captured_queries) == 1  # the lookup, no write
    assert ApiToken.objects.get().last_used_at == first + timedelta(seconds=60)


def test_a_revoked_token_no_longer_authenticates(fake_clock: Any) -> None:
    created = token_create(name="a")
    revoked = token_revoke(token_id=created.token.pk)
    assert revoked.revoked_at == fake_clock.now()
    assert token_authenticate(created.secret) is None
    fake_clock.advance(minutes=5)
    assert token_revoke(token_id=created.token.pk).revoked_at == revoked.revoked_at  # kept


def test_revoking_an_unknown_token_is_not_found() -> None:
    with pytest.raises(CallNotFound, match="Token 999 not found"):
        token_revoke(token_id=999)


def test_an_expired_token_no_longer_authenticates() -> None:
    created = token_create(name="a", ttl=timedelta(seconds=30))
    ApiToken.objects.update(expires_at=created.token.created_at - timedelta(seconds=1))
    assert token_authenticate(created.secret) is None


def test_the_environments_static_token_authenticates_as_env(settings: Any) -> None:
    settings.VOICECALL_API_TOKEN = "static-secret"
    assert token_authenticate("static-secret") == "env"
    assert token_authenticate("static-secre") is None
    settings.VOICECALL_API_TOKEN = ""
    assert token_authenticate("") is None
