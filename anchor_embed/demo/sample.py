"""A small synthetic platform for the demo and tests: streamers of a few content kinds, with simulated clicks.

ID embeddings are made the way a business makes them: users click streamers of the kinds they like
(popularity-skewed), item co-occurrence -> positive PMI -> truncated SVD. So they are noisy and
popularity-driven, and they know nothing of the content beyond what users' taste implies.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from anchor_embed.vectorspace import normalise_rows

# six content kinds: profiles in English and Chinese, live titles, tags, and how their frames are drawn
KINDS: dict[str, dict] = json.loads((Path(__file__).with_name("kinds.json")).read_text(encoding="utf-8"))


def _draw(kind: str, rng: np.random.Generator, size: int = 96) -> Image.Image:
    spec = KINDS[kind]
    base = np.array(spec["colour"]) + rng.integers(-30, 30, 3)
    im = Image.new("RGB", (size, size), tuple(int(c) for c in np.clip(255 - base // 3, 0, 255)))
    d = ImageDraw.Draw(im)
    col = tuple(int(c) for c in np.clip(base, 0, 255))
    for _ in range(3):
        x, y = rng.integers(5, size - 40, 2)
        w = int(rng.integers(20, 38))
        shape = spec["shape"]
        if shape == "rect":
            d.rectangle([x, y, x + w, y + w // 2], fill=col)
        elif shape == "ellipse":
            d.ellipse([x, y, x + w, y + w], fill=col)
        elif shape == "triangle":
            d.polygon([(x, y + w), (x + w // 2, y), (x + w, y + w)], fill=col)
        elif shape == "line":
            d.line([(x, y), (x + w, y + w)], fill=col, width=5)
        elif shape == "star":
            d.polygon([(x + w // 2, y), (x + w, y + w), (x, y + w // 3), (x + w, y + w // 3), (x, y + w)], fill=col)
        else:
            for _ in range(6):
                cx, cy = rng.integers(5, size - 5, 2)
                d.ellipse([cx - 3, cy - 3, cx + 3, cy + 3], fill=col)
    return im


def make_sample(out: str | Path, n: int = 300, users: int = 3000, id_dim: int = 32, seed: int = 0) -> dict:
    """Write streamers.jsonl, media/, ids.npy + ids.keys.txt and interactions.csv under `out`."""
    out = Path(out)
    (out / "media").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    kinds = list(KINDS)
    rows, kind_of = [], []
    for i in range(n):
        kind = kinds[i % len(kinds)]
        spec = KINDS[kind]
        lang = "zh" if rng.random() < 0.4 else "en"
        frames = []
        for j in range(int(rng.integers(0, 3))):
            name = f"media/s{i:04d}_{j}.png"
            _draw(kind, rng).save(out / name)
            frames.append(name)
        tags = list(rng.choice(spec["tags"], size=int(rng.integers(1, 4)), replace=False))
        if rng.random() < 0.2:  # off-kind tags: content is noisy too
            tags.append(str(rng.choice(KINDS[kinds[int(rng.integers(len(kinds)))]]["tags"])))
        rows.append({
            "anchor_id": f"s{i:04d}", "nickname": f"{kind[:3]}_{rng.integers(1000, 9999)}",
            "profile": str(rng.choice(spec[lang])),
            "texts": [str(t) for t in rng.choice(spec["titles"], size=int(rng.integers(0, 3)), replace=False)],
            "tags": [str(t) for t in tags], "frames": frames, "meta": {"kind": kind, "lang": lang}})
        kind_of.append(kind)
    # near-duplicates (re-uploads, copied profiles) for dedup; one missing frame for the report
    for i in range(min(6, n // 20)):
        src = dict(rows[i * 7])
        rows.append({**src, "anchor_id": f"dup{i:02d}", "nickname": src["nickname"] + "_2",
                     "meta": {**src["meta"], "duplicate_of": src["anchor_id"]}})
        kind_of.append(kind_of[i * 7])
    rows[1]["frames"] = rows[1]["frames"] + ["media/missing.png"]
    with open(out / "streamers.jsonl", "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")

    # clicks: each user likes one or two kinds; popularity is Zipf-like
    m = len(rows)
    pop = 1.0 / (1 + rng.permutation(m)) ** 0.8
    kind_idx = np.array([kinds.index(k) for k in kind_of])
    inter = []
    for u in range(users):
        liked = rng.choice(len(kinds), size=int(rng.integers(1, 3)), replace=False)
        w = pop * np.where(np.isin(kind_idx, liked), 1.0, 0.05)
        items = rng.choice(m, size=int(rng.integers(5, 20)), replace=False, p=w / w.sum())
        inter += [(u, int(it)) for it in items]
    with open(out / "interactions.csv", "w") as f:
        f.write("user_id,item_id,weight,timestamp\n")
        for u, it in inter:
            f.write(f"u{u},{rows[it]['anchor_id']},1,0\n")
    vecs, keep = ppmi_svd(np.array(inter), users, m, id_dim, min_users=3)
    np.save(out / "ids.npy", vecs)
    (out / "ids.keys.txt").write_text("".join(rows[i]["anchor_id"] + "\n" for i in keep))
    return {"streamers": len(rows), "duplicates": len(rows) - n, "with_id": len(keep), "interactions": len(inter)}


def ppmi_svd(pairs: np.ndarray, n_users: int, n_items: int, dim: int, min_users: int = 3
             ) -> tuple[np.ndarray, np.ndarray]:
    """Item vectors from (user, item) pairs: co-occurrence -> positive PMI -> truncated SVD, L2-normalised."""
    ui = np.zeros((n_users, n_items), np.float32)
    ui[pairs[:, 0], pairs[:, 1]] = 1.0
    counts = ui.sum(0)
    keep = np.flatnonzero(counts >= min_users)
    co = ui[:, keep].T @ ui[:, keep]
    total = co.sum()
    row = co.sum(1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        pmi = np.log(co * total / (row @ row.T))
    ppmi = np.nan_to_num(np.maximum(pmi, 0), posinf=0.0)
    u, s, _ = np.linalg.svd(ppmi, full_matrices=False)
    return normalise_rows(u[:, :dim] * np.sqrt(s[:dim])), keep
