"""`anchor-embed demo`: make a small sample and run the main job on it, end to end."""

from __future__ import annotations

from pathlib import Path

from anchor_embed.progress import say


def run_demo(out: str | Path = "demo-out", n: int = 300, seed: int = 0) -> dict:
    """Sample -> features -> pretrain -> transfer (contrastive) -> evaluate (the serving jobs are still to come)."""
    from anchor_embed.demo_data import make_sample
    from anchor_embed.evaluate import evaluate
    from anchor_embed.features import build_features
    from anchor_embed.pretrain import pretrain
    from anchor_embed.transfer_run import transfer

    out = Path(out)
    sample = make_sample(out / "sample", n=n, seed=seed)
    say(f"[bold]demo[/]: sample of {sample['streamers']} streamers, {sample['with_id']} with ID embeddings, "
        f"{sample['interactions']} simulated clicks in {out / 'sample'}")
    results = {"sample": sample}
    results["features"] = build_features(out / "sample" / "streamers.jsonl", out / "features",
                                         media_root=out / "sample")
    run = out / "pretrain"
    results["pretrain"] = pretrain(out / "features", run, resume=run.exists(), epochs=15, batch_size=64,
                                   lr=3e-4, seed=seed)
    taught = out / "transfer"
    results["transfer"] = transfer(run, out / "sample" / "ids.npy", taught, resume=taught.exists(), epochs=15,
                                   batch_size=64, seed=seed)
    results["evaluate"] = evaluate(out / "features", out / "sample" / "ids.npy", models=[run, taught],
                                   out=out / "evaluation", seed=seed)
    say(f"[bold]demo[/]: done; artefacts in {out}")
    return results
