"""Top-k similar streamers from an index folder. The lookup path imports numpy and faiss only, never torch."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from anchor_embed.data.key_table import REBUILD, KeyTable
from anchor_embed.errors import AnchorEmbedError
from anchor_embed.locks import writer
from anchor_embed.serving.index import KINDS, read_meta, search_as_served, set_search_param
from anchor_embed.vectorspace import without_self


@dataclass(frozen=True)
class Explanation:
    """Why two streamers match: the cosine of their text-only, frames-only and tags-only vectors (None where
    either shows nothing of that kind), and the tags they share."""

    text: float | None
    frames: float | None
    tags: float | None
    shared_tags: tuple[str, ...] = ()

    def to_dict(self) -> dict:
        r = lambda x: None if x is None else round(x, 4)  # noqa: E731
        return {"text": r(self.text), "frames": r(self.frames), "tags": r(self.tags),
                "shared_tags": list(self.shared_tags)}


@dataclass(frozen=True)
class Neighbour:
    """One similar streamer: its id, cosine to the query, its label, and (when asked) why it matches."""

    anchor_id: str
    score: float
    nickname: str | None = None
    tags: tuple[str, ...] = ()
    explain: Explanation | None = None


@dataclass(frozen=True)
class Neighbours:
    """The answer for one query id: its neighbours, or (not found) close ids to suggest."""

    anchor_id: str
    neighbours: tuple[Neighbour, ...] = ()
    found: bool = True
    suggestions: tuple[str, ...] = ()

    def to_dict(self) -> dict:
        """The NeighbourRow contract (data_schemas/neighbour_row.schema.json)."""
        out = {"anchor_id": self.anchor_id, "found": self.found, "neighbours": [
            {"anchor_id": n.anchor_id, "score": round(n.score, 4), "nickname": n.nickname, "tags": list(n.tags),
             **({"explain": n.explain.to_dict()} if n.explain else {})} for n in self.neighbours]}
        if not self.found:          # "found" on every answer: a client tests one key, not its absence
            out["suggestions"] = list(self.suggestions)
        return out


def _stamp(path: Path) -> tuple[int, int] | None:
    """(inode, modification time) of a file, None when it is gone."""
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_ino, st.st_mtime_ns


class Lookup:
    """An opened index folder: faiss index, key and label tables, float16 vectors (all memory-mapped)."""

    @classmethod
    def open(cls, index_dir: str | Path) -> Lookup:
        """Open an index folder made by `anchor-embed index build`."""
        return cls(index_dir)

    def __init__(self, index_dir: str | Path) -> None:
        import faiss

        if not isinstance(index_dir, (str, Path)):
            raise AnchorEmbedError(f"index: expected an index folder's path, got {type(index_dir).__name__} "
                                   f"{index_dir!r}")
        self.dir = Path(index_dir)
        if not (self.dir / "index.faiss").is_file():
            raise AnchorEmbedError(f"{self.dir}: no index here (run `anchor-embed index build`)")
        if (who := writer(self.dir)) is not None:
            raise AnchorEmbedError(f"{self.dir}: an {who.get('what', 'index build')} is writing here (pid "
                                   f"{who.get('pid', '?')} since {who.get('since', '?')}); try again when it ends")
        if not (self.dir / "meta.json").is_file():
            raise AnchorEmbedError(f"{self.dir}: no meta.json beside index.faiss (a build writes it last: "
                                   "interrupted?); rebuild with `anchor-embed index build`")
        opened = _stamp(self.dir / "meta.json")
        self.meta = read_meta(self.dir / "meta.json")
        if self.meta.get("kind") not in KINDS or not isinstance(self.meta.get("params", {}), dict):
            raise AnchorEmbedError(f"{self.dir / 'meta.json'}: names no index kind and parameters; rebuild with "
                                   "`anchor-embed index build`")
        # memory-mapped, read-only: a lookup in a 1 GB index should not first copy 1 GB into memory
        try:
            self.index = faiss.read_index(str(self.dir / "index.faiss"), faiss.IO_FLAG_MMAP_IFC | faiss.IO_FLAG_READ_ONLY)
        except RuntimeError:  # an index type without mmap support, or a damaged file
            try:
                self.index = faiss.read_index(str(self.dir / "index.faiss"))
            except RuntimeError:
                raise AnchorEmbedError(f"{self.dir / 'index.faiss'}: not a faiss index (damaged?); rebuild with "
                                       "`anchor-embed index build`") from None
        try:
            self.keys = KeyTable(self.dir)          # its .npy tables: one line naming a damaged one (load_npy)
        except (OSError, ValueError, KeyError) as exc:      # an older folder's keys.txt or labels.jsonl
            raise AnchorEmbedError(f"{self.dir}: its key table is unreadable ({exc}); rebuild with "
                                   "`anchor-embed index build`") from None
        self.vectors = mapped(self.dir / "vectors.npy")
        set_search_param(self.index, self.meta["kind"], self.meta.get("params", {}))
        parts = self.dir / "modalities.npy"
        self.modalities = mapped(parts) if parts.is_file() else None
        self._check_counts()
        # a build drops meta.json before it writes anything: the same meta.json now as before the files were
        # opened means no build began in between (one did: files of two builds, possibly of one count)
        if _stamp(self.dir / "meta.json") != opened or writer(self.dir) is not None:
            raise AnchorEmbedError(f"{self.dir}: an index build began while it was being opened; try again when it "
                                   "ends")

    def _check_counts(self) -> None:
        """Refuse a folder whose files hold different numbers of streamers (files of two builds)."""
        counts = {"meta.json": self.meta.get("count"), "index.faiss": int(self.index.ntotal), "keys": len(self.keys),
                  "vectors.npy": len(self.vectors)}
        if self.modalities is not None:
            counts["modalities.npy"] = len(self.modalities)
        if len(set(counts.values())) > 1:
            said = ", ".join(f"{n} in {name}" for name, n in counts.items())
            raise AnchorEmbedError(f"{self.dir}: its files are of different builds ({said}): a build stopped "
                                   "half-way? rebuild with `anchor-embed index build`")

    def label(self, anchor_id: str) -> dict:
        """nickname and tags of an indexed streamer ({} when unknown); one line when labels.jsonl is damaged."""
        try:
            return self.keys.label(anchor_id)
        except (ValueError, KeyError, IndexError) as exc:
            raise AnchorEmbedError(f"{self.dir / 'labels.jsonl'}: unreadable at {anchor_id!r} ({exc}); the file is "
                                   "damaged (truncated?), rebuild with `anchor-embed index build`") from None

    def need_parts(self) -> None:
        """Refuse to explain with an index built without per-modality parts, saying how to get them."""
        if self.modalities is None:
            raise AnchorEmbedError(f"{self.dir}: built from vectors without per-modality parts; re-run `embed` and "
                                   "`index build` to explain matches")

    def explain(self, a: str, b: str) -> Explanation:
        """Per-modality cosines of two indexed streamers, and their shared tags."""
        self.need_parts()
        va = np.asarray(self.modalities[self.keys.row(a)], np.float32)
        return self.explain_parts(va, self.label(a).get("tags", []), b)

    def explain_parts(self, va: np.ndarray, tags: list[str], b: str) -> Explanation:
        """Per-modality cosines of parts `va` (3, d) with tags `tags` (an indexed streamer's or a record's)
        against the indexed streamer `b`, and their shared tags."""
        self.need_parts()
        vb = np.asarray(self.modalities[self.keys.row(b)], np.float32)
        cos = []
        for m in range(va.shape[0]):
            na, nb = np.linalg.norm(va[m]), np.linalg.norm(vb[m])
            cos.append(float(va[m] @ vb[m] / (na * nb)) if na > 0 and nb > 0 else None)
        tb = {x.lower() for x in self.label(b).get("tags", [])}
        return Explanation(*cos, shared_tags=tuple(t for t in tags if t.lower() in tb))

    def similar(self, anchor_ids: list[str] | str, k: int = 20, explain: bool = False) -> list[Neighbours]:
        """Top-k neighbours of indexed streamers, in the order asked; an unknown id is answered as not found
        (with close ids to suggest) and the others are still answered. With `explain`, each neighbour says
        how alike the two are in text, frames and tags."""
        ids = as_ids(anchor_ids)
        rows = [self.keys.row(a) for a in ids]
        known = [i for i, r in enumerate(rows) if r is not None]
        hits = self.search(np.stack([np.asarray(self.vectors[rows[i]], np.float32) for i in known]), k,
                           [ids[i] for i in known]) if known else []
        answer = dict(zip(known, hits, strict=True))
        return [self.neighbours(a, answer[i], explain) if i in answer else
                Neighbours(a, found=False, suggestions=tuple(self.keys.close_to(a))) for i, a in enumerate(ids)]

    def neighbours(self, anchor_id: str, hits: list[tuple[str, float]], explain: bool = False,
                   parts: tuple[np.ndarray, list[str]] | None = None) -> Neighbours:
        """Typed neighbours of one query, with their labels (and explanations: against the indexed query's
        parts, or the `parts` and tags of a query given as a record)."""
        out = []
        for key, score in hits:
            lab = self.label(key)
            why = None if not explain else self.explain(anchor_id, key) if parts is None else \
                self.explain_parts(parts[0], parts[1], key)
            out.append(Neighbour(key, score, lab.get("nickname"), tuple(lab.get("tags", [])), why))
        return Neighbours(anchor_id, tuple(out))

    def search(self, vectors: np.ndarray, k: int, exclude: list[str | None]) -> list[list[tuple[str, float]]]:
        """Top-k (key, score) per query vector, leaving out the query's own key where given (k is capped at
        the index size: there are no more neighbours to return)."""
        if not isinstance(k, (int, np.integer)) or isinstance(k, bool) or k < 1:
            raise AnchorEmbedError(f"k {k!r}: a whole number, at least 1")
        k = min(int(k), self.index.ntotal)          # numpy's int64 is not an int to faiss
        scores, idx = self._search(np.ascontiguousarray(vectors, np.float32), k + 1)
        rows = [None if ex is None else self.keys.row(ex) for ex in exclude]
        own = np.array([-1 if r is None else r for r in rows], np.int64)
        idx, scores = without_self(idx, scores, own, k)
        return [[(self.keys.key(int(i)), float(s)) for i, s in zip(row_i, row_s, strict=True) if i >= 0]
                for row_i, row_s in zip(idx, scores, strict=True)]


    def _search(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The index's top-k as `index build` measured its recall (`index.search_as_served`: an approximate
        index's setting widened while a query gets fewer than k rows; hnsw returned 79 of 1,903 for any k over 79,
        without a word)."""
        return search_as_served(self.index, self.meta["kind"], q, k, self.vectors,
                                self.meta.get("params", {}).get("refine", 0))


def mapped(path: Path) -> np.ndarray:
    """An index folder's .npy file, memory-mapped read-only; one line naming it when missing or damaged (numpy's
    own errors name no file)."""
    from anchor_embed.data.npy_file import load_npy

    if not path.is_file():
        raise AnchorEmbedError(f"{path}: missing; {REBUILD}")
    return load_npy(path, REBUILD, mmap=True)


def as_ids(given: Any) -> list[str]:
    """Anchor ids as strings: one id or an iterable of them; an integer id is its decimal, as records read it."""
    from anchor_embed.data.key_file import integer_id

    def one(a: Any) -> str:
        if isinstance(a, str):
            return str(a)                       # numpy's str_ too, shown as a plain string
        if (as_text := integer_id(a)) is not None:
            return as_text
        raise AnchorEmbedError(f"anchor ids: expected strings (or integers), got {type(a).__name__} {a!r}")

    if isinstance(given, str) or integer_id(given) is not None:
        return [one(given)]
    try:
        return [one(a) for a in given]
    except TypeError:
        raise AnchorEmbedError(f"anchor ids: expected an id or a list of ids, got {type(given).__name__}") from None


def _open(index: str | Path | Lookup) -> Lookup:
    return index if isinstance(index, Lookup) else Lookup(index)


def similar(anchor_ids: list[str], index: str | Path | Lookup, k: int = 20) -> list[dict]:
    """Neighbours of indexed streamers: one NeighbourRow dict per id (unknown ids: found false, suggestions)."""
    return [n.to_dict() for n in _open(index).similar(anchor_ids, k)]


def similar_to_records(records: str | Path, index: str | Path | Lookup, k: int = 20,
                       media_root: str | Path | None = None, model=None, strict: bool = False,
                       explain: bool = False) -> list[dict]:
    """Neighbours of streamers not in the index, given as records: embedded with the index's model (loaded
    once, or the `model` given; atoms its feature cache holds are not re-encoded). Bad rows are skipped and
    named, as every reader does; `strict` stops at the first. A record re-describing an indexed streamer is
    not its own neighbour (as a lookup by id is not); `explain` adds the per-modality cosines."""
    from anchor_embed.data.records import read_streamers
    from anchor_embed.model.store import model_hash
    from anchor_embed.serving.encoder import Model

    look = _open(index)
    model_dir = Path(look.meta["model_dir"])
    if model is None:
        if look.meta.get("adapter"):        # the base alone would make vectors incomparable with the index's
            raise AnchorEmbedError(f"{look.dir}: built from vectors of {model_dir} patched by {look.meta['adapter']}; "
                                   "--record embeds with a run's own model only (embed --adapter, then index build)")
        if not (model_dir / "model.safetensors").is_file() or model_hash(model_dir) != look.meta["model_hash"]:
            raise AnchorEmbedError(f"{look.dir}: the model that built it ({model_dir}) is gone or changed; "
                                   "cannot embed records")
        model = Model(model_dir)
    rows, report = read_streamers(records, strict=strict)
    if report.skipped or report.notes:      # a note: a control character in a nickname, say
        report.say("similar")
    if explain:
        look.need_parts()                       # before encoding
    media = media_root or Path(records).parent
    dumped = [r.model_dump() for r in rows]
    vecs, parts = model.encode(dumped, media_root=media, modalities=True) if explain else \
        (model.encode(dumped, media_root=media), None)
    hits = look.search(vecs, k, [r.anchor_id for r in rows])
    return [look.neighbours(r.anchor_id, h, explain, (parts[i], list(r.tags)) if explain else None).to_dict()
            for i, (r, h) in enumerate(zip(rows, hits, strict=True))]


def similar_explained(anchor_ids: list[str], index: str | Path | Lookup, k: int = 20) -> list[dict]:
    """`similar` with each neighbour's per-modality explanation."""
    return [n.to_dict() for n in _open(index).similar(anchor_ids, k, explain=True)]
