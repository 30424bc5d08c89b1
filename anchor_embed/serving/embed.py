"""`anchor-embed embed`: vectors for every streamer of a records file, in resumable shards.

VEC_DIR/shards/NNNNN-of-MMMMM/ holds one shard's vectors, keys, labels, each row's place in the input and a
`done` marker, so any scheduler can run shards in parallel and a crash reruns only unfinished ones; when every
shard is done they are merged into VEC_DIR/vectors.npy, keys.txt, labels.jsonl and meta.json, in input order
and with an anchor_id's later copies dropped: what one shard (0/1) writes.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Iterable
from pathlib import Path

import numpy as np

from anchor_embed import atomic
from anchor_embed.data.key_file import read_keys, write_keys
from anchor_embed.data.media import say_if_under_other_root
from anchor_embed.data.npy_file import load_npy
from anchor_embed.errors import AnchorEmbedError
from anchor_embed.progress import say


def parse_shard(shard: str) -> tuple[int, int]:
    try:
        i, n = (int(x) for x in shard.split("/"))
    except ValueError:
        raise AnchorEmbedError(f"--shard {shard!r}: expected i/n, e.g. 0/4") from None
    if not 0 <= i < n:
        raise AnchorEmbedError(f"--shard {shard!r}: need 0 <= i < n")
    return i, n


# what embed writes into its folder (and its lock and temporary files, hidden)
EMBED_FILES = {"fingerprint.json", "shards", "vectors.npy", "modalities.npy", "keys.txt", "labels.jsonl", "meta.json"}
# what other commands write into a vectors folder by default, made from its vectors: name and first line's fields
DERIVED = {"clusters.jsonl": ("anchor_id", "cluster"),                         # scatter assign
           "dedup-*.jsonl": ("group", "representative", "members")}           # dedup


def derived(names: Iterable[str], is_output: Callable[[str, Collection[str]], bool], prefix: str = "") -> list[str]:
    """Which of a vectors folder's entries `names` scatter and dedup wrote into it by default, made from its
    vectors: told by name (after `prefix`: the Spark jobs write `_dedup-T.jsonl`, which Spark's readers skip) and
    by `is_output(name, fields)`, the entry's first line holding the fields (a file of the same name that is no
    such output is the user's). `embed --overwrite` and `spark embed --overwrite` remove them with the vectors."""
    from fnmatch import fnmatchcase

    return sorted(n for n in names for pattern, fields in DERIVED.items()
                  if fnmatchcase(n, prefix + pattern) and is_output(n, fields))


def say_removed(job: str, names: list[str], out: str | Path) -> None:
    """One line naming what dedup and scatter had made from replaced vectors and was removed with them."""
    say(f"[bold]{job}[/]: removed {', '.join(names)} from {out}, made from the vectors replaced")


def _derived(out: Path) -> list[Path]:
    """The files scatter and dedup wrote into `out` by default (`derived`)."""
    from anchor_embed.serving.output_file import is_output

    return [out / n for n in derived((p.name for p in out.iterdir()), lambda n, fields: is_output(out / n, fields))]


def _embeds_own(out: Path) -> bool:
    """Whether `out` is a vectors folder embed made: its fingerprint.json, or (an older embed's) a meta.json of
    vectors, not of a feature cache or an index."""
    if (out / "fingerprint.json").is_file():
        return True
    try:
        meta = json.loads((out / "meta.json").read_text())
    except (OSError, ValueError):
        return False
    return isinstance(meta, dict) and {"model_hash", "count"} <= meta.keys() and not {"kind", "text_backbone"} & meta.keys()


def check_out(out: Path) -> None:
    """Refuse, before any work, an --out that is a file, or a folder embed did not make that holds anything: a
    run folder got vectors.npy, meta.json and shards/ mixed into it, a folder of the user's its keys.txt and
    labels.jsonl replaced. In a vectors folder embed made, the other files (an index, an export, predictions)
    are left alone: embed replaces only its own files and what scatter and dedup made from its vectors."""
    if out.exists() and not out.is_dir():
        raise AnchorEmbedError(f"--out {out}: a file; name the vectors folder to write")
    if not out.is_dir() or _embeds_own(out):
        return
    foreign = sorted(p.name for p in out.iterdir() if not p.name.startswith("."))
    if foreign:
        raise AnchorEmbedError(f"--out {out}: holds files embed did not write ({', '.join(foreign[:3])}"
                               f"{', ...' if len(foreign) > 3 else ''}); give --out a folder of its own")


def _fingerprint(model: Path, streamers: Path, media_root: Path, dtype: str, n: int, columns: dict | None,
                 adapter: Path | None = None) -> dict:
    """What the vectors of a folder are made from: the model's weights (and patch: `adapter` is an adapt run that
    changes vectors, not a --mode head run), the records' bytes, the settings."""
    from anchor_embed.fingerprint import adapter_digest, fingerprint, input_digest
    from anchor_embed.model.store import model_hash

    made = {"model_hash": model_hash(model), "streamers": input_digest(streamers),
            "media_root": str(Path(media_root).resolve()), "dtype": dtype, "shards": n, "columns": columns or {}}
    if adapter is not None:         # patched vectors are another model's: indexes and servers check this hash
        from anchor_embed.training.adapt import adapted_hash

        made["adapter"] = adapter_digest(adapter)
        made["model_hash"] = adapted_hash(made["model_hash"], adapter)
    return {**made, "fingerprint": fingerprint(**made)}


def _holds_vectors(out: Path) -> bool:
    """Merged vectors or a finished shard's: what a run with other inputs must not replace unasked (a run that
    failed before any shard was done leaves none, and does not block a corrected rerun)."""
    from anchor_embed.locks import writer

    shards = list((out / "shards").glob("*")) if (out / "shards").is_dir() else []
    # a shard still encoding (its lock held) is another run's work in progress, not to be cleared either
    return (out / "vectors.npy").is_file() or any((s / "done").is_file() or writer(s) for s in shards)


def _clear(out: Path) -> None:
    """Remove the vectors of `out` and, said in one line, what scatter and dedup made from them there (clusters
    and duplicate groups of vectors that are gone would be read silently by later commands)."""
    import shutil

    made_from_them = _derived(out)
    for p in [out / name for name in EMBED_FILES] + made_from_them:
        shutil.rmtree(p) if p.is_dir() else p.unlink(missing_ok=True)
    if made_from_them:
        say_removed("embed", [p.name for p in made_from_them], out)


def _claim(out: Path, made: dict, overwrite: bool) -> None:
    """Refuse a folder whose vectors were made from something else (one line), or clear it with --overwrite."""
    f = out / "fingerprint.json"
    if f.is_file():
        have = json.loads(f.read_text())
        if have.get("fingerprint") == made["fingerprint"]:
            return
        if not overwrite and _holds_vectors(out):
            from anchor_embed.fingerprint import refuse_other_origin

            refuse_other_origin(out, have, made)
        _clear(out)
    elif (out / "meta.json").is_file():
        if not overwrite:
            raise AnchorEmbedError(f"{out}: holds vectors of an unknown origin; pass --overwrite to replace them")
        _clear(out)
    atomic.write_json(f, made)


def _finished(sdir: Path, made: dict) -> bool:
    """A shard done for these inputs, with each row's place in the input (a shard written before places were
    kept is done again)."""
    done = sdir / "done"
    if not done.is_file() or not (sdir / "input_rows.npy").is_file():
        return False
    marker = atomic.read_json_object(done, f"the shard is damaged; {_redo(sdir)}")     # not JSON: one line
    return marker.get("fingerprint") == made["fingerprint"]


def _redo(sdir: Path) -> str:
    """What to do about a damaged file of a finished shard: embed that shard again (a shard folder that is gone
    is not done, and is embedded again by the next run of its --shard; the other shards are kept)."""
    i, n = (int(x) for x in sdir.name.split("-of-"))
    again = "the same `anchor-embed embed`" + (f" with --shard {i}/{n}" if n > 1 else "")
    return f"remove the folder {sdir} and run {again} again"


def _shard_array(sdir: Path, name: str, shape: tuple[int, ...]) -> np.ndarray:
    """A finished shard's .npy array, of `shape` (its first axis the shard's keys); missing, damaged or of another
    shape is one line saying to embed that shard again."""
    got = load_npy(sdir / name, _redo(sdir))
    if got.shape != shape:
        raise AnchorEmbedError(f"{sdir / name}: holds an array of shape {got.shape}, not {shape} ({shape[0]} keys "
                               f"in keys.txt beside it): the shard is damaged; {_redo(sdir)}")
    return got


def _shard_lines(sdir: Path, name: str, count: int | None = None) -> list[str]:
    """A finished shard's text file, one item a line (`count` of them when given); missing or of another count is
    one line saying to embed that shard again."""
    path = sdir / name
    if not path.is_file():
        raise AnchorEmbedError(f"{path}: no such file; {_redo(sdir)}")
    lines = read_keys(path)
    if count is not None and len(lines) != count:
        raise AnchorEmbedError(f"{path}: holds {len(lines)} lines, not {count} ({count} keys in keys.txt beside "
                               f"it): the shard is damaged; {_redo(sdir)}")
    return lines


def _merge_plan(finished: list[Path], streamers: Path, columns: dict | None, strict: bool
                ) -> tuple[list[list[str]], np.ndarray, np.ndarray]:
    """Which shard rows the merged folder keeps and where: per shard its keys, then over all shard rows in shard
    order a keep mask and each kept row's place in the merge. Rows go in input order; of an anchor_id in more
    than one shard only the first row is kept (what one shard keeps), and the rest are named, or refused
    under `strict` in the words a one-shard --strict read would use."""
    from rich.markup import escape

    keys = [_shard_lines(s, "keys.txt") for s in finished]
    rows = np.concatenate([_shard_array(s, "input_rows.npy", (len(ks),)) for s, ks in zip(finished, keys, strict=True)]
                          + [np.zeros(0, np.int64)])
    flat = [k for ks in keys for k in ks]
    order = np.argsort(rows, kind="stable")
    keep = np.zeros(len(flat), bool)
    seen: set[str] = set()
    dropped: list[str] = []
    for t in order:
        if flat[t] in seen:
            dropped.append(flat[t])
        else:
            seen.add(flat[t])
            keep[t] = True
    if dropped and strict:
        from anchor_embed.data.records import read_streamers

        read_streamers(streamers, strict=True, columns=columns)     # raises at the first repeated row
        raise AnchorEmbedError(f"{streamers}: anchor_id {dropped[0]!r} in two shards (--strict stops at the "
                               "first bad row)")
    if dropped:
        ids, more = len(set(dropped)), f" and {len(dropped) - 5} more" if len(dropped) > 5 else ""
        say(f"[bold]embed[/]: {ids} anchor_id{'s' * (ids > 1)} in more than one shard: kept the first row of each "
            f"in input order, as one shard does; dropped {len(dropped)} later row{'s' * (len(dropped) > 1)}: "
            f"{escape(', '.join(repr(k) for k in dropped[:5]))}{more}")
    kept = order[keep[order]]                                      # flat row numbers, in input order
    dest = np.full(len(flat), -1, np.int64)
    dest[kept] = np.arange(len(kept))
    return keys, keep, dest


def embed(model: str | Path, streamers: str | Path, out: str | Path, media_root: str | Path | None = None,
          dtype: str = "float32", shard: str = "0/1", strict: bool = False, batch_size: int = 512,
          columns: dict[str, str] | None = None, features: str | Path | None = None, overwrite: bool = False,
          adapter: str | Path | None = None, device: str = "auto") -> dict:
    """Embed one shard of `streamers` with the run `model`; merge all shards once every one is done.

    The shard reads only its own rows; atoms already in the model's feature cache (or `features`) are copied
    from it, not re-encoded. The folder records what made it: another model, other records or settings are
    refused unless `overwrite` (which also removes what scatter and dedup made there from the old vectors). A
    folder embed did not make that holds anything is refused, with or without `overwrite`; in one it made, the
    files it did not write are left alone (`check_out`).
    """
    from anchor_embed.features.build import build_features, encoding_limits
    from anchor_embed.features.cache import open_cache
    from anchor_embed.locks import exclusive
    from anchor_embed.model.batcher import Batcher, embed_all, embed_modalities
    from anchor_embed.model.store import load_model
    from anchor_embed.training.fit import run_info, warn_if_unfinished

    if features is not None:
        open_cache(features)        # a donor that is not a cache would be ignored and everything encoded again

    model, out, streamers = Path(model), Path(out), Path(streamers)
    if dtype not in ("float32", "float16"):
        raise AnchorEmbedError(f"--dtype {dtype!r}: choose float32 or float16")
    i, n = parse_shard(shard)
    check_out(out)
    patched = None                          # the adapt run whose patch changes the vectors
    if adapter is not None:                 # the run's model with a patch from `adapt` (its base must be `model`)
        from anchor_embed.training.adapt import load_adapted_of

        net, patch = load_adapted_of(adapter, model)
        if patch["mode"] == "head":         # README: a head predicts from the base's vectors, it changes none
            say(f"[yellow]embed[/]: {adapter} is a --mode head run: its vectors are the base's (the head predicts "
                f"'{patch.get('target')}' from them); embed without --adapter gives the same")
        else:
            patched = Path(adapter)
    else:
        net, _ = load_model(model)
    from anchor_embed.training.device import resolve_device

    net.to(resolve_device(device))
    warn_if_unfinished(model)
    media = Path(media_root) if media_root else (streamers if streamers.is_dir() else streamers.parent)
    # a head run's vectors are the base's, byte for byte: labelled with its hash, indexes and servers of the base
    # take them (predict takes the base's vectors for such a run)
    made = _fingerprint(model, streamers, media, dtype, n, columns, patched)
    sdir = out / "shards" / f"{i:05d}-of-{n:05d}"
    done = sdir / "done"
    finished_before = _finished(sdir, made)
    from anchor_embed.serving.encoder import check_content, feature_settings, start_cache

    own_cache, fmeta = feature_settings(model)      # the run's cache and the settings its features were made by
    if not finished_before:     # read (and, --strict, check every frame) before the folder is claimed or cleared
        from anchor_embed.features.build import read_checked

        records, report = read_checked(streamers, strict, columns, (i, n), media, strict_frames=strict)
        say_if_under_other_root([f for r in records for f in r.frames], media, fmeta.get("media_root"))
        rows = np.asarray([order for order, _ in report.kept_at], np.int64)
    out.mkdir(parents=True, exist_ok=True)
    with exclusive(out, "embed"):
        _claim(out, made, overwrite)
    if finished_before:
        say(f"[bold]embed[/]: shard {shard} already done")
    else:
        with exclusive(sdir, f"embed shard {shard}"):
            donor = Path(features) if features else own_cache
            if records:
                part = sdir / "records.jsonl"
                atomic.write_lines(part, (r.model_dump_json() for r in records))
                start_cache(sdir / "features", fmeta)
                build_features(part, sdir / "features", media_root=media, text_backbone=fmeta["text_backbone"],
                               image_backbone=fmeta["image_backbone"], video_frames=fmeta["video_frames"],
                               strict=strict, reuse=donor, device=device, meta_tags=fmeta.get("meta_tags"),
                               **encoding_limits(fmeta), say_reading=False)
                cache = open_cache(sdir / "features")
                batcher = Batcher.for_model(net, cache)
                # one shard of many may hold only records without content: a warning, as it is for one shard
                check_content(batcher, cache.keys, str(streamers), "embed", refuse=n == 1)
                vecs = embed_all(net, batcher, batch_size=batch_size).astype(dtype)
                parts = embed_modalities(net, batcher, batch_size).astype(np.float16)
                keys = cache.keys
            else:                                   # an empty shard still finishes, so the merge can happen
                vecs, keys = np.zeros((0, net.dim), dtype), []
                parts = np.zeros((0, 3, net.dim), np.float16)
            atomic.write_npy(sdir / "vectors.npy", vecs)
            atomic.write_npy(sdir / "modalities.npy", parts)
            write_keys(sdir / "keys.txt", keys)
            atomic.write_npy(sdir / "input_rows.npy", rows)
            atomic.write_jsonl(sdir / "labels.jsonl", ({"anchor_id": r.anchor_id, "nickname": r.nickname,
                                                        "tags": r.tags[:16], "profile": r.profile[:400],
                                                        "frames": r.frames[:4]} for r in records))
            atomic.write_json(done, {"fingerprint": made["fingerprint"], "count": len(records)})
        report.say(f"embed shard {shard}")
    shards = [out / "shards" / f"{j:05d}-of-{n:05d}" for j in range(n)]
    finished = [s for s in shards if _finished(s, made)]
    if len(finished) < n:
        say(f"[bold]embed[/]: {len(finished)}/{n} shards done; merge waits for the rest")
        return {"shards_done": len(finished), "shards": n}
    with exclusive(out, "embed merge"):
        shard_keys, keep, dest = _merge_plan(finished, streamers, columns, strict)
        count = int(keep.sum())
        vecs = np.empty((count, net.dim), dtype)
        mods = np.empty((count, 3, net.dim), np.float16)
        labels: list[str] = [""] * count
        keys = [""] * count
        start = 0
        for s, ks in zip(finished, shard_keys, strict=True):      # each shard's kept rows to their places
            at = slice(start, start + len(ks))
            take, to = keep[at], dest[at][keep[at]]
            vecs[to] = _shard_array(s, "vectors.npy", (len(ks), net.dim))[take]
            mods[to] = _shard_array(s, "modalities.npy", (len(ks), 3, net.dim))[take]
            lines = _shard_lines(s, "labels.jsonl", len(ks))
            for t, k, line in zip(dest[at], ks, lines, strict=True):
                if t >= 0:
                    keys[t], labels[t] = k, line + "\n"
            start += len(ks)
        atomic.write_npy(out / "vectors.npy", vecs)
        atomic.write_npy(out / "modalities.npy", mods)
        write_keys(out / "keys.txt", keys)
        atomic.write_text(out / "labels.jsonl", "".join(labels))
        meta = {"model_dir": str(model.resolve()), "model_hash": made["model_hash"],
                **({"adapter": str(patched.resolve())} if patched else {}), "dim": int(vecs.shape[1]),
                "dtype": dtype, "count": len(keys), "normalized": True,
                "feature_cache": str(donor) if (donor := run_info(model).get("features")) else None,
                "fingerprint": made["fingerprint"]}
        atomic.write_json(out / "meta.json", meta)
    say(f"[bold]embed[/]: {len(keys)} vectors of {vecs.shape[1]}-d written to {out}")
    return meta
