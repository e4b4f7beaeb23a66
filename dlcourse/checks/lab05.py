"""Checks for labs/lab05_gan (after notebook 10)."""

from __future__ import annotations

import math

from dlcourse.checks import prepare_mnist_cnn
from dlcourse.grading import is_a, register, student_side

Z_DIM = 64


prepare = prepare_mnist_cnn  # the pretrained / scoring network must exist on disk


def _generator(build_generator):
    import torch

    torch.manual_seed(0)
    G = build_generator(Z_DIM)
    assert is_a(G, torch.nn.Module), "build_generator must return a torch.nn.Module"
    return G


@register("lab05.generator", points=2,
          hint="Notebook 10's generator: a Linear layer makes a small 7x7 map from the noise, two transposed "
               "convolutions with stride 2 double it to 14x14 and 28x28, and a Sigmoid keeps pixels in [0, 1].",
          more="Linear(z_dim, 64*7*7) -> BatchNorm1d -> ReLU -> Unflatten(1, (64, 7, 7)) -> ConvTranspose2d(64, 32, 4, 2, 1) "
               "-> BatchNorm2d -> ReLU -> ConvTranspose2d(32, 1, 4, 2, 1) -> Sigmoid.")
def check_generator(build_generator):
    import torch

    G = _generator(build_generator)
    images = G(torch.randn(5, Z_DIM))
    assert tuple(images.shape) == (5, 1, 28, 28), f"G(z) for 5 codes has shape {tuple(images.shape)}, expected (5, 1, 28, 28)"
    assert float(images.min()) >= 0 and float(images.max()) <= 1, "generated pixels must lie in [0, 1], like the data: end with a sigmoid"
    params = sum(p.numel() for p in G.parameters())
    assert params <= 2_000_000, f"{params:,} parameters; keep the generator under 2 million so it trains in a minute"


@register("lab05.discriminator", points=1,
          hint="A small CNN that halves the image twice with strided convolutions and ends in ONE raw number per "
               "image (a logit): no Sigmoid at the end.",
          more="Conv2d(1, 32, 4, 2, 1) -> LeakyReLU(0.2) -> Conv2d(32, 64, 4, 2, 1) -> LeakyReLU(0.2) -> Flatten -> Linear(64*7*7, 1).")
def check_discriminator(build_discriminator):
    import torch

    torch.manual_seed(0)
    D = build_discriminator()
    assert is_a(D, torch.nn.Module), "build_discriminator must return a torch.nn.Module"
    out = D(torch.rand(5, 1, 28, 28))
    assert out.numel() == 5, f"D gives {tuple(out.shape)} for 5 images; it must give one logit per image"
    assert not is_a(list(D.modules())[-1], torch.nn.Sigmoid), "D returns logits: no sigmoid at the end (the loss applies it, stably)"


@register("lab05.losses", points=2,
          hint="Both losses are binary cross-entropies on logits; ask which label each player wants the "
               "discriminator to give to real and to fake images.",
          more="binary_cross_entropy_with_logits: D wants real -> 1 and fake -> 0; the non-saturating G loss wants fake -> 1.")
def check_losses(discriminator_loss, generator_loss):
    import torch
    import torch.nn.functional as F

    real, fake = torch.tensor([2.0, -1.0, 0.5]), torch.tensor([-3.0, 0.2, 1.0])
    d = float(discriminator_loss(real, fake))
    expected = float(F.binary_cross_entropy_with_logits(real, torch.ones(3)) + F.binary_cross_entropy_with_logits(fake, torch.zeros(3)))
    assert math.isclose(d, expected, rel_tol=1e-5), f"discriminator_loss = {d:.5f}, expected {expected:.5f} (mean BCE on real as 1 plus fake as 0)"
    g = float(generator_loss(fake))
    expected = float(F.binary_cross_entropy_with_logits(fake, torch.ones(3)))
    assert math.isclose(g, expected, rel_tol=1e-5), \
        f"generator_loss = {g:.5f}, expected {expected:.5f}: the non-saturating loss is BCE of D(fake) against 1, not -BCE against 0"
    extreme = float(discriminator_loss(torch.tensor([100.0]), torch.tensor([-100.0]))) + float(generator_loss(torch.tensor([-100.0])))
    assert math.isfinite(extreme), "the losses overflow for confident logits: use binary_cross_entropy_with_logits, not log(sigmoid(.))"


@register("lab05.train_step", points=1,
          hint="Two updates per call, the discriminator's first; when you update one player, the other's weights "
               "must not move and its gradients must not leak into the update.",
          more="D step: D on real and on fake.detach(); then G step: D on fake, without stepping D. Return (loss_D.item(), loss_G.item()).")
def check_train_step(build_generator, build_discriminator, gan_step):
    import torch

    def params(net):
        return [p.detach().clone() for p in net.parameters()]

    def changed(before, net):
        return any(not torch.equal(a, b) for a, b in zip(before, net.parameters()))

    torch.manual_seed(0)
    X = torch.rand(16, 1, 28, 28)
    for frozen in ("G", "D"):
        G, D = _generator(build_generator), build_discriminator()
        opt_G = student_side(torch.optim.SGD)(G.parameters(), lr=0.0 if frozen == "G" else 0.1)   # beside G and D
        opt_D = student_side(torch.optim.SGD)(D.parameters(), lr=0.0 if frozen == "D" else 0.1)
        before_G, before_D = params(G), params(D)
        out = gan_step(G, D, opt_G, opt_D, X, Z_DIM)
        assert isinstance(out, tuple) and len(out) == 2 and all(isinstance(v, float) for v in out), \
            "gan_step returns (loss_D, loss_G) as Python floats (.item())"
        if frozen == "G":
            assert changed(before_D, D), "the discriminator did not change: step opt_D"
        else:
            assert changed(before_G, G), "the generator did not change: step opt_G"
            assert not changed(before_D, D), "only opt_D may change D"


@register("lab05.train", points=3,
          hint="If the digits stay blurry or one loss runs away, compare your architecture and optimizer settings "
               "with notebook 10's DCGAN recipe.",
          more="Adam(2e-4, betas=(0.5, 0.999)) for both; BatchNorm in G, LeakyReLU in D; check that neither loss runs away.")
def check_train(build_generator, build_discriminator, gan_step):
    import torch
    import torch.nn.functional as F

    from dlcourse import data, models

    (X_train, _), _ = data.load_mnist("mnist")
    X = models.to_tensor(X_train)
    G, D = _generator(build_generator), build_discriminator()
    opt_G = student_side(torch.optim.Adam)(G.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_D = student_side(torch.optim.Adam)(D.parameters(), lr=2e-4, betas=(0.5, 0.999))
    generator = torch.Generator().manual_seed(0)
    G.train()
    D.train()
    for _ in range(1500):
        gan_step(G, D, opt_G, opt_D, X[torch.randint(0, len(X), (64,), generator=generator)], Z_DIM)
    classifier = models.mnist_cnn(progress=False)
    G.eval()
    torch.manual_seed(123)
    with torch.no_grad():
        p = F.softmax(classifier(G(torch.randn(1000, Z_DIM))), dim=1)
    confident = (p.max(dim=1).values >= 0.9).float().mean().item()
    share = torch.bincount(p.argmax(dim=1), minlength=10).float() / len(p)
    entropy = -(share[share > 0] * share[share > 0].log()).sum().item()
    assert entropy >= 1.6, f"after 1,500 steps the digits cover too few classes (class entropy {entropy:.2f} nats, needs 1.6): mode collapse"
    assert confident >= 0.2, f"after 1,500 steps only {confident:.0%} of the samples look like a digit to the notebook-08 classifier (needs 20%)"
