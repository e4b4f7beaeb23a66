"""dlcourse.config: profiles, seeding, the MXNet import fix, and no framework at import."""

from __future__ import annotations

import os
import random
import subprocess
import sys

import numpy as np
import pytest

from dlcourse import config


def test_package_import_loads_no_framework():
    code = ("import sys, dlcourse, dlcourse.config, dlcourse.data, dlcourse.cli, dlcourse.plot, dlcourse.models, "
            "dlcourse.fsutil, dlcourse.grading, dlcourse.grader, dlcourse.dist, dlcourse.checks.lab01;"
            "bad = [m for m in ('torch', 'tensorflow', 'keras', 'mxnet', 'horovod') if m in sys.modules];"
            "print(bad); sys.exit(bool(bad))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.parametrize("value, expected", [("fast", "fast"), ("FULL", "full"), (" full ", "full")])
def test_profile_from_environment(monkeypatch, value, expected):
    monkeypatch.setenv("DLCOURSE_PROFILE", value)
    assert config.profile() == expected
    assert config.choose(fast=1, full=2) == (1 if expected == "fast" else 2)


def test_profile_default_follows_gpu(monkeypatch):
    monkeypatch.delenv("DLCOURSE_PROFILE", raising=False)
    monkeypatch.setattr(config, "gpu_visible", lambda: True)
    assert config.profile() == "full"
    monkeypatch.setattr(config, "gpu_visible", lambda: False)
    assert config.profile() == "fast"


def test_override_beats_environment(monkeypatch):
    monkeypatch.setenv("DLCOURSE_PROFILE", "fast")
    assert config.profile("full") == "full"
    assert config.choose(fast="a", full="b", override="full") == "b"


def test_unknown_profile_says_what_is_allowed(monkeypatch):
    monkeypatch.setenv("DLCOURSE_PROFILE", "turbo")
    with pytest.raises(ValueError, match=r"Unknown profile 'turbo'\. Use 'fast' .* or 'full'"):
        config.profile()


def test_cuda_visible_devices_empty_hides_gpu(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert config.gpu_visible() is False


def test_seed_everything_repeats_python_numpy_and_torch():
    torch = pytest.importorskip("torch")
    assert config.seed_everything(7)[:3] == ["python", "numpy", "torch"]
    first = (random.random(), np.random.rand(), torch.rand(1).item())
    config.seed_everything(7)
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == first
    assert os.environ["PYTHONHASHSEED"] == "7"


@pytest.mark.parametrize("bad", [-1, 1.5, "0", True])
def test_seed_must_be_a_non_negative_int(bad):
    with pytest.raises(ValueError, match="non-negative int"):
        config.seed_everything(bad)


def test_import_mxnet_keeps_torch_threads():
    """MXNet's import sets OpenMP threads to 1; import_mxnet() must undo that for PyTorch."""
    code = ("import torch; torch.set_num_threads(2); from dlcourse.config import import_mxnet;"
            "mx = import_mxnet(); import numpy as np;"
            "a = mx.nd.array(np.ones((2, 2))); assert float((a * 2).sum().asscalar()) == 8.0;"
            "print(torch.get_num_threads())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "2"


def test_missing_framework_says_how_to_fix():
    with pytest.raises(config.FrameworkMissing, match=r"cannot be imported.*make lab.*make doctor"):
        config.require("a_framework_that_is_not_installed")


def test_keras_backend_validation():
    with pytest.raises(ValueError, match="'tensorflow', 'torch' or 'jax'"):
        config.use_keras_backend("theano")


def test_device_rejects_unknown_framework():
    with pytest.raises(ValueError, match="'torch', 'tensorflow' or 'mxnet'"):
        config.device("caffe")
