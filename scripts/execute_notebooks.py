#!/usr/bin/env python3
"""Execute lecture notebooks in place so they are committed with their outputs.

    DLCOURSE_PROFILE=fast python scripts/execute_notebooks.py notebooks/01_*.ipynb

Run through `make notebooks` (which sets the profile and the TensorFlow log variables).
Each notebook runs in a fresh kernel from its own folder; a notebook that fails is
left untouched and the script exits 1. Per-cell timing metadata is dropped so
re-running changes only what the notebook prints and draws, and so are the tqdm
progress-bar widgets: a stored notebook cannot keep a widget's state, so each would be
saved frozen at "0%". The summary line every long loop prints after its bar stays.

    python scripts/execute_notebooks.py --strip-only notebooks/*.ipynb   # only drop the bars
"""

from __future__ import annotations

import re
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

from dlcourse.fsutil import atomic_write


WIDGET = "application/vnd.jupyter.widget-view+json"
PROGRESS_BAR = re.compile(r"\d+%\|.*\| *\d+/\d+")   # tqdm's text: "desc:  0%|          | 0/860 [00:00<?, ?batch/s]"


def is_progress_bar(output) -> bool:
    """A tqdm.auto widget as stored: its text form is the bar as it was drawn first, at 0%."""
    data = output.get("data", {})
    text = data.get("text/plain", "")
    return WIDGET in data and bool(PROGRESS_BAR.search("".join(text) if isinstance(text, list) else text))


def drop_progress_bars(nb) -> int:
    """Remove every stored progress-bar widget from ``nb``; returns how many there were.

    The notebook's saved widget state goes too when no widget output is left to use it
    (a slider keeps it; bars alone would leave only their stale "100%" states behind).
    """
    dropped = 0
    widgets_left = False
    for cell in nb.cells:
        if cell.cell_type == "code":
            kept = [o for o in cell.outputs if not is_progress_bar(o)]
            dropped += len(cell.outputs) - len(kept)
            cell.outputs = kept
            widgets_left |= any(WIDGET in o.get("data", {}) for o in kept)
    if not widgets_left:
        nb.metadata.pop("widgets", None)
    return dropped


def execute(path: Path) -> float:
    nb = nbformat.read(path, as_version=4)
    t0 = time.time()
    NotebookClient(nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}).execute()
    for cell in nb.cells:
        cell.get("metadata", {}).pop("execution", None)
    drop_progress_bars(nb)
    atomic_write(path, nbformat.writes(nb) + "\n")  # an interrupted run never leaves half a notebook
    return time.time() - t0


def strip_only(path: Path) -> int:
    nb = nbformat.read(path, as_version=4)
    before = nbformat.writes(nb)
    dropped = drop_progress_bars(nb)
    after = nbformat.writes(nb)
    if after != before:
        atomic_write(path, after + "\n")
    return dropped


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    if argv[0] == "--strip-only":
        for arg in argv[1:]:
            print(f"{arg}: {strip_only(Path(arg))} progress bar(s) dropped", flush=True)
        return 0
    failed = []
    for arg in argv:
        path = Path(arg)
        try:
            print(f"{path}: {execute(path):.1f} s", flush=True)
        except CellExecutionError as exc:
            print(f"{path}: FAILED\n{str(exc)[-2000:]}", file=sys.stderr, flush=True)
            failed.append(path)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
