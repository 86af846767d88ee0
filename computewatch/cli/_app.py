"""The `computewatch` Typer application: every command registered in one explicit list, and
the one place where exceptions become exit codes (`ExitStatus`)."""

from __future__ import annotations

import logging
import sys
from typing import Annotated

import typer

from computewatch.cli import (
    _analyze,
    _bridge,
    _dashboards,
    _demo,
    _kubernetes,
    _node,
    _places,
    _query,
    _report,
    _rollup,
    _store,
)
from computewatch.cli._click_words import route_click_words
from computewatch.cli._common import UserError, print_error
from computewatch.cli._help import translate_help
from computewatch.config import ConfigError
from computewatch.status import ExitStatus

__all__ = ["app", "main"]

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  rich_markup_mode=None,
                  help="Telemetry and observability for national compute networks.")
topology_app = typer.Typer(no_args_is_help=True, help="Inspect and check topology files.")
dashboards_app = typer.Typer(no_args_is_help=True,
                             help="Build the Grafana dashboards and upload them.")
kubernetes_app = typer.Typer(no_args_is_help=True,
                             help="Build the generated files of the Kubernetes manifests.")
store_app = typer.Typer(no_args_is_help=True, help="Look after a store: retention.")


def _version(value: bool) -> None:
    if value:
        from computewatch import __version__

        typer.echo(f"computewatch {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[bool, typer.Option(
        "--version", callback=_version, is_eager=True,
        help="Print the version and exit.")] = False,
    lang: Annotated[str | None, typer.Option(
        "--lang", help="Language of tables and messages: en or zh-CN (default: "
        "$COMPUTEWATCH_LANG, else the locale, e.g. LANG=zh_CN.UTF-8, else en).")] = None,
) -> None:
    """Telemetry and observability for national compute networks."""
    from computewatch.i18n import LanguageError, resolve_language, set_language

    try:
        set_language(resolve_language(lang))
    except LanguageError as exc:
        raise UserError(str(exc)) from None


for command in (_demo.demo, _query.summary, _node.collect, _node.agent, _node.responder,
                _analyze.analyze, _query.surplus, _report.report, _rollup.rollup):
    app.command()(command)
app.command("alert-bridge")(_bridge.alert_bridge)
app.add_typer(topology_app, name="topology")
topology_app.command("check")(_places.topology_check)
app.add_typer(dashboards_app, name="dashboards")
dashboards_app.command("build")(_dashboards.dashboards_build)
dashboards_app.command("push")(_dashboards.dashboards_push)
app.add_typer(kubernetes_app, name="kubernetes")
kubernetes_app.command("build")(_kubernetes.kubernetes_build)
app.add_typer(store_app, name="store")
store_app.command("expire")(_store.store_expire)


def _help_language(argv: list[str]) -> str:
    """The language help is shown in, read before click parses (the root callback sets the
    run's language, too late for the help texts); a bad value is left to the callback."""
    from computewatch.i18n import LanguageError, resolve_language

    option = None
    for i, arg in enumerate(argv):
        if arg == "--lang" and i + 1 < len(argv):
            option = argv[i + 1]
        elif arg.startswith("--lang="):
            option = arg.split("=", 1)[1]
    try:
        return resolve_language(option)
    except LanguageError:
        return "en"


def main() -> None:
    """Console-script entry point: an error is one line; bad input exits 2, a failure while
    running (a store that cannot be reached) exits 1. Log lines and errors go through
    `computewatch.redact`: no password, token or configured secret reaches the output."""
    from computewatch.redact import RedactingFormatter
    from computewatch.store import StoreError, StoreURLError

    handler = logging.StreamHandler()
    handler.setFormatter(RedactingFormatter("%(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=logging.WARNING, handlers=[handler])
    sys.argv[1:] = _node.bare_simulate(sys.argv[1:])
    try:
        command = typer.main.get_command(app)
        language = _help_language(sys.argv[1:])
        from computewatch.i18n import set_language

        set_language(language)  # a usage error can come before the root callback sets it
        if language != "en":
            translate_help(command)
        route_click_words()  # click's own words (Usage, Error, Missing option) too
        command()  # usage errors are click's: it prints them and exits with code 2
    except (ConfigError, UserError, StoreURLError) as exc:
        print_error(exc)
        sys.exit(ExitStatus.BAD_INPUT)
    except StoreError as exc:
        print_error(exc)
        sys.exit(ExitStatus.ERROR)
