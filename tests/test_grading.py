"""Graded labs: the checks, the lab builder, and the batch grader against broken and hostile submissions."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import nbformat
import numpy as np
import pytest

from dlcourse import grader, grading

ROOT = Path(__file__).resolve().parent.parent
LABS = [path.name[:5] for path, _ in grading.lab_pairs()]


def solution_namespace(lab: str) -> dict:
    """Run a solution's setup and exercise cells (not its checks) and return the names they define."""
    nb = nbformat.read(grading.find_solution(lab), as_version=4)
    namespace: dict = {}
    for cell in nb.cells:
        if cell.cell_type == "code" and not grading.cell_tag(cell, "check"):
            exec(compile(cell.source, f"<{lab}>", "exec"), namespace)
    return namespace


# --------------------------------------------------------------------------- checks
def test_every_lab_has_checks_and_a_generated_student_version():
    assert LABS, "no labs found in solutions/"
    for solution, lab in grading.lab_pairs():
        assert lab.exists(), f"{lab.name} missing: run `python -m dlcourse labs build`"
        expected = grading.expected_checks(nbformat.read(solution, as_version=4))
        registered = grading.load_checks(solution.name[:5])
        visible = {cid for checks in expected.values() for cid in checks if not cid.endswith(":hidden")}
        assert visible == set(registered), f"{solution.name}: check cells and dlcourse/checks disagree"


def test_lab01_checks_pass_on_the_solution_and_fail_on_wrong_answers():
    ns = solution_namespace("lab01")
    for check_id in grading.load_checks("lab01"):
        spec = grading.get_spec(check_id)
        answers = {name: ns[name] for name in spec.func.__code__.co_varnames[: spec.func.__code__.co_argcount]}
        assert grading.run_check(check_id, **answers).ok, check_id

    naive = lambda z: 1 / (1 + np.exp(-np.asarray(z, dtype=float)))  # noqa: E731
    result = grading.run_check("lab01.sigmoid", sigmoid=naive)
    assert not result.ok and "overflow" in result.message

    result = grading.run_check("lab01.gd_linear", gradient_descent=lambda X, y, lr, num_epochs: None)
    assert not result.ok and "return (w, b)" in result.message

    def off_by_two(X, y, w, b):
        r = X @ w + b - y
        return np.mean(r**2), X.T @ r / len(y), np.mean(r)

    result = grading.run_check("lab01.linear_loss_grad", linear_loss_and_grad=off_by_two)
    assert not result.ok and "grad_w is wrong" in result.message

    def crashes(X, y, w, b):
        raise ValueError("shapes (80,3) and (2,) not aligned")

    result = grading.run_check("lab01.logistic_loss_grad", logistic_loss_and_grad=crashes)
    assert not result.ok and result.message.startswith("your code raised ValueError")


def test_check_prints_a_line_and_raises_on_failure(capsys):
    ns = solution_namespace("lab01")
    grading.check("lab01.sigmoid", sigmoid=ns["sigmoid"])
    assert capsys.readouterr().out.startswith("[PASS] lab01.sigmoid (1/1)")
    with pytest.raises(grading.CheckFailed, match="not done yet"):
        grading.check("lab01.sigmoid", sigmoid=lambda z: (_ for _ in ()).throw(NotImplementedError()))
    out = capsys.readouterr().out
    assert out.startswith("[FAIL] lab01.sigmoid (0/1): not done yet") and "hint:" in out


def test_misused_check_gives_clear_errors():
    with pytest.raises(grading.GradingError, match="unknown check 'lab01.nope'"):
        grading.run_check("lab01.nope", f=None)
    with pytest.raises(grading.GradingError, match="no checks for 'lab99'"):
        grading.run_check("lab99.x", f=None)
    with pytest.raises(grading.GradingError, match="missing sigmoid"):
        grading.run_check("lab01.sigmoid", sigma=None)
    with pytest.raises(grading.GradingError, match="must look like"):
        grading.register("Lab 1", points=1, hint="")


# --------------------------------------------------------------------------- the lab builder
def _cell(source, tags):
    cell = nbformat.v4.new_code_cell(source)
    cell.metadata["tags"] = tags
    cell.outputs = [nbformat.v4.new_output("stream", text="old output")]
    return cell


def test_student_version_replaces_solutions_and_drops_hidden_tests():
    nb = nbformat.v4.new_notebook(cells=[
        _cell("def f(x):\n    \"\"\"Doc.\"\"\"\n    ### BEGIN SOLUTION\n    return 2 * x\n    ### END SOLUTION\n", ["exercise:lab09.f"]),
        _cell("check('lab09.f', f=f)\n### BEGIN HIDDEN TESTS\nwith hidden_test('lab09.f', points=1):\n    assert f(3) == 6\n### END HIDDEN TESTS\n",
              ["check:lab09.f"]),
    ])
    student = grading.student_version(nb)
    assert student.cells[0].source == 'def f(x):\n    """Doc."""\n    raise NotImplementedError("lab09.f: your code here")'
    assert student.cells[1].source == "check('lab09.f', f=f)"
    assert "raises-exception" in student.cells[1].metadata["tags"]
    assert all(c.outputs == [] and c.execution_count is None for c in student.cells)
    assert nb.cells[0].outputs, "the solution notebook itself must not change"


@pytest.mark.parametrize("source, tags, message", [
    ("### BEGIN SOLUTION\nx = 1\n", ["exercise:lab09.f"], "never closed"),
    ("### BEGIN SOLUTION\nx = 1\n### END SOLUTION\n### END SOLUTION\n", ["exercise:lab09.f"], "without"),
    ("x = 1\n", ["exercise:lab09.f"], "has no '### BEGIN SOLUTION'"),
    ("### BEGIN SOLUTION\nx = 1\n### END SOLUTION\n", [], "no exercise:<id> tag"),
    ("### BEGIN HIDDEN TESTS\nassert 1\n### END HIDDEN TESTS\n", [], "no check:<id> tag"),
])
def test_student_version_rejects_broken_markers(source, tags, message):
    nb = nbformat.v4.new_notebook(cells=[_cell(source, tags)])
    with pytest.raises(grading.GradingError, match=message):
        grading.student_version(nb)


def test_labs_are_up_to_date_and_check_detects_staleness(tmp_path, monkeypatch):
    run = subprocess.run([sys.executable, "-m", "dlcourse", "labs", "build", "--check"],
                         capture_output=True, text=True, cwd=ROOT)
    assert run.returncode == 0, run.stdout + run.stderr
    for solution, lab in grading.lab_pairs():
        (tmp_path / lab.name).write_text(lab.read_text().replace("your code here", "edited by hand"))
    monkeypatch.setattr(grading, "LABS_DIR", tmp_path)
    assert len(grading.build_labs(check_only=True)) == len(LABS)
    assert len(grading.build_labs()) == len(LABS)          # rewrites them
    assert grading.build_labs(check_only=True) == []


def test_labs_and_solutions_are_stored_without_outputs():
    for path in [*ROOT.glob("labs/*.ipynb"), *ROOT.glob("solutions/*.ipynb")]:
        nb = nbformat.read(path, as_version=4)
        assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), path.name


# --------------------------------------------------------------------------- the static scan
@pytest.mark.parametrize("source, found", [
    ("def check(*a, **k):\n    pass", ["check"]),
    ("import dlcourse.grading as g\ng.check = print", ["check", "grading"]),
    ("from dlcourse import grading", ["grading"]),
    ("import sys\nsys.exit(0)", ["exit"]),
    ("import os\nos._exit(0)", ["_exit"]),
    ("key = __import__('os').environ['K']", ["__import__", "environ"]),
    ("get_ipython().input_transformers_cleanup.append(f)", ["get_ipython"]),
    ("exec('x = 1')", ["exec"]),
    ("import dlcourse\nm = getattr(dlcourse, 'gra' + 'der')", ["getattr"]),
    ("size = getattr(layer, 'out_features')", []),
    ("import os\nos.__getattribute__('_ex' + 'it')(3)", ["__getattribute__"]),
    ("net = torch.compile(net)\nw = np.linalg.solve(A, b)", []),
    ("convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]", []),
    ("import sys\nsys.modules['dlcourse.grading'] = None", ["sys.modules"]),
    ("def f(:\n", []),  # a syntax error fails on its own
])
def test_scan_flags_code_that_reaches_for_the_grader(source, found):
    assert grader.scan(source) == found


# --------------------------------------------------------------------------- the batch grader
def _with(nb, exercise: str | None = None, source: str | None = None, check: str | None = None, check_source=None):
    nb = nbformat.from_dict(json.loads(json.dumps(nb)))
    for cell in nb.cells:
        if exercise and grading.cell_tag(cell, "exercise") == exercise:
            cell.source = source
        if check and grading.cell_tag(cell, "check") == check:
            cell.source = check_source
    return nb


@pytest.mark.slow
def test_grader_scores_generated_and_hostile_submissions(tmp_path):
    solution = nbformat.read(grading.find_solution("lab01"), as_version=4)
    lab = grading.student_version(solution)
    subs = tmp_path / "submissions"
    subs.mkdir()
    outside = tmp_path / "outside.txt"

    def put(name, nb):
        nbformat.write(nb, subs / f"{name}.ipynb")

    put("solution", solution)
    put("untouched", lab)
    half = solution
    for exercise in ("lab01.sigmoid", "lab01.train_logistic"):
        index = next(i for i, c in enumerate(solution.cells) if grading.cell_tag(c, "exercise") == exercise)
        half = _with(half, exercise, lab.cells[index].source)
    put("half_done", half)
    (subs / "not_json.ipynb").write_text("{ this is not a notebook")
    fake = '[PASS] lab01.sigmoid (1/1)'
    put("rewrites_checks", _with(_with(lab, check="lab01.sigmoid", check_source=f"print({fake!r})"),
                                 check="lab01.gd_linear", check_source=""))
    put("redefines_check", _with(lab, "lab01.sigmoid", "def check(*args, **kwargs):\n    print('[PASS]')"))
    put("patches_grading", _with(lab, "lab01.sigmoid",
                                 "import dlcourse.grading as g\ng.run_check = lambda i, **a: g.CheckResult(i, True, 9, 9)"))
    put("forges_records", _with(lab, "lab01.sigmoid",
                                "from IPython.display import display\n"
                                "display({'application/vnd.dlcourse.check+json': {'id': 'lab01.sigmoid', 'ok': True,"
                                " 'points': 1, 'max': 1}}, raw=True)"))
    put("loops_forever", _with(solution, "lab01.gd_linear", "while True:\n    pass"))
    put("calls_sys_exit", _with(solution, "lab01.sigmoid", "import sys\nsys.exit(0)"))
    put("kills_kernel", _with(solution, "lab01.sigmoid", "import faulthandler\nfaulthandler._sigsegv()"))
    put("prints_100mb", _with(solution, "lab01.sigmoid",
                              solution.cells[[grading.cell_tag(c, "exercise") for c in solution.cells].index("lab01.sigmoid")].source
                              + "\nprint('x' * 100_000_000)"))
    put("writes_outside", _with(solution, "lab01.gd_linear",
                                f"def gradient_descent(X, y, lr, num_epochs):\n    open({str(outside)!r}, 'w').write('x')\n"))
    put("reads_hidden_tests", _with(solution, "lab01.train_logistic",
                                    "def train_logistic(X, y, lr, num_epochs):\n"
                                    f"    text = open({str(grading.find_solution('lab01'))!r}).read()\n"
                                    "    raise RuntimeError(text[:80])\n"))
    put("missing_module", _with(solution, "lab01.sigmoid", "import numpy_extensions_that_do_not_exist\n"))

    out = tmp_path / "grades.csv"
    run = subprocess.run([sys.executable, "-m", "dlcourse", "grade", "lab01", str(subs), "--out", str(out),
                          "--jobs", "2", "--cell-timeout", "15", "--timeout", "120"],
                         capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    rows = {r["student"]: r for r in csv.DictReader(out.open())}
    full = {"lab01.linear_loss_grad": 3, "lab01.gd_linear": 3, "lab01.sigmoid": 2,
            "lab01.logistic_loss_grad": 2, "lab01.train_logistic": 3}

    def scores(student):
        return {k: int(rows[student][k]) for k in full}

    assert list(rows["solution"])[:7] == ["student", *full, "total"]
    assert scores("solution") == full and rows["solution"]["errors"] == ""
    assert scores("untouched") == dict.fromkeys(full, 0) and rows["untouched"]["errors"] == ""
    assert int(rows["half_done"]["total"]) == 13 - 2 - 3 - 2   # sigmoid undone breaks logistic too
    assert rows["not_json"]["total"] == "0" and "not a readable notebook" in rows["not_json"]["errors"]
    for student in ("rewrites_checks", "redefines_check", "patches_grading", "forges_records"):
        assert rows[student]["total"] == "0", (student, rows[student])
    assert "uses check" in rows["redefines_check"]["errors"]
    assert "uses grading" in rows["patches_grading"]["errors"]
    assert "uses IPython" in rows["forges_records"]["errors"]
    assert scores("loops_forever")["lab01.gd_linear"] == 0 and "TimeoutError" in rows["loops_forever"]["errors"]
    assert scores("loops_forever")["lab01.sigmoid"] == 2       # the grader went on after the timeout
    assert scores("calls_sys_exit")["lab01.sigmoid"] == 0 and "uses exit" in rows["calls_sys_exit"]["errors"]
    kills = scores("kills_kernel")
    assert kills["lab01.linear_loss_grad"] == 3 and kills["lab01.sigmoid"] == 0 and kills["lab01.train_logistic"] == 0
    assert "kernel died" in rows["kills_kernel"]["errors"]
    assert scores("prints_100mb") == full
    feedback = (tmp_path / "grades-feedback" / "prints_100mb.txt").read_text()
    assert len(feedback) < 100_000
    assert scores("writes_outside")["lab01.gd_linear"] == 0 and not outside.exists()
    assert "only write inside" in rows["writes_outside"]["errors"] or "only write inside" in \
        (tmp_path / "grades-feedback" / "writes_outside.txt").read_text()
    assert scores("reads_hidden_tests")["lab01.train_logistic"] == 0
    assert "may not read" in (tmp_path / "grades-feedback" / "reads_hidden_tests.txt").read_text()
    assert scores("missing_module")["lab01.sigmoid"] == 0
    assert "ModuleNotFoundError" in rows["missing_module"]["errors"]
    assert sorted(p.stem for p in (tmp_path / "grades-feedback").iterdir()) == sorted(rows)


def test_grader_reports_a_missing_lab_or_folder(tmp_path):
    with pytest.raises(grading.GradingError, match="does not name a lab"):
        grading.find_solution("gradient")
    with pytest.raises(grading.GradingError, match="no solution notebook for lab42"):
        grading.find_solution("lab42")
    run = subprocess.run([sys.executable, "-m", "dlcourse", "grade", "lab01", str(tmp_path / "nowhere"),
                          "--out", str(tmp_path / "g.csv")], capture_output=True, text=True, cwd=ROOT)
    assert run.returncode == 2 and "does not exist" in run.stderr


def test_nbgrader_export_marks_answer_and_test_cells(tmp_path):
    run = subprocess.run([sys.executable, "-m", "dlcourse", "labs", "export-nbgrader", str(tmp_path)],
                         capture_output=True, text=True, cwd=ROOT)
    assert run.returncode == 0, run.stderr
    nb = nbformat.read(next(tmp_path.glob("lab01_*/lab01_*.ipynb")), as_version=4)
    metas = [c.metadata["nbgrader"] for c in nb.cells]
    answers = [m for m in metas if m["solution"]]
    tests = [m for m in metas if m["grade"]]
    assert len(answers) == 5 and all(not m["locked"] for m in answers)
    assert sum(m["points"] for m in tests) == 13
    assert len({m["grade_id"] for m in metas}) == len(metas), "nbgrader needs unique grade ids"
    assert "### BEGIN HIDDEN TESTS" in "".join(c.source for c in nb.cells)


@pytest.mark.slow
@pytest.mark.parametrize("lab", LABS)
def test_every_check_passes_on_the_solution_and_fails_on_the_student_version(lab, tmp_path):
    solution = nbformat.read(grading.find_solution(lab), as_version=4)
    subs = tmp_path / "submissions"
    subs.mkdir()
    nbformat.write(solution, subs / "solution.ipynb")
    nbformat.write(nbformat.read(grading.LABS_DIR / grading.find_solution(lab).name, as_version=4),
                   subs / "untouched.ipynb")
    rows = {r.student: r for r in grader.grade(lab, subs, tmp_path / "grades.csv", jobs=2, progress=False)}
    maximum = sum(sum(c.values()) for c in grading.expected_checks(solution).values())
    assert rows["solution"].total == rows["solution"].max == maximum, rows["solution"].feedback
    assert rows["solution"].errors == []
    assert rows["untouched"].total == 0 and rows["untouched"].errors == [], rows["untouched"].feedback
    assert rows["untouched"].feedback.count("[FAIL]") == sum(len(c) for c in grading.expected_checks(solution).values())


def test_a_guarded_kernel_may_start_only_the_course_horovod_worker(monkeypatch):
    from dlcourse import dist

    monkeypatch.setattr(grader, "_guard_config", json.dumps({"sandbox": "/nowhere", "denied": []}))
    env = grader.guard_env()
    worker = [sys.executable, "-m", "dlcourse.dist", "horovodrun", "-np", "2", "--gloo", sys.executable,
              str(dist.SCRIPTS / "lab07_worker.py"), "student.py"]
    assert grader._trusted_launch(worker, {**env, "OTHER": "1"})
    assert not grader._trusted_launch(worker, {})                                  # without the guard handed on
    assert not grader._trusted_launch(worker[:-2] + ["evil.py"], env)              # a script of the student's
    assert not grader._trusted_launch(["/bin/sh", "-c", "rm -rf ~"], env)


def test_graded_kernels_do_not_inherit_the_graders_secrets(tmp_path, monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "do-not-leak")
    solution = nbformat.read(grading.find_solution("lab01"), as_version=4)
    first_check = next(c for c in solution.cells if grading.cell_tag(c, "check"))
    # Course code (a check cell, run after the grader's bootstrap) looks at the kernel's environment.
    probe = _with(solution, check=grading.cell_tag(first_check, "check"),
                  check_source="import os\nassert 'AWS_SECRET_ACCESS_KEY' not in os.environ, 'a secret leaked'\n"
                               "assert 'DLCOURSE_GRADING_KEY' not in os.environ, 'the key leaked'\n" + first_check.source)
    (tmp_path / "solutions").mkdir()
    nbformat.write(probe, tmp_path / "solutions" / "lab01_probe.ipynb")
    monkeypatch.setattr(grading, "SOLUTIONS_DIR", tmp_path / "solutions")
    (tmp_path / "subs").mkdir()
    nbformat.write(solution, tmp_path / "subs" / "student.ipynb")
    rows = grader.grade("lab01", tmp_path / "subs", tmp_path / "grades.csv", progress=False)
    assert rows[0].total == rows[0].max == 13, rows[0].feedback
