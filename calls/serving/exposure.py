"""The public webhook URL at `voicecall serve`: publicUrl > tunnel > legacy tailscale.mode,
the plugin's latest refusal of local-only webhooks, and `voicecall expose`.

docs/plugin-behaviour.md, "Start-up and the public URL" and "Command line".
"""

from __future__ import annotations

import ipaddress
import logging
import subprocess
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import httpx

from calls.carrier import set_public_base, webhook_url
from calls.config import PLUGIN_PATH, VoiceCallConfig
from providers import tunnels
from providers.tunnels import NgrokTunnel, TailscaleExposure, Tunnel, TunnelError

logger = logging.getLogger(__name__)

REAL_CARRIERS = ("twilio", "telnyx", "plivo")
LOCAL_ONLY = (
    "[voice-call] {provider} requires a publicly reachable webhook URL. Refusing to "
    "use local-only webhook {url}. Set " + PLUGIN_PATH + ".publicUrl or enable "
    "tunnel/tailscale exposure."
)
HOLD_MUSIC_PATH = "/voice/hold-music"
_LOCAL_SUFFIXES = (".localhost", ".local", ".internal")
# Carrier-grade NAT space (Tailscale addresses among others): not reachable from carriers.
_CGNAT = ipaddress.ip_network("100.64.0.0/10")

# Seams for tests: the real subprocess functions and network unless replaced.
RUN: tunnels.Run = subprocess.run
POPEN: tunnels.Popen = subprocess.Popen


def _no_transport() -> httpx.BaseTransport | None:
    return None


NGROK_TRANSPORT: Callable[[], httpx.BaseTransport | None] = _no_transport


def tunnel_mode(cfg: VoiceCallConfig) -> str | None:
    """The exposure `serve` would start: "ngrok", "serve", "funnel", or None."""
    if cfg.public_url:
        return None  # publicUrl wins; nothing to start
    if cfg.tunnel.provider != "none":
        return cfg.tunnel.provider.removeprefix("tailscale-")
    mode = cfg.tailscale.mode
    return mode if mode in tunnels.TAILSCALE_MODES else None


def extra_paths(cfg: VoiceCallConfig) -> list[str]:
    """Paths besides the webhook a carrier fetches: Twilio's relative hold-music waitUrl, and
    the media stream. ngrok forwards everything; Tailscale routes need each one mounted."""
    return [HOLD_MUSIC_PATH, *([cfg.stream_path] if cfg.streaming_enabled else [])]


def build_tunnel(cfg: VoiceCallConfig, *, port: int) -> Tunnel | None:
    mode = tunnel_mode(cfg)
    if mode is None:
        return None
    if mode == "ngrok":
        return NgrokTunnel(
            port,
            authtoken=cfg.tunnel.ngrok_auth_token,
            domain=cfg.tunnel.ngrok_domain,
            popen=POPEN,
            transport=NGROK_TRANSPORT(),
        )
    legacy = cfg.tunnel.provider == "none"
    # tunnel.provider publishes serve.path as is; legacy tailscale.mode at tailscale.path.
    path = cfg.tailscale.path if legacy else cfg.serve_path
    return TailscaleExposure(
        mode,
        port=port,
        path=path,
        serve_path=cfg.serve_path,
        https_port=cfg.tailscale.port,
        extra_paths=extra_paths(cfg),
        run=RUN,
    )


def exposure_start(cfg: VoiceCallConfig, *, port: int) -> Tunnel | None:
    """Start the configured tunnel and make it the webhook URL; SystemExit if it can't start."""
    tunnel = build_tunnel(cfg, port=port)
    if tunnel is None:
        return None
    try:
        origin = tunnel.start()
    except TunnelError as exc:
        raise SystemExit(f"Could not expose the webhook: {exc}") from exc
    set_public_base(origin, path=tunnel.public_path)
    tailnet_only = isinstance(tunnel, TailscaleExposure) and tunnel.mode == "serve"
    if tailnet_only and cfg.provider in REAL_CARRIERS:
        logger.warning(
            "tailscale serve publishes to the tailnet only, where %s cannot "
            "reach it; use funnel for a carrier",
            cfg.provider,
        )
    logger.info("public webhook URL %s", webhook_url(cfg))
    return tunnel


def exposure_stop(tunnel: Tunnel | None) -> None:
    """Tear the tunnel down at shutdown; errors are logged, never raised."""
    if tunnel is None:
        return
    try:
        tunnel.stop()
    except Exception:  # shutdown must finish; the plugin ignores cleanup errors too
        logger.exception("stopping the tunnel failed")
    finally:
        set_public_base(None)


def local_only_refusal(cfg: VoiceCallConfig) -> str | None:
    """[latest] A real carrier must not be handed a loopback/private webhook URL.

    A configured tunnel counts as public (its URL is known only once it runs); publicUrl
    wins over a tunnel, so a private publicUrl is refused even with one. A disabled
    service (`enabled: false`) hands no carrier a URL, so it may serve without one.
    """
    if not cfg.enabled or cfg.provider not in REAL_CARRIERS or tunnel_mode(cfg):
        return None
    url = webhook_url(cfg)
    if not is_local_host(urlsplit(url).hostname or ""):
        return None
    return LOCAL_ONLY.format(provider=cfg.provider, url=url)


def is_local_host(host: str) -> bool:
    """localhost, *.local/.internal, or a loopback/private/link-local/CGNAT address."""
    host = host.lower().rstrip(".")
    if host == "localhost" or host.endswith(_LOCAL_SUFFIXES):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False  # a DNS name; resolving it here would make startup depend on DNS
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    return (
        address.is_loopback
        or address.is_private
        or address.is_link_local
        or address.is_unspecified
        or address in _CGNAT
    )


def expose_command(
    cfg: VoiceCallConfig,
    *,
    mode: str | None,
    path: str | None,
    port: int | None,
    serve_path: str | None,
) -> dict[str, Any]:
    """`voicecall expose` with the plugin's defaults for the flags not given.

    docs/plugin-behaviour.md, "Command line".
    """
    serve_path = serve_path or cfg.serve_path
    return tunnels.expose(
        mode,
        path=path or cfg.tailscale.path or serve_path,
        port=port or cfg.serve_port,
        serve_path=serve_path,
        https_port=cfg.tailscale.port,
        extra_paths=extra_paths(cfg),
        run=RUN,
    )
