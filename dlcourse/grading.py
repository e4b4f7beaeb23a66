"""Graded labs: the checks students run, the lab builder, and the checks' side of the grader (introduced in labs/lab01).

Students call :func:`check` in a lab's check cells::

    check("lab01.gd_linear", gradient_descent=gradient_descent)

It runs the checks registered for that exercise (plain functions in
``dlcourse/checks/labNN.py``) and prints one ``[PASS]`` / ``[FAIL]`` line; it raises
:class:`CheckFailed` (an ``AssertionError``) on failure, so *Run All* stops there unless the
cell is tagged ``raises-exception``. A first failure shows a hint that points the way, a later
one a second hint that says more. Before checking, it warns when an answer uses a name that
only a cell other than the exercise cells defines: the grader runs exercise cells only.

Instructors write each lab once, in ``solutions/``, with nbgrader's markers:

* exercise cells are tagged ``exercise:<id>``; the answer sits between
  ``### BEGIN SOLUTION`` and ``### END SOLUTION``;
* check cells are tagged ``check:<id>``; tests students must not see sit between
  ``### BEGIN HIDDEN TESTS`` and ``### END HIDDEN TESTS`` inside a
  ``with hidden_test("<id>", points=N):`` block.

``python -m dlcourse labs build`` writes the student versions into ``labs/`` and
``python -m dlcourse grade`` grades a folder of submissions (see :mod:`dlcourse.grader`). The
grader runs the very same check functions, in its own process; there a student's function is a
:class:`Foreign` object that runs in the submission's sandbox and returns plain data. Checks
therefore test returned values, use :func:`is_a` instead of ``isinstance`` on what a student's
code returns, and run course code on the student's objects with :func:`student_side`.
"""

from __future__ import annotations

import builtins
import contextlib
import copy
import dis
import functools
import importlib
import inspect
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

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
    hint: str          # the first hint: where to look
    more: str          # the second hint, shown from the second failure on: how to do it
    func: Callable


_REGISTRY: dict[str, CheckSpec] = {}


def register(check_id: str, *, points: int, hint: str, more: str = ""):
    """Decorator: make ``func(**answers)`` the check for ``check_id`` worth ``points``.

    A check passes when it returns; it fails by raising ``AssertionError`` with a message
    that says what is wrong in the student's terms (shapes, values, what was expected).
    ``hint`` points the way without giving the answer; ``more`` says more, for a student who
    failed the check twice.
    """
    if not re.fullmatch(r"lab\d\d\.[a-z0-9_]+", check_id):
        raise GradingError(f"check id {check_id!r} must look like 'lab01.some_name'")
    if points <= 0:
        raise GradingError(f"check {check_id!r}: points must be positive, got {points}")

    def decorate(func):
        _REGISTRY[check_id] = CheckSpec(check_id, points, hint, more, func)
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


# --------------------------------------------------------------------------- answers that live elsewhere
class Foreign:
    """An object that lives in a graded submission's sandbox, seen from the grader's judge.

    The judge (:mod:`dlcourse.grader`) passes these to the checks in place of the student's
    functions and of whatever non-plain objects they return (a network, say). Calling one, or
    reading an attribute, runs in the sandbox and returns plain data or another ``Foreign``.
    """

    __slots__ = ("_types",)

    def __init__(self, types=()):
        self._types = tuple(types)   # the qualified names of its class and base classes


_session = None   # the judge's connection to the sandbox, while the grader runs checks (dlcourse.grader)


def _qualified(cls) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def is_a(obj, cls) -> bool:
    """``isinstance(obj, cls)``, also for an object that lives in a graded sandbox (:class:`Foreign`)."""
    if isinstance(obj, Foreign):
        classes = cls if isinstance(cls, tuple) else (cls,)
        return any(_qualified(c) in obj._types for c in classes)
    return isinstance(obj, cls)


def student_side(func: Callable) -> Callable:
    """``func`` (a course function, e.g. ``torch.optim.Adam``) run where the student's code runs.

    In a notebook that is this process, so it returns ``func`` itself. Under the grader it runs
    in the submission's sandbox, on the student's objects, and returns plain data or a
    :class:`Foreign`: use it when a check must build something the student's code will change
    (an optimizer over the student's network) or run a job on the student's code.
    """
    if _session is None:
        return func
    return functools.partial(_session.call_course, func)


# --------------------------------------------------------------------------- running one check
@dataclass
class CheckResult:
    id: str
    ok: bool
    points: int
    max: int
    message: str = ""
    not_done: bool = False   # the answer still raises NotImplementedError

    def line(self, hint: str = "", more: str = "") -> str:
        tag = "PASS" if self.ok else "FAIL"
        text = f"[{tag}] {self.id} ({self.points}/{self.max})"
        if not self.ok:
            text += f": {self.message}"
            if hint:
                text += f"\n       hint: {hint}"
            if more:
                text += f"\n       hint 2: {more}"
        return text


def _explain(exc: BaseException) -> str:
    if getattr(exc, "explained", False):   # the grader's own message (its sandbox stopped, say)
        return str(exc)
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
        return CheckResult(check_id, False, 0, spec.points, _explain(exc), isinstance(exc, NotImplementedError))
    return CheckResult(check_id, True, spec.points, spec.points)


class Reporter:
    """Runs checks and prints their result lines: in a notebook (raising on failure), or in the
    grader's judge, which keeps every result (``results``) and shows both hints."""

    def __init__(self, raise_on_fail: bool = True, all_hints: bool = False):
        self._raise = raise_on_fail       # the grader records failures and goes on to the hidden tests
        self._all_hints = all_hints
        self._failures: Counter[str] = Counter()
        self.results: list[CheckResult] = []

    def publish(self, result: CheckResult, spec: CheckSpec | None = None) -> None:
        self.results.append(result)
        hint = more = ""
        if spec is not None and not result.ok and not result.not_done:   # no hints before an attempt
            self._failures[result.id] += 1
            hint = spec.hint
            more = spec.more if (self._all_hints or self._failures[result.id] > 1) else ""
        print(result.line(hint, more))

    def check(self, check_id: str, **answers) -> None:
        if _session is None:
            for line in outside_names_warnings(check_id, answers):
                print(line)
        result = run_check(check_id, **answers)
        self.publish(result, get_spec(check_id))
        if not result.ok and self._raise:
            raise CheckFailed(f"{check_id}: {result.message}")

    @contextlib.contextmanager
    def hidden_test(self, exercise_id: str, *, points: int):
        """Plain asserts inside the block are a hidden test worth ``points`` (solutions only)."""
        check_id = f"{exercise_id}:hidden"
        try:
            yield
        except Exception as exc:
            result = CheckResult(check_id, False, 0, points, _explain(exc), isinstance(exc, NotImplementedError))
            self.publish(result)
            if self._raise:
                raise CheckFailed(f"{check_id}: {result.message}") from None
        else:
            self.publish(CheckResult(check_id, True, points, points))


_default = Reporter()   # the grader's judge puts its own here


def check(check_id: str, **answers) -> None:
    """Check an exercise: prints [PASS]/[FAIL] (with a hint after a real attempt) and raises CheckFailed on failure."""
    _default.check(check_id, **answers)


def hidden_test(exercise_id: str, *, points: int):
    return _default.hidden_test(exercise_id, points=points)


# --------------------------------------------------------------------------- only exercise cells are graded
def defined_names(source: str) -> set[str]:
    """Names a cell's top level defines: functions, classes, assignments and imports."""
    import ast

    try:
        tree = ast.parse(source)
    except SyntaxError:
        return set()
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((a.asname or a.name).split(".")[0] for a in node.names if a.name != "*")
        elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign, ast.For, ast.With)):
            targets = node.targets if isinstance(node, ast.Assign) else \
                [item.optional_vars for item in node.items if item.optional_vars] if isinstance(node, ast.With) else \
                [node.target]
            for target in targets:
                names.update(n.id for n in ast.walk(target) if isinstance(n, ast.Name))
    return names


@functools.lru_cache(maxsize=None)
def _lab_names(lab: str) -> tuple[frozenset, frozenset]:
    """(names the lab's other cells define, names its exercise cells define), from the lab as published."""
    import nbformat

    found = sorted(LABS_DIR.glob(f"{lab}_*.ipynb")) or sorted(SOLUTIONS_DIR.glob(f"{lab}_*.ipynb"))
    if not found:
        return frozenset(), frozenset()
    course, exercises = set(), set()
    for cell in nbformat.read(found[0], as_version=4).cells:
        if cell.cell_type == "code" and not cell_tag(cell, "check"):
            (exercises if cell_tag(cell, "exercise") else course).update(defined_names(cell.source))
    return frozenset(course), frozenset(exercises)


def _globals_used(func) -> set[str]:
    """Global names the code of ``func`` (and of functions nested in it) loads."""
    code = getattr(func, "__code__", None)
    names, todo = set(), [code] if code is not None else []
    while todo:
        code = todo.pop()
        names.update(i.argval for i in dis.get_instructions(code) if i.opname in ("LOAD_GLOBAL", "LOAD_NAME"))
        todo.extend(c for c in code.co_consts if inspect.iscode(c))
    return names


def outside_names_warnings(check_id: str, answers: dict) -> list[str]:
    """Warnings for the names an answer uses that only a non-exercise cell of the notebook defines.

    The grader takes just the exercise cells from a submission (and the course's own version of
    every other cell), so such a name is undefined there. Works in a Jupyter kernel, from the
    sources of the cells run so far; elsewhere it finds nothing.
    """
    try:
        from IPython import get_ipython
    except ImportError:
        return []
    shell = get_ipython()
    if shell is None:
        return []
    course, exercises = _lab_names(lab_of(check_id))
    history = [src for src in shell.user_ns.get("_ih", []) if isinstance(src, str)]
    warnings = []
    for answer, func in answers.items():
        for name in sorted(_globals_used(func)):
            if name in course or name in exercises or hasattr(builtins, name) or name not in shell.user_ns:
                continue
            cell = next((src for src in reversed(history) if name in defined_names(src)), None)
            if cell is not None and not (defined_names(cell) & exercises):
                warnings.append(
                    f"[WARN] {check_id}: {answer} uses {name}, which is defined in a cell that is not an exercise "
                    f"cell. The grader runs only the exercise cells of your notebook, so {name} will not exist there: "
                    "move it into the exercise cell that needs it.")
    return warnings


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


# --------------------------------------------------------------------------- the student edition
def _normalized(text: str) -> str:
    return "\n".join(line.strip() for line in text.splitlines() if line.strip())


def _secret_texts() -> tuple[list[str], list[str]]:
    """(the answer blocks, the distinctive lines of the hidden tests) of every solution notebook."""
    import nbformat

    blocks, lines = [], []
    for solution, _ in lab_pairs():
        for cell in nbformat.read(solution, as_version=4).cells:
            for begin, end, sink in ((SOLUTION_BEGIN, SOLUTION_END, "block"), (HIDDEN_BEGIN, HIDDEN_END, "lines")):
                for part in cell.source.split(begin)[1:]:
                    body = part.split(end)[0]
                    if sink == "block" and len(_normalized(body).splitlines()) >= 3:   # one-liners are formulas
                        blocks.append(_normalized(body))                               # the course teaches
                    elif sink == "lines":
                        lines += [ln.strip() for ln in body.splitlines() if len(ln.strip()) >= 25
                                  and not ln.strip().startswith(("with hidden_test", "from ", "import "))]
    return blocks, lines


def release(out: str | Path) -> list[Path]:
    """Write the student edition of the course into ``out``: every file of the course repository
    except ``solutions/`` (answers and hidden tests) and the git history; return the files written.

    The files are those git tracks or would track (``git ls-files --cached --others
    --exclude-standard``), as they are in the working tree. Before anything is written the copy is
    checked: no notebook in it may hold a solution or hidden-test block, and no file may contain
    an answer block or a line of a hidden test of any solution notebook.
    """
    import shutil
    import subprocess
    import tempfile

    out = Path(out).resolve()
    if out == COURSE_DIR or out.is_relative_to(COURSE_DIR):
        raise GradingError(f"write the student edition outside the course folder, not to {out}")
    if out.exists() and any(out.iterdir()):
        raise GradingError(f"{out} is not empty: give a new folder for the student edition")
    try:
        listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                                cwd=COURSE_DIR, capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError) as exc:
        raise GradingError("the student edition is made from the course's git repository (it copies the files "
                           f"git tracks), and git could not list them here: {exc}") from None
    names = sorted({n for n in listed.decode().split("\0") if n})
    keep = [n for n in names if not n.startswith(("solutions/", ".git/")) and (COURSE_DIR / n).is_file()]
    blocks, lines = _secret_texts()
    staging = Path(tempfile.mkdtemp(prefix=".student-edition-", dir=out.parent if out.parent.exists() else None))
    try:
        for name in keep:
            target = staging / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(COURSE_DIR / name, target)
            try:
                text = target.read_text(encoding="utf-8")
            except UnicodeDecodeError:
                continue
            flat = _normalized(text.replace("\\n", "\n"))    # notebooks keep code as JSON strings
            if name.endswith(".ipynb") and (SOLUTION_BEGIN in text or HIDDEN_BEGIN in text):
                raise GradingError(f"{name} holds a solution or hidden-test block: rebuild labs/ "
                                   "(`python -m dlcourse labs build`)")
            leaked = next((b for b in blocks if b in flat), None) or next((ln for ln in lines if ln in text), None)
            if leaked:
                raise GradingError(f"{name} contains a solution or a hidden test ({leaked.splitlines()[0][:60]!r}); "
                                   "the student edition was not written")
        if out.exists():
            out.rmdir()
        staging.rename(out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return [out / name for name in keep]
