"""The rule for a JSONL `--out` of `dedup` and `scatter`: a rerun replaces the command's own earlier output, and
nothing else without `--overwrite` (as `export`), so a mistyped --out cannot replace a run's config.json; replacing
one made from other vectors or with other settings (what its rows record of what made them) is said."""

from __future__ import annotations

import json
from collections.abc import Collection
from pathlib import Path

from rich.markup import escape

from anchor_embed.errors import AnchorEmbedError
from anchor_embed.progress import say


def first_row(path: Path) -> dict | None:
    """The first line of `path` as a JSON object, or None when it is no such line (or the file is no text)."""
    try:
        with open(path, encoding="utf-8") as f:
            line = f.readline()
        row = json.loads(line)
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    return row if isinstance(row, dict) else None


def is_output(path: Path, fields: Collection[str]) -> bool:
    """`path` is a file a command may replace as its own output: empty, or its first line an object with `fields`."""
    if not path.is_file():
        return False
    if path.stat().st_size == 0:
        return True
    row = first_row(path)
    return row is not None and set(fields) <= row.keys()


def claim(out: Path, command: str, fields: Collection[str], overwrite: bool, made_from: str | None = None,
          settings: dict | None = None) -> None:
    """Refuse `out` before any work when it is a folder, inside the vectors folder of other vectors than those
    with fingerprint `made_from` (that folder's own outputs are made from its vectors, and embed clears them with
    its vectors), or an existing file that is neither empty nor `command`'s output (its first line an object
    with `fields`) unless `overwrite`. Replacing a `command` output (with or without `overwrite`) made from other
    vectors, or with other `settings` (the fields each row records of what shaped it: a threshold, a number of
    clusters...), is said in one line; a field the old output does not record (an older version's) is not
    compared."""
    if out.is_dir():
        raise AnchorEmbedError(f"--out {out}: a folder; name the JSONL file to write")
    home = _vectors_fingerprint(out.parent)
    if made_from and home and home != made_from:
        raise AnchorEmbedError(f"--out {out}: inside {out.parent}, the vectors folder of other vectors (fingerprint "
                               f"{home}; these are {made_from}); write the {command} output elsewhere")
    owner = _owner(out)
    if owner:
        raise AnchorEmbedError(f"--out {out}: one of the files of the {owner} folder {out.parent} (--overwrite never "
                               f"replaces those); name another file for the {command} output")
    if not out.exists():
        return
    if not is_output(out, fields):
        if overwrite:
            return
        raise AnchorEmbedError(f"--out {out}: exists and is not a {command} output; choose another --out or pass "
                               "--overwrite to replace it")
    other = made_otherwise(first_row(out) or {}, made_from, settings or {})
    if other:
        say(f"[yellow]{command}[/]: replacing {escape(str(out))}, the {command} output of {escape(other)}")


def made_otherwise(row: dict, made_from: str | None, settings: dict) -> str:
    """How the output whose first row is `row` was made otherwise than from the vectors `made_from` with
    `settings` ('other vectors (fingerprint a; these are b) and other settings (threshold 0.9; these are
    threshold 0.95)'), or '' when nothing it records differs; what either side does not record is not compared."""
    said = []
    recorded = row.get("vectors")
    if made_from and recorded and recorded != made_from:
        said.append(f"other vectors (fingerprint {recorded}; these are {made_from})")
    differ = [k for k, v in settings.items() if k in row and row[k] != v]
    if differ:
        said.append(f"other settings ({_listed(row, differ)}; these are {_listed(settings, differ)})")
    return " and ".join(said)


def _listed(values: dict, names: list[str]) -> str:
    """'threshold 0.9, clusters 0': the named values, null as 'none'."""
    return ", ".join(f"{k} {'none' if values[k] is None else values[k]}" for k in names)


def _owner(out: Path) -> str | None:
    """'vectors' or 'index' when `out` is a file of the vectors folder embed wrote or of an index folder (its
    vectors.npy, keys.txt, meta.json...), which no other command's --out may replace."""
    from anchor_embed.serving.embed import EMBED_FILES
    from anchor_embed.serving.index import INDEX_FILES
    from anchor_embed.serving.vectors import folder_kind

    kind = folder_kind(out.parent)     # an index folder holds a copy of its vectors' files too
    return kind if out.name in {"vectors": EMBED_FILES, "index": INDEX_FILES | EMBED_FILES}.get(kind or "", ()) else None


def _vectors_fingerprint(folder: Path) -> str | None:
    """The fingerprint of the vectors `folder` holds when it is a vectors folder embed wrote, else None."""
    from anchor_embed import atomic
    from anchor_embed.serving.vectors import folder_kind, vectors_id

    if folder_kind(folder) != "vectors":
        return None
    try:
        return vectors_id(atomic.read_json_object(folder / "meta.json"))
    except AnchorEmbedError:             # a damaged meta.json: the commands reading the folder say so
        return None
