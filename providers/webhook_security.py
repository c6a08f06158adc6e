"""Shared webhook security: public-URL reconstruction and forwarding-header trust.

docs/plugin-behaviour.md, "Public URL reconstruction"; docs/security.md, "Webhooks".

Carriers sign the URL they called. Behind a proxy or tunnel that URL is not what this
server sees, so it is rebuilt — but forwarding headers are attacker-controlled unless the
operator said which hosts/proxies to trust. Nothing here ever accepts a bad signature.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from providers.base import WebhookRequest

_HOSTNAME = re.compile(
    r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$"
)
FORWARDED_HOST_HEADERS = ("x-forwarded-host", "x-original-host", "ngrok-forwarded-host")
LOOPBACK_BINDS = ("127.0.0.1", "::1", "localhost")


@dataclass(frozen=True, slots=True)
class SecuritySettings:
    public_url: str | None = None
    allowed_hosts: tuple[str, ...] = ()
    trust_forwarding_headers: bool = False
    trusted_proxy_ips: tuple[str, ...] = ()
    # tunnel.provider == "ngrok" + loopback bind + allowNgrokFreeTierLoopbackBypass: forwarding
    # headers from a loopback peer (the local ngrok agent) are trusted. Signatures still apply.
    ngrok_loopback: bool = False
    skip_signature_verification: bool = False

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any]) -> SecuritySettings:
        security = settings.get("webhookSecurity") or {}
        tunnel = settings.get("tunnel") or {}
        ngrok = (
            tunnel.get("provider") == "ngrok"
            and settings.get("serveBind", "127.0.0.1") in LOOPBACK_BINDS
            and bool(tunnel.get("allowNgrokFreeTierLoopbackBypass"))
        )
        hosts = (normalize_host(h) for h in security.get("allowedHosts") or ())
        return cls(
            public_url=settings.get("publicUrl") or None,
            allowed_hosts=tuple(h for h in hosts if h),
            trust_forwarding_headers=bool(security.get("trustForwardingHeaders")),
            trusted_proxy_ips=tuple(security.get("trustedProxyIPs") or ()),
            ngrok_loopback=ngrok,
            skip_signature_verification=bool(settings.get("skipSignatureVerification")),
        )


def normalize_host(value: str | None) -> str | None:
    """First comma value, no userinfo, port dropped, RFC 1123, lower-case; None if invalid."""
    if not value:
        return None
    host = value.split(",")[0].strip()
    if not host or "@" in host:
        return None
    if host.startswith("["):
        end = host.find("]")
        if end < 0:
            return None
        inner = host[1:end]
        try:
            ipaddress.IPv6Address(inner)
        except ValueError:
            return None
        return inner.lower()
    host = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    host = host.lower()
    return host if _HOSTNAME.match(host) else None


def is_loopback(address: str | None) -> bool:
    if not address:
        return False
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return ip.is_loopback


def forwarding_trusted(request: WebhookRequest, security: SecuritySettings) -> bool:
    """(allowedHosts or trustForwardingHeaders) and (no trustedProxyIPs or peer is one of them)."""
    if security.ngrok_loopback and is_loopback(request.remote_addr):
        return True
    if not (security.allowed_hosts or security.trust_forwarding_headers):
        return False
    if not security.trusted_proxy_ips:
        return True
    return bool(request.remote_addr) and request.remote_addr in security.trusted_proxy_ips


def _path_and_query(request: WebhookRequest) -> str:
    parts = urlsplit(request.url)
    return urlunsplit(("", "", parts.path or request.path or "/", parts.query, ""))


def reconstruct_url(request: WebhookRequest, security: SecuritySettings) -> str:
    """The URL the carrier most likely called; it never includes a port.

    docs/plugin-behaviour.md, "Public URL reconstruction".
    """
    trusted = forwarding_trusted(request, security)
    scheme = "https"
    if trusted and request.header("x-forwarded-proto") in ("http", "https"):
        scheme = str(request.header("x-forwarded-proto"))
    host = None
    if trusted:
        for name in FORWARDED_HOST_HEADERS:
            candidate = normalize_host(request.header(name))
            if candidate and (not security.allowed_hosts or candidate in security.allowed_hosts):
                host = candidate
                break
    if host is None:
        host = (
            normalize_host(request.header("host"))
            or normalize_host(urlsplit(request.url).hostname)
            or ""
        )
    if ":" in host:
        host = f"[{host}]"
    return f"{scheme}://{host}{_path_and_query(request)}"


def public_base_url(request: WebhookRequest, security: SecuritySettings) -> str:
    """publicUrl's scheme/host/port with the request's path and query (v4.12 rule)."""
    assert security.public_url
    public = urlsplit(security.public_url)
    return urlunsplit(
        (
            public.scheme,
            public.netloc,
            urlsplit(request.url).path or "/",
            urlsplit(request.url).query,
            "",
        )
    )


def _with_port(url: str, port: int | None) -> str:
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{host}:{port}" if port else host
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, ""))


def signed_url_candidates(request: WebhookRequest, security: SecuritySettings) -> list[str]:
    """URLs a carrier may have signed, most likely first, each once (port variants: plugin
    issue #6334).

    With publicUrl only its origin counts, with and without its port and the Host header's
    port: the host of a URL rebuilt from the request is never a candidate then, or a
    signature the same account made for another endpoint (any Host) would be replayable
    here (docs/security.md).
    """
    if security.public_url:
        base = public_base_url(request, security)
        public = urlsplit(security.public_url)
        candidates = [
            base,
            _with_port(base, None),
            _with_port(base, public.port),
            # The docs' variant: publicUrl's own path with the request's query.
            urlunsplit(
                (public.scheme, public.netloc, public.path or "/", urlsplit(request.url).query, "")
            ),
        ]
    else:
        base = reconstruct_url(request, security)
        candidates = [base, _with_port(base, None)]
    host_header = request.header("host") or ""
    port = host_header.rsplit(":", 1)[1] if re.search(r":\d+$", host_header) else None
    if port:
        candidates.append(_with_port(base, int(port)))
    return list(dict.fromkeys(candidates))


def webhook_base(request: WebhookRequest, settings: Mapping[str, Any]) -> str:
    """Where the carrier should post next, without a query — never from a spoofable Host.

    The plugin once took it from the Host header (plugin commit efe9183). publicUrl is the
    full public webhook URL (outbound calls use it as is), so a non-root path of it wins
    over serve.path: a proxy may publish serve.path under another path. A bare-origin
    publicUrl, or none (then the reconstructed origin), takes serve.path.
    """
    security = SecuritySettings.from_settings(settings)
    public = urlsplit(security.public_url or reconstruct_url(request, security))
    path = (
        public.path
        if security.public_url and public.path not in ("", "/")
        else (settings.get("servePath") or request.path or "/")
    )
    return urlunsplit((public.scheme, public.netloc, str(path), "", ""))


def skip_key(provider: str, request: WebhookRequest) -> str:
    """Replay identity when verification is skipped, so duplicates are still recognised."""
    digest = hashlib.sha256(
        request.method.encode() + b"\n" + request.url.encode() + b"\n" + request.body
    ).hexdigest()
    return f"{provider}:skip:{digest}"


# Shared `voicecall setup` lines (TelephonyProvider.readiness), one wording for every carrier.
SKIPPED_SIGNATURES = "skipSignatureVerification is on: anyone can forge webhooks"


def signature_check(carrier: str, *, skip: bool, verified: str) -> tuple[str, bool, str]:
    """`<carrier>-signatures`: fine unless skipSignatureVerification is on."""
    return (f"{carrier}-signatures", not skip, SKIPPED_SIGNATURES if skip else verified)


def webhook_url_check(carrier: str, public_url: str, *, ok: str, fix: str) -> tuple[str, bool, str]:
    """`<carrier>-webhook-url`: publicUrl must be https, since the carrier calls it."""
    https = public_url.startswith("https://")
    return (f"{carrier}-webhook-url", https, ok if https else fix)
