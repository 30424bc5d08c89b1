"""Feature cache: frozen backbones run once per distinct text, frame and tag; training reads memory maps.

Layout of a cache folder:
  meta.json                 backbones that made it (refuses to mix), dims, limits
  {text,frame,tag}.npy      float16 features, one row per distinct atom (memory-mappable)
  {text,frame,tag}.keys.txt the atom key of each row (text sha1, 'path|size[#i]', tag name)
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
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from anchor_embed import atomic
from anchor_embed.backbones import DEFAULT_IMAGE, DEFAULT_TEXT, backbone_identity
from anchor_embed.errors import AnchorEmbedError
from anchor_embed.media import MediaReport, frame_keys, is_video, load_image, load_video_frames
from anchor_embed.progress import make_progress, say
from anchor_embed.records import StreamerRecord, read_streamers

KINDS = ("text", "frame", "tag")
FIELD_NICKNAME, FIELD_PROFILE, FIELD_TEXT = 0, 1, 2
STORE_DTYPE = np.float16
PART_ROWS = 2048  # rows per checkpointed part


def text_key(text: str) -> str:
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
        return self.idx[kind][self.ptr[kind][i]:self.ptr[kind][i + 1]]

    def key_index(self) -> dict[str, int]:
        return {k: i for i, k in enumerate(self.keys)}

    def nicknames(self) -> list[str]:
        """Each streamer's nickname (for the nickname filter); caches older than this file must be re-run."""
        f = self.path / "streamers" / "nicknames.json"
        if not f.is_file():
            raise AnchorEmbedError(f"{self.path}: cache has no nicknames.json; re-run `anchor-embed features` on it "
                                   "(nothing is re-encoded)")
        return json.loads(f.read_text(encoding="utf-8"))


def _load_table(folder: Path, kind: str, mmap: bool = True) -> tuple[list[str], list[np.ndarray]]:
    """Keys and feature blocks of one kind: the merged file first, then any parts left by a crashed run."""
    keys: list[str] = []
    blocks: list[np.ndarray] = []
    main = folder / f"{kind}.npy"
    if main.is_file():
        blocks.append(np.load(main, mmap_mode="r" if mmap else None))
        keys += (folder / f"{kind}.keys.txt").read_text(encoding="utf-8").splitlines()
    for part in sorted((folder / "parts").glob(f"{kind}-*.npy")):
        kfile = part.with_suffix(".keys.txt")
        if not kfile.is_file():  # a part is complete only with its keys file (written second)
            continue
        blocks.append(np.load(part))
        keys += kfile.read_text(encoding="utf-8").splitlines()
    if sum(b.shape[0] for b in blocks) != len(keys):
        raise AnchorEmbedError(f"{folder}: {kind} features and keys disagree in count; the cache is damaged")
    return keys, blocks


class _PartWriter:
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


def _merge(folder: Path, kind: str, dim: int) -> None:
    """Fold parts into the one memory-mappable file per kind, then remove them."""
    parts = sorted((folder / "parts").glob(f"{kind}-*.npy"))
    if not parts and (folder / f"{kind}.npy").is_file():
        return
    keys, blocks = _load_table(folder, kind)
    merged = np.concatenate(blocks) if blocks else np.zeros((0, dim), STORE_DTYPE)
    atomic.write_npy(folder / f"{kind}.npy", merged.astype(STORE_DTYPE))
    atomic.write_lines(folder / f"{kind}.keys.txt", keys)
    for p in parts:
        p.with_suffix(".keys.txt").unlink(missing_ok=True)
        p.unlink(missing_ok=True)


def _check_meta(out: Path, wanted: dict) -> None:
    meta_path = out / "meta.json"
    if not meta_path.is_file():
        return
    have = json.loads(meta_path.read_text())
    for key in ("text_backbone", "text_identity", "image_backbone", "image_identity", "video_frames"):
        if have.get(key) != wanted.get(key):
            raise AnchorEmbedError(
                f"{out}: this cache was made with {key}={have.get(key)!r}, not {wanted.get(key)!r}; "
                "features of different backbones do not mix: use another --out")


def _encode_new(kind: str, items: list[tuple[str, object]], encode: Callable[[list], np.ndarray],
                writer: _PartWriter, batch: int, progress, label: str) -> float:
    """Encode (key, payload) items in batches into the part writer; returns seconds spent."""
    if not items:
        return 0.0
    task = progress.add_task(label, total=len(items), info="")
    t0 = time.perf_counter()
    for i in range(0, len(items), batch):
        chunk = items[i:i + batch]
        writer.add([k for k, _ in chunk], encode([p for _, p in chunk]))
        done = i + len(chunk)
        progress.update(task, advance=len(chunk), info=f"{done / max(time.perf_counter() - t0, 1e-9):.0f}/s")
    writer.flush()
    return time.perf_counter() - t0


def build_features(
    streamers: str | Path,
    out: str | Path,
    media_root: str | Path | None = None,
    text_backbone: str = DEFAULT_TEXT,
    image_backbone: str = DEFAULT_IMAGE,
    video_frames: int = 4,
    max_texts: int = 16,
    max_frames: int = 8,
    max_tags: int = 16,
    strict: bool = False,
    threads: int = 2,
) -> dict:
    """Run the frozen backbones over what is new in `streamers` and (re)write the cache at `out`."""
    from anchor_embed.backbones import load_image_backbone, load_text_backbone

    out = Path(out)
    media = Path(media_root) if media_root else Path(streamers).parent
    records, read_report = read_streamers(streamers, strict=strict)
    wanted = {"text_backbone": text_backbone, "text_identity": backbone_identity(text_backbone),
              "image_backbone": image_backbone, "image_identity": backbone_identity(image_backbone),
              "video_frames": video_frames}
    _check_meta(out, wanted)
    old_meta = json.loads((out / "meta.json").read_text()) if (out / "meta.json").is_file() else {}
    (out / "parts").mkdir(parents=True, exist_ok=True)

    # what each streamer shows, as atom keys
    per_text: list[list[tuple[str, int]]] = []
    per_frame: list[list[tuple[str, str, int]]] = []
    per_tag: list[list[str]] = []
    texts: dict[str, str] = {}
    for r in records:
        items = [(r.nickname, FIELD_NICKNAME), (r.profile, FIELD_PROFILE)] + [(t, FIELD_TEXT) for t in r.texts]
        row = []
        for text, fld in items:
            if text and text.strip() and len(row) < max_texts:
                k = text_key(text)
                texts[k] = text
                row.append((k, fld))
        per_text.append(row)
        frames = []
        for rel in r.frames:
            for i, fk in enumerate(frame_keys(rel, media, video_frames)):
                if len(frames) < max_frames:
                    frames.append((fk, rel, i))
        per_frame.append(frames)
        tags = list(dict.fromkeys(tag_key(t) for t in r.tags if tag_key(t)))[:max_tags]
        per_tag.append(tags)

    say(f"[bold]features[/]: {read_report.summary()}")
    for line in read_report.problems[:5]:
        say(f"  skipped {line}")

    tables = {kind: _load_table(out, kind) for kind in KINDS}
    known = {kind: set(keys) for kind, (keys, _) in tables.items()}
    have_dim = {kind: next((b.shape[1] for b in blocks if b.shape[0]), None) for kind, (_, blocks) in tables.items()}
    new_texts = [(k, t) for k, t in texts.items() if k not in known["text"]]
    all_tags = list(dict.fromkeys(t for row in per_tag for t in row))
    new_tags = [(t, t) for t in all_tags if t not in known["tag"]]
    new_frames: dict[str, dict[str, int]] = {}  # path -> {frame key: frame number}, each key once
    for row in per_frame:
        for fk, rel, i in row:
            if fk not in known["frame"]:
                new_frames.setdefault(rel, {})[fk] = i

    media_report = MediaReport()
    timings: dict[str, float] = {}
    n_parts = {kind: len(list((out / "parts").glob(f"{kind}-*.npy"))) for kind in KINDS}
    with make_progress() as progress:
        if new_texts or new_tags:
            text_model = load_text_backbone(text_backbone, threads)
            text_dim = text_model.dim
            timings["text"] = _encode_new("text", new_texts, text_model.encode,
                                          _PartWriter(out, "text", n_parts["text"]), 256, progress, "texts")
            timings["tag"] = _encode_new("tag", new_tags, text_model.encode,
                                         _PartWriter(out, "tag", n_parts["tag"]), 256, progress, "tags")
        else:
            text_dim = old_meta.get("text_dim") or have_dim["text"] or have_dim["tag"]
        image_dim = old_meta.get("image_dim") or have_dim["frame"]
        if new_frames:
            image_model = load_image_backbone(image_backbone, threads)
            image_dim = image_model.dim
            writer = _PartWriter(out, "frame", n_parts["frame"])
            task = progress.add_task("frames", total=sum(len(v) for v in new_frames.values()), info="")
            t0, done, batch_keys, batch_imgs = time.perf_counter(), 0, [], []
            for rel, wanted_by_key in new_frames.items():
                wanted_frames = list(wanted_by_key.items())
                path = media / rel
                if is_video(rel):
                    frames = load_video_frames(path, len(wanted_frames), media_report)
                    imgs = [frames[i] if i < len(frames) else None for _, i in wanted_frames]
                else:
                    imgs = [load_image(path, media_report)]
                for (fk, _), im in zip(wanted_frames, imgs, strict=False):
                    done += 1
                    if im is None:
                        continue
                    media_report.frames_ok += 1
                    batch_keys.append(fk)
                    batch_imgs.append(im)
                if len(batch_imgs) >= 32:
                    writer.add(batch_keys, image_model.encode(batch_imgs))
                    batch_keys, batch_imgs = [], []
                progress.update(task, completed=done,
                                info=f"{done / max(time.perf_counter() - t0, 1e-9):.1f}/s")
            if batch_imgs:
                writer.add(batch_keys, image_model.encode(batch_imgs))
            writer.flush()
            timings["frame"] = time.perf_counter() - t0

    if text_dim is None:
        raise AnchorEmbedError(f"{streamers}: no text or tags to encode")
    dims = {"text": int(text_dim), "tag": int(text_dim), "frame": int(image_dim or 0)}
    for kind in KINDS:
        _merge(out, kind, dims[kind])

    # per-streamer CSR index over the merged tables
    pos = {kind: {k: i for i, k in enumerate(_load_table(out, kind)[0])} for kind in KINDS}
    ptr = {kind: [0] for kind in KINDS}
    idx: dict[str, list[int]] = {kind: [] for kind in KINDS}
    fields: list[int] = []
    missing_frames = 0
    for t_row, f_row, g_row in zip(per_text, per_frame, per_tag, strict=True):
        for k, fld in t_row:
            idx["text"].append(pos["text"][k])
            fields.append(fld)
        for fk, _, _ in f_row:
            if fk in pos["frame"]:
                idx["frame"].append(pos["frame"][fk])
            else:
                missing_frames += 1
        idx["tag"] += [pos["tag"][t] for t in g_row]
        for kind in KINDS:
            ptr[kind].append(len(idx[kind]))
    sdir = out / "streamers"
    for kind in KINDS:
        atomic.write_npy(sdir / f"{kind}_ptr.npy", np.asarray(ptr[kind], np.int64))
        atomic.write_npy(sdir / f"{kind}_idx.npy", np.asarray(idx[kind], np.int64))
    atomic.write_npy(sdir / "text_field.npy", np.asarray(fields, np.int8))
    tag_counts = np.bincount(np.asarray(idx["tag"], np.int64), minlength=len(pos["tag"]))
    atomic.write_npy(sdir / "tag_counts.npy", tag_counts.astype(np.int64))
    atomic.write_lines(sdir / "keys.txt", [r.anchor_id for r in records])
    atomic.write_json(sdir / "nicknames.json", [r.nickname for r in records])

    rates = {f"{k}_per_s": round(n / timings[k], 1) for k, n in
             (("text", len(new_texts)), ("frame", media_report.frames_ok), ("tag", len(new_tags)))
             if timings.get(k)}
    report = {
        "streamers": len(records), "skipped_records": read_report.skipped,
        "skipped_examples": read_report.problems[:20],
        "distinct": {kind: len(pos[kind]) for kind in KINDS},
        "encoded_this_run": {"text": len(new_texts), "frame": media_report.frames_ok, "tag": len(new_tags)},
        "missing_frames": missing_frames, "media": media_report.to_dict(),
        "seconds": {k: round(v, 2) for k, v in timings.items()}, "throughput": rates,
        "streamers_with": {kind: int(np.sum(np.diff(ptr[kind]) > 0)) for kind in KINDS},
    }
    meta = {**wanted, "text_dim": dims["text"], "image_dim": dims["frame"], "store_dtype": "float16",
            "max_texts": max_texts, "max_frames": max_frames, "max_tags": max_tags,
            "streamers_file": str(streamers), "media_root": str(media)}
    atomic.write_json(out / "report.json", report)
    atomic.write_json(out / "meta.json", meta)
    say(f"[bold]features[/]: {len(records)} streamers; distinct texts {len(pos['text'])}, frames "
        f"{len(pos['frame'])}, tags {len(pos['tag'])}; encoded now: {report['encoded_this_run']}; "
        f"missing frames {missing_frames}; throughput {rates or 'nothing new'}")
    return report


def open_cache(path: str | Path) -> FeatureCache:
    """Open a cache for reading (features memory-mapped)."""
    path = Path(path)
    if not (path / "meta.json").is_file() or not (path / "streamers" / "keys.txt").is_file():
        raise AnchorEmbedError(f"{path}: not a feature cache (run `anchor-embed features` first)")
    meta = json.loads((path / "meta.json").read_text())
    feats = {}
    for kind in KINDS:
        f = path / f"{kind}.npy"
        dim = meta["text_dim"] if kind != "frame" else meta["image_dim"]
        feats[kind] = np.load(f, mmap_mode="r") if f.is_file() and f.stat().st_size > 128 else \
            np.zeros((0, dim), STORE_DTYPE)
    s = path / "streamers"
    return FeatureCache(
        path=path, meta=meta, keys=(s / "keys.txt").read_text(encoding="utf-8").splitlines(), feats=feats,
        ptr={k: np.load(s / f"{k}_ptr.npy") for k in KINDS}, idx={k: np.load(s / f"{k}_idx.npy") for k in KINDS},
        text_field=np.load(s / "text_field.npy"),
        tag_names=(path / "tag.keys.txt").read_text(encoding="utf-8").splitlines()
        if (path / "tag.keys.txt").is_file() else [],
        tag_counts=np.load(s / "tag_counts.npy"),
    )


def records_by_key(records: list[StreamerRecord]) -> dict[str, StreamerRecord]:
    return {r.anchor_id: r for r in records}
