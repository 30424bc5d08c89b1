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


def embed(model: str | Path, streamers: str | Path, out: str | Path, media_root: str | Path | None = None,
          dtype: str = "float32", shard: str = "0/1", strict: bool = False, batch_size: int = 512) -> dict:
    """Embed one shard of `streamers` with the run `model`; merge all shards once every one is done."""
    from anchor_embed.data.records import read_streamers
    from anchor_embed.features.build import build_features
    from anchor_embed.features.cache import open_cache
    from anchor_embed.model.batcher import Batcher, embed_all
    from anchor_embed.model.store import load_model, model_hash

    model, out = Path(model), Path(out)
    if dtype not in ("float32", "float16"):
        raise AnchorEmbedError(f"--dtype {dtype!r}: choose float32 or float16")
    i, n = parse_shard(shard)
    sdir = out / "shards" / f"{i:05d}-of-{n:05d}"
    mhash = model_hash(model) if (model / "model.safetensors").is_file() else None
    if (sdir / "done").is_file() and json.loads((sdir / "done").read_text()).get("model_hash") == mhash:
        say(f"[bold]embed[/]: shard {shard} already done")
    else:
        net, _ = load_model(model)
        run = json.loads((model / "run.json").read_text())
        fmeta = run["feature_meta"] if "feature_meta" in run else \
            json.loads((Path(run["features"]) / "meta.json").read_text())
        records, report = read_streamers(streamers, strict=strict)
        mine = [r for j, r in enumerate(records) if j % n == i]
        part = sdir / "records.jsonl"
        atomic.write_lines(part, (r.model_dump_json() for r in mine))
        build_features(part, sdir / "features", media_root=media_root or Path(streamers).parent,
                       text_backbone=fmeta["text_backbone"], image_backbone=fmeta["image_backbone"],
                       video_frames=fmeta["video_frames"], strict=strict)
        cache = open_cache(sdir / "features")
        vecs = embed_all(net, Batcher.for_model(net, cache), batch_size=batch_size).astype(dtype)
        atomic.write_npy(sdir / "vectors.npy", vecs)
        atomic.write_lines(sdir / "keys.txt", cache.keys)
        atomic.write_jsonl(sdir / "labels.jsonl", ({"anchor_id": r.anchor_id, "nickname": r.nickname,
                                                    "tags": r.tags[:5]} for r in mine))
        atomic.write_json(sdir / "done", {"model_hash": mhash, "count": len(mine)})
        say(f"[bold]embed[/]: shard {shard}: {len(mine)} streamers ({report.summary()})")
    shards = sorted((out / "shards").glob(f"*-of-{n:05d}"))
    done = [s for s in shards if (s / "done").is_file()]
    if len(done) < n:
        say(f"[bold]embed[/]: {len(done)}/{n} shards done; merge waits for the rest")
        return {"shards_done": len(done), "shards": n}
    vecs = np.concatenate([np.load(s / "vectors.npy") for s in done])
    keys = [k for s in done for k in (s / "keys.txt").read_text(encoding="utf-8").splitlines()]
    atomic.write_npy(out / "vectors.npy", vecs)
    atomic.write_lines(out / "keys.txt", keys)
    atomic.write_text(out / "labels.jsonl", "".join((s / "labels.jsonl").read_text(encoding="utf-8") for s in done))
    meta = {"model_dir": str(model.resolve()), "model_hash": mhash, "dim": int(vecs.shape[1]), "dtype": dtype,
            "count": len(keys), "normalized": True, "feature_cache": None}
    atomic.write_json(out / "meta.json", meta)
    say(f"[bold]embed[/]: {len(keys)} vectors of {vecs.shape[1]}-d written to {out}")
    return meta
