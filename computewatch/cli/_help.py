"""Help texts in the run's language: the commands' and options' help, translated through the
message catalogue when the command tree is built, and extracted for it by `extract`.

Typer takes help from docstrings and ``help=`` arguments at import, before a language is
chosen, so they cannot be marked with ``_()`` where they are written. Instead the click
command tree is walked: `translate_help` replaces each help text with its translation
(``computewatch --lang zh-CN summary --help``), and `extract` is the pybabel extraction
method (babel.cfg) that yields the same texts for the catalogue. Click's own words (Usage,
Options) stay click's.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import click

__all__ = ["extract", "help_texts", "translate_help"]


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
    """Replace the tree's help texts with the current language's (`computewatch.i18n`)."""
    from computewatch.i18n import _

    for item in _walk(command):
        text = getattr(item, "help", None)
        if text:
            item.help = _(text)
        if isinstance(item, click.Command) and item.short_help:
            item.short_help = _(item.short_help)


def extract(fileobj: Any, keywords: Any, comment_tags: Any, options: Any
            ) -> Iterator[tuple[int, str, str, list[str]]]:
    """pybabel's extraction method for the help texts (babel.cfg maps it to this file)."""
    import typer

    from computewatch.cli._app import app

    for text in help_texts(typer.main.get_command(app)):
        yield 1, "_", text, ["command-line help"]
