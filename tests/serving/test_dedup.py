"""Dedup groups against brute force: connected components, complete linkage, size caps, the edge cases."""

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
    sims = x @ x.T
    for g in dedup_vectors(x, 0.97):
        m = np.array(g["members"])
        pair = sims[np.ix_(m, m)][~np.eye(len(m), dtype=bool)]
        assert g["representative"] in g["members"] and g["min_exact"]
        assert np.isclose(g["min_similarity"], pair.min(), atol=1e-6) and np.isclose(g["max_similarity"], pair.max())
    for assign in (1, 2):
        semi = sorted(sorted(g["members"]) for g in dedup_vectors(x, 0.97, clusters=4, assign=assign))
        assert all(any(set(s) <= set(b) for b in got) for s in semi)   # cluster-then-threshold only splits groups
    everywhere = dedup_vectors(x, 0.97, clusters=4, assign=4)  # every row in every cluster: the exact answer
    assert sorted(sorted(g["members"]) for g in everywhere) == got
    assert [g["min_similarity"] for g in everywhere] == [g["min_similarity"] for g in dedup_vectors(x, 0.97)]


def _chain(n=12, step=0.2):
    """Unit vectors on a circle arc: each is close to the next, the two ends far apart."""
    angles = np.arange(n) * step
    return np.stack([np.cos(angles), np.sin(angles)], 1).astype(np.float32)


def test_single_linkage_chains_and_complete_linkage_does_not():
    x = _chain()
    t = float(np.cos(0.2)) - 1e-6
    single = dedup_vectors(x, t)
    assert len(single) == 1 and len(single[0]["members"]) == 12
    assert np.isclose(single[0]["min_similarity"], np.cos(0.2 * 11), atol=1e-5)   # the chain's true minimum
    complete = dedup_vectors(x, t, linkage="complete")
    sims = x @ x.T
    assert complete and all(sims[np.ix_(g["members"], g["members"])].min() >= t - 1e-6 for g in complete)
    assert all(g["min_similarity"] >= t - 1e-6 for g in complete)
    capped = dedup_vectors(x, t, max_group_size=4)
    assert capped and all(2 <= len(g["members"]) <= 4 for g in capped)
    assert all(set(g["members"]) <= set(single[0]["members"]) for g in capped)


def test_threshold_is_inclusive_and_degenerate_inputs_are_fine():
    x = np.array([[1, 0], [1, 0], [0, 1]], np.float32)
    assert [g["members"] for g in dedup_vectors(x, 1.0)] == [[0, 1]]            # cosine exactly 1 >= 1
    assert dedup_vectors(x, 0.99999, linkage="complete")[0]["members"] == [0, 1]
    assert dedup_vectors(np.eye(3, dtype=np.float32), 0.9) == []                  # no pair reaches it
    assert dedup_vectors(np.ones((1, 4), np.float32) / 2, 0.5) == []            # one vector
    assert dedup_vectors(np.zeros((0, 4), np.float32), 0.5) == []               # none
    same = np.ones((9, 3), np.float32) / np.sqrt(3)                              # identical: no cut separates
    assert all(len(g["members"]) <= 4 for g in dedup_vectors(same, 0.9, max_group_size=4))
    assert sum(len(g["members"]) for g in dedup_vectors(same, 0.9, max_group_size=4)) >= 8


def test_identical_vectors_meet_a_threshold_of_one_despite_float32_rounding():
    """A float32 cosine of a unit vector with itself is often 0.99999994: exact duplicates must still be found at
    --threshold 1, under both linkages, and nothing else joins them."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 320)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    assert (np.einsum("ij,ij->i", x, x) < 1).any()               # the rounding this is about
    twins = np.concatenate([x, x[:30]])                           # rows 60-89 repeat rows 0-29
    for linkage in ("single", "complete"):
        got = sorted(g["members"] for g in dedup_vectors(twins, 1.0, linkage=linkage))
        assert got == [[i, 60 + i] for i in range(30)], linkage


def test_reviewed_pairs_win_over_the_vectors():
    x = np.array([[1, 0], [0.999, 0.0447], [0, 1], [0.0447, 0.999]], np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    plain = sorted(sorted(g["members"]) for g in dedup_vectors(x, 0.99))
    assert plain == [[0, 1], [2, 3]]
    reviewed = dedup_vectors(x, 0.99, confirmed={(0, 2)}, rejected={(2, 3)})
    groups = sorted(sorted(g["members"]) for g in reviewed)
    assert any({0, 2} <= set(g) for g in groups)                 # confirmed: together though far apart
    assert not any({2, 3} <= set(g) for g in groups)             # rejected: apart though alike


def test_dedup_over_budget_searches_clusters_of_a_memory_map(tmp_path, capsys):
    """Exact search needing more than --memory-budget turns into a clustered search (said in one line) over
    the memory-mapped float16 vectors; planted near-duplicates are still found, as brute force finds them."""
    import json

    from anchor_embed.data.key_file import write_keys
    from tests.conftest import run_cli

    rng = np.random.default_rng(3)
    centres = rng.normal(size=(8, 32))
    base = centres[rng.integers(0, 8, 3000)] + rng.normal(size=(3000, 32))
    x = np.concatenate([base, base[:40] + rng.normal(scale=0.02, size=(40, 32))])
    x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float16)
    vec = tmp_path / "vec"
    vec.mkdir()
    np.save(vec / "vectors.npy", x)
    write_keys(vec / "keys.txt", [f"s{i}" for i in range(len(x))])
    (vec / "meta.json").write_text(json.dumps({"model_hash": "m", "dim": 32, "dtype": "float16", "count": len(x)}))
    assert run_cli("dedup", vec, "--threshold", "0.97", "--memory-budget", "100KB", "--out", tmp_path / "d.jsonl") == 0
    assert "searching within" in capsys.readouterr().err.replace("\n", " ")
    got = sorted(sorted(int(m[1:]) for m in json.loads(line)["members"])
                 for line in (tmp_path / "d.jsonl").read_text().splitlines())
    x32 = x.astype(np.float32)
    sims = x32 @ x32.T
    np.fill_diagonal(sims, -1)
    src, dst = np.nonzero(np.triu(sims >= 0.97))
    assert len(src) >= 40 and got == sorted(sorted(g) for g in _components(len(x), src, dst))


def _components(n, src, dst):
    parent = list(range(n))

    def find(a):
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a
    for a, b in zip(src, dst, strict=True):
        parent[find(a)] = find(b)
    groups: dict[int, list[int]] = {}
    for i in set(src.tolist()) | set(dst.tolist()):
        groups.setdefault(find(i), []).append(i)
    return [g for g in groups.values() if len(g) > 1]


def _as_keys(groups, keys):
    return [(keys[g["representative"]], [keys[m] for m in g["members"]]) for g in groups]


def test_with_keys_the_groups_do_not_depend_on_the_rows_order():
    """Ties in degree (every pair of a triple above the threshold) picked the first row as representative, so
    the same vectors in another file order (or Spark's, which has none) gave another representative; with keys
    the representative, member order and group order follow the keys, for exact and clustered search."""
    rng = np.random.default_rng(1)
    base = rng.normal(size=(60, 16))
    x = np.concatenate([base, base[:12] + rng.normal(scale=0.03, size=(12, 16)),
                        base[:6] + rng.normal(scale=0.03, size=(6, 16))]).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    keys = [f"s{i:03d}" for i in range(len(x))]
    perm = rng.permutation(len(x))
    for flags in ({}, {"linkage": "complete"}, {"max_group_size": 2}, {"clusters": 4, "assign": 4}):
        one = _as_keys(dedup_vectors(x, 0.97, keys=keys, **flags), keys)
        other = _as_keys(dedup_vectors(x[perm], 0.97, keys=[keys[p] for p in perm], **flags), [keys[p] for p in perm])
        assert one == other and len(one) >= 6, flags
        assert all(m == sorted(m) for _, m in one) and [m[0] for _, m in one] == sorted(m[0] for _, m in one)


def _two_vectors_folders(tmp_path, seed: int, copies: int):
    """Folders a and b (fingerprints fa, fb) of the same 40 random unit vectors plus `copies` near-copies, b's in
    reverse order."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(40, 8)).astype(np.float32)
    x = np.concatenate([x, x[:copies] + 0.01])
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return _vectors_folder(tmp_path / "a", x, "fa"), _vectors_folder(tmp_path / "b", x[::-1].copy(), "fb")


def _vectors_folder(vec, x, fingerprint=None):
    import json

    from anchor_embed.data.key_file import write_keys

    vec.mkdir()
    np.save(vec / "vectors.npy", x)
    write_keys(vec / "keys.txt", [f"s{i:03d}" for i in range(len(x))])
    meta = {"model_hash": "m", "dim": x.shape[1], "count": len(x)}
    (vec / "meta.json").write_text(json.dumps({**meta, "fingerprint": fingerprint} if fingerprint else meta))
    return vec


def test_outputs_record_their_vectors_and_stay_out_of_other_vectors_folders(tmp_path, capsys):
    """`dedup A --out B/dedup-0.99.jsonl` replaced B's own groups with A's without a word (and B's next embed
    --overwrite would clear them as B's). Each row records the fingerprint of the vectors it came from, and an
    --out inside the folder of other vectors is refused before any work; a rerun on the folder's own vectors,
    and an --out outside any vectors folder, are as before."""
    import json

    from tests.conftest import run_cli

    a, b = _two_vectors_folders(tmp_path, seed=1, copies=3)
    for command, flags, name in (("dedup", ["--threshold", "0.99"], "dedup-0.99.jsonl"),
                                 ("scatter", ["--clusters", "3"], "clusters.jsonl")):
        assert run_cli(command, b, *flags) == 0
        mine = (b / name).read_text()
        assert {json.loads(line)["vectors"] for line in mine.splitlines()} == {"fb"}
        capsys.readouterr()
        for extra in ([], ["--overwrite"]):
            assert run_cli(command, a, *flags, "--out", b / name, *extra) == 2
            assert f"inside {b}, the vectors folder of other vectors (fingerprint fb; these are fa)" \
                in capsys.readouterr().err.replace("\n", " ")
            assert (b / name).read_text() == mine
        assert run_cli(command, b, *flags, "--out", b / name) == 0           # its own vectors: a rerun
        assert run_cli(command, a, *flags, "--out", tmp_path / name) == 0    # outside any vectors folder
        capsys.readouterr()
        assert run_cli(command, b, *flags, "--out", tmp_path / name) == 0    # a rerun of other vectors there,
        assert f"replacing {tmp_path / name}, the {command} output of other vectors (fingerprint fa; these are fb)" \
            in capsys.readouterr().err.replace("\n", " ")                  # said
        assert run_cli(command, b, *flags, "--out", tmp_path / name) == 0
        assert "output of other vectors" not in capsys.readouterr().err


def test_dedup_and_scatter_out_replace_only_their_own_output(tmp_path, capsys):
    """`dedup --out run/config.json` wrote groups over a run's config (and scatter over run.json) without a word;
    now a file that is no output of the command is refused before any work unless --overwrite, a folder always,
    and a rerun replaces the command's own earlier output."""
    from tests.conftest import run_cli

    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 8)).astype(np.float32)
    x = np.concatenate([x, x[:5] + 0.01])
    vec = _vectors_folder(tmp_path / "vec", x / np.linalg.norm(x, axis=1, keepdims=True))
    config = tmp_path / "config.json"
    config.write_text('{\n  "epochs": 3\n}\n')
    for command, flags in (("dedup", ["--threshold", "0.99"]), ("scatter", ["--clusters", "3"])):
        capsys.readouterr()
        assert run_cli(command, vec, *flags, "--out", config) == 2
        assert f"--out {config}: exists and is not a {command} output; choose another --out or pass --overwrite" \
            in capsys.readouterr().err.replace("\n", " ")
        assert config.read_text() == '{\n  "epochs": 3\n}\n'
        assert run_cli(command, vec, *flags, "--out", tmp_path) == 2          # a folder
        own = tmp_path / f"{command}.jsonl"
        assert run_cli(command, vec, *flags, "--out", own) == 0
        assert run_cli(command, vec, *flags, "--out", own) == 0             # a rerun replaces its own output
        assert run_cli(command, vec, *flags) == 0 and run_cli(command, vec, *flags) == 0   # its default path
    assert run_cli("dedup", vec, "--threshold", "0.99", "--out", config, "--overwrite") == 0
    assert '"representative"' in config.read_text()


def test_dedup_clusters_are_capped_so_groups_are_not_split(tmp_path, capsys):
    """A tiny --memory-budget asked 9,520 clusters for 1,904 vectors (and --clusters 5000 was taken as given):
    near-duplicates then sat in different clusters and exact groups were split. Clusters keep at least
    MIN_CLUSTER_SIZE streamers on average, said in one line; too few streamers for two clusters is exact search."""
    import json

    from anchor_embed.serving.dedup import MIN_CLUSTER_SIZE
    from tests.conftest import run_cli

    rng = np.random.default_rng(2)
    centres = rng.normal(size=(6, 16))
    base = centres[rng.integers(0, 6, 300)] + rng.normal(size=(300, 16))
    x = np.concatenate([base, base[:30] + rng.normal(scale=0.02, size=(30, 16))])
    vec = _vectors_folder(tmp_path / "vec", (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32))

    def groups(*flags):
        out = tmp_path / f"d{len(list(tmp_path.iterdir()))}.jsonl"
        assert run_cli("dedup", vec, "--threshold", "0.97", "--out", out, *flags) == 0
        return sorted(sorted(json.loads(line)["members"]) for line in out.read_text().splitlines())

    exact = groups()
    capsys.readouterr()
    assert groups("--clusters", "5000") == exact and len(exact) >= 25
    most = 330 // MIN_CLUSTER_SIZE
    assert f"--clusters 5000 for 330 streamers: {most} clusters instead" in capsys.readouterr().err.replace("\n", " ")
    assert groups("--memory-budget", "1KB") == exact
    err = capsys.readouterr().err.replace("\n", " ")
    assert f"needs 20.6 KiB > --memory-budget 1KB: searching within {most} k-means clusters" in err, err
    small = _vectors_folder(tmp_path / "small", (x[:80] / np.linalg.norm(x[:80], axis=1, keepdims=True)).astype(np.float32))
    assert run_cli("dedup", small, "--threshold", "0.97", "--clusters", "4", "--out", tmp_path / "s.jsonl") == 0
    assert "--clusters 4 for 80 streamers: exact search instead" in capsys.readouterr().err.replace("\n", " ")
    capsys.readouterr()
    assert groups("--clusters", "3", "--assign", "5") == exact          # every streamer in every cluster: said
    assert "--assign 5 > 3 clusters: each streamer joins all 3" in capsys.readouterr().err.replace("\n", " ")


def test_out_never_replaces_a_file_of_a_vectors_or_index_folder(tmp_path, capsys):
    """`dedup VEC --out VEC/vectors.npy --overwrite` replaced the vectors with its groups (and `scatter --out
    VEC/keys.txt --overwrite` the keys): every later command on the folder was a traceback. --overwrite replaces a
    user's file, never one of a vectors or index folder's own."""
    from tests.conftest import run_cli

    rng = np.random.default_rng(4)
    x = rng.normal(size=(30, 8)).astype(np.float32)
    vec = _vectors_folder(tmp_path / "vec", x / np.linalg.norm(x, axis=1, keepdims=True), "fv")
    before = {p.name: p.read_bytes() for p in vec.iterdir()}
    idx = tmp_path / "idx"
    idx.mkdir()
    (idx / "index.faiss").write_bytes(b"index")
    (idx / "meta.json").write_text("{}")
    for command, flags in (("dedup", ["--threshold", "0.99"]), ("scatter", ["--clusters", "3"])):
        for out, owner in ((vec / "vectors.npy", "vectors"), (vec / "keys.txt", "vectors"),
                           (vec / "meta.json", "vectors"), (idx / "meta.json", "index")):
            capsys.readouterr()
            assert run_cli(command, vec, *flags, "--out", out, "--overwrite") == 2
            assert f"one of the files of the {owner} folder" in capsys.readouterr().err.replace("\n", " ")
    assert {p.name: p.read_bytes() for p in vec.iterdir()} == before
    assert (idx / "meta.json").read_text() == "{}"
    assert run_cli("dedup", vec, "--threshold", "0.99", "--out", vec / "mine.jsonl") == 0   # other names as before


def test_outputs_record_their_settings_and_replacing_other_settings_is_said(tmp_path, capsys):
    """`dedup --threshold 0.9 --out g.jsonl` over groups made at 0.99 (and `scatter --clusters 4` over clusters of
    --clusters 3) replaced them without a word, and the rows did not say what made them. Each row now records the
    settings that shaped it; replacing an output of other settings is one line (with --overwrite too, and beside
    other vectors in the same line); a rerun with the same ones is silent; an output of an earlier version, which
    records none, is still read and replaced without comparing what it does not record."""
    import json

    from anchor_embed.data.schemas import ClusterRow, DedupGroup
    from anchor_embed.serving.scatter import read_clusters
    from tests.conftest import run_cli

    a, b = _two_vectors_folders(tmp_path, seed=5, copies=4)
    groups, clusters = tmp_path / "groups.jsonl", tmp_path / "clusters.jsonl"

    def said(*args):
        capsys.readouterr()
        assert run_cli(*args) == 0
        return capsys.readouterr().err.replace("\n", " ")

    said("dedup", a, "--threshold", "0.99", "--out", groups)
    row = json.loads(groups.read_text().splitlines()[0])
    assert {k: row[k] for k in ("threshold", "linkage", "clusters", "assign", "max_group_size", "reviewed")} == \
        {"threshold": 0.99, "linkage": "single", "clusters": 0, "assign": 0, "max_group_size": 0, "reviewed": None}
    assert "other settings" not in said("dedup", a, "--threshold", "0.99", "--out", groups)
    assert f"replacing {groups}, the dedup output of other settings (threshold 0.99; these are threshold 0.9)" \
        in said("dedup", a, "--threshold", "0.9", "--out", groups)
    assert "the dedup output of other settings (linkage single, max_group_size 0; these are linkage complete, " \
        "max_group_size 3)" in said("dedup", a, "--threshold", "0.9", "--linkage", "complete", "--max-group-size",
                                    "3", "--out", groups, "--overwrite")
    assert "the dedup output of other vectors (fingerprint fa; these are fb) and other settings (threshold 0.9; " \
        "these are threshold 0.99)" in said("dedup", b, "--threshold", "0.99", "--linkage", "complete",
                                            "--max-group-size", "3", "--out", groups)
    log = tmp_path / "reviews.jsonl"
    log.write_text(json.dumps({"time": "t", "reviewer": "r", "a": "s000", "b": "s001", "verdict": "same_owner"}) + "\n")
    assert "(reviewed none; these are reviewed " in said("dedup", b, "--threshold", "0.99", "--linkage", "complete",
                                                         "--max-group-size", "3", "--reviewed", log, "--out", groups)
    assert json.loads(groups.read_text().splitlines()[0])["reviewed"]

    said("scatter", a, "--clusters", "3", "--out", clusters)
    assert {(r["clusters"], r["seed"]) for r in map(json.loads, clusters.read_text().splitlines())} == {(3, 0)}
    assert "other settings" not in said("scatter", a, "--clusters", "3", "--out", clusters)
    assert f"replacing {clusters}, the scatter output of other settings (clusters 3, seed 0; these are clusters 4, " \
        "seed 1)" in said("scatter", a, "--clusters", "4", "--seed", "1", "--out", clusters)
    assert "(clusters 4; these are clusters 44)" in said("scatter", a, "--clusters", "99", "--seed", "1",
                                                         "--out", clusters, "--overwrite")    # at most the streamers

    # an earlier version's outputs (no settings recorded): read as before, replaced without a settings line
    for path, model, new in ((groups, DedupGroup, ("threshold", "clusters", "assign", "max_group_size", "reviewed")),
                             (clusters, ClusterRow, ("clusters", "seed"))):
        old = [{k: v for k, v in json.loads(line).items() if k not in new} for line in path.read_text().splitlines()]
        path.write_text("".join(json.dumps(r) + "\n" for r in old))
        assert all(model.model_validate(r) for r in old)
    assert len(read_clusters(clusters)) == 44         # 40 vectors and 4 near-copies
    assert "other settings" not in said("scatter", b, "--clusters", "3", "--out", clusters)
    assert "other settings" not in said("dedup", b, "--threshold", "0.5", "--linkage", "complete", "--out", groups)


def test_default_names_of_negative_and_tiny_thresholds_are_unambiguous(tmp_path, capsys):
    """`dedup VEC --threshold -1` wrote VEC/dedup--1.0.jsonl (and 0.00001 dedup-1e-05.jsonl, a hyphen again); a
    negative threshold is now `minus`, no threshold an exponent, and ordinary ones keep their earlier names."""
    from tests.conftest import run_cli

    rng = np.random.default_rng(6)
    x = rng.normal(size=(20, 8)).astype(np.float32)
    vec = _vectors_folder(tmp_path / "vec", x / np.linalg.norm(x, axis=1, keepdims=True), "fv")
    for threshold, name in (("-1", "dedup-minus1.0.jsonl"), ("-0.5", "dedup-minus0.5.jsonl"),
                            ("0.00001", "dedup-0.00001.jsonl"), ("0.95", "dedup-0.95.jsonl"),
                            ("1", "dedup-1.0.jsonl"), ("-0", "dedup-0.0.jsonl")):
        assert run_cli("dedup", vec, "--threshold", threshold) == 0
        assert f"written to {vec / name}" in capsys.readouterr().err.replace("\n", " "), threshold
        assert (vec / name).is_file()
    from anchor_embed.serving.dedup import default_name  # the name `spark dedup` can share

    assert default_name(np.float64(0.9)) == "dedup-0.9.jsonl" and default_name(1) == "dedup-1.0.jsonl"
