"""`python -m dlcourse doctor | data`: tables, exit codes and messages."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from dlcourse import cli

ROOT = Path(__file__).resolve().parent.parent


def run_cli(*args, env=None, timeout=300):
    return subprocess.run([sys.executable, "-m", "dlcourse", *args], capture_output=True, text=True,
                          cwd=ROOT, env={**os.environ, **(env or {})}, timeout=timeout)


@pytest.mark.slow
def test_doctor_passes_in_the_course_environment():
    out = run_cli("doctor")
    assert out.returncode == 0, out.stdout + out.stderr
    table = out.stdout
    for row in ("TensorFlow", "Keras (tensorflow backend)", "Keras (torch backend)", "PyTorch", "MXNet",
                "Horovod", "data: mnist", "profile", "device"):
        assert row in table
    horovod = next(line for line in table.splitlines() if line.startswith("Horovod"))
    assert "frameworks: torch, tensorflow, mxnet" in horovod and "gloo" in horovod
    assert "FAIL" not in table


def test_doctor_reports_a_missing_framework_instead_of_crashing(monkeypatch):
    monkeypatch.setitem(cli.PROBES, "PyTorch", ("import a_framework_that_is_not_installed", {}))
    monkeypatch.setattr(cli, "PROBES", {"PyTorch": cli.PROBES["PyTorch"]})
    (check,) = cli.framework_checks()
    assert not check.ok
    assert "No module named 'a_framework_that_is_not_installed'" in check.detail
    assert "make setup" in check.fix


def test_doctor_exit_code_and_fix_lines(monkeypatch, capsys):
    monkeypatch.setattr(cli, "doctor_checks", lambda: [cli.Check("PyTorch", False, "not importable", "run make setup"),
                                                       cli.Check("numpy", True, "1.26.4")])
    assert cli.doctor() == 1
    captured = capsys.readouterr()
    assert "PyTorch" in captured.out and "FAIL" in captured.out
    assert "- PyTorch: not importable -> fix: run make setup" in captured.err


def test_doctor_flags_damaged_and_offline_missing_data(tmp_path, monkeypatch):
    monkeypatch.setenv("DLCOURSE_DATA", str(tmp_path))
    monkeypatch.setenv("DLCOURSE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("DLCOURSE_OFFLINE", "1")
    (tmp_path / "mnist").mkdir()
    (tmp_path / "mnist" / "t10k-labels-idx1-ubyte.gz").write_bytes(b"junk")
    checks = {c.name: c for c in cli.data_checks()}
    assert not checks["data: mnist"].ok and "4 bytes but mnist expects 4,542" in checks["data: mnist"].detail
    assert not checks["data: photos"].ok and "DLCOURSE_OFFLINE=1" in checks["data: photos"].detail


def test_data_list_and_verify():
    listing = run_cli("data", "list", "mnist")
    assert "MNIST handwritten digits" in listing.stdout and "train-images-idx3-ubyte.gz" in listing.stdout
    verify = run_cli("data", "verify")
    if os.environ.get("DLCOURSE_DATA"):
        assert verify.returncode == 0, verify.stdout + verify.stderr
        assert "all files OK" in verify.stdout


def test_data_verify_fails_on_missing(tmp_path):
    out = run_cli("data", "verify", "photos", env={"DLCOURSE_DATA": str(tmp_path), "DLCOURSE_CACHE": str(tmp_path)})
    assert out.returncode == 1 and "missing" in out.stdout


def test_data_fetch_offline_is_a_clear_error(tmp_path):
    out = run_cli("data", "fetch", "photos", env={"DLCOURSE_DATA": "", "DLCOURSE_CACHE": str(tmp_path),
                                                  "DLCOURSE_OFFLINE": "1"})
    assert out.returncode == 2
    assert out.stderr.startswith("error: photos: images/coffee.png was not found")
    assert "Traceback" not in out.stderr


def test_unknown_dataset_is_a_clear_error():
    out = run_cli("data", "fetch", "imagenet")
    assert out.returncode == 2 and "Unknown dataset 'imagenet'" in out.stderr and "Traceback" not in out.stderr


def test_horovod_status_says_whether_it_is_building_failed_or_never_built(tmp_path, monkeypatch):
    import fcntl
    import importlib.util

    from dlcourse import dist

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)   # Horovod not installed
    monkeypatch.setattr(sys, "prefix", str(tmp_path))
    ready, message = dist.horovod_status()
    assert not ready and "make horovod" in message and "not installed" in message
    (tmp_path / "horovod-build.log").write_text("[ 42%] Building CXX object ...\n")
    with open(tmp_path / ".horovod-build.lock", "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)          # as the background build does
        ready, message = dist.horovod_status()
        assert not ready and "being built in the background" in message and "horovod-build.log" in message
    ready, message = dist.horovod_status()        # the lock is free again, the log is there: it stopped
    assert not ready and "stopped before the end" in message
    with pytest.raises(dist.HorovodRunError, match="make horovod"):
        dist.launch("any_script.py")
