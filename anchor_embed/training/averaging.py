"""Exponential moving average of a model's weights (Polyak averaging), the model a run validates and keeps.

Small, noisy training sets make the weights of any one step a poor pick; their running average is smoother
and depends less on which epoch validation happens to choose (Polyak & Juditsky 1992; the "model EMA" of
MoCo, BYOL and timm). The trained weights keep driving the optimisation; the average only is scored and saved.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn


class WeightAverage:
    """avg <- decay * avg + (1 - decay) * w after every step, over the floating-point parameters of `model`."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = decay
        self.params = [p for p in model.parameters() if p.is_floating_point()]
        self.average = [p.detach().clone() for p in self.params]

    @torch.no_grad()
    def update(self) -> None:
        """Fold the current weights into the average."""
        torch._foreach_lerp_(self.average, [p.detach() for p in self.params], 1.0 - self.decay)

    @contextmanager
    def applied(self) -> Iterator[None]:
        """Inside the block the model holds the averaged weights; its trained weights come back after."""
        trained = [p.detach().clone() for p in self.params]
        with torch.no_grad():
            for p, a in zip(self.params, self.average, strict=True):
                p.copy_(a)
        try:
            yield
        finally:
            with torch.no_grad():
                for p, t in zip(self.params, trained, strict=True):
                    p.copy_(t)

    def state(self) -> dict[str, torch.Tensor]:
        """The average as checkpoint tensors (a resumed run continues it)."""
        return {str(i): a for i, a in enumerate(self.average)}

    def load(self, tensors: dict[str, torch.Tensor]) -> None:
        """Restore what `state` saved."""
        with torch.no_grad():
            for i, a in enumerate(self.average):
                a.copy_(tensors[str(i)])
