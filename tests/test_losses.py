import math

import torch
import torch.nn.functional as F

from anchor_embed.losses import alignment, info_nce, rkd_angle, rkd_distance, top1_accuracy, uniformity


def _direct(q, k, t, mask=None):
    """InfoNCE written out term by term in float64."""
    q, k = q.double(), k.double()
    b = q.shape[0]
    total = 0.0
    for a, c in ((q, k), (k, q)):
        for i in range(b):
            logits = [float(a[i] @ c[j]) / t for j in range(b)
                      if j == i or mask is None or not (mask[i, j] if a is q else mask[j, i])]
            pos = float(a[i] @ c[i]) / t
            total += -(pos - math.log(sum(math.exp(x) for x in logits)))
    return total / (2 * b)


def _pair(b=6, d=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(b, d, generator=g), dim=1), F.normalize(torch.randn(b, d, generator=g), dim=1)


def test_info_nce_matches_direct_float64():
    q, k = _pair()
    assert abs(float(info_nce(q, k, 0.1)) - _direct(q, k, 0.1)) < 1e-5


def test_false_negative_mask_matches_direct():
    q, k = _pair()
    mask = torch.zeros(6, 6, dtype=torch.bool)
    mask[0, 3] = mask[2, 5] = True
    mask[4, 4] = True  # the diagonal is never masked
    assert abs(float(info_nce(q, k, 0.1, not_negative=mask)) - _direct(q, k, 0.1, mask)) < 1e-5
    assert float(info_nce(q, k, 0.1, not_negative=mask)) < float(info_nce(q, k, 0.1))


def test_empty_queue_equals_plain_and_queue_adds_negatives():
    q, k = _pair()
    plain = info_nce(q, k, 0.07)
    assert torch.allclose(info_nce(q, k, 0.07, extra_negatives=torch.zeros(0, 5)), plain)
    queue = F.normalize(torch.randn(10, 5), dim=1)
    assert float(info_nce(q, k, 0.07, extra_negatives=queue)) > float(plain)


def test_metrics():
    x = F.normalize(torch.randn(50, 8), dim=1)
    assert float(alignment(x, x)) == 0.0 and float(top1_accuracy(x, x)) == 1.0
    collapsed = F.normalize(torch.ones(50, 8), dim=1)
    assert abs(float(uniformity(collapsed))) < 1e-6 and float(uniformity(x)) < -1.0


def test_rkd_terms_against_direct():
    g = torch.Generator().manual_seed(0)
    s, t = torch.randn(7, 4, generator=g), torch.randn(7, 3, generator=g)

    def direct_angle(x):
        b = x.shape[0]
        out = torch.zeros(b, b, b)
        for j in range(b):
            for i in range(b):
                for k in range(b):
                    e1, e2 = F.normalize(x[i] - x[j], dim=0), F.normalize(x[k] - x[j], dim=0)
                    out[j, i, k] = e1 @ e2
        return out
    want = F.smooth_l1_loss(direct_angle(s), direct_angle(t))
    assert math.isclose(float(rkd_angle(s, t, chunk=3)), float(want), rel_tol=1e-5)
    ds, dt = torch.cdist(s, s), torch.cdist(t, t)
    want_d = F.smooth_l1_loss(ds / ds[ds > 0].mean(), dt / dt[dt > 0].mean())
    assert math.isclose(float(rkd_distance(s, t)), float(want_d), rel_tol=1e-6)
