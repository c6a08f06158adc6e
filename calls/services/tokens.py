"""API tokens: created once (shown once), stored as SHA-256, checked in constant time."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings

from calls import clock
from calls.exceptions import CallNotFound, InvalidRequest
from calls.models import ApiToken

TOKEN_PREFIX = "vc_"


@dataclass(frozen=True, slots=True)
class CreatedToken:
    token: ApiToken
    secret: str


# How fresh a token's `last_used_at` is kept.
LAST_USED_RESOLUTION = timedelta(minutes=1)


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def token_create(*, name: str, ttl: timedelta | None = None) -> CreatedToken:
    """Mint a token; the secret is returned once and never stored."""
    name = (name or "").strip()
    if not name:
        raise InvalidRequest("token name required")
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken.objects.create(
        name=name[:100],
        key_hash=_digest(secret),
        prefix=secret[:10],
        expires_at=clock.now() + ttl if ttl else None,
    )
    return CreatedToken(token=token, secret=secret)


def token_revoke(*, token_id: int) -> ApiToken:
    token = ApiToken.objects.filter(pk=token_id).first()
    if token is None:
        raise CallNotFound(f"Token {token_id} not found")
    if token.revoked_at is None:
        ApiToken.objects.filter(pk=token.pk, revoked_at__isnull=True).update(revoked_at=clock.now())
        token.refresh_from_db()
    return token


def token_authenticate(secret: str) -> ApiToken | str | None:
    """The matching usable token, "env" for VOICECALL_API_TOKEN, or None."""
    static = getattr(settings, "VOICECALL_API_TOKEN", "")
    if static and hmac.compare_digest(static.encode(), secret.encode()):
        return "env"
    # The lookup is by digest, so comparing secrets never leaks timing about stored values.
    token = ApiToken.objects.filter(key_hash=_digest(secret)).first()
    if token is None or not token.is_usable:
        return None
    now = clock.now()
    # "Last used" to the minute: a write per request would be a second round trip on every
    # API call, `voicecall.speak` included (docs/performance.md, "API path").
    if token.last_used_at is None or now - token.last_used_at >= LAST_USED_RESOLUTION:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
    return token
