"""Safe .npy/.npz reads: no file that is no array file, no damaged one and no object array gets numpy's error."""

import re
import zipfile

import numpy as np
import pytest

from anchor_embed.data.npy_file import load_npy, load_npz
from anchor_embed.errors import AnchorEmbedError


def _damaged(tmp_path):
    """name -> bytes of a .npy file that does not read as an array of numbers."""
    np.save(tmp_path / "good.npy", np.eye(3, dtype=np.float32))
    good = (tmp_path / "good.npy").read_bytes()
    np.save(tmp_path / "obj.npy", np.array([[1, "a"]], dtype=object), allow_pickle=True)
    return {"garbage": b"not a numpy file at all", "empty": b"", "cut header": good[:50], "cut magic": good[:3],
            "cut data": good[:140], "object": (tmp_path / "obj.npy").read_bytes()}


@pytest.mark.parametrize("mmap", [False, True])
def test_a_bad_npy_is_one_line_naming_it_never_the_pickle_advice(tmp_path, mmap):
    said = {"garbage": "not a NumPy .npy file", "empty": r"empty \(0 bytes\)", "cut header": "unreadable .*truncated",
            "cut magic": "unreadable .*truncated", "cut data": "unreadable .*truncated",
            "object": r"holds Python objects \(dtype object\)"}
    for name, raw in _damaged(tmp_path).items():
        path = tmp_path / f"{name}.npy"
        path.write_bytes(raw)
        with pytest.raises(AnchorEmbedError) as exc:
            load_npy(path, "do this", mmap=mmap)
        text = str(exc.value)
        assert text.startswith(f"{path}: ") and text.endswith("; do this") and "\n" not in text, (name, text)
        assert "pickle" not in text and re.search(said[name], text), (name, text)


def test_a_good_npy_reads_and_maps(tmp_path):
    np.save(tmp_path / "x.npy", np.eye(2, dtype=np.float16))
    assert load_npy(tmp_path / "x.npy", "r").dtype == np.float16
    assert isinstance(load_npy(tmp_path / "x.npy", "r", mmap=True), np.memmap)


def test_a_bad_npz_is_one_line_naming_it(tmp_path):
    np.savez(tmp_path / "good.npz", keys=np.array(["a", "b"]), vectors=np.eye(2))
    got = load_npz(tmp_path / "good.npz", ("keys", "vectors"), "r")
    assert got["keys"].tolist() == ["a", "b"] and got["vectors"].shape == (2, 2)
    good = (tmp_path / "good.npz").read_bytes()
    np.savez(tmp_path / "objk.npz", keys=np.array(["a", "b"], dtype=object), vectors=np.eye(2))
    with zipfile.ZipFile(tmp_path / "junk.npz", "w") as zf:
        zf.writestr("keys.npy", b"junk")
        zf.writestr("vectors.npy", b"junk")
    cases = {"garbage.npz": (b"hello", "not a NumPy .npz file"), "cut.npz": (good[:len(good) // 2], "unreadable"),
             "empty.npz": (b"", "empty"), "objk.npz": (None, "array 'keys': holds Python objects"),
             "junk.npz": (None, "array 'keys' is not a .npy member")}
    for name, (raw, said) in cases.items():
        if raw is not None:
            (tmp_path / name).write_bytes(raw)
        with pytest.raises(AnchorEmbedError, match=said) as exc:
            load_npz(tmp_path / name, ("keys", "vectors"), "do this")
        assert "pickle" not in str(exc.value) and "\n" not in str(exc.value)
    with pytest.raises(AnchorEmbedError, match=r"missing array\(s\) \['other'\]"):
        load_npz(tmp_path / "good.npz", ("keys", "other"), "r")


def test_a_file_that_is_not_there_is_not_called_damaged(tmp_path):
    """A missing file or a folder was 'unreadable ...; the file is damaged (truncated?)'."""

    for load in (lambda p: load_npy(p, "fix it"), lambda p: load_npz(p, ("keys",), "fix it")):
        with pytest.raises(AnchorEmbedError, match="nope.npy: no such file; fix it$"):
            load(tmp_path / "nope.npy")
        with pytest.raises(AnchorEmbedError, match="a folder, not a file; fix it$"):
            load(tmp_path)
