"""Checks for labs/lab03_cnn (after notebook 08)."""

from __future__ import annotations

from dlcourse.checks import accuracy
from dlcourse.grading import is_a, register


@register("lab03.conv_size", points=1,
          hint="The formula is above the exercise; the floor of a division of integers is Python's //.",
          more="Add the padding on both sides to n, count how many strides of the kernel fit after its first "
               "position ((n + 2 * padding - kernel) // stride), and add that first position.")
def check_conv_size(conv_output_size):
    cases = {(28, 5, 2, 1): 28, (28, 5, 0, 1): 24, (14, 2, 0, 2): 7, (32, 3, 1, 2): 16}
    for (n, k, p, s), expected in cases.items():
        got = conv_output_size(n, kernel=k, padding=p, stride=s)
        assert got == expected, f"conv_output_size({n}, kernel={k}, padding={p}, stride={s}) = {got}, expected {expected}"


def _net(build_cnn):
    import torch

    torch.manual_seed(0)
    net = build_cnn()
    assert is_a(net, torch.nn.Module), "build_cnn() must return a torch.nn.Module"
    return net


@register("lab03.build_cnn", points=2,
          hint="Stack convolution blocks, then flatten and finish with fully connected layers; LeNet-5 of notebook 08 "
               "fits. Compute the side after each block with your conv_output_size to size the first Linear layer.",
          more="nn.Sequential(nn.Conv2d(1, 16, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(16, 32, 5), "
               "nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(32 * 5 * 5, 120), nn.ReLU(), nn.Linear(120, 10)).")
def check_build_cnn(build_cnn):
    import torch

    net = _net(build_cnn)
    convs = [m for m in net.modules() if is_a(m, torch.nn.Conv2d)]
    assert len(convs) >= 2, f"the network has {len(convs)} convolution layer(s); use at least two"
    with torch.no_grad():
        out = net(torch.zeros(3, 1, 28, 28))
    assert tuple(out.shape) == (3, 10), f"for a batch of 3 images the output has shape {tuple(out.shape)}, expected (3, 10) logits"
    params = sum(p.numel() for p in net.parameters())
    assert params <= 500_000, f"{params:,} parameters; keep it under 500,000 so it trains in a minute on a CPU"


@register("lab03.count_parameters", points=1,
          hint="Every tensor in net.parameters() knows its number of entries and whether it is trained.",
          more="sum(p.numel() for p in net.parameters() if p.requires_grad)")
def check_count_parameters(count_parameters):
    from torch import nn

    net = nn.Sequential(nn.Conv2d(1, 6, 5), nn.Flatten(), nn.Linear(6 * 24 * 24, 10))
    expected = 6 * 25 + 6 + 6 * 24 * 24 * 10 + 10
    assert count_parameters(net) == expected, f"count_parameters gives {count_parameters(net)} for a conv + linear net with {expected}"
    net[0].weight.requires_grad_(False)
    assert count_parameters(net) == expected - 150, "frozen parameters (requires_grad=False) are not trainable: do not count them"


@register("lab03.train", points=3,
          hint="Notebook 08's loop: a fresh random order each epoch, minibatches, cross-entropy, backward, optimizer "
               "step. Convert the uint8 images with models.to_tensor, and return the network in eval mode.",
          more="Adam at lr 1e-3 to 3e-3, batches of 64-128, 2-3 epochs, a learning rate decaying to 0 "
               "(torch.optim.lr_scheduler.LambdaLR); net.train() before the loop, return net.eval().")
def check_train(build_cnn, train):
    import torch

    from dlcourse import data

    (X_train, y_train), (X_test, y_test) = data.load_mnist("mnist")
    net = _net(build_cnn)
    trained = train(net, X_train, y_train)
    assert is_a(trained, torch.nn.Module), "train(net, X_train, y_train) must return the trained network"
    acc = accuracy(trained, X_test, y_test)
    assert acc >= 0.985, f"test accuracy {acc:.2%}; it needs at least 98.5%"

