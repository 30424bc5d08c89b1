"""Rich progress bars and status lines on stderr, so stdout stays for results."""

from __future__ import annotations

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

console = Console(stderr=True)


def make_progress() -> Progress:
    """A progress display with a free `info` field per task (loss, throughput)."""
    return Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TimeRemainingColumn(),
        console=console, transient=False, disable=console.quiet,
    )


def say(message: str) -> None:
    """A status line on stderr, never wrapped by rich: a log keeps one message a line (a terminal wraps it)."""
    console.print(message, highlight=False, soft_wrap=True)
