"""Graded labs: the checks, the lab builder, and the batch grader against broken and hostile submissions."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import numpy as np
import pytest

from dlcourse import grader, grading

ROOT = Path(__file__).resolve().parent.parent
LABS = [path.name[:5] for path, _ in grading.lab_pairs()]
pytestmark = pytest.mark.skipif(not grading.SOLUTIONS_DIR.is_dir(),
                                reason="the student edition has no solutions/ (python -m dlcourse release)")


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
    grading._default = grading.Reporter()   # a fresh notebook session: no failures counted yet
    grading.check("lab01.sigmoid", sigmoid=ns["sigmoid"])
    assert capsys.readouterr().out.startswith("[PASS] lab01.sigmoid (1/1)")
    with pytest.raises(grading.CheckFailed, match="not done yet"):
        grading.check("lab01.sigmoid", sigmoid=lambda z: (_ for _ in ()).throw(NotImplementedError()))
    out = capsys.readouterr().out
    assert out.startswith("[FAIL] lab01.sigmoid (0/1): not done yet") and "hint" not in out, \
        "no hint before a first attempt: Run All on an untouched lab must not print the answers"
    naive = lambda z: 1 / (1 + np.exp(-np.asarray(z, dtype=float)))  # noqa: E731
    with pytest.raises(grading.CheckFailed, match="overflow"):
        grading.check("lab01.sigmoid", sigmoid=naive)
    first = capsys.readouterr().out
    assert "hint: " in first and "hint 2: " not in first
    with pytest.raises(grading.CheckFailed):
        grading.check("lab01.sigmoid", sigmoid=naive)
    second = capsys.readouterr().out
    assert "hint: " in second and "hint 2: " in second


def test_every_check_has_two_hints_and_the_first_is_not_the_answer():
    for solution, _ in grading.lab_pairs():
        for check_id, spec in grading.load_checks(solution.name[:5]).items():
            assert spec.hint and spec.more, f"{check_id} needs a first hint and a second one (register(..., more=...))"
            assert spec.hint != spec.more, check_id


def test_the_sigmoid_hint_warns_that_np_where_computes_both_branches():
    spec = grading.get_spec("lab01.sigmoid")
    assert "both" in spec.hint and "np.where" in spec.hint
    assert "exp(-np.abs(z))" in spec.more   # the formula that overflows nowhere


def test_every_lab_says_its_points_and_that_only_exercise_cells_are_graded():
    import re

    for solution, lab in grading.lab_pairs():
        nb = nbformat.read(solution, as_version=4)
        points = grading.expected_checks(nb)
        visible = sum(v for c in points.values() for k, v in c.items() if not k.endswith(":hidden"))
        hidden = sum(v for c in points.values() for k, v in c.items() if k.endswith(":hidden"))
        text = nb.cells[0].source
        said = re.search(r"worth (\d+) points.*?worth (\d+) more", text, re.S)
        assert said and (int(said.group(1)), int(said.group(2))) == (visible, hidden), \
            f"{solution.name}: its first cell must say the checks are worth {visible} points and the hidden tests {hidden} more"
        assert "Only the exercise cells are graded" in text, f"{solution.name}: say that only exercise cells are graded"


def test_the_check_warns_when_an_answer_uses_a_name_from_another_cell():
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    try:
        lab = nbformat.read(grading.LABS_DIR / grading.find_solution("lab01").name, as_version=4)
        solution = nbformat.read(grading.find_solution("lab01"), as_version=4)
        shell.run_cell(lab.cells[1].source, store_history=True)                # the lab's setup cell
        for exercise in ("lab01.linear_loss_grad",):
            shell.run_cell(next(c.source for c in solution.cells if grading.cell_tag(c, "exercise") == exercise),
                           store_history=True)
        shell.run_cell("STEP = 0.1\n\ndef gd_loop(X, y, w, b, lr):\n    _, gw, gb = linear_loss_and_grad(X, y, w, b)\n"
                       "    return w - lr * gw, b - lr * gb\n", store_history=True)   # an extra cell
        shell.run_cell("def gradient_descent(X, y, lr, num_epochs):\n    w, b = np.zeros(X.shape[1]), 0.0\n"
                       "    for _ in range(num_epochs):\n        w, b = gd_loop(X, y, w, b, lr)\n    return w, b\n",
                       store_history=True)                                       # the exercise cell
        warnings = grading.outside_names_warnings("lab01.gd_linear", {"gradient_descent": shell.user_ns["gradient_descent"]})
        assert len(warnings) == 1 and "gd_loop" in warnings[0] and "exercise cell" in warnings[0], warnings
        shell.run_cell("def gradient_descent(X, y, lr, num_epochs):\n    def step(w, b):\n"
                       "        _, gw, gb = linear_loss_and_grad(X, y, w, b)\n        return w - lr * gw, b - lr * gb\n"
                       "    w, b = np.zeros(X.shape[1]), 0.0\n    for _ in range(num_epochs):\n        w, b = step(w, b)\n"
                       "    return w, b\n", store_history=True)                   # a helper inside the exercise: fine
        assert grading.outside_names_warnings("lab01.gd_linear", {"gradient_descent": shell.user_ns["gradient_descent"]}) == []
    finally:
        InteractiveShell.clear_instance()


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


# --------------------------------------------------------------------------- the batch grader
def _with(nb, exercise: str | None = None, source: str | None = None, check: str | None = None, check_source=None):
    nb = nbformat.from_dict(json.loads(json.dumps(nb)))
    for cell in nb.cells:
        if exercise and grading.cell_tag(cell, "exercise") == exercise:
            cell.source = source
        if check and grading.cell_tag(cell, "check") == check:
            cell.source = check_source
    return nb


requires_sandbox = pytest.mark.skipif(not grader.sandbox_status()[0], reason="no sandbox here: "
                                      + grader.sandbox_status()[1])


@pytest.mark.slow
@requires_sandbox
def test_grader_scores_generated_and_broken_submissions(tmp_path):
    solution = nbformat.read(grading.find_solution("lab01"), as_version=4)
    lab = grading.student_version(solution)
    subs = tmp_path / "submissions"
    subs.mkdir()

    def put(name, nb):
        nbformat.write(nb, subs / f"{name}.ipynb")

    def source_of(exercise):
        return next(c.source for c in solution.cells if grading.cell_tag(c, "exercise") == exercise)

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
    put("loops_forever", _with(solution, "lab01.gd_linear", "while True:\n    pass"))
    put("calls_sys_exit", _with(solution, "lab01.sigmoid", "import sys\nsys.exit(0)"))
    put("kills_kernel", _with(solution, "lab01.sigmoid", "import faulthandler\nfaulthandler._sigsegv()"))
    put("missing_module", _with(solution, "lab01.sigmoid", "import numpy_extensions_that_do_not_exist\n"))
    put("helper_outside", _with(solution, "lab01.gd_linear",
                                "def gradient_descent(X, y, lr, num_epochs):\n    return gd_loop(X, y, lr, num_epochs)\n"))
    naive = "def sigmoid(z):\n    return 1 / (1 + np.exp(-np.asarray(z, dtype=float)))\n"
    put("naive_sigmoid", _with(solution, "lab01.sigmoid", naive))

    out = tmp_path / "grades.csv"
    run = subprocess.run([sys.executable, "-m", "dlcourse", "grade", "lab01", str(subs), "--out", str(out),
                          "--jobs", "2", "--cell-timeout", "15", "--timeout", "120"],
                         capture_output=True, text=True, cwd=ROOT, timeout=900)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    rows = {r["student"]: r for r in csv.DictReader(out.open())}
    full = {"lab01.linear_loss_grad": 3, "lab01.gd_linear": 3, "lab01.sigmoid": 2,
            "lab01.logistic_loss_grad": 2, "lab01.train_logistic": 3}

    def scores(student):
        return {k: int(rows[student][k]) for k in full}

    def feedback(student):
        return (tmp_path / "grades-feedback" / f"{student}.txt").read_text()

    assert list(rows["solution"])[:7] == ["student", *full, "total"]
    assert scores("solution") == full and rows["solution"]["errors"] == ""
    assert scores("untouched") == dict.fromkeys(full, 0) and rows["untouched"]["errors"] == ""
    assert int(rows["half_done"]["total"]) == 13 - 2 - 3 - 2   # sigmoid undone breaks logistic too
    assert rows["not_json"]["total"] == "0" and "not a readable notebook" in rows["not_json"]["errors"]
    assert rows["rewrites_checks"]["total"] == "0"            # the course's check cells run, not the student's
    assert scores("loops_forever")["lab01.gd_linear"] == 0 and "TimeoutError" in rows["loops_forever"]["errors"]
    assert scores("loops_forever")["lab01.sigmoid"] == 2       # the grader went on after the timeout
    assert scores("calls_sys_exit")["lab01.sigmoid"] == 0 and "SystemExit" in rows["calls_sys_exit"]["errors"]
    assert scores("calls_sys_exit")["lab01.linear_loss_grad"] == 3
    kills = scores("kills_kernel")
    assert kills["lab01.linear_loss_grad"] == 3 and kills["lab01.sigmoid"] == 0 and kills["lab01.train_logistic"] == 0
    assert "process ended" in rows["kills_kernel"]["errors"]
    assert scores("missing_module")["lab01.sigmoid"] == 0
    assert "ModuleNotFoundError" in rows["missing_module"]["errors"]
    assert scores("helper_outside")["lab01.gd_linear"] == 0
    assert "only exercise cells are graded" in rows["helper_outside"]["errors"]
    assert scores("naive_sigmoid")["lab01.sigmoid"] == 1 and "overflow" in feedback("naive_sigmoid")   # hidden test: 1
    assert "hint 2:" in feedback("naive_sigmoid")               # the feedback gives both hints
    assert sorted(p.stem for p in (tmp_path / "grades-feedback").iterdir()) == sorted(rows)


@requires_sandbox
def test_the_sandbox_resolves_its_own_host_name_to_its_loopback_only(tmp_path):
    """Horovod's Gloo rendezvous looks up the host name and crashed (SIGSEGV) when it did not resolve;
    the sandbox's own /etc/hosts names only itself and localhost, none of the grader's machine."""
    probe = ("import json, socket; name = socket.gethostname(); "
             "print(json.dumps([name, socket.gethostbyname(name), open('/etc/hosts').read()]))")
    cmd, fds = grader.sandbox_command(tmp_path, [sys.executable, "-c", probe], uid=None)
    try:
        run = subprocess.run(cmd, pass_fds=fds, capture_output=True, text=True, timeout=60)
    finally:
        for fd in fds:
            os.close(fd)
    assert run.returncode == 0, run.stderr[-1000:]
    assert json.loads(run.stdout) == [grader.HOSTNAME, "127.0.0.1", grader._HOSTS]


def test_grader_refuses_without_a_sandbox_unless_told(tmp_path, monkeypatch):
    (tmp_path / "subs").mkdir()
    monkeypatch.setattr(grader, "sandbox_status", lambda: (False, "bubblewrap is not installed"))
    with pytest.raises(grading.GradingError, match="cannot isolate the submissions: bubblewrap is not installed.*"
                                                   "--unsafe-no-sandbox"):
        grader.grade("lab01", tmp_path / "subs", tmp_path / "g.csv", progress=False)
    assert grader.grade("lab01", tmp_path / "subs", tmp_path / "g.csv", progress=False, unsafe_no_sandbox=True) == []


def test_plain_data_round_trips_and_nothing_else_decodes():
    import torch

    value = {"a": (1, 2.5, None, True, "x"), 3: [np.arange(6).reshape(2, 3), np.float32(1.5)],
             "t": torch.ones(2, requires_grad=True), "b": torch.zeros(2, dtype=torch.bfloat16)}
    encoder = grader._Encoder(lambda v: (_ for _ in ()).throw(TypeError(type(v).__name__)))
    back = grader._Decoder(encoder.blobs, {})(json.loads(json.dumps(encoder(value))))
    assert back["a"] == (1, 2.5, None, True, "x") and np.array_equal(back[3][0], value[3][0])
    assert isinstance(back[3][1], np.float32) and back["t"].requires_grad and back["b"].dtype == torch.bfloat16
    with pytest.raises(TypeError):
        encoder(object())
    decoder = grader._Decoder([b"not an array"], {})
    for bad in ({"$": "pk", "b": 0}, {"$": "nd", "b": 0}, {"$": "nd", "b": 7}, {"$": "dict", "v": [[[1], 2]]}):
        with pytest.raises(grader.WireError):
            decoder(bad)
    import io
    import pickle

    buffer = io.BytesIO()
    np.save(buffer, np.array([object()], dtype=object), allow_pickle=True)   # a pickle inside an .npy file
    with pytest.raises(grader.WireError):
        grader._Decoder([buffer.getvalue()], {})({"$": "nd", "b": 0})
    with pytest.raises(grader.WireError):
        grader._Decoder([pickle.dumps([1])], {})({"$": "nd", "b": 0})


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
    rows = {r.student: r for r in grader.grade(lab, subs, tmp_path / "grades.csv", jobs=2, progress=False,
                                               unsafe_no_sandbox=not grader.sandbox_status()[0])}
    maximum = sum(sum(c.values()) for c in grading.expected_checks(solution).values())
    assert rows["solution"].total == rows["solution"].max == maximum, rows["solution"].feedback
    assert rows["solution"].errors == []
    assert rows["untouched"].total == 0 and rows["untouched"].errors == [], rows["untouched"].feedback
    assert rows["untouched"].feedback.count("[FAIL]") == sum(len(c) for c in grading.expected_checks(solution).values())


def test_sandboxes_do_not_inherit_the_graders_secrets(tmp_path, monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "do-not-leak")
    solution = nbformat.read(grading.find_solution("lab01"), as_version=4)
    sigmoid = next(c.source for c in solution.cells if grading.cell_tag(c, "exercise") == "lab01.sigmoid")
    probe = _with(solution, "lab01.sigmoid", "import os\nassert 'AWS_SECRET_ACCESS_KEY' not in os.environ, 'a secret leaked'\n"
                                             "assert not any('do-not-leak' in v for v in os.environ.values())\n" + sigmoid)
    (tmp_path / "subs").mkdir()
    nbformat.write(probe, tmp_path / "subs" / "student.ipynb")
    rows = grader.grade("lab01", tmp_path / "subs", tmp_path / "grades.csv", progress=False,
                        unsafe_no_sandbox=not grader.sandbox_status()[0])
    assert rows[0].total == rows[0].max == 13, rows[0].feedback


@pytest.mark.slow
def test_release_writes_a_student_edition_without_solutions_whose_labs_run(tmp_path):
    from dlcourse import models

    out = tmp_path / "edition"
    run = subprocess.run([sys.executable, "-m", "dlcourse", "release", str(out)], capture_output=True, text=True,
                         cwd=ROOT, timeout=300)
    assert run.returncode == 0, run.stderr
    assert not (out / "solutions").exists() and not (out / ".git").exists()
    assert (out / "dlcourse" / "grader.py").is_file() and (out / "LICENSE").is_file()
    assert sorted(p.name for p in (out / "labs").glob("*.ipynb")) == sorted(lab.name for _, lab in grading.lab_pairs())
    blocks, lines = grading._secret_texts()
    assert blocks and lines
    for path in out.rglob("*"):
        if path.is_file() and path.suffix in (".py", ".ipynb", ".md", ".txt", ".toml", ".cfg", ".json", ".yml", ""):
            text = path.read_text(errors="replace")
            assert not any(line in text for line in lines), f"{path} holds a line of a hidden test"
            if path.suffix == ".ipynb":
                assert grading.SOLUTION_BEGIN not in text and grading.HIDDEN_BEGIN not in text, path

    leak = ROOT / f"leak-{tmp_path.name}.txt"      # a new file git would track, holding a hidden test
    try:
        leak.write_text(lines[0] + "\n")
        again = subprocess.run([sys.executable, "-m", "dlcourse", "release", str(tmp_path / "edition2")],
                               capture_output=True, text=True, cwd=ROOT, timeout=300)
        assert again.returncode == 2 and "hidden test" in again.stderr and not (tmp_path / "edition2").exists()
    finally:
        leak.unlink(missing_ok=True)

    env = {**os.environ, "PYTHONPATH": str(out), "DLCOURSE_ARTIFACTS": str(models.artifacts_dir())}
    labs = subprocess.run([sys.executable, "-m", "pytest", "--nbval-lax", "labs/", "-q"],
                          capture_output=True, text=True, cwd=out, env=env, timeout=1200)
    assert labs.returncode == 0, labs.stdout[-3000:] + labs.stderr[-2000:]
    assert " passed" in labs.stdout and "failed" not in labs.stdout.splitlines()[-1]
