"""The transfer run config (torch-free: a method's own settings model is loaded only to validate `params`)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, ValidationError, model_validator

from anchor_embed.config import RunConfig, describe
from anchor_embed.errors import AnchorEmbedError
from anchor_embed.training.config import TrainingConfig
from anchor_embed.transfer.filters import FILTERS
from anchor_embed.transfer.methods import METHODS

MethodName = Literal[tuple(METHODS.names())]
FilterName = Literal[tuple(FILTERS.names())]


class TransferConfig(TrainingConfig):
    """Everything that shapes a transfer run; saved as RUN_DIR/config.json. `params` are the method's own."""

    method: MethodName = Field("contrastive", description="Transfer method")
    params: Any = Field(default_factory=dict, description="The method's own settings (see its Params)")
    epochs: int = Field(100, ge=1, description="Most epochs to train (validation R@10 keeps the best, stops early)")
    lr: float = Field(3e-4, gt=0, description="AdamW learning rate")
    patience: int = Field(10, ge=0, description="Epochs without a better validation figure before stopping (0 = never)")
    k: int = Field(10, ge=1, description="Behavioural neighbours mined per streamer")
    exact_mining_up_to: int = Field(200_000, ge=2, description="Streamers mined by exact search; an IVF index "
                                    "above, its measured recall written to run.json")
    filter: FilterName = Field("content", description="How mined pairs are judged alike in content")
    threshold: float | None = Field(None, description="Content score a kept pair must reach")
    quantile: float | None = Field(0.3, ge=0, le=1, description="Per-query quantile of the content score kept")
    mutual: bool = Field(False, description="Keep only mutual pairs (each among the other's mined neighbours): "
                         "cleaner positives under noisy ID embeddings, but fewer; lower on the bench's noisy "
                         "cells (docs/tuning.md, twenty-third round)")
    teacher_share: float = Field(1.0, gt=0, le=1, description="Share of the ID embedding in the teacher the "
                                 "method learns from (mined pairs, soft targets); below 1 the rest is what content "
                                 "predicts of it (out-of-fold RidgeCV). Validation and the map read the ID "
                                 "embeddings. Twice the right mined pairs under sparse behaviour, no gain in "
                                 "recall on the bench's sparse cells (docs/tuning.md, twenty-fourth round)")
    holdout_frac: float = Field(0.0, ge=0, lt=1, description="Share of ID-embedded streamers held out for evaluate "
                                "(0: the model learns from all, as in production)")
    init: Literal["pretrained", "scratch"] = Field(
        "pretrained", description="Start from the pretrained weights, or from fresh ones of the same shape")
    input_dropout: float | None = Field(None, ge=0, lt=1, description="Dropout on the input features of each "
                                        "training batch (default: the method's own, 0.2 for contrastive, 0 for "
                                        "the baselines)")
    linear_share: float | None = Field(None, ge=0, lt=1, description="Weight in the output's cosine of a "
                                       "closed-form map (--map) of the pooled input features to the ID "
                                       "embeddings, fitted on the training streamers (default: the method's own, "
                                       "0.5 for contrastive, 0 for the baselines)")
    map: Literal["auto", "kernel", "linear", "residual"] = Field(
        "auto", description="The map blended into the output (weight --linear-share): kernel ridge on RBF features "
        "of the pooled inputs, RidgeCV on the inputs themselves, RidgeCV plus kernel ridge of its residuals (alpha "
        "by validation), or all three fitted and the one whose blend scores best on validation kept with the "
        "epoch (auto)")
    map_refit: bool = Field(True, description="After training, fit the kept map (its kind and alpha) again on "
                            "the training and validation streamers, so every streamer with an ID embedding is "
                            "placed by it; the validation figures are of the map before")
    map_landmarks: int = Field(4096, ge=1, description="Most landmarks of the kernel map: every training streamer "
                               "up to this many (exact kernel ridge), a seeded sample above; the fit's memory "
                               "grows with its square and its time with its cube")
    select_on: Literal["recall_at_10", "mean_recall_at_10"] = Field(
        "recall_at_10", description="Validation figure that picks the epoch: Recall@10 among training and "
        "validation streamers, or its mean with the new-vs-new figure (validation streamers alone)")
    aux_weight: float = Field(0.0, ge=0, description="Weight of the self-supervised view loss (0 = off)")
    aux_temperature: float = Field(0.07, gt=0, description="Temperature of the self-supervised view loss")
    members: int = Field(1, ge=1, description="Runs trained from the same start and split, each with its own "
                         "batches and dropout, whose weights are averaged into the kept model (a uniform model "
                         "soup; 1: one run)")
    member: int | None = Field(None, ge=0, description="Which member of a soup this run is (set by --members; "
                               "member 0 draws as a single run does)")

    def map_share(self) -> float:
        """The map's weight in the output: --linear-share, else the method's own default (0 for the baselines)."""
        return METHODS.load(self.method).linear_share if self.linear_share is None else self.linear_share

    def refuse_ignored_map(self) -> None:
        """A --map kind with no map to blend (a share of 0, given or the method's default) would be ignored:
        refused in one line before any work. `auto`, the default, names no kind and stays fine."""
        if self.map == "auto" or self.map_share() > 0:
            return
        why = ("--linear-share 0" if self.linear_share is not None
               else f"method '{self.method}' blends none unless --linear-share is above 0")
        raise AnchorEmbedError(f"--map {self.map}: there is no map to blend ({why}); give --linear-share above 0 "
                               "for the map, or leave --map out for the fusion vector alone")

    def draws(self) -> list[int]:
        """The seed, and a soup member's index past member 0: the members' batches and dropout differ, while
        the split, the mining and the linear map (all drawn from the seed alone) stay the same."""
        return [self.seed] if not self.member else [self.seed, self.member]

    @model_validator(mode="after")
    def _method_params(self) -> TransferConfig:
        """Validate `params` against the chosen method's own settings model."""
        cls = METHODS.load(self.method).Params
        if not isinstance(self.params, cls):
            raw = self.params.model_dump() if isinstance(self.params, RunConfig) else self.params
            try:
                object.__setattr__(self, "params", cls.model_validate(raw))
            except ValidationError as exc:
                raise ValueError(f"{describe(exc, key_prefix='params.')} (method '{self.method}' takes: "
                                 f"{', '.join(cls.model_fields) or 'no params'})") from None
        return self
