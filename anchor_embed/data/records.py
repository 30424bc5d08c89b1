"""Streamer records (the input contract) and their readers for JSONL and Parquet."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from anchor_embed.data.input_report import InputReport
from anchor_embed.data.key_file import bad_id_reason, integer_id
from anchor_embed.errors import AnchorEmbedError


class StreamerRecord(BaseModel):
    """One streamer: what they show. Lists may be empty; `anchor_id` is unique and non-empty."""

    model_config = ConfigDict(strict=True, extra="ignore")

    anchor_id: str = Field(min_length=1, description="Unique, non-empty streamer id.")
    nickname: str = Field("", description="Display name.")
    profile: str = Field("", description="Profile / channel description.")
    texts: list[str] = Field(default_factory=list, description="Live titles, video captions.")
    tags: list[str] = Field(default_factory=list, description="Tag names.")
    frames: list[str] = Field(
        default_factory=list,
        description="Image or video paths relative to --media-root; a video yields k sampled frames.",
    )
    meta: dict[str, Any] = Field(default_factory=dict, description="Optional free-form fields.")

    @field_validator("anchor_id", mode="before")
    @classmethod
    def _integer_id_is_its_decimal(cls, v: Any) -> Any:
        """Warehouse tables often key streamers by BIGINT: 12345 (or numpy's int64 12345) is the id '12345'."""
        as_text = integer_id(v)
        return v if as_text is None else as_text

    @field_validator("anchor_id")
    @classmethod
    def _usable_id(cls, v: str) -> str:
        reason = bad_id_reason(v)
        if reason:
            raise ValueError(reason)
        return v

    @field_validator("meta", mode="before")
    @classmethod
    def _meta_from_json_text(cls, v: Any) -> Any:
        """`meta` may come as a JSON string (a warehouse column of text) or a struct."""
        if _missing(v):
            return {}
        if isinstance(v, str):
            try:
                v = json.loads(v) if v.strip() else {}
            except json.JSONDecodeError as exc:
                raise ValueError(f"meta is text but not JSON ({exc.msg})") from None
        return v

    @field_validator("nickname", "profile", mode="before")
    @classmethod
    def _none_is_empty(cls, v: Any) -> Any:
        return "" if _missing(v) else v

    @field_validator("texts", "tags", "frames", mode="before")
    @classmethod
    def _none_is_empty_list(cls, v: Any) -> Any:
        """None or NaN (a DataFrame's missing cell) is no items; a numpy array (pandas' list column) its items."""
        if _missing(v):
            return []
        return v.tolist() if isinstance(v, np.ndarray) else v


def _missing(v: Any) -> bool:
    """None, or the float NaN pandas puts in an empty cell of a DataFrame."""
    return v is None or (isinstance(v, float) and math.isnan(v))


def _describe(err: ValidationError) -> str:
    """First validation problem as 'field: message'."""
    e = err.errors()[0]
    loc = ".".join(str(p) for p in e["loc"]) or "record"
    return f"field '{loc}': {e['msg'].removeprefix('Value error, ')}"


FIELDS = ("anchor_id", "nickname", "profile", "texts", "tags", "frames", "meta")


def parquet_files(path: Path) -> list[Path]:
    """The Parquet files an input names: one file, a folder of them (part-*.parquet and the like), or a glob."""
    if any(c in str(path) for c in "*?["):
        files = sorted(Path(path.anchor or ".").glob(str(path.relative_to(path.anchor)) if path.anchor else str(path)))
    elif path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.suffix.lower() in {".parquet", ".pq"} and p.is_file())
    else:
        files = [path]
    return [f for f in files if not f.name.startswith((".", "_"))]


def is_parquet(path: Path) -> bool:
    return path.is_dir() or any(c in str(path) for c in "*?[") or path.suffix.lower() in {".parquet", ".pq"}


def _parquet_rows(path: Path, columns: dict[str, str], shard: tuple[int, int], notes: list[str]
                  ) -> Iterator[tuple[str, Any, int]]:
    """Rows of every row group of the input's Parquet files (row group g belongs to shard g % n), each with its
    row number over all the files."""
    import pyarrow.parquet as pq

    files = parquet_files(path)
    named = files or (sorted(path.rglob("*")) if path.is_dir() else [])
    jsonl = [f for f in named if f.suffix.lower() in {".jsonl", ".json"}]
    if jsonl:                   # part files are read as Parquet; JSONL comes as one file
        raise AnchorEmbedError(f"{path}: a folder or glob of part files is read as Parquet, and {jsonl[0].name} is "
                               "JSONL; give one JSONL file (concatenate the parts) or Parquet parts")
    if not files:
        raise AnchorEmbedError(f"{path}: no Parquet files here")
    wanted = column_fields(columns)
    group, (i, n), base = 0, shard, 0
    for f in files:
        try:
            pf = pq.ParquetFile(f)
        except Exception as exc:  # corrupt file: one line, not a traceback
            raise AnchorEmbedError(f"{f}: not a readable Parquet file ({exc})") from None
        names = pf.schema_arrow.names
        check_columns(f, names, columns)
        extra = sorted(set(names) - set(wanted))
        if extra and not notes:
            notes.append(f"{f}: columns not read: {', '.join(extra)}")
        read = [c for c in names if c in wanted]
        offset = 0
        for g in range(pf.num_row_groups):
            rows = pf.metadata.row_group(g).num_rows
            if group % n == i:
                table = pf.read_row_group(g, columns=read)
                for r, row in enumerate(table.to_pylist(), start=offset + 1):
                    where = f"{f.name} row {r}" if len(files) > 1 else f"row {r}"
                    yield where, {wanted[k]: v for k, v in row.items()}, base + r
            group, offset = group + 1, offset + rows
        base += offset


def _jsonl_rows(path: Path, shard: tuple[int, int]) -> Iterator[tuple[str, Any, int]]:
    """Rows of a JSONL file (non-empty line j belongs to shard j % n) with their line numbers; a line that is not
    UTF-8 is a bad row."""
    i, n = shard
    j = 0
    with open(path, "rb") as f:
        for number, raw in enumerate(f, start=1):
            if not raw.strip():
                continue
            j += 1
            if (j - 1) % n != i:
                continue
            try:
                line = raw.decode("utf-8-sig" if number == 1 else "utf-8")   # a byte-order mark opens some exports
            except UnicodeDecodeError as exc:
                yield (f"line {number}", ValueError(f"not UTF-8 (byte 0x{raw[exc.start]:02x} at column "
                                                    f"{exc.start + 1})"), number)
                continue
            yield f"line {number}", parse_line(line), number


def parse_line(line: str) -> Any:
    """One JSONL line as its JSON value, or a ValueError naming why it is not JSON."""
    try:
        return json.loads(line)
    except json.JSONDecodeError as exc:
        return ValueError(f"malformed JSON ({exc.msg})")


def column_fields(columns: dict[str, str] | None) -> dict[str, str]:
    """Table column -> record field, from `--columns` (field -> column; a field not named keeps its name)."""
    return {(columns or {}).get(f, f): f for f in FIELDS}


def check_columns(source: object, names: list[str], columns: dict[str, str] | None) -> None:
    """Refuse a table without its id column, or without a column `--columns` maps a field to (a misspelt
    mapping would leave that field empty on every row without a word), naming the table's columns."""
    columns = columns or {}
    id_col = columns.get("anchor_id", "anchor_id")
    if id_col not in names:
        raise AnchorEmbedError(f"{source}: no '{id_col}' column (pass --id-column NAME); columns: {names}")
    missing = {field: col for field, col in columns.items() if field != "anchor_id" and col not in names}
    if missing:
        raise AnchorEmbedError(f"{source}: no column {', '.join(repr(c) for c in missing.values())} (--columns "
                               + ", ".join(f"{k}={v}" for k, v in missing.items()) + f"); columns: {names}")


def rename_fields(row: dict, columns: dict[str, str]) -> dict:
    """A row's caller-named columns ({field: their name}) as record fields; a column named like a field mapped
    elsewhere is dropped (`profile=bio`: the profile is the bio, not a `profile` column beside it)."""
    named = {col: field for field, col in columns.items()}
    return {named.get(k, k): v for k, v in row.items() if k in named or k not in columns}


def _renamed_rows(rows, columns: dict[str, str], found: set[str]):
    """JSONL rows with `columns` renamed to record fields (as a table's are), noting the columns seen."""
    wanted = set(columns.values())
    for where, raw, order in rows:
        if isinstance(raw, dict):
            found.update(wanted & raw.keys())
            raw = rename_fields(raw, columns)
        yield where, raw, order


def check_fields(columns: dict[str, str] | None) -> None:
    """Refuse a `--columns` mapping to a field records do not have (a misspelt field would be dropped)."""
    unknown = set(columns or {}) - set(FIELDS)
    if unknown:
        raise AnchorEmbedError(f"--columns: unknown record field(s) {sorted(unknown)}; fields are {', '.join(FIELDS)}")


# a control character (Unicode's Cc: C0, DEL, C1) in a nickname or tag: ESC opens sequences that rewrite a
# terminal's screen; kept as written (data is not dropped), named in the report, shown escaped by `similar`
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def control_character(rec: StreamerRecord) -> str | None:
    """'U+001B in nickname' (or 'in tags') for the first control character of a record's nickname or tags, or
    None."""
    for name, text in (("nickname", rec.nickname), *(("tags", t) for t in rec.tags)):
        if found := CONTROL.search(text):
            return f"U+{ord(found.group()):04X} in {name}"
    return None


def parse_row(raw: Any) -> StreamerRecord | tuple[str, str]:
    """A raw row (a JSON value, a table row renamed to record fields, or the error reading it raised) as a
    record, or (kind, message) saying why it is bad: the one check of every input path."""
    if isinstance(raw, Exception):
        return ("not UTF-8" if str(raw).startswith("not UTF-8") else "malformed JSON"), str(raw)
    if not isinstance(raw, dict):
        return "not an object", f"expected a JSON object, got {type(raw).__name__}"
    if "anchor_id" not in raw or raw["anchor_id"] in (None, ""):
        return "missing anchor_id", "missing or empty anchor_id"
    try:
        return StreamerRecord.model_validate(raw)
    except ValidationError as exc:
        return "wrong type", _describe(exc)


def read_streamers(path: str | Path, strict: bool = False, columns: dict[str, str] | None = None,
                   shard: tuple[int, int] = (0, 1)) -> tuple[list[StreamerRecord], InputReport]:
    """Read streamer records from JSONL or Parquet (a file, a folder of part files, or a glob); bad rows are
    skipped and reported (or fatal when `strict`).

    `columns` maps record fields to a table's own column names ({"anchor_id": "uid", "profile": "bio"});
    `shard` (i, n) reads only the rows of shard i of n (Parquet: whole row groups; JSONL: every n-th line).
    The report's `kept_at` says where each record was read: its place in the whole input (a line number, or a
    row number over all part files) and that place in words.
    """
    path = Path(path)
    if not is_parquet(path) and not path.is_file():
        raise AnchorEmbedError(f"{path}: no such file")
    check_fields(columns)
    report = InputReport(source=str(path), strict=strict)
    notes: list[str] = []
    found: set[str] = set()                 # JSONL: the caller's columns seen, to refuse a mapping no row has
    rows = _parquet_rows(path, columns or {}, shard, notes) if is_parquet(path) else \
        _renamed_rows(_jsonl_rows(path, shard), columns, found) if columns else _jsonl_rows(path, shard)
    records: list[StreamerRecord] = []
    seen: dict[str, str] = {}
    controls, first_control = 0, ""
    for where, raw, order in rows:
        rec = parse_row(raw)
        if isinstance(rec, tuple):
            report.bad(where, *rec, at=order)
            continue
        if rec.anchor_id in seen:
            report.bad(where, "duplicate anchor_id",
                       f"duplicate anchor_id '{rec.anchor_id}' (first at {seen[rec.anchor_id]})", at=order)
            continue
        seen[rec.anchor_id] = where
        records.append(rec)
        if (control := control_character(rec)) is not None:
            controls += 1
            first_control = first_control or f"{where}, {control} of {rec.anchor_id!r}"
        report.kept_at.append((order, where))
    missing = {f: c for f, c in (columns or {}).items() if c not in found} if not is_parquet(path) else {}
    if missing and (records or report.skipped):     # rows were read (a shard past the last row reads none)
        raise AnchorEmbedError(f"{path}: no record has " + ", ".join(repr(c) for c in missing.values()) + " (--"
                               + ("id-column" if list(missing) == ["anchor_id"] else "columns " + ",".join(
                                   f"{k}={v}" for k, v in missing.items())) + ")")
    report.kept = len(records)
    if controls:
        notes.append(f"{controls} record(s) hold a control character in their nickname or tags (first: {first_control});"
                     " kept as written (`similar` shows it escaped)")
    report.notes = notes
    if not records and shard == (0, 1):
        raise AnchorEmbedError(f"{path}: no valid streamer records ({report.summary()})")
    return records, report
