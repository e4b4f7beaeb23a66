"""Checks for labs/lab08_embeddings (after notebook 15): signatures, verification and re-identification."""

from __future__ import annotations

import math

import numpy as np

from dlcourse.grading import is_a, register, student_side

# The open-set bars of lab08.train, set from the solution on training seeds 0-4 (AUC 0.9878-0.9892,
# TAR at FAR 1e-2 0.779-0.801, top-1 0.939-0.946) with a margin; the same losses with notebook 15's
# P x K batches give 0.983-0.985, 0.733-0.763 and 0.923-0.930 (seeds 0-2). Raw pixels give 0.803, 0.171
# and 0.695, an untrained embedding net 0.716, 0.069 and 0.377, and softmax without the center term
# 0.971, 0.60-0.61 and 0.895: all three fail.
AUC_BAR, TAR_BAR, TOP1_BAR, FAR = 0.97, 0.65, 0.90, 1e-2


def _grads(fn, *args, wrt=(0,), **kwargs):
    """``fn(*args, **kwargs)`` on copies of the tensors ``args[i]`` for ``i`` in ``wrt``, made to require grad:
    returns the value and its gradients with respect to them. Runs where the student's code runs
    (``student_side``), so that autograd sees the student's function."""
    import torch

    args = list(args)
    inputs = []
    for i in wrt:
        args[i] = torch.as_tensor(args[i]).detach().clone().requires_grad_(True)
        inputs.append(args[i])
    value = fn(*args, **kwargs)
    if not isinstance(value, torch.Tensor) or value.numel() != 1:
        raise AssertionError(f"{fn.__name__} must return a tensor holding one number (the loss), got "
                             f"{type(value).__name__}")
    if not value.requires_grad:
        raise AssertionError(f"the loss of {fn.__name__} is cut off from the autograd graph: no gradient reaches "
                             "its inputs (do not use .item(), .detach() or NumPy inside)")
    grads = torch.autograd.grad(value.reshape(()), inputs, allow_unused=True)
    return value.detach().reshape(()), [torch.zeros_like(x) if g is None else g for g, x in zip(grads, inputs)]


def _tensor(value, name):
    import torch

    assert isinstance(value, torch.Tensor), f"{name} must return a torch tensor, got {type(value).__name__}"
    return value.detach()


# --------------------------------------------------------------------------- 1 · distances
@register("lab08.pairwise_distances", points=2,
          hint="Expand |a - b|^2 = |a|^2 + |b|^2 - 2 a.b: the first two terms are vectors of squared norms, the last "
               "one a single matrix product, and broadcasting assembles the (n, m) table.",
          more="(A * A).sum(1)[:, None] + (B * B).sum(1)[None, :] - 2 * A @ B.T, then .clamp_min(0): rounding can make "
               "a distance of 0 slightly negative.")
def check_pairwise_distances(pairwise_distances):
    import torch

    g = torch.Generator().manual_seed(8)
    A, B = torch.randn(5, 3, generator=g), torch.randn(4, 3, generator=g)
    D = _tensor(pairwise_distances(A, B), "pairwise_distances")
    assert tuple(D.shape) == (5, 4), f"for A (5, 3) and B (4, 3) the result has shape {tuple(D.shape)}, expected (5, 4)"
    expected = torch.tensor([[float(((A[i] - B[j]) ** 2).sum()) for j in range(4)] for i in range(5)])
    if torch.allclose(D, expected.sqrt(), atol=1e-4) and not torch.allclose(D, expected, atol=1e-4):
        raise AssertionError("these are plain Euclidean distances; return their squares (no square root)")
    worst = float((D - expected).abs().max())
    assert worst < 1e-4, f"D[i, j] must be |A[i] - B[j]|^2; an entry is off by {worst:.3g}"
    E = torch.randn(6, 32, generator=g)
    assert tuple(_tensor(pairwise_distances(E, E), "pairwise_distances").shape) == (6, 6), \
        "pairwise_distances(E, E) must be (6, 6)"
    far_away = 300.0 + 1e-3 * torch.randn(7, 16, generator=g)      # large norms: |a|^2 + |a|^2 - 2 a.a cancels badly
    D = _tensor(pairwise_distances(far_away, far_away), "pairwise_distances")
    assert float(D.min()) >= 0, f"a squared distance of {float(D.min()):.3g}: clamp the result at 0"


# --------------------------------------------------------------------------- 2 · center loss
@register("lab08.center_loss", points=1,
          hint="centers[labels] picks each signature's own center (one row per signature); then the squared "
               "length of each difference, halved, averaged over the batch.",
          more="0.5 * ((embeddings - centers[labels]) ** 2).sum(dim=1).mean(); return that tensor, not .item().")
def check_center_loss(center_loss):
    import torch

    E = torch.tensor([[1.0, 0.0], [0.0, 2.0], [3.0, 4.0]])
    labels = torch.tensor([0, 1, 0])
    centers = torch.tensor([[1.0, 1.0], [0.0, 0.0], [5.0, 5.0]])
    value = float(_tensor(center_loss(E, labels, centers), "center_loss"))
    # |(0,-1)|^2 = 1, |(0,2)|^2 = 4, |(2,3)|^2 = 13: half their mean is 3
    if math.isclose(value, 9.0, rel_tol=1e-5):
        raise AssertionError("center_loss = 9 is half the SUM over the batch; take the mean over the batch")
    assert math.isclose(value, 3.0, rel_tol=1e-5), f"center_loss = {value:.5f} on the worked example, expected 3"
    g = torch.Generator().manual_seed(15)
    E, centers = torch.randn(10, 4, generator=g), torch.randn(5, 4, generator=g)
    labels = torch.tensor([0, 1, 1, 2, 2, 2, 0, 1, 4, 4])
    value, (dE, dC) = student_side(_grads)(center_loss, E, labels, centers, wrt=(0, 2))
    diff = E - centers[labels]
    assert math.isclose(float(value), 0.5 * float((diff ** 2).sum()) / 10, rel_tol=1e-4), \
        "center_loss is wrong on a random batch"
    assert torch.allclose(dE, diff / 10, atol=1e-5), "the gradient with respect to the signatures is wrong"
    expected_dC = torch.zeros_like(centers).index_add_(0, labels, -diff / 10)
    assert torch.allclose(dC, expected_dC, atol=1e-5), \
        "the gradient with respect to the centers is wrong: each center must move towards its own signatures only"
    assert float(dC[3].abs().max()) == 0, "a center no signature of the batch belongs to must get no gradient"


# --------------------------------------------------------------------------- 3 · triplet loss
def _triplet_by_loops(E, labels, margin):
    """The batch-hard triplet loss written out anchor by anchor (slow, but plainly right)."""
    import torch

    labels = [int(v) for v in labels]
    losses = []
    for a in range(len(labels)):
        d = [torch.sqrt(((E[a] - E[j]) ** 2).sum().clamp_min(1e-12)) for j in range(len(labels))]
        positives = [d[j] for j in range(len(labels)) if j != a and labels[j] == labels[a]]
        negatives = [d[j] for j in range(len(labels)) if labels[j] != labels[a]]
        if positives and negatives:
            losses.append(torch.relu(max(positives) - min(negatives) + margin))
    return torch.stack(losses).mean() if losses else E.sum() * 0


@register("lab08.triplet_loss", points=2,
          hint="Make the (B, B) table of distances once, and two (B, B) masks from the labels: same identity (without "
               "the anchor itself) and different identity. The hardest positive is a maximum over one mask, the "
               "hardest negative a minimum over the other.",
          more="D = pairwise_distances(E, E).clamp_min(1e-12).sqrt(); same = labels[:, None] == labels[None, :]; "
               "pos = same & ~eye; hardest positive D.masked_fill(~pos, 0).amax(1), hardest negative "
               "D.masked_fill(same, inf).amin(1); keep the anchors with pos.any(1) and (~same).any(1); mean of "
               "relu(hp - hn + margin) over them.")
def check_triplet_loss(batch_hard_triplet_loss):
    import torch

    E = torch.tensor([[0.0], [2.0], [1.0], [2.5]])
    labels = torch.tensor([0, 0, 1, 1])
    value = float(_tensor(batch_hard_triplet_loss(E, labels, margin=0.2), "batch_hard_triplet_loss"))
    # distances 0-1: 2, 0-2: 1, 0-3: 2.5, 1-2: 1, 1-3: 0.5, 2-3: 1.5; per anchor 1.2, 1.7, 0.7, 1.2
    if math.isclose(value, 2.7, rel_tol=1e-4):   # the same with squared distances
        raise AssertionError("these are squared distances; the triplet loss compares plain Euclidean distances "
                             "(take the square root)")
    assert math.isclose(value, 1.2, rel_tol=1e-4), \
        f"batch_hard_triplet_loss = {value:.5f} on the four points 0, 2 (number 0) and 1, 2.5 (number 1), expected 1.2"
    value = float(_tensor(batch_hard_triplet_loss(E, labels, margin=2.0), "batch_hard_triplet_loss"))
    assert math.isclose(value, 3.0, rel_tol=1e-4), f"with margin 2 the loss is {value:.5f}, expected 3.0: use the margin"
    g = torch.Generator().manual_seed(21)
    E = torch.randn(12, 3, generator=g)
    labels = torch.tensor([3, 3, 7, 7, 7, 1, 1, 3, 9, 9, 1, 7])
    value, (dE,) = student_side(_grads)(batch_hard_triplet_loss, E, labels, margin=0.5)
    reference = E.clone().requires_grad_(True)
    expected = _triplet_by_loops(reference, labels, 0.5)
    expected_dE, = torch.autograd.grad(expected, reference)
    expected = expected.detach()
    assert math.isclose(float(value), float(expected), rel_tol=1e-4), \
        f"on a random batch of 12 the loss is {float(value):.5f}, expected {float(expected):.5f}"
    assert torch.allclose(dE, expected_dE, atol=1e-4), \
        "the loss is right but its gradient is not: compute it with differentiable tensor operations only"


# --------------------------------------------------------------------------- 4 · the threshold
def _largest_threshold(impostor, far):
    impostor = np.sort(np.asarray(impostor, dtype=float))
    allowed = int(math.floor(far * len(impostor) + 1e-9))      # impostor pairs that may fall below t
    return float(impostor[allowed]) if allowed < len(impostor) else math.inf


@register("lab08.threshold_at_far", points=2,
          hint="Sort the impostor distances: if k = floor(far * number of impostors) of them may be accepted, the "
               "largest threshold that accepts no more is the next sorted distance (acceptance is a strict <).",
          more="s = np.sort(impostor); k = int(np.floor(far * len(s))); t = s[k]; tar = np.mean(genuine < t); "
               "return float(t), float(tar). np.quantile interpolates between distances and is off with ties.")
def check_threshold_at_far(threshold_at_far):
    genuine = np.array([0.05, 0.15, 0.25, 0.35, 0.45])
    impostor = np.array([0.5, 0.2, 0.9, 0.7, 0.4, 0.3, 0.8, 0.6, 0.1, 1.0])
    for far, t_expected, tar_expected in ((0.2, 0.3, 0.6), (0.1, 0.2, 0.4), (0.0, 0.1, 0.2)):
        out = threshold_at_far(genuine, impostor, far)
        assert isinstance(out, (tuple, list)) and len(out) == 2, "threshold_at_far returns the pair (t, tar)"
        t, tar = float(out[0]), float(out[1])
        accepted = float(np.mean(impostor < t))
        assert accepted <= far + 1e-12, \
            f"at far={far} your t = {t:.3g} accepts {accepted:.0%} of the impostor pairs (distance < t), over far"
        assert math.isclose(t, t_expected, abs_tol=1e-12), \
            f"at far={far} t = {t:.3g}; expected {t_expected}: the largest threshold with FAR <= far"
        assert math.isclose(tar, tar_expected, abs_tol=1e-12), \
            f"at far={far}, t = {t_expected} accepts {tar_expected:.0%} of the genuine pairs (distance < t); you give {tar:.3g}"
    rng = np.random.default_rng(15)
    genuine, impostor = rng.uniform(0.0, 1.0, 400), rng.uniform(0.5, 2.0, 5000)
    t, tar = (float(v) for v in threshold_at_far(genuine, impostor, 1e-2))
    t_expected = _largest_threshold(impostor, 1e-2)
    assert math.isclose(t, t_expected, rel_tol=1e-12), f"on 5,000 impostor distances t = {t:.6f}, expected {t_expected:.6f}"
    assert math.isclose(tar, float(np.mean(genuine < t_expected)), abs_tol=1e-12), "tar is wrong on 400 genuine distances"


# --------------------------------------------------------------------------- 5 · training, open-set evaluation
def open_set_data():
    """The unseen numbers of notebook 15 and of the lab: (images (1500, 28, 56) uint8, their numbers)."""
    from dlcourse import data

    _, (X_test, y_test) = data.load_mnist("mnist")
    unseen = np.sort(np.random.default_rng(0).permutation(100)[70:])
    return data.make_digit_pairs(X_test, y_test, unseen, 50, seed=3)


def training_data():
    """The 70 training numbers of notebook 15 and of the lab, 150 images each: (images, numbers)."""
    from dlcourse import data

    (X_train, y_train), _ = data.load_mnist("mnist")
    seen = np.sort(np.random.default_rng(0).permutation(100)[:70])
    return data.make_digit_pairs(X_train, y_train, seen, 150, seed=1)


def open_set_scores(signatures, numbers, far=FAR) -> dict:
    """ROC AUC, TAR at ``far`` and leave-one-out retrieval top-1 of ``signatures (N, d)`` of images of ``numbers``,
    with Euclidean distances between the signatures scaled to length 1 (all pairs i < j)."""
    import torch
    from sklearn.metrics import roc_auc_score

    E = torch.nn.functional.normalize(torch.as_tensor(signatures, dtype=torch.float32).detach(), dim=1)
    D = torch.cdist(E, E).numpy().astype(np.float64)
    numbers = np.asarray(numbers)
    i, j = np.triu_indices(len(numbers), k=1)
    same = numbers[i] == numbers[j]
    d = D[i, j]
    genuine, impostor = d[same], d[~same]
    t = _largest_threshold(impostor, far)
    np.fill_diagonal(D, np.inf)
    return {"auc": float(roc_auc_score(same, -d)), "tar": float(np.mean(genuine < t)),
            "top1": float(np.mean(numbers[D.argmin(axis=1)] == numbers))}


@register("lab08.train", points=3,
          hint="Notebook 15's two losses: a linear classifier over the 70 training numbers on top of the signature "
               "(cross-entropy), plus lam times your center_loss with one learned center per number; the classifier "
               "and the centers are trained with the network and thrown away afterwards.",
          more="ids, y = np.unique(numbers, return_inverse=True); torch.manual_seed(seed); net = embedding_net(dim); "
               "head = nn.Linear(dim, len(ids)); centers = nn.Parameter(torch.zeros(len(ids), dim)); one Adam over all "
               "three, lr falling linearly to 0; per minibatch e = net(X[b]); loss = F.cross_entropy(head(e), y[b]) + "
               "lam * center_loss(e, y[b], centers). Return net.eval().")
def check_train(train_embedding):
    import torch

    from dlcourse import models

    X_train, n_train = training_data()
    net = train_embedding(X_train, n_train)
    assert is_a(net, torch.nn.Module), "train_embedding must return the trained embedding network"
    net.eval()
    X_new, n_new = open_set_data()
    X = models.to_tensor(X_new)
    signatures = torch.cat([_tensor(net(X[k:k + 500]), "the network") for k in range(0, len(X), 500)])
    assert signatures.ndim == 2 and len(signatures) == len(X), \
        f"the network must map N images (N, 1, 28, 56) to signatures (N, d), got {tuple(signatures.shape)}"
    assert bool(torch.isfinite(signatures).all()), "some signatures are not finite: the training diverged"
    s = open_set_scores(signatures, n_new)
    assert s["auc"] >= AUC_BAR and s["tar"] >= TAR_BAR and s["top1"] >= TOP1_BAR, (
        f"on the 30 unseen numbers: ROC AUC {s['auc']:.4f} (needs {AUC_BAR}), TAR at FAR = 1e-2 {s['tar']:.3f} "
        f"(needs {TAR_BAR}), retrieval top-1 {s['top1']:.3f} (needs {TOP1_BAR}); raw pixels give 0.803, 0.171 and 0.695")
