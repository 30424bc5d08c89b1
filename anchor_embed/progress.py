"""Rich progress bars and status lines on stderr, so stdout stays for results."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

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
# inside `warnings_only()`: per thread (and asyncio task), so one caller's quiet call does not silence another's
_warnings_only: ContextVar[bool] = ContextVar("warnings_only", default=False)


@contextmanager
def warnings_only() -> Iterator[None]:
    """Status lines and progress bars off, warnings (`[yellow]` lines) still said: for a library call whose
    caller asked for quiet (`Model.encode(quiet=True)` in a notebook or a service loop); other threads are not
    quietened."""
    token = _warnings_only.set(True)
    try:
        yield
    finally:
        _warnings_only.reset(token)


def make_progress() -> Progress:
    """A progress display with a free `info` field per task (loss, throughput)."""
    return Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TimeRemainingColumn(),
        console=console, transient=False, disable=console.quiet or _warnings_only.get(),
    )


def counted(n: int, noun: str, plural: str | None = None) -> str:
    """'1 group', '3 groups': a count with its noun in the number it takes."""
    return f"{n} {noun if n == 1 else plural or noun + 's'}"


def say(message: str) -> None:
    """A status line on stderr, never wrapped by rich: a log keeps one message a line (a terminal wraps it)."""
    if _warnings_only.get() and not message.startswith(("[yellow]", "[red]", "  ")):   # "  ...": a warning's detail
        return
    console.print(message, highlight=False, soft_wrap=True)
