import numpy as np

from anchor_embed.model.views import ViewConfig, overlap, split_views


def test_overlap_cap_holds_and_views_differ():
    rng = np.random.default_rng(0)
    cfg = ViewConfig(max_overlap=0.2, modality_drop=0.3)
    for n in range(2, 30):
        atoms = [("text", i) for i in range(n // 3)] + [("frame", i) for i in range(n // 3)] + \
                [("tag", i) for i in range(n - 2 * (n // 3))]
        for _ in range(20):
            a, b = split_views(atoms, cfg, rng)
            assert a and b and set(a) <= set(atoms) and set(b) <= set(atoms)
            assert overlap(a, b) <= 0.2 + 1e-9 or len(set(a) | set(b)) == 1
            if n >= 2:                      # two atoms or more: the views must differ
                assert set(a) != set(b)


def test_single_atom_streamer_gets_two_views():
    a, b = split_views([("tag", 0)], ViewConfig(), np.random.default_rng(0))
    assert a == b == [("tag", 0)]
    assert split_views([], ViewConfig(), np.random.default_rng(0)) == ([], [])
