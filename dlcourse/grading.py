"""Graded labs: the student's self-check, the lab builder and the batch grader (introduced in labs/lab01).

Students call :func:`check` in a lab's check cells::

    check("lab01.gd_linear", gradient_descent=gradient_descent)

It runs the checks registered for that exercise (plain functions in
``dlcourse/checks/labNN.py``), prints one ``[PASS]`` / ``[FAIL]`` line with a hint,
publishes a machine-readable record (``application/vnd.dlcourse.check+json``: id, ok,
points, max) and raises :class:`CheckFailed` (an ``AssertionError``) on failure.

Instructors write each lab once, in ``solutions/``, with nbgrader's markers:

* exercise cells are tagged ``exercise:<id>``; the answer sits between
  ``### BEGIN SOLUTION`` and ``### END SOLUTION``;
* check cells are tagged ``check:<id>``; tests students must not see sit between
  ``### BEGIN HIDDEN TESTS`` and ``### END HIDDEN TESTS`` inside a
  ``with hidden_test("<id>", points=N):`` block.

``python -m dlcourse labs build`` writes the student versions into ``labs/`` and
``python -m dlcourse grade`` grades a folder of submissions (see :mod:`dlcourse.grader`).
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import hmac
import importlib
import inspect
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

RECORD_MIME = "application/vnd.dlcourse.check+json"
SOLUTION_BEGIN, SOLUTION_END = "### BEGIN SOLUTION", "### END SOLUTION"
HIDDEN_BEGIN, HIDDEN_END = "### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS"
COURSE_DIR = Path(__file__).resolve().parent.parent
SOLUTIONS_DIR = COURSE_DIR / "solutions"
LABS_DIR = COURSE_DIR / "labs"


class GradingError(Exception):
    """A lab, check or notebook the grading tools cannot use; the message says how to fix it."""


class CheckFailed(AssertionError):
    """Raised by :func:`check` when an answer is wrong, so "Run All" stops at a failed check."""


# --------------------------------------------------------------------------- the registry
@dataclass(frozen=True)
class CheckSpec:
    id: str
    points: int
    hint: str
    func: Callable


_REGISTRY: dict[str, CheckSpec] = {}


def register(check_id: str, *, points: int, hint: str):
    """Decorator: make ``func(**answers)`` the check for ``check_id`` worth ``points``.

    A check passes when it returns; it fails by raising ``AssertionError`` with a message
    that says what is wrong in the student's terms (shapes, values, what was expected).
    """
    if not re.fullmatch(r"lab\d\d\.[a-z0-9_]+", check_id):
        raise GradingError(f"check id {check_id!r} must look like 'lab01.some_name'")
    if points <= 0:
        raise GradingError(f"check {check_id!r}: points must be positive, got {points}")

    def decorate(func):
        _REGISTRY[check_id] = CheckSpec(check_id, points, hint, func)
        return func

    return decorate


def lab_of(check_id: str) -> str:
    return check_id.split(".", 1)[0]


def load_checks(lab: str) -> dict[str, CheckSpec]:
    """The registered checks of ``lab`` ("lab01"), importing ``dlcourse.checks.lab01``."""
    try:
        importlib.import_module(f"dlcourse.checks.{lab}")
    except ModuleNotFoundError as exc:
        if exc.name == f"dlcourse.checks.{lab}":
            raise GradingError(f"there are no checks for {lab!r} (no dlcourse/checks/{lab}.py)") from None
        raise
    return {cid: spec for cid, spec in _REGISTRY.items() if lab_of(cid) == lab}


def get_spec(check_id: str) -> CheckSpec:
    checks = load_checks(lab_of(check_id))
    if check_id not in checks:
        known = ", ".join(sorted(checks)) or "none"
        raise GradingError(f"unknown check {check_id!r}; {lab_of(check_id)} has: {known}")
    return checks[check_id]


# --------------------------------------------------------------------------- running one check
@dataclass
class CheckResult:
    id: str
    ok: bool
    points: int
    max: int
    message: str = ""

    def line(self, hint: str = "") -> str:
        tag = "PASS" if self.ok else "FAIL"
        text = f"[{tag}] {self.id} ({self.points}/{self.max})"
        if not self.ok:
            text += f": {self.message}"
            if hint:
                text += f"\n       hint: {hint}"
        return text


def _explain(exc: BaseException) -> str:
    if isinstance(exc, NotImplementedError):
        return f"not done yet ({exc})" if str(exc) else "not done yet"
    if isinstance(exc, AssertionError):
        return str(exc) or "an assertion failed"
    return f"your code raised {type(exc).__name__}: {exc}"


def run_check(check_id: str, **answers) -> CheckResult:
    """Run the check for ``check_id`` on ``answers``; never raises for a wrong answer."""
    spec = get_spec(check_id)
    params = inspect.signature(spec.func).parameters
    missing = [name for name in params if name not in answers]
    extra = [name for name in answers if name not in params]
    if missing or extra:
        raise GradingError(
            f"check({check_id!r}, ...) takes the answers {', '.join(params)}; "
            + (f"missing {', '.join(missing)}" if missing else f"unexpected {', '.join(extra)}")
        )
    try:
        spec.func(**answers)
    except Exception as exc:  # the student's code may raise anything; report it, do not crash
        return CheckResult(check_id, False, 0, spec.points, _explain(exc))
    return CheckResult(check_id, True, spec.points, spec.points)


class _Reporter:
    """Prints a result line and publishes its record; signs records when it holds a key.

    The batch grader creates one with a secret key before any student code runs, and
    accepts only records carrying that key's signature.
    """

    def __init__(self, key: bytes | None = None, raise_on_fail: bool = True):
        self._key = key
        self._raise = raise_on_fail  # the grader records failures and goes on to the hidden tests

    def sign(self, record: dict) -> str:
        payload = json.dumps(record, sort_keys=True).encode()
        return hmac.new(self._key, payload, hashlib.sha256).hexdigest() if self._key else ""

    def publish(self, result: CheckResult, hint: str = "") -> None:
        record = {"id": result.id, "ok": result.ok, "points": result.points, "max": result.max}
        if self._key:
            record = {**record, "sig": self.sign(record)}
        text = result.line(hint)
        try:
            from IPython import get_ipython
            from IPython.display import display
        except ImportError:
            get_ipython = None
        if get_ipython is not None and get_ipython() is not None:
            display({RECORD_MIME: record, "text/plain": text}, raw=True)
        else:
            print(text)

    def check(self, check_id: str, **answers) -> None:
        result = run_check(check_id, **answers)
        self.publish(result, hint=get_spec(check_id).hint)
        if not result.ok and self._raise:
            raise CheckFailed(f"{check_id}: {result.message}")

    @contextlib.contextmanager
    def hidden_test(self, exercise_id: str, *, points: int):
        """Plain asserts inside the block are a hidden test worth ``points`` (solutions only)."""
        check_id = f"{exercise_id}:hidden"
        try:
            yield
        except Exception as exc:
            result = CheckResult(check_id, False, 0, points, _explain(exc))
            self.publish(result)
            if self._raise:
                raise CheckFailed(f"{check_id}: {result.message}") from None
        else:
            self.publish(CheckResult(check_id, True, points, points))


_default = _Reporter()


def check(check_id: str, **answers) -> None:
    """Check an exercise: prints [PASS]/[FAIL] with a hint and raises CheckFailed on failure."""
    _default.check(check_id, **answers)


def hidden_test(exercise_id: str, *, points: int):
    return _default.hidden_test(exercise_id, points=points)


# --------------------------------------------------------------------------- notebooks
def cell_tag(cell, kind: str) -> str | None:
    """The id in a cell's ``kind:<id>`` tag (kind is "exercise" or "check"), or None."""
    for tag in cell.get("metadata", {}).get("tags", []):
        if tag.startswith(kind + ":"):
            return tag.split(":", 1)[1]
    return None


def _strip_block(source: str, begin: str, end: str, replace: Callable[[str], list[str]], where: str) -> str:
    out, inside, indent = [], False, ""
    for number, line in enumerate(source.splitlines(), 1):
        stripped = line.strip()
        if stripped == begin:
            if inside:
                raise GradingError(f"{where}, line {number}: {begin!r} inside another block")
            inside, indent = True, line[: len(line) - len(line.lstrip())]
            out.extend(replace(indent))
        elif stripped == end:
            if not inside:
                raise GradingError(f"{where}, line {number}: {end!r} without {begin!r}")
            inside = False
        elif not inside:
            out.append(line)
    if inside:
        raise GradingError(f"{where}: {begin!r} is never closed with {end!r}")
    return "\n".join(out)


def student_version(solution_nb):
    """The student notebook generated from a solution notebook (a new object)."""
    nb = copy.deepcopy(solution_nb)
    for index, cell in enumerate(nb.cells):
        where = f"cell {index}"
        exercise, check_id = cell_tag(cell, "exercise"), cell_tag(cell, "check")
        if exercise:
            if SOLUTION_BEGIN not in cell.source:
                raise GradingError(f"{where} (exercise:{exercise}) has no {SOLUTION_BEGIN!r} block")
            cell.source = _strip_block(
                cell.source, SOLUTION_BEGIN, SOLUTION_END,
                lambda indent, e=exercise: [f'{indent}raise NotImplementedError("{e}: your code here")'], where)
        elif SOLUTION_BEGIN in cell.source:
            raise GradingError(f"{where} has a solution block but no exercise:<id> tag")
        if check_id:
            cell.source = _strip_block(cell.source, HIDDEN_BEGIN, HIDDEN_END, lambda indent: [], where).rstrip()
            tags = cell.metadata.setdefault("tags", [])
            if "raises-exception" not in tags:
                tags.append("raises-exception")  # "Run All" goes on past a failed check
        elif HIDDEN_BEGIN in cell.source:
            raise GradingError(f"{where} has hidden tests but no check:<id> tag")
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
        cell.metadata = {"tags": cell.metadata["tags"]} if cell.metadata.get("tags") else {}
    nb.metadata.pop("widgets", None)
    return nb


def lab_pairs() -> list[tuple[Path, Path]]:
    """(solution, generated lab) paths for every lab in ``solutions/``."""
    return [(path, LABS_DIR / path.name) for path in sorted(SOLUTIONS_DIR.glob("lab[0-9][0-9]_*.ipynb"))]


def build_labs(check_only: bool = False) -> list[Path]:
    """Write ``labs/`` from ``solutions/``; return the labs that were (or, with check_only, are) stale."""
    import nbformat

    from dlcourse.fsutil import atomic_write

    stale = []
    for solution, lab in lab_pairs():
        text = nbformat.writes(student_version(nbformat.read(solution, as_version=4))) + "\n"
        if not lab.exists() or lab.read_text(encoding="utf-8") != text:
            stale.append(lab)
            if not check_only:
                atomic_write(lab, text)
    return stale


def nbgrader_version(solution_nb):
    """The solution notebook with nbgrader cell metadata, for courses that grade with nbgrader.

    Exercise cells become answer cells and check cells autograded test cells worth the points
    of their checks (nbgrader scores a test cell all or nothing); other cells are read-only.
    The ``### BEGIN SOLUTION`` / ``### BEGIN HIDDEN TESTS`` markers are nbgrader's own.
    """
    nb = copy.deepcopy(solution_nb)
    points = expected_checks(nb)
    for index, cell in enumerate(nb.cells):
        exercise, checked = cell_tag(cell, "exercise"), cell_tag(cell, "check")
        meta = {"schema_version": 3, "grade": False, "solution": False, "locked": True,
                "grade_id": f"cell-{index:02d}"}
        if exercise:
            meta.update(solution=True, locked=False, grade_id=exercise.replace(".", "-"))
        elif checked:
            meta.update(grade=True, points=sum(points[checked].values()),
                        grade_id=f"check-{checked.replace('.', '-')}")
        cell.metadata["nbgrader"] = meta
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    return nb


def export_nbgrader(out_dir: str | Path) -> list[Path]:
    """Write every solution with nbgrader metadata to ``out_dir/<lab>/<lab>.ipynb`` (nbgrader's source/ layout)."""
    import nbformat

    from dlcourse.fsutil import atomic_write

    written = []
    for solution, _ in lab_pairs():
        path = Path(out_dir) / solution.stem / solution.name
        atomic_write(path, nbformat.writes(nbgrader_version(nbformat.read(solution, as_version=4))) + "\n")
        written.append(path)
    return written


def find_solution(lab: str | Path) -> Path:
    """The solution notebook for "lab01", "labs/lab01_x.ipynb" or "solutions/lab01_x.ipynb"."""
    match = re.match(r"(lab\d\d)", Path(lab).name)
    if not match:
        raise GradingError(f"{lab!r} does not name a lab; use e.g. lab01 or labs/lab01_gradient_descent.ipynb")
    found = sorted(SOLUTIONS_DIR.glob(f"{match.group(1)}_*.ipynb"))
    if not found:
        raise GradingError(f"no solution notebook for {match.group(1)} in {SOLUTIONS_DIR}")
    return found[0]


def expected_checks(solution_nb) -> dict[str, dict[str, int]]:
    """{exercise id: {check id: points}} read from a solution's check cells (nothing is run)."""
    import ast

    lab = None
    result: dict[str, dict[str, int]] = {}
    for index, cell in enumerate(solution_nb.cells):
        exercise = cell_tag(cell, "check")
        if not exercise:
            continue
        lab = lab or lab_of(exercise)
        found = result.setdefault(exercise, {})
        for node in ast.walk(ast.parse(cell.source)):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.args
                    and isinstance(node.args[0], ast.Constant)):
                continue
            name, cid = node.func.id, node.args[0].value
            if name == "check":
                found[cid] = get_spec(cid).points
            elif name == "hidden_test":
                points = {k.arg: k.value for k in node.keywords}.get("points")
                if not isinstance(points, ast.Constant):
                    raise GradingError(f"cell {index}: hidden_test({cid!r}) needs a literal points=N")
                found[f"{cid}:hidden"] = points.value
        if not found:
            raise GradingError(f"cell {index} (check:{exercise}) calls neither check() nor hidden_test()")
    return result
