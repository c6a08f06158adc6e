"""Bearer-token authentication for /api/.

Tokens come from `voicecall token create` (stored hashed) or VOICECALL_API_TOKEN.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions
from rest_framework.request import Request

from calls.services.tokens import token_authenticate


class ApiClient:
    """The authenticated caller of the API (a token, not a Django user)."""

    is_authenticated = True

    def __init__(self, name: str) -> None:
        self.name = name

    def __str__(self) -> str:
        return self.name


class BearerTokenAuthentication(authentication.BaseAuthentication):
    keyword = "Bearer"

    def authenticate(self, request: Request) -> tuple[ApiClient, Any] | None:
        header = authentication.get_authorization_header(request).decode("latin-1")
        scheme, _, secret = header.partition(" ")
        if scheme.lower() != "bearer" or not secret.strip():
            return None
        token = token_authenticate(secret.strip())
        if token is None:
            raise exceptions.AuthenticationFailed("Invalid or revoked API token")
        name = "VOICECALL_API_TOKEN" if token == "env" else str(token)
        return ApiClient(name), token

    def authenticate_header(self, request: Request) -> str:
        # Makes DRF answer 401 (not 403) when the header is missing.
        return self.keyword


class BearerTokenScheme(OpenApiAuthenticationExtension):
    """Declares the bearer scheme in the OpenAPI document (and the docs' Authorize button)."""

    target_class = "calls.api.auth.BearerTokenAuthentication"
    name = "bearerAuth"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {"type": "http", "scheme": "bearer"}
