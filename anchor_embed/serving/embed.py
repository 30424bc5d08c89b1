"""`anchor-embed embed`: vectors for every streamer of a records file, in resumable shards.

VEC_DIR/shards/NNNNN-of-MMMMM/ holds one shard's vectors, keys, labels and a `done` marker, so any scheduler
can run shards in parallel and a crash reruns only unfinished ones; when every shard is done they are merged
into VEC_DIR/vectors.npy, keys.txt, labels.jsonl and meta.json.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from anchor_embed import atomic
from anchor_embed.data.key_file import read_keys, write_keys
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


def _fingerprint(model: Path, streamers: Path, media_root: Path, dtype: str, n: int, columns: dict | None,
                 adapter: Path | None = None) -> dict:
    """What the vectors of a folder are made from: the model's weights (and patch), the records' bytes, the
    settings."""
    from anchor_embed.fingerprint import file_digest, fingerprint, input_digest
    from anchor_embed.model.store import model_hash

    made = {"model_hash": model_hash(model), "streamers": input_digest(streamers),
            "media_root": str(Path(media_root).resolve()), "dtype": dtype, "shards": n, "columns": columns or {}}
    if adapter is not None:
        made["adapter"] = "+".join(file_digest(f) for f in sorted(Path(adapter).glob("*.safetensors")))
    return {**made, "fingerprint": fingerprint(**made)}


def _claim(out: Path, made: dict, overwrite: bool) -> None:
    """Refuse a folder made from something else (one line), or clear it with --overwrite."""
    import shutil

    f = out / "fingerprint.json"
    if f.is_file():
        have = json.loads(f.read_text())
        if have.get("fingerprint") == made["fingerprint"]:
            return
        if not overwrite:
            from anchor_embed.fingerprint import refuse_other_origin

            refuse_other_origin(out, have, made)
        for name in ("shards", "vectors.npy", "keys.txt", "labels.jsonl", "meta.json"):
            p = out / name
            shutil.rmtree(p) if p.is_dir() else p.unlink(missing_ok=True)
    elif out.exists() and (out / "meta.json").is_file() and not overwrite:
        raise AnchorEmbedError(f"{out}: holds vectors of an unknown origin; pass --overwrite to replace them")
    atomic.write_json(f, made)


def embed(model: str | Path, streamers: str | Path, out: str | Path, media_root: str | Path | None = None,
          dtype: str = "float32", shard: str = "0/1", strict: bool = False, batch_size: int = 512,
          columns: dict[str, str] | None = None, features: str | Path | None = None, overwrite: bool = False,
          adapter: str | Path | None = None, device: str = "auto") -> dict:
    """Embed one shard of `streamers` with the run `model`; merge all shards once every one is done.

    The shard reads only its own rows; atoms already in the model's feature cache (or `features`) are copied
    from it, not re-encoded. The folder records what made it: another model, other records or settings are
    refused unless `overwrite`.
    """
    from anchor_embed.features.build import build_features
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
    if adapter is not None:                 # the run's model with a patch from `adapt` (its base must be `model`)
        from anchor_embed.training.adapt import load_adapted

        net, info = load_adapted(adapter)
        if info["mode"] != "full" and Path(info["base"]).resolve() != model.resolve():
            raise AnchorEmbedError(f"{adapter}: a patch of {info['base']}, not of --model {model}")
    else:
        net, _ = load_model(model)
    from anchor_embed.training.device import resolve_device

    net.to(resolve_device(device))
    warn_if_unfinished(model)
    media = Path(media_root) if media_root else (streamers if streamers.is_dir() else streamers.parent)
    made = _fingerprint(model, streamers, media, dtype, n, columns, Path(adapter) if adapter else None)
    out.mkdir(parents=True, exist_ok=True)
    with exclusive(out, "embed"):
        _claim(out, made, overwrite)
    sdir = out / "shards" / f"{i:05d}-of-{n:05d}"
    done = sdir / "done"
    if done.is_file() and json.loads(done.read_text()).get("fingerprint") == made["fingerprint"]:
        say(f"[bold]embed[/]: shard {shard} already done")
    else:
        with exclusive(sdir, f"embed shard {shard}"):
            from anchor_embed.data.records import read_streamers

            info = run_info(model)
            fmeta = info.get("feature_meta") or json.loads((Path(info["features"]) / "meta.json").read_text())
            donor = Path(features) if features else (Path(info["features"]) if info.get("features") else None)
            records, report = read_streamers(streamers, strict=strict, columns=columns, shard=(i, n))
            if records:
                part = sdir / "records.jsonl"
                atomic.write_lines(part, (r.model_dump_json() for r in records))
                build_features(part, sdir / "features", media_root=media, text_backbone=fmeta["text_backbone"],
                               image_backbone=fmeta["image_backbone"], video_frames=fmeta["video_frames"],
                               strict=strict, max_text_chars=fmeta.get("max_text_chars", 2000), reuse=donor,
                               device=device, meta_tags=fmeta.get("meta_tags"))
                cache = open_cache(sdir / "features")
                batcher = Batcher.for_model(net, cache)
                vecs = embed_all(net, batcher, batch_size=batch_size).astype(dtype)
                parts = embed_modalities(net, batcher, batch_size).astype(np.float16)
                keys = cache.keys
            else:                                   # an empty shard still finishes, so the merge can happen
                vecs, keys = np.zeros((0, net.dim), dtype), []
                parts = np.zeros((0, 3, net.dim), np.float16)
            atomic.write_npy(sdir / "vectors.npy", vecs)
            atomic.write_npy(sdir / "modalities.npy", parts)
            write_keys(sdir / "keys.txt", keys)
            atomic.write_jsonl(sdir / "labels.jsonl", ({"anchor_id": r.anchor_id, "nickname": r.nickname,
                                                        "tags": r.tags[:16], "profile": r.profile[:400],
                                                        "frames": r.frames[:4]} for r in records))
            atomic.write_json(done, {"fingerprint": made["fingerprint"], "count": len(records)})
        report.say(f"embed shard {shard}")
    shards = [out / "shards" / f"{j:05d}-of-{n:05d}" for j in range(n)]
    finished = [s for s in shards if (s / "done").is_file()
                and json.loads((s / "done").read_text()).get("fingerprint") == made["fingerprint"]]
    if len(finished) < n:
        say(f"[bold]embed[/]: {len(finished)}/{n} shards done; merge waits for the rest")
        return {"shards_done": len(finished), "shards": n}
    with exclusive(out, "embed merge"):
        vecs = np.concatenate([np.load(s / "vectors.npy") for s in finished])
        keys = [k for s in finished for k in read_keys(s / "keys.txt")]
        if len(set(keys)) != len(keys):
            from collections import Counter

            dup = next(k for k, c in Counter(keys).items() if c > 1)
            raise AnchorEmbedError(f"{streamers}: anchor_id {dup!r} appears in two shards; the merged vectors "
                                   "would mix them (dedupe the input)")
        atomic.write_npy(out / "vectors.npy", vecs)
        atomic.write_npy(out / "modalities.npy", np.concatenate([np.load(s / "modalities.npy") for s in finished]))
        write_keys(out / "keys.txt", keys)
        atomic.write_text(out / "labels.jsonl", "".join((s / "labels.jsonl").read_text(encoding="utf-8")
                                                        for s in finished))
        meta = {"model_dir": str(model.resolve()), "model_hash": made["model_hash"], "dim": int(vecs.shape[1]),
                "dtype": dtype, "count": len(keys), "normalized": True,
                "feature_cache": str(donor) if (donor := run_info(model).get("features")) else None,
                "fingerprint": made["fingerprint"]}
        atomic.write_json(out / "meta.json", meta)
    say(f"[bold]embed[/]: {len(keys)} vectors of {vecs.shape[1]}-d written to {out}")
    return meta
