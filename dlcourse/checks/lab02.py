"""Checks for labs/lab02_backprop_xor (after notebooks 03 and 04)."""

from __future__ import annotations

import numpy as np

from dlcourse.checks.lab01 import _as_array, _numerical_grad
from dlcourse.grading import register


def _sigmoid(z):
    return 0.5 * (1 + np.tanh(0.5 * z))


def _relative_error(a, b):
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(a) + np.abs(b), 1e-12)))


@register("lab02.dense", points=2,
          hint="Each gradient has the shape of what it differentiates (dX like X, dW like W, db like b): write the "
               "matrix products whose shapes fit.",
          more="Forward: Z = X @ W + b. Backward: dX = dZ @ W.T, dW = X.T @ dZ, db = dZ.sum(axis=0).")
def check_dense(dense_forward, dense_backward):
    rng = np.random.default_rng(0)
    X, W, b = rng.normal(size=(4, 3)), rng.normal(size=(3, 2)), rng.normal(size=2)
    Z = _as_array(dense_forward(X, W, b), "dense_forward(X, W, b)", (4, 2))
    assert np.allclose(Z, X @ W + b), "dense_forward(X, W, b) should be X @ W + b"
    dZ = rng.normal(size=(4, 2))
    out = dense_backward(dZ, X, W)
    assert isinstance(out, tuple) and len(out) == 3, "dense_backward returns three things: (dX, dW, db)"
    dX, dW, db = (_as_array(v, n, s) for v, n, s in zip(out, ("dX", "dW", "db"), (X.shape, W.shape, b.shape)))
    loss = lambda X_, W_, b_: np.sum(dZ * (X_ @ W_ + b_))  # noqa: E731  (its gradient is what backward returns)
    assert _relative_error(dW, _numerical_grad(lambda v: loss(X, v, b), W)) < 1e-6, "dW is wrong"
    assert _relative_error(dX, _numerical_grad(lambda v: loss(v, W, b), X)) < 1e-6, "dX is wrong"
    assert _relative_error(db, _numerical_grad(lambda v: loss(X, W, v), b)) < 1e-6, "db is wrong: sum dZ over the batch"


@register("lab02.numerical_gradient", points=2,
          hint="Nudge one entry of x at a time, up and down by eps (np.ndindex(x.shape) visits every index of any "
               "shape), and put it back before the next one.",
          more="For each index i: save x[i]; x[i] = saved + eps; up = f(x); x[i] = saved - eps; down = f(x); "
               "x[i] = saved; grad[i] = (up - down) / (2 * eps). grad starts as np.zeros_like(x, dtype=float).")
def check_numerical_gradient(numerical_gradient):
    x = np.array([[0.5, -1.0], [2.0, 0.25]])
    before = x.copy()
    g = _as_array(numerical_gradient(lambda v: np.sum(v**3) + v[0, 1] * v[1, 0], x), "the gradient", x.shape)
    assert np.array_equal(x, before), "numerical_gradient changed its input x: restore each entry after nudging it"
    exact = 3 * x**2 + np.array([[0, x[1, 0]], [x[0, 1], 0]])
    assert _relative_error(g, exact) < 1e-7, f"relative error {_relative_error(g, exact):.1e} against the exact gradient (needs < 1e-7: use central differences)"


@register("lab02.backprop", points=2,
          hint="Run the forward pass keeping H and p, then go backward layer by layer with dense_backward, starting "
               "from the gradient at the output's pre-activation, (p - y) / N.",
          more="H = sigmoid(X @ W1 + b1), p = sigmoid(H @ W2 + b2); dH, dW2, db2 = dense_backward((p - y) / N, H, W2); "
               "dZ1 = dH * H * (1 - H); _, dW1, db1 = dense_backward(dZ1, X, W1). Return (loss, {\"W1\": dW1, ...}).")
def check_backprop(loss_and_grads):
    rng = np.random.default_rng(1)
    params = {"W1": rng.normal(size=(2, 2)), "b1": rng.normal(size=2),
              "W2": rng.normal(size=(2, 1)), "b2": rng.normal(size=1)}
    X = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
    y = np.array([[0.0], [1.0], [1.0], [0.0]])
    out = loss_and_grads(params, X, y)
    assert isinstance(out, tuple) and len(out) == 2, "return (loss, grads) with grads a dict like params"
    loss, grads = out
    assert isinstance(grads, dict) and set(grads) == set(params), f"grads needs the keys {sorted(params)}"

    def reference_loss(p):
        H = _sigmoid(X @ p["W1"] + p["b1"])
        q = _sigmoid(H @ p["W2"] + p["b2"])
        return -np.mean(y * np.log(q) + (1 - y) * np.log(1 - q))

    assert np.isclose(float(loss), reference_loss(params)), f"loss is {float(loss):.6g}, expected the mean cross-entropy {reference_loss(params):.6g}"
    for name, value in params.items():
        def along(v, name=name):
            return reference_loss({**params, name: v})
        error = _relative_error(_as_array(grads[name], f"grads[{name!r}]", value.shape), _numerical_grad(along, value))
        assert error < 1e-7, f"gradient check failed for {name}: relative error {error:.1e} (needs < 1e-7)"


@register("lab02.train_xor", points=2,
          hint="Draw the initial weights from np.random.default_rng(seed) with the shapes in the docstring, then take "
               "num_epochs full-batch gradient steps with loss_and_grads.",
          more="W1 = rng.normal(size=(2, 2)), W2 = rng.normal(size=(2, 1)), zero biases; params[k] -= lr * grads[k] "
               "for a few thousand epochs at lr around 2. Return (params, p) with p the network's output, shape (4, 1).")
def check_train_xor(train_xor):
    out = train_xor(seed=0)
    assert isinstance(out, tuple) and len(out) == 2, "return (params, predictions)"
    p = _as_array(out[1], "predictions", (4, 1)).ravel()
    target = np.array([0.0, 1.0, 1.0, 0.0])
    worst = np.max(np.abs(p - target))
    assert worst < 0.1, f"predictions {np.round(p, 3).tolist()} are up to {worst:.2f} from 0/1/1/0 (needs < 0.1)"
