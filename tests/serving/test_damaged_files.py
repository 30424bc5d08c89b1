"""Lookups and loads on large k, numpy ints and damaged files: full answers and one-line errors, no tracebacks."""

import json
import re
import shutil

import numpy as np
import pytest

import anchor_embed
from anchor_embed import Lookup
from anchor_embed.data.key_file import write_keys
from anchor_embed.errors import AnchorEmbedError
from anchor_embed.serving.index import build_index
from tests.conftest import run_cli


@pytest.fixture(scope="module")
def clustered(tmp_path_factory):
    """1,500 vectors in 30 tight clusters: an approximate index's tuned setting holds few candidates."""
    root = tmp_path_factory.mktemp("clustered")
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(30, 24))
    x = centres[rng.integers(0, 30, 1500)] + 0.15 * rng.normal(size=(1500, 24))
    x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    vec = root / "vec"
    vec.mkdir()
    np.save(vec / "vectors.npy", x)
    write_keys(vec / "keys.txt", [f"s{i:04d}" for i in range(len(x))])
    (vec / "meta.json").write_text(json.dumps({"model_hash": "m", "model_dir": "m", "dim": 24, "count": len(x)}))
    return root


@pytest.mark.parametrize("kind", ["hnsw", "ivf_flat", "ivf_pq"])
def test_an_approximate_index_returns_k_neighbours_for_a_large_k(clustered, kind, capfd):
    """hnsw returned 79 of 1,903 neighbours for any k over 79, ivf_flat 138, ivf_pq 97, without a word: the
    tuned efSearch/nprobe held fewer candidates. The search widens until k are found (or every list is probed);
    the top of a large-k answer is the small-k answer, and ivf_pq's build prints no raw faiss warning."""
    build_index(clustered / "vec", clustered / kind, kind=kind)
    assert "WARNING" not in capfd.readouterr().err
    look = Lookup.open(clustered / kind)
    for k in (200, 800, 100_000):
        got = look.similar(["s0000", "s0007"], k=k)
        assert [len(a.neighbours) for a in got] == [min(k, 1499)] * 2, (kind, k)
        assert all(n.anchor_id != a.anchor_id for a in got for n in a.neighbours)
    assert len(look.similar(["s0000"], k=np.int64(300))[0].neighbours) == 300       # numpy's int too
    small = [n.anchor_id for n in look.similar(["s0000"], k=5)[0].neighbours]
    assert [n.anchor_id for n in look.similar(["s0000"], k=200)[0].neighbours][:3] == small[:3]


def test_numpy_integer_k_and_the_api_wording(sample_index):
    look = Lookup.open(sample_index / "idx")
    first = look.keys.key(0)
    assert len(look.similar([first], k=np.int64(3))[0].neighbours) == 3       # was faiss's SWIG TypeError
    with pytest.raises(AnchorEmbedError, match="^k 0: a whole number, at least 1$"):   # not the CLI's '-k'
        look.similar([first], k=0)
    for bad in (True, 2.0, "3"):                                   # still refused: not whole numbers
        with pytest.raises(AnchorEmbedError, match=f"^k {re.escape(repr(bad))}: a whole number, at least 1$"):
            look.similar([first], k=bad)
    answer = look.similar([first, "no-such-id"], k=2)
    assert answer[0].to_dict()["found"] is True and answer[1].to_dict()["found"] is False


def test_damaged_model_and_index_files_are_one_line(pretrained, sample_index, sample, tmp_path, capsys):
    for bad in (None, 5):
        with pytest.raises(AnchorEmbedError, match="expected a run folder's path"):
            anchor_embed.load(bad)
        with pytest.raises(AnchorEmbedError, match="expected an index folder's path"):
            Lookup.open(bad)
    run = tmp_path / "run"
    shutil.copytree(pretrained, run, ignore=shutil.ignore_patterns("checkpoints"))
    (run / "model_config.json").write_text("{oops")
    with pytest.raises(AnchorEmbedError, match="model_config.json: not JSON"):
        anchor_embed.load(run)
    shutil.copy(pretrained / "model_config.json", run / "model_config.json")
    (run / "model.safetensors").write_bytes((pretrained / "model.safetensors").read_bytes()[:500])
    with pytest.raises(AnchorEmbedError, match="model.safetensors: unreadable .*damaged"):
        anchor_embed.load(run)
    idx = tmp_path / "idx"
    shutil.copytree(sample_index / "idx", idx)
    (idx / "meta.json").write_text("{oops")
    capsys.readouterr()
    assert run_cli("similar", Lookup.open(sample_index / "idx").keys.key(0), "--index", idx) == 2
    err = capsys.readouterr().err
    assert "meta.json: not JSON" in err and "Traceback" not in err
    shutil.copy(pretrained / "model.safetensors", run / "model.safetensors")
    (run / "run.json").write_text((pretrained / "run.json").read_text()[:40])           # truncated
    assert run_cli("transfer", "--pretrained", run, "--id-emb", sample / "ids.npy", "--out", tmp_path / "t") == 2
    err = capsys.readouterr().err
    assert "run.json: not JSON" in err and "Traceback" not in err
    (run / "run.json").write_text('{"group": 0}\n{"group": 1}\n')                     # another command's lines
    assert run_cli("transfer", "--pretrained", run, "--id-emb", sample / "ids.npy", "--out", tmp_path / "t") == 2
    assert "run.json: not JSON (Extra data" in capsys.readouterr().err


def test_index_build_writes_only_into_an_index_folder(sample_index, pretrained, tmp_path, capsys):
    """index build wrote index.faiss, vectors.npy and a meta.json into a run folder or a folder of notes."""
    run = tmp_path / "run"
    shutil.copytree(pretrained, run, ignore=shutil.ignore_patterns("checkpoints"))
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "notes.txt").write_text("mine")
    capsys.readouterr()
    for out in (run, notes):
        assert run_cli("index", "build", sample_index / "vec", "--out", out) == 2
        assert "holds files index build does not write" in capsys.readouterr().err
        assert not (out / "index.faiss").exists()
    again = tmp_path / "idx"
    shutil.copytree(sample_index / "idx", again)
    (again / "reviews.jsonl").write_text("")
    assert run_cli("index", "build", sample_index / "vec", "--out", again) == 0     # its own folder: rebuilt


@pytest.mark.parametrize("damage, said", [
    ("no meta.json", "no meta.json beside index.faiss"),
    ("vectors.npy", "vectors.npy: unreadable .*damaged"),
    ("keys.npy", "keys.npy: unreadable .*damaged"),
    ("modalities.npy", "modalities.npy: unreadable .*damaged"),
    ("labels.jsonl", "labels.jsonl: unreadable at .*damaged"),
    ("no vectors.npy", "vectors.npy: missing"),
    ("keys.npy objects", "keys.npy: holds Python objects .*rebuild the index"),     # never numpy's allow_pickle advice
])
def test_a_damaged_index_folder_is_one_line_naming_the_file(sample_index, tmp_path, capsys, damage, said):
    """A truncated .npy or labels.jsonl of an index folder (or a missing meta.json) was numpy's or json's
    traceback, naming no file."""
    idx = tmp_path / "idx"
    shutil.copytree(sample_index / "idx", idx)
    first = Lookup.open(idx).keys.key(0)
    if damage.startswith("no "):
        (idx / damage[3:]).unlink()
    elif damage.endswith(" objects"):
        np.save(idx / damage.split()[0], np.array([{"x": 1}] * 3, dtype=object), allow_pickle=True)
    else:
        (idx / damage).write_bytes((idx / damage).read_bytes()[:90])
    capsys.readouterr()
    assert run_cli("similar", first, "--index", idx, "-k", "3") == 2
    err = capsys.readouterr().err
    assert re.search(said, err) and "Traceback" not in err and len(err.strip().splitlines()) == 1, err


def test_meta_without_a_search_setting_keeps_the_index_files_own(clustered):
    """A meta.json whose params lost efSearch (edited by hand) was a KeyError; the setting saved in
    index.faiss is used, and a large k is still answered in full."""
    build_index(clustered / "vec", clustered / "hnsw_bare", kind="hnsw")
    meta = json.loads((clustered / "hnsw_bare" / "meta.json").read_text())
    (clustered / "hnsw_bare" / "meta.json").write_text(json.dumps({**meta, "params": {}}))
    look = Lookup.open(clustered / "hnsw_bare")
    assert look.index.hnsw.efSearch == meta["params"]["efSearch"]
    assert len(look.similar(["s0000"], k=500)[0].neighbours) == 500


@pytest.fixture(scope="module")
def small_vectors(tmp_path_factory):
    """A vectors folder of 40 unit vectors (8-d) with its per-modality vectors, as embed writes them."""
    vec = tmp_path_factory.mktemp("small") / "vec"
    vec.mkdir()
    rng = np.random.default_rng(1)
    x = rng.normal(size=(40, 8))
    np.save(vec / "vectors.npy", (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32))
    np.save(vec / "modalities.npy", rng.normal(size=(40, 3, 8)).astype(np.float16))
    write_keys(vec / "keys.txt", [f"s{i:02d}" for i in range(40)])
    (vec / "meta.json").write_text(json.dumps({"model_hash": "m", "model_dir": "m", "dim": 8, "count": 40}))
    return vec


def _damage(path, damage):
    """Write a damaged .npy over `path` (a copy): truncated, no .npy at all, or an array embed never writes."""
    good = np.load(path)
    arrays = {"object": good.astype(object), "complex": good.astype(np.complex64), "int": (good * 100).astype(int),
              "bool": good > 0, "1-d": good.reshape(-1)}
    if damage == "truncated":
        path.write_bytes(path.read_bytes()[:200])
    elif damage == "not npy":
        path.write_text("not a numpy file at all")
    elif damage == "empty":
        path.write_bytes(b"")
    else:
        np.save(path, arrays[damage], allow_pickle=True)


VECTORS_DAMAGE = [("truncated", r"unreadable \(mmap length .*truncated\?\); re-run `anchor-embed embed`"),
                  ("not npy", "not a NumPy .npy file"), ("empty", r"empty \(0 bytes\)"),
                  ("object", r"holds Python objects \(dtype object\)"),
                  ("complex", "holds complex64 values, not float vectors; the folder is damaged"),
                  ("int", "holds int64 values, not float vectors"), ("bool", "holds bool values, not float vectors"),
                  ("1-d", r"holds an array of shape \(320,\), not N x D vectors")]


@pytest.mark.parametrize("command", ["dedup", "scatter", "index build"])
@pytest.mark.parametrize("damage, said", VECTORS_DAMAGE)
def test_a_damaged_vectors_npy_is_one_line_naming_it(small_vectors, tmp_path, capsys, command, damage, said):
    """A truncated vectors.npy was numpy's 'mmap length is greater than file size' traceback in dedup, scatter
    and index build; a text file or an object array its 'pickled data' advice; a complex or int one was used."""
    vec = tmp_path / "vec"
    shutil.copytree(small_vectors, vec)
    _damage(vec / "vectors.npy", damage)
    args = {"dedup": ("dedup", vec, "--threshold", "0.9"), "scatter": ("scatter", vec, "--clusters", "3"),
            "index build": ("index", "build", vec, "--out", tmp_path / "idx")}[command]
    capsys.readouterr()
    assert run_cli(*args) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err and "pickle" not in err, err
    assert f"{vec / 'vectors.npy'}: " in err and re.search(said, err), err
    assert not (tmp_path / "idx").exists()


@pytest.mark.parametrize("damage", ["truncated", "not npy", "object", "complex", "1-d"])
def test_index_build_refuses_a_damaged_modalities_npy_before_touching_its_out(small_vectors, tmp_path, capsys,
                                                                               damage):
    """A damaged modalities.npy was read after the old index's meta.json was dropped and index.faiss rewritten:
    a traceback, and the folder's index was lost. Now one line, before anything in --out changes."""
    vec = tmp_path / "vec"
    shutil.copytree(small_vectors, vec)
    assert run_cli("index", "build", vec, "--out", tmp_path / "idx") == 0
    before = {p.name: p.read_bytes() for p in (tmp_path / "idx").iterdir()}
    _damage(vec / "modalities.npy", damage)
    capsys.readouterr()
    assert run_cli("index", "build", vec, "--out", tmp_path / "idx") == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err and "pickle" not in err, err
    assert f"{vec / 'modalities.npy'}: " in err and "embed" in err, err
    assert {p.name: p.read_bytes() for p in (tmp_path / "idx").iterdir()} == before
