"""Profiles, seeds, devices and framework imports (introduced in notebooks/00).

Nothing here imports a deep-learning framework at module import time. The helpers
that touch a framework import it when called, or act only on frameworks the
notebook has already imported.
"""

from __future__ import annotations

import importlib
import os
import random
import sys
from pathlib import Path

PROFILES = ("fast", "full")

# What each framework is called on PyPI and in prose, for error messages.
FRAMEWORKS = {
    "torch": "PyTorch",
    "tensorflow": "TensorFlow",
    "keras": "Keras",
    "mxnet": "MXNet",
    "horovod": "Horovod",
}


class FrameworkMissing(ImportError):
    """A framework the notebook needs is not installed (or fails to import)."""


def require(module: str):
    """Import and return ``module``, or raise :class:`FrameworkMissing` saying how to fix it.

    >>> torch = require("torch")
    """
    if module == "mxnet":
        return import_mxnet()
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        top = module.split(".")[0]
        raise FrameworkMissing(
            f"{FRAMEWORKS.get(top, top)} ({module}) cannot be imported: {exc}. "
            "Start the course with `make lab` from the course folder (it installs every pinned "
            "package into .venv), or run `make doctor` to see what is missing."
        ) from exc


# --------------------------------------------------------------------------- profiles
def gpu_visible() -> bool:
    """True when an NVIDIA GPU is visible to this process (checked without importing CUDA)."""
    if os.environ.get("CUDA_VISIBLE_DEVICES", None) in ("", "-1"):
        return False
    gpus = Path("/proc/driver/nvidia/gpus")
    return gpus.is_dir() and any(gpus.iterdir())


def profile(override: str | None = None) -> str:
    """The run profile: ``"fast"`` (CPU laptop, CI) or ``"full"`` (GPU instance).

    Order: ``override`` (a notebook's explicit choice), then ``$DLCOURSE_PROFILE``, then
    ``"full"`` when a GPU is visible and ``"fast"`` otherwise. A profile changes sizes
    and epochs, never the code path.
    """
    value = override if override is not None else os.environ.get("DLCOURSE_PROFILE", "")
    value = value.strip().lower()
    if not value:
        return "full" if gpu_visible() else "fast"
    if value not in PROFILES:
        raise ValueError(
            f"Unknown profile {value!r}. Use 'fast' (CPU laptop, CI) or 'full' (GPU instance), "
            "e.g. `DLCOURSE_PROFILE=fast make lab`."
        )
    return value


def choose(fast, full, override: str | None = None):
    """Pick the value for the current profile: ``epochs = choose(fast=3, full=20)``."""
    return fast if profile(override) == "fast" else full


# --------------------------------------------------------------------------- seeds
def seed_everything(seed: int) -> list[str]:
    """Seed Python, NumPy and every framework this process has already imported.

    Import your frameworks first, then call this, so that a PyTorch notebook never has
    to import TensorFlow just to seed it. Returns the names of what was seeded.
    """
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    import numpy as np

    os.environ["PYTHONHASHSEED"] = str(seed)  # for subprocesses this notebook starts
    random.seed(seed)
    np.random.seed(seed)
    seeded = ["python", "numpy"]
    if "torch" in sys.modules:
        sys.modules["torch"].manual_seed(seed)  # also seeds every CUDA device
        seeded.append("torch")
    if "tensorflow" in sys.modules:
        sys.modules["tensorflow"].random.set_seed(seed)
        seeded.append("tensorflow")
    if "keras" in sys.modules:
        sys.modules["keras"].utils.set_random_seed(seed)
        seeded.append("keras")
    if "mxnet" in sys.modules:
        sys.modules["mxnet"].random.seed(seed)
        seeded.append("mxnet")
    return seeded


# --------------------------------------------------------------------------- devices
def device(framework: str = "torch"):
    """The device to train on: the first GPU when there is one, else the CPU.

    ``framework`` is ``"torch"`` (a ``torch.device``), ``"tensorflow"`` (a device
    string for ``tf.device``) or ``"mxnet"`` (an ``mx.Context``).
    """
    if framework == "torch":
        torch = require("torch")
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if framework == "tensorflow":
        tf = require("tensorflow")
        return "/GPU:0" if tf.config.list_physical_devices("GPU") else "/CPU:0"
    if framework == "mxnet":
        mx = import_mxnet()
        return mx.gpu(0) if mx.context.num_gpus() else mx.cpu()
    raise ValueError(f"framework must be 'torch', 'tensorflow' or 'mxnet', got {framework!r}")


def cpu_threads() -> int:
    """CPU cores this process may use (respects taskset / container limits)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS
        return os.cpu_count() or 1


# --------------------------------------------------------------------------- MXNet
def import_mxnet():
    """Import MXNet 1.9.1 beside NumPy 1.26 and PyTorch (introduced in notebooks/03).

    Two known problems are fixed here, and only here:

    1. MXNet 1.9.1 still uses ``numpy.bool``, an alias NumPy 1.24 removed. We restore it
       (it is Python's ``bool``) before the import.
    2. Importing MXNet sets the OpenMP thread count to 1, which silently halves PyTorch's
       speed in the same process, whichever is imported first. We set it back.
    """
    patch_numpy_for_mxnet()
    threads = sys.modules["torch"].get_num_threads() if "torch" in sys.modules else cpu_threads()
    try:
        import mxnet
    except ImportError as exc:
        raise FrameworkMissing(
            f"MXNet cannot be imported: {exc}. Run `make lab` or `make doctor` from the course folder."
        ) from exc
    _restore_openmp_threads(threads)
    return mxnet


def patch_numpy_for_mxnet() -> None:
    """Restore ``numpy.bool`` (an alias of Python's ``bool``) that MXNet 1.9.1 needs.

    Called by :func:`import_mxnet`, and by the Horovod build (scripts/setup_env.py),
    which imports MXNet to find its headers.
    """
    import numpy as np

    if "bool" not in np.__dict__:  # hasattr() would trigger NumPy's FutureWarning about np.bool
        np.bool = bool


def _restore_openmp_threads(threads: int) -> None:
    import ctypes

    try:
        ctypes.CDLL("libgomp.so.1").omp_set_num_threads(threads)
    except (OSError, AttributeError):
        pass  # no GNU OpenMP runtime loaded (e.g. macOS): nothing to restore
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)


# --------------------------------------------------------------------------- Keras
def use_keras_backend(name: str) -> None:
    """Select Keras 3's backend (``"tensorflow"`` or ``"torch"``) before ``import keras``.

    Keras fixes its backend when first imported; switching later needs a fresh kernel.
    """
    if name not in ("tensorflow", "torch", "jax"):
        raise ValueError(f"Keras backend must be 'tensorflow', 'torch' or 'jax', got {name!r}")
    keras = sys.modules.get("keras")
    if keras is not None and keras.backend.backend() != name:
        raise RuntimeError(
            f"Keras is already imported with the {keras.backend.backend()!r} backend. "
            "Restart the kernel (Kernel > Restart) and call use_keras_backend() before `import keras`."
        )
    os.environ["KERAS_BACKEND"] = name
