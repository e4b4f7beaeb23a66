"""pytest set-up shared by the unit tests and the notebook runs (nbval).

- Sets the environment the notebook kernels must start with (TensorFlow's stderr
  noise off, downloads off: tests never touch the network).
- Prints a per-notebook wall-time table at the end of every run and saves it to
  reports/notebook-times.json.
"""

from __future__ import annotations

import json
import os
import time
from collections import defaultdict
from pathlib import Path

# Before any kernel starts (setting these inside a notebook is too late).
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
os.environ["DLCOURSE_OFFLINE"] = "1"  # data comes from DLCOURSE_DATA or the cache, never the network
os.environ.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")

ROOT = Path(__file__).resolve().parent
REPORT = ROOT / "reports" / "notebook-times.json"

# Fast-profile budgets in seconds on 2 CPU cores (COURSE.md); 60 s unless listed.
BUDGETS = {"06": 120, "08": 90, "09": 120, "10": 240, "11": 180, "13": 180}
DEFAULT_BUDGET = 60

_times: dict[str, float] = defaultdict(float)
_cells: dict[str, int] = defaultdict(int)
_failed: set[str] = set()


def budget(notebook: str) -> int:
    name = Path(notebook).name
    return BUDGETS.get(name[:2], DEFAULT_BUDGET) if name[:2].isdigit() else DEFAULT_BUDGET


def pytest_runtest_logreport(report):
    path = report.nodeid.split("::", 1)[0]
    if not path.endswith(".ipynb"):
        return
    _times[path] += report.duration  # setup (kernel start), call and teardown
    if report.when == "call":
        _cells[path] += 1
    if report.failed:
        _failed.add(path)


def pytest_terminal_summary(terminalreporter):
    if not _times:
        return
    width = max(len(p) for p in _times)
    tr = terminalreporter
    tr.section("per-notebook wall time (fast-profile budget on 2 cores)")
    tr.write_line(f"{'notebook':<{width}}  cells  seconds  budget  status")
    rows = []
    for path in sorted(_times):
        secs, b = _times[path], budget(path)
        status = "FAILED" if path in _failed else ("over budget" if secs > b else "ok")
        tr.write_line(f"{path:<{width}}  {_cells[path]:>5}  {secs:>7.1f}  {b:>6}  {status}")
        rows.append({"notebook": path, "cells": _cells[path], "seconds": round(secs, 2),
                     "budget_s": b, "status": status})
    total = sum(_times.values())
    tr.write_line(f"{'total':<{width}}  {sum(_cells.values()):>5}  {total:>7.1f}")
    REPORT.parent.mkdir(exist_ok=True)
    tmp = REPORT.with_suffix(".tmp")
    tmp.write_text(json.dumps({"profile": os.environ.get("DLCOURSE_PROFILE", ""), "finished": time.strftime(
        "%Y-%m-%dT%H:%M:%S"), "total_s": round(total, 2), "notebooks": rows}, indent=2) + "\n")
    tmp.replace(REPORT)
    tr.write_line(f"(saved to {REPORT.relative_to(ROOT)})")
