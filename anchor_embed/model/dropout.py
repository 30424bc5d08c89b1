"""Dropout whose mask costs a fifth of torch's on CPU: the training step's hot loop drops many small tensors.

`torch.nn.functional.dropout` draws one Bernoulli per element (about 7 ms for 1.5M elements on this project's
2-core machine, a sixth of a pretraining step). Here one 64-bit random integer gives the keep bits of four
elements (15 uniform bits each), so p is applied in steps of 1/32768; the same distribution otherwise, the
same 1/(1-p) scaling, and gradients flow through the kept elements as with torch's.
"""

from __future__ import annotations

import torch

# 15 uniform bits per element: int64 random_() draws from [0, 2**63), so the top int16 lane's sign bit is always 0
_BITS = 32768


def keep_mask(shape: tuple[int, ...], p: float, device: torch.device | str = "cpu",
              generator: torch.Generator | None = None) -> torch.Tensor:
    """Bools of `shape`, each True (kept) with probability 1 - p (p rounded to a multiple of 1/32768)."""
    threshold = int(round(p * _BITS))
    if threshold <= 0 or threshold >= _BITS:   # (an int16 comparison with 32768 would wrap around)
        return torch.full(shape, threshold <= 0, dtype=torch.bool, device=device)
    n = 1
    for s in shape:
        n *= int(s)
    words = torch.empty((n + 3) // 4, dtype=torch.int64, device=device).random_(generator=generator)
    bits = words.view(torch.int16)[:n] & (_BITS - 1)
    return (bits >= threshold).view(shape)


def dropout(x: torch.Tensor, p: float, training: bool = True, generator: torch.Generator | None = None
            ) -> torch.Tensor:
    """Inverted dropout as `F.dropout(x, p, training)`: zeros with probability p, the rest scaled by 1/(1-p)."""
    if not training or p <= 0:
        return x
    if p >= 1:
        return torch.zeros_like(x)
    # (x * mask) first, then the scale as a Python float: exact in bf16 too (a bf16 scale would be 0.2% off)
    return x * keep_mask(x.shape, p, x.device, generator).to(x.dtype) * (1.0 / (1.0 - p))
