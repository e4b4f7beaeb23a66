"""scripts/setup_env.py: pins, the Horovod patch, and the no-op warm set-up."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("setup_env", ROOT / "scripts" / "setup_env.py")
setup_env = importlib.util.module_from_spec(spec)
spec.loader.exec_module(setup_env)


def fake_horovod(tmp_path: Path) -> Path:
    src = tmp_path / "horovod-0.28.1"
    (src / "horovod" / "torch").mkdir(parents=True)
    (src / "horovod" / "tensorflow").mkdir(parents=True)
    (src / "CMakeLists.txt").write_text("project(horovod)\nset(CMAKE_CXX_STANDARD 14)\n")
    (src / "horovod" / "torch" / "CMakeLists.txt").write_text("if(X)\n    set(CMAKE_CXX_STANDARD 14)\nendif()\n")
    (src / "horovod" / "tensorflow" / "CMakeLists.txt").write_text(
        'list(APPEND TF_SOURCES "${PROJECT_SOURCE_DIR}/horovod/tensorflow/mpi_ops.cc")\n'
        'list(APPEND TF_SOURCES "${PROJECT_SOURCE_DIR}/horovod/tensorflow/xla_mpi_ops.cc")\n')
    return src


def test_patch_horovod_applies_both_fixes(tmp_path):
    src = fake_horovod(tmp_path)
    setup_env.patch_horovod(src)
    assert "CMAKE_CXX_STANDARD 17" in (src / "CMakeLists.txt").read_text()
    assert "CMAKE_CXX_STANDARD 17" in (src / "horovod" / "torch" / "CMakeLists.txt").read_text()
    tf = (src / "horovod" / "tensorflow" / "CMakeLists.txt").read_text()
    assert "xla_mpi_ops.cc" not in tf and "mpi_ops.cc" in tf


def test_patch_horovod_fails_loudly_on_unexpected_source(tmp_path, capsys):
    src = fake_horovod(tmp_path)
    (src / "CMakeLists.txt").write_text("set(CMAKE_CXX_STANDARD 20)\n")
    with pytest.raises(SystemExit):
        setup_env.patch_horovod(src)
    assert "cannot patch Horovod: CMakeLists.txt does not contain" in capsys.readouterr().err


def test_pins_cover_the_stack_and_gpu_variant_swaps_tensorflow():
    pins = setup_env.pins()
    for name in ("numpy", "torch", "tensorflow-cpu", "keras", "mxnet", "horovod", "jupyterlab", "nbval"):
        assert name in pins
    cpu, gpu = setup_env.requirement_lines(False), setup_env.requirement_lines(True)
    assert f"tensorflow-cpu=={pins['tensorflow-cpu']}" in cpu
    assert f"tensorflow[and-cuda]=={pins['tensorflow-cpu']}" in gpu
    assert not any(line.startswith("horovod==") for line in cpu + gpu)  # built separately


def test_horovod_cache_key_follows_framework_pins(monkeypatch):
    base = setup_env.horovod_wheel_dir(False)
    assert base != setup_env.horovod_wheel_dir(True)
    pins = setup_env.pins()
    monkeypatch.setattr(setup_env, "pins", lambda: {**pins, "torch": "9.9.9"})
    assert setup_env.horovod_wheel_dir(False) != base


def test_warm_setup_is_a_no_op():
    venv = Path(sys.prefix)
    if not (venv / ".dlcourse-stamp").exists():
        pytest.skip("not running inside a .venv made by scripts/setup_env.py")
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "setup_env.py"), "--venv", str(venv)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "is up to date" in out.stdout and "pip" not in out.stdout
