"""The `computewatch` Typer application: every command registered from one explicit list, and
the one place where exceptions become exit codes (`ExitStatus`).

A run imports the module of the command it names only (`application`): each command's module
brings its own imports, and registering them all cost a report about 0.1 s of its 2 s (the
analysis schedule's among them). ``--help`` without a command, and a name that is no
command's, register every command, so the list and click's suggestions are complete."""

from __future__ import annotations

import logging
import sys
from functools import cache
from importlib import import_module
from typing import Annotated, Any

import typer

from computewatch.cli._click_words import route_click_words
from computewatch.cli._common import UserError, print_error
from computewatch.config import ConfigError
from computewatch.status import ExitStatus

__all__ = ["COMMANDS", "GROUPS", "application", "main"]  # and `app`, made when asked

COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("_demo", "demo"), "summary": ("_query", "summary"),
    "collect": ("_node", "collect"), "agent": ("_node", "agent"),
    "responder": ("_node", "responder"), "analyze": ("_analyze", "analyze"),
    "surplus": ("_query", "surplus"), "report": ("_report", "report"),
    "rollup": ("_rollup", "rollup"), "alert-bridge": ("_bridge", "alert_bridge"),
}
"""Each command: the `computewatch.cli` module and function that implement it, in the order
``--help`` lists them."""

GROUPS: dict[str, tuple[str, dict[str, tuple[str, str]]]] = {
    "topology": ("Inspect and check topology files.",
                 {"check": ("_places", "topology_check")}),
    "dashboards": ("Build the Grafana dashboards and upload them.",
                   {"build": ("_dashboards", "dashboards_build"),
                    "push": ("_dashboards", "dashboards_push")}),
    "kubernetes": ("Build the generated files of the Kubernetes manifests.",
                   {"build": ("_kubernetes", "kubernetes_build")}),
    "store": ("Look after a store: retention.", {"expire": ("_store", "store_expire")}),
}
"""Each command group: its help and its subcommands, listed after the commands."""


def _implementation(module: str, name: str) -> Any:
    return getattr(import_module(f"computewatch.cli.{module}"), name)


@cache
def application(command: str | None = None) -> typer.Typer:
    """The app with ``command`` (a command or group name) registered, or every command
    (None, or a name that is none of them)."""
    known = command in COMMANDS or command in GROUPS
    app = typer.Typer(add_completion=False, no_args_is_help=True,
                      pretty_exceptions_enable=False, rich_markup_mode=None,
                      help="Telemetry and observability for national compute networks.")
    app.callback()(_root)
    for name, (module, function) in COMMANDS.items():
        if not known or name == command:
            app.command(name)(_implementation(module, function))
    for name, (help_text, subcommands) in GROUPS.items():
        if known and name != command:
            continue
        group = typer.Typer(no_args_is_help=True, help=help_text)
        app.add_typer(group, name=name)
        for sub, (module, function) in subcommands.items():
            group.command(sub)(_implementation(module, function))
    return app


def __getattr__(name: str) -> Any:
    if name == "app":  # every command: what the tests and the help extraction read
        return application()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _command_named(argv: list[str]) -> str | None:
    """The command (or group) ``argv`` names: its first word that is neither an option nor
    the root's ``--lang`` value."""
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--lang":
            skip = True
        elif not arg.startswith("-"):
            return arg
    return None


def _version(value: bool) -> None:
    if value:
        from computewatch import __version__

        typer.echo(f"computewatch {__version__}")
        raise typer.Exit()


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
    from computewatch.cli._node import bare_simulate

    sys.argv[1:] = bare_simulate(sys.argv[1:])
    try:
        command = typer.main.get_command(application(_command_named(sys.argv[1:])))
        language = _help_language(sys.argv[1:])
        from computewatch.i18n import set_language

        set_language(language)  # a usage error can come before the root callback sets it
        if language != "en":  # click's own package comes with the help's translation only
            from computewatch.cli._help import translate_help

            translate_help(command)
        route_click_words()  # click's own words (Usage, Error, Missing option) too
        command()  # usage errors are click's: it prints them and exits with code 2
    except (ConfigError, UserError, StoreURLError) as exc:
        print_error(exc)
        sys.exit(ExitStatus.BAD_INPUT)
    except StoreError as exc:
        print_error(exc)
        sys.exit(ExitStatus.ERROR)
