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

    def bad(self, where: str, kind: str, message: str, rows: int = 1) -> None:
        """Record a bad row (`where` is 'line 7' or 'key x'), or `rows` of them under one message; raise at once
        when strict."""
        line = f"{self.source}: {where}: {message}"
        if self.strict:
            raise AnchorEmbedError(f"{line} (--strict stops at the first bad row)")
        self.problems.append(line)
        self.kinds[kind] += rows

    @property
    def skipped(self) -> int:
        """Rows skipped (a message may stand for several)."""
        return sum(self.kinds.values())

    def summary(self) -> str:
        """One line: how many kept, how many skipped, by kind."""
        text = f"{self.source}: {self.kept} kept, {self.skipped} skipped"
        if self.kinds:
            text += " (" + ", ".join(f"{n} {k}" for k, n in self.kinds.most_common()) + ")"
        return text
