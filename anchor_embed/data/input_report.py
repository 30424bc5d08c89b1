"""What a reader skipped and why: each problem names its file and line (or key); `--strict` stops at the first."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from anchor_embed.errors import AnchorEmbedError


@dataclass
class InputReport:
    """Problems found while reading one input; `strict` turns the first problem into an error."""

    source: str
    strict: bool = False
    kept: int = 0
    problems: list[str] = field(default_factory=list)
    kinds: Counter = field(default_factory=Counter)
    notes: list[str] = field(default_factory=list)   # things worth a line that are not errors (columns not read)
    # where each kept row was read, if the reader says: (its place in the whole input, 'line 7' / 'row 3')
    kept_at: list[tuple[int, str]] = field(default_factory=list)

    # the first problem's place in the input (as kept_at counts) and its line, when the reader says where
    first_at: tuple[int, str] | None = None

    def bad(self, where: str, kind: str, message: str, rows: int = 1, at: int | None = None) -> None:
        """Record a bad row (`where` is 'line 7' or 'key x'), or `rows` of them under one message; raise at once
        when strict. `at` is the row's place in the input, for the first problem by position."""
        line = f"{self.source}: {where}: {message}"
        if self.strict:
            raise AnchorEmbedError(f"{line} (--strict stops at the first bad row)")
        self.problems.append(line)
        self.kinds[kind] += rows
        if at is not None and (self.first_at is None or at < self.first_at[0]):
            self.first_at = (at, line)

    @property
    def skipped(self) -> int:
        """Rows skipped (a message may stand for several)."""
        return sum(self.kinds.values())

    def lines(self, limit: int = 5) -> list[str]:
        """The summary, then the first `limit` problems by file and line (or key), then the notes: what a
        command prints, so a skipped row is named, not only counted."""
        out = [self.summary()] + [f"  skipped {p}" for p in self.problems[:limit]]
        if len(self.problems) > limit:
            out.append(f"  ... and {len(self.problems) - limit} more (--strict stops at the first)")
        return out + [f"  note: {n}" for n in self.notes]

    def say(self, stage: str, limit: int = 5) -> None:
        """Print `lines()` on the status console, the first under the stage's name."""
        from rich.markup import escape

        from anchor_embed.progress import say

        first, *rest = self.lines(limit)            # escaped: a path or message may hold [brackets]
        say(f"[bold]{stage}[/]: {escape(first)}")
        for line in rest:
            say(escape(line))

    def summary(self) -> str:
        """One line: how many kept, how many skipped, by kind."""
        text = f"{self.source}: {self.kept} kept, {self.skipped} skipped"
        if self.kinds:
            text += " (" + ", ".join(f"{n} {k}" for k, n in self.kinds.most_common()) + ")"
        return text


def is_number(text: str) -> bool:
    """Whether `text` reads as a float: a CSV's header cell ('count') does not, a value does."""
    try:
        float(text)
    except ValueError:
        return False
    return True
