"""The mining space under --teacher-share: out-of-fold RidgeCV predictions blended with the ID embeddings."""

import numpy as np
import pytest
from sklearn.linear_model import RidgeCV
from sklearn.model_selection import KFold

from anchor_embed.evaluation.references import RIDGE_ALPHAS
from anchor_embed.transfer.teacher_blend import blend, out_of_fold_ridge


def _unit(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.mark.parametrize("seed", [0, 3])
def test_out_of_fold_predictions_are_scikit_learns_ridgecv_on_the_other_folds(seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(60, 7))
    y = x @ rng.normal(size=(7, 5)) + 0.5 * rng.normal(size=(60, 5))
    got = out_of_fold_ridge(x, y, seed)
    want = np.zeros_like(y)
    for fit_rows, rows in KFold(5, shuffle=True, random_state=seed).split(x):
        want[rows] = RidgeCV(alphas=RIDGE_ALPHAS).fit(x[fit_rows], _unit(y[fit_rows])).predict(x[rows])
    np.testing.assert_allclose(got, want, atol=1e-4)


def test_a_streamers_own_embedding_never_predicts_it():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(40, 4)), rng.normal(size=(40, 3))
    before = out_of_fold_ridge(x, y, 0)
    y2 = y.copy()
    y2[7] = [100.0, -50.0, 3.0]                 # row 7's own target changed: its prediction is not
    after = out_of_fold_ridge(x, y2, 0)
    np.testing.assert_allclose(after[7], before[7], atol=1e-6)
    assert not np.allclose(after, before, atol=1e-3)      # the other folds' predictions read it


def test_too_few_rows_for_a_fold_predict_nothing():
    """Two training streamers left one row per fit: a ValueError traceback from the ridge."""
    rng = np.random.default_rng(2)
    for n in (1, 2):
        assert not out_of_fold_ridge(rng.normal(size=(n, 3)), rng.normal(size=(n, 4)), 0).any()
    assert out_of_fold_ridge(rng.normal(size=(3, 3)), rng.normal(size=(3, 4)), 0).any()


def test_blend_of_unit_rows_at_a_share():
    t = np.array([[2.0, 0.0], [0.0, 3.0], [1.0, 1.0]])
    p = np.array([[0.0, 5.0], [0.0, 1.0], [-1.0, -1.0]])
    got = blend(t, p, 0.5)
    np.testing.assert_allclose(got[0], [2 ** -0.5, 2 ** -0.5], atol=1e-6)        # scale of either side ignored
    np.testing.assert_allclose(got[1], [0.0, 1.0], atol=1e-6)                      # the two agree
    np.testing.assert_allclose(got[2], [0.0, 0.0], atol=1e-6)                      # opposite: a zero row, no NaN
    np.testing.assert_allclose(blend(t, p, 1.0), _unit(t), atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(blend(t, p, 0.3)[:2], axis=1), 1.0, atol=1e-6)


def test_cli_transfer_with_a_teacher_share_mines_in_the_blend(sample, pretrained, tmp_path):
    """`transfer --teacher-share 0.5`: the mined pairs are the blend's top-k (not the ID embeddings'), the
    share is recorded with the mining, and validation still reads the ID embeddings (same held-out split)."""
    import json

    from anchor_embed.data.id_embeddings import read_id_embeddings
    from anchor_embed.features.cache import open_cache
    from anchor_embed.transfer.teacher_blend import mining_space
    from anchor_embed.vectorspace import knn, normalise_rows
    from tests.conftest import run_cli

    def pairs(out):
        return {(p["query"], p["neighbour"]) for p in map(json.loads, (out / "pairs.jsonl").read_text().splitlines())}

    args = ["transfer", "--pretrained", pretrained, "--id-emb", sample / "ids.npy", "--epochs", "1",
            "--batch-size", "16", "--holdout-frac", "0.2"]
    assert run_cli(*args, "--out", tmp_path / "one") == 0
    assert run_cli(*args, "--out", tmp_path / "half", "--teacher-share", "0.5") == 0
    run = json.loads((tmp_path / "half" / "run.json").read_text())
    assert run["mining"]["teacher_share"] == 0.5
    assert json.loads((tmp_path / "one" / "run.json").read_text())["mining"]["teacher_share"] == 1.0
    got, plain = pairs(tmp_path / "half"), pairs(tmp_path / "one")
    assert got != plain and {q for q, _ in got} == {q for q, _ in plain}          # same streamers, other pairs
    # the pairs are the top-k of the blend, recomputed here from the run's training streamers
    cache = open_cache(run["features"])
    ids, _ = read_id_embeddings(sample / "ids.npy")
    pos = cache.key_index()
    x = np.zeros((cache.n, ids.vectors.shape[1]), np.float32)
    at = np.array([pos[k] for k in ids.keys])
    x[at] = ids.vectors
    rows = np.array(sorted(pos[q] for q in {q for q, _ in got} | {n for _, n in got}))
    space = mining_space(cache, x, rows, 0.5, json.loads((tmp_path / "half" / "config.json").read_text())["seed"])
    idx, _ = knn(normalise_rows(space[rows]), np.arange(len(rows)), 10)
    want = {(cache.keys[rows[i]], cache.keys[rows[j]]) for i in range(len(rows)) for j in idx[i] if j >= 0}
    assert got == want
    # pairs.jsonl's id_score is the ID embeddings' cosine either way (it was the blend's under the share); the
    # blend's, which mined and ranked the pair, is mining_score beside it, present only under the share
    from anchor_embed.data.schemas import MinedPair

    unit, mined = normalise_rows(x), normalise_rows(space)
    for out, blended in ((tmp_path / "one", False), (tmp_path / "half", True)):
        lines = [json.loads(r) for r in (out / "pairs.jsonl").read_text().splitlines()]
        for p in lines:
            MinedPair.model_validate(p)
            a, b = pos[p["query"]], pos[p["neighbour"]]
            assert abs(p["id_score"] - float(unit[a] @ unit[b])) < 1e-4, p
            assert ("mining_score" in p) == blended, p
            if blended:
                assert abs(p["mining_score"] - float(mined[a] @ mined[b])) < 1e-4, p
        if blended:
            assert max(abs(p["mining_score"] - p["id_score"]) for p in lines) > 0.05
