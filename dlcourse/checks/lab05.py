"""Checks for labs/lab05_gan (after notebook 10): a conditional GAN."""

from __future__ import annotations

import math

from dlcourse.checks import prepare_mnist_cnn
from dlcourse.grading import is_a, register, student_side

Z_DIM = 64
NUM_CLASSES = 10
TRAIN_STEPS = 600      # about a minute and a half on one CPU thread
HIT_BAR = 0.60         # share of 1,000 requested digits read as requested by the notebook-08 LeNet-5


prepare = prepare_mnist_cnn  # the pretrained / scoring network must exist on disk


def _generator(build_generator, seed=0):
    import torch

    torch.manual_seed(seed)
    G = build_generator(Z_DIM, NUM_CLASSES)
    assert is_a(G, torch.nn.Module), "build_generator must return a torch.nn.Module"
    return G


def _discriminator(build_discriminator):
    import torch

    D = build_discriminator(NUM_CLASSES)
    assert is_a(D, torch.nn.Module), "build_discriminator must return a torch.nn.Module"
    return D


@register("lab05.generator", points=2,
          hint="Notebook 10's conditional generator: the label's embedding is concatenated to z, a Linear layer makes "
               "a small 7x7 map, two transposed convolutions with stride 2 double it to 14x14 and 28x28, and a "
               "Sigmoid keeps pixels in [0, 1].",
          more="A class with self.embed = Embedding(num_classes, z_dim) and forward(z, y) = net(cat([z, embed(y)], 1)), "
               "net = Linear(2*z_dim, 64*7*7) -> BatchNorm1d -> ReLU -> Unflatten(1, (64, 7, 7)) -> "
               "ConvTranspose2d(64, 32, 4, 2, 1) -> BatchNorm2d -> ReLU -> ConvTranspose2d(32, 1, 4, 2, 1) -> Sigmoid.")
def check_generator(build_generator):
    import torch

    G = _generator(build_generator)
    G.eval()
    z = torch.randn(10, Z_DIM)
    y = torch.arange(10)
    with torch.no_grad():
        images = G(z, y)
        assert tuple(images.shape) == (10, 1, 28, 28), \
            f"G(z, y) for 10 codes and labels has shape {tuple(images.shape)}, expected (10, 1, 28, 28)"
        assert float(images.min()) >= 0 and float(images.max()) <= 1, \
            "generated pixels must lie in [0, 1], like the data: end with a sigmoid"
        other_label = G(z, (y + 1) % 10)
        assert float((other_label - images).abs().max()) > 1e-4, \
            "G(z, y) does not change when y changes: the label must be an input of the generator"
        other_noise = G(torch.randn(10, Z_DIM), y)
        assert float((other_noise - images).abs().max()) > 1e-4, "G(z, y) does not change when z changes"
    params = sum(p.numel() for p in G.parameters())
    assert params <= 2_000_000, f"{params:,} parameters; keep the generator under 2 million so it trains in a minute"


@register("lab05.discriminator", points=1,
          hint="A small CNN that halves the image twice with strided convolutions and ends in ONE raw number per "
               "image and label (a logit): the label changes the score, and there is no Sigmoid at the end.",
          more="features = Conv2d(1, 32, 4, 2, 1) -> LeakyReLU(0.2) -> Conv2d(32, 64, 4, 2, 1) -> BatchNorm2d -> "
               "LeakyReLU(0.2) -> Flatten; forward(x, y) = Linear(64*7*7, 1)(h).squeeze(1) + (embed(y) * h).sum(1), "
               "embed = Embedding(num_classes, 64*7*7).")
def check_discriminator(build_discriminator):
    import torch

    torch.manual_seed(0)
    D = _discriminator(build_discriminator)
    x = torch.rand(5, 1, 28, 28)
    y = torch.tensor([0, 1, 2, 3, 4])
    D.eval()
    with torch.no_grad():
        out = D(x, y)
        assert out.numel() == 5, f"D gives {tuple(out.shape)} for 5 images and labels; it must give one logit per image"
        assert float((D(x, (y + 5) % 10) - out).abs().max()) > 1e-5, \
            "D(x, y) does not change when y changes: the label must be an input of the discriminator"
    assert not is_a(list(D.modules())[-1], torch.nn.Sigmoid), "D returns logits: no sigmoid at the end (the loss applies it, stably)"


@register("lab05.losses", points=2,
          hint="Binary cross-entropies on logits; ask which label each player wants the discriminator to give to real "
               "pairs, to generated images and to real images with a wrong label, and weigh the two kinds of fake "
               "as one.",
          more="binary_cross_entropy_with_logits: D wants real -> 1, and fake -> 0 and wrong -> 0, averaged: "
               "bce(real, 1) + (bce(fake, 0) + bce(wrong, 0)) / 2. The non-saturating G loss wants fake -> 1.")
def check_losses(discriminator_loss, generator_loss):
    import torch
    import torch.nn.functional as F

    real, fake, wrong = torch.tensor([2.0, -1.0, 0.5]), torch.tensor([-3.0, 0.2, 1.0]), torch.tensor([0.3, -2.0, 4.0])
    bce = F.binary_cross_entropy_with_logits
    d = float(discriminator_loss(real, fake, wrong))
    expected = float(bce(real, torch.ones(3)) + (bce(fake, torch.zeros(3)) + bce(wrong, torch.zeros(3))) / 2)
    assert math.isclose(d, expected, rel_tol=1e-5), \
        f"discriminator_loss = {d:.5f}, expected {expected:.5f} (BCE of real as 1, plus the mean of BCE of fake and of wrong as 0)"
    g = float(generator_loss(fake))
    expected = float(bce(fake, torch.ones(3)))
    assert math.isclose(g, expected, rel_tol=1e-5), \
        f"generator_loss = {g:.5f}, expected {expected:.5f}: the non-saturating loss is BCE of D(fake) against 1, not -BCE against 0"
    big = torch.tensor([100.0])
    extreme = float(discriminator_loss(big, -big, -big)) + float(generator_loss(-big))
    assert math.isfinite(extreme), "the losses overflow for confident logits: use binary_cross_entropy_with_logits, not log(sigmoid(.))"


@register("lab05.train_step", points=1,
          hint="Two updates per call, the discriminator's first; when you update one player, the other's weights "
               "must not move and its gradients must not leak into the update. Every call to G and D takes labels.",
          more="D step: D(X_real, y_real), D(fake.detach(), y_fake), D(X_real, y_wrong); then G step: D(fake, y_fake), "
               "without stepping D. Return (loss_D.item(), loss_G.item()).")
def check_train_step(build_generator, build_discriminator, gan_step):
    import torch

    def params(net):
        return [p.detach().clone() for p in net.parameters()]

    def changed(before, net):
        return any(not torch.equal(a, b) for a, b in zip(before, net.parameters()))

    torch.manual_seed(0)
    X = torch.rand(16, 1, 28, 28)
    y = torch.arange(16) % 10
    for frozen in ("G", "D"):
        G, D = _generator(build_generator), _discriminator(build_discriminator)
        opt_G = student_side(torch.optim.SGD)(G.parameters(), lr=0.0 if frozen == "G" else 0.1)   # beside G and D
        opt_D = student_side(torch.optim.SGD)(D.parameters(), lr=0.0 if frozen == "D" else 0.1)
        before_G, before_D = params(G), params(D)
        out = gan_step(G, D, opt_G, opt_D, X, y, Z_DIM)
        assert isinstance(out, tuple) and len(out) == 2 and all(isinstance(v, float) for v in out), \
            "gan_step returns (loss_D, loss_G) as Python floats (.item())"
        if frozen == "G":
            assert changed(before_D, D), "the discriminator did not change: step opt_D"
        else:
            assert changed(before_G, G), "the generator did not change: step opt_G"
            assert not changed(before_D, D), "only opt_D may change D"


def train_and_score(build_generator, build_discriminator, gan_step, seed=0, steps=TRAIN_STEPS):
    """Train the student's conditional GAN for ``steps`` steps and return (hit rate, confident share)
    of 1,000 requested digits, 100 of each, as read by the notebook-08 LeNet-5."""
    import torch
    import torch.nn.functional as F

    from dlcourse import data, models

    (X_train, y_train), _ = data.load_mnist("mnist")
    X, Y = models.to_tensor(X_train), torch.as_tensor(y_train).long()
    G, D = _generator(build_generator, seed), _discriminator(build_discriminator)
    opt_G = student_side(torch.optim.Adam)(G.parameters(), lr=5e-4, betas=(0.5, 0.999))
    opt_D = student_side(torch.optim.Adam)(D.parameters(), lr=5e-4, betas=(0.5, 0.999))
    generator = torch.Generator().manual_seed(seed)
    G.train()
    D.train()
    for _ in range(steps):
        idx = torch.randint(0, len(X), (64,), generator=generator)
        gan_step(G, D, opt_G, opt_D, X[idx], Y[idx], Z_DIM)
    classifier = models.mnist_cnn(progress=False)
    G.eval()
    torch.manual_seed(123)
    requested = torch.arange(1000) % NUM_CLASSES
    with torch.no_grad():
        p = F.softmax(classifier(G(torch.randn(1000, Z_DIM), requested)), dim=1)
    hit = (p.argmax(dim=1) == requested).float().mean().item()
    confident = (p.max(dim=1).values >= 0.9).float().mean().item()
    return hit, confident


@register("lab05.train", points=3,
          hint="If the digits stay blurry, ignore the label or one loss runs away, compare your architecture, your "
               "losses and your step with notebook 10's conditional GAN.",
          more="Both G and D take the label; D is trained on real pairs (1), fakes (0) and real images with wrong "
               "labels (0); BatchNorm in G and after D's second convolution, LeakyReLU in D; check that neither loss "
               "runs away.")
def check_train(build_generator, build_discriminator, gan_step):
    hit, confident = train_and_score(build_generator, build_discriminator, gan_step)
    assert hit >= HIT_BAR, (
        f"after {TRAIN_STEPS} steps only {hit:.0%} of the requested digits are read as requested by the notebook-08 "
        f"classifier (needs {HIT_BAR:.0%}; {confident:.0%} are read with confidence >= 0.9)")
