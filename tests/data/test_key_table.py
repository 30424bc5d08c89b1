"""Key tables of an index folder agree with plain key and label lists."""

import numpy as np


def test_key_table_agrees_with_plain_lists(tmp_path):
    from anchor_embed import atomic
    from anchor_embed.data.key_table import KeyTable, write_key_table

    rng = np.random.default_rng(3)
    keys = [f"{p}{i}" for i, p in zip(rng.permutation(300), rng.choice(["a", "主播", "z_", "Ab"], 300), strict=True)]
    labels = [{"anchor_id": k, "nickname": f"nick {k}", "tags": ["t"]} for k in keys[::2]]
    atomic.write_jsonl(tmp_path / "labels_src.jsonl", labels[::-1])  # labels in another order than the keys
    new, old = tmp_path / "new", tmp_path / "old"
    new.mkdir()
    write_key_table(new, keys, tmp_path / "labels_src.jsonl")
    atomic.write_lines(old / "keys.txt", keys)
    atomic.write_jsonl(old / "labels.jsonl", labels)
    a, b = KeyTable(new), KeyTable(old)
    assert len(a) == len(b) == 300
    for row, key in enumerate(keys):
        assert a.row(key) == b.row(key) == row and a.key(row) == b.key(row) == key
        assert a.label(key).get("nickname") == b.label(key).get("nickname")
    assert a.row("nope") is None and b.row("nope") is None and a.label("nope") == {}
    # every label in one pass (the review page's search index) equals one label at a time
    assert a.labels() == [a.label(k) for k in keys]
    assert [x.get("nickname") for x in b.labels()] == [b.label(k).get("nickname") for k in keys]
    assert keys[0] in a.close_to(keys[0] + "x") and keys[0] in b.close_to(keys[0] + "x")


def test_a_damaged_or_mixed_key_table_is_one_line_naming_it(tmp_path):
    """KeyTable read its .npy files with bare np.load: a damaged one was numpy's traceback naming no file, and
    tables of two builds (another keys_sorted*.npy) answered lookups wrongly ('known id not in the index')."""
    import re
    import shutil

    import pytest

    from anchor_embed.data.key_table import KeyTable, write_key_table
    from anchor_embed.errors import AnchorEmbedError

    small, big = tmp_path / "small", tmp_path / "big"
    for folder, n in ((small, 5), (big, 9)):
        folder.mkdir()
        write_key_table(folder, [f"k{i}" for i in range(n)], None)
    for name in ("keys.npy", "keys_sorted.npy", "keys_sorted_rows.npy", "labels_offsets.npy"):
        bad = tmp_path / f"bad-{name}"
        shutil.copytree(big, bad)
        (bad / name).write_bytes((bad / name).read_bytes()[:100])
        with pytest.raises(AnchorEmbedError, match=rf"^{re.escape(str(bad / name))}: unreadable .*rebuild the index"):
            KeyTable(bad)
    for name in ("keys_sorted.npy", "keys_sorted_rows.npy"):
        shutil.copy(small / name, big / name)
    with pytest.raises(AnchorEmbedError, match=r"different builds \(9 in keys.npy, 5 in keys_sorted.npy"):
        KeyTable(big)
