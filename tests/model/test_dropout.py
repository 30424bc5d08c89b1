"""The training step's own dropout and attention (model/dropout.py, model/packed.py) against torch's definitions."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import stats

from anchor_embed.model.dropout import dropout as fast_dropout
from anchor_embed.model.dropout import keep_mask


@pytest.mark.parametrize("p", [0.1, 0.25, 0.5])
def test_keep_mask_is_bernoulli_in_every_lane(p):
    """Each element is kept with probability 1 - p, whichever of a 64-bit word's four 16-bit lanes it came from
    (int64 random_ leaves a lane's sign bit non-uniform: without the 15-bit mask the top lane would be off),
    and neighbours are independent."""
    g = torch.Generator().manual_seed(0)
    n = 400_000
    m = keep_mask((n,), p, generator=g).numpy()
    for lane in range(4):
        kept = int(m[lane::4].sum())
        assert stats.binomtest(kept, n // 4, 1 - p).pvalue > 1e-4, (lane, kept / (n // 4))
    a, b = m[:-1].astype(float), m[1:].astype(float)
    assert abs(np.corrcoef(a, b)[0, 1]) < 0.01


def test_keep_mask_shapes_seeds_and_rounding():
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    a, b = keep_mask((7, 5, 3), 0.2, generator=g1), keep_mask((7, 5, 3), 0.2, generator=g2)
    assert a.shape == (7, 5, 3) and a.dtype == torch.bool and torch.equal(a, b)   # seeded: reproducible
    assert keep_mask((1000,), 0.0).all() and not keep_mask((1000,), 1.0).any()
    assert keep_mask((0, 4), 0.5).shape == (0, 4)


def test_dropout_matches_torch_in_law_and_in_its_gradient():
    """Inverted dropout as F.dropout defines it: zeros with probability p, survivors scaled by 1/(1-p) (exactly,
    in bf16 too), the mean kept; the gradient is the same mask and scale; identity when off."""
    x = torch.rand(200_000) + 0.5
    for dtype in (torch.float32, torch.bfloat16):
        xd = x.to(dtype)
        y = fast_dropout(xd, 0.25)
        kept = y != 0
        torch.testing.assert_close(y[kept], (xd[kept].float() * (1 / 0.75)).to(dtype), rtol=0, atol=0)
        assert abs(kept.float().mean().item() - 0.75) < 0.005
        assert abs(y.float().mean().item() / xd.float().mean().item() - 1) < 0.01
        ref = F.dropout(xd, 0.25, training=True)
        assert abs((ref != 0).float().mean().item() - kept.float().mean().item()) < 0.01
    w = torch.randn(1000, requires_grad=True)
    y = fast_dropout(w, 0.5)
    y.sum().backward()
    torch.testing.assert_close(w.grad, (y != 0).float() * 2.0)
    assert fast_dropout(x, 0.3, training=False) is x and fast_dropout(x, 0.0) is x
    assert not fast_dropout(x, 1.0).any()


def _sdpa_inputs(seed: int, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(5, 3, 7, 8, generator=g, dtype=dtype) for _ in range(3))
    mask = torch.rand(5, 1, 1, 7, generator=g) > 0.4
    mask[..., 0] = True                       # [CLS]: every row attends to something
    return q, k, v, mask


def test_written_out_attention_equals_torch_sdpa():
    """Without dropout: F.scaled_dot_product_attention with a boolean mask, in fp32 and (to bf16's precision)
    bf16, outputs and gradients; with dropout on the weights its mean over draws is the same output (dropout
    keeps the expectation, and the weights enter linearly)."""
    from anchor_embed.model.packed import _attention

    q, k, v, mask = _sdpa_inputs(0)
    q.requires_grad_(True)
    want, got = F.scaled_dot_product_attention(q, k, v, attn_mask=mask), _attention(q, k, v, mask, 0.0)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    (gw,), (gg,) = torch.autograd.grad(want.sum(), q), torch.autograd.grad(got.sum(), q)
    torch.testing.assert_close(gg, gw, atol=1e-5, rtol=1e-5)
    qb, kb, vb, _ = (t.bfloat16() if t.dtype != torch.bool else t for t in (q.detach(), k, v, mask))
    torch.testing.assert_close(_attention(qb, kb, vb, mask, 0.0).float(), want.detach(), atol=0.05, rtol=0.05)
    torch.manual_seed(0)
    mean = sum(_attention(q.detach(), k, v, mask, 0.3) for _ in range(3000)) / 3000
    torch.testing.assert_close(mean, want.detach(), atol=0.05, rtol=0)
