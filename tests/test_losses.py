"""Each loss against its paper's formula written out term by term in float64 (plain Python loops)."""

import math

import pytest
import torch
import torch.nn.functional as F

from anchor_embed.losses import alignment, info_nce, rkd_angle, rkd_distance, top1_accuracy, uniformity


def _rows(x):
    """A tensor as nested Python lists of float64 values."""
    return x.detach().double().tolist()


def _dot(u, v):
    return sum(a * b for a, b in zip(u, v, strict=True))


def _dist(u, v):
    return math.sqrt(sum((a - b) ** 2 for a, b in zip(u, v, strict=True)))


def _huber(a):
    """Huber loss with delta 1 (= smooth L1 with beta 1)."""
    return 0.5 * a * a if abs(a) < 1 else abs(a) - 0.5


def _close(got, want, rel=1e-5, abs_=1e-7):
    return math.isclose(float(got.detach()), want, rel_tol=rel, abs_tol=abs_)


def _batch(kind, b=6, d=5, seed=0):
    """Two (B, D) L2-normalised batches: random, with duplicate rows, all rows identical, or B=2."""
    g = torch.Generator().manual_seed(seed)
    n = 2 if kind == "b2" else b
    x = F.normalize(torch.randn(n, d, generator=g, dtype=torch.float64), dim=1)
    y = F.normalize(torch.randn(n, d, generator=g, dtype=torch.float64), dim=1)
    if kind == "dup":
        x[1] = x[0]
        x[4] = x[2]
        y[3] = y[0]
        y[4] = y[2]
    elif kind == "same":
        x[:] = x[0]
        y[:] = y[0]
    return x.float(), y.float()


KINDS = ["random", "dup", "same", "b2"]


# InfoNCE / CLIP / MoCo ----------------------------------------------------------------------------------------


def _direct(q, k, t, mask=None, queue=None, queue_mask=None, symmetric=True):
    """InfoNCE (van den Oord et al. 2018) written out term by term in float64; the mean of both directions
    when symmetric (CLIP, Radford et al. 2021); the queue rows are further negatives of every anchor (MoCo).

    Row i in the q->k direction: -log exp(q_i.k_i/t) / sum_c exp(q_i.c/t), c over k_i, the k_j (j != i) not
    masked by mask[i][j], and the queue rows u_l not masked by queue_mask[i][l]. In the k->q direction the same
    with q and k swapped, mask[j][i] for the pair (k_i, q_j) and queue_mask[i][l] again.
    """
    q, k = _rows(q), _rows(k)
    queue = [] if queue is None else _rows(queue)
    b = len(q)
    directions = [(q, k, lambda i, j: mask[i][j]), (k, q, lambda i, j: mask[j][i])]
    per_direction = []
    for a, c, masked in directions if symmetric else directions[:1]:
        total = 0.0
        for i in range(b):
            logits = [_dot(a[i], c[j]) / t for j in range(b) if j == i or mask is None or not masked(i, j)]
            logits += [_dot(a[i], u) / t for m, u in enumerate(queue) if queue_mask is None or not queue_mask[i][m]]
            total += -(_dot(a[i], c[i]) / t - math.log(sum(math.exp(x) for x in logits)))
        per_direction.append(total / b)
    return sum(per_direction) / len(per_direction)


def _pair(b=6, d=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(b, d, generator=g), dim=1), F.normalize(torch.randn(b, d, generator=g), dim=1)


def test_info_nce_matches_direct_float64():
    q, k = _pair()
    assert abs(float(info_nce(q, k, 0.1)) - _direct(q, k, 0.1)) < 1e-5


@pytest.mark.parametrize("kind", KINDS)
def test_info_nce_all_options_match_direct(kind):
    """Every combination of queue, in-batch mask, queue mask and direction, on each kind of batch."""
    q, k = _batch(kind)
    b = q.shape[0]
    g = torch.Generator().manual_seed(1)
    queue = torch.cat([F.normalize(torch.randn(5, 5, generator=g), dim=1), k[:1]])  # k[0]'s own earlier key last
    mask = torch.rand(b, b, generator=g) < 0.4
    queue_mask = torch.rand(b, 6, generator=g) < 0.3
    queue_mask[0, 5] = True
    mask_lists, queue_mask_lists = mask.tolist(), queue_mask.tolist()
    for t in (0.1, 0.5):
        for symmetric in (True, False):
            for m in (None, mask):
                ml = None if m is None else mask_lists
                want = _direct(q, k, t, ml, symmetric=symmetric)
                got = info_nce(q, k, t, not_negative=m, symmetric=symmetric)
                assert _close(got, want, abs_=1e-6), (t, symmetric, m is None)
                for qm in (None, queue_mask):
                    qml = None if qm is None else queue_mask_lists
                    want = _direct(q, k, t, ml, queue, qml, symmetric)
                    got = info_nce(q, k, t, queue, m, symmetric, extra_not_negative=qm)
                    assert _close(got, want, abs_=1e-6), (t, symmetric, m is None, qm is None)


def test_info_nce_degenerate_batch_is_log_of_candidates():
    """All rows (and queue entries) one vector: every logit is equal, so the loss is log(number of candidates)."""
    q, _ = _batch("same", b=5)
    k, queue = q.clone(), q[:3].clone()
    queue_mask = torch.zeros(5, 3, dtype=torch.bool)
    queue_mask[:, 0] = True
    assert _close(info_nce(q, k, 0.2), math.log(5))
    assert _close(info_nce(q, k, 0.2, queue), math.log(8))
    assert _close(info_nce(q, k, 0.2, queue, extra_not_negative=queue_mask), math.log(7))


def test_false_negative_mask_matches_direct():
    q, k = _pair()
    mask = torch.zeros(6, 6, dtype=torch.bool)
    mask[0, 3] = mask[2, 5] = True
    mask[4, 4] = True  # the diagonal is never masked
    assert abs(float(info_nce(q, k, 0.1, not_negative=mask)) - _direct(q, k, 0.1, mask.tolist())) < 1e-5
    assert float(info_nce(q, k, 0.1, not_negative=mask)) < float(info_nce(q, k, 0.1))


def test_empty_queue_equals_plain_and_queue_adds_negatives():
    q, k = _pair()
    plain = info_nce(q, k, 0.07)
    assert torch.allclose(info_nce(q, k, 0.07, extra_negatives=torch.zeros(0, 5)), plain)
    assert torch.allclose(info_nce(q, k, 0.07, extra_negatives=torch.zeros(0, 5),
                                   extra_not_negative=torch.zeros(6, 0, dtype=torch.bool)), plain)
    queue = F.normalize(torch.randn(10, 5), dim=1)
    assert float(info_nce(q, k, 0.07, extra_negatives=queue)) > float(plain)


def test_queue_mask_for_every_row_equals_dropping_the_entry():
    q, k = _pair()
    queue = F.normalize(torch.randn(7, 5, generator=torch.Generator().manual_seed(3)), dim=1)
    everyone = torch.zeros(6, 7, dtype=torch.bool)
    everyone[:, 2] = True
    kept = torch.cat([queue[:2], queue[3:]])
    for symmetric in (True, False):
        assert torch.allclose(info_nce(q, k, 0.1, queue, symmetric=symmetric, extra_not_negative=everyone),
                              info_nce(q, k, 0.1, kept, symmetric=symmetric), atol=1e-6)


def test_own_keys_in_queue_masked_as_in_moco_pretraining():
    """A queue holding only the batch's own earlier keys, each masked for its own row (the pretraining use)."""
    q, k = _pair(b=5)
    ids = torch.tensor([10, 11, 12, 13, 14])
    queue_ids = torch.tensor([12, 10, 14])
    queue = k[[2, 0, 4]].clone()
    own = ids[:, None] == queue_ids[None, :]
    want = _direct(q, k, 0.1, queue=queue, queue_mask=own.tolist(), symmetric=False)
    assert _close(info_nce(q, k, 0.1, queue, symmetric=False, extra_not_negative=own), want)
    unmasked = float(info_nce(q, k, 0.1, queue, symmetric=False))
    assert unmasked > float(info_nce(q, k, 0.1, queue, symmetric=False, extra_not_negative=own))


def test_queue_mask_needs_queue_of_matching_shape():
    q, k = _pair()
    with pytest.raises(ValueError):
        info_nce(q, k, 0.1, extra_not_negative=torch.zeros(6, 3, dtype=torch.bool))
    with pytest.raises(ValueError):
        info_nce(q, k, 0.1, torch.zeros(4, 5), extra_not_negative=torch.zeros(6, 3, dtype=torch.bool))


def test_info_nce_gradients_finite_with_masks():
    q, k = _batch("dup")
    q.requires_grad_(True)
    queue = k[:3].clone()
    queue_mask = torch.eye(6, 3, dtype=torch.bool)
    mask = torch.ones(6, 6, dtype=torch.bool)  # everything but the positive masked
    info_nce(q, k, 0.1, queue, mask, extra_not_negative=queue_mask).backward()
    assert torch.isfinite(q.grad).all()


# Alignment and uniformity (Wang & Isola 2020) -------------------------------------------------------------------


def _alignment_direct(x, y, alpha):
    x, y = _rows(x), _rows(y)
    return sum(_dist(a, b) ** alpha for a, b in zip(x, y, strict=True)) / len(x)


def _uniformity_direct(x, t):
    x = _rows(x)
    terms = [math.exp(-t * _dist(x[i], x[j]) ** 2) for i in range(len(x)) for j in range(len(x)) if i != j]
    return math.log(sum(terms) / len(terms))


@pytest.mark.parametrize("kind", KINDS)
def test_alignment_and_uniformity_match_direct(kind):
    x, y = _batch(kind, b=9)
    if kind == "dup":
        y[5] = x[5]  # a positive pair at distance 0
    for alpha in (1.0, 2.0, 3.0):
        assert _close(alignment(x, y, alpha), _alignment_direct(x, y, alpha))
    for t in (0.5, 2.0):
        assert _close(uniformity(x, t), _uniformity_direct(x, t), abs_=1e-6)
        assert _close(uniformity(torch.cat([x, y]), t), _uniformity_direct(torch.cat([x, y]), t), abs_=1e-6)


def test_metrics():
    x = F.normalize(torch.randn(50, 8), dim=1)
    assert float(alignment(x, x)) == 0.0 and float(top1_accuracy(x, x)) == 1.0
    collapsed = F.normalize(torch.ones(50, 8), dim=1)
    assert abs(float(uniformity(collapsed))) < 1e-6 and float(uniformity(x)) < -1.0


# Relational knowledge distillation (Park et al. 2019) -----------------------------------------------------------


def _rkd_distance_direct(s, t):
    """psi_D(i, j) = |x_i - x_j| / mu, mu the mean over the distinct pairs (0 when mu = 0); the Huber loss
    (delta 1) between student and teacher psi_D, averaged over the pairs i != j."""
    def psi(x):
        x = _rows(x)
        d = {(i, j): _dist(x[i], x[j]) for i in range(len(x)) for j in range(len(x)) if i != j}
        mu = sum(d.values()) / len(d)
        return {p: v / mu if mu > 0 else 0.0 for p, v in d.items()}
    ps, pt = psi(s), psi(t)
    return sum(_huber(ps[p] - pt[p]) for p in ps) / len(ps)


def _direct_angle(x):
    """psi_A(i, j, k) = <e_ij, e_kj>, e_ij = (x_i - x_j) / |x_i - x_j| (the zero vector when x_i = x_j)."""
    x = _rows(x)
    b = len(x)

    def unit(i, j):
        v = [a - c for a, c in zip(x[i], x[j], strict=True)]
        n = math.sqrt(_dot(v, v))
        return [a / n for a in v] if n > 0 else [0.0] * len(v)
    e = [[unit(i, j) for i in range(b)] for j in range(b)]
    return [[[_dot(e[j][i], e[j][k]) for k in range(b)] for i in range(b)] for j in range(b)]


def _rkd_angle_direct(s, t):
    """Huber loss (delta 1) between student and teacher psi_A, averaged over all B^3 triples (i, j, k)."""
    a_s, a_t = _direct_angle(s), _direct_angle(t)
    b = len(a_s)
    return sum(_huber(a_s[j][i][k] - a_t[j][i][k]) for j in range(b) for i in range(b) for k in range(b)) / b ** 3


def _student_teacher(kind, b, seed=0):
    g = torch.Generator().manual_seed(seed)
    s, t = torch.randn(b, 12, generator=g), F.normalize(torch.randn(b, 6, generator=g), dim=1)
    if kind in ("dup", "dup_student"):
        s[1::3] = s[0::3][: len(s[1::3])]
    if kind in ("dup", "dup_teacher"):
        t[2::4] = t[0::4][: len(t[2::4])]
    if kind in ("same", "same_student"):
        s[:] = s[0]
    if kind in ("same", "same_teacher"):
        t[:] = t[0]
    return s, t


def test_rkd_terms_against_direct():
    g = torch.Generator().manual_seed(0)
    s, t = torch.randn(7, 4, generator=g), torch.randn(7, 3, generator=g)
    for x, y in ((s, t), (t[:, :1].repeat(1, 4) * 2, s[:, :3])):  # second: a student with a line of points
        assert math.isclose(float(rkd_angle(x, y, chunk=3)), _rkd_angle_direct(x, y), rel_tol=1e-5)
        assert math.isclose(float(rkd_distance(x, y)), _rkd_distance_direct(x, y), rel_tol=1e-5)
    # duplicate rows: e_ij is the zero vector, so its cosines are 0 (as with F.normalize)
    d = s.clone()
    d[3] = d[0]
    d[5] = d[0]
    e = t.clone()
    e[6] = e[1]
    for x, y in ((d, t), (s, e), (d, e), (d, d[:, :3])):
        for chunk in (1, 3, 64):
            assert math.isclose(float(rkd_angle(x, y, chunk=chunk)), _rkd_angle_direct(x, y), rel_tol=1e-5)
        x = x.clone().requires_grad_(True)
        (rkd_angle(x, y, chunk=2) + rkd_distance(x, y)).backward()
        assert torch.isfinite(x.grad).all()


@pytest.mark.parametrize("kind,b", [("random", 26), ("random", 256), ("random", 2), ("dup", 30),
                                    ("dup_student", 12), ("dup_teacher", 12), ("same", 8), ("same", 2),
                                    ("same_student", 8), ("same_teacher", 8)])
def test_rkd_distance_matches_direct(kind, b):
    s, t = _student_teacher(kind, b)
    want = _rkd_distance_direct(s, t)
    s = s.clone().requires_grad_(True)
    got = rkd_distance(s, t)
    assert _close(got, want, rel=1e-5, abs_=1e-9), (float(got), want)
    if kind == "same":
        assert float(got.detach()) == 0.0
    got.backward()
    assert torch.isfinite(s.grad).all()
    if kind.startswith("same") and kind != "same_teacher":
        assert float(s.grad.abs().max()) == 0.0  # every pair at distance 0: no direction to move apart


def test_rkd_distance_gradient_matches_finite_differences():
    for kind in ("random", "dup_student"):
        s, t = _student_teacher(kind, 7)
        s, t = s.double().requires_grad_(True), t.double()
        assert torch.autograd.gradcheck(lambda x, t=t: rkd_distance(x, t), (s,))


def test_rkd_angle_matches_direct_and_gradient():
    for kind, b in (("random", 9), ("dup", 9), ("same", 4), ("random", 2)):
        s, t = _student_teacher(kind, b)
        assert _close(rkd_angle(s, t, chunk=4), _rkd_angle_direct(s, t)), kind
    s, t = _student_teacher("random", 6)
    s, t = s.double().requires_grad_(True), t.double()
    assert torch.autograd.gradcheck(lambda x: rkd_angle(x, t, chunk=4), (s,))


def test_rkd_teacher_gets_no_gradient():
    s, t = _student_teacher("random", 6)
    s, t = s.requires_grad_(True), t.clone().requires_grad_(True)
    (rkd_distance(s, t) + rkd_angle(s, t)).backward()
    assert t.grad is None and s.grad is not None


def test_rkd_distance_single_row_is_zero():
    assert float(rkd_distance(torch.randn(1, 4), torch.randn(1, 3))) == 0.0


def test_rkd_angle_gradient_stays_bounded_when_two_students_coincide():
    """Two streamers with identical content but different ID embeddings: no 1/eps gradient spike."""
    g = torch.Generator().manual_seed(5)
    s = torch.randn(16, 6, generator=g, dtype=torch.float64)
    s[3] = s[7]
    s.requires_grad_(True)
    t = torch.randn(16, 4, generator=g, dtype=torch.float64)
    rkd_angle(s, t).backward()
    assert torch.isfinite(s.grad).all() and s.grad.abs().max() < 1.0


def test_soft_target_nce_against_direct_float64():
    """Row-wise cross-entropy of target distributions against the softmax over the other rows, as a loop."""
    from anchor_embed.losses import soft_target_nce

    g = torch.Generator().manual_seed(3)
    for b, dup in ((6, False), (7, True), (2, False)):
        z = F.normalize(torch.randn(b, 5, generator=g, dtype=torch.float64), dim=1)
        if dup:
            z[4] = z[1]
        t = torch.rand(b, b, generator=g, dtype=torch.float64).fill_diagonal_(0)
        t[0] = 0                                            # a row without targets is left out
        t = t / t.sum(1, keepdim=True).clamp(min=1e-12)
        want, rows = 0.0, 0
        for i in range(b):
            if t[i].sum() == 0:
                continue
            logits = [float(z[i] @ z[j]) / 0.1 for j in range(b) if j != i]
            lse = math.log(sum(math.exp(x) for x in logits))
            want += -sum(float(t[i, j]) * (float(z[i] @ z[j]) / 0.1 - lse) for j in range(b) if j != i)
            rows += 1
        assert abs(float(soft_target_nce(z, t, 0.1)) - want / max(rows, 1)) < 1e-9
    one_hot = torch.eye(4, dtype=torch.float64).roll(1, dims=1)        # targets i -> i+1: plain InfoNCE
    z = F.normalize(torch.randn(4, 3, generator=g, dtype=torch.float64), dim=1)
    logits = (z @ z.T / 0.1).fill_diagonal_(float("-inf"))
    assert torch.isclose(soft_target_nce(z, one_hot, 0.1), F.cross_entropy(logits, torch.tensor([1, 2, 3, 0])))
    assert float(soft_target_nce(z, torch.zeros(4, 4, dtype=torch.float64), 0.1)) == 0.0
