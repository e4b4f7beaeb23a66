"""pytest set-up shared by the unit tests and the notebook runs (nbval).

- Sets the environment the notebook kernels must start with (TensorFlow's stderr
  noise off, downloads off: tests never touch the network).
- Decides what may share the machine. `make test` runs two phases: first every test not
  marked ``serial``, several at a time (pytest-xdist; all cells of one notebook stay
  together in one kernel on one worker, longest first), then the ``serial`` ones, one at a
  time. SERIAL below lists what needs the whole machine, and why.
- Prints a per-notebook (and per-lab) wall-time table at the end of every run, with the
  CPU it ran on, and saves it to reports/notebook-times.json. Under `make test` the second
  phase's table covers both phases.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections import defaultdict
from pathlib import Path

import pytest

# Before any kernel starts (setting these inside a notebook is too late).
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
os.environ["DLCOURSE_OFFLINE"] = "1"  # data comes from DLCOURSE_DATA or the cache, never the network
os.environ.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")

ROOT = Path(__file__).resolve().parent
REPORTS = ROOT / "reports"
REPORT = REPORTS / "notebook-times.json"
PHASE = os.environ.get("DLCOURSE_TEST_PHASE", "")   # set by `make test`: "parallel", then "serial"

# Fast-profile budgets in seconds on 2 cores of the slower CPU (AVX2, COURSE.md); 60 s unless listed.
BUDGETS = {"06": 120, "08": 90, "09": 120, "10": 360, "11": 180, "13": 180,
           "14": 120, "15": 120, "16": 120, "17": 120, "18": 120}
DEFAULT_BUDGET = 60

# What cannot share the machine, by node id (a regular expression), and why.
SERIAL = {
    r"^notebooks/07_": "times convolutions and measures this machine's peak: another job would distort it",
    r"^notebooks/12_": "times matrix multiplies and memory bandwidth in every precision",
    r"^notebooks/13_": "runs horovodrun -np 2 (one process per core) and measures its scaling",
    r"^tests/test_dist\.py": "runs horovodrun -np 2 with timeouts",
    r"^tests/test_horovod\.py": "runs horovodrun -np 2",
    r"^tests/test_grading\.py::.*lab07": "grading lab07 runs horovodrun -np 2",
    r"^tests/test_redteam\.py": "hostile submissions (a spinner, process and memory bombs) graded two at a time "
                                "under time and memory limits",
    r"^tests/test_browser\.py": "starts JupyterLab and Chromium, with time limits on page loads",
    r"^tests/test_slurm\.py": "starts a one-node Slurm cluster whose jobs run two training ranks",
}

_times: dict[str, float] = defaultdict(float)
_cells: dict[str, int] = defaultdict(int)
_failed: set[str] = set()
_started = time.time()


def pytest_configure(config):
    config.addinivalue_line("markers", "serial: needs the whole machine; `make test` runs it alone, after "
                                       "the parallel phase (conftest.SERIAL says why)")


@pytest.hookimpl(tryfirst=True)   # before -m deselects by mark
def pytest_collection_modifyitems(config, items):
    for item in items:
        if any(re.search(pattern, item.nodeid) for pattern in SERIAL):
            item.add_marker(pytest.mark.serial)
    items.sort(key=_run_order)   # stable: a notebook's cells keep their order


def _run_order(item) -> tuple[int, int]:
    """Longest first, so that two at a time finish together: notebook 08 (it trains the network that
    09-12 and labs 04-05 load), then notebooks by budget, then slow tests, then the quick ones."""
    path = item.nodeid.split("::", 1)[0]
    if path.endswith(".ipynb"):
        return (0, 0) if Path(path).name.startswith("08_") else (1, -budget(path))
    return (2, 0) if item.get_closest_marker("slow") else (3, 0)


@pytest.hookimpl(optionalhook=True)   # the serial phase runs without pytest-xdist
def pytest_xdist_make_scheduler(config, log):
    """pytest-xdist's work units: a notebook is one (its cells share a kernel and run in order on
    one worker); every other test is its own. Units are handed out in _run_order."""
    from xdist.scheduler import LoadScopeScheduling

    class NotebookScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            path = nodeid.split("::", 1)[0]
            return path if path.endswith(".ipynb") else nodeid

    config.option.loadscopereorder = False
    return NotebookScheduling(config, log)


def budget(notebook: str) -> int:
    name = Path(notebook).name
    return BUDGETS.get(name[:2], DEFAULT_BUDGET) if name[:2].isdigit() else DEFAULT_BUDGET


def _timed_unit(nodeid: str) -> str | None:
    """The row a test's time counts towards: its notebook, or the lab a grading test grades."""
    path = nodeid.split("::", 1)[0]
    if path.endswith(".ipynb"):
        return path
    lab = re.search(r"\[(lab\d\d)\]$", nodeid)
    if path == "tests/test_grading.py" and lab:
        return f"grading {lab.group(1)} (solution + student version)"
    return None


def pytest_runtest_logreport(report):
    unit = _timed_unit(report.nodeid)
    if unit is None:
        return
    _times[unit] += report.duration  # setup (kernel start), call and teardown
    if report.when == "call":
        _cells[unit] += 1
    if report.failed:
        _failed.add(unit)


def machine_line() -> str:
    from dlcourse import hardware

    try:
        load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    except OSError:
        load = "?"
    return f"{hardware.cpu_summary()}; {os.cpu_count()} cores; load average {load}"


def _phase_rows(status_of) -> list[dict]:
    return [{"unit": unit, "cells": _cells[unit], "seconds": round(secs, 2),
             "budget_s": budget(unit) if unit.endswith(".ipynb") else None, "status": status_of(unit, secs),
             "phase": PHASE or "all"} for unit, secs in sorted(_times.items())]


def _status(unit: str, secs: float) -> str:
    if unit in _failed:
        return "FAILED"
    return "over budget" if unit.endswith(".ipynb") and secs > budget(unit) else "ok"


def _write_atomic(path: Path, payload: dict) -> None:
    path.parent.mkdir(exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(payload, indent=2) + "\n")
    tmp.replace(path)


def pytest_terminal_summary(terminalreporter, config):
    if hasattr(config, "workerinput"):   # an xdist worker: the controller reports
        return
    wall = time.time() - _started
    workers = getattr(config.option, "numprocesses", None) or 1
    phase = {"phase": PHASE or "all", "wall_s": round(wall, 1), "workers": workers, "machine": machine_line(),
             "rows": _phase_rows(_status)}
    phases = [phase]
    if PHASE:
        _write_atomic(REPORTS / f"test-phase-{PHASE}.json", phase)
        if PHASE == "serial":   # the second phase of `make test` reports both
            earlier = REPORTS / "test-phase-parallel.json"
            if earlier.exists():
                phases.insert(0, json.loads(earlier.read_text()))
    rows = [row for p in phases for row in p["rows"]]
    if not rows:
        return
    tr = terminalreporter
    width = max(len(r["unit"]) for r in rows)
    tr.section("wall time per notebook and lab (fast-profile budget on 2 cores of the AVX2 machine)")
    tr.write_line(f"machine: {phase['machine']}")
    tr.write_line(f"{'notebook or lab':<{width}}  cells  seconds  budget  phase     status")
    for r in sorted(rows, key=lambda r: (not r["unit"].endswith(".ipynb"), r["unit"])):
        b = "" if r["budget_s"] is None else r["budget_s"]
        tr.write_line(f"{r['unit']:<{width}}  {r['cells']:>5}  {r['seconds']:>7.1f}  {b:>6}  {r['phase']:<8}  "
                      f"{r['status']}")
    notebook_total = sum(r["seconds"] for r in rows if r["unit"].endswith(".ipynb"))
    lab_total = sum(r["seconds"] for r in rows if not r["unit"].endswith(".ipynb"))
    tr.write_line(f"sum of own times: notebooks {notebook_total:.1f} s, lab gradings {lab_total:.1f} s")
    tr.write_line("wall time of the run: " + ", ".join(
        f"{p['phase']} phase {p['wall_s']:.0f} s ({p['workers']} at a time)" for p in phases)
        + f"; total {sum(p['wall_s'] for p in phases):.0f} s")
    payload = {
        "profile": os.environ.get("DLCOURSE_PROFILE", ""), "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "machine": phase["machine"], "total_s": round(notebook_total, 2),
        "wall_s": {p["phase"]: p["wall_s"] for p in phases}, "workers": {p["phase"]: p["workers"] for p in phases},
        "notebooks": [{"notebook": r["unit"], "cells": r["cells"], "seconds": r["seconds"],
                       "budget_s": r["budget_s"], "status": r["status"], "phase": r["phase"]}
                      for r in rows if r["unit"].endswith(".ipynb")],
        "labs": [{"lab": r["unit"], "seconds": r["seconds"], "status": r["status"], "phase": r["phase"]}
                 for r in rows if not r["unit"].endswith(".ipynb")],
    }
    _write_atomic(REPORT, payload)
    saved = [REPORT]
    if len(phases) == 2:   # a whole `make test`: kept apart by mode for `make bench` (serial against parallel)
        mode = "parallel" if phases[0]["workers"] > 1 else "serial"
        saved.append(REPORTS / f"course-time-{mode}.json")
        _write_atomic(saved[-1], payload)
    tr.write_line(f"(saved to {', '.join(str(path.relative_to(ROOT)) for path in saved)})")
