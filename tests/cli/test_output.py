"""The CLI's tables never cut an id: on a narrow terminal the other columns give way, and piped (not a
terminal, where rich would fit 80 columns) a table is as wide as its widest row. Its help is each
docstring's paragraphs reflowed to the terminal, without the docstrings' double backticks."""

from __future__ import annotations

from io import StringIO
from typing import Any

import typer
from rich.console import Console
from rich.table import Table
from typer.testing import CliRunner

from services.cli.main import app
from services.cli.output import print_table

JOB = "job_01a22fae506876739d4c5a9f117a613e"


def _table() -> Table:
    table = Table("id", "kind", "status", "created")
    table.add_row(JOB, "lap_compare", "[green]succeeded[/]", "2026-12-01 03:38:02")
    return table


def _printed(console: Console, whole: tuple[str, ...] = ("id", "status")) -> str:
    print_table(_table(), *whole, console=console)
    assert isinstance(console.file, StringIO)
    return console.file.getvalue()


def test_a_narrow_terminal_cuts_other_columns_not_the_id() -> None:
    printed = _printed(Console(file=StringIO(), force_terminal=True, width=60))
    assert JOB in printed
    assert "succeeded" in printed  # its markup is not counted in its width
    assert "…" in printed  # the kind and the time gave way
    plain = StringIO()
    Console(file=plain, force_terminal=True, width=60).print(_table())
    assert JOB not in plain.getvalue()  # what rich alone prints


def test_piped_output_is_as_wide_as_the_table_and_plain() -> None:
    printed = _printed(Console(file=StringIO(), force_terminal=False, width=40), whole=())
    assert JOB in printed
    assert "2026-12-01 03:38:02" in printed
    assert "…" not in printed
    assert "\x1b[" not in printed  # no colour codes for a pipe


def _commands() -> list[tuple[str, Any]]:
    """Every command and group of ``gpurelay``, by its path."""
    found: list[tuple[str, Any]] = []

    def walk(group: Any, path: str) -> None:
        for name, command in getattr(group, "commands", {}).items():
            found.append((f"{path} {name}", command))
            walk(command, f"{path} {name}")

    walk(typer.main.get_command(app), "gpurelay")
    return found


def test_every_commands_help_is_paragraphs_the_terminal_wraps_and_shows_no_double_backticks() -> None:
    commands = _commands()
    assert len(commands) > 30
    for path, command in commands:
        text = command.help or ""
        assert "``" not in text, path
        assert all("\n" not in paragraph for paragraph in text.split("\n\n")), (path, text)


def test_the_command_list_wraps_a_summary_at_the_terminals_width_not_the_sources() -> None:
    result = CliRunner().invoke(app, ["--help"], env={"COLUMNS": "120"})
    assert result.exit_code == 0
    row = next(line for line in result.output.splitlines() if "Replay a stream" in line)
    assert "(JSON lines), a subject, a" in row  # the docstring breaks its line after "a"
