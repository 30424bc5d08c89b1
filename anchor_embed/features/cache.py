"""Feature cache: frozen backbones run once per distinct text, frame and tag; training reads memory maps.

Layout of a cache folder:
  meta.json                 backbones that made it (refuses to mix), dims, limits
  {text,frame,tag}.npy      float16 features, one row per distinct atom (memory-mappable)
  {text,frame,tag}.keys.txt the atom key of each row (text sha1, frame file digest[#i], tag name)
  parts/                    rows encoded by an unfinished run: a crash resumes from them
  streamers/keys.txt        anchor_ids in record order
  streamers/nicknames.json  nicknames in record order (the nickname filter of transfer)
  streamers/{kind}_ptr.npy, {kind}_idx.npy   CSR lists of each streamer's atom rows
  streamers/text_field.npy  0 nickname, 1 profile, 2 other texts, per text atom
  report.json               counts, skipped rows, missing frames, throughput of the last run
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from anchor_embed import atomic
from anchor_embed.data.key_file import read_keys
from anchor_embed.data.npy_file import load_npy
from anchor_embed.errors import AnchorEmbedError

KINDS = ("text", "frame", "tag")
FIELD_NICKNAME, FIELD_PROFILE, FIELD_TEXT = 0, 1, 2
STORE_DTYPE = np.float16
PART_ROWS = 2048  # rows per checkpointed part
REBUILD = "the feature cache is damaged: run `anchor-embed features` again into a new --out"


def text_key(text: str) -> str:
    """A text's cache key: the sha1 of its UTF-8 bytes."""
    return hashlib.sha1(text.encode("utf-8")).hexdigest()


def tag_key(tag: str) -> str:
    """Tags are matched case-insensitively, whitespace folded."""
    return " ".join(str(tag).split()).lower()


@dataclass
class FeatureCache:
    """An opened cache: memory-mapped features plus each streamer's atom rows."""

    path: Path
    meta: dict
    keys: list[str]
    feats: dict[str, np.ndarray]          # kind -> (rows, dim) float16 memmap
    ptr: dict[str, np.ndarray]            # kind -> (n_streamers + 1,)
    idx: dict[str, np.ndarray]            # kind -> atom rows
    text_field: np.ndarray
    tag_names: list[str]
    tag_counts: np.ndarray                # streamers per tag row

    @property
    def n(self) -> int:
        return len(self.keys)

    def dim(self, kind: str) -> int:
        """Feature width of a kind (tags share the text backbone; 0 frames when the data has no images)."""
        return int(self.meta["image_dim"] if kind == "frame" else self.meta["text_dim"])

    def rows(self, kind: str, i: int) -> np.ndarray:
        """Feature rows of streamer i's atoms of one kind, in record order."""
        return self.idx[kind][self.ptr[kind][i]:self.ptr[kind][i + 1]]

    def key_index(self) -> dict[str, int]:
        """anchor_id -> streamer position."""
        return {k: i for i, k in enumerate(self.keys)}

    def nicknames(self) -> list[str]:
        """Each streamer's nickname (for the nickname filter); caches older than this file must be re-run."""
        f = self.path / "streamers" / "nicknames.json"
        if not f.is_file():
            raise AnchorEmbedError(f"{self.path}: cache has no nicknames.json; re-run `anchor-embed features` on it "
                                   "(nothing is re-encoded)")
        return json.loads(f.read_text(encoding="utf-8"))


def load_table(folder: Path, kind: str, mmap: bool = True) -> tuple[list[str], list[np.ndarray]]:
    """Keys and feature blocks of one kind: the merged file first, then any parts left by a crashed run."""
    keys: list[str] = []
    blocks: list[np.ndarray] = []
    main = folder / f"{kind}.npy"
    if main.is_file():
        blocks.append(load_npy(main, REBUILD, mmap=mmap))
        keys += read_keys(folder / f"{kind}.keys.txt")
    for part in sorted((folder / "parts").glob(f"{kind}-*.npy")):
        kfile = part.with_suffix(".keys.txt")
        if not kfile.is_file():  # a part is complete only with its keys file (written second)
            continue
        blocks.append(load_npy(part, REBUILD))
        keys += read_keys(kfile)
    if sum(b.shape[0] for b in blocks) != len(keys):
        raise AnchorEmbedError(f"{folder}: {kind} features and keys disagree in count; the cache is damaged")
    return keys, blocks


class PartWriter:
    """Buffers new rows of one kind and writes them as numbered parts (features, then keys)."""

    def __init__(self, folder: Path, kind: str, start: int) -> None:
        self.folder, self.kind, self.n = folder / "parts", kind, start
        self.keys: list[str] = []
        self.rows: list[np.ndarray] = []

    def add(self, keys: list[str], rows: np.ndarray) -> None:
        """Buffer rows; every PART_ROWS of them are written as one part at once."""
        self.keys += keys
        self.rows.append(rows.astype(STORE_DTYPE))
        while len(self.keys) >= PART_ROWS:
            self.flush(PART_ROWS)

    def flush(self, limit: int | None = None) -> None:
        """Write up to `limit` buffered rows (all by default) as the next part."""
        if not self.keys:
            return
        block = np.concatenate(self.rows)
        cut = len(self.keys) if limit is None else min(limit, len(self.keys))
        self.n += 1
        stem = self.folder / f"{self.kind}-{self.n:05d}"
        atomic.write_npy(stem.with_suffix(".npy"), block[:cut])
        atomic.write_lines(stem.with_suffix(".keys.txt"), self.keys[:cut])
        self.keys, self.rows = self.keys[cut:], [block[cut:]]


def copy_rows(donor: Path, out: Path, kind: str, keys: list[str], start_part: int) -> list[str]:
    """Copy the feature rows of `keys` that the `donor` cache holds into `out`'s parts; the keys copied.

    How `embed` reuses the model's own cache: atoms already encoded are copied, not re-encoded.
    """
    dkeys, blocks = load_table(donor, kind)
    pos = {k: i for i, k in enumerate(dkeys)}
    found = [k for k in keys if k in pos]
    if not found:
        return []
    idx = np.array([pos[k] for k in found], np.int64)
    starts = np.cumsum([0] + [len(b) for b in blocks])
    rows = np.empty((len(idx), blocks[0].shape[1]), STORE_DTYPE)
    which = np.searchsorted(starts, idx, side="right") - 1
    for b in np.unique(which):
        sel = np.flatnonzero(which == b)
        local = idx[sel] - starts[b]
        order = np.argsort(local)                      # memmap gathers want sorted rows
        rows[sel[order]] = blocks[b][local[order]]
    writer = PartWriter(out, kind, start_part)
    writer.add(found, rows)
    writer.flush()
    return found


def merge_parts(folder: Path, kind: str, dim: int) -> None:
    """Fold parts into the one memory-mappable file per kind, then remove them."""
    parts = sorted((folder / "parts").glob(f"{kind}-*.npy"))
    if not parts and (folder / f"{kind}.npy").is_file():
        return
    keys, blocks = load_table(folder, kind)
    merged = np.concatenate(blocks) if blocks else np.zeros((0, dim), STORE_DTYPE)
    atomic.write_npy(folder / f"{kind}.npy", merged.astype(STORE_DTYPE))
    atomic.write_lines(folder / f"{kind}.keys.txt", keys)
    for p in parts:
        p.with_suffix(".keys.txt").unlink(missing_ok=True)
        p.unlink(missing_ok=True)


# what a cache's features mean (another value makes other features) and how much of a streamer they hold
FEATURE_SPEC = ("text_backbone", "image_backbone", "meta_tags")
STREAMER_CAPS = ("max_texts", "max_frames", "max_tags", "max_text_chars")


def check_meta(out: Path, wanted: dict, caps: dict | None = None) -> None:
    """Refuse to add to a cache made with other backbones (their features would not mix), other meta tags, or
    other per-streamer caps (`caps`: max_texts, ...): runs made from the cache read its atom lists, and a
    rerun with other caps would rewrite them under those runs without a word."""
    meta_path = out / "meta.json"
    if not meta_path.is_file():
        return
    have = json.loads(meta_path.read_text())
    for key, value in (caps or {}).items():
        if key in have and have[key] != value:
            flag = "--" + key.replace("_", "-")
            raise AnchorEmbedError(
                f"{out}: this cache cuts streamers at {flag} {have[key]}, not {value}; models made from it read "
                f"its streamers as they are: use another --out" + (
                    f" (--reuse {out} copies its encoded features)" if key != "max_text_chars" else
                    " (texts cut otherwise are other texts: --reuse copies none of them)"))
    if have.get("meta_tags") != wanted.get("meta_tags"):
        raise AnchorEmbedError(
            f"{out}: this cache was made " + (f"with --meta-tags {have['meta_tags']!r}" if have.get("meta_tags")
                                               else "without --meta-tags")
            + (f", not {wanted['meta_tags']!r}" if wanted.get("meta_tags") else ", not without")
            + "; its streamers' tags would not agree: use another --out")
    for key in ("text_backbone", "text_identity", "image_backbone", "image_identity", "video_frames"):
        if have.get(key) != wanted.get(key):
            raise AnchorEmbedError(
                f"{out}: this cache was made with {key}={have.get(key)!r}, not {wanted.get(key)!r}; "
                "features of different backbones do not mix: use another --out")


def feature_rows(f: Path, dim: int) -> np.ndarray:
    """One kind's features, memory-mapped. No file, or an intact one of zero rows, is no features of that kind;
    a damaged file, or one that is no table of `dim` features, is one line naming it (by its content, not size:
    a file cut to its first bytes was taken for an empty one, and the next read was an IndexError)."""
    if not f.exists():
        return np.zeros((0, dim), STORE_DTYPE)
    table = load_npy(f, REBUILD, mmap=True)
    if table.ndim != 2 or (len(table) and table.shape[1] != dim):
        raise AnchorEmbedError(f"{f}: holds an array of shape {table.shape}, not rows of {dim} features; {REBUILD}")
    return table if len(table) else np.zeros((0, dim), STORE_DTYPE)


def open_cache(path: str | Path) -> FeatureCache:
    """Open a cache for reading (features memory-mapped)."""
    path = Path(path)
    if not (path / "meta.json").is_file() or not (path / "streamers" / "keys.txt").is_file():
        raise AnchorEmbedError(f"{path}: not a feature cache (run `anchor-embed features` first)")
    meta = json.loads((path / "meta.json").read_text())
    feats = {kind: feature_rows(path / f"{kind}.npy", int(meta["image_dim" if kind == "frame" else "text_dim"]))
             for kind in KINDS}
    s = path / "streamers"
    idx = {k: load_npy(s / f"{k}_idx.npy", REBUILD) for k in KINDS}
    for kind in KINDS:
        if len(idx[kind]) and not 0 <= idx[kind].min() <= idx[kind].max() < len(feats[kind]):
            raise AnchorEmbedError(f"{path / f'{kind}.npy'}: holds {len(feats[kind])} rows, but the streamers' "
                                   f"{kind} lists point to rows outside it; {REBUILD}")
    return FeatureCache(
        path=path, meta=meta, keys=read_keys(s / "keys.txt"), feats=feats,
        ptr={k: load_npy(s / f"{k}_ptr.npy", REBUILD) for k in KINDS},
        idx=idx,
        text_field=load_npy(s / "text_field.npy", REBUILD),
        tag_names=read_keys(path / "tag.keys.txt") if (path / "tag.keys.txt").is_file() else [],
        tag_counts=load_npy(s / "tag_counts.npy", REBUILD),
    )

