"""ID embeddings handed over by the business: .npy + keys file, .npz, or Parquet; validated row by row."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from anchor_embed.data.input_report import InputReport
from anchor_embed.data.key_file import bad_id_reason, read_keys
from anchor_embed.data.npy_file import load_npy, load_npz
from anchor_embed.data.records import is_parquet, parquet_files
from anchor_embed.errors import AnchorEmbedError


@dataclass
class IdEmbeddings:
    """Validated ID embeddings: unique keys, finite non-zero float32 rows."""

    keys: list[str]
    vectors: np.ndarray  # (N, D) float32

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    def index_of(self) -> dict[str, int]:
        return {k: i for i, k in enumerate(self.keys)}

    def subset(self, keep: list[str]) -> IdEmbeddings:
        """Rows for the given keys, in that order (keys must be present)."""
        pos = self.index_of()
        return IdEmbeddings(list(keep), self.vectors[[pos[k] for k in keep]])


def default_keys_path(path: Path) -> Path:
    """`ids.npy` -> `ids.keys.txt` beside it."""
    return path.with_suffix(".keys.txt")


def _is_list(t) -> bool:
    import pyarrow as pa

    return pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t)


def _holds_numbers(t) -> bool:
    """Whether a Parquet list column's items are real numbers (integers, floats, decimals)."""
    import pyarrow as pa

    v = t.value_type
    return pa.types.is_integer(v) or pa.types.is_floating(v) or pa.types.is_decimal(v)


def _check_dtype(where: str, dtype: np.dtype) -> None:
    """Refuse an array that is not real numbers: complex (its imaginary part would be dropped), bool, strings,
    records, dates. Integers are numbers: read as float, as the Parquet reader does."""
    if dtype.kind not in "fiu":
        raise AnchorEmbedError(f"{where}: expected real numbers (float or int), got dtype {dtype}")


NPY_REMEDY = "save a float N x D array with numpy.save (its keys one a line in a .keys.txt beside it)"
NPZ_REMEDY = "save one with numpy.savez(path, keys=<str array>, vectors=<float N x D array>)"


def _read_parquet(path: Path, id_column: str) -> tuple[list[str], np.ndarray]:
    """Keys and vectors of a Parquet file, folder of part files or glob: the id column and its one list column
    (integer ids read as their decimal text; other scalar columns are not read)."""
    import pyarrow.parquet as pq

    keys: list[str] = []
    rows: list = []
    for f in parquet_files(path):
        try:
            table = pq.read_table(f)
        except Exception as exc:        # pyarrow's errors for a file that is no Parquet or a damaged one
            line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise AnchorEmbedError(f"{f}: not a readable Parquet file ({line})") from None
        if id_column not in table.column_names:
            raise AnchorEmbedError(f"{f}: no '{id_column}' column (pass --id-column NAME); columns: {table.column_names}")
        lists = [c for c in table.column_names if c != id_column and _is_list(table.schema.field(c).type)]
        if len(lists) != 1:
            raise AnchorEmbedError(f"{f}: expected '{id_column}' and one list column of the vector, got {table.column_names}")
        if not _holds_numbers(kind := table.schema.field(lists[0]).type):
            raise AnchorEmbedError(f"{f}: column '{lists[0]}' is {kind}; expected a list of real numbers (float or int)")
        keys += [str(k) for k in table.column(id_column).to_pylist()]
        rows += table.column(lists[0]).to_pylist()
    if not keys:
        raise AnchorEmbedError(f"{path}: no Parquet rows here")
    lengths = {len(r) for r in rows if r is not None}
    if len(lengths) > 1:
        raise AnchorEmbedError(f"{path}: vectors differ in length: {sorted(lengths)}")
    dim = lengths.pop() if lengths else 0
    # float64, as a .npy of doubles is read: a value beyond float32's range is told apart from an inf (a null
    # item is NaN, its row skipped)
    return keys, np.array([r if r is not None else [np.nan] * dim for r in rows], dtype=np.float64)


def _read_raw(path: Path, keys_path: Path | None, id_column: str = "anchor_id") -> tuple[list[str], np.ndarray]:
    """Keys and vectors as stored (real numbers of any width, N x D): never unpickled, every problem one line."""
    suffix = path.suffix.lower()
    try:
        if suffix == ".npy":
            kp = keys_path or default_keys_path(path)
            if not kp.is_file():
                raise AnchorEmbedError(f"{path}: keys file {kp} not found (one anchor_id a line; or pass --id-keys)")
            vectors = load_npy(path, NPY_REMEDY)
            _check_dtype(str(path), vectors.dtype)
            keys = read_keys(kp)
            if len(keys) != (vectors.shape[0] if vectors.ndim else 0):
                raise AnchorEmbedError(
                    f"{path}: {vectors.shape[0] if vectors.ndim else 0} vectors but {len(keys)} keys in {kp}")
        elif suffix == ".npz":
            arrays = load_npz(path, ("keys", "vectors"), NPZ_REMEDY)
            vectors = arrays["vectors"]
            _check_dtype(f"{path}: array 'vectors'", vectors.dtype)
            keys = [str(k) for k in arrays["keys"].reshape(-1).tolist()]
            if len(keys) != (vectors.shape[0] if vectors.ndim else 0):
                raise AnchorEmbedError(f"{path}: {vectors.shape[0] if vectors.ndim else 0} vectors but {len(keys)} keys")
        elif is_parquet(path):
            keys, vectors = _read_parquet(path, id_column)
        else:
            raise AnchorEmbedError(f"{path}: unknown ID-embedding format '{suffix}' (use .npy + .keys.txt, .npz or .parquet)")
    except AnchorEmbedError:
        raise
    except Exception as exc:
        raise AnchorEmbedError(f"{path}: cannot read ID embeddings ({type(exc).__name__}: {exc})") from None
    if vectors.ndim != 2 or vectors.shape[1] == 0:
        raise AnchorEmbedError(f"{path}: expected a 2-D array (N x D), got shape {tuple(vectors.shape)}")
    return keys, vectors


def _as_float32(vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The vectors as float32, and which rows are finite only before that cast (values beyond float32's range,
    which the cast makes inf). Computed with numpy's warnings off: each such row is reported by key instead."""
    with np.errstate(over="ignore", invalid="ignore"):
        as32 = vectors.astype(np.float32, copy=False)
    finite = np.isfinite(as32).all(axis=1)
    overflow = np.zeros(len(as32), bool)
    if not finite.all() and vectors.dtype != np.float32:
        overflow[~finite] = np.isfinite(vectors[~finite]).all(axis=1)
    return as32, overflow


def read_id_embeddings(
    path: str | Path,
    keys_path: str | Path | None = None,
    strict: bool = False,
    expected_dim: int | None = None,
    id_column: str = "anchor_id",
) -> tuple[IdEmbeddings, InputReport]:
    """Read and validate ID embeddings; NaN/inf/zero rows, unusable and duplicate keys are skipped and counted."""
    path = Path(path)
    if not path.is_file() and not is_parquet(path):
        raise AnchorEmbedError(f"{path}: no such file")
    keys, vectors = _read_raw(path, Path(keys_path) if keys_path else None, id_column)
    if expected_dim is not None and vectors.shape[1] != expected_dim:
        raise AnchorEmbedError(f"{path}: ID embeddings are {vectors.shape[1]}-d but {expected_dim}-d were expected")
    report = InputReport(source=str(path), strict=strict)
    vectors, overflow = _as_float32(vectors)
    finite = np.isfinite(vectors).all(axis=1)
    nonzero = (vectors != 0).any(axis=1)        # no sum: inf rows overflowed it, and numpy said so on stderr
    seen: set[str] = set()
    keep: list[int] = []
    for i, key in enumerate(keys):
        reason = bad_id_reason(key)
        if reason:
            report.bad(f"row {i + 1}", "unusable key", reason)
        elif key in seen:
            report.bad(f"key '{key}'", "duplicate key", f"duplicate key '{key}' (row {i + 1}; first kept)")
        elif overflow[i]:
            report.bad(f"key '{key}'", "out-of-range row", "vector has values beyond float32's range (over 3.4e38)")
        elif not finite[i]:
            report.bad(f"key '{key}'", "NaN/inf row", "vector has NaN or inf")
        elif not nonzero[i]:
            report.bad(f"key '{key}'", "zero row", "vector is all zeros")
        else:
            keep.append(i)
        seen.add(key)
    report.kept = len(keep)
    if not keep:
        raise AnchorEmbedError(f"{path}: no valid ID embeddings ({report.summary()})")
    return IdEmbeddings([keys[i] for i in keep], np.ascontiguousarray(vectors[keep])), report


def align_to_streamers(ids: IdEmbeddings, streamer_keys: list[str], report: InputReport) -> IdEmbeddings:
    """Drop ID rows whose anchor_id is not a known streamer, counting them in `report`."""
    known = set(streamer_keys)
    unknown = [k for k in ids.keys if k not in known]
    if unknown:
        sample = ", ".join(repr(k) for k in unknown[:3])
        report.bad(f"{len(unknown)} keys", "unknown id",
                   f"{len(unknown)} anchor_id(s) not among the streamers, e.g. {sample}", rows=len(unknown))
        report.kept -= len(unknown)
    keep = [k for k in ids.keys if k in known]
    if not keep:
        raise AnchorEmbedError(f"{report.source}: none of the ID-embedding keys match a streamer")
    return ids.subset(keep)
