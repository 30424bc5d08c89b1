"""`anchor-embed demo`: make a small sample and run the main job on it, end to end."""

from __future__ import annotations

import shutil
from pathlib import Path

from anchor_embed import atomic
from anchor_embed.errors import AnchorEmbedError
from anchor_embed.progress import say

MARK = "demo.json"      # written first into --out: the folder is a demo's, to resume or run again over
# what a demo writes into --out; a folder of these alone with the demo's sample is an earlier demo's (before MARK)
PARTS = frozenset({MARK, "sample", "features", "pretrain", "transfer", "evaluation", "vectors", "index"})
SAMPLE = ("streamers.jsonl", "ids.npy", "interactions.csv")


def check_out(out: Path) -> None:
    """Refuse an --out that is a file, or a folder holding anything but an earlier demo's output (it has MARK,
    or, made before MARK, only the demo's folders with its sample): the demo would mix its files into the user's,
    and replace a run folder of theirs named like one of its own. One line, before any work."""
    if out.exists() and not out.is_dir():
        raise AnchorEmbedError(f"{out}: a file; --out takes a folder for the demo's sample and artefacts")
    if not out.is_dir() or (out / MARK).is_file():
        return
    names = sorted(p.name for p in out.iterdir())
    if not names or (set(names) <= PARTS and all((out / "sample" / f).is_file() for f in SAMPLE)):
        return
    shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
    raise AnchorEmbedError(f"{out}: a folder holding files of its own ({shown}), not an earlier demo's output; "
                           "give --out a new or empty folder")


def resume_if_same_code(run: Path) -> bool:
    """True when `run` exists and was made by this code (the demo resumes it; a finished run is reused, and
    said so); a run made by other code is removed first, so the demo never shows an older version's figures."""
    from anchor_embed.training.fit import made_by_other_code

    if not run.exists():
        return False
    if made_by_other_code(run):
        say(f"[bold]demo[/]: {run} was made by other code; training it again")
        shutil.rmtree(run)
        return False
    say(f"[bold]demo[/]: {run} was made by this code; resuming it (a finished run is reused as it is)")
    return True


def run_demo(out: str | Path = "demo-out", n: int = 300, seed: int = 0) -> dict:
    """Sample -> features -> pretrain -> transfer -> evaluate -> embed -> index -> similar, dedup, scatter."""
    from anchor_embed.demo.sample import make_sample
    from anchor_embed.evaluation.evaluate import evaluate
    from anchor_embed.features.build import build_features
    from anchor_embed.training.pretrain import pretrain
    from anchor_embed.transfer.run import transfer

    out = Path(out)
    check_out(out)
    out.mkdir(parents=True, exist_ok=True)
    atomic.write_json(out / MARK, {"made_by": "anchor-embed demo", "n": n, "seed": seed})
    sample = make_sample(out / "sample", n=n, seed=seed)
    say(f"[bold]demo[/]: sample of {sample['streamers']} streamers ({n} + {sample['duplicates']} planted "
        f"near-duplicates for dedup), {sample['with_id']} with ID embeddings, "
        f"{sample['interactions']} simulated clicks in {out / 'sample'}")
    results = {"sample": sample}
    results["features"] = build_features(out / "sample" / "streamers.jsonl", out / "features",
                                         media_root=out / "sample")
    run = out / "pretrain"
    results["pretrain"] = pretrain(out / "features", run, resume=resume_if_same_code(run), epochs=15, batch_size=64,
                                   lr=3e-4, seed=seed)
    taught = out / "transfer"
    results["transfer"] = transfer(run, out / "sample" / "ids.npy", taught, resume=resume_if_same_code(taught), epochs=15,
                                   batch_size=64, seed=seed, holdout_frac=0.2)  # evaluate's hold-out, unseen
    results["evaluate"] = evaluate(out / "features", out / "sample" / "ids.npy", models=[run, taught],
                                   out=out / "evaluation", seed=seed)
    from anchor_embed.serving.dedup import dedup
    from anchor_embed.serving.embed import embed
    from anchor_embed.serving.index import build_index
    from anchor_embed.serving.scatter import assign_clusters
    from anchor_embed.serving.similar import similar

    embed(taught, out / "sample" / "streamers.jsonl", out / "vectors", media_root=out / "sample")
    build_index(out / "vectors", out / "index", model=taught)
    first = similar(["s0000"], out / "index", k=5)[0]
    say("[bold]demo[/]: similar s0000 -> " + ", ".join(f"{n['anchor_id']} ({n['nickname']}, {n['score']:.2f})"
                                                     for n in first["neighbours"]))
    results["dedup"] = dedup(out / "vectors", threshold=0.98)
    results["scatter"] = assign_clusters(out / "vectors", clusters=6, seed=seed)
    say(f"[bold]demo[/]: done; artefacts in {out}")
    return results
