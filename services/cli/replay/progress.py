"""The progress bar of ``gpurelay replay`` (rich, on stderr; a plain final line when stderr is no terminal)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn


@dataclass
class ReplayProgress:
    """One task of a rich :class:`Progress`: its total is known once the consumer says how many may come."""

    progress: Progress
    task: TaskID

    def total(self, count: int) -> None:
        """At most ``count`` messages will come."""
        self.progress.update(self.task, total=count)

    def advance(self) -> None:
        """One more message read."""
        self.progress.advance(self.task)


@contextmanager
def replay_progress(description: str, *, disable: bool = False) -> Iterator[ReplayProgress]:
    """A progress bar for one replay on stderr (``disable``: none shown)."""
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=Console(stderr=True), transient=False, disable=disable) as progress:
        yield ReplayProgress(progress, progress.add_task(description, total=None))
