"""Every lecture notebook follows CONTRIBUTING.md: it says what it teaches and how long it
takes, is stored executed, asserts its targets, and leaks nothing machine-specific."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LECTURES = sorted((ROOT / "notebooks").glob("[0-9][0-9]*_*.ipynb"))   # 02b too
CLEAN = sorted((ROOT / "labs").glob("*.ipynb")) + sorted((ROOT / "solutions").glob("*.ipynb"))


def cells(path: Path) -> list[dict]:
    return json.loads(path.read_text())["cells"]


def source(cell: dict) -> str:
    return "".join(cell["source"])


def test_there_are_lecture_notebooks():
    assert LECTURES and LECTURES[0].name == "00_setup_and_tour.ipynb"


@pytest.mark.parametrize("path", LECTURES, ids=lambda p: p.name)
def test_opens_with_objectives_and_time(path):
    first = source(cells(path)[0])
    number = path.name.split("_")[0]
    assert first.startswith(f"# {number} ·"), "title cell must start with '# NN · Title'"
    assert "What you will learn" in first
    assert "**Time**" in first, "say how long the notebook takes"
    assert "fast profile" in first.lower() or "either profile" in first.lower(), "give the time per profile"
    assert "Prerequisites" in first


@pytest.mark.parametrize("path", LECTURES, ids=lambda p: p.name)
def test_stored_executed_without_errors(path):
    code = [c for c in cells(path) if c["cell_type"] == "code" and source(c).strip()]
    assert code and all(c["execution_count"] is not None for c in code), "run `make notebooks NB=...`"
    for c in code:
        for out in c.get("outputs", []):
            assert out.get("output_type") != "error", f"stored error in: {source(c)[:80]}"


@pytest.mark.parametrize("path", LECTURES, ids=lambda p: p.name)
def test_asserts_its_targets_and_ends_with_recap_and_exercises(path):
    all_src = "\n".join(source(c) for c in cells(path))
    assert re.search(r"^\s*assert ", all_src, re.M), "a notebook asserts its COURSE.md targets in a cell"
    assert "# NBVAL_CHECK_OUTPUT" in all_src
    tail = "\n".join(source(c) for c in cells(path)[-4:])
    assert "Recap" in tail and "Exercises" in tail


@pytest.mark.parametrize("path", LECTURES + CLEAN, ids=lambda p: p.name)
def test_no_machine_specific_paths(path):
    text = path.read_text()
    # Temporary folders (/tmp/...) are fine: they are the same on every machine.
    for pattern in (r"/home/\w+", r"/root/", r"/Users/\w+", r"/work/", r"site-packages"):
        assert not re.search(pattern, text), f"{path.name} mentions {pattern}"


@pytest.mark.parametrize("path", CLEAN, ids=lambda p: p.name)
def test_labs_and_solutions_are_committed_clean(path):
    for c in cells(path):
        if c["cell_type"] == "code":
            assert not c.get("outputs") and c.get("execution_count") is None


def _execute_notebooks():
    # scripts/execute_notebooks.py as a module: its definitions of a stored widget and a progress bar.
    import importlib.util

    spec = importlib.util.spec_from_file_location("execute_notebooks", ROOT / "scripts" / "execute_notebooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_no_stored_progress_bar_is_frozen_at_zero():
    # A stored tqdm widget cannot keep its state and shows "0%" forever; scripts/execute_notebooks.py drops them.
    execute_notebooks = _execute_notebooks()
    frozen = [f"{path.name} cell {i}" for path in sorted((ROOT / "notebooks").glob("*.ipynb"))
              for i, cell in enumerate(json.loads(path.read_text())["cells"]) if cell["cell_type"] == "code"
              for out in cell.get("outputs", []) if execute_notebooks.is_progress_bar(out)]
    assert not frozen, f"progress bars stored at 0%: {frozen}; run scripts/execute_notebooks.py --strip-only on them"


def test_no_widget_state_is_stored_without_a_widget_to_show_it():
    # Saved widget state is only for a notebook that still shows a widget (01's slider); a progress bar's stale
    # state ("100%") is dead weight in the file, and scripts/execute_notebooks.py drops it with the bars.
    widget = _execute_notebooks().WIDGET
    orphaned = []
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        nb = json.loads(path.read_text())
        shown = any(widget in out.get("data", {})
                    for cell in nb["cells"] for out in cell.get("outputs", []))
        if "widgets" in nb["metadata"] and not shown:
            orphaned.append(path.name)
    assert not orphaned, f"widget state without a widget in {orphaned}; run scripts/execute_notebooks.py --strip-only"
