"""Run configs of training (torch-free, so the CLI can build its flags from them without importing torch)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from anchor_embed.config import RunConfig
from anchor_embed.model.views import ViewConfig


class TrainingConfig(RunConfig):
    """What every training run shares: budget, optimizer, schedule, selection, seed. Stages add their own fields."""

    epochs: int = Field(20, ge=1, description="Most epochs to train (validation keeps the best and stops early)")
    batch_size: int = Field(256, ge=2, description="Streamers (or pairs) a step")
    lr: float = Field(1e-3, gt=0, description="AdamW learning rate")
    weight_decay: float = Field(0.01, ge=0, description="AdamW weight decay")
    schedule: Literal["cosine", "constant"] = Field("cosine", description="Learning rate after warmup")
    warmup: float = Field(0.05, ge=0, lt=1, description="Share of all steps with a linear learning-rate warmup")
    patience: int = Field(5, ge=0, description="Epochs without a better validation figure before stopping (0 = never)")
    weight_average: float = Field(0.0, ge=0, lt=1, description="Decay of an exponential moving average of the "
                                  "weights per step, validated and kept instead of the last step's (0 = off)")
    val_frac: float = Field(0.1, ge=0, lt=1, description="Share of the training streamers held aside for validation")
    device: Literal["auto", "cpu", "cuda", "mps"] = Field("auto", description="Where to train (auto: CUDA when present)")
    precision: Literal["auto", "fp32", "bf16"] = Field(
        "auto", description="bf16 autocast (CUDA, or a CPU with bf16 instructions; auto: where the hardware has "
        "them) or fp32; losses stay fp32")
    seed: int = Field(0, description="Seed of every random draw")
    threads: int = Field(2, ge=1, description="torch threads")

    def draws(self) -> list[int]:
        """The entropy of the run's training draws (batches, dropout): the seed; a soup member adds its index."""
        return [self.seed]


class PretrainConfig(TrainingConfig):
    """Everything that shapes a pretraining run; saved as RUN_DIR/config.json."""

    epochs: int = Field(30, ge=1, description="Most epochs to train (the lowest loss is kept; stops early)")
    lr: float = Field(3e-4, gt=0, description="AdamW learning rate")
    temperature: float = Field(0.07, gt=0, description="InfoNCE temperature (the start, if learned)")
    learn_temperature: bool = Field(False, description="Learn the temperature (CLIP's logit scale)")
    min_temperature: float = Field(0.01, gt=0, description="Clamp of a learned temperature (CLIP: 1/100)")
    max_overlap: float = Field(0.5, ge=0, le=1, description="Cap on atoms shared by two views, over their union "
                               "(0.2 is unlearnable on text+tags data: the views share too little)")
    modality_drop: float = Field(0.2, ge=0, le=1, description="Chance a view drops a whole modality")
    keep: float = Field(0.9, gt=0, le=1, description="Share of a streamer's atoms that enter the two views at all")
    noise: float = Field(0.02, ge=0, description="Gaussian noise on the input features of each view")
    feature_dropout: float = Field(0.1, ge=0, lt=1, description="Dropout on the input features of each view")
    queue_size: int = Field(0, ge=0, description="MoCo queue of momentum-encoder embeddings; 0 = off")
    momentum: float = Field(0.99, ge=0, le=1, description="Momentum of the MoCo key encoder")
    out_dim: int = Field(256, ge=1, description="Width of the streamer vector")
    d_model: int = Field(256, ge=1, description="Width of the fusion transformer")
    layers: int = Field(2, ge=1, description="Fusion transformer layers")
    heads: int = Field(4, ge=1, description="Attention heads")
    dropout: float = Field(0.1, ge=0, lt=1, description="Dropout inside the fusion transformer")
    tag_min_count: int = Field(3, ge=1, description="Streamers a tag needs for a learned embedding of its own")
    max_texts: int = Field(16, ge=0, description="Text atoms per streamer the model reads (saved with the model)")
    max_frames: int = Field(8, ge=0, description="Frames per streamer the model reads (saved with the model)")
    max_tags: int = Field(16, ge=0, description="Tags per streamer the model reads (saved with the model)")

    def views(self) -> ViewConfig:
        """The masked-view settings."""
        return ViewConfig(self.max_overlap, self.modality_drop, self.keep)


class AdaptConfig(TrainingConfig):
    """What shapes an adapt run; saved as RUN/config.json."""

    mode: Literal["adapter", "full", "head"] = Field("adapter", description="What trains: low-rank patch + head, "
                                                     "every weight + head, or the head alone")
    target: str = Field(description="The label column")
    kind: Literal["classify", "regress"] = Field("classify", description="Classes or numbers")
    rank: int = Field(4, ge=1, description="Rank of the low-rank deltas (adapter mode)")
    alpha: float | None = Field(None, gt=0, description="Scale of the deltas (default 2 x rank)")
    epochs: int = Field(30, ge=1, description="Most epochs (validation keeps the best)")
    batch_size: int = Field(128, ge=2, description="Streamers a step")
    lr: float = Field(1e-3, gt=0, description="AdamW learning rate")
    val_frac: float = Field(0.15, ge=0, lt=1, description="Share of the labelled streamers for validation (0: the "
                            "head's regularisation is chosen by 5-fold CV on the training streamers)")
    holdout_frac: float = Field(0.0, ge=0, lt=1, description="Share kept aside and scored once at the end")
    head_refit: bool = Field(True, description="Fit a closed-form head (--mode head, or the warm start a run keeps) "
                             "again on the training and validation streamers at the regularisation validation chose")
