"""Checks for labs/lab06_adversarial (after notebook 11)."""

from __future__ import annotations

from dlcourse.grading import is_a, register, student_side


def _reference_fgsm(net, X, y, eps):
    import torch
    import torch.nn.functional as F

    X = X.clone().requires_grad_(True)
    grad, = torch.autograd.grad(F.cross_entropy(net(X), y), X)
    return (X + eps * grad.sign()).clamp(0, 1).detach()


def _setup(n=64, seed=0):
    """(the check's network, the same network where the student's code runs, images, labels)."""
    import torch

    from dlcourse import data, models

    torch.manual_seed(seed)
    net = models.lenet5().eval()                  # an untrained net is enough to test the attack itself
    theirs = student_side(models.lenet5)()
    theirs.load_state_dict(net.state_dict())
    (_, _), (X_test, y_test) = data.load_mnist("mnist")
    return net, theirs.eval(), models.to_tensor(X_test[:n]), torch.as_tensor(y_test[:n]).long()


@register("lab06.fgsm", points=2,
          hint="You need the gradient of the loss with respect to the input images, not the weights: make a copy of X "
               "that requires grad and ask torch.autograd.grad for it.",
          more="X = X.clone().requires_grad_(True); g, = torch.autograd.grad(F.cross_entropy(net(X), y), X); "
               "return (X + eps * g.sign()).clamp(0, 1).detach().")
def check_fgsm(fgsm):
    import torch

    net, theirs, X, y = _setup()
    X_before = X.clone()
    X_adv = fgsm(theirs, X, y, 0.1)
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
          hint="Attack batch by batch with your fgsm, then count the correct predictions on the attacked images.",
          more="net.eval(); for each slice of batch_size: X_adv = fgsm(...) if eps > 0 else X_batch; under "
               "torch.no_grad() add (net(X_adv).argmax(dim=1) == y_batch).sum(); divide by len(X).")
def check_accuracy_under_attack(accuracy_under_attack):
    import torch

    net, theirs, X, y = _setup(n=300, seed=1)
    for eps in (0.0, 0.2):
        X_adv = _reference_fgsm(net, X, y, eps) if eps > 0 else X
        with torch.no_grad():
            expected = (net(X_adv).argmax(dim=1) == y).float().mean().item()
        got = float(accuracy_under_attack(theirs, X, y, eps))
        assert abs(got - expected) < 1e-6, f"accuracy at eps={eps} is {got:.4f}, expected {expected:.4f}"


@register("lab06.adversarial_train", points=3,
          hint="Inside notebook 08's loop, attack each minibatch with the current weights, then train on clean and "
               "attacked images together, so the clean accuracy stays.",
          more="Per minibatch: eps = torch.rand(len(batch), 1, 1, 1) * eps_max; net.eval(); X_adv = fgsm(net, X_b, y_b, "
               "eps); net.train(); loss = 0.5 * CE(net(X_b), y_b) + 0.5 * CE(net(X_adv), y_b). Adam 3e-3, 3 epochs.")
def check_adversarial_train(adversarial_train):
    import torch

    from dlcourse import data, models

    (X_train, y_train), (X_test, y_test) = data.load_mnist("mnist")
    torch.manual_seed(0)
    trained = adversarial_train(student_side(models.lenet5)(), X_train, y_train)
    assert is_a(trained, torch.nn.Module), "adversarial_train must return the trained network"
    net = models.lenet5()      # the attack runs on the returned weights, in the check's own LeNet-5
    try:
        net.load_state_dict(trained.state_dict())
    except (RuntimeError, TypeError, AttributeError, KeyError):
        raise AssertionError("adversarial_train must return the LeNet-5 it was given, trained") from None
    net.eval()
    X, y = models.to_tensor(X_test[:2000]), torch.as_tensor(y_test[:2000]).long()
    X_adv = _reference_fgsm(net, X, y, 0.25)
    with torch.no_grad():
        clean = (net(X).argmax(dim=1) == y).float().mean().item()
        attacked = (net(X_adv).argmax(dim=1) == y).float().mean().item()
    assert clean >= 0.97, f"clean test accuracy {clean:.1%}; keep it at 97% or more (mix clean and adversarial losses)"
    assert attacked >= 0.70, f"accuracy under FGSM at eps=0.25 is {attacked:.1%}; it needs 70%"
