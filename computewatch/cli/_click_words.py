"""click's own words (Usage, Options, Commands, Error, Missing option, Invalid value for ...)
in the run's language, English unchanged.

Typer ships its own copy of click (``typer._click``): its section headings and ``[default:
...]`` notes go through the standard library's `gettext` in ``typer.core``, but the usage
prefix and the error lines are English f-strings. So the words are marked here for the
catalogue (`pybabel extract` reads this module) and reach the user two ways: ``typer.core``'s
gettext is routed to `computewatch.i18n` (the resolved language's catalogue), and what the
exceptions print is read back against the templates below and restated in the language
(`computewatch.i18n.restate`; a message no template matches stays as click wrote it, names
and values kept verbatim). In English nothing is touched: the text is click's own.
"""

from __future__ import annotations

import importlib
from typing import Any

from computewatch.i18n import N_, _, current_language, restate

__all__ = ["ERROR_LINES", "HEADINGS", "MESSAGES", "route_click_words"]

HEADINGS = (N_("Usage: "), N_("Usage:"), N_("{heading}:"), N_("Options"), N_("Commands"),
            N_("Arguments"), N_("default: {default}"), N_("env var: {var}"), N_("required"),
            N_("(dynamic)"), N_("Aborted!"), N_("Missing command."),
            N_("No such command {name!r}."))
"""The words Typer's click asks gettext for, and the usage prefix."""

ERROR_LINES = (N_("Error: {message}"), N_("Try '{command} {option}' for help."))
"""The lines an exception prints around its message."""

MESSAGES = (
    N_("No such option: {name} (Possible options: {options})"),
    N_("No such option: {name}"),
    N_("No such command {name}."),
    N_("Invalid value for {hint}: {message}"),
    N_("Invalid value: {message}"),
    N_("Missing {kind} {hint}. {message}"),
    N_("Missing {kind} {hint}."),
    N_("Missing parameter: {name}"),
    N_("Got unexpected extra argument(s) ({args})"),
    N_("Option {name} requires an argument."),
    N_("Option {name} requires {n} arguments."),
    N_("Option {name} does not take a value."),
    N_("Value {value} is not a valid {kind}."),
    N_("{value} is not one of {choices}."),
    N_("{kind} {value} does not exist."),
    N_("Input should be a valid integer, unable to parse string as an integer"),
    N_("Input should be a valid number, unable to parse string as a number"),
    N_("Input should be greater than or equal to {limit}"),
    N_("Input should be greater than {limit}"),
    N_("Input should be less than or equal to {limit}"),
)
"""An exception's message as click and Typer's coercion (pydantic) write it."""

_KINDS = {"option": N_("option"), "argument": N_("argument"), "parameter": N_("parameter"),
          "File": N_("File"), "Directory": N_("Directory"), "Path": N_("Path")}


def _value(field: str, text: str) -> str:
    if field == "message":
        return restate(text, MESSAGES, value=_value) or text
    if field == "kind" and text in _KINDS:
        return _(_KINDS[text])
    return text


def _restated(text: str) -> str:
    """What an exception prints, line by line, in the current language."""
    return "\n".join(restate(line, ERROR_LINES, value=_value) or line
                     for line in text.split("\n"))


def route_click_words() -> None:
    """Send Typer's click words through the catalogue of the current language (call once,
    before the command runs; idempotent)."""
    core = importlib.import_module("typer.core")
    core._ = _  # headings, default/env var/required notes, Aborted!, Missing command.
    try:
        formatting = importlib.import_module("typer._click.formatting")
        exceptions = importlib.import_module("typer._click.exceptions")
    except ImportError:  # a Typer on click itself (before 0.2x): click asks gettext
        _route_click_gettext()
        return
    if getattr(exceptions.echo, "_computewatch", False):
        return

    write_usage = formatting.HelpFormatter.write_usage

    def usage_in_language(self: Any, prog: str, args: str = "",
                          prefix: str | None = None) -> None:
        write_usage(self, prog, args, _("Usage: ") if prefix is None else prefix)

    formatting.HelpFormatter.write_usage = usage_in_language
    write_heading = formatting.HelpFormatter.write_heading

    def heading_in_language(self: Any, heading: str) -> None:
        if current_language() == "en":
            write_heading(self, heading)
        else:  # the colon of the language (选项：), not click's ASCII one
            self.write(f"{'':>{self.current_indent}}{_('{heading}:').format(heading=heading)}\n")

    formatting.HelpFormatter.write_heading = heading_in_language
    echo = exceptions.echo

    def echo_in_language(message: Any = None, *args: Any, **kwargs: Any) -> None:
        if isinstance(message, str) and current_language() != "en":
            message = _restated(message)
        echo(message, *args, **kwargs)

    echo_in_language._computewatch = True  # type: ignore[attr-defined]
    exceptions.echo = echo_in_language


def _route_click_gettext() -> None:
    """click's modules ask the standard library's gettext: ask the catalogue instead (the
    msgids click shares with Typer's copy translate; the others stay click's English)."""
    from computewatch.i18n import ngettext

    for name in ("core", "decorators", "exceptions", "formatting", "parser", "types"):
        module = importlib.import_module(f"click.{name}")
        if hasattr(module, "_"):
            module._ = _
        if hasattr(module, "ngettext"):
            module.ngettext = ngettext
