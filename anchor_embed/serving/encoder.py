"""A trained run as a Python object: `anchor_embed.load(run).encode(records)` -> one vector per record.

The model and its backbones are loaded once and kept; atoms the run's own feature cache already holds are
copied from it, so encoding known content costs a fusion forward, not a backbone pass.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterable
from contextlib import nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from anchor_embed.data.media import say_if_under_other_root
from anchor_embed.errors import AnchorEmbedError
from anchor_embed.progress import say

if TYPE_CHECKING:
    from pydantic import ValidationError

    from anchor_embed.model.batcher import Batcher


def _as_dicts(records: Any, columns: dict[str, str] | None = None) -> list[dict]:
    """Records given as dicts, a pandas DataFrame or a pyarrow Table, as a list of dicts in their order, with
    `columns` ({field: the caller's name}) renamed to record fields. A DataFrame whose index is the id column
    (`df.set_index("anchor_id")`) gives it back as a column."""
    from anchor_embed.data.records import check_columns, check_fields, rename_fields

    check_fields(columns)
    id_col = (columns or {}).get("anchor_id", "anchor_id")
    if hasattr(records, "to_pylist"):                       # pyarrow.Table / RecordBatch
        check_columns("records", list(records.column_names), columns)
        rows = records.to_pylist()
    elif hasattr(records, "to_dict") and hasattr(records, "columns"):   # pandas.DataFrame
        if id_col not in records.columns and id_col in (records.index.names or []):
            records = records.reset_index()
        check_columns("records", [str(c) for c in records.columns], columns)
        rows = records.to_dict(orient="records")
    elif isinstance(records, dict):
        rows = [records]
    elif isinstance(records, Iterable):
        rows = list(records)
    else:
        raise AnchorEmbedError(f"records: expected dicts, a DataFrame, a pyarrow Table or a file path, got "
                               f"{type(records).__name__}")
    if not columns:
        return rows
    return [rename_fields(r, columns) if isinstance(r, dict) else r for r in rows]


def feature_settings(run: Path) -> tuple[Path | None, dict]:
    """(the run's feature cache, its settings), read without torch, so a server can refuse a folder that is no
    model at startup rather than at its first request; a one-line error when either is missing."""
    if not ((run / "model_config.json").is_file() and (run / "model.safetensors").is_file()):
        raise AnchorEmbedError(f"{run}: no model here (expected model_config.json and model.safetensors)")
    try:
        info = json.loads((run / "run.json").read_text()) if (run / "run.json").is_file() else {}
        cache = Path(info["features"]) if info.get("features") else None
        meta = info.get("feature_meta") or (
            json.loads((cache / "meta.json").read_text()) if cache and (cache / "meta.json").is_file() else {})
    except (json.JSONDecodeError, AttributeError, TypeError):
        raise AnchorEmbedError(f"{run}: run.json or its feature cache's meta.json is not a JSON object") from None
    if not meta:
        where = f"its feature cache {cache} has no meta.json" if cache else "run.json names no feature cache"
        raise AnchorEmbedError(f"{run}: {where}; cannot tell which backbones to use")
    return cache, meta


def start_cache(folder: Path, fmeta: dict) -> None:
    """Give a new feature cache at `folder` the meta.json `build_features` would write for the run's settings
    `fmeta`, with the run's feature widths: records without text or tags (frames only) encode no text, so the
    cache could not know its text width, and such records were refused or not by what else their batch held
    (records without frames likewise got a warning that the cache, a temporary folder, had no frames)."""
    from anchor_embed import atomic
    from anchor_embed.features.backbones import backbone_identity
    from anchor_embed.features.build import encoding_limits
    from anchor_embed.features.meta_tags import canonical_spec, parse_meta_tags

    if (folder / "meta.json").is_file() or not fmeta.get("text_dim"):
        return
    meta = {"text_backbone": fmeta["text_backbone"], "text_identity": backbone_identity(fmeta["text_backbone"]),
            "image_backbone": fmeta["image_backbone"], "image_identity": backbone_identity(fmeta["image_backbone"]),
            "video_frames": fmeta["video_frames"], **encoding_limits(fmeta), "text_dim": int(fmeta["text_dim"]),
            "image_dim": int(fmeta.get("image_dim") or 0)}
    if spec := canonical_spec(parse_meta_tags(fmeta.get("meta_tags"))):    # absent when none, as build writes it
        meta["meta_tags"] = spec
    atomic.write_json(folder / "meta.json", meta)


def check_content(batcher: Batcher, ids: list[str], where: str, stage: str, refuse: bool = True) -> None:
    """Refuse (with `refuse`) records none of which shows anything the model reads (a --columns that matched no
    field, say), naming `where`; when only some show nothing, name them: each gets the same vector, of no
    content."""
    from rich.markup import escape

    empty = [ids[i] for i in batcher.without_atoms()]
    if refuse and ids and len(empty) == len(ids):
        raise AnchorEmbedError(f"{where}: no text or tags to encode, nor a readable frame the model reads (a record "
                               "needs a nickname, profile, texts, tags or frames)")
    if empty:
        say(f"[yellow]{stage}[/]: {len(empty)} record(s) show nothing the model reads (no text, tags or readable "
            f"frame) and get the same vector, of no content: {escape(_some(empty))}")


def _invalid(i: int, err: ValidationError) -> str:
    """Every problem of records[i] as 'records[i].field: message' on one line (pydantic's own message)."""
    said = []
    for e in err.errors():
        loc = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in e["loc"])
        said.append(f"records[{i}]{loc}: {e['msg'].removeprefix('Value error, ')}")
    return "; ".join(said)


def _some(ids: list[str], shown: int = 5) -> str:
    """A few anchor_ids for a message, and how many more."""
    more = f" and {len(ids) - shown} more" if len(ids) > shown else ""
    return ", ".join(repr(a) for a in ids[:shown]) + more


class Model:
    """A loaded run: its fusion model, its feature settings and the cache it was trained on; with `adapter` (an
    `adapt` run of it) the patched model and the head that predicts the adapt run's label."""

    def __init__(self, run: str | Path, adapter: str | Path | None = None) -> None:
        from anchor_embed.model.store import load_model, require_model
        from anchor_embed.training.fit import warn_if_unfinished

        require_model(run)          # a path to a folder with a model, in one line (None was a pathlib TypeError)
        self.run = Path(run)
        self.cache, self.feature_meta = feature_settings(self.run)
        self.head: dict | None = None
        if adapter is None:
            self.net, self.config = load_model(self.run)
        else:                       # as `embed --adapter`: its base must be this run's weights
            from anchor_embed import atomic
            from anchor_embed.serving.predict import read_head
            from anchor_embed.training.adapt import load_adapted_of

            self.net, patch = load_adapted_of(adapter, self.run)
            made_by = Path(adapter) if patch["mode"] == "full" else self.run     # whose model config the net is
            self.config = atomic.read_json_object(made_by / "model_config.json")
            self.head = read_head(adapter)
        warn_if_unfinished(self.run)

    @property
    def dim(self) -> int:
        return int(self.net.dim)

    def encode(self, records: Any, media_root: str | Path | None = None, batch_size: int = 512,
               modalities: bool = False, quiet: bool = False,
               columns: dict[str, str] | None = None) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """(n, dim) float32 unit vectors in the order of `records` (dicts, a DataFrame, a pyarrow Table, or a
        JSONL/Parquet path); every record needs a unique anchor_id, and a bad record is an error. With
        `modalities`, also each one's (n, 3, dim) text-only, frames-only and tags-only vectors (`--explain`).
        `quiet` keeps only warnings (a frame not read, say) on stderr. `columns` maps record fields to the
        caller's names, as the CLI's --id-column/--columns: {"anchor_id": "uid", "profile": "bio"}."""
        from anchor_embed.progress import warnings_only

        with warnings_only() if quiet else nullcontext():
            _, vecs, parts = self._encode(records, media_root, batch_size, modalities, columns)
        return (vecs, parts) if modalities else vecs

    def predict(self, records: Any, media_root: str | Path | None = None, batch_size: int = 512,
                quiet: bool = False, columns: dict[str, str] | None = None) -> list[dict]:
        """The adapt run's label for each record, in order (as `encode` reads them): {"anchor_id", "prediction"}
        (a number in the label's units, or a class with its "probability"), the rows `anchor-embed predict` writes
        without their model_id and rounding. Needs the model loaded with `adapter=`."""
        from anchor_embed.progress import warnings_only
        from anchor_embed.serving.predict import apply_head

        if self.head is None:
            raise AnchorEmbedError(f"{self.run}: predict needs an adapt run: anchor_embed.load(run, adapter=ADAPT_RUN)")
        with warnings_only() if quiet else nullcontext():
            ids, vecs, _ = self._encode(records, media_root, batch_size, False, columns)
        pred, prob = apply_head(self.head, vecs)
        if prob is None:
            return [{"anchor_id": a, "prediction": float(v)} for a, v in zip(ids, pred, strict=True)]
        return [{"anchor_id": a, "prediction": c, "probability": float(q)}
                for a, c, q in zip(ids, pred, prob, strict=True)]

    def _encode(self, records: Any, media_root: str | Path | None, batch_size: int, modalities: bool,
                columns: dict[str, str] | None) -> tuple[list[str], np.ndarray, np.ndarray | None]:
        """(anchor_ids, vectors, per-modality vectors when `modalities`) of `records`, in their order."""
        from pydantic import ValidationError

        from anchor_embed.data.records import StreamerRecord, read_streamers
        from anchor_embed.features.build import build_features, encoding_limits
        from anchor_embed.features.cache import open_cache
        from anchor_embed.model.batcher import Batcher, embed_all

        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            if isinstance(records, (str, Path)):
                rows, _ = read_streamers(records, strict=True, columns=columns)
                media = Path(media_root) if media_root else Path(records).parent
            else:
                rows = []
                for i, raw in enumerate(_as_dicts(records, columns)):
                    try:
                        rows.append(StreamerRecord.model_validate(raw))
                    except ValidationError as exc:
                        raise AnchorEmbedError(_invalid(i, exc)) from None
                media = Path(media_root) if media_root else Path.cwd()
            ids = [r.anchor_id for r in rows]
            if len(set(ids)) != len(ids):
                raise AnchorEmbedError("records: anchor_ids must be unique (a vector per streamer)")
            if not rows:
                return [], np.zeros((0, self.dim), np.float32), np.zeros((0, 3, self.dim), np.float32)
            say_if_under_other_root([f for r in rows for f in r.frames], media, self.feature_meta.get("media_root"))
            src = tmp / "records.jsonl"
            src.write_text("".join(r.model_dump_json() + "\n" for r in rows), encoding="utf-8")
            m = self.feature_meta
            start_cache(tmp / "features", m)
            try:
                build_features(src, tmp / "features", media_root=media, text_backbone=m["text_backbone"],
                               image_backbone=m["image_backbone"], video_frames=m["video_frames"], strict=True,
                               reuse=self.cache, meta_tags=m.get("meta_tags"), **encoding_limits(m), say_reading=False)
            except AnchorEmbedError as exc:         # name the caller's records, not this temporary file
                said = str(exc)
                if said == f"{src}: no text or tags to encode":
                    raise AnchorEmbedError(f"records {_some(ids)}: no text or tags to encode (a record needs a "
                                           "nickname, profile, texts or tags)") from None
                given = str(records) if isinstance(records, (str, Path)) else "records"
                raise AnchorEmbedError(said.replace(str(src), given)) from None
            cache = open_cache(tmp / "features")
            batcher = Batcher.for_model(self.net, cache)
            check_content(batcher, ids, str(records) if isinstance(records, (str, Path)) else f"records {_some(ids)}",
                          "encode")
            vecs = embed_all(self.net, batcher, batch_size=batch_size)
            if not modalities:
                return ids, vecs, None
            from anchor_embed.model.batcher import embed_modalities

            return ids, vecs, embed_modalities(self.net, batcher, batch_size)


def load(run: str | Path, adapter: str | Path | None = None) -> Model:
    """Open a run folder (pretrain or transfer) for encoding; `adapter`: an adapt run of it (its patch and head)."""
    return Model(run, adapter)
