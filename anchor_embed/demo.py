"""`anchor-embed demo`: make a small sample and run the main job on it, end to end."""

from __future__ import annotations

from pathlib import Path

from anchor_embed.progress import say


def run_demo(out: str | Path = "demo-out", n: int = 300, seed: int = 0) -> dict:
    """Sample -> features (later stages extend this chain)."""
    from anchor_embed.demo_data import make_sample
    from anchor_embed.features import build_features

    out = Path(out)
    sample = make_sample(out / "sample", n=n, seed=seed)
    say(f"[bold]demo[/]: sample of {sample['streamers']} streamers, {sample['with_id']} with ID embeddings, "
        f"{sample['interactions']} simulated clicks in {out / 'sample'}")
    results = {"sample": sample}
    results["features"] = build_features(out / "sample" / "streamers.jsonl", out / "features",
                                         media_root=out / "sample")
    return results
