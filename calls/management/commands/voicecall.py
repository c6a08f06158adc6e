"""`manage.py voicecall <sub>`: the `openclaw voicecall` CLI.

docs/plugin-behaviour.md, "Command line"; docs/design.md, "10. Command line".
"""

from __future__ import annotations

import argparse
import getpass
import json
import socket
import threading
from collections.abc import Callable
from itertools import islice
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from calls import cli
from calls.cli import client, setup_checks
from calls.exceptions import CallError
from calls.selectors import latency_stats
from calls.services.accounts import admin_user_ensure
from calls.services.retention import retention_purge
from calls.services.turn_records import LatencyFilter, latency_summary, since_parse
from calls.services.webhooks import webhook_explain
from calls.serving.exposure import expose_command


def _at_least(minimum: int) -> Callable[[str], int]:
    """An int option clamped to `minimum`, as the plugin clamps --poll and --last."""

    def parse(value: str) -> int:
        try:
            return max(minimum, int(value))
        except ValueError:
            raise argparse.ArgumentTypeError(f"invalid integer: {value!r}") from None

    return parse


def _add_live_call_commands(subs: Any) -> None:
    call = subs.add_parser("call", help="Place an outbound call")
    call.add_argument("-m", "--message", required=True, help="What to say")
    call.add_argument("-t", "--to", help="E.164 number (default: config toNumber)")
    call.add_argument("--mode", default="conversation", help="notify or conversation")
    start = subs.add_parser("start", help="Start an outbound call")
    start.add_argument("--to", required=True, help="E.164 number")
    start.add_argument("--message", help="What to say on answer")
    start.add_argument("--mode", default="conversation", help="notify or conversation")
    start.add_argument("--dtmf-sequence", help="DTMF to send before connecting")
    for name, text, options in (
        ("continue", "Speak, then wait for the caller's reply", ("--message",)),
        ("speak", "Speak into a live call", ("--message",)),
        ("dtmf", "Send DTMF digits into a live call", ("--digits",)),
        ("end", "Hang up a call", ()),
    ):
        sub = subs.add_parser(name, help=text)
        sub.add_argument("--call-id", required=True, help="callId or carrier call id")
        for option in options:
            sub.add_argument(option, required=True, help=option.lstrip("-"))
        if name == "speak":
            sub.add_argument(
                "--wait", action="store_true", help="Return once the words were heard or cut off"
            )
    transfer = subs.add_parser("transfer", help="Hand a live call to another number")
    transfer.add_argument("--call-id", required=True, help="callId or carrier call id")
    transfer.add_argument("--to", required=True, help="E.164 number to transfer to")
    transfer.add_argument("--message", help="What to say before dialling")
    status = subs.add_parser("status", help="One call, or all active calls")
    status.add_argument("--call-id", help="callId or carrier call id")
    status.add_argument("--json", action="store_true", dest="as_json", help="JSON output")


def _add_local_commands(subs: Any) -> None:
    tail = subs.add_parser("tail", help="Follow call events")
    tail.add_argument("--since", type=_at_least(0), default=25, help="Events to replay")
    tail.add_argument("--poll", type=_at_least(50), default=250, help="Poll interval (ms)")
    tail.add_argument("--call-id", help="Only this call")
    tail.add_argument(
        "--follow",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="Keep printing new events",
    )
    tail.add_argument("--max-events", type=_at_least(1), help="Stop after N events")
    latency = subs.add_parser("latency", help="Turn latency statistics")
    latency.add_argument("--last", type=_at_least(1), default=200, help="Calls to scan")
    latency.add_argument("--call-id", help="Only this call's turns")
    latency.add_argument("--since", help="Only turns this recent: 90s, 30m, 24h or 7d")
    setup = subs.add_parser("setup", help="Readiness checks")
    setup.add_argument("--json", action="store_true", dest="as_json", help="JSON output")
    setup.add_argument(
        "--probe", action="store_true", help="Also try each speech vendor's key (network)"
    )
    smoke = subs.add_parser("smoke", help="Setup checks and an optional live call")
    smoke.add_argument("-t", "--to", help="E.164 number to call")
    smoke.add_argument("--message", default=setup_checks.SMOKE_MESSAGE, help="What to say")
    smoke.add_argument("--mode", default="notify", help="notify or conversation")
    smoke.add_argument("--yes", action="store_true", help="Really place the call")
    smoke.add_argument("--json", action="store_true", dest="as_json", help="JSON output")
    expose = subs.add_parser("expose", help="Publish the webhook with Tailscale serve/funnel")
    expose.add_argument(
        "--mode",
        default="funnel",
        help="off, serve or funnel (default funnel; anything else is funnel)",
    )
    expose.add_argument("--path", help="Public path (default: tailscale.path, else serve path)")
    expose.add_argument("--port", type=int, help="Local port (default: config serve.port)")
    expose.add_argument("--serve-path", help="Local webhook path (default: config serve.path)")
    subs.add_parser("admin-user", help="Create the first admin account if none exists")
    debug = subs.add_parser("webhook-debug", help="Explain why a captured webhook verifies or not")
    debug.add_argument("--capture", help='JSON file {"method","url","headers","body","remoteAddr"}')
    debug.add_argument("--url", help="The URL the request arrived on")
    debug.add_argument("--method", default="POST", help="HTTP method (default POST)")
    debug.add_argument(
        "--header",
        action="append",
        default=[],
        metavar="NAME: VALUE",
        help="A request header; repeat for several",
    )
    debug.add_argument("--body", default="", help="The raw request body")
    debug.add_argument("--body-file", help="Read the raw body from this file")
    debug.add_argument("--remote-addr", help="The peer address the request came from")
    purge = subs.add_parser("purge", help="Delete history past `retention` (prints counts)")
    purge.add_argument(
        "--dry-run", action="store_true", help="Count what would be deleted; delete nothing"
    )
    serve = subs.add_parser("serve", help="Run the server")
    serve.add_argument("--host", help="Bind address (default: config serve.bind)")
    serve.add_argument("--port", type=int, help="Port (default: config serve.port)")


def _add_token_commands(subs: Any) -> None:
    token = subs.add_parser("token", help="API tokens")
    actions = token.add_subparsers(dest="token_action", required=True)
    create = actions.add_parser("create", help="Create a token (shown once)")
    create.add_argument(
        "--name", default=None, help="Who the token is for (default: user@host of this shell)"
    )
    create.add_argument("--ttl-hours", type=float, help="Expire after this many hours")
    actions.add_parser("list", help="List tokens (no secrets)")
    revoke = actions.add_parser("revoke", help="Revoke a token")
    revoke.add_argument("token_id", type=int, metavar="ID", help="Token id")


class Command(BaseCommand):
    help = "Voice calls from the command line (mirrors `openclaw voicecall`)."

    def add_arguments(self, parser: CommandParser) -> None:
        subs = parser.add_subparsers(dest="subcommand", required=True)
        _add_live_call_commands(subs)
        _add_local_commands(subs)
        _add_token_commands(subs)

    def handle(self, *args: Any, subcommand: str, **options: Any) -> None:
        getattr(self, f"_run_{subcommand.replace('-', '_')}")(**options)

    def _print(self, data: Any) -> None:
        self.stdout.write(json.dumps(data, indent=2, ensure_ascii=False))

    def _run_call(self, *, message: str, to: str | None, mode: str, **_: Any) -> None:
        to = to or client.config_or_error().to_number
        if not to:
            raise CommandError("Missing --to and no toNumber configured")
        # The mode goes as given: the API refuses an unknown one with the words RPC and REST
        # use (the plugin's CLI silently took the config's default instead).
        params = {"to": to, "message": message, "mode": mode}
        self._print({"callId": client.rpc("voicecall.initiate", params)["callId"]})

    def _run_start(
        self, *, to: str, message: str | None, mode: str, dtmf_sequence: str | None, **_: Any
    ) -> None:
        params = {"to": to, "mode": mode, "message": message, "dtmfSequence": dtmf_sequence}
        params = {key: value for key, value in params.items() if value is not None}
        self._print({"callId": client.rpc("voicecall.start", params)["callId"]})

    def _run_continue(self, *, call_id: str, message: str, **_: Any) -> None:
        self._print(client.continue_turn(call_id=call_id, message=message))

    def _run_speak(self, *, call_id: str, message: str, wait: bool = False, **_: Any) -> None:
        params: dict[str, Any] = {"callId": call_id, "message": message}
        if wait:
            params["wait"] = True
        self._print(client.rpc("voicecall.speak", params))

    def _run_dtmf(self, *, call_id: str, digits: str, **_: Any) -> None:
        self._print(client.rpc("voicecall.dtmf", {"callId": call_id, "digits": digits}))

    def _run_end(self, *, call_id: str, **_: Any) -> None:
        self._print(client.rpc("voicecall.end", {"callId": call_id}))

    def _run_transfer(self, *, call_id: str, to: str, message: str | None, **_: Any) -> None:
        params = {"callId": call_id, "to": to}
        if message:
            params["message"] = message
        self._print(client.rpc("voicecall.transfer", params))

    def _run_status(self, *, call_id: str | None, **_: Any) -> None:
        self._print(client.rpc("voicecall.status", {"callId": call_id} if call_id else {}))

    def _run_tail(
        self,
        *,
        since: int,
        poll: int,
        call_id: str | None,
        follow: bool,
        max_events: int | None,
        **_: Any,
    ) -> None:
        stop = threading.Event()
        events = cli.events_tail(
            call_id=call_id, since=since, follow=follow, poll_ms=poll, stop=stop
        )
        try:
            with cli.stop_on_sigterm(stop):
                for event in islice(events, max_events):
                    self.stdout.write(json.dumps(event, ensure_ascii=False))
                    self.stdout.flush()
        except KeyboardInterrupt:
            pass  # Ctrl-C is how a follow ends

    def _run_latency(
        self, *, last: int, call_id: str | None = None, since: str | None = None, **_: Any
    ) -> None:
        # The plugin's summary of the last calls, plus every stage of the turn records.
        try:
            query = LatencyFilter(since=since_parse(since) if since else None, call_id=call_id)
        except CallError as exc:
            raise CommandError(exc.message) from None
        self._print({**latency_stats(last=last), **latency_summary(query)})

    def _run_setup(self, *, as_json: bool, probe: bool, **_: Any) -> None:
        report = setup_checks.setup_report(probe=probe)
        if as_json:
            self._print(report)
        else:
            self.stdout.write(setup_checks.render_text(report))
        if not report["ok"]:
            raise CommandError("Voice Call setup needs attention.")

    def _run_smoke(
        self, *, to: str | None, message: str, mode: str, yes: bool, as_json: bool, **_: Any
    ) -> None:
        result = setup_checks.smoke_run(to=to, message=message, mode=mode, confirmed=yes)
        if as_json:
            self._print(result)
        else:
            self.stdout.write(setup_checks.render_text(result["setup"]))
            self.stdout.write(_smoke_line(result))
        if not result["ok"]:
            raise CommandError("Voice Call setup needs attention.")

    def _run_expose(
        self, *, mode: str, path: str | None, port: int | None, serve_path: str | None, **_: Any
    ) -> None:
        result = expose_command(
            client.config_or_error(), mode=mode, path=path, port=port, serve_path=serve_path
        )
        self._print(result)
        if not result["ok"]:
            raise CommandError(f"voicecall expose --mode {result['mode']} failed (see hint above).")

    def _run_purge(self, *, dry_run: bool, **_: Any) -> None:
        client.config_or_error()  # a bad config is one line and a non-zero exit
        self._print(retention_purge(dry_run=dry_run).as_dict())

    def _run_serve(self, *, host: str | None, port: int | None, **_: Any) -> None:
        from calls.serving import server  # loads the ASGI server and app; only `serve` needs them

        cfg = client.config_or_error()
        server.run(host=host or cfg.serve_bind, port=port or cfg.serve_port)

    def _run_admin_user(self, **_: Any) -> None:
        account = admin_user_ensure(
            username="admin", password_file=settings.DATA_DIR / "admin-password.txt"
        )
        if account.created:
            password = account.password_file.read_text().strip()
            self.stdout.write(
                f"Admin user: {account.username}  password: {password}  "
                f"(kept in {account.password_file})"
            )
        else:
            self.stdout.write(
                f"An admin account exists (a first password, if this command "
                f"made it, is in {account.password_file})."
            )

    def _run_webhook_debug(self, **options: Any) -> None:
        self._print(webhook_explain(cli.captured_request(**options)))

    def _run_token(self, *, token_action: str, **options: Any) -> None:
        getattr(self, f"_token_{token_action}")(**options)

    def _token_create(self, *, name: str | None, ttl_hours: float | None, **_: Any) -> None:
        self._print(cli.token_issue(name=name or _default_token_name(), ttl_hours=ttl_hours))

    def _token_list(self, **_: Any) -> None:
        self._print(cli.token_list())

    def _token_revoke(self, *, token_id: int, **_: Any) -> None:
        self._print(cli.token_withdraw(token_id=token_id))


def _smoke_line(result: dict[str, Any]) -> str:
    if not result["ok"]:
        return "live-call: not attempted (setup needs attention)"
    if result["liveCall"]:
        return f"live-call: placed {result['callId']}"
    if "wouldCall" in result:
        would = result["wouldCall"]
        return (
            f"live-call: dry run, would call {would['to']} ({would['mode']}); "
            "pass --yes to place it"
        )
    return setup_checks.SKIPPED


def _default_token_name() -> str:
    """Who asked, as `voicecall token list` then shows it: user@host of this shell."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry for this uid (some containers)
        user = "cli"
    return f"{user}@{socket.gethostname()}"
