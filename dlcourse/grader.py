"""The batch grader: ``python -m dlcourse grade LAB SUBMISSIONS_DIR --out grades.csv`` (labs/README.md).

For each submission the grader

1. reads the notebook (a file that is not a notebook scores 0, with the reason);
2. builds the notebook to run from the **official solution**: every cell is the
   official one except the exercise cells, which are the student's; check cells come
   back with their hidden tests, so deleting or editing them changes nothing;
3. refuses to run an exercise cell that reaches for the grader (``check``,
   ``dlcourse.grading``, ``get_ipython``, ``exec``, ``os.environ``, ``sys.modules``, ...): that
   exercise scores 0 and the CSV says why;
4. runs it in its own Jupyter kernel and process, in an empty working folder, with a
   per-cell and a total time limit. Before the first exercise cell an audit hook is
   installed in the kernel (it cannot be removed) that refuses writes outside the
   working folder, reads of the solutions, submissions and grader folders, and starting
   processes or sending signals. Check records are signed with a key the student's code
   never sees in the environment; unsigned or misplaced records are ignored;
5. writes ``student,<exercise ids>,total,max,errors`` (atomically) and one feedback
   file per student.

This stops mistakes and the usual tricks, but it is not a security boundary: code
written to attack this grader from inside the same Python process can still win. For
untrusted submissions run the grader in a container, as a user that can read nothing
else and has no network (see labs/README.md).
"""

from __future__ import annotations

import ast
import csv
import importlib
import io
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from dlcourse import grading
from dlcourse.fsutil import atomic_write

FEEDBACK_CHARS = 2000  # of each cell's output kept in the feedback file

# Names an exercise has no business touching: the grader, the kernel, the interpreter.
FORBIDDEN = {
    "check", "hidden_test", "grading", "grader", "get_ipython", "__import__", "__builtins__", "builtins",
    "importlib", "ctypes", "gc", "inspect", "IPython", "ipykernel", "subprocess", "environ",
    "_getframe", "addaudithook", "_exit", "abort", "kill", "killpg", "system", "popen", "fork",
    "__globals__", "__code__", "__closure__", "__subclasses__", "__dict__", "__loader__", "__spec__", "__getattribute__",
    "f_back", "f_globals", "f_locals", "tb_frame", "exit", "getenv", "environb",
}
# Built-in functions that are forbidden when called by name (``torch.compile`` is fine).
FORBIDDEN_BUILTINS = {"exec", "eval", "compile", "globals", "locals", "vars", "setattr", "delattr", "quit"}


def scan(source: str) -> list[str]:
    """The forbidden names a cell's code uses (empty when it may run)."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []  # it will fail on its own, harmlessly, with the student's syntax error
    found = set()
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.Name):
            names = [node.id] if node.id in FORBIDDEN | FORBIDDEN_BUILTINS else []
        elif isinstance(node, ast.Attribute):
            names = [node.attr]
            if node.attr == "modules" and isinstance(node.value, ast.Name) and node.value.id == "sys":
                found.add("sys.modules")  # (net.modules() is fine)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names = [node.name]
        elif isinstance(node, ast.alias):
            names = node.name.split(".") + ([node.asname] if node.asname else [])
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = node.module.split(".")
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "getattr"
              and not (len(node.args) > 1 and isinstance(node.args[1], ast.Constant))):
            found.add("getattr")  # with a computed name it can reach anything
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and grading.RECORD_MIME in node.value:
            found.add(grading.RECORD_MIME)
        found.update(n for n in names if n in FORBIDDEN or n in FORBIDDEN_BUILTINS and isinstance(node, ast.Name))
    return sorted(found)


# --------------------------------------------------------------------------- the kernel-side guard
_DENIED_EVENTS = {
    "os.system", "subprocess.Popen", "os.exec", "os.posix_spawn", "os.spawn", "os.fork",
    "os.forkpty", "pty.spawn", "os.kill", "os.killpg", "signal.pthread_kill", "sys.addaudithook",
}


GUARD_ENV = "DLCOURSE_GUARD"
_guard_config: str | None = None  # JSON of the active guard, handed on to Horovod workers


def guard_env() -> dict:
    """Environment that makes a course worker script guard itself like this kernel ({} when unguarded)."""
    return {GUARD_ENV: _guard_config} if _guard_config else {}


def _trusted_launch(args, env) -> bool:
    """The one process a guarded kernel may start: ``horovodrun`` on a course worker that guards itself."""
    from dlcourse.dist import GUARDED_WORKERS

    args = [os.fsdecode(a) for a in (args if isinstance(args, (list, tuple)) else [args])]
    return (isinstance(env, dict) and env.get(GUARD_ENV) == _guard_config
            and args[:4] == [sys.executable, "-m", "dlcourse.dist", "horovodrun"]
            and any(a in GUARDED_WORKERS for a in args[4:]))


def install_guard(sandbox: str, denied: list[str]) -> None:
    """Called in the graded kernel before the first exercise cell, and by course worker scripts
    started from it (see :func:`guard_env`); cannot be undone."""
    global _guard_config
    _guard_config = json.dumps({"sandbox": sandbox, "denied": denied})
    sandbox = os.path.realpath(sandbox)
    denied = [os.path.realpath(d) for d in denied]
    write_flags = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC

    def inside(path: str, root: str) -> bool:
        return path == root or path.startswith(root + os.sep)

    def hook(event, args):
        if event == "open":
            path, mode, flags = (tuple(args) + (None, None, None))[:3]
            if path is None or isinstance(path, int):
                return
            real = os.path.realpath(os.fsdecode(path))
            if inside(real, sandbox) or real == os.devnull:
                return
            writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or bool((flags or 0) & write_flags)
            if writing:
                raise PermissionError(f"graded labs may only write inside their working folder, not {path}")
            if any(inside(real, d) for d in denied) or re.fullmatch(r"/proc/[^/]+/(environ|mem|fd/.*)", real):
                raise PermissionError(f"graded labs may not read {path}")
        elif event == "subprocess.Popen" and _trusted_launch(args[1], args[3]):
            return
        elif event in _DENIED_EVENTS:
            raise PermissionError(f"graded labs may not use {event}")

    sys.addaudithook(hook)


# --------------------------------------------------------------------------- assembling the graded notebook
@dataclass
class Plan:
    nb: object                                   # the notebook to run
    check_cells: dict[int, str]                  # cell index -> exercise id
    exercise_cells: dict[int, str]               # cell index -> exercise id
    refused: dict[str, str] = field(default_factory=dict)  # exercise id -> reason


def assemble(solution_nb, submitted_nb, key_var: str, sandbox: str, denied: list[str]) -> Plan:
    import copy

    import nbformat

    student = grading.student_version(solution_nb)
    submitted = {}
    for cell in submitted_nb.cells:
        exercise = grading.cell_tag(cell, "exercise")
        if exercise and cell.get("cell_type") == "code":
            submitted[exercise] = cell.get("source", "")
    name = f"_dlcourse_{secrets.token_hex(8)}"
    bootstrap = nbformat.v4.new_code_cell(
        "import os as _os\n"
        "from dlcourse import grading as _grading, grader as _grader\n"
        f"{name} = _grading._Reporter(_os.environ.pop({key_var!r}).encode(), raise_on_fail=False)\n"
        f"_grader.install_guard({sandbox!r}, {denied!r})\n"
        "del _os, _grading, _grader\n"
    )
    cells, check_cells, exercise_cells, refused, booted = [], {}, {}, {}, False
    for index, cell in enumerate(solution_nb.cells):
        cell = copy.deepcopy(cell)
        exercise, checked = grading.cell_tag(cell, "exercise"), grading.cell_tag(cell, "check")
        if exercise:
            if not booted:
                cells.append(bootstrap)
                booted = True
            source = submitted.get(exercise)
            if source is None:
                refused[exercise] = "exercise cell missing from the submission (was its tag removed?)"
                source = student.cells[index].source
            elif bad := scan(source):
                refused[exercise] = f"not run: the exercise uses {', '.join(bad)} (the grader is off limits)"
                source = student.cells[index].source
            cell.source = source
            exercise_cells[len(cells)] = exercise
        elif checked:
            cell.source = f"check, hidden_test = {name}.check, {name}.hidden_test\n" + cell.source
            check_cells[len(cells)] = checked
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
        cells.append(cell)
    nb = nbformat.v4.new_notebook(cells=cells, metadata=solution_nb.metadata)
    return Plan(nb, check_cells, exercise_cells, refused)


# --------------------------------------------------------------------------- one submission, in a worker process
def _outputs_text(cell) -> str:
    parts = []
    for out in cell.get("outputs", []):
        if out.get("output_type") == "stream":
            parts.append(out.get("text", ""))
        elif out.get("output_type") == "error":
            parts.append(f"{out.get('ename')}: {out.get('evalue')}")
        elif "data" in out:
            parts.append(str(out["data"].get("text/plain", "")) + "\n")
    text = "".join(parts)
    return text if len(text) <= FEEDBACK_CHARS else text[:FEEDBACK_CHARS] + f"\n... ({len(text)} characters, cut)"


def _records(cell) -> list[dict]:
    return [out["data"][grading.RECORD_MIME] for out in cell.get("outputs", [])
            if out.get("output_type") in ("display_data", "execute_result")
            and grading.RECORD_MIME in out.get("data", {})]


def _error(cell, cell_timeout: float) -> str | None:
    for out in cell.get("outputs", []):
        if out.get("output_type") == "error":
            if out.get("ename") in ("KeyboardInterrupt", "TimeoutError"):
                return f"TimeoutError: the cell ran longer than {cell_timeout:g} s and was stopped"
            return f"{out.get('ename')}: {out.get('evalue')}"[:300]
    return None


_KERNEL_ENV = {"PATH", "LANG", "LANGUAGE", "TZ", "VIRTUAL_ENV", "PYTHONPATH", "SYSTEMROOT"}
_KERNEL_ENV_PREFIXES = ("DLCOURSE_", "LC_", "OMP_", "MKL_", "OPENBLAS_", "KMP_", "TF_", "KERAS_", "CUDA_", "NCCL_",
                        "HOROVOD_", "MALLOC_", "JPY_")


def _worker(job_path: str) -> None:
    """Run one graded notebook (``python -m dlcourse.grader JOB``); writes result.json beside JOB."""
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import DeadKernelError

    job = json.loads(Path(job_path).read_text())
    nb = nbformat.reads(job["notebook"], as_version=4)
    # The kernel sees only what the course needs from the grader's environment, not its secrets.
    env = {k: v for k, v in os.environ.items() if k in _KERNEL_ENV or k.startswith(_KERNEL_ENV_PREFIXES)}
    from dlcourse import data

    env.update({job["key_var"]: job["key"], "HOME": job["sandbox"], "TMPDIR": job["sandbox"],
                "MPLCONFIGDIR": job["sandbox"], "PYTHONDONTWRITEBYTECODE": "1",
                "DLCOURSE_CACHE": str(data.cache_dir())})   # HOME moves; the data cache stays where it is
    client = NotebookClient(nb, timeout=job["cell_timeout"], allow_errors=True, interrupt_on_timeout=True,
                            error_on_timeout={"ename": "TimeoutError",
                                              "evalue": f"the cell ran longer than {job['cell_timeout']} s",
                                              "traceback": []},
                            kernel_name="python3", resources={"metadata": {"path": job["sandbox"]}})
    deadline = time.monotonic() + job["total_timeout"]
    result = {"cells": [], "errors": []}
    try:
        with client.setup_kernel(env=env):
            for index, cell in enumerate(nb.cells):
                if time.monotonic() > deadline:
                    result["errors"].append(f"total time limit of {job['total_timeout']} s reached at cell {index}")
                    break
                try:
                    client.execute_cell(cell, index)
                except DeadKernelError:
                    result["errors"].append(f"the kernel died in cell {index} (os._exit, a crash or out of memory)")
                    break
                finally:
                    if cell.cell_type == "code":
                        result["cells"].append({"index": index, "records": _records(cell),
                                                "text": _outputs_text(cell),
                                                "error": _error(cell, job["cell_timeout"])})
                        cell.outputs = []  # keep the worker's memory small
    except Exception as exc:  # kernel failed to start, etc.
        result["errors"].append(f"grading could not run the notebook: {type(exc).__name__}: {exc}"[:300])
    atomic_write(Path(job_path).with_name("result.json"), json.dumps(result))


# --------------------------------------------------------------------------- the batch
@dataclass
class Row:
    student: str
    scores: dict[str, int]
    total: int
    max: int
    errors: list[str]
    feedback: str


def find_submissions(folder: Path) -> list[tuple[str, Path]]:
    """(student, notebook) pairs: ``folder/<student>.ipynb`` or ``folder/<student>/<one>.ipynb``."""
    if not folder.is_dir():
        raise grading.GradingError(f"submissions folder {folder} does not exist")
    found = []
    for entry in sorted(folder.iterdir()):
        if entry.is_file() and entry.suffix == ".ipynb":
            found.append((entry.stem, entry))
        elif entry.is_dir() and not entry.name.startswith("."):
            notebooks = sorted(p for p in entry.glob("*.ipynb") if not p.name.startswith("."))
            found.append((entry.name, notebooks[0] if notebooks else entry))
    return found


def _score(plan: Plan, expected: dict[str, dict[str, int]], result: dict, verifier) -> tuple[dict, list[str], list[str]]:
    scores = {exercise: 0 for exercise in expected}
    seen: set[str] = set()
    errors, lines = list(result["errors"]), []
    for cell in result["cells"]:
        exercise = plan.check_cells.get(cell["index"])
        for record in cell["records"]:
            sig = record.get("sig", "")
            body = {k: record.get(k) for k in ("id", "ok", "points", "max")}
            if exercise is None or body["id"] not in expected.get(exercise, {}) or body["id"] in seen \
                    or not verifier(body, sig) or body["max"] != expected[exercise][body["id"]]:
                errors.append(f"ignored a check record that the grader did not write ({body['id']})")
                continue
            seen.add(body["id"])
            scores[exercise] += int(body["points"]) if body["ok"] else 0
        if exercise is not None and cell["text"]:
            lines.append(cell["text"].rstrip())
        elif cell["error"]:
            own = plan.exercise_cells.get(cell["index"])
            errors.append(f"{own}: {cell['error']}" if own else f"course cell {cell['index']} failed: {cell['error']}")
            lines.append(f"cell {cell['index']}: {cell['error']}")
    for exercise, checks in expected.items():
        missing = [cid for cid in checks if cid not in seen]
        if missing and exercise not in plan.refused and not result["errors"]:
            errors.append(f"{exercise}: checks did not run ({', '.join(missing)})")
    for exercise, reason in plan.refused.items():
        errors.insert(0, f"{exercise}: {reason}")
    return scores, errors, lines


def grade_one(student: str, path: Path, solution_nb, expected, run_dir: Path, denied: list[str],
              cell_timeout: float, total_timeout: float) -> Row:
    import nbformat

    maximum = sum(sum(c.values()) for c in expected.values())
    zero = {exercise: 0 for exercise in expected}
    try:
        submitted = nbformat.read(path, as_version=4)
    except Exception as exc:
        reason = f"not a readable notebook: {type(exc).__name__}: {str(exc)[:200]}"
        return Row(student, zero, 0, maximum, [reason], reason)
    private = Path(tempfile.mkdtemp(prefix="job-", dir=run_dir / "private"))
    sandbox = Path(tempfile.mkdtemp(prefix="work-", dir=run_dir / "work"))
    key, key_var = secrets.token_hex(32), "DLCOURSE_GRADING_KEY"
    # The whole run folder is off limits (other students' folders, every result file) except,
    # since the guard checks it first, this submission's own sandbox.
    plan = assemble(solution_nb, submitted, key_var, str(sandbox), denied + [str(run_dir)])
    job = private / "job.json"
    atomic_write(job, json.dumps({"notebook": nbformat.writes(plan.nb), "key": key, "key_var": key_var,
                                  "sandbox": str(sandbox), "cell_timeout": cell_timeout,
                                  "total_timeout": total_timeout}))
    log = open(private / "worker.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "dlcourse.grader", str(job)], stdin=subprocess.DEVNULL,
                            stdout=log, stderr=log, start_new_session=True, cwd=str(sandbox))
    try:
        proc.wait(timeout=total_timeout + 60)  # + kernel start-up and shut-down
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        log.close()
    try:
        result = json.loads((private / "result.json").read_text())
    except (OSError, ValueError):
        result = {"cells": [], "errors": [f"the grading worker stopped without a result (time limit {total_timeout} s?)"]}
    reporter = grading._Reporter(key.encode())
    scores, errors, lines = _score(plan, expected, result,
                                   lambda body, sig: bool(sig) and secrets.compare_digest(sig, reporter.sign(body)))
    shutil.rmtree(sandbox, ignore_errors=True)
    shutil.rmtree(private, ignore_errors=True)
    total = sum(scores.values())
    feedback = "\n".join([f"{student}: {total}/{maximum}", *[f"error: {e}" for e in errors], "", *lines])
    return Row(student, scores, total, maximum, errors, feedback)


def grade(lab: str | Path, submissions: str | Path, out: str | Path, *, cell_timeout: float = 300,
          total_timeout: float = 900, jobs: int = 1, progress=True) -> list[Row]:
    """Grade every submission in ``submissions``; write ``out`` (CSV) and ``<out stem>-feedback/``."""
    import nbformat

    solution_path = grading.find_solution(lab)
    solution_nb = nbformat.read(solution_path, as_version=4)
    expected = grading.expected_checks(solution_nb)
    prepare = getattr(importlib.import_module(f"dlcourse.checks.{solution_path.name[:5]}"), "prepare", None)
    if prepare is not None:
        prepare()  # e.g. make sure a model the checks use exists on disk (graded kernels cannot write it)
    subs = find_submissions(Path(submissions))
    out = Path(out)
    run_dir = Path(tempfile.mkdtemp(prefix="dlcourse-grade-"))
    (run_dir / "private").mkdir()
    (run_dir / "work").mkdir()
    denied = [str(grading.SOLUTIONS_DIR), str(Path(submissions).resolve()), str(out.resolve()),
              str(out.resolve().with_name(out.stem + "-feedback"))]
    try:
        from tqdm.auto import tqdm

        with ThreadPoolExecutor(max(1, jobs)) as pool:
            futures = [pool.submit(grade_one, student, path, solution_nb, expected, run_dir, denied,
                                   cell_timeout, total_timeout) for student, path in subs]
            rows = [f.result() for f in tqdm(futures, desc=f"grading {solution_path.stem}", disable=not progress)]
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["student", *expected, "total", "max", "errors"])
    for row in rows:
        writer.writerow([row.student, *[row.scores[e] for e in expected], row.total, row.max, "; ".join(row.errors)])
    atomic_write(out, buffer.getvalue())
    for row in rows:
        atomic_write(out.with_name(out.stem + "-feedback") / f"{row.student}.txt", row.feedback + "\n")
    return rows


if __name__ == "__main__":
    _worker(sys.argv[1])
