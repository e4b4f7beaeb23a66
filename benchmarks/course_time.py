"""Course time: every notebook and lab grading in the fast profile, serial and parallel, from `make test`.

    python -m benchmarks.course_time --json OUT

Nothing is executed here. Every whole `make test` saves its timings (conftest.py) to
``reports/course-time-parallel.json`` (the default: the first phase runs several tests at a
time) or ``reports/course-time-serial.json`` (``make test TEST_WORKERS=0``); each holds the
CPU it ran on, every notebook's and lab grading's own time and the wall time of each phase.
This benchmark puts the two runs side by side, against the budgets and the course's aim
(COURSE.md: the whole `make test` in 30 minutes on 2 cores of the AVX2 machine, 15 with
AVX-512). When a run is missing, the table says which command makes it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import common  # noqa: E402

REPORTS = common.ROOT / "reports"
MODES = {"serial": "make test TEST_WORKERS=0", "parallel": "make test"}
AIM_S = {"AVX2": 30 * 60, "AVX-512": 15 * 60}   # COURSE.md, per kind of CPU


def aim_for(machine: str) -> int:
    """The course's aim for a whole `make test` on the machine described by ``machine`` (conftest's line)."""
    return AIM_S["AVX-512"] if "AVX-512" in machine else AIM_S["AVX2"]


def load_runs(folder: Path = REPORTS) -> dict:
    """``{mode: report}`` for the saved whole runs; a missing run is absent."""
    runs = {}
    for mode in MODES:
        path = folder / f"course-time-{mode}.json"
        if path.is_file():
            runs[mode] = json.loads(path.read_text())
    return runs


def summarize(runs: dict, notebooks: list[str]) -> dict:
    """One row per notebook and lab grading with each mode's seconds, and each mode's totals."""
    rows: dict[str, dict] = {}
    for path in notebooks:
        rows[path] = {"unit": path, "budget_s": None, "seconds": {}, "status": {}}
    modes = {}
    for mode, rep in runs.items():
        for row in rep.get("notebooks", []):
            r = rows.setdefault(row["notebook"], {"unit": row["notebook"], "seconds": {}, "status": {}})
            r["budget_s"] = row.get("budget_s")
            r["seconds"][mode], r["status"][mode] = row["seconds"], row["status"]
        for row in rep.get("labs", []):
            r = rows.setdefault(row["lab"], {"unit": row["lab"], "budget_s": None, "seconds": {}, "status": {}})
            r["seconds"][mode], r["status"][mode] = row["seconds"], row["status"]
        wall = rep.get("wall_s", {})
        modes[mode] = {"machine": rep.get("machine", "?"), "finished": rep.get("finished"),
                       "wall_s": round(sum(wall.values()), 1), "phases": wall, "workers": rep.get("workers", {}),
                       "notebooks_s": round(sum(r["seconds"] for r in rep.get("notebooks", [])), 1),
                       "labs_s": round(sum(r["seconds"] for r in rep.get("labs", [])), 1),
                       "aim_s": aim_for(rep.get("machine", "")),
                       "over_budget": [r["notebook"] for r in rep.get("notebooks", []) if r["status"] != "ok"],
                       "missing": [p for p in notebooks if p not in {r["notebook"] for r in rep.get("notebooks", [])}]}
    return {"available": bool(runs), "modes": modes, "missing_modes": {m: c for m, c in MODES.items() if m not in runs},
            "rows": list(rows.values())}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    common.add_common_args(p)
    args = p.parse_args(argv)
    notebooks = [str(p.relative_to(common.ROOT)) for p in sorted((common.ROOT / "notebooks").glob("*.ipynb"))]
    common.write_json(args.json, summarize(load_runs(), notebooks))


if __name__ == "__main__":
    main()
