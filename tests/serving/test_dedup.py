"""Dedup groups against a brute-force connected-components search."""

import numpy as np

from anchor_embed.serving.dedup import dedup_vectors


def _brute_groups(x, t):
    n = len(x)
    sims = x @ x.T
    comp = list(range(n))
    changed = True
    while changed:
        changed = False
        for i in range(n):
            for j in range(n):
                if i != j and sims[i, j] >= t and comp[i] != comp[j]:
                    comp[i] = comp[j] = min(comp[i], comp[j])
                    changed = True
    groups: dict[int, list[int]] = {}
    for i, c in enumerate(comp):
        groups.setdefault(c, []).append(i)
    return sorted(sorted(g) for g in groups.values() if len(g) > 1)


def test_dedup_against_brute_force():
    rng = np.random.default_rng(0)
    base = rng.normal(size=(40, 16))
    x = np.concatenate([base, base[:10] + rng.normal(scale=0.05, size=(10, 16)), base[:3] + 0.08]).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    got = sorted(sorted(g["members"]) for g in dedup_vectors(x, 0.97))
    assert got == _brute_groups(x, 0.97) and len(got) >= 10
    for g in dedup_vectors(x, 0.97):
        assert g["representative"] in g["members"] and 0.97 <= g["min_similarity"] <= g["max_similarity"]
    for assign in (1, 2):
        semi = sorted(sorted(g["members"]) for g in dedup_vectors(x, 0.97, clusters=4, assign=assign))
        assert all(any(set(s) <= set(b) for b in got) for s in semi)   # cluster-then-threshold only splits groups
    everywhere = dedup_vectors(x, 0.97, clusters=4, assign=4)  # every row in every cluster: the exact answer
    assert sorted(sorted(g["members"]) for g in everywhere) == got
    assert [g["min_similarity"] for g in everywhere] == [g["min_similarity"] for g in dedup_vectors(x, 0.97)]
