"""Losses and embedding-quality metrics as pure functions of tensors (no state, no distributed calls)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def info_nce(
    q: torch.Tensor,
    k: torch.Tensor,
    temperature: float | torch.Tensor,
    extra_negatives: torch.Tensor | None = None,
    not_negative: torch.Tensor | None = None,
    symmetric: bool = True,
) -> torch.Tensor:
    """Symmetric InfoNCE: row i of `q` should pick row i of `k` among all rows of `k` (and vice versa).

    Args:
        q, k: (B, D) L2-normalised embeddings; (q[i], k[i]) is the positive pair.
        temperature: softmax temperature (a tensor when learned).
        extra_negatives: (Q, D) more negatives for both directions, e.g. a MoCo queue.
        not_negative: (B, B) bool; True at (i, j), j != i, removes k[j] as a negative of q[i] (and q[i] of
            k[j] in the other direction): in-batch false negatives.
        symmetric: average the q->k and k->q losses (CLIP); otherwise q->k only.

    References: van den Oord et al. 2018 (CPC, InfoNCE); Radford et al. 2021 (CLIP, symmetric form);
    He et al. 2020 (MoCo, queue of negatives).
    """
    b = q.shape[0]
    target = torch.arange(b, device=q.device)
    logits = q @ k.T / temperature
    if not_negative is not None:
        mask = not_negative.clone()
        mask.fill_diagonal_(False)
        logits = logits.masked_fill(mask, float("-inf"))
    rows = logits if extra_negatives is None else torch.cat([logits, q @ extra_negatives.T / temperature], 1)
    loss = F.cross_entropy(rows, target)
    if not symmetric:
        return loss
    cols = logits.T if extra_negatives is None else torch.cat([logits.T, k @ extra_negatives.T / temperature], 1)
    return (loss + F.cross_entropy(cols, target)) / 2


def alignment(x: torch.Tensor, y: torch.Tensor, alpha: float = 2.0) -> torch.Tensor:
    """Mean distance^alpha between positive pairs; lower is better (Wang & Isola 2020)."""
    return (x - y).norm(dim=1).pow(alpha).mean()


def uniformity(x: torch.Tensor, t: float = 2.0) -> torch.Tensor:
    """log E[exp(-t * |xi - xj|^2)] over distinct pairs; lower means more uniform (Wang & Isola 2020)."""
    if x.shape[0] < 2:
        return torch.tensor(0.0)
    return torch.pdist(x, p=2).pow(2).mul(-t).exp().mean().log()


def top1_accuracy(q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Share of rows whose most similar row of `k` is their own pair."""
    return ((q @ k.T).argmax(dim=1) == torch.arange(q.shape[0], device=q.device)).float().mean()


def rkd_distance(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """RKD distance term: Huber loss between pairwise distances, each normalised by its mean (Park et al. 2019)."""
    def norm_dist(x: torch.Tensor) -> torch.Tensor:
        d = torch.cdist(x, x)
        return d / d[d > 0].mean().clamp(min=1e-12)
    with torch.no_grad():
        t = norm_dist(teacher)
    return F.smooth_l1_loss(norm_dist(student), t)


def rkd_angle(student: torch.Tensor, teacher: torch.Tensor, chunk: int = 64) -> torch.Tensor:
    """RKD angle term: Huber loss between cosines of the angle at each anchor j of every triple (i, j, k).

    Computed over anchors in chunks, so memory is chunk x B x B instead of B x B x B (Park et al. 2019).
    """
    def angles(x: torch.Tensor, js: slice) -> torch.Tensor:
        e = F.normalize(x.unsqueeze(0) - x[js].unsqueeze(1), dim=2)  # (c, B, D): unit vectors j -> i
        return torch.bmm(e, e.transpose(1, 2))                        # (c, B, B)
    b = student.shape[0]
    total = student.new_zeros(())
    for s in range(0, b, chunk):
        js = slice(s, min(b, s + chunk))
        with torch.no_grad():
            t = angles(teacher, js)
        total = total + F.smooth_l1_loss(angles(student, js), t, reduction="sum")
    return total / (b * b * b)
