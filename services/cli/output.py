"""How the CLI prints: tables whose ids are never cut, and help whose paragraphs fit the terminal.

Rich fits a table to the terminal by cutting cells short with an ellipsis (``job_01a22f…``), and to
80 columns when the output is not a terminal (``gpurelay jobs ls | grep failed``). Here the id
columns keep their whole width (on a narrow terminal the other columns give way), and piped, a table
is as wide as it needs.

Every command group is a :class:`CommandGroup`, which gives each command the help of its docstring
reflowed (:func:`reflowed`): typer's rich help keeps each line break of a docstring, so a paragraph
wrapped in the source came out cut in two on a terminal of another width (``gpurelay --help`` split
its ``replay`` line), and a docstring's double backticks were printed as they are.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

F = TypeVar("F", bound=Callable[..., Any])
UNBOUNDED = 10_000
"""The width a table is measured in when the output is not a terminal: as wide as its widest row."""


def print_table(table: Table, *whole: str, console: Console | None = None) -> None:
    """Print ``table`` with the columns headed ``whole`` (its ids) never cut; not on a terminal, nothing cut."""
    out = console or Console()
    for column in table.columns:
        if column.header in whole:
            column.no_wrap = True
            column.min_width = max((Text.from_markup(str(cell)).cell_len for cell in column.cells), default=0) or None
    if not out.is_terminal:
        natural = out.measure(table, options=out.options.update_width(UNBOUNDED)).maximum
        out = Console(file=out.file, width=max(out.width, natural), no_color=True)
    out.print(table)


def reflowed(doc: str) -> str:
    """``doc`` as a command's help: each paragraph on one line (the terminal wraps it), code in single backticks."""
    paragraphs = inspect.cleandoc(doc).split("\n\n")
    return "\n\n".join(" ".join(line.strip() for line in p.splitlines()) for p in paragraphs).replace("``", "`")


class CommandGroup(typer.Typer):
    """A typer app (the CLI or one of its groups) whose commands' help is their docstring :func:`reflowed`."""

    def command(self, *args: Any, **kwargs: Any) -> Callable[[F], F]:
        """As typer's, with the help of a command that names none its docstring reflowed."""
        register = super().command(*args, **kwargs)

        def decorator(f: F) -> F:
            register(f)
            info = self.registered_commands[-1]
            if info.help is None and f.__doc__:
                info.help = reflowed(f.__doc__)
            return f

        return decorator
