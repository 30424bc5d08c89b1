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
