"""PyTorch models, a small training loop and saved models (introduced in notebooks/08).

The MNIST classifier trained in notebooks/08 (LeNet-5) is reused by notebooks/10
(it judges the generated digits) and notebooks/11 (it is attacked). Notebook 08 saves
it with :func:`save`; the later notebooks get it back with :func:`mnist_cnn`, which
retrains it with the same recipe when the file is missing or damaged.

Saved models live in ``$DLCOURSE_ARTIFACTS`` when that variable is set, else in
``artifacts/`` at the top of the course folder (ignored by git). Files are written
atomically (a temporary file in the same folder, then renamed), so an interrupted
save never leaves a file that passes for a model.

Like the rest of ``dlcourse``, importing this module imports no framework: PyTorch is
imported by the functions that need it.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from dlcourse.fsutil import atomic_write

ROOT = Path(__file__).resolve().parent.parent

# The fast-profile recipe of notebooks/08, used by mnist_cnn() to retrain the saved model.
# Training set: the first 55,000 MNIST training images; the last 5,000 are the validation set.
MNIST_RECIPE = {"num_epochs": 3, "batch_size": 128, "lr": 3e-3, "seed": 0, "num_train": 55_000}
MNIST_CNN_NAME = "mnist_lenet5"
MNIST_MEAN, MNIST_STD = 0.1307, 0.3081   # of the MNIST training pixels, scaled to [0, 1]


class ArtifactError(RuntimeError):
    """A saved model is missing, damaged or does not fit the network; the message says how to fix it."""


# --------------------------------------------------------------------------- models
def lenet5():
    """LeNet-5 (LeCun et al., 1998) for 28x28 digits, with ReLU and max-pooling (notebooks/08).

    Input ``x: (N, 1, 28, 28)`` float32 pixels in [0, 1] (the uint8 images divided by
    255: see :func:`to_tensor`). The first layer standardizes them with MNIST's mean and
    standard deviation, so the convolutions see zero-mean, unit-variance inputs while
    everything outside the network (attacks in notebooks/11, generators in notebooks/10)
    works in plain [0, 1] pixel units. Returns logits ``(N, 10)``; apply a softmax for
    probabilities. 61,706 parameters.

    Layers (shapes for one image): conv 5x5 pad 2, 1 -> 6 maps (6, 28, 28); max-pool 2
    (6, 14, 14); conv 5x5, 6 -> 16 maps (16, 10, 10); max-pool 2 (16, 5, 5); flatten
    400; fully connected 120, 84, 10. Every conv and hidden layer is followed by a ReLU.
    """
    from collections import OrderedDict

    from torch import nn

    class Standardize(nn.Module):
        def forward(self, x):                                    # x: (N, 1, 28, 28) in [0, 1]
            return (x - MNIST_MEAN) / MNIST_STD

    return nn.Sequential(OrderedDict([
        ("standardize", Standardize()),                          # (N, 1, 28, 28), mean 0, std 1
        ("conv1", nn.Conv2d(1, 6, kernel_size=5, padding=2)),   # (N, 6, 28, 28)
        ("relu1", nn.ReLU()),
        ("pool1", nn.MaxPool2d(2)),                              # (N, 6, 14, 14)
        ("conv2", nn.Conv2d(6, 16, kernel_size=5)),              # (N, 16, 10, 10)
        ("relu2", nn.ReLU()),
        ("pool2", nn.MaxPool2d(2)),                              # (N, 16, 5, 5)
        ("flatten", nn.Flatten()),                               # (N, 400)
        ("fc1", nn.Linear(16 * 5 * 5, 120)),
        ("relu3", nn.ReLU()),
        ("fc2", nn.Linear(120, 84)),
        ("relu4", nn.ReLU()),
        ("fc3", nn.Linear(84, 10)),                              # (N, 10) logits
    ]))


def to_tensor(X):
    """Images as a float32 tensor ``(N, 1, H, W)`` in [0, 1] (notebooks/08).

    ``X`` is ``(N, H, W)`` or ``(N, 1, H, W)``, a NumPy array or a tensor. uint8 pixels
    (0-255) are divided by 255; floats are taken to be in [0, 1] already.
    """
    import numpy as np
    import torch

    X = torch.as_tensor(np.asarray(X) if not isinstance(X, torch.Tensor) else X)
    if X.ndim == 3:
        X = X.unsqueeze(1)
    if X.ndim != 4:
        raise ValueError(f"images must be (N, H, W) or (N, C, H, W), got shape {tuple(X.shape)}")
    if X.dtype == torch.uint8:
        return X.float().div_(255)
    return X.float()


def _labels(y):
    import numpy as np
    import torch

    return torch.as_tensor(np.asarray(y) if not isinstance(y, torch.Tensor) else y).long()


# --------------------------------------------------------------------------- training
def predict(net, X, batch_size: int = 1000):
    """Class probabilities ``(N, 10)`` (NumPy float32) of ``net`` for images ``X`` (notebooks/08).

    ``X`` as for :func:`to_tensor`. The network is put in eval mode; no gradients are kept.
    """
    import torch

    X = to_tensor(X)
    device = next(net.parameters()).device
    net.eval()
    out = []
    with torch.no_grad():
        for i in range(0, len(X), batch_size):
            out.append(torch.softmax(net(X[i:i + batch_size].to(device)), dim=1).cpu())
    return torch.cat(out).numpy()


def accuracy(net, X, y, batch_size: int = 1000) -> float:
    """Fraction of the images ``X`` (as for :func:`to_tensor`) classified as ``y: (N,)`` (notebooks/08)."""
    import numpy as np

    return float(np.mean(predict(net, X, batch_size).argmax(axis=1) == np.asarray(y)))


def fit(net, X_train, y_train, X_val, y_val, num_epochs: int, batch_size: int, lr: float, *,
        seed: int = 0, lr_decay: bool = True, weight_decay: float = 0.0, progress: bool = True,
        desc: str = "training") -> dict[str, list[float]]:
    """Train ``net`` with Adam and the cross-entropy loss; returns ``history`` (notebooks/08).

    Inputs: ``X_train: (N, 28, 28)`` uint8 or ``(N, 1, 28, 28)`` float in [0, 1] (see
    :func:`to_tensor`), ``y_train: (N,)`` class indices; the same for ``X_val, y_val``.
    Each epoch visits the training set once in a new random order (from ``seed``) in
    minibatches of ``batch_size``, indexing the tensors directly (no DataLoader: for
    images already in memory it only adds overhead). With ``lr_decay`` the learning
    rate falls linearly from ``lr`` to 0 over the run, which settles the weights at the
    end of a short run. The network stays on its device; each minibatch is moved to it.

    Returns ``{"train loss": [...], "val accuracy": [...]}``, one value per epoch: the
    mean minibatch loss during the epoch, and the accuracy on the validation set after it.
    A ``tqdm.auto`` bar shows the progress (``progress=False`` hides it).
    """
    import torch
    from tqdm.auto import tqdm

    X_train, y_train = to_tensor(X_train), _labels(y_train)
    if len(X_train) != len(y_train):
        raise ValueError(f"{len(X_train)} training images but {len(y_train)} labels")
    device = next(net.parameters()).device
    optimizer = torch.optim.Adam(net.parameters(), lr=lr, weight_decay=weight_decay)
    steps_per_epoch = -(-len(X_train) // batch_size)
    total_steps = num_epochs * steps_per_epoch
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: max(0.0, 1 - step / total_steps) if lr_decay else 1.0)
    generator = torch.Generator().manual_seed(seed)
    history = {"train loss": [], "val accuracy": []}
    bar = tqdm(total=total_steps, desc=desc, unit="batch", disable=not progress, mininterval=0.5)
    for _ in range(num_epochs):
        net.train()
        order = torch.randperm(len(X_train), generator=generator)
        loss_sum = 0.0
        for start in range(0, len(X_train), batch_size):
            idx = order[start:start + batch_size]
            X, y = X_train[idx].to(device), y_train[idx].to(device)
            loss = torch.nn.functional.cross_entropy(net(X), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            loss_sum += loss.item() * len(idx)
            bar.update(1)
        history["train loss"].append(loss_sum / len(X_train))
        history["val accuracy"].append(accuracy(net, X_val, y_val))
        bar.set_postfix({"loss": f"{history['train loss'][-1]:.4f}",
                         "val acc": f"{history['val accuracy'][-1]:.4f}"})
    bar.close()
    net.eval()
    return history


# --------------------------------------------------------------------------- saved models
def artifacts_dir() -> Path:
    """Where models are saved: ``$DLCOURSE_ARTIFACTS`` if set, else ``<course folder>/artifacts``."""
    value = os.environ.get("DLCOURSE_ARTIFACTS", "").strip()
    return Path(value).expanduser() if value else ROOT / "artifacts"


def artifact_path(name: str) -> Path:
    """The file a model called ``name`` is saved in: ``artifacts_dir() / f"{name}.pt"``."""
    if not name or "/" in name or "\\" in name or name.startswith("."):
        raise ValueError(f"a model name is a plain file name without folders, got {name!r}")
    return artifacts_dir() / f"{name}.pt"


def display_path(path: Path) -> str:
    """``path`` relative to the course folder when inside it, so printed output names no machine paths (notebooks/08)."""
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def save(net, name: str) -> Path:
    """Save ``net``'s weights (its ``state_dict``) as ``name``; returns the path (notebooks/08).

    The write is atomic (:func:`dlcourse.fsutil.atomic_write`), so a crash or a full disk
    never leaves half a file behind.
    """
    import torch

    return atomic_write(artifact_path(name), lambda fh: torch.save(net.state_dict(), fh))


def load(name: str, net=None):
    """Load the weights saved as ``name`` (notebooks/08).

    With ``net`` given, copies them into it and returns it in eval mode; otherwise returns
    the ``state_dict``. Raises :class:`ArtifactError` with a message saying how to fix it
    when the file is missing, damaged, or holds the weights of a different network.
    """
    import torch

    path = artifact_path(name)
    if not path.is_file():
        raise ArtifactError(
            f"No saved model {name!r}: {path} does not exist. Run the notebook that trains it "
            f"(notebooks/08 saves {MNIST_CNN_NAME!r}), or set DLCOURSE_ARTIFACTS to the folder that holds it.")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - zip, pickle and EOF errors all mean "damaged"
        reason = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        raise ArtifactError(
            f"The saved model {path} is damaged and cannot be read ({reason}). Delete it and "
            "run the notebook that trains it again.") from None
    if not isinstance(state, dict):
        raise ArtifactError(f"{path} does not hold a state_dict (found {type(state).__name__}). "
                            "Delete it and run the notebook that trains it again.")
    if net is None:
        return state
    try:
        net.load_state_dict(state)
    except RuntimeError as exc:
        raise ArtifactError(
            f"{path} holds the weights of a different network: {str(exc).splitlines()[0][:300]}. "
            "Delete it and run the notebook that trains it again.") from None
    net.eval()
    return net


def mnist_cnn(retrain_if_missing: bool = True, progress: bool = True):
    """The LeNet-5 trained on MNIST in notebooks/08, in eval mode (used by notebooks 10 and 11).

    Loads ``artifacts/mnist_lenet5.pt`` (see :func:`artifacts_dir`). When the file is
    missing or damaged, retrains the network with notebooks/08's fast-profile recipe
    (:data:`MNIST_RECIPE`, under a minute on one CPU core) and saves it, or, with
    ``retrain_if_missing=False``, raises :class:`ArtifactError`. Prints what it did.
    Input ``(N, 1, 28, 28)`` in [0, 1], output logits ``(N, 10)``, as :func:`lenet5`.
    """
    try:
        net = load(MNIST_CNN_NAME, lenet5())
        print(f"loaded the MNIST LeNet-5 of notebooks/08 from {display_path(artifact_path(MNIST_CNN_NAME))}")
        return net
    except ArtifactError as exc:
        if not retrain_if_missing:
            raise ArtifactError(f"{exc} (mnist_cnn(retrain_if_missing=True) retrains it in under "
                                "a minute on one CPU core.)") from None
        print(f"{exc}\nRetraining LeNet-5 with the recipe of notebooks/08 instead.")
    return train_mnist_cnn(progress=progress)


def train_mnist_cnn(progress: bool = True):
    """Train LeNet-5 on MNIST with :data:`MNIST_RECIPE`, save it as ``mnist_lenet5`` and return it.

    Used by :func:`mnist_cnn`; trains on the CPU with one thread, as notebooks/08 does.
    """
    import torch

    from dlcourse import data

    (X_train, y_train), (X_test, y_test) = data.load_mnist("mnist")
    n = MNIST_RECIPE["num_train"]
    torch.manual_seed(MNIST_RECIPE["seed"])
    net = lenet5()
    start = time.time()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)   # faster for this tiny network, and robust on a busy machine (notebooks/08)
    try:
        fit(net, X_train[:n], y_train[:n], X_train[n:], y_train[n:], MNIST_RECIPE["num_epochs"],
            MNIST_RECIPE["batch_size"], MNIST_RECIPE["lr"], seed=MNIST_RECIPE["seed"], progress=progress,
            desc="retraining LeNet-5")
    finally:
        torch.set_num_threads(threads)
    print(f"trained in {time.time() - start:.0f} s, test accuracy {accuracy(net, X_test, y_test):.4f}")
    try:
        print(f"saved to {display_path(save(net, MNIST_CNN_NAME))}")
    except OSError as exc:  # a read-only course folder, a full disk, a graded lab's sandbox
        print(f"could not save it ({exc}); it is used from memory and retrained next time. "
              "Set DLCOURSE_ARTIFACTS to a writable folder to keep it.")
    return net
