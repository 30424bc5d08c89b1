"""Pydantic models of every file read or written; `python -m anchor_embed.schemas DIR` exports JSON Schemas.

The exported files in the top-level `data_schemas/` are the contract for producers in other languages;
a test fails when they drift from these models.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from pydantic import BaseModel, Field

from anchor_embed.data.records import StreamerRecord


class IdEmbeddingRow(BaseModel):
    """One row of an ID-embedding Parquet file (or of .npz `keys`/`vectors`, or .npy + .keys.txt)."""

    anchor_id: str = Field(min_length=1)
    vector: list[float] = Field(description="The ID embedding; any single list column name is accepted.")


class FeatureCacheMeta(BaseModel):
    """`meta.json` of a feature cache: which backbones made it (a cache refuses to mix them)."""

    text_backbone: str
    text_identity: str
    image_backbone: str
    image_identity: str
    video_frames: int
    text_dim: int
    image_dim: int
    store_dtype: str
    max_texts: int
    max_frames: int
    max_tags: int
    max_text_chars: int | None = Field(None, description="Texts longer than this were cut before encoding.")
    streamers_file: str
    media_root: str


class EpochMetrics(BaseModel):
    """One line of a run's `metrics.jsonl`: epoch means of the training figures, then validation."""

    epoch: int
    loss: float
    aux_loss: float | None = Field(None, description="Transfer: the self-supervised view loss, unweighted.")
    view_top1: float | None = Field(None, description="Share of views whose nearest other view is their pair.")
    alignment: float | None = None
    uniformity: float | None = None
    streamers_per_s: float | None = None
    precision: str | None = Field(None, description="fp32 or bf16: what --precision (auto by default) meant on "
                                  "the hardware of this epoch.")
    lr: float | None = Field(None, description="Learning rate of the epoch's last step.")
    extra: dict[str, float] = Field(default_factory=dict)
    validation: dict[str, float] = Field(
        default_factory=dict, description="Figures on the run's validation streamers (transfer: recall_at_10 "
        "against their ID neighbours; pretraining: the view task on fixed views).")
    best: bool = Field(False, description="The best validation figure so far: this epoch's model is the run's.")


class SoupMemberEpoch(BaseModel):
    """One member of a `transfer --members` soup in its outcome.json: which epoch's model it put in the soup."""

    member: int
    best_epoch: int | None = Field(description="The epoch the member kept (0: the model it started from).")


class RunOutcome(BaseModel):
    """`outcome.json` of a training run, written last: a run without it did not finish."""

    complete: bool
    epochs_run: int
    stopped_by: str = Field(description="'epochs' (the cap), 'patience' (no better validation figure), 'soup' "
                            "(the weights averaged over `transfer --members` runs) or 'closed form' (`adapt --mode "
                            "head`: no epochs).")
    best_epoch: int | None = Field(description="The epoch whose model is the run's model.safetensors (0: the "
                                   "model training started from, no epoch beat it); null when no epoch's model is "
                                   "it: a soup (its members' epochs in `members`), adapt's closed-form head.")
    members: list[SoupMemberEpoch] | None = Field(None, description="A soup: the epoch each averaged member kept.")
    monitor: str | None = Field(None, description="The validation figure that chose it.")
    best: float | None = None


class VectorsMeta(BaseModel):
    """`meta.json` of a vectors folder written by `embed` (beside `vectors.npy` and `keys.txt`)."""

    model_dir: str
    model_hash: str = Field(description="Hash of the weights that made the vectors.")
    dim: int
    dtype: str
    count: int
    normalized: bool = True
    feature_cache: str | None = Field(None, description="The cache whose encoded atoms were reused.")
    fingerprint: str | None = Field(None, description="Digest of what made the vectors: model weights, the "
                                    "records' bytes, media root, dtype, shards (fingerprint.json has the parts).")


class IndexMeta(BaseModel):
    """`meta.json` of an index folder (beside `index.faiss` and `keys.txt`)."""

    model_hash: str
    model_dir: str
    dim: int
    metric: str = "inner_product"
    kind: str = Field(description="flat, hnsw, ivf_flat, ivf_pq, ...")
    params: dict[str, float | int | str] = Field(default_factory=dict)
    count: int
    k: int | None = Field(None, description="Neighbours a lookup asks for, the recall was tuned at (null: an "
                          "older index, tuned at 10 with the query counted as its own neighbour).")
    recall_at_k: float | None = Field(None, description="Recall at k of the search setting, against exact search on "
                                      "1,000 indexed streamers as queries, each left out of its own neighbours as "
                                      "`similar` leaves it.")
    recall_at_10: float | None = Field(None, description="As recall_at_k, at 10.")
    recall_at_50: float | None = Field(None, description="As recall_at_k, at 50.")
    target_recall: float | None = Field(None, description="Recall at k the search parameter was tuned to reach.")
    tuning: list[dict[str, float | int]] = Field(default_factory=list,
                                                 description="Search parameter values tried: recall_at_k and "
                                                 "queries/s.")
    note: str = Field("", description="Why the picked kind was changed, or that the target was missed.")
    build_seconds: float
    vectors_dir: str
    media_root: str | None = Field(None, description="Where embed read the vectors' frames (the server's default "
                                   "--media-root); null when unknown.")


class Explanation(BaseModel):
    """`similar --explain`: how alike two streamers are in each modality (the fusion model on that one alone)."""

    text: float | None = Field(description="Cosine of their text-only vectors; null when either has no text.")
    frames: float | None = Field(description="Cosine of their frames-only vectors; null when either has no frame.")
    tags: float | None = Field(description="Cosine of their tags-only vectors; null when either has no tag.")
    shared_tags: list[str] = Field(description="Tags both show (case-insensitive).")


class Neighbour(BaseModel):
    anchor_id: str
    score: float = Field(description="Cosine of the two streamers' vectors.")
    nickname: str | None = None
    tags: list[str] = Field(default_factory=list)
    explain: Explanation | None = Field(None, description="With --explain only.")


class NeighbourRow(BaseModel):
    """One line of `similar --json` output or of a neighbours file."""

    anchor_id: str
    neighbours: list[Neighbour]
    found: bool = Field(True, description="False when the id is not in the index (then no neighbours).")
    suggestions: list[str] = Field(default_factory=list, description="Indexed ids close to an unknown one.")


class DedupGroup(BaseModel):
    """One line of `dedup` output: a group of near-duplicate streamers."""

    group: int
    representative: str = Field(description="The member with the most pairs at or above the threshold.")
    members: list[str]
    size: int
    min_similarity: float = Field(description="Lowest cosine over all pairs of members (below the threshold "
                                  "is possible with single linkage: a chain of close pairs).")
    max_similarity: float
    min_exact: bool = Field(True, description="False when the minimum comes from a sample of pairs (large groups).")
    linkage: str = Field("single", description="single: connected components; complete: every pair at or "
                         "above the threshold.")
    threshold: float | None = Field(None, description="The cosine (--threshold) its pairs reached; absent in "
                                    "outputs of earlier versions, as the other settings below.")
    clusters: int | None = Field(None, description="k-means clusters the pairs were searched within, after the "
                                 "cap of --clusters (or what --memory-budget chose); 0: exact search over all.")
    assign: int | None = Field(None, description="Nearest clusters each streamer joined (--assign, at most the "
                               "clusters); 0 with exact search.")
    max_group_size: int | None = Field(None, description="--max-group-size; 0: no limit.")
    reviewed: str | None = Field(None, description="Digest of the reviewed pairs (--reviewed) applied: their ids "
                                 "and verdicts; null when none was.")
    vectors: str | None = Field(None, description="The fingerprint of the vectors it was found in (their "
                                "meta.json), when they record one.")


class ClusterRow(BaseModel):
    """One line of `scatter` output."""

    anchor_id: str
    cluster: int
    distance: float = Field(description="1 - cosine to the cluster centroid.")
    clusters: int | None = Field(None, description="Clusters k-means fitted (--clusters, at most the streamers); "
                                 "absent in outputs of earlier versions, as seed.")
    seed: int | None = Field(None, description="The k-means seed (--seed).")
    vectors: str | None = Field(None, description="The fingerprint of the vectors it was assigned from (their "
                                "meta.json), when they record one.")


class MinedPair(BaseModel):
    """One line of a transfer run's `pairs.jsonl`: a mined behavioural neighbour and the filter's verdict."""

    query: str
    neighbour: str
    id_score: float = Field(description="Cosine of the two streamers' ID embeddings.")
    mining_score: float | None = Field(None, description="With `--teacher-share` below 1 only: their cosine in "
                                       "the space the pair was mined in (each ID embedding blended with what "
                                       "content predicts of it), which ranked it among the query's neighbours "
                                       "and which the method learns from.")
    content_score: float | None = Field(description="The filter's content score; null with `--filter none`.")
    kept: bool


class EvalRow(BaseModel):
    """One row of `evaluate` output (`evaluation.json`): a model, or a reference (frozen backbones, one
    modality's frozen features, ridge, content-kNN averaging, the teaching ID embeddings themselves)."""

    model: str
    recall_at_10: float
    recall_at_10_new: float | None = None   # over the true neighbours that are held out too (new streamers)
    recall_at_50: float
    ndcg_at_10: float
    alignment: float
    uniformity: float
    queries: int
    run: str | None = Field(None, description="A model row's run folder (absolute): rows are matched by it when "
                            "a later evaluation of the same inputs is merged in, so two runs of one name stay apart.")


SCHEMAS: dict[str, type[BaseModel]] = {
    "streamer_record": StreamerRecord,
    "id_embedding_row": IdEmbeddingRow,
    "feature_cache_meta": FeatureCacheMeta,
    "epoch_metrics": EpochMetrics,
    "run_outcome": RunOutcome,
    "vectors_meta": VectorsMeta,
    "index_meta": IndexMeta,
    "neighbour_row": NeighbourRow,
    "dedup_group": DedupGroup,
    "cluster_row": ClusterRow,
    "mined_pair": MinedPair,
    "eval_row": EvalRow,
}


def render(name: str) -> str:
    """The JSON Schema text of one contract, as exported."""
    return json.dumps(SCHEMAS[name].model_json_schema(), indent=2, ensure_ascii=False, sort_keys=True) + "\n"


def export(folder: str | Path) -> list[Path]:
    """Write every schema to `folder/NAME.schema.json`."""
    from anchor_embed.atomic import write_text

    folder = Path(folder)
    written = []
    for name in SCHEMAS:
        path = folder / f"{name}.schema.json"
        write_text(path, render(name))
        written.append(path)
    return written


if __name__ == "__main__":
    for p in export(sys.argv[1] if len(sys.argv) > 1 else "data_schemas"):
        print(p)
