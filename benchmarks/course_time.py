"""Course time: wall time of every notebook and lab in the fast profile, from the last `make test`.

    python -m benchmarks.course_time --json OUT

Reads ``reports/notebook-times.json``, which the root ``conftest.py`` writes at the end of
every pytest run that executed notebooks (kernel start included), and compares each time
with its fast-profile budget and the whole with the course's aim of 15 minutes. Nothing
is executed here: when the report is missing, or covers only some notebooks (a partial
``pytest`` run overwrites it), the table says so; run ``make test`` first for the figures.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import common  # noqa: E402

REPORT = common.ROOT / "reports" / "notebook-times.json"
COURSE_AIM_S = 15 * 60          # COURSE.md: the whole course, notebooks and labs, in 15 minutes (fast profile)


def expected() -> list[str]:
    """Every notebook and lab of the course, as paths relative to the course folder."""
    return [str(p.relative_to(common.ROOT)) for folder in ("notebooks", "labs", "solutions")
            for p in sorted((common.ROOT / folder).glob("*.ipynb"))]


def summarize(report: dict | None, paths: list[str]) -> dict:
    """Rows for every expected path (time, budget, status; 'not in the report' when absent) and totals."""
    if report is None:
        return {"available": False, "rows": [{"notebook": p, "seconds": None, "budget_s": None,
                                              "status": "no report"} for p in paths],
                "total_s": None, "timed": 0, "expected": len(paths), "aim_s": COURSE_AIM_S}
    timed = {row["notebook"]: row for row in report.get("notebooks", [])}
    rows = []
    for path in list(dict.fromkeys([*paths, *timed])):
        row = timed.get(path)
        if row is None:
            # Labs are generated from solutions/: either being timed counts for the lab.
            if path.startswith(("labs/", "solutions/")):
                continue
            rows.append({"notebook": path, "seconds": None, "budget_s": None, "status": "not in the report"})
        else:
            rows.append({"notebook": path, "seconds": row.get("seconds"), "budget_s": row.get("budget_s"),
                         "status": row.get("status"), "cells": row.get("cells")})
    labs = [r for r in rows if r["notebook"].startswith(("labs/", "solutions/"))]
    measured = [r for r in rows if r["seconds"] is not None]
    total = sum(r["seconds"] for r in measured) if measured else None
    met = sum(1 for r in measured if r["status"] == "ok")
    return {"available": True, "finished": report.get("finished"), "profile": report.get("profile") or "fast",
            "rows": rows, "total_s": total, "timed": len(measured), "targets_met": met,
            "expected": len([p for p in paths if p.startswith("notebooks/")]) + (len(labs) if labs else 0),
            "labs_timed": len(labs), "aim_s": COURSE_AIM_S,
            "complete": all(r["seconds"] is not None for r in rows)}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    common.add_common_args(p)
    args = p.parse_args(argv)
    report = json.loads(REPORT.read_text()) if REPORT.is_file() else None
    common.write_json(args.json, summarize(report, expected()))


if __name__ == "__main__":
    main()
