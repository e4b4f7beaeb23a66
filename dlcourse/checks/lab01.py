"""Checks for labs/lab01_gradient_descent (after notebooks 01 and 02)."""

from __future__ import annotations

import warnings

import numpy as np

from dlcourse.grading import register


def _problem(n=80, d=3, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    w_true, b_true = rng.normal(size=d), 0.7
    y = X @ w_true + b_true + 0.1 * rng.normal(size=n)
    return X, y


def _as_array(value, name, shape):
    assert value is not None, f"{name} is None: did you forget a `return`?"
    value = np.asarray(value, dtype=float)
    assert value.shape == shape, f"{name} has shape {value.shape}, expected {shape}"
    return value


def _numerical_grad(f, w, eps=1e-6):
    grad = np.zeros_like(w)
    for i in range(w.size):
        step = np.zeros_like(w)
        step.flat[i] = eps
        grad.flat[i] = (f(w + step) - f(w - step)) / (2 * eps)
    return grad


@register("lab01.linear_loss_grad", points=2,
          hint="Compute the residuals r = X @ w + b - y first; the loss and both gradients are short expressions of r "
               "(the formulas are above the exercise). Return a tuple of three.",
          more="loss = mean(r**2); grad_w = 2 * X.T @ r / N has the shape of w, (D,); grad_b = 2 * mean(r) is a number.")
def check_linear_loss_grad(linear_loss_and_grad):
    X, y = _problem()
    w, b = np.array([0.5, -1.0, 2.0]), 0.3
    out = linear_loss_and_grad(X, y, w, b)
    assert isinstance(out, tuple) and len(out) == 3, "return three things: (loss, grad_w, grad_b)"
    loss, grad_w, grad_b = out
    r = X @ w + b - y
    assert np.isclose(float(loss), np.mean(r**2)), f"loss is {float(loss):.6g}, expected the mean squared error {np.mean(r**2):.6g}"
    grad_w = _as_array(grad_w, "grad_w", w.shape)
    assert np.allclose(grad_w, 2 * X.T @ r / len(y)), "grad_w is wrong: compare it with a numerical gradient"
    assert np.isclose(float(grad_b), 2 * np.mean(r)), f"grad_b is {float(grad_b):.6g}, expected {2 * np.mean(r):.6g}"


@register("lab01.gd_linear", points=2,
          hint="Start from zero weights and take num_epochs steps against the gradient that linear_loss_and_grad gives.",
          more="w, b = np.zeros(X.shape[1]), 0.0; then num_epochs times: w = w - lr * grad_w and b = b - lr * grad_b. "
               "Return (w, b).")
def check_gd_linear(gradient_descent):
    X, y = _problem()
    out = gradient_descent(X, y, lr=0.1, num_epochs=500)
    assert isinstance(out, tuple) and len(out) == 2, "return (w, b)"
    w, b = _as_array(out[0], "w", (3,)), float(out[1])
    A = np.c_[X, np.ones(len(X))]
    exact = np.linalg.lstsq(A, y, rcond=None)[0]
    err = max(np.abs(w - exact[:3]).max(), abs(b - exact[3]))
    assert err < 1e-6, f"after 500 epochs at lr=0.1 your (w, b) is {err:.2g} away from the least-squares solution (needs < 1e-6)"


@register("lab01.sigmoid", points=1,
          hint="exp of a large positive number overflows; exp of a negative one never does. Note that np.where computes "
               "both of its branches for every element, so neither branch may overflow anywhere.",
          more="Let e = np.exp(-np.abs(z)), which is at most 1. Then sigmoid(z) = 1 / (1 + e) for z >= 0 and "
               "e / (1 + e) for z < 0: pick per element with np.where.")
def check_sigmoid(sigmoid):
    z = np.array([-1000.0, -5.0, 0.0, 5.0, 1000.0])
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        try:
            s = sigmoid(z)
        except RuntimeWarning as exc:
            raise AssertionError(f"sigmoid overflowed for large |z| ({exc}); it must be numerically stable") from None
    s = _as_array(s, "sigmoid(z)", z.shape)
    expected = np.array([0.0, 1 / (1 + np.exp(5.0)), 0.5, 1 / (1 + np.exp(-5.0)), 1.0])
    assert np.allclose(s, expected, atol=1e-12), f"sigmoid({z.tolist()}) = {np.round(s, 4).tolist()}, expected {np.round(expected, 4).tolist()}"


@register("lab01.logistic_loss_grad", points=2,
          hint="Use your sigmoid for the probabilities p; the gradient has the same form as the linear one, with the "
               "residual p - y. Return (loss, grad_w, grad_b) like linear_loss_and_grad.",
          more="p = sigmoid(X @ w + b); loss = -mean(y * log(p) + (1 - y) * log(1 - p)); grad_w = X.T @ (p - y) / N; "
               "grad_b = mean(p - y).")
def check_logistic_loss_grad(logistic_loss_and_grad):
    rng = np.random.default_rng(1)
    X, y = rng.normal(size=(50, 2)), (rng.random(50) < 0.5).astype(float)
    w, b = np.array([0.3, -0.8]), 0.1
    out = logistic_loss_and_grad(X, y, w, b)
    assert isinstance(out, tuple) and len(out) == 3, "return three things: (loss, grad_w, grad_b)"
    loss, grad_w, grad_b = out
    p = 1 / (1 + np.exp(-(X @ w + b)))
    expected = -np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))
    assert np.isclose(float(loss), expected), f"loss is {float(loss):.6g}, expected the mean cross-entropy {expected:.6g}"
    grad_w = _as_array(grad_w, "grad_w", w.shape)
    numeric = _numerical_grad(lambda v: logistic_loss_and_grad(X, y, v, b)[0], w)
    assert np.allclose(grad_w, numeric, atol=1e-6), f"grad_w = {np.round(grad_w, 5)} but the numerical gradient is {np.round(numeric, 5)}"
    assert np.isclose(float(grad_b), np.mean(p - y)), f"grad_b is {float(grad_b):.6g}, expected {np.mean(p - y):.6g}"


@register("lab01.train_logistic", points=2,
          hint="It is gradient_descent again, with the cross-entropy's gradient instead of the squared error's.",
          more="Copy your gradient_descent loop and call logistic_loss_and_grad in it; return (w, b). The check "
               "predicts class 1 where X @ w + b > 0.")
def check_train_logistic(train_logistic):
    from dlcourse import data

    X, y = data.make_blobs(n=400, distance=4.0, seed=3)
    out = train_logistic(X, y, lr=0.5, num_epochs=300)
    assert isinstance(out, tuple) and len(out) == 2, "return (w, b)"
    w, b = _as_array(out[0], "w", (2,)), float(out[1])
    accuracy = np.mean(((X @ w + b) > 0) == y)
    assert accuracy >= 0.95, f"training accuracy on two blobs is {accuracy:.1%}; it should reach 95%"
