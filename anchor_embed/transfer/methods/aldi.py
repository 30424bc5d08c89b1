"""ALDI-style transfer: relational distillation from the ID embeddings, each streamer weighted by how much
behaviour stands behind its ID embedding.

Reference: Huang et al. 2023, "Aligning Distillation For Warm and Cold Recommendation" (SIGIR): a cold
(content) student is aligned to a warm (ID) teacher, and items with more interactions, whose teacher
embeddings are more reliable, weigh more (a tanh of their interaction count). Here the student's softmax
over the batch's similarities matches the teacher's (the rating-distribution alignment), with the weight
tanh(weight_scale x count) per streamer from an optional `anchor_id,count` CSV; equal weights without one.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import torch
from pydantic import Field

from anchor_embed.config import RunConfig
from anchor_embed.data.input_report import InputReport, is_number
from anchor_embed.errors import AnchorEmbedError
from anchor_embed.losses import soft_target_nce
from anchor_embed.transfer.methods.base import Embed, TransferData, TransferMethod
from anchor_embed.vectorspace import normalise_rows


def _bad_line(row: list[str]) -> str | None:
    """Why a weights-file line is not `anchor_id,count[,...]` with a finite count of at least 0, or None (columns
    after the count, as a CSV export may carry, are not read)."""
    if len(row) < 2:
        return "expected anchor_id,count, got 1 field"
    if not row[0].strip():
        return "blank anchor_id"
    try:
        value = float(row[1])
    except ValueError:
        return f"count {row[1]!r} is not a number"
    if not math.isfinite(value) or value < 0:
        return f"count {row[1].strip()!r} is not a finite number of at least 0"
    return None


def read_counts(path: str | Path, keys: list[str], train_rows: np.ndarray | None = None,
                report: InputReport | None = None) -> np.ndarray:
    """Interaction counts by cache row from a CSV of `anchor_id,count` (a header row first is allowed); 0 if absent.

    A line that is not `anchor_id,count` with a finite count >= 0 is one error naming it (and how many more
    are bad): a NaN count trained NaN weights, a negative one pushed streamers away from their targets. An id
    given again is skipped (the first kept) and an id of no streamer skipped, both counted in `report`, as the
    ID embeddings' reader does; a file that gives no training streamer (`train_rows`) a count above 0 is an
    error, since every weight would be 0 and the run would not learn."""
    path = Path(path)
    if not path.is_file():
        raise AnchorEmbedError(f"{path}: no such weights file (anchor_id,count per line)")
    report = report if report is not None else InputReport(source=str(path))
    where = {k: i for i, k in enumerate(keys)}
    counts = np.zeros(len(keys), np.float32)
    seen: dict[str, int] = {}
    bad: list[str] = []
    unknown: list[str] = []
    try:
        with open(path, newline="", encoding="utf-8") as f:
            for line, row in enumerate(csv.reader(f), 1):
                if not any(c.strip() for c in row) or (line == 1 and len(row) >= 2 and not is_number(row[1])):
                    continue            # a blank line, or a header (anchor_id,count)
                why = _bad_line(row)
                if why:
                    bad.append(f"{path}: line {line}: {why}")
                    continue
                key = row[0].strip()
                if key in seen:
                    report.bad(f"line {line}", "repeated id", f"anchor_id '{key}' given again (first on line "
                               f"{seen[key]}; first kept)")
                    continue
                seen[key] = line
                if key not in where:
                    unknown.append(key)
                    continue
                counts[where[key]] = float(row[1])
    except (UnicodeDecodeError, csv.Error) as exc:
        raise AnchorEmbedError(f"{path}: not a CSV of anchor_id,count ({type(exc).__name__}: {exc})") from None
    if bad:
        more = f" ({len(bad) - 1} more bad line{'s' if len(bad) > 2 else ''})" if len(bad) > 1 else ""
        raise AnchorEmbedError(f"{bad[0]}{more}; each line is anchor_id,count with a count of at least 0")
    if unknown:
        report.bad(f"{len(unknown)} ids", "unknown id", f"{len(unknown)} anchor_id(s) not among the streamers, e.g. "
                   + ", ".join(repr(k) for k in unknown[:3]), rows=len(unknown))
    report.kept = len(seen) - len(unknown)
    if train_rows is not None:
        given = int((counts[train_rows] > 0).sum())
        if given == 0:
            raise AnchorEmbedError(f"{path}: gives none of the {len(train_rows)} training streamers a count above 0 "
                                   f"({report.kept} line(s) match a streamer); every weight would be 0 and the run "
                                   "would not learn (is it the right file? lines are anchor_id,count)")
        report.notes.append(f"{given} of the {len(train_rows)} training streamers have a count above 0; the rest "
                            "weigh 0")
    return counts


def check_weights(weights_file: str | None, keys: list[str], train_rows: np.ndarray) -> np.ndarray | None:
    """The counts of `weights_file` by cache row (None without one), read before mining so a bad file is
    refused then, not after; what the file gave is said once (matched, skipped ids, training streamers
    weighing 0). The run hands them to the method (`TransferData.checked_inputs`): the file is read once."""
    if not weights_file:
        return None
    report = InputReport(source=str(weights_file))
    counts = read_counts(weights_file, keys, train_rows, report)
    report.say("transfer")
    return counts


def reliability_weights(data: TransferData, weights_file: str | None, scale: float) -> torch.Tensor:
    """Per cache row tanh(scale x interaction count) from `weights_file` (ALDI's reliability); ones without one.
    The counts are those `check_weights` read (`data.checked_inputs`), or read now when the method is built
    without them."""
    weights = np.ones(len(data.id_vectors), np.float32)
    if weights_file:
        counts = data.checked_inputs
        if counts is None:
            if data.keys is None:
                raise AnchorEmbedError("a weights file needs the streamers' keys")
            counts = check_weights(weights_file, data.keys, data.train_rows)
        weights = np.tanh(scale * counts)
    return torch.from_numpy(weights.astype(np.float32))


class ReliabilityDistillation(TransferMethod):
    """Match the teacher's similarity distribution over the batch, weighting streamers by tanh(scale x count)."""

    class Params(RunConfig):
        temperature: float = Field(0.1, gt=0, description="Student softmax temperature")
        target_temperature: float = Field(0.05, gt=0, description="Teacher (ID similarity) softmax temperature")
        weights_file: str | None = Field(None, description="CSV of anchor_id,interaction count (reliability)")
        weight_scale: float = Field(0.1, gt=0, description="w = tanh(weight_scale x count)")

    def __init__(self, out_dim, data, params, seed=0) -> None:
        super().__init__(out_dim, data, params, seed)
        self.unit_ids = torch.from_numpy(normalise_rows(data.id_vectors))
        self.weights = reliability_weights(data, params.weights_file, params.weight_scale)

    @classmethod
    def check_inputs(cls, params, keys: list[str], train_rows: np.ndarray) -> np.ndarray | None:
        return check_weights(params.weights_file, keys, train_rows)

    def loss(self, embed: Embed, batch: dict) -> torch.Tensor:
        rows = torch.as_tensor(batch["rows"])
        z = embed(batch["rows"])
        u = self.unit_ids[rows].to(z.device)
        teacher = torch.softmax((u @ u.T / self.params.target_temperature).fill_diagonal_(float("-inf")), dim=1)
        return soft_target_nce(z, teacher, self.params.temperature, row_weights=self.weights[rows].to(z.device))
