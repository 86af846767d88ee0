"""Help texts in the run's language: the commands' and options' help, translated through the
message catalogue when the command tree is built, and extracted for it by `extract`.

Typer takes help from docstrings and ``help=`` arguments at import, before a language is
chosen, so they cannot be marked with ``_()`` where they are written. Instead the click
command tree is walked: `translate_help` replaces each help text with its translation
(``computewatch --lang zh-CN summary --help``), and `_help_extract.extract` is the pybabel
extraction method (babel.cfg) that yields the same texts for the catalogue. The usage line's
placeholders (``[OPTIONS]``, ``COMMAND [ARGS]...``) are translated here too; click's own words
(Usage, Options, Error) by `computewatch.cli._click_words`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import click

__all__ = ["help_texts", "translate_help"]


def _walk(command: click.Command) -> Iterator[Any]:
    """The command, its parameters, and every subcommand's, depth first."""
    yield command
    yield from command.params
    for sub in getattr(command, "commands", {}).values():
        yield from _walk(sub)


def help_texts(command: click.Command) -> list[str]:
    """Every help text of the tree, once each, in order."""
    seen: dict[str, None] = {}
    for item in _walk(command):
        text = getattr(item, "help", None)
        if text:
            seen[text] = None
    return list(seen)


def translate_help(command: click.Command) -> None:
    """Replace the tree's help texts with the current language's (`computewatch.i18n`),
    the ``--help`` option's own included."""
    from computewatch.i18n import N_, _

    help_help = _(N_("Show this message and exit."))
    for item in _walk(command):
        text = getattr(item, "help", None)
        if text:
            item.help = _(text)
        if hasattr(item, "get_help_option"):  # a command (Typer carries its own click copy)
            if item.short_help:
                item.short_help = _(item.short_help)
            elif item.help and item.help != text:  # click cuts at a space: Chinese has none
                item.short_help = _short(item.help)
            if getattr(item, "options_metavar", None) == "[OPTIONS]":
                item.options_metavar = _(N_("[OPTIONS]"))
            if getattr(item, "subcommand_metavar", None) == "COMMAND [ARGS]...":
                item.subcommand_metavar = _(N_("COMMAND [ARGS]..."))
            item.get_help_option = _help_option(item.get_help_option, help_help)


def _short(text: str, limit: int = 60) -> str:
    """A command's line in its group's list: the first sentence of its translated help, or
    of a long one its first clause."""
    first = text.strip().split("。", 1)[0]
    return first if len(first) <= limit else re.split(r"[：；]", first, maxsplit=1)[0]


def _help_option(original: Any, text: str) -> Any:
    """``get_help_option`` whose option says ``text`` (click builds it per context)."""

    def get_help_option(ctx: click.Context) -> click.Option | None:
        option = original(ctx)
        if option is not None:
            option.help = text
        return option

    return get_help_option
