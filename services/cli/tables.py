"""How the CLI prints its tables: an id is never cut, so it can be copied or piped into the next command.

Rich fits a table to the terminal by cutting cells short with an ellipsis (``job_01a22f…``), and to
80 columns when the output is not a terminal (``gpurelay jobs ls | grep failed``). Here the id
columns keep their whole width (on a narrow terminal the other columns give way), and piped, a table
is as wide as it needs.
"""

from __future__ import annotations

from rich.console import Console
from rich.table import Table
from rich.text import Text

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
