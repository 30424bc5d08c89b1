"""The Python API as the README shows it, and `similar` as a new user calls it."""

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import anchor_embed
from tests.conftest import run_cli

README = Path(__file__).resolve().parents[2] / "README.md"


@pytest.mark.slow
def test_readme_api_snippet_runs(sample, pretrained, sample_index, capsys, tmp_path):
    code = re.search(r"### Python API\n\n```python\n(.*?)```", README.read_text(), re.S).group(1)
    records = [json.loads(x) for x in (sample / "streamers.jsonl").read_text().splitlines()[:4]]
    rows = [json.loads(x) for x in (sample / "streamers.jsonl").read_text().splitlines()]
    (tmp_path / "kind.csv").write_text("anchor_id,kind\n" + "".join(f"{r['anchor_id']},{r['meta']['kind']}\n"
                                                                   for r in rows))
    assert run_cli("adapt", "--pretrained", pretrained, "--labels", tmp_path / "kind.csv", "--target", "kind",
                   "--mode", "head", "--out", tmp_path / "head") == 0
    ns = {"run": pretrained, "records": records, "index": sample_index / "idx", "first_id": records[0]["anchor_id"],
          "adapt_run": tmp_path / "head"}
    exec(code, ns)
    out = capsys.readouterr().out
    assert ns["vectors"].shape == (4, ns["model"].dim) and ns["vectors"].dtype == np.float32
    assert [r["anchor_id"] for r in ns["labels"]] == [r["anchor_id"] for r in records]
    assert {r["prediction"] for r in ns["labels"]} <= {r["meta"]["kind"] for r in rows}
    assert f"{records[0]['anchor_id']} [(" in out and "no-such-id unknown; close:" in out
    assert set(anchor_embed.__all__) == {"AnchorEmbedError", "Lookup", "Model", "Neighbour", "Neighbours",
                                        "__version__", "load"}


@pytest.mark.slow
def test_encode_matches_embed_in_input_order_from_every_input_form(sample, pretrained, sample_index, tmp_path):
    import pyarrow as pa

    rows = [json.loads(x) for x in (sample / "streamers.jsonl").read_text().splitlines()]
    keys = (sample_index / "vec" / "keys.txt").read_text().split()
    want = np.load(sample_index / "vec" / "vectors.npy")
    model = anchor_embed.load(pretrained)
    pick = [5, 0, 17, 3]
    for given in ([rows[i] for i in pick], pa.Table.from_pylist([rows[i] for i in pick])):
        got = model.encode(given, media_root=sample)
        np.testing.assert_allclose(got, want[[keys.index(rows[i]["anchor_id"]) for i in pick]], atol=1e-5)
    whole = model.encode(sample / "streamers.jsonl")
    np.testing.assert_allclose(whole, want, atol=1e-5)
    with pytest.raises(anchor_embed.AnchorEmbedError, match="records\\[1\\]"):
        model.encode([rows[0], {"nickname": "no id"}])


def test_lookup_never_imports_torch_and_answers_typed(sample_index):
    code = ("import sys, anchor_embed; look = anchor_embed.Lookup.open(sys.argv[1]); "
            "a = look.similar(['s0001', 'S0002', 'zzz'], k=3); "
            "assert 'torch' not in sys.modules; "
            "print(a[0].found, len(a[0].neighbours), type(a[0].neighbours[0]).__name__, a[1].found, "
            "a[1].suggestions[0])")
    p = subprocess.run([sys.executable, "-c", code, str(sample_index / "idx")], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == ["True", "3", "Neighbour", "False", "s0002"]     # suggestions ignore case


def test_cli_similar_answers_the_known_ids_and_lists_the_unknown(sample_index, capsys):
    code = run_cli("similar", "s0001", "S0003", "s0002", "--index", sample_index / "idx", "--json", "-k", "3")
    out, err = capsys.readouterr()
    rows = [json.loads(x) for x in out.splitlines()]
    assert code == 1
    assert [r["anchor_id"] for r in rows] == ["s0001", "S0003", "s0002"]
    assert rows[1]["found"] is False and rows[1]["suggestions"][0] == "s0003"
    assert all(n["tags"] for n in rows[0]["neighbours"])                       # --json keeps tags
    assert "'S0003' is not in the index" in err and "did you mean 's0003'" in err


@pytest.mark.slow
def test_explain_gives_per_modality_cosines_and_shared_tags(sample, sample_cache, pretrained, sample_index, capsys):
    from anchor_embed.features.cache import open_cache
    from anchor_embed.model.batcher import Batcher, embed_rows
    from anchor_embed.model.store import load_model

    assert run_cli("similar", "s0000", "-k", "4", "--index", sample_index / "idx", "--json", "--explain") == 0
    row = json.loads(capsys.readouterr().out)
    cache = open_cache(sample_cache)
    net, _ = load_model(pretrained)
    batcher = Batcher.for_model(net, cache)
    pos = cache.key_index()
    rows = {json.loads(x)["anchor_id"]: json.loads(x) for x in (sample / "streamers.jsonl").read_text().splitlines()}
    for n in row["neighbours"]:
        e = n["explain"]
        for kind, name in (("text", "text"), ("frame", "frames"), ("tag", "tags")):
            a, b = pos["s0000"], pos[n["anchor_id"]]
            if not len(cache.rows(kind, a)) or not len(cache.rows(kind, b)):
                assert e[name] is None
                continue
            va, vb = embed_rows(net, batcher, [a, b], only=kind)
            assert e[name] == pytest.approx(float(va @ vb), abs=2e-3)      # stored float16
        shared = {t.lower() for t in rows["s0000"]["tags"]} & {t.lower() for t in rows[n["anchor_id"]]["tags"]}
        assert {t.lower() for t in e["shared_tags"]} == shared
    assert run_cli("similar", "s0000", "-k", "2", "--index", sample_index / "idx", "--explain") == 0
    table = capsys.readouterr().out
    assert "shared" in table and "frames" in table


def test_export_parquet_and_npy(sample_index, tmp_path):
    import pyarrow.parquet as pq

    vec = sample_index / "vec"
    keys, want = (vec / "keys.txt").read_text().split(), np.load(vec / "vectors.npy")
    assert run_cli("export", vec, "--out", tmp_path / "v.parquet") == 0
    t = pq.read_table(tmp_path / "v.parquet")
    assert t.column("anchor_id").to_pylist() == keys
    np.testing.assert_array_equal(np.array(t.column("vector").to_pylist(), np.float32), want)
    assert set(t.column("model_hash").to_pylist()) == {json.loads((vec / "meta.json").read_text())["model_hash"]}
    assert run_cli("export", vec, "--out", tmp_path / "v.npy", "--format", "npy") == 0
    np.testing.assert_array_equal(np.load(tmp_path / "v.npy"), want)
    assert (tmp_path / "v.keys.txt").read_text().split() == keys
    assert run_cli("export", vec, "--out", tmp_path / "v.bin", "--format", "npy") == 2
    assert run_cli("export", vec, "--out", tmp_path / "w.npy") == 0             # the suffix says the format
    np.testing.assert_array_equal(np.load(tmp_path / "w.npy"), want)
    for name, fmt in (("x.npy", "parquet"), ("x.csv", None), ("x.parquet", "npy")):   # never Parquet in an .npy
        assert run_cli("export", vec, "--out", tmp_path / name, *(["--format", fmt] if fmt else [])) == 2
        assert not (tmp_path / name).exists()


def test_model_card_written_and_updated_by_evaluate(sample, sample_cache, pretrained, tmp_path):
    card = (pretrained / "README.md").read_text()
    assert "# Model card" in card and "Intended use and limits" in card and "Apache-2.0" in card
    assert "self-supervised on the content alone" in card and "(kept)" in card
    run = tmp_path / "t"
    assert run_cli("transfer", "--pretrained", pretrained, "--id-emb", sample / "ids.npy", "--out", run,
                   "--epochs", "2", "--batch-size", "16", "--holdout-frac", "0.2") == 0
    assert "held out for evaluation, never read" in (run / "README.md").read_text()
    assert run_cli("evaluate", "--features", sample_cache, "--id-emb", sample / "ids.npy", "--model", run) == 0
    card = (run / "README.md").read_text()
    assert "## Evaluation" in card and "| **t** |" in card and "frozen backbones" in card


def test_lookup_takes_ids_as_records_do_and_says_what_it_cannot(sample_index):
    """An integer id is its decimal (records read it so), numpy's str_ a plain string in the answer; None, a
    float id or k '5' were TypeErrors from inside."""
    import numpy as np

    lookup = anchor_embed.Lookup.open(sample_index / "idx")
    first = lookup.keys.key(0)
    answer = lookup.similar([np.str_(first)], k=2)[0]
    assert type(answer.anchor_id) is str and answer.found
    assert not lookup.similar(5, k=2)[0].found and lookup.similar(5, k=2)[0].anchor_id == "5"
    for bad, said in ((None, "got NoneType"), ([1.5], "got float 1.5")):
        with pytest.raises(anchor_embed.AnchorEmbedError, match=said):
            lookup.similar(bad, k=2)
    with pytest.raises(anchor_embed.AnchorEmbedError, match="^k '5': a whole number"):
        lookup.similar(first, k="5")
