"""pybabel's extraction method for the command line's help texts (babel.cfg maps it here):
the texts of the Typer app's command tree, which `computewatch.cli._help` translates."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

__all__ = ["extract"]


def extract(fileobj: Any, keywords: Any, comment_tags: Any, options: Any
            ) -> Iterator[tuple[int, str, str, list[str]]]:
    """Every help text once, as a message for the catalogue."""
    import typer

    from computewatch.cli._app import app
    from computewatch.cli._help import help_texts

    for text in help_texts(typer.main.get_command(app)):
        yield 1, "_", text, ["command-line help"]
