"""Streamer records (the input contract) and their readers for JSONL and Parquet."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from anchor_embed.data.input_report import InputReport
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

    @field_validator("anchor_id")
    @classmethod
    def _not_blank(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("anchor_id is blank")
        return v

    @field_validator("nickname", "profile", mode="before")
    @classmethod
    def _none_is_empty(cls, v: Any) -> Any:
        return "" if v is None else v

    @field_validator("texts", "tags", "frames", mode="before")
    @classmethod
    def _none_is_empty_list(cls, v: Any) -> Any:
        return [] if v is None else v


def _describe(err: ValidationError) -> str:
    """First validation problem as 'field: message'."""
    e = err.errors()[0]
    loc = ".".join(str(p) for p in e["loc"]) or "record"
    return f"field '{loc}': {e['msg']}"


def _parse_rows(path: Path) -> Iterator[tuple[str, Any]]:
    """Yield (location, raw object or exception) for each row of a JSONL or Parquet file."""
    if path.suffix.lower() in {".parquet", ".pq"}:
        import pyarrow.parquet as pq

        try:
            table = pq.read_table(path)
        except Exception as exc:  # corrupt file: one line, not a traceback
            raise AnchorEmbedError(f"{path}: not a readable Parquet file ({exc})") from None
        for i, row in enumerate(table.to_pylist(), start=1):
            yield f"row {i}", row
        return
    with open(path, encoding="utf-8", errors="replace") as f:
        for i, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                yield f"line {i}", json.loads(line)
            except json.JSONDecodeError as exc:
                yield f"line {i}", exc


def read_streamers(path: str | Path, strict: bool = False) -> tuple[list[StreamerRecord], InputReport]:
    """Read streamer records; bad rows are skipped and reported (or fatal when `strict`)."""
    path = Path(path)
    if not path.is_file():
        raise AnchorEmbedError(f"{path}: no such file")
    report = InputReport(source=str(path), strict=strict)
    records: list[StreamerRecord] = []
    seen: dict[str, str] = {}
    for where, raw in _parse_rows(path):
        if isinstance(raw, Exception):
            report.bad(where, "malformed JSON", f"malformed JSON ({raw.msg})")
            continue
        if not isinstance(raw, dict):
            report.bad(where, "not an object", f"expected a JSON object, got {type(raw).__name__}")
            continue
        if "anchor_id" not in raw or raw["anchor_id"] in (None, ""):
            report.bad(where, "missing anchor_id", "missing or empty anchor_id")
            continue
        try:
            rec = StreamerRecord.model_validate(raw)
        except ValidationError as exc:
            report.bad(where, "wrong type", _describe(exc))
            continue
        if rec.anchor_id in seen:
            report.bad(where, "duplicate anchor_id",
                       f"duplicate anchor_id '{rec.anchor_id}' (first at {seen[rec.anchor_id]})")
            continue
        seen[rec.anchor_id] = where
        records.append(rec)
    report.kept = len(records)
    if not records:
        raise AnchorEmbedError(f"{path}: no valid streamer records ({report.summary()})")
    return records, report
