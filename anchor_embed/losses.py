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
    extra_not_negative: torch.Tensor | None = None,
) -> torch.Tensor:
    """Symmetric InfoNCE: row i of `q` should pick row i of `k` among all rows of `k` (and vice versa).

    Args:
        q, k: (B, D) L2-normalised embeddings; (q[i], k[i]) is the positive pair.
        temperature: softmax temperature (a tensor when learned).
        extra_negatives: (Q, D) more negatives for both directions, e.g. a MoCo queue.
        not_negative: (B, B) bool; True at (i, j), j != i, removes k[j] as a negative of q[i] (and q[i] of
            k[j] in the other direction): in-batch false negatives.
        symmetric: average the q->k and k->q losses (CLIP); otherwise q->k only.
        extra_not_negative: (B, Q) bool; True at (i, j) removes extra_negatives[j] as a negative of q[i] and of
            k[i] (e.g. row i's own earlier key still in the queue). Needs `extra_negatives`.

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
    if extra_not_negative is not None:
        if extra_negatives is None:
            raise ValueError("extra_not_negative needs extra_negatives")
        if tuple(extra_not_negative.shape) != (b, extra_negatives.shape[0]):
            raise ValueError(f"extra_not_negative has shape {tuple(extra_not_negative.shape)}, "
                             f"expected {(b, extra_negatives.shape[0])}")

    def with_queue(scores: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
        if extra_negatives is None:
            return scores
        queue = anchors @ extra_negatives.T / temperature
        if extra_not_negative is not None:
            queue = queue.masked_fill(extra_not_negative.to(queue.device), float("-inf"))
        return torch.cat([scores, queue], 1)
    loss = F.cross_entropy(with_queue(logits, q), target)
    if not symmetric:
        return loss
    return (loss + F.cross_entropy(with_queue(logits.T, k), target)) / 2


def soft_target_nce(z: torch.Tensor, targets: torch.Tensor, temperature: float | torch.Tensor,
                    row_weights: torch.Tensor | None = None) -> torch.Tensor:
    """Cross-entropy of each row's target distribution over the other rows against softmax_j(z_i . z_j / t).

    Args:
        z: (B, D) L2-normalised embeddings of B distinct streamers.
        targets: (B, B) non-negative, each row summing to 1 over j != i (its diagonal is ignored), or all
            zero for a row with no target in this batch (left out of the mean).
        temperature: softmax temperature.
        row_weights: (B,) non-negative weight of each row's term (a weighted mean); equal when None.

    With one-hot targets this is InfoNCE over in-batch candidates; with several positives it is the
    supervised-contrastive form (Khosla et al. 2020); with a teacher's similarity distribution as targets it
    is similarity distillation (SEED, Fang et al. 2021).
    """
    b = z.shape[0]
    eye = torch.eye(b, dtype=torch.bool, device=z.device)
    logp = torch.log_softmax((z @ z.T / temperature).masked_fill(eye, float("-inf")), dim=1).masked_fill(eye, 0.0)
    has = targets.sum(1) > 0
    if not bool(has.any()):
        return z.sum() * 0.0
    per_row = -(targets.masked_fill(eye, 0.0) * logp).sum(1)[has]
    if row_weights is None:
        return per_row.mean()
    w = row_weights[has].to(per_row.dtype)
    return (w * per_row).sum() / w.sum().clamp(min=1e-12)


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
    """RKD distance term (Park et al. 2019): Huber loss between pairwise distances, each normalised by its mean.

    psi_D(x_i, x_j) = |x_i - x_j|_2 / mu, mu = mean of |x_i - x_j|_2 over the distinct pairs i != j; the loss is the
    Huber (smooth L1, delta 1) loss averaged over the pairs i != j (lenscloth/RKD `RkdDistance`, whose mean also
    runs over the zero diagonal, is B / (B - 1) times smaller). Distances are exact (from differences, not from
    the Gram matrix), so equal rows are at distance 0 and do not perturb mu; their gradient there is 0, not NaN.
    All rows equal (mu = 0) gives normalised distances 0. Fewer than two rows: 0.
    """
    b = student.shape[0]
    if b < 2:
        return student.sum() * 0.0
    off = ~torch.eye(b, dtype=torch.bool, device=student.device)

    def norm_dist(x: torch.Tensor) -> torch.Tensor:
        # Not the matrix-multiply path: |xi|^2 + |xj|^2 - 2 xi.xj leaves ~1e-3 noise on equal rows.
        d = torch.cdist(x, x, compute_mode="donot_use_mm_for_euclid_dist")[off]  # (B (B - 1),) pairs i != j
        return d / d.mean().clamp(min=1e-12)
    with torch.no_grad():
        t = norm_dist(teacher)
    return F.smooth_l1_loss(norm_dist(student), t)


def rkd_angle(student: torch.Tensor, teacher: torch.Tensor, chunk: int = 64) -> torch.Tensor:
    """RKD angle term: Huber loss between cosines of the angle at each anchor j of every triple (i, j, k).

    Values are computed over anchors in chunks (chunk x B x B at a time; with gradients every chunk's graph
    is kept until backward). Where two rows coincide the unit vector between them is 0 with a zero gradient,
    not F.normalize's 1/eps one, so identical content of two streamers cannot blow up a step (Park et al. 2019).
    """
    def angles(x: torch.Tensor, js: slice) -> torch.Tensor:
        d = x.unsqueeze(0) - x[js].unsqueeze(1)                        # (c, B, D): vectors j -> i
        norm = d.norm(dim=2, keepdim=True)
        e = torch.where(norm > 1e-12, d / norm.clamp(min=1e-12), torch.zeros_like(d))
        return torch.bmm(e, e.transpose(1, 2))                        # (c, B, B)
    b = student.shape[0]
    total = student.new_zeros(())
    for s in range(0, b, chunk):
        js = slice(s, min(b, s + chunk))
        with torch.no_grad():
            t = angles(teacher, js)
        total = total + F.smooth_l1_loss(angles(student, js), t, reduction="sum")
    return total / (b * b * b)
