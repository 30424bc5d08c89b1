"""Strict run configs: defaults < a JSON or TOML config file < flags given; a misspelt key or value is one clear line.

Every run config derives from `RunConfig` (pydantic, `extra="forbid"`, `Literal` fields for choices), is
saved as RUN/config.json beside what it made, and is read back strictly.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from anchor_embed.errors import AnchorEmbedError


class RunConfig(BaseModel):
    """Base of every run config: unknown keys are errors, and assignments are validated too."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


C = TypeVar("C", bound=BaseModel)


def describe(exc: ValidationError, where: str = "", key_prefix: str = "") -> str:
    """The first problem of a validation error as one line naming the key and the value given."""
    e = exc.errors()[0]
    key = key_prefix + ".".join(map(str, e["loc"]))
    msg = e["msg"].removeprefix("Value error, ")
    if e["type"] == "extra_forbidden":
        return f"{where}unknown key '{key}'"
    got = f" (got {e['input']!r})" if not isinstance(e.get("input"), dict) and "input" in e else ""
    return f"{where}key '{key}': {msg}{got}" if key else f"{where}{msg}"


def read_config_file(path: Path) -> dict:
    """Settings from a JSON or (by its .toml suffix) TOML file; a malformed one is one line naming the line."""
    import tomllib

    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise AnchorEmbedError(f"{path}: no such config file") from None
    if path.suffix.lower() in (".yaml", ".yml", ".ini", ".cfg"):     # read as JSON it was "line 1: malformed JSON"
        raise AnchorEmbedError(f"{path}: a config file is JSON (.json) or TOML (.toml)")
    if path.suffix.lower() == ".toml":
        try:
            values = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise AnchorEmbedError(f"{path}: malformed TOML ({exc})") from None
    else:
        try:
            values = json.loads(text)
        except json.JSONDecodeError as exc:
            raise AnchorEmbedError(f"{path}: line {exc.lineno}: malformed JSON ({exc.msg})") from None
    if not isinstance(values, dict):
        raise AnchorEmbedError(f"{path}: expected a table (object) of settings")
    return values


def parse_value(text: str):
    """A setting's value from the command line: JSON when it parses (numbers, true, null), else the string."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def resolve(model: type[C], path: str | Path | None, overrides: dict, ignore: tuple[str, ...] = ()) -> C:
    """Defaults < config file < flags given (None means 'not given'); nested dicts are merged key by key. Keys in
    `ignore` are not read from the file (a resumed run's hardware settings: the defaults, unless given)."""
    values: dict = {}
    if path:
        path = Path(path)
        values = {k: v for k, v in read_config_file(path).items() if k not in ignore}
    values = merge_given(values, overrides)
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        first = exc.errors()[0]
        if first["type"] == "missing" and len(first["loc"]) == 1:   # neither the flags nor the file gave it
            name = str(first["loc"][0])
            raise AnchorEmbedError(f"--{name.replace('_', '-')} is required" + (
                f" (or '{name}' in {path})" if path else "")) from None
        flag = _given_by_flag(exc, overrides)
        raise AnchorEmbedError(describe(exc, f"{path}: " if path and not flag else "")
                               + (" (from the command line)" if path and flag else "")) from None


def merge_given(values: dict, overrides: dict) -> dict:
    """`values` (a saved config's) with the `overrides` given on top: None means 'not given', and a dict is merged
    into the dict it replaces key by key (`--param` names one of a method's settings, not all of them)."""
    out = dict(values)
    for k, v in overrides.items():
        if v is None:
            continue
        out[k] = {**out[k], **v} if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _given_by_flag(exc: ValidationError, overrides: dict) -> bool:
    """Whether the first problem's key was set on the command line (not by the config file): `--epochs 0` with
    --config c.json was blamed on c.json. A method param's problem is read from its message ('params.NAME')."""
    first = exc.errors()[0]
    named = re.search(r"'params\.(\w+)'", first["msg"])   # the method's own check runs on the whole config
    if named:
        return named.group(1) in (overrides.get("params") or {})
    loc = first["loc"]
    return bool(loc) and overrides.get(loc[0]) is not None and (
        not isinstance(overrides[loc[0]], dict) or (len(loc) > 1 and loc[1] in overrides[loc[0]]))


def read_saved(model: type[C], path: Path) -> C:
    """A config saved beside a run, read back strictly."""
    try:
        return model.model_validate_json(path.read_text())
    except ValidationError as exc:
        raise AnchorEmbedError(describe(exc, f"{path}: ")) from None
