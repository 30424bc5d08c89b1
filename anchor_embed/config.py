"""Typed run configs: loaded from a JSON file, overridden by flags that were set, saved beside the run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from anchor_embed.errors import AnchorEmbedError

C = TypeVar("C", bound=BaseModel)


def resolve(model: type[C], path: str | Path | None, overrides: dict) -> C:
    """Defaults < config file < flags given (None means 'not given')."""
    values: dict = {}
    if path:
        path = Path(path)
        try:
            values = json.loads(path.read_text())
        except FileNotFoundError:
            raise AnchorEmbedError(f"{path}: no such config file") from None
        except json.JSONDecodeError as exc:
            raise AnchorEmbedError(f"{path}: line {exc.lineno}: malformed JSON ({exc.msg})") from None
        unknown = set(values) - set(model.model_fields)
        if unknown:
            raise AnchorEmbedError(f"{path}: unknown key(s) {sorted(unknown)}")
    values.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        e = exc.errors()[0]
        where = f"{path}: " if path else ""
        raise AnchorEmbedError(f"{where}key '{'.'.join(map(str, e['loc']))}': {e['msg']}") from None
