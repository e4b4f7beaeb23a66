"""scripts/setup_env.py: pins, the Horovod patch, and the no-op warm set-up."""

from __future__ import annotations

import importlib.util
import os
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


# --------------------------------------------------------------------------- Horovod after JupyterLab
def fake_env(tmp_path: Path) -> Path:
    """A stand-in environment folder; returns the path of its python (never run)."""
    py = tmp_path / "venv" / "bin" / "python"
    py.parent.mkdir(parents=True)
    return py


def test_background_mode_installs_a_cached_wheel_at_once(tmp_path, monkeypatch):
    py = fake_env(tmp_path)
    monkeypatch.setenv("DLCOURSE_WHEEL_CACHE", str(tmp_path / "wheels"))
    wheel_dir = setup_env.horovod_wheel_dir(False)
    wheel_dir.mkdir(parents=True)
    (wheel_dir / "horovod-0.28.1-cp311-cp311-linux_x86_64.whl").write_bytes(b"wheel")
    installed = []
    monkeypatch.setattr(setup_env, "run", lambda cmd, **kw: installed.append(cmd))
    monkeypatch.setattr(setup_env.subprocess, "Popen", lambda *a, **k: pytest.fail("no background build needed"))
    assert setup_env.ensure_horovod(py, False, "background", False) == "installed"
    assert "--no-deps" in installed[0] and setup_env.horovod_installed(py, False)
    assert setup_env.ensure_horovod(py, False, "background", False) == "already installed"


def test_background_mode_starts_one_build_and_returns(tmp_path, monkeypatch, capsys):
    py = fake_env(tmp_path)
    monkeypatch.setenv("DLCOURSE_WHEEL_CACHE", str(tmp_path / "empty-cache"))
    started = []
    monkeypatch.setattr(setup_env.subprocess, "Popen", lambda args, **kw: started.append(args))
    assert setup_env.ensure_horovod(py, False, "background", False) == "build started in the background"
    assert started and "--horovod-build-worker" in started[0]
    assert "tail -f" in capsys.readouterr().out and not setup_env.horovod_installed(py, False)
    with setup_env.horovod_lock(py) as lock:    # a build is running: nothing new is started
        setup_env.fcntl.flock(lock, setup_env.fcntl.LOCK_EX)
        assert setup_env.ensure_horovod(py, False, "background", False) == "building in the background"
    assert len(started) == 1


def test_wait_mode_waits_for_the_running_build_instead_of_building_again(tmp_path, monkeypatch):
    py = fake_env(tmp_path)
    monkeypatch.setenv("DLCOURSE_WHEEL_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setattr(setup_env.time, "sleep", lambda s: None)
    monkeypatch.setattr(setup_env, "install_horovod", lambda *a, **k: pytest.fail("must not build twice"))
    # Another process holds the lock and finishes the install: simulated by a child process.
    marker = setup_env.horovod_marker(py)
    code = (f"import fcntl, time; f = open({str(py.parent.parent / '.horovod-build.lock')!r}, 'a+'); "
            f"fcntl.flock(f, fcntl.LOCK_EX); print('locked', flush=True); time.sleep(1.5); "
            f"open({str(marker)!r}, 'w').write({setup_env.horovod_wheel_dir(False).name!r} + '\\n')")
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "locked"
    assert setup_env.ensure_horovod(py, False, "wait", False) == "installed"
    child.wait(timeout=10)


def test_build_output_goes_to_the_log_and_progress_to_the_console(tmp_path, capsys):
    script = "for p in (3, 9, 15, 40, 41, 100): print(f'[{p:3d}%] Building CXX object x{p}.o')"
    log_path = tmp_path / "build.log"
    with open(log_path, "w") as log:
        setup_env.run_with_progress([sys.executable, "-c", script], dict(os.environ), log)
    shown = [line for line in capsys.readouterr().out.splitlines() if "Horovod build" in line]
    assert [line.split()[-1] for line in shown] == ["3%", "15%", "40%", "100%"]
    assert log_path.read_text().count(".o\n") == 6   # every line, not only those shown


def test_phase_summary_names_every_phase():
    phases = setup_env.Phases()
    phases.times = [("pip install", 200.04), ("Horovod", 0.5)]
    assert phases.summary() == "set-up took pip install 200.0 s, Horovod 0.5 s; total 200.5 s"
