"""Checks for labs/lab06_adversarial (after notebook 11)."""

from __future__ import annotations

from dlcourse.grading import register


def _reference_fgsm(net, X, y, eps):
    import torch
    import torch.nn.functional as F

    X = X.clone().requires_grad_(True)
    grad, = torch.autograd.grad(F.cross_entropy(net(X), y), X)
    return (X + eps * grad.sign()).clamp(0, 1).detach()


def _setup(n=64, seed=0):
    import torch

    from dlcourse import data, models

    torch.manual_seed(seed)
    net = models.lenet5().eval()                  # an untrained net is enough to test the attack itself
    (_, _), (X_test, y_test) = data.load_mnist("mnist")
    return net, models.to_tensor(X_test[:n]), torch.as_tensor(y_test[:n]).long()


@register("lab06.fgsm", points=2,
          hint="X_adv = X + eps * sign(dL/dX), with L the cross-entropy of net(X) against y; then clamp to [0, 1] and detach.")
def check_fgsm(fgsm):
    import torch

    net, X, y = _setup()
    X_before = X.clone()
    X_adv = fgsm(net, X, y, 0.1)
    assert isinstance(X_adv, torch.Tensor) and X_adv.shape == X.shape, "fgsm must return a tensor shaped like X"
    assert torch.equal(X, X_before), "fgsm changed its input X; work on a copy (X.clone())"
    assert not X_adv.requires_grad, "return a detached tensor (.detach()), not part of the autograd graph"
    assert float(X_adv.min()) >= 0 and float(X_adv.max()) <= 1, "adversarial pixels must stay in [0, 1]: clamp them"
    step = (X_adv - X).abs().max().item()
    assert step <= 0.1 + 1e-6, f"the perturbation reaches {step:.3f}, over eps = 0.1"
    expected = _reference_fgsm(net, X, y, 0.1)
    wrong = (X_adv - expected).abs().gt(1e-5).float().mean().item()
    assert wrong < 1e-3, f"{wrong:.1%} of the pixels differ from an FGSM step: step along the sign of the input gradient of the loss"


@register("lab06.accuracy_under_attack", points=1,
          hint="Attack each batch with fgsm (skip it for eps = 0), then count argmax(net(X_adv)) == y under torch.no_grad().")
def check_accuracy_under_attack(accuracy_under_attack):
    import torch

    net, X, y = _setup(n=300, seed=1)
    for eps in (0.0, 0.2):
        X_adv = _reference_fgsm(net, X, y, eps) if eps > 0 else X
        with torch.no_grad():
            expected = (net(X_adv).argmax(dim=1) == y).float().mean().item()
        got = float(accuracy_under_attack(net, X, y, eps))
        assert abs(got - expected) < 1e-6, f"accuracy at eps={eps} is {got:.4f}, expected {expected:.4f}"


@register("lab06.adversarial_train", points=3,
          hint="Per minibatch: attack the current weights (net.eval(), fgsm with a random eps in [0, eps_max]), "
               "then net.train() and step on half clean + half adversarial cross-entropy. 3 epochs, Adam 3e-3.")
def check_adversarial_train(adversarial_train):
    import torch

    from dlcourse import data, models

    (X_train, y_train), (X_test, y_test) = data.load_mnist("mnist")
    torch.manual_seed(0)
    net = adversarial_train(models.lenet5(), X_train, y_train)
    assert isinstance(net, torch.nn.Module), "adversarial_train must return the trained network"
    net.eval()
    X, y = models.to_tensor(X_test[:2000]), torch.as_tensor(y_test[:2000]).long()
    X_adv = _reference_fgsm(net, X, y, 0.25)
    with torch.no_grad():
        clean = (net(X).argmax(dim=1) == y).float().mean().item()
        attacked = (net(X_adv).argmax(dim=1) == y).float().mean().item()
    assert clean >= 0.97, f"clean test accuracy {clean:.1%}; keep it at 97% or more (mix clean and adversarial losses)"
    assert attacked >= 0.70, f"accuracy under FGSM at eps=0.25 is {attacked:.1%}; it needs 70%"
