"""probe: labels read with bad rows counted, scores equal scikit-learn's on the same folds, one table."""

import json
import warnings

import numpy as np
import pytest
from scipy.stats import spearmanr
from sklearn.linear_model import LogisticRegressionCV, RidgeCV
from sklearn.metrics import f1_score, make_scorer, r2_score, roc_auc_score
from sklearn.model_selection import KFold, StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from anchor_embed.errors import AnchorEmbedError
from anchor_embed.evaluation.probe import cv_probe, read_labels
from tests.conftest import run_cli


def test_labels_with_bad_rows(tmp_path):
    f = tmp_path / "l.csv"
    f.write_text("anchor_id,y\na,1.5\nb,\n,3\nc,x\na,2\nd,inf\ne,4\n")
    got, report = read_labels(f, "y", "regress")
    assert got == {"a": 1.5, "e": 4.0} and report.skipped == 5
    assert any("line 6" in p and "duplicate" in p for p in report.problems)
    with pytest.raises(AnchorEmbedError, match="needs columns 'anchor_id' and 'z'"):
        read_labels(f, "z", "regress")
    ragged = tmp_path / "r.csv"                  # a row with more fields than the header: a bad row, named
    ragged.write_text("anchor_id,y\na,1\nb,2,3\n")
    got, report = read_labels(ragged, "y", "regress")
    assert got == {"a": 1.0} and any("line 3" in p and "beyond the header" in p for p in report.problems)
    with pytest.raises(AnchorEmbedError, match="needs columns 'anchor_id' and 'y'"):
        read_labels(_write(tmp_path / "j.csv", '{"anchor_id": "a"}\n{"anchor_id": "b", "y": 2}\n'), "y",
                    "regress")                    # a JSONL given as labels: one line, not a TypeError


def _write(path, text):
    path.write_text(text)
    return path


def test_cv_probe_equals_the_formula_on_the_same_folds():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(120, 6))
    y_num = x @ rng.normal(size=6) + rng.normal(size=120)
    per = cv_probe(x, y_num, "regress", folds=4, seed=3)
    r2, rho = [], []
    for tr, te in KFold(4, shuffle=True, random_state=3).split(x):
        m = make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-2, 4, 13))).fit(x[tr], y_num[tr])
        r2.append(r2_score(y_num[te], m.predict(x[te])))
        rho.append(spearmanr(y_num[te], m.predict(x[te])).statistic)
    np.testing.assert_allclose(per["r2"], r2)
    np.testing.assert_allclose(per["spearman"], rho)
    y_cls = (x[:, 0] + 0.3 * rng.normal(size=120) > 0).astype(int)
    per = cv_probe(x, y_cls, "classify", folds=4, seed=3)
    f1, auc = [], []
    for tr, te in StratifiedKFold(4, shuffle=True, random_state=3).split(x, y_cls):
        m = make_pipeline(StandardScaler(), LogisticRegressionCV(Cs=8, cv=3, max_iter=2000, scoring=make_scorer(f1_score, average="macro")))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            m.fit(x[tr], y_cls[tr])
        f1.append(f1_score(y_cls[te], m.predict(x[te]), average="macro"))
        auc.append(roc_auc_score(y_cls[te], m.predict_proba(x[te])[:, 1]))
    np.testing.assert_allclose(per["macro_f1"], f1)
    np.testing.assert_allclose(per["roc_auc"], auc)
    assert np.mean(auc) > 0.9                                     # the signal is there and found


def test_cv_probe_on_two_named_classes_warns_nothing():
    """scikit-learn's LogisticRegressionCV hands a binary scorer `pos_label`; a plain macro-F1 scorer then
    warned on every fold (120 lines a probe); the choice of C is the same either way."""
    rng = np.random.default_rng(1)
    x = rng.normal(size=(90, 4))
    y = np.array(["no", "yes"])[(x[:, 0] + 0.5 * rng.normal(size=90) > 0).astype(int)]
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        warnings.simplefilter("ignore", FutureWarning)
        per = cv_probe(x, y, "classify", folds=3)
    f1 = []
    for tr, te in StratifiedKFold(3, shuffle=True, random_state=0).split(x, y):
        m = make_pipeline(StandardScaler(), LogisticRegressionCV(Cs=8, cv=3, max_iter=2000, scoring=make_scorer(f1_score, average="macro")))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            m.fit(x[tr], y[tr])
        f1.append(f1_score(y[te], m.predict(x[te]), average="macro"))
    np.testing.assert_allclose(per["macro_f1"], f1)


@pytest.mark.slow
def test_cli_probe_table_over_vector_sets(sample, sample_cache, pretrained, tmp_path):
    labels = tmp_path / "kind.csv"
    rows = [json.loads(x) for x in (sample / "streamers.jsonl").read_text().splitlines()]
    labels.write_text("anchor_id,kind\n" + "".join(f"{r['anchor_id']},{r['meta']['kind']}\n" for r in rows))
    vec = tmp_path / "vec"
    assert run_cli("embed", "--model", pretrained, "--streamers", sample / "streamers.jsonl", "--out", vec) == 0
    assert run_cli("probe", "--vectors", f"frozen={sample_cache}", "--vectors", f"pretrained={vec}", "--vectors",
                   f"ids={sample / 'ids.npy'}", "--labels", labels, "--target", "kind", "--folds", "3", "--out",
                   tmp_path / "p") == 0
    out = json.loads((tmp_path / "p" / "probe.json").read_text())["rows"]
    assert [r["vectors"] for r in out] == ["frozen", "pretrained", "ids"]
    assert len({r["streamers"] for r in out}) == 1                 # every set on the same streamers
    assert out[0]["macro_f1"] > 0.5                                # content shows the kind
    one = _write(tmp_path / "one.csv", "anchor_id,kind\n" + "".join(f"{r['anchor_id']},same\n" for r in rows))
    with pytest.raises(AnchorEmbedError, match="has one class \\('same'\\)"):    # not np.str_('same')
        from anchor_embed.evaluation.probe import probe

        probe([f"pretrained={vec}"], one, "kind", folds=3)
    rare = _write(tmp_path / "rare.csv", "anchor_id,kind\n" + "".join(
        f"{r['anchor_id']},{'odd' if i < 2 else r['meta']['kind']}\n" for i, r in enumerate(rows)))
    with pytest.raises(AnchorEmbedError, match="rare.csv: 'kind' class\\(es\\) 'odd' \\(2\\) have fewer than 3"):
        probe([f"pretrained={vec}"], rare, "kind", folds=3)
    with pytest.raises(AnchorEmbedError, match="the name\\(s\\) 'v' given twice"):
        probe([f"v={vec}", f"v={sample_cache}"], labels, "kind", folds=3)
    # a rerun into the same --out kept nothing of the earlier table: rows of the same labels and streamers stay
    assert run_cli("probe", "--vectors", f"frozen={sample_cache}", "--vectors", f"ids={sample / 'ids.npy'}",
                   "--labels", labels, "--target", "kind", "--folds", "3", "--out", tmp_path / "p") == 0
    again = json.loads((tmp_path / "p" / "probe.json").read_text())
    assert [r["vectors"] for r in again["rows"]] == ["frozen", "ids", "pretrained"]
    assert again["rows"][2] == out[1] and again["inputs"]["target"] == "kind"
    assert "| pretrained |" in (tmp_path / "p" / "probe.md").read_text()
    numbers = _write(tmp_path / "num.csv", "anchor_id,score\n" + "".join(
        f"{r['anchor_id']},{i * 0.37:.2f}\n" for i, r in enumerate(rows)))
    with pytest.raises(AnchorEmbedError, match="'score' has 7[0-9] distinct numbers, 7[0-9] of them on fewer than 3 "
                                               "streamers: a number to predict\\? pass --kind regress"):
        probe([f"pretrained={vec}"], numbers, "score", folds=3)


def test_a_constant_target_and_a_repeated_column_are_refused(tmp_path):
    """A regression target of one value scored r2 1.0 (in probe and adapt); a header naming a column twice read
    the last of the two without a word (both trained on a column of zeros and reported r2 1.0)."""
    const = _write(tmp_path / "c.csv", "anchor_id,y\na,5\nb,5\nc,5.0\n")
    with pytest.raises(AnchorEmbedError, match="'y' is 5 for every labelled streamer; nothing to predict"):
        read_labels(const, "y", "regress")
    assert len(read_labels(const, "y", "classify")[0]) == 3      # one class: refused where classes are counted
    twice = _write(tmp_path / "t.csv", "anchor_id,y,y\na,1,0\nb,2,0\n")
    with pytest.raises(AnchorEmbedError, match="column\\(s\\) 'y' appear more than once in the header"):
        read_labels(twice, "y", "regress")
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table([["a", "b"], [1.0, 2.0], [0.0, 0.0]], names=["anchor_id", "y", "y"]), tmp_path / "t.parquet")
    with pytest.raises(AnchorEmbedError, match="appear more than once"):
        read_labels(tmp_path / "t.parquet", "y", "regress")


def test_an_empty_vectors_path_is_refused(tmp_path, monkeypatch):
    """`--vectors a=` read the current folder as the vectors (Path("") is ".")."""
    from anchor_embed.evaluation.probe import read_vector_set

    monkeypatch.chdir(tmp_path)
    with pytest.raises(AnchorEmbedError, match="--vectors 'a=': no path; give NAME=PATH"):
        read_vector_set("a=")
