#!/usr/bin/env python3
"""Execute lecture notebooks in place so they are committed with their outputs.

    DLCOURSE_PROFILE=fast python scripts/execute_notebooks.py notebooks/01_*.ipynb

Run through `make notebooks` (which sets the profile and the TensorFlow log variables).
Each notebook runs in a fresh kernel from its own folder; a notebook that fails is
left untouched and the script exits 1. Per-cell timing metadata is dropped so
re-running changes only what the notebook prints and draws.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

from dlcourse.fsutil import atomic_write


def execute(path: Path) -> float:
    nb = nbformat.read(path, as_version=4)
    t0 = time.time()
    NotebookClient(nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}).execute()
    for cell in nb.cells:
        cell.get("metadata", {}).pop("execution", None)
    atomic_write(path, nbformat.writes(nb) + "\n")  # an interrupted run never leaves half a notebook
    return time.time() - t0


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
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
