"""Name -> implementation tables for the pluggable parts (transfer methods, pair filters, backbones).

Entries are 'module:attribute' strings imported on first use, so listing the names (CLI help, config
validation) imports nothing heavy, and adding an implementation is one new module plus one line.
"""

from __future__ import annotations

import importlib
from typing import Any

from anchor_embed.errors import AnchorEmbedError


class Registry:
    """A named table of lazily imported implementations of one kind of thing."""

    def __init__(self, kind: str, entries: dict[str, str]) -> None:
        self.kind = kind
        self._entries = dict(entries)

    def names(self) -> list[str]:
        """The registered names, in registration order (the first is the default)."""
        return list(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def load(self, name: str) -> Any:
        """The implementation registered as `name`; an unknown name is one clear error listing the known ones."""
        if name not in self._entries:
            raise AnchorEmbedError(f"{self.kind} {name!r}: unknown; choose from {', '.join(self._entries)}")
        module, _, attr = self._entries[name].partition(":")
        return getattr(importlib.import_module(module), attr)
