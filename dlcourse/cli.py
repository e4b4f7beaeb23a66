"""``python -m dlcourse``: the course's command line (introduced in notebooks/00).

    python -m dlcourse doctor            is everything the course needs here and working?
    python -m dlcourse data list         datasets, their files and where they were found
    python -m dlcourse data verify       check every file found against its SHA-256
    python -m dlcourse data fetch NAME   download a dataset into the cache (checked)
    python -m dlcourse labs build [--check]
                                         generate labs/ from solutions/ (--check: exit 1 if stale)
    python -m dlcourse labs export-nbgrader DIR
                                         the labs with nbgrader metadata, for nbgrader courses
    python -m dlcourse grade LAB SUBMISSIONS --out grades.csv [--jobs N] [--timeout S]
                                         grade a folder of submitted notebooks, each in a
                                         sandbox (INSTRUCTORS.md)
    python -m dlcourse release OUT       write the student edition: the course without
                                         solutions/, hidden tests or git history

Each framework is checked in its own subprocess, so one broken install cannot crash
the doctor, and each Keras backend gets the fresh interpreter it needs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from dlcourse import config, data

FIX_INSTALL = "run `make setup` (or `make lab`) in the course folder to install the pinned environment"


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""


# Each probe prints one JSON object on its last line of stdout.
PROBES = {
    "TensorFlow": (
        "import json, tensorflow as tf;"
        "print(json.dumps({'version': tf.__version__, 'gpus': len(tf.config.list_physical_devices('GPU'))}))",
        {},
    ),
    "Keras (tensorflow backend)": (
        "import json, keras; print(json.dumps({'version': keras.__version__, 'backend': keras.backend.backend()}))",
        {"KERAS_BACKEND": "tensorflow"},
    ),
    "Keras (torch backend)": (
        "import json, keras; print(json.dumps({'version': keras.__version__, 'backend': keras.backend.backend()}))",
        {"KERAS_BACKEND": "torch"},
    ),
    "PyTorch": (
        "import json, torch; print(json.dumps({'version': torch.__version__, 'gpus': torch.cuda.device_count(),"
        "'threads': torch.get_num_threads()}))",
        {},
    ),
    "MXNet": (
        "import json; from dlcourse.config import import_mxnet; mx = import_mxnet();"
        "print(json.dumps({'version': mx.__version__, 'gpus': mx.context.num_gpus()}))",
        {},
    ),
    "Horovod": (
        "import json, importlib; from dlcourse.config import import_mxnet; import_mxnet(); import horovod\n"
        "out = {'version': horovod.__version__, 'frameworks': [], 'controllers': set(), 'ops': set()}\n"
        "for fw in ('torch', 'tensorflow', 'mxnet'):\n"
        "    try: m = importlib.import_module('horovod.' + fw)\n"
        "    except Exception as e: out.setdefault('errors', []).append(f'{fw}: {e}'); continue\n"
        "    out['frameworks'].append(fw)\n"
        "    out['controllers'].update(c for c in ('gloo', 'mpi') if getattr(m, c + '_built')())\n"
        "    out['ops'].update(o for o in ('nccl',) if getattr(m, o + '_built')())\n"
        "out['controllers'] = sorted(out['controllers']); out['ops'] = sorted(out['ops'])\n"
        "print(json.dumps(out))",
        {},
    ),
}


def _probe(name: str, timeout: float = 120) -> tuple[str, dict | str]:
    code, env = PROBES[name]
    try:
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout,
                              env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **env})
    except subprocess.TimeoutExpired:
        return name, f"import took longer than {timeout:.0f} s"
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        err = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
        return name, (err[-1] if err else f"exit code {proc.returncode}")
    return name, json.loads(lines[-1])


def framework_checks() -> list[Check]:
    with ThreadPoolExecutor(max_workers=config.cpu_threads()) as pool:
        results = dict(pool.map(_probe, PROBES))
    checks = []
    for name, res in results.items():
        if isinstance(res, str) and name == "Horovod":
            from dlcourse import dist

            ready, message = dist.horovod_status()
            checks.append(Check(name, False, f"not importable: {res}" if ready else message, "`make horovod`"))
            continue
        if isinstance(res, str):
            checks.append(Check(name, False, f"not importable: {res}", FIX_INSTALL))
            continue
        detail = res["version"]
        if "backend" in res:
            detail += f", backend {res['backend']}"
        if "gpus" in res:
            detail += f", {res['gpus']} GPU(s)"
        if "threads" in res:
            detail += f", {res['threads']} CPU threads"
        if name == "Horovod":
            detail += f", frameworks: {', '.join(res['frameworks'])}; controllers: {', '.join(res['controllers'])}"
            if res["ops"]:
                detail += f"; GPU ops: {', '.join(res['ops'])}"
            missing = [fw for fw in ("torch", "tensorflow", "mxnet") if fw not in res["frameworks"]]
            if missing or "gloo" not in res["controllers"]:
                why = "; ".join(res.get("errors", [])) or "built without them"
                checks.append(Check(name, False, f"{detail}; missing {', '.join(missing) or 'gloo'} ({why})",
                                    "rebuild Horovod: `make setup SETUP_ARGS=--rebuild-horovod`"))
                continue
        checks.append(Check(name, True, detail))
    return checks


def package_checks() -> list[Check]:
    from importlib.metadata import PackageNotFoundError, version

    checks = []
    for dist in ("numpy", "jupyterlab", "ipywidgets", "matplotlib", "nbval", "pooch"):
        try:
            checks.append(Check(dist, True, version(dist)))
        except PackageNotFoundError:
            checks.append(Check(dist, False, "not installed", FIX_INSTALL))
    return checks


def data_checks() -> list[Check]:
    try:
        names = list(data.manifest())
    except data.DataError as exc:
        return [Check("data manifest", False, str(exc))]
    checks = []
    for name in names:
        try:
            rows = data.status(name)
        except data.DataError as exc:  # e.g. DLCOURSE_DATA points nowhere
            checks.append(Check(f"data: {name}", False, str(exc), "fix DLCOURSE_DATA or unset it"))
            continue
        states = [state for _, state, _ in rows]
        if all(s == "ok" for s in states):
            where = {data.describe_location(w) for _, _, w in rows}
            checks.append(Check(f"data: {name}", True, f"{len(rows)} file(s), SHA-256 OK, in {', '.join(sorted(where))}"))
        elif "damaged" in states:
            bad = next(w for _, s, w in rows if s == "damaged")
            checks.append(Check(f"data: {name}", False, bad))
        else:
            missing = sum(s == "missing" for s in states)
            msg = f"{missing} of {len(rows)} file(s) not downloaded yet"
            if data.offline():
                checks.append(Check(f"data: {name}", False, msg + " and DLCOURSE_OFFLINE=1",
                                    f"set DLCOURSE_DATA, or run `python -m dlcourse data fetch {name}` online"))
            else:
                checks.append(Check(f"data: {name}", True, msg + " (downloaded and checked on first use)"))
    return checks


def environment_checks() -> list[Check]:
    gpu = config.gpu_visible()
    try:
        prof = config.profile()
        checks = [Check("profile", True, f"{prof} (DLCOURSE_PROFILE={os.environ.get('DLCOURSE_PROFILE', '') or 'unset'})")]
    except ValueError as exc:
        checks = [Check("profile", False, str(exc), "set DLCOURSE_PROFILE to fast or full")]
    checks.append(Check("python", sys.version_info[:2] == (3, 11), platform.python_version(),
                        "the pins are tested on Python 3.11; create .venv with python3.11"))
    checks.append(Check("device", True, f"{'NVIDIA GPU visible' if gpu else 'CPU only'}, {config.cpu_threads()} CPU threads"))
    return checks


def doctor_checks() -> list[Check]:
    """Every check the doctor makes, in the order it prints them."""
    return environment_checks() + package_checks() + framework_checks() + data_checks()


def format_table(checks: list[Check]) -> str:
    width = max(len(c.name) for c in checks)
    lines = [f"{'component':<{width}}  status  details", f"{'-' * width}  ------  -------"]
    lines += [f"{c.name:<{width}}  {'OK' if c.ok else 'FAIL':<6}  {c.detail}" for c in checks]
    return "\n".join(lines)


def doctor(argv=None) -> int:
    checks = doctor_checks()
    print(format_table(checks))
    problems = [c for c in checks if not c.ok]
    if problems:
        print(f"\n{len(problems)} problem(s):", file=sys.stderr)
        for c in problems:
            print(f"- {c.name}: {c.detail}" + (f" -> fix: {c.fix}" if c.fix else ""), file=sys.stderr)
        return 1
    print("\nEverything the course needs is here.")
    return 0


# --------------------------------------------------------------------------- data
def data_command(args) -> int:
    entries = data.manifest()
    names = [args.name] if args.name else list(entries)
    for name in names:
        if name not in entries:
            raise data.DataError(f"Unknown dataset {name!r}. Known datasets: {', '.join(entries)}.")
    if args.action == "fetch":
        for name in names:
            for rel, path in data.fetch(name).items():
                print(f"{name}: {rel} -> {path} (SHA-256 OK)")
        return 0
    bad = 0
    for name in names:
        entry = entries[name]
        if args.action == "list":
            print(f"{name}: {entry['title']} [{entry['license']}]")
        for spec, state, where in data.status(name):
            bad += state != "ok" if args.action == "verify" else state == "damaged"
            print(f"  {state:<8} {spec.path:<45} {spec.size:>11,} B  {where}")
    if args.action == "verify":
        print("all files OK" if not bad else f"{bad} file(s) missing or damaged")
    return 1 if bad else 0


def labs_command(args) -> int:
    from dlcourse import grading
    from dlcourse.models import display_path

    if args.action == "export-nbgrader":
        if not args.dir:
            print("error: give the folder to write to, e.g. `labs export-nbgrader nbgrader/source`", file=sys.stderr)
            return 2
        for path in grading.export_nbgrader(args.dir):
            print(f"wrote {display_path(path)}")
        return 0
    stale = grading.build_labs(check_only=args.check)
    for path in stale:
        print(f"{'stale' if args.check else 'wrote'}: {display_path(path)}")
    if args.check and stale:
        print("labs/ is out of date with solutions/: run `python -m dlcourse labs build`", file=sys.stderr)
        return 1
    if not stale:
        print(f"labs/ is up to date ({len(grading.lab_pairs())} labs)")
    return 0


def grade_command(args) -> int:
    from dlcourse import grader

    rows = grader.grade(args.lab, args.submissions, args.out, cell_timeout=args.cell_timeout,
                        total_timeout=args.timeout, jobs=args.jobs, unsafe_no_sandbox=args.unsafe_no_sandbox,
                        memory_gb=args.memory)
    width = max([len(r.student) for r in rows] + [7])
    for row in rows:
        note = f"  ({len(row.errors)} problem{'s' * (len(row.errors) != 1)})" if row.errors else ""
        print(f"{row.student:<{width}}  {row.total:>3}/{row.max}{note}")
    print(f"wrote {args.out} and per-student feedback in {Path(args.out).stem}-feedback/")
    return 0


def release_command(args) -> int:
    from dlcourse import grading

    written = grading.release(args.out)
    print(f"wrote the student edition ({len(written)} files) to {args.out}: no solutions/, no hidden tests "
          "(checked file by file), no git history")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dlcourse", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("doctor", help="check the environment, frameworks and data")
    p = sub.add_parser("data", help="list, verify or fetch datasets")
    p.add_argument("action", choices=["list", "verify", "fetch"])
    p.add_argument("name", nargs="?", help="dataset name (default: all)")
    p = sub.add_parser("labs", help="generate the student labs from solutions/")
    p.add_argument("action", choices=["build", "export-nbgrader"])
    p.add_argument("dir", nargs="?", help="export-nbgrader: the folder to write (nbgrader's source/)")
    p.add_argument("--check", action="store_true", help="only check; exit 1 when labs/ is stale")
    p = sub.add_parser("grade", help="grade a folder of submissions into a CSV")
    p.add_argument("lab", help="lab01, or the path of the lab or solution notebook")
    p.add_argument("submissions", help="folder of <student>.ipynb files or <student>/ folders")
    p.add_argument("--out", required=True, help="CSV to write; feedback goes to <name>-feedback/ beside it")
    p.add_argument("--timeout", type=float, default=900, help="seconds allowed per submission (default 900)")
    p.add_argument("--cell-timeout", type=float, default=300, help="seconds allowed per cell (default 300)")
    p.add_argument("--jobs", type=int, default=1, help="submissions graded at once (default 1)")
    p.add_argument("--memory", type=float, default=8.0,
                   help="GB of memory one submission's processes may use together (default 8)")
    p.add_argument("--unsafe-no-sandbox", action="store_true",
                   help="run submissions without the bubblewrap sandbox: only for code you trust")
    p = sub.add_parser("release", help="write the student edition of the course (no solutions, no hidden tests)")
    p.add_argument("out", help="a new folder outside the course folder")
    args = parser.parse_args(argv)
    from dlcourse.grading import GradingError

    try:
        if args.command == "doctor":
            return doctor()
        if args.command == "labs":
            return labs_command(args)
        if args.command == "grade":
            return grade_command(args)
        if args.command == "release":
            return release_command(args)
        return data_command(args)
    except (data.DataError, GradingError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
