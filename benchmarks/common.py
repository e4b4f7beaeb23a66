"""Helpers shared by the benchmarks: statistics, tables, the machine, subprocesses, results.

Nothing here imports a deep-learning framework, so the orchestrator (benchmarks/run.py)
stays light and every framework is imported only in the subprocess that measures it.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

from dlcourse.fsutil import atomic_write

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = ROOT / "reports" / "bench"
RESULTS = RESULTS_DIR / "results.json"

# Every variable a numerical library reads to size its thread pool.
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS",
               "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS")


# --------------------------------------------------------------------------- statistics
def spread(values) -> dict:
    """Median, minimum, maximum and count of ``values`` (Nones dropped); all None when empty.

    >>> spread([3.0, 1.0, 2.0])
    {'median': 2.0, 'min': 1.0, 'max': 3.0, 'n': 3}
    """
    vals = [float(v) for v in values if v is not None]
    if not vals:
        return {"median": None, "min": None, "max": None, "n": 0}
    return {"median": statistics.median(vals), "min": min(vals), "max": max(vals), "n": len(vals)}


def fmt_num(x, digits: int = 3) -> str:
    """A number with ``digits`` significant figures (no exponent for everyday sizes); '-' for None."""
    if x is None:
        return "-"
    x = float(x)
    if x == 0:
        return "0"
    if abs(x) >= 10 ** digits:
        return f"{x:,.0f}"
    return f"{x:.{digits}g}" if abs(x) >= 1e-3 else f"{x:.2e}"


def fmt_spread(s: dict | None, unit: str = "", digits: int = 3) -> str:
    """``'12.3 s (11.9-13.0, n=3)'``; the range is left out for a single value; '-' when empty."""
    if not s or s.get("median") is None:
        return "-"
    u = unit if unit in ("", "%") else f" {unit}"
    text = f"{fmt_num(s['median'], digits)}{u}"
    if s.get("n", 1) > 1:
        text += f" ({fmt_num(s['min'], digits)}-{fmt_num(s['max'], digits)}, n={s['n']})"
    return text


def ratio(a, b):
    """``a / b``, or None when either is missing or ``b`` is zero."""
    if a is None or b is None or b == 0:
        return None
    return a / b


# --------------------------------------------------------------------------- tables
def table_text(headers: list[str], rows: list[list]) -> str:
    """A plain-text table with aligned columns (for the terminal)."""
    cells = [[str(h) for h in headers]] + [["-" if c is None else str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def table_markdown(headers: list[str], rows: list[list]) -> str:
    """A GitHub-flavoured Markdown table; '|' inside a cell is escaped."""
    def cell(c):
        return "-" if c is None else str(c).replace("|", "\\|")
    out = ["| " + " | ".join(cell(h) for h in headers) + " |",
           "|" + "|".join("---" for _ in headers) + "|"]
    out += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return "\n".join(out)


# --------------------------------------------------------------------------- the machine
def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def cpu_model() -> str:
    for line in _read("/proc/cpuinfo").splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def ram_gib() -> float | None:
    for line in _read("/proc/meminfo").splitlines():
        if line.startswith("MemTotal:"):
            return round(int(line.split()[1]) / 2 ** 20, 1)
    return None


def version(dist_name: str) -> str | None:
    try:
        return metadata.version(dist_name)
    except metadata.PackageNotFoundError:
        return None


def machine_info() -> dict:
    """CPU, cores, RAM, OS and the versions that matter; read without importing any framework."""
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    versions = {name: version(dist) for name, dist in (
        ("torch", "torch"), ("tensorflow", "tensorflow-cpu"), ("keras", "keras"), ("horovod", "horovod"),
        ("numpy", "numpy"))}
    if versions["tensorflow"] is None:
        versions["tensorflow"] = version("tensorflow")
    return {"cpu": cpu_model(), "cores": os.cpu_count(), "usable_cores": usable, "ram_gib": ram_gib(),
            "os": f"{platform.system()} {platform.release()}", "python": platform.python_version(),
            "versions": versions, "gpu": Path("/proc/driver/nvidia/gpus").is_dir()}


def load_average() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


# --------------------------------------------------------------------------- subprocesses
def thread_env(threads: int, extra: dict | None = None) -> dict:
    """The current environment with every thread pool pinned to ``threads``."""
    env = dict(os.environ)
    env.update({k: str(threads) for k in THREAD_VARS})
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    env.update(extra or {})
    return env


def run_json(module: str, args=(), threads: int = 1, timeout: float = 900, env: dict | None = None) -> dict:
    """Run ``python -m {module} {args} --json FILE`` with pinned threads; return the JSON it wrote.

    On failure or timeout returns ``{"error": ...}`` with the last lines it printed, so one
    broken benchmark never stops the others.
    """
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        cmd = [sys.executable, "-m", module, *map(str, args), "--json", str(out), "--threads", str(threads)]
        start = time.time()
        try:
            proc = subprocess.run(cmd, cwd=ROOT, env=thread_env(threads, env), capture_output=True, text=True,
                                  timeout=timeout)
        except subprocess.TimeoutExpired:
            return {"error": f"{module} did not finish within {timeout:.0f} s"}
        if proc.returncode != 0 or not out.exists():
            tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-12:])
            return {"error": f"{module} failed (exit code {proc.returncode}):\n{tail}"}
        result = json.loads(out.read_text())
        result.setdefault("wall_s", round(time.time() - start, 2))
        return result


def pin_threads(threads: int) -> None:
    """In a benchmark subprocess: pin PyTorch (when imported) to ``threads``."""
    if "torch" in sys.modules:
        torch = sys.modules["torch"]
        torch.set_num_threads(threads)
        try:
            torch.set_num_interop_threads(threads)
        except RuntimeError:  # already set, or parallel work has started
            pass


def write_json(path: str | Path, record: dict) -> None:
    """Write ``record`` atomically (a temporary file, then a rename)."""
    atomic_write(path, json.dumps(record, indent=1) + "\n")


def add_common_args(parser) -> None:
    parser.add_argument("--quick", action="store_true", help="tiny sizes: checks the plumbing in seconds")
    parser.add_argument("--threads", type=int, default=1, help="threads for every library (default 1)")
    parser.add_argument("--json", required=True, help="file to write the result to")
