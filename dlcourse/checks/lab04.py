"""Checks for labs/lab04_transfer (after notebook 09)."""

from __future__ import annotations

import numpy as np

from dlcourse.checks import accuracy, prepare_mnist_cnn
from dlcourse.grading import is_a, register, student_side


@register("lab04.labeled_subset", points=1,
          hint="Work class by class: find the indices of each class, shuffle them with the generator of the given "
               "seed, keep the same number from every class.",
          more="rng = np.random.default_rng(seed); k = round(fraction * len(y) / 10); concatenate "
               "rng.permutation(np.flatnonzero(y == c))[:k] over the classes c.")
def check_labeled_subset(labeled_subset):
    y = np.repeat(np.arange(10), 1000)
    idx = np.asarray(labeled_subset(y, 0.01, seed=0))
    assert idx.ndim == 1 and len(idx) == 100, f"1% of 10,000 labels is 100 indices, got shape {idx.shape}"
    assert len(set(idx.tolist())) == len(idx), "the indices must not repeat"
    assert np.array_equal(np.bincount(y[idx], minlength=10), np.full(10, 10)), "take the same number of every class"
    assert np.array_equal(idx, np.asarray(labeled_subset(y, 0.01, seed=0))), "the same seed must give the same subset"
    assert not np.array_equal(idx, np.asarray(labeled_subset(y, 0.01, seed=1))), "another seed must give another subset"


@register("lab04.prepare", points=2,
          hint="Work on a copy of the network, never on the one you are given; freezing is a flag of each parameter; "
               "a new head is a new layer assigned to net.fc3.",
          more="net = copy.deepcopy(net); net.fc3 = nn.Linear(net.fc3.in_features, num_classes); for every module "
               "that is an nn.Conv2d, p.requires_grad_(not freeze_convs) for its parameters p.")
def check_prepare(prepare_for_transfer):
    import torch
    from torch import nn

    from dlcourse import models

    torch.manual_seed(0)
    source = student_side(models.lenet5)()     # built where the student's code can change it
    before = {k: v.clone() for k, v in source.state_dict().items()}
    net = prepare_for_transfer(source, num_classes=5, freeze_convs=True)
    assert is_a(net, nn.Module), "return the new network"
    assert all(torch.equal(before[k], v) for k, v in source.state_dict().items()) and source.fc3.out_features == 10, \
        "do not change the source network: work on a copy (copy.deepcopy)"
    assert net(torch.zeros(2, 1, 28, 28)).shape == (2, 5), "the new head must give num_classes outputs"
    convs = [m for m in net.modules() if is_a(m, nn.Conv2d)]
    assert convs and all(not p.requires_grad for m in convs for p in m.parameters()), "freeze_convs=True must freeze every convolution"
    assert all(p.requires_grad for p in net.fc1.parameters()) and all(p.requires_grad for p in net.fc3.parameters()), \
        "the fully connected layers stay trainable"
    assert torch.equal(net.conv1.weight, source.conv1.weight), "keep the pretrained convolution weights"
    unfrozen = prepare_for_transfer(source, num_classes=10, freeze_convs=False)
    assert all(p.requires_grad for p in unfrozen.parameters()), "freeze_convs=False leaves everything trainable"


@register("lab04.fine_tune", points=3,
          hint="One optimizer can give different learning rates to different parameters (parameter groups): one "
               "group for the head net.fc3, one for the rest. Then notebook 08's loop, several epochs.",
          more="Adam([{\"params\": body, \"lr\": lr_body}, {\"params\": head, \"lr\": lr_head}]) with only "
               "parameters that require grad; a new random order each epoch with a seeded torch.Generator; "
               "return net.eval().")
def check_fine_tune(prepare_for_transfer, fine_tune):
    import torch

    from dlcourse import data, models

    (X_train, y_train), (X_test, y_test) = data.load_mnist("fashion")
    rng = np.random.default_rng(0)
    idx = np.concatenate([rng.permutation(np.flatnonzero(y_train == c))[:60] for c in range(10)])  # 1% of the labels
    pretrained = student_side(models.mnist_cnn)(progress=False)   # loaded where the student's code runs
    X_few, y_few = X_train[idx], y_train[idx]
    X_test, y_test = X_test[:3000], y_test[:3000]

    def accuracy_after(num_epochs, transfer):
        torch.manual_seed(0)
        if transfer:
            net = fine_tune(prepare_for_transfer(pretrained, 10, freeze_convs=False), X_few, y_few,
                            lr_body=1e-3, lr_head=1e-2, num_epochs=num_epochs)
        else:
            net = fine_tune(student_side(models.lenet5)(), X_few, y_few, lr_body=3e-3, lr_head=3e-3,
                            num_epochs=num_epochs)
        return accuracy(net, X_test, y_test)

    early_transfer, early_scratch = accuracy_after(1, True), accuracy_after(1, False)
    assert early_transfer >= early_scratch + 0.08, (
        f"after one epoch on 600 labels, fine-tuning reaches {early_transfer:.1%} and training from scratch "
        f"{early_scratch:.1%}: pretrained features should put fine-tuning at least 8 points ahead")
    final = accuracy_after(15, True)
    assert final >= 0.72, f"fine-tuned for 15 epochs on 600 Fashion-MNIST labels: {final:.1%} test accuracy (needs 72%)"


prepare = prepare_mnist_cnn  # the pretrained / scoring network must exist on disk
