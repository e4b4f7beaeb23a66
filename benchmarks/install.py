"""Install: warm and cold set-up time, and the size of the environment.

    python -m benchmarks.install --json OUT [--quick] [--cold-install]

Warm: ``scripts/setup_env.py`` when ``.venv`` is already up to date (what every
``make lab`` / ``make test`` pays), timed several times. Size: ``du`` of ``.venv`` and of
the cached Horovod wheels. Cold (only with ``--cold-install``, about 15 minutes on 2 cores
and network access for the PyPI packages): a new environment in a temporary folder with
``scripts/setup_env.py --venv DIR --horovod wait``, with empty pip and Horovod-wheel caches
(temporary folders too), so Horovod is built; the phase times set-up prints split it into
"JupyterLab can start" (pip and the course package) and "Horovod ready". Everything is
deleted afterwards.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
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


def timed_setup(venv: Path, timeout: float, args=(), env=None) -> tuple[float, int, str]:
    start = time.perf_counter()
    proc = subprocess.run([base_python(), str(SETUP), "--venv", str(venv), *args], cwd=common.ROOT,
                          capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})})
    tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-5:])
    return time.perf_counter() - start, proc.returncode, tail


def phase_times(text: str) -> dict[str, float]:
    """``{"pip install": 212.0, ...}`` from set-up's last line ("set-up took pip install 212.0 s, ...")."""
    m = re.search(r"set-up took (.*?); total", text)
    return {name: float(t) for name, t in re.findall(r"([a-zA-Z ]+?) (\d+(?:\.\d+)?) s(?:, |$)", m.group(1))} if m else {}


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
        with tempfile.TemporaryDirectory() as tmp:
            caches = {"PIP_CACHE_DIR": f"{tmp}/pip-cache", "DLCOURSE_WHEEL_CACHE": f"{tmp}/wheels"}
            seconds, code, tail = timed_setup(Path(tmp) / "venv", 3600, ["--horovod", "wait"], caches)
            phases = phase_times(tail)
            result["cold"] = {"seconds": round(seconds, 1), "ok": code == 0, "phases": phases,
                              "lab_ready_s": round(seconds - phases.get("Horovod", 0.0), 1),
                              "horovod_s": phases.get("Horovod"),
                              "venv_mib": du_mib(Path(tmp) / "venv"), "measured": time.strftime("%Y-%m-%d"),
                              **({} if code == 0 else {"error": tail})}
    common.write_json(args.json, result)


if __name__ == "__main__":
    main()
