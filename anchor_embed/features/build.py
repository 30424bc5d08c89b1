"""`anchor-embed features`: fill a feature cache in four steps — collect each streamer's atoms, encode the
atoms the cache lacks (checkpointed in parts), write the per-streamer index, report what happened.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from rich.markup import escape

from anchor_embed import atomic
from anchor_embed.data.input_report import InputReport
from anchor_embed.data.media import (
    MediaReport,
    frame_keys,
    frame_problem,
    inside_root,
    is_video,
    load_image,
    load_video_frames,
)
from anchor_embed.data.records import StreamerRecord, read_streamers
from anchor_embed.errors import AnchorEmbedError
from anchor_embed.features.backbones import DEFAULT_IMAGE, DEFAULT_TEXT, backbone_identity, image_kind
from anchor_embed.features.cache import (
    FIELD_NICKNAME,
    FIELD_PROFILE,
    FIELD_TEXT,
    KINDS,
    PartWriter,
    check_meta,
    copy_rows,
    load_table,
    merge_parts,
    tag_key,
    text_key,
)
from anchor_embed.features.meta_tags import MetaField, canonical_spec, parse_meta_tags, tags_of_meta
from anchor_embed.locks import exclusive
from anchor_embed.progress import make_progress, say


@dataclass
class Atoms:
    """What each streamer shows, as cache keys: texts (key, field), frames (key, path, frame number), tags."""

    texts: list[list[tuple[str, int]]] = field(default_factory=list)
    frames: list[list[tuple[str, str, int]]] = field(default_factory=list)
    tags: list[list[str]] = field(default_factory=list)
    text_of_key: dict[str, str] = field(default_factory=dict)
    truncated: dict[str, int] = field(default_factory=lambda: {"texts": 0, "tags": 0})
    meta_not_numeric: dict[str, int] = field(default_factory=dict)  # per meta field: values left untagged


MAX_TAG_CHARS = 100  # a tag is a short name; longer ones are cut, like texts, so one row cannot flood memory


def _first_distinct(values, limit: int) -> list[str]:
    """The first `limit` distinct non-empty values, reading no further than needed."""
    out: dict[str, None] = {}
    for v in values:
        if len(out) >= limit:
            break
        if v:
            out[v] = None
    return list(out)


def collect_atoms(records: list[StreamerRecord], media: Path, video_frames: int, max_texts: int,
                  max_frames: int, max_tags: int, media_report: MediaReport, max_text_chars: int = 2000,
                  meta_fields: list[MetaField] | None = None) -> Atoms:
    """Each streamer's text, frame and tag keys within the per-streamer limits. Texts longer than
    `max_text_chars` are cut there (what a backbone reads is far shorter; counted in `truncated`), and frame
    paths outside the media root are refused and counted in `media_report`. Tags from `meta_fields` come
    first (a few per streamer, so the limit cuts the record's own tags, not them)."""
    atoms = Atoms()
    for r in records:
        items = [(r.nickname, FIELD_NICKNAME), (r.profile, FIELD_PROFILE)] + [(t, FIELD_TEXT) for t in r.texts]
        row = []
        for text, fld in items:
            if len(row) >= max_texts:
                break
            if text and text.strip():
                if len(text) > max_text_chars:
                    text = text[:max_text_chars]
                    atoms.truncated["texts"] += 1
                k = text_key(text)
                atoms.text_of_key[k] = text
                row.append((k, fld))
        atoms.texts.append(row)
        frames = []
        for rel in r.frames:
            if len(frames) >= max_frames:
                break
            frames += [(fk, rel, i) for i, fk in enumerate(frame_keys(rel, media, video_frames, media_report))]
        atoms.frames.append(frames[:max_frames])
        from_meta, bad = tags_of_meta(r.meta, meta_fields) if meta_fields else ([], [])
        for name in bad:
            atoms.meta_not_numeric[name] = atoms.meta_not_numeric.get(name, 0) + 1
        tags = from_meta + r.tags
        atoms.truncated["tags"] += sum(len(t) > MAX_TAG_CHARS for t in tags)
        atoms.tags.append(_first_distinct((tag_key(t[:MAX_TAG_CHARS]) for t in tags), max_tags))
    return atoms


def _encode_batches(items: list[tuple[str, object]], encode: Callable[[list], np.ndarray], writer: PartWriter,
                    batch: int, progress, label: str) -> float:
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


def _encode_frames(new_frames: dict[str, dict[str, int]], media: Path, image_model, writer: PartWriter,
                   media_report: MediaReport, progress) -> float:
    """Decode and encode every new frame (video frames sampled once per file); missing ones are counted."""
    task = progress.add_task("frames", total=sum(len(v) for v in new_frames.values()), info="")
    t0, done, batch_keys, batch_imgs = time.perf_counter(), 0, [], []
    for rel, wanted_by_key in new_frames.items():
        wanted_frames = list(wanted_by_key.items())
        path = inside_root(rel, media) or media / rel  # collect_atoms kept only paths inside the root
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
        progress.update(task, completed=done, info=f"{done / max(time.perf_counter() - t0, 1e-9):.1f}/s")
    if batch_imgs:
        writer.add(batch_keys, image_model.encode(batch_imgs))
    writer.flush()
    return time.perf_counter() - t0


@dataclass
class Encoded:
    """What one run encoded: counts, seconds per kind, feature widths, the media report."""

    new: dict[str, int]
    seconds: dict[str, float]
    dims: dict[str, int]
    media: MediaReport
    copied: dict[str, int] = field(default_factory=dict)


def _wanted_keys(atoms: Atoms) -> dict[str, list[str]]:
    return {"text": list(atoms.text_of_key), "tag": list(dict.fromkeys(t for row in atoms.tags for t in row)),
            "frame": list(dict.fromkeys(fk for row in atoms.frames for fk, _, _ in row))}


def encode_new(out: Path, atoms: Atoms, media: Path, text_backbone: str, image_backbone: str,
               threads: int, old_meta: dict, source: str, media_report: MediaReport,
               reuse: Path | None = None, device: str = "cpu") -> Encoded:
    """Run the backbones over the atoms the cache lacks, into parts (a crash resumes from them), then merge.

    With `reuse` (a cache made by the same backbones), atoms it holds are copied from it, not encoded.
    """
    from anchor_embed.features.backbones import load_image_backbone, load_text_backbone

    (out / "parts").mkdir(parents=True, exist_ok=True)
    tables = {kind: load_table(out, kind) for kind in KINDS}
    known = {kind: set(keys) for kind, (keys, _) in tables.items()}
    copied = {kind: 0 for kind in KINDS}
    if reuse is not None:
        for kind, keys in _wanted_keys(atoms).items():
            missing = [k for k in keys if k not in known[kind]]
            if missing:
                start = len(list((out / "parts").glob(f"{kind}-*.npy")))
                got = copy_rows(reuse, out, kind, missing, start)
                known[kind].update(got)
                copied[kind] = len(got)
        tables = {kind: load_table(out, kind) for kind in KINDS}
    have_dim = {kind: next((b.shape[1] for b in blocks if b.shape[0]), None) for kind, (_, blocks) in tables.items()}
    new_texts = [(k, t) for k, t in atoms.text_of_key.items() if k not in known["text"]]
    all_tags = list(dict.fromkeys(t for row in atoms.tags for t in row))
    new_tags = [(t, t) for t in all_tags if t not in known["tag"]]
    new_frames: dict[str, dict[str, int]] = {}  # path -> {frame key: frame number}, each key once
    for row in atoms.frames:
        for fk, rel, i in row:
            if fk not in known["frame"]:
                known["frame"].add(fk)              # the same file under two paths is decoded once
                new_frames.setdefault(rel, {})[fk] = i

    seconds: dict[str, float] = {}
    n_parts = {kind: len(list((out / "parts").glob(f"{kind}-*.npy"))) for kind in KINDS}
    with make_progress() as progress:
        if new_texts or new_tags:
            text_model = load_text_backbone(text_backbone, threads, device)
            text_dim = text_model.dim
            for kind, items, label in (("text", new_texts, "texts"), ("tag", new_tags, "tags")):
                seconds[kind] = _encode_batches(items, text_model.encode, PartWriter(out, kind, n_parts[kind]),
                                                256, progress, label)
        else:
            text_dim = old_meta.get("text_dim") or have_dim["text"] or have_dim["tag"]
        image_dim = old_meta.get("image_dim") or have_dim["frame"]
        if new_frames:
            image_model = load_image_backbone(image_backbone, threads, device)
            image_dim = image_model.dim
            seconds["frame"] = _encode_frames(new_frames, media, image_model,
                                              PartWriter(out, "frame", n_parts["frame"]), media_report, progress)
    if text_dim is None:
        raise AnchorEmbedError(f"{source}: no text or tags to encode")
    dims = {"text": int(text_dim), "tag": int(text_dim), "frame": int(image_dim or 0)}
    for kind in KINDS:
        merge_parts(out, kind, dims[kind])
    return Encoded({"text": len(new_texts), "frame": media_report.frames_ok, "tag": len(new_tags)},
                   seconds, dims, media_report, copied)


def write_streamer_index(out: Path, records: list[StreamerRecord], atoms: Atoms) -> dict:
    """Per-streamer CSR lists of atom rows over the merged tables; returns counts for the report."""
    pos = {kind: {k: i for i, k in enumerate(load_table(out, kind)[0])} for kind in KINDS}
    ptr = {kind: [0] for kind in KINDS}
    idx: dict[str, list[int]] = {kind: [] for kind in KINDS}
    fields: list[int] = []
    missing_frames = 0
    for t_row, f_row, g_row in zip(atoms.texts, atoms.frames, atoms.tags, strict=True):
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
    say_dropped(sdir / "keys.txt", {r.anchor_id for r in records})
    atomic.write_lines(sdir / "keys.txt", [r.anchor_id for r in records])
    atomic.write_json(sdir / "nicknames.json", [r.nickname for r in records])
    return {"distinct": {kind: len(pos[kind]) for kind in KINDS}, "missing_frames": missing_frames,
            "streamers_with": {kind: int(np.sum(np.diff(ptr[kind]) > 0)) for kind in KINDS}}


def read_checked(streamers: str | Path, strict: bool, columns: dict[str, str] | None, shard: tuple[int, int],
                 media: Path, strict_frames: bool) -> tuple[list[StreamerRecord], InputReport]:
    """`read_streamers`; with `strict_frames`, every frame a record names must also be a file under the media
    root (those past --max-frames too). The first problem in the input's order stops the run, a bad row (under
    `strict`) or a missing frame, as `spark embed` stops (rows used to be checked first, then frames)."""
    if not strict_frames:
        return read_streamers(streamers, strict=strict, columns=columns, shard=shard)
    try:
        records, report = read_streamers(streamers, strict=False, columns=columns, shard=shard)
    except AnchorEmbedError:            # no valid record: under strict, the first bad row says why
        if strict:
            read_streamers(streamers, strict=True, columns=columns, shard=shard)
        raise
    first = report.first_at if strict else None
    for (at, where), r in zip(report.kept_at, records, strict=True):
        if first is not None and at > first[0]:
            break
        why = next(((rel, w) for rel in r.frames if (w := frame_problem(rel, media))), None)
        if why:
            first = (at, f"{streamers}: {where}: frame {why[0]!r} {why[1]}")
            break
    if first is not None:
        raise AnchorEmbedError(f"{first[1]} (--strict stops at the first bad row)")
    return records, report


def _absolute(path: str | Path) -> str:
    """`path` made absolute (a URL as given)."""
    return str(path) if "://" in str(path) else str(Path(path).resolve())


def encoding_limits(meta: dict) -> dict:
    """The per-streamer limits a cache was built with (its meta.json), as `build_features` keywords: a model's
    new streamers must be cut as its training streamers were, or their vectors differ."""
    return {"max_texts": meta.get("max_texts", 16), "max_frames": meta.get("max_frames", 8),
            "max_tags": meta.get("max_tags", 16), "max_text_chars": meta.get("max_text_chars", 2000)}


def _compatible(reuse: str | Path | None, wanted: dict, max_text_chars: int) -> Path | None:
    """The cache to copy features from, if it was made by the same backbones and text cut (else None)."""
    if reuse is None or not (Path(reuse) / "meta.json").is_file():
        return None
    have = json.loads((Path(reuse) / "meta.json").read_text())
    same = all(have.get(k) == v for k, v in wanted.items() if k != "meta_tags") and have.get("max_text_chars", 2000) == max_text_chars
    if not same:
        say(f"[yellow]features[/]: {reuse} was made by other backbones or settings; nothing is copied from it")
    return Path(reuse) if same else None


def say_dropped(keys_file: Path, now: set[str]) -> None:
    """One line when a rerun's records leave out streamers the cache listed: it lists the records file given,
    not the union of every run's (their encoded atoms stay, for reuse), and a rerun on a slice dropped the rest
    without a word."""
    if not keys_file.is_file():
        return
    from anchor_embed.data.key_file import read_keys

    gone = [k for k in read_keys(keys_file) if k and k not in now]
    if gone:
        say(f"[yellow]features[/]: {len(gone)} streamer(s) of the cache's last run are not in these records and "
            f"are no longer listed (e.g. {', '.join(map(repr, gone[:3]))}); their encoded texts, frames and tags stay "
            "for reuse; give every streamer's record to keep them listed")


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
    max_text_chars: int = 2000,
    columns: dict[str, str] | None = None,
    reuse: str | Path | None = None,
    shard: tuple[int, int] = (0, 1),
    device: str = "auto",
    meta_tags: str | None = None,
    strict_frames: bool = False,
    say_reading: bool = True,
) -> dict:
    """Run the frozen backbones over what is new in `streamers` and (re)write the cache at `out`.

    `reuse` names another cache whose already-encoded atoms are copied instead of encoded (when it was made
    by the same backbones); `shard` (i, n) reads only that shard's rows of the records; `meta_tags` turns
    record `meta` fields into tags (`features.meta_tags`). `strict_frames` stops at the first frame that is
    not a file under the media root, before anything is written (without it such frames are counted and the
    first few named); `strict` alone stops only at bad rows, as `Model.encode` relies on. `say_reading` False
    leaves out the line on reading `streamers`, for a caller that read and reported the user's records itself.
    """
    out = Path(out)
    media = Path(media_root) if media_root else Path(streamers).parent
    for name, value, least in (("max_texts", max_texts, 0), ("max_frames", max_frames, 0), ("max_tags", max_tags, 0),
                               ("max_text_chars", max_text_chars, 1), ("video_frames", video_frames, 1)):
        if value < least:       # a negative count would slice texts and frames from the end without a word
            raise AnchorEmbedError(f"--{name.replace('_', '-')} {value}: must be at least {least}")
    image_kind(image_backbone)  # an unknown kind fails before any record is read
    meta_fields = parse_meta_tags(meta_tags)
    records, read_report = read_checked(streamers, strict, columns, shard, media, strict_frames)
    wanted = {"text_backbone": text_backbone, "text_identity": backbone_identity(text_backbone),
              "image_backbone": image_backbone, "image_identity": backbone_identity(image_backbone),
              "video_frames": video_frames}
    if meta_fields:           # absent, not null, without: an untagged cache's meta.json (its digest) is unchanged
        wanted["meta_tags"] = canonical_spec(meta_fields)
    with exclusive(out, "features run"):
        check_meta(out, wanted, {"max_texts": max_texts, "max_frames": max_frames, "max_tags": max_tags,
                                 "max_text_chars": max_text_chars})
        old_meta = json.loads((out / "meta.json").read_text()) if (out / "meta.json").is_file() else {}

        media_report = MediaReport()
        atoms = collect_atoms(records, media, video_frames, max_texts, max_frames, max_tags, media_report,
                              max_text_chars, meta_fields)
        if say_reading:         # not for records embed or Model.encode wrote to a file of their own
            read_report.say("features")
        absent = [f.name for f in meta_fields if not any(f.name in (r.meta or {}) for r in records)]
        if absent and say_reading:      # a misspelt field would add no tag to any streamer without a word
            say(f"[yellow]features[/]: --meta-tags field(s) {', '.join(map(repr, absent))} in no record's meta "
                "(misspelt?); they add no tags")
        elif absent:            # the model's spec, not the caller's flag: its tags are missing from these records
            say(f"[yellow]features[/]: the model reads meta field(s) {', '.join(map(repr, absent))} as tags, and no "
                "record here has them: these vectors lack those tags (give records their `meta`)")
        donor = _compatible(reuse, wanted, max_text_chars)
        from anchor_embed.training.device import resolve_device

        enc = encode_new(out, atoms, media, text_backbone, image_backbone, threads, old_meta, str(streamers),
                         media_report, donor, str(resolve_device(device)))
        counts = write_streamer_index(out, records, atoms)

        rates = {f"{k}_per_s": round(enc.new[k] / enc.seconds[k], 1) for k in ("text", "frame", "tag")
                 if enc.seconds.get(k)}
        report = {
            "streamers": len(records), "skipped_records": read_report.skipped,
            "skipped_examples": read_report.problems[:20],
            "distinct": counts["distinct"], "encoded_this_run": enc.new, "copied_from_cache": enc.copied,
            "missing_frames": counts["missing_frames"] + media_report.outside, "media": enc.media.to_dict(),
            "seconds": {k: round(v, 2) for k, v in enc.seconds.items()}, "throughput": rates,
            "streamers_with": counts["streamers_with"],
            "truncated": {**atoms.truncated, "max_text_chars": max_text_chars, "max_tag_chars": MAX_TAG_CHARS},
            "meta_not_numeric": atoms.meta_not_numeric,
        }
        meta = {**wanted, "text_dim": enc.dims["text"], "image_dim": enc.dims["frame"], "store_dtype": "float16",
                "max_texts": max_texts, "max_frames": max_frames, "max_tags": max_tags, "max_text_chars": max_text_chars,
                # absolute, as run.json records its inputs: the media-root hints of embed and the server compare
                # against it from any working directory
                "streamers_file": _absolute(streamers), "media_root": _absolute(media)}
        atomic.write_json(out / "report.json", report)
        atomic.write_json(out / "meta.json", meta)
        d = counts["distinct"]
        cut = f"texts cut at {max_text_chars} characters: {atoms.truncated['texts']}; " if atoms.truncated["texts"] else ""
        say(f"[bold]features[/]: {len(records)} streamer{'s' if len(records) != 1 else ''}; distinct texts {d['text']}, frames {d['frame']}, tags "
            f"{d['tag']}; encoded now: {enc.new}"
            f"{f', copied from {donor}: {enc.copied}' if donor else ''}; missing frames {counts['missing_frames']}"
            f"{f' ({media_report.corrupt} unreadable file(s) among them)' if media_report.corrupt else ''}"
            f"{f' (+{media_report.outside} outside the media root, refused)' if media_report.outside else ''}; "
            f"{cut}"
            f"{f'meta values not numbers (left untagged): {atoms.meta_not_numeric}; ' if atoms.meta_not_numeric else ''}"
            f"throughput {rates or 'nothing new'}")
        for line in media_report.lines():
            say(escape(line))                       # a path may hold [brackets]
    return report
