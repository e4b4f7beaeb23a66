#!/usr/bin/env python3
"""Run the course's benchmarks, print their tables, save the results and write BENCHMARKS.md.

    make bench                                   # the default five, about 20 minutes on a quiet 2-core AVX2 machine
    make bench BENCH_ARGS="--quick"              # tiny sizes: checks the plumbing in ~2 minutes
    python benchmarks/run.py --only tta,conv     # some benchmarks (course, tta, conv, scaling, install, seeds)
    python benchmarks/run.py --only seeds        # the training notebooks' targets on seeds 0-2 (~15 minutes)
    python benchmarks/run.py --cold-install      # also time a set-up from nothing (~5 minutes more)
    python benchmarks/run.py --markdown-only     # rewrite BENCHMARKS.md from the saved results

Each benchmark runs in its own process with every thread pool pinned to ``--threads``
(1 by default), one after the other, so they never compete for cores. Results go to
``reports/bench/results.json`` (``results-quick.json`` with ``--quick``) and a dated
copy; BENCHMARKS.md is written from that file (with ``--quick``, to
``reports/bench/BENCHMARKS.quick.md`` unless ``--markdown`` says otherwise).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import common, report  # noqa: E402

BENCHMARKS = {   # key: (module, timeout in s)
    "course": ("benchmarks.course_time", 60),
    "tta": ("benchmarks.time_to_accuracy", 2400),
    "conv": ("benchmarks.conv_peak", 600),
    "scaling": ("benchmarks.scaling", 3600),
    "install": ("benchmarks.install", 2400),
    "seeds": ("benchmarks.seeds", 3600),
}
DEFAULT = ("course", "tta", "conv", "scaling", "install")   # "seeds" (about 15 minutes) only when named


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny sizes, one run each: the plumbing, not the figures")
    p.add_argument("--only", default="", help=f"comma-separated subset of {','.join(BENCHMARKS)}")
    p.add_argument("--threads", type=int, default=1, help="threads for every benchmark and framework (default 1)")
    p.add_argument("--seeds", type=int, default=3, help="runs per configuration in the time-to-accuracy race")
    p.add_argument("--repeats", type=int, default=5,
                   help="rounds (a 1- and a 2-process run) per rung of the scaling ladder")
    p.add_argument("--cold-install", action="store_true", help="also time a set-up from nothing (~5 min)")
    p.add_argument("--results", help="results file (default reports/bench/results[-quick].json)")
    p.add_argument("--markdown", help="where to write the report (default BENCHMARKS.md; "
                                      "reports/bench/BENCHMARKS.quick.md with --quick)")
    p.add_argument("--markdown-only", action="store_true", help="only rewrite the report from the results file")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    results_path = Path(args.results) if args.results else \
        common.RESULTS_DIR / ("results-quick.json" if args.quick else "results.json")
    markdown_path = Path(args.markdown) if args.markdown else (
        common.RESULTS_DIR / "BENCHMARKS.quick.md" if args.quick else common.ROOT / "BENCHMARKS.md")
    if args.markdown_only:
        results = json.loads(results_path.read_text())
        markdown_path.write_text(report.markdown(results))
        print(f"wrote {markdown_path.name} from {results_path.name}")
        return 0

    only = [k.strip() for k in args.only.split(",") if k.strip()] or list(DEFAULT)
    unknown = sorted(set(only) - set(BENCHMARKS))
    if unknown:
        sys.exit(f"unknown benchmark(s) {unknown}; choose from {list(BENCHMARKS)}")
    # Keep earlier figures of the benchmarks not run now, and the last measured cold install.
    previous = json.loads(results_path.read_text()) if results_path.is_file() else {}
    results = {"quick": args.quick, "threads": args.threads, "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
               "machine": common.machine_info(), "load_before": common.load_average(),
               "benchmarks": dict(previous.get("benchmarks", {})) if previous.get("quick") == args.quick else {},
               "command": "python benchmarks/run.py " + " ".join(argv if argv is not None else sys.argv[1:])}
    start = time.time()
    for key in only:
        module, timeout = BENCHMARKS[key]
        extra = ["--quick"] if args.quick else []
        if key == "tta":
            extra += ["--seeds", args.seeds]
        if key == "scaling":
            extra += ["--repeats", args.repeats]
        if key == "install" and args.cold_install:
            extra += ["--cold-install"]
        print(f"== {key}: {module} {' '.join(map(str, extra))} (threads {args.threads})", flush=True)
        t0 = time.time()
        result = common.run_json(module, extra, threads=args.threads, timeout=timeout)
        result["wall_s"] = round(time.time() - t0, 1)
        result["measured"] = time.strftime("%Y-%m-%d %H:%M")
        if key == "install" and "cold" not in result:
            old = results["benchmarks"].get("install", {}).get("cold") or \
                previous.get("benchmarks", {}).get("install", {}).get("cold")
            if old:
                result["cold"] = {**old, "carried_over": True}
        results["benchmarks"][key] = result
        print(report.text_section(key, result), flush=True)
    results["total_s"] = round(time.time() - start, 1)
    results["load_after"] = common.load_average()
    results["finished"] = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    common.write_json(results_path, results)
    common.write_json(results_path.with_name(f"{results_path.stem}-{time.strftime('%Y%m%d-%H%M%S')}.json"), results)
    markdown_path.parent.mkdir(parents=True, exist_ok=True)
    markdown_path.write_text(report.markdown(results))
    shown = markdown_path.relative_to(common.ROOT) if markdown_path.is_relative_to(common.ROOT) else markdown_path
    print(f"\nall benchmarks took {results['total_s']:.0f} s; results in "
          f"{results_path.relative_to(common.ROOT) if results_path.is_relative_to(common.ROOT) else results_path}, "
          f"report in {shown}")
    return 1 if any("error" in r for r in results["benchmarks"].values()) else 0


if __name__ == "__main__":
    sys.exit(main())
