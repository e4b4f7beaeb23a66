"""Checks for labs/lab04_transfer (after notebook 09)."""

from __future__ import annotations

import numpy as np

from dlcourse.checks import prepare_mnist_cnn
from dlcourse.grading import register


@register("lab04.labeled_subset", points=1,
          hint="For each class c, take the first k = round(fraction * N / 10) indices of rng.permutation(np.flatnonzero(y == c)).")
def check_labeled_subset(labeled_subset):
    y = np.repeat(np.arange(10), 1000)
    idx = np.asarray(labeled_subset(y, 0.01, seed=0))
    assert idx.ndim == 1 and len(idx) == 100, f"1% of 10,000 labels is 100 indices, got shape {idx.shape}"
    assert len(set(idx.tolist())) == len(idx), "the indices must not repeat"
    assert np.array_equal(np.bincount(y[idx], minlength=10), np.full(10, 10)), "take the same number of every class"
    assert np.array_equal(idx, np.asarray(labeled_subset(y, 0.01, seed=0))), "the same seed must give the same subset"
    assert not np.array_equal(idx, np.asarray(labeled_subset(y, 0.01, seed=1))), "another seed must give another subset"


@register("lab04.prepare", points=2,
          hint="Copy the network (copy.deepcopy), set requires_grad=False on every Conv2d parameter, "
               "and replace net.fc3 with a new nn.Linear(84, num_classes).")
def check_prepare(prepare_for_transfer):
    import torch
    from torch import nn

    from dlcourse import models

    torch.manual_seed(0)
    source = models.lenet5()
    before = {k: v.clone() for k, v in source.state_dict().items()}
    net = prepare_for_transfer(source, num_classes=5, freeze_convs=True)
    assert isinstance(net, nn.Module), "return the new network"
    assert all(torch.equal(before[k], v) for k, v in source.state_dict().items()) and source.fc3.out_features == 10, \
        "do not change the source network: work on a copy (copy.deepcopy)"
    assert net(torch.zeros(2, 1, 28, 28)).shape == (2, 5), "the new head must give num_classes outputs"
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    assert convs and all(not p.requires_grad for m in convs for p in m.parameters()), "freeze_convs=True must freeze every convolution"
    assert all(p.requires_grad for p in net.fc1.parameters()) and all(p.requires_grad for p in net.fc3.parameters()), \
        "the fully connected layers stay trainable"
    assert torch.equal(net.conv1.weight, source.conv1.weight), "keep the pretrained convolution weights"
    unfrozen = prepare_for_transfer(source, num_classes=10, freeze_convs=False)
    assert all(p.requires_grad for p in unfrozen.parameters()), "freeze_convs=False leaves everything trainable"


@register("lab04.fine_tune", points=3,
          hint="Adam with two parameter groups: the body at lr_body, the new head (net.fc3) at lr_head; "
               "skip frozen parameters; several epochs over the few labels, in minibatches, reshuffled each epoch.")
def check_fine_tune(prepare_for_transfer, fine_tune):
    import torch

    from dlcourse import data, models

    (X_train, y_train), (X_test, y_test) = data.load_mnist("fashion")
    rng = np.random.default_rng(0)
    idx = np.concatenate([rng.permutation(np.flatnonzero(y_train == c))[:60] for c in range(10)])  # 1% of the labels
    pretrained = models.mnist_cnn(progress=False)
    X_few, y_few = X_train[idx], y_train[idx]
    X_test, y_test = X_test[:3000], y_test[:3000]

    def accuracy_after(num_epochs, transfer):
        torch.manual_seed(0)
        if transfer:
            net = fine_tune(prepare_for_transfer(pretrained, 10, freeze_convs=False), X_few, y_few,
                            lr_body=1e-3, lr_head=1e-2, num_epochs=num_epochs)
        else:
            net = fine_tune(models.lenet5(), X_few, y_few, lr_body=3e-3, lr_head=3e-3, num_epochs=num_epochs)
        return models.accuracy(net, X_test, y_test)

    early_transfer, early_scratch = accuracy_after(1, True), accuracy_after(1, False)
    assert early_transfer >= early_scratch + 0.08, (
        f"after one epoch on 600 labels, fine-tuning reaches {early_transfer:.1%} and training from scratch "
        f"{early_scratch:.1%}: pretrained features should put fine-tuning at least 8 points ahead")
    final = accuracy_after(15, True)
    assert final >= 0.72, f"fine-tuned for 15 epochs on 600 Fashion-MNIST labels: {final:.1%} test accuracy (needs 72%)"


prepare = prepare_mnist_cnn  # the pretrained / scoring network must exist on disk
