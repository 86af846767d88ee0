"""`computewatch alert-bridge`: receive Alertmanager webhooks, deliver them to chat tools."""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Annotated

import typer

from computewatch.cli._common import UserError, err_console
from computewatch.cli._signals import run_until_signalled
from computewatch.i18n import _

__all__ = ["alert_bridge"]


def _wait(stop: threading.Event) -> None:
    while not stop.wait(1.0):  # wakes to let a signal's handler run promptly
        pass


def alert_bridge(
    config: Annotated[Path, typer.Option(
        "--config", help="Bridge YAML (see examples/alert-bridge.yaml).")],
    listen: Annotated[str | None, typer.Option(
        help="host:port to serve on (default from the config, 127.0.0.1:9095).")] = None,
    check: Annotated[bool, typer.Option(
        "--check", help="Check everything starting would (the config, its secrets, the "
        "listen address, the dead-letter file), then exit.")] = False,
) -> None:
    """Receive Alertmanager webhooks and deliver them to DingTalk, WeCom, Feishu, Slack and
    signed webhooks."""
    from computewatch.addresses import parse_listen
    from computewatch.alerts.bridge import check_bridge

    if listen is not None:
        try:
            parse_listen(listen)
        except ValueError as exc:
            raise UserError(str(exc)) from None
    bridge = check_bridge(config, listen)
    routes = "; ".join(f"/alertmanager/{r} -> {', '.join(t)}"
                       for r, t in bridge.config.receivers.items())
    if check:
        typer.echo(f"{config}: {len(bridge.config.targets)} targets, "
                   f"{len(bridge.config.receivers)} receivers: {routes}")
        return
    logging.getLogger("computewatch.alerts.bridge").setLevel(logging.INFO)
    try:
        bridge.start()
    except OSError as exc:
        raise UserError(_("cannot listen on {address}: {reason}").format(
            address=listen or bridge.config.listen, reason=exc.strerror or exc)) from None
    err_console().print(f"computewatch alert-bridge on {bridge.url}: {routes}",
                        markup=False, highlight=False)
    try:
        run_until_signalled(_wait)
    finally:
        bridge.stop()
