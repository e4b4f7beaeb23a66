"""Install: warm and cold set-up time, and the size of the environment.

    python -m benchmarks.install --json OUT [--quick] [--cold-install]

Warm: ``scripts/setup_env.py`` when ``.venv`` is already up to date (what every
``make lab`` / ``make test`` pays), timed several times. Size: ``du`` of ``.venv`` and of
the cached Horovod wheels. Cold (only with ``--cold-install``, about 15 minutes on 2 cores
and network access for the PyPI packages): exactly what a new user does, ``git clone``
of this repository into a temporary folder and ``make lab`` there, with empty pip, npm and
Horovod-wheel caches (temporary folders too). It records when JupyterLab first answers
``/lab`` with HTTP 200 (the student can start) and when the Horovod build that
``make lab`` starts in the background has installed Horovod (notebook 13 and lab07 can
run), and the phase times set-up prints. Everything is stopped and deleted afterwards.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import common  # noqa: E402

SETUP = common.ROOT / "scripts" / "setup_env.py"
WHEELS = Path.home() / ".cache" / "dlcourse" / "wheels"


def du_mib(path: Path) -> float | None:
    """Disk use of ``path`` in MiB (``du -sk``), or None when it does not exist."""
    if not path.exists():
        return None
    out = subprocess.run(["du", "-sk", str(path)], capture_output=True, text=True).stdout.split()
    return round(int(out[0]) / 1024, 1) if out else None


def base_python() -> str:
    """The interpreter `make setup` uses (python3 on PATH), not the venv's own."""
    return shutil.which("python3") or sys.executable


def timed_setup(venv: Path, timeout: float) -> tuple[float, int, str]:
    start = time.perf_counter()
    proc = subprocess.run([base_python(), str(SETUP), "--venv", str(venv)], cwd=common.ROOT,
                          capture_output=True, text=True, timeout=timeout)
    tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-5:])
    return time.perf_counter() - start, proc.returncode, tail


def phase_times(text: str) -> dict[str, float]:
    """``{"pip install": 212.0, ...}`` from set-up's last line ("set-up took pip install 212.0 s, ...")."""
    m = re.search(r"set-up took (.*?); total", text)
    return {name: float(t) for name, t in re.findall(r"([a-zA-Z ]+?) (\d+(?:\.\d+)?) s(?:, |$)", m.group(1))} if m else {}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def http_status(url: str) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return None


def cold_make_lab(tmp: Path, timeout: float) -> dict:
    """``make lab`` in a fresh clone with empty caches: seconds until /lab answers 200, and until Horovod is in."""
    clone, log_path = tmp / "course", tmp / "make-lab.log"
    subprocess.run(["git", "clone", "--quiet", str(common.ROOT), str(clone)], check=True)
    port = free_port()
    env = {**os.environ, "PIP_CACHE_DIR": str(tmp / "pip-cache"), "XDG_CACHE_HOME": str(tmp / "cache"),
           "DLCOURSE_WHEEL_CACHE": str(tmp / "cache" / "wheels")}
    for var in common.THREAD_VARS:      # a student's make lab uses every core
        env.pop(var, None)
    lab_args = f"--no-browser --port={port} --ServerApp.token= --ServerApp.password="
    marker = clone / ".venv" / ".dlcourse-horovod"
    out = {"measured": time.strftime("%Y-%m-%d"), "ok": False}
    start = time.perf_counter()
    with open(log_path, "w") as log:
        proc = subprocess.Popen(["make", "lab", f"PYTHON={base_python()}", f"LAB_ARGS={lab_args}"], cwd=clone,
                                env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        while time.perf_counter() - start < timeout and proc.poll() is None:
            if http_status(f"http://127.0.0.1:{port}/lab") == 200:
                out["lab_ready_s"] = round(time.perf_counter() - start, 1)
                break
            time.sleep(2)
        while "lab_ready_s" in out and time.perf_counter() - start < timeout and not marker.exists():
            time.sleep(5)
        if marker.exists():
            out["horovod_ready_s"] = round(time.perf_counter() - start, 1)
            out["horovod_s"] = round(out["horovod_ready_s"] - out["lab_ready_s"], 1)
        out["ok"] = "lab_ready_s" in out and "horovod_ready_s" in out
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
    text = log_path.read_text(errors="replace")
    out["phases"] = phase_times(text)
    out["venv_mib"] = du_mib(clone / ".venv")
    if not out["ok"]:
        out["error"] = "\n".join(text.strip().splitlines()[-5:]) or f"make lab exited with {proc.returncode}"
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    common.add_common_args(p)
    p.add_argument("--cold-install", action="store_true", help="also build a new environment (~5 min)")
    args = p.parse_args(argv)
    venv = common.ROOT / ".venv"
    result = {"venv_mib": du_mib(venv), "wheel_cache_mib": du_mib(WHEELS)}
    warm = []
    for _ in range(2 if args.quick else 5):
        seconds, code, tail = timed_setup(venv, 600)
        if code != 0:
            result["warm_error"] = f"exit code {code}: {tail}"
            break
        warm.append(seconds)
    result["warm_s"] = common.spread(warm)
    if args.cold_install:
        with tempfile.TemporaryDirectory(prefix="dlcourse-cold-") as tmp:
            result["cold"] = cold_make_lab(Path(tmp), timeout=3600)
    common.write_json(args.json, result)


if __name__ == "__main__":
    main()
